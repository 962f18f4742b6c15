//! Simulated lock clients and the lock invariants (PROTOCOL.md §13, issue 5).
//!
//! A lock client is a web worker serialising the requests of a session: it acquires the lock of
//! one of a few keys (`Op::LockAcquire`, a lease, sometimes a wait), does one to three guarded
//! writes (`Op::GuardedSet`) of a value that carries its token, and releases it
//! (`Op::LockRelease`), sometimes renewing on the way. Some crash while holding (they never
//! release: the lease must run out), some are slow and keep writing after their lease ran out
//! (the writes fencing must refuse). Everything goes through `Engine::execute` and the relay, as
//! the existing clients' operations do, so the store's lock entries, their write-through
//! replication, promotion and merges are the real ones.
//!
//! What the simulation cannot reach is the node's `LockManager` (crate `node`, on tokio): the
//! FIFO queue of waiters on the primary. A waiting client here retries its one-attempt
//! acquisition on the events that serve the manager's queue — the holder's lease deadline, a
//! release (acknowledged to the releasing client), its own wait running out — never on a
//! polling interval. The safety of locks does not depend on the queue: every grant is one
//! `LockAcquire` on the engine, which is what is simulated.
//!
//! # Definitions
//!
//! A **hold** is a grant (`LockGranted { token, deadline_ms }`) acknowledged to a client. It is
//! **valid** at simulated time `now` while all of these hold:
//! - `now <= deadline_ms` (a lock is live while `now <= deadline`, Redis's rule; every node
//!   reads the one simulated clock, so the primary's deadline is the client's; a renewal moves
//!   the client's deadline to the renewal's start plus the lease, a lower bound of the
//!   primary's);
//! - the client has not started to release it;
//! - the client observed no sign of a newer grant: no guarded write of its was refused as
//!   `Fenced`, no renewal or release answered 0.
//!
//! A crashed client's hold stays valid until its deadline: nobody released it.
//!
//! Two events are **in one connected group** (they have related [`Lineage`]s) when no network
//! change happened between them and the nodes that served them were in one group. Every split,
//! regrouping, heal, pause and resume starts a new era: a side of a split (or the nodes around a
//! paused one) that held no copy of a partition claims it empty and starts a history of its own,
//! so events before and after are not compared. From a heal or a resume to the next settle the
//! two histories still act apart (the sides have not seen each other yet, or are merging), and
//! events then are related to nothing. An operation in flight across an era change is related to
//! nothing either (which side executed it is not known). The checks are therefore strict between
//! faults that split the cluster, and through kills, restarts, leaves and link resets.
//!
//! # Invariants
//!
//! - **(a) one holder**: when a grant is acknowledged, it was not made while another owner's
//!   hold of the same key in the same connected group was valid, nor was such a hold made while
//!   it was. Grants are placed in time by when the primary made them (deadline less lease), not
//!   by their acknowledgement, which write-through may delay past the lease. Every hold is
//!   compared with every other when the later of the two is acknowledged, so no moment escapes.
//!   Also: a valid holder's guarded write is never refused, and its release and renewal never
//!   answer 0 (the lock was lost or granted to another).
//! - **(b) tokens grow**: of two grants to different owners in one connected group, the one
//!   the primary made later has the larger token, across failovers and handoffs.
//! - **(c) fenced writes land in token order**: on every node (so on the primary, before and
//!   after a promotion), the token carried by the stored value of a lock key never decreases
//!   while its version increases (a write with an older token landing after one with a newer
//!   token), checked after every event the node handles; and a node accepting writes for the
//!   key's partition holds a token at least that of the newest acknowledged guarded write.
//!
//! Excuses: locks are write-through whatever the write mode, so a lock (and so (a), (b)) may
//! be lost only where invariant 1 lets an acknowledged write go in write-through (more kills
//! than backups, a link reset and more than one kill or a join, kills combined with splits
//! or pauses);
//! a guarded data write
//! follows the write mode, so (c)'s second half also excuses delayed-write losses. Across a
//! network split the two sides grant independently (no consensus) and the heal merges by
//! version: that is excused by the connected-group rule above and counted.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use bytes::Bytes;
use store::{ExportCursor, LockMode, Op, Reply, SetExpiry, StoreError};

use crate::client::OpKind;
use crate::world::Sim;

/// The most guarded writes a holder does before it releases.
const LOCK_WRITES_PER_HOLD_MAX: u64 = 3;
/// A slow holder waits up to this many leases before each write (it then writes with a stale
/// token).
const SLOW_HOLDER_LEASES_MAX: u64 = 2;

/// Where an event happened: the network era (bumped by every heal or regrouping) and the
/// group of the node that served it (`None` when the network is whole).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Lineage {
    era: u64,
    group: Option<BTreeSet<usize>>,
}

impl Lineage {
    /// Whether the two events happened in one connected group (see the module docs).
    pub(crate) fn related(&self, other: &Lineage) -> bool {
        self.era == other.era
            && match (&self.group, &other.group) {
                (Some(mine), Some(theirs)) => !mine.is_disjoint(theirs),
                _ => true,
            }
    }
}

/// A grant acknowledged to a client.
#[derive(Clone, Debug)]
struct Hold {
    client: usize,
    owner: Bytes,
    token: u64,
    deadline_ms: u64,
    /// `None`: the operation was in flight across a heal, and is related to nothing.
    lineage_opt: Option<Lineage>,
    /// The lock-loss epoch at the grant (see `LockModel::lock_loss_epoch`).
    loss_epoch: u64,
    /// When the primary granted it: its deadline less its lease (every node reads the one
    /// simulated clock). A grant may be acknowledged long after (write-through waits for a
    /// backup), so grants are ordered by this, not by their acknowledgement.
    executed_at_ms: u64,
    /// Why it stopped being valid before its deadline, if it did, and since when.
    ended_opt: Option<&'static str>,
    ended_at_ms: u64,
}

impl Hold {
    /// The last moment the hold is valid: its deadline, or just before its client gave it up
    /// (a release and the next grant can share a millisecond) or learned it was gone.
    fn valid_until_ms(&self) -> u64 {
        match self.ended_opt {
            Some(_) => self.ended_at_ms.saturating_sub(1).min(self.deadline_ms),
            None => self.deadline_ms,
        }
    }
}

/// A guarded write a client issued, found again by the value it stored.
#[derive(Clone, Debug)]
struct WriteInfo {
    client: usize,
    lineage_opt: Option<Lineage>,
}

/// What a node was last seen to store under a lock key.
#[derive(Clone, Debug)]
struct Sample {
    member: cluster::table::Member,
    token: u64,
    version: (u64, u64),
    value: Bytes,
}

/// One lock key: its lock and, in database 0, the data its holders write.
#[derive(Debug)]
pub(crate) struct LockKey {
    /// Its index in the client model (for its name and partition).
    pub(crate) model_key: usize,
    holds: Vec<Hold>,
    /// The newest acknowledged guarded write: token, value, where, data-loss epoch.
    acked_high_opt: Option<(u64, Bytes, Lineage, u64)>,
}

/// What the lock checks know; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct LockModel {
    pub(crate) keys: Vec<LockKey>,
    writes: BTreeMap<Bytes, WriteInfo>,
    samples: BTreeMap<(usize, usize), Sample>,
    /// Bumped whenever a settle closes a window in which a lock could be lost: holds of
    /// different epochs are not compared.
    pub(crate) lock_loss_epoch: u64,
    /// The same for a guarded data write (delayed-write losses included).
    pub(crate) data_loss_epoch: u64,
    /// Bumped by every heal or regrouping of the network, and by the settle that ends it.
    pub(crate) network_era: u64,
    /// A heal or regrouping happened since the last settle.
    pub(crate) healing: bool,
}

/// A lock client's state (the rest, its operation in flight, is the client's `Flight`).
#[derive(Clone, Debug, Default)]
pub(crate) struct LockClient {
    /// A crash makes a new worker: a new owner id.
    generation: u64,
    held_opt: Option<Held>,
    want_opt: Option<Want>,
    sequence: u64,
}

#[derive(Clone, Debug)]
struct Held {
    lock_key: usize,
    /// Index of its `Hold` in the key's list.
    hold: usize,
    token: u64,
    lease_ms: u64,
    writes_left: u64,
    /// Never releases: the lease must run out.
    crashes: bool,
    /// Writes on after its lease, with a stale token.
    slow: bool,
}

#[derive(Clone, Debug)]
struct Want {
    lock_key: usize,
    lease_ms: u64,
    wait_until_ms: u64,
}

impl LockClient {
    fn owner(&self, client: usize) -> Bytes {
        Bytes::from(format!("worker-{client}.{}", self.generation))
    }
}

/// The token a lock client's value carries: `t<token>:c<client>:<sequence>`.
fn token_of(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?;
    text.strip_prefix('t')?.split(':').next()?.parse().ok()
}

impl Sim {
    /// Where an event served by node `index` happens now; `None` between a heal and the next
    /// settle, while the sides still act apart although the network is whole (the nodes have not
    /// seen each other yet, or are merging): such events are related to nothing.
    pub(crate) fn lineage_of(&self, index: usize) -> Option<Lineage> {
        if self.locks.healing {
            return None;
        }
        let group = self.groups.as_ref().map(|groups| {
            groups
                .iter()
                .find(|group| group.contains(&index))
                .cloned()
                .unwrap_or_else(|| BTreeSet::from([index]))
        });
        Some(Lineage {
            era: self.locks.network_era,
            group,
        })
    }

    /// Whether the faults since the last settle may have lost an acknowledged lock: what
    /// invariant 1 excuses in write-through (locks are write-through in either mode).
    fn lock_loss_excused_now(&self) -> bool {
        let window = &self.window;
        let backups = self.config.backups;
        let copies_beyond_primary = window
            .fewest_eligible
            .map_or(backups, |eligible| backups.min(eligible.saturating_sub(1)));
        window.kills > 0
            && (backups == 0
                || window.kills > copies_beyond_primary
                || (window.kills > 1 && window.kills + window.link_resets > copies_beyond_primary)
                || window.partitions > 0
                || window.pauses > 0)
    }

    /// Called when a settle closes the fault window: later checks do not compare across a
    /// window that could lose locks or data.
    pub(crate) fn close_lock_window(&mut self) {
        if self.locks.healing {
            // Settled: one connected group again, with one history from here on.
            self.locks.healing = false;
            self.locks.network_era += 1;
        }
        if self.lock_loss_excused_now() {
            self.locks.lock_loss_epoch += 1;
        }
        if self.window.excuses_loss(&self.config) {
            self.locks.data_loss_epoch += 1;
        }
    }

    /// Creates the lock keys and the lock clients (after the regular clients).
    pub(crate) fn add_lock_clients(&mut self) {
        if self.config.lock_clients == 0 {
            return;
        }
        let partitions = self.config.num_partitions;
        for index in 0..self.config.lock_keys.max(1) {
            let key = Bytes::from(format!("lock:{index}"));
            let model_key = self.model.keys.len();
            self.model.keys.push(crate::client::KeyModel::new(
                key,
                partitions,
                crate::client::KeyKind::Locked,
            ));
            self.locks.keys.push(LockKey {
                model_key,
                holds: Vec::new(),
                acked_high_opt: None,
            });
        }
        let running = self.running_nodes();
        for _ in 0..self.config.lock_clients {
            let node = *self.rng.pick(&running).unwrap_or(&0);
            let client = self.clients.len();
            self.clients.push(crate::client::Client::new(
                node,
                Some(LockClient::default()),
                self.now_ms,
            ));
            let at_ms = self.now_ms + self.rng.up_to(10);
            self.schedule_client(client, at_ms);
        }
    }

    /// The lock client's next operation; false when it has nothing to do now (it is then woken
    /// at `next_op_ms`).
    pub(crate) fn start_lock_op(&mut self, client: usize) -> Option<(usize, Op, OpKind)> {
        let now_ms = self.now_ms;
        let mut state = self.clients[client].lock.clone()?;
        let result = if let Some(held) = state.held_opt.clone() {
            let hold = &self.locks.keys[held.lock_key].holds[held.hold];
            let model_key = self.locks.keys[held.lock_key].model_key;
            let key = self.model.keys[model_key].key.clone();
            let expired = now_ms > hold.deadline_ms;
            if held.writes_left > 0 && (!expired || held.slow) {
                if let Some(held_mut) = &mut state.held_opt {
                    held_mut.writes_left -= 1;
                }
                if !expired && self.rng.chance(0.1) {
                    let lease_ms = held.lease_ms;
                    Some((
                        model_key,
                        Op::LockRenew {
                            key,
                            token: held.token,
                            lease_ms,
                        },
                        OpKind::LockRenew {
                            lock_key: held.lock_key,
                            hold: held.hold,
                            lease_ms,
                        },
                    ))
                } else {
                    state.sequence += 1;
                    let value =
                        Bytes::from(format!("t{}:c{client}:{}", held.token, state.sequence));
                    self.locks.writes.insert(
                        value.clone(),
                        WriteInfo {
                            client,
                            lineage_opt: self.lineage_of(self.clients[client].node),
                        },
                    );
                    Some((
                        model_key,
                        Op::GuardedSet {
                            key,
                            value: value.clone(),
                            expiry: SetExpiry::Never,
                            token: held.token,
                        },
                        OpKind::GuardedSet {
                            lock_key: held.lock_key,
                            hold: held.hold,
                            value,
                            era: self.locks.network_era,
                        },
                    ))
                }
            } else if held.crashes {
                // The worker dies holding the lock: nobody releases it, its lease runs out.
                self.stats.lock_crashes += 1;
                self.trace(|| format!("lock client {client} crashes holding {held:?}"));
                state.held_opt = None;
                state.generation += 1;
                None
            } else if expired {
                // The lease ran out under it (a slow worker): nothing to release.
                self.stats.lock_leases_ran_out += 1;
                state.held_opt = None;
                None
            } else {
                // From here on the client no longer counts itself a holder.
                self.end_hold(held.lock_key, held.hold, "released");
                state.held_opt = None;
                Some((
                    model_key,
                    Op::LockRelease {
                        key,
                        token: held.token,
                    },
                    OpKind::LockRelease {
                        lock_key: held.lock_key,
                        hold: held.hold,
                    },
                ))
            }
        } else {
            let want = match state.want_opt.clone() {
                Some(want) if now_ms <= want.wait_until_ms => want,
                _ => {
                    let lease = self.config.lock_lease_ms;
                    let wait_ms = if self.rng.chance(0.5) {
                        0
                    } else {
                        self.rng.between(1, self.config.lock_wait_ms_max)
                    };
                    Want {
                        lock_key: self.rng.index(self.locks.keys.len()),
                        lease_ms: self.rng.between(lease.0, lease.1),
                        wait_until_ms: now_ms + wait_ms,
                    }
                }
            };
            state.want_opt = Some(want.clone());
            let model_key = self.locks.keys[want.lock_key].model_key;
            Some((
                model_key,
                Op::LockAcquire {
                    key: self.model.keys[model_key].key.clone(),
                    owner: state.owner(client),
                    mode: LockMode::Lease,
                    lease_ms: want.lease_ms,
                    wait_ms: want.wait_until_ms - now_ms,
                },
                OpKind::LockAcquire {
                    lock_key: want.lock_key,
                    lease_ms: want.lease_ms,
                    era: self.locks.network_era,
                },
            ))
        };
        self.clients[client].lock = Some(state);
        result
    }

    /// A lock client's operation was answered.
    pub(crate) fn lock_acknowledged(
        &mut self,
        client: usize,
        kind: &OpKind,
        reply: Reply,
        started_ms: u64,
        retried: bool,
    ) {
        let now_ms = self.now_ms;
        let Some(mut state) = self.clients[client].lock.clone() else {
            return;
        };
        match (kind, reply) {
            (
                OpKind::LockAcquire {
                    lock_key,
                    lease_ms,
                    era,
                },
                Reply::LockGranted { token, deadline_ms },
            ) => {
                let node = self.clients[client].node;
                let lineage_opt = self.lineage_of(node).filter(|lineage| lineage.era == *era);
                let owner = state.owner(client);
                let executed_at_ms = deadline_ms.saturating_sub((*lease_ms).max(1));
                self.check_grant(
                    *lock_key,
                    client,
                    &owner,
                    (token, executed_at_ms, deadline_ms),
                    &lineage_opt,
                );
                self.stats.lock_grants += 1;
                let writes_left = 1 + self.rng.up_to(LOCK_WRITES_PER_HOLD_MAX - 1);
                let crashes = self.rng.chance(self.config.lock_crash_chance);
                let slow = self.rng.chance(self.config.lock_slow_chance);
                let loss_epoch = self.locks.lock_loss_epoch;
                let holds = &mut self.locks.keys[*lock_key].holds;
                holds.push(Hold {
                    client,
                    owner,
                    token,
                    deadline_ms,
                    lineage_opt,
                    loss_epoch,
                    executed_at_ms,
                    ended_opt: None,
                    ended_at_ms: 0,
                });
                state.held_opt = Some(Held {
                    lock_key: *lock_key,
                    hold: holds.len() - 1,
                    token,
                    lease_ms: *lease_ms,
                    writes_left,
                    crashes,
                    slow,
                });
                state.want_opt = None;
                if slow {
                    // It stalls before writing, maybe past its lease.
                    let stall_ms = self.rng.up_to(SLOW_HOLDER_LEASES_MAX * *lease_ms);
                    self.delay_lock_client(client, now_ms + stall_ms);
                }
            }
            (OpKind::LockAcquire { .. }, Reply::LockHeld(holder)) => {
                self.stats.lock_contended += 1;
                match state.want_opt.clone() {
                    Some(want) if want.wait_until_ms > now_ms => {
                        // The manager would serve the queue at the holder's deadline (or on a
                        // release, which wakes this client): retry then.
                        let retry_at_ms = holder.deadline_ms.saturating_add(1).max(now_ms + 1);
                        self.stats.lock_waits += 1;
                        self.delay_lock_client(client, retry_at_ms.min(want.wait_until_ms));
                    }
                    _ => state.want_opt = None,
                }
            }
            (
                OpKind::GuardedSet {
                    lock_key,
                    value,
                    era,
                    ..
                },
                Reply::Written { .. },
            ) => {
                self.stats.guarded_writes_acked += 1;
                let token = token_of(value).unwrap_or(0);
                let node = self.clients[client].node;
                let lineage_opt = self.lineage_of(node).filter(|lineage| lineage.era == *era);
                let epoch = self.locks.data_loss_epoch;
                let key = &mut self.locks.keys[*lock_key];
                let Some(lineage) = lineage_opt else {
                    // Written on one side of a split and acknowledged after the heal: the merge
                    // may keep the other side's later write.
                    self.stats.lock_checks_skipped_across_heal += 1;
                    self.clients[client].lock = Some(state);
                    return;
                };
                if key
                    .acked_high_opt
                    .as_ref()
                    .is_none_or(|(high, ..)| token >= *high)
                {
                    key.acked_high_opt = Some((token, value.clone(), lineage, epoch));
                }
            }
            (
                OpKind::GuardedSet { lock_key, hold, .. },
                Reply::Error(StoreError::Fenced { held_token_opt, .. }),
            ) => {
                self.stats.guarded_writes_fenced += 1;
                if self.locks.keys[*lock_key].holds[*hold].ended_opt.is_none() {
                    let what = format!(
                        "its guarded write was refused (the lock is held with {held_token_opt:?})"
                    );
                    self.lost_while_valid(*lock_key, *hold, &what, false);
                    // A newer grant, or none: either way this token is no good any more.
                    self.end_hold(*lock_key, *hold, "fenced");
                }
                if state
                    .held_opt
                    .as_ref()
                    .is_some_and(|held| held.hold == *hold)
                {
                    state.held_opt = None;
                }
            }
            (OpKind::LockRelease { lock_key, hold }, Reply::Integer(released)) => {
                if released == 1 {
                    self.stats.lock_releases += 1;
                    self.wake_lock_waiters(*lock_key);
                } else {
                    // It was live when the release started (a release starts only then).
                    self.lost_while_valid(*lock_key, *hold, "its release answered 0", retried);
                }
            }
            (
                OpKind::LockRenew {
                    lock_key,
                    hold,
                    lease_ms,
                },
                Reply::Integer(renewed),
            ) => {
                let still_held = state
                    .held_opt
                    .as_ref()
                    .is_some_and(|held| held.hold == *hold);
                if renewed == 1 {
                    self.stats.lock_renewals += 1;
                    // The primary's new deadline is at least this: it renewed after the client
                    // started asking.
                    let deadline = &mut self.locks.keys[*lock_key].holds[*hold].deadline_ms;
                    *deadline = (*deadline).max(started_ms + lease_ms);
                } else {
                    if self.locks.keys[*lock_key].holds[*hold].ended_opt.is_none() {
                        self.lost_while_valid(*lock_key, *hold, "its renewal answered 0", retried);
                        self.end_hold(*lock_key, *hold, "not renewed");
                    }
                    if still_held {
                        state.held_opt = None;
                    }
                }
            }
            (kind, reply) => {
                self.fail(
                    "locks: an operation is answered as documented",
                    format!("client {client}: {kind:?} answered {reply:?}"),
                );
            }
        }
        self.clients[client].lock = Some(state);
    }

    /// A lock client's operation ended without an answer: a grant it may have got is unknown
    /// to it (nobody holds it; its lease runs out), a write may land later (fencing decides).
    pub(crate) fn lock_gave_up(&mut self, client: usize, kind: &OpKind) {
        if let OpKind::LockAcquire { .. } = kind
            && let Some(state) = &mut self.clients[client].lock
        {
            state.want_opt = None;
        }
    }

    /// Moves the lock client's next operation to `at_ms`.
    fn delay_lock_client(&mut self, client: usize, at_ms: u64) {
        self.clients[client].next_op_ms = at_ms;
        self.schedule_client(client, at_ms);
    }

    /// A release of `lock_key` was acknowledged: its waiters try now (the manager grants the
    /// head in the same step as the release).
    fn wake_lock_waiters(&mut self, lock_key: usize) {
        let now_ms = self.now_ms;
        for client in 0..self.clients.len() {
            let waiting = self.clients[client].lock.as_ref().is_some_and(|state| {
                state.held_opt.is_none()
                    && state
                        .want_opt
                        .as_ref()
                        .is_some_and(|want| want.lock_key == lock_key)
            });
            if waiting && !self.clients[client].has_op() {
                self.delay_lock_client(client, now_ms);
            }
        }
    }

    /// Ends hold `hold` of `lock_key` now, for `why`.
    fn end_hold(&mut self, lock_key: usize, hold: usize, why: &'static str) {
        let now_ms = self.now_ms;
        if let Some(hold) = self.locks.keys[lock_key].holds.get_mut(hold)
            && hold.ended_opt.is_none()
        {
            hold.ended_opt = Some(why);
            hold.ended_at_ms = now_ms;
        }
    }

    /// Invariants (a) and (b) when a grant to `owner` of `lock_key` is acknowledged: `grant` is
    /// its token, when the primary made it and its deadline. Against every other owner's hold
    /// of the same connected group: (a) neither was made while the other was valid, (b) the one
    /// made later has the larger token.
    fn check_grant(
        &mut self,
        lock_key: usize,
        client: usize,
        owner: &Bytes,
        grant: (u64, u64, u64),
        lineage_opt: &Option<Lineage>,
    ) {
        let (token, executed_at_ms, deadline_ms) = grant;
        let Some(lineage) = lineage_opt else {
            self.stats.lock_checks_skipped_across_heal += 1;
            return;
        };
        if self.lock_loss_excused_now() {
            self.stats.lock_checks_excused += 1;
            return;
        }
        let epoch = self.locks.lock_loss_epoch;
        let key = &self.locks.keys[lock_key];
        let name = String::from_utf8_lossy(&self.model.keys[key.model_key].key).into_owned();
        let at = |ms: u64| ms.saturating_sub(self.start_ms);
        let mut problem_opt = None;
        let mut unrelated = 0;
        for hold in key.holds.iter().rev() {
            if hold.owner == *owner || hold.loss_epoch != epoch {
                continue;
            }
            let Some(other) = &hold.lineage_opt else {
                continue;
            };
            let overlap = if hold.executed_at_ms <= executed_at_ms {
                executed_at_ms <= hold.valid_until_ms()
            } else {
                hold.executed_at_ms <= deadline_ms
            };
            let out_of_order = (hold.executed_at_ms < executed_at_ms && hold.token >= token)
                || (hold.executed_at_ms > executed_at_ms && hold.token <= token);
            if !other.related(lineage) {
                unrelated += usize::from(overlap);
                continue;
            }
            let describe = format!(
                "{name}: client {client} ({}) was granted token {token} at {} ms (valid until {} ms); client {} ({}) token {} at {} ms (valid until {} ms)",
                String::from_utf8_lossy(owner),
                at(executed_at_ms),
                at(deadline_ms),
                hold.client,
                String::from_utf8_lossy(&hold.owner),
                hold.token,
                at(hold.executed_at_ms),
                at(hold.valid_until_ms())
            );
            if overlap {
                problem_opt = Some((
                    "locks (a): never two valid holders in one connected group",
                    describe,
                ));
                break;
            }
            if out_of_order {
                problem_opt = Some(("locks (b): tokens grow per key", describe));
                break;
            }
        }
        self.stats.lock_split_grants += u64::from(unrelated > 0);
        if let Some((check, detail)) = problem_opt {
            self.fail(check, detail);
        }
    }

    /// Hold `hold` of `lock_key` learned that its lock is gone (`what`): a failure while the
    /// hold is live by the clock and no loss is excused. `retried`: an earlier attempt may have
    /// executed, which explains a 0 from a release or renewal.
    fn lost_while_valid(&mut self, lock_key: usize, hold: usize, what: &str, retried: bool) {
        let now_ms = self.now_ms;
        let Some(hold) = self.locks.keys[lock_key].holds.get(hold).cloned() else {
            return;
        };
        if now_ms > hold.deadline_ms
            || retried
            || hold.loss_epoch != self.locks.lock_loss_epoch
            || hold.lineage_opt.is_none()
            || hold.lineage_opt != self.lineage_of(self.clients[hold.client].node)
            || self.lock_loss_excused_now()
        {
            return;
        }
        let name =
            String::from_utf8_lossy(&self.model.keys[self.locks.keys[lock_key].model_key].key)
                .into_owned();
        self.fail(
            "locks (a): a valid holder keeps its lock",
            format!(
                "{name}: client {} holds token {} until {} ms, but {what} at {} ms",
                hold.client,
                hold.token,
                hold.deadline_ms.saturating_sub(self.start_ms),
                now_ms.saturating_sub(self.start_ms)
            ),
        );
    }

    /// Invariant (c), first half: what node `index` stores under each lock key, compared with
    /// what it stored before. Called after every event the node handled.
    pub(crate) fn sample_lock_values(&mut self, index: usize) {
        if self.locks.keys.is_empty() || !self.nodes[index].is_up() || self.failure.is_some() {
            return;
        }
        let member = self.nodes[index].member;
        for lock_key in 0..self.locks.keys.len() {
            let model_key = self.locks.keys[lock_key].model_key;
            let (key, partition) = (
                self.model.keys[model_key].key.clone(),
                self.model.keys[model_key].partition,
            );
            let Some((value, version)) = stored_value(&self.nodes[index].store, partition, &key)
            else {
                continue;
            };
            let Some(token) = token_of(&value) else {
                continue;
            };
            let sample = Sample {
                member,
                token,
                version,
                value,
            };
            let previous_opt = self.locks.samples.insert((index, lock_key), sample.clone());
            let Some(previous) = previous_opt.filter(|previous| previous.member == member) else {
                continue;
            };
            if sample.token >= previous.token {
                continue;
            }
            let newer = self.locks.writes.get(&previous.value).cloned();
            let older = self.locks.writes.get(&sample.value).cloned();
            let related = match (&newer, &older) {
                (Some(newer), Some(older)) => match (&newer.lineage_opt, &older.lineage_opt) {
                    (Some(newer), Some(older)) => newer.related(older),
                    _ => false,
                },
                _ => false,
            };
            let landed_later = sample.version > previous.version;
            let writer = |info: &Option<WriteInfo>| {
                info.as_ref().map_or("unknown".to_string(), |info| {
                    format!("client {} in {:?}", info.client, info.lineage_opt)
                })
            };
            let detail = format!(
                "{} stores {} (token {}, version {:?}) under {} after {} (token {}, version {:?}); written by {} / {}",
                self.nodes[index].name,
                String::from_utf8_lossy(&sample.value),
                sample.token,
                sample.version,
                String::from_utf8_lossy(&key),
                String::from_utf8_lossy(&previous.value),
                previous.token,
                previous.version,
                writer(&older),
                writer(&newer)
            );
            if !related {
                // The two writes happened on two sides of a split; the heal kept the larger
                // version (last writer wins).
                self.stats.lock_split_merges += 1;
                self.trace(|| format!("older token after a split: {detail}"));
            } else if landed_later {
                self.fail(
                    "locks (c): a write with an older token never lands after a newer one",
                    detail,
                );
                return;
            } else if self.window.excuses_loss(&self.config) {
                self.trace(|| format!("excused loss of a guarded write: {detail}"));
            } else {
                self.fail("locks (c): a stored guarded write is not lost", detail);
                return;
            }
        }
    }

    /// Invariant (c), second half, every `check_interval_ms`: a node accepting writes for a lock
    /// key's partition stores a token at least that of the newest acknowledged guarded write.
    pub(crate) fn check_lock_primaries(&mut self) {
        if self.locks.keys.is_empty() || self.window.excuses_loss(&self.config) {
            return;
        }
        let now_ms = self.now_ms;
        let epoch = self.locks.data_loss_epoch;
        for lock_key in 0..self.locks.keys.len() {
            let Some((high, high_value, lineage, acked_epoch)) =
                self.locks.keys[lock_key].acked_high_opt.clone()
            else {
                continue;
            };
            if acked_epoch != epoch {
                continue;
            }
            let model_key = self.locks.keys[lock_key].model_key;
            let (key, partition) = (
                self.model.keys[model_key].key.clone(),
                self.model.keys[model_key].partition,
            );
            for index in self.running_nodes() {
                if !self.nodes[index].engine.accepting_writes(partition, now_ms)
                    || !self
                        .lineage_of(index)
                        .is_some_and(|here| lineage.related(&here))
                {
                    continue;
                }
                let stored = stored_value(&self.nodes[index].store, partition, &key);
                let token = stored
                    .as_ref()
                    .and_then(|(value, _)| token_of(value))
                    .unwrap_or(0);
                if token < high {
                    let detail = format!(
                        "{} accepts writes for {} (partition {partition}) and stores {:?} (token {token}); {} (token {high}) was acknowledged",
                        self.nodes[index].name,
                        String::from_utf8_lossy(&key),
                        stored.map(|(value, _)| value),
                        String::from_utf8_lossy(&high_value)
                    );
                    self.fail(
                        "locks (c): the primary holds the newest acknowledged guarded write",
                        detail,
                    );
                    return;
                }
            }
        }
    }
}

/// The value stored under `key` in database 0 of `partition`, and its version, read without
/// touching the store (an export, as a snapshot reads it).
fn stored_value(store: &store::Store, partition: u32, key: &Bytes) -> Option<(Bytes, (u64, u64))> {
    let data = store.partition(partition);
    let mut cursor = ExportCursor::new();
    loop {
        let chunk = data.export_chunk(&mut cursor, 64);
        if chunk.is_empty() {
            return None;
        }
        let mut past_db0 = false;
        for mutation in chunk {
            if mutation.db != 0 {
                past_db0 = true;
                continue;
            }
            if mutation.key == *key {
                return match mutation.change {
                    store::Change::Put(image) => match image.value {
                        store::ValueImage::String(bytes) => {
                            Some((bytes, (image.version.hlc, u64::from(image.version.node))))
                        }
                        store::ValueImage::Hash(_) => None,
                    },
                    store::Change::Delete { .. } => None,
                };
            }
        }
        if past_db0 {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lineage(era: u64, group: Option<&[usize]>) -> Lineage {
        Lineage {
            era,
            group: group.map(|nodes| nodes.iter().copied().collect()),
        }
    }

    fn check(a: Lineage, b: Lineage, expect: bool) {
        assert_eq!(a.related(&b), expect, "{a:?} ~ {b:?}");
        assert_eq!(b.related(&a), expect, "{b:?} ~ {a:?}");
    }

    #[test]
    fn events_are_related_within_one_era_unless_their_groups_are_disjoint() {
        check(lineage(0, None), lineage(0, None), true);
        // Before a split and on either side of it: the side descends from the whole.
        check(lineage(0, None), lineage(0, Some(&[0, 1])), true);
        check(lineage(0, Some(&[0, 1])), lineage(0, Some(&[0, 1])), true);
        check(lineage(0, Some(&[0, 1])), lineage(0, Some(&[2, 3])), false);
        // A heal starts a new era: the sides' histories were merged by version.
        check(lineage(0, Some(&[0, 1])), lineage(1, None), false);
        check(lineage(0, None), lineage(1, None), false);
    }

    /// A settled 3-node cluster with one lock key and no clients running yet.
    fn settled_sim() -> Sim {
        let config = crate::SimConfig {
            clients: 0,
            lock_clients: 1,
            lock_keys: 1,
            ..crate::SimConfig::default()
        };
        let mut sim = Sim::new(5, config);
        for _ in 0..3 {
            sim.step(&crate::Step::AddNode).expect("a node starts");
        }
        sim.step(&crate::Step::AssertConverged).expect("it settles");
        sim
    }

    /// A hold whose lease is still live (`live`) or ran out (its deadline is set relative to
    /// the simulation's clock by `check_grant_fails`).
    fn hold(client: usize, owner: &str, token: u64, live: bool) -> Hold {
        Hold {
            client,
            owner: Bytes::from(owner.to_string()),
            token,
            deadline_ms: u64::from(live),
            lineage_opt: Some(Lineage {
                era: 0,
                group: None,
            }),
            loss_epoch: 0,
            executed_at_ms: 0,
            ended_opt: None,
            ended_at_ms: 0,
        }
    }

    fn check_grant_fails(holds: Vec<Hold>, token: u64, expect: Option<&str>) {
        let mut sim = settled_sim();
        let now_ms = sim.now_ms;
        sim.locks.keys[0].holds = holds
            .into_iter()
            .map(|mut hold| {
                hold.executed_at_ms = now_ms - 600;
                hold.deadline_ms = if hold.deadline_ms == 1 {
                    now_ms + 500
                } else {
                    now_ms - 1
                };
                if hold.ended_opt.is_some() {
                    hold.ended_at_ms = now_ms - 10;
                }
                hold
            })
            .collect();
        let lineage = sim.lineage_of(0);
        let grant = (token, now_ms, now_ms + 300);
        sim.check_grant(0, 1, &Bytes::from_static(b"worker-1.0"), grant, &lineage);
        let check = sim.failure.as_ref().map(|failure| failure.check);
        match expect {
            Some(prefix) => assert!(
                check.is_some_and(|check| check.starts_with(prefix)),
                "{check:?}"
            ),
            None => assert_eq!(check, None),
        }
    }

    #[test]
    fn a_grant_while_another_owner_holds_a_live_lease_fails_check_a() {
        // Live until later: a second holder.
        check_grant_fails(vec![hold(0, "worker-0.0", 5, true)], 9, Some("locks (a)"));
        // Its lease ran out: the grant is fine, with a larger token.
        check_grant_fails(vec![hold(0, "worker-0.0", 5, false)], 9, None);
        // Released: fine.
        let mut released = hold(0, "worker-0.0", 5, true);
        released.ended_opt = Some("released");
        check_grant_fails(vec![released], 9, None);
        // The same owner again (a refresh): fine.
        check_grant_fails(vec![hold(1, "worker-1.0", 9, true)], 9, None);
    }

    #[test]
    fn grants_are_ordered_by_when_the_primary_made_them_not_by_their_acknowledgement() {
        let mut sim = settled_sim();
        let now_ms = sim.now_ms;
        let lineage = sim.lineage_of(0);
        // Granted later, acknowledged first: valid from now - 50 until now + 200.
        let mut later = hold(0, "worker-0.0", 9, true);
        later.executed_at_ms = now_ms - 50;
        later.deadline_ms = now_ms + 200;
        sim.locks.keys[0].holds = vec![later];
        // Made before it, acknowledged only now (a backup was slow), its lease already over
        // when the other was made: no conflict, and its smaller token is in order.
        let owner = Bytes::from_static(b"worker-1.0");
        sim.check_grant(0, 1, &owner, (5, now_ms - 400, now_ms - 60), &lineage);
        assert_eq!(sim.failure, None);
        // Still valid when the other was made: two holders.
        sim.check_grant(0, 1, &owner, (5, now_ms - 400, now_ms - 40), &lineage);
        let check = sim.failure.as_ref().map(|failure| failure.check);
        assert_eq!(
            check,
            Some("locks (a): never two valid holders in one connected group")
        );
    }

    #[test]
    fn a_grant_with_a_token_no_larger_than_an_earlier_one_fails_check_b() {
        check_grant_fails(vec![hold(0, "worker-0.0", 9, false)], 9, Some("locks (b)"));
        check_grant_fails(vec![hold(0, "worker-0.0", 12, false)], 9, Some("locks (b)"));
        // From the other side of a split: not compared.
        let mut other_side = hold(0, "worker-0.0", 12, false);
        other_side.lineage_opt = Some(Lineage {
            era: 7,
            group: None,
        });
        check_grant_fails(vec![other_side], 9, None);
    }

    /// Stores `value` under `lock:0` on node `index` as a replicated write would (a version
    /// above the one held).
    fn store_on(sim: &Sim, index: usize, value: &str) {
        let partition = sim.model.keys[sim.locks.keys[0].model_key].partition;
        let op = Op::Set {
            key: Bytes::from_static(b"lock:0"),
            value: Bytes::from(value.to_string()),
            expiry: SetExpiry::Never,
            condition: store::SetCondition::Always,
            return_old: false,
            flags: 0,
        };
        let _ = sim.nodes[index]
            .store
            .partition(partition)
            .execute(0, op, sim.now_ms);
    }

    #[test]
    fn a_node_storing_an_older_token_over_a_newer_one_fails_check_c() {
        let mut sim = settled_sim();
        let lineage_opt = sim.lineage_of(0);
        // Tokens above any the lock client got while the cluster formed.
        let values = [
            "t1152921504606846981:c5:1",
            "t1152921504606846985:c9:1",
            "t1152921504606846983:c7:1",
        ];
        for (client, value) in [5, 9, 7].into_iter().zip(values) {
            sim.locks.writes.insert(
                Bytes::from(value),
                WriteInfo {
                    client,
                    lineage_opt: lineage_opt.clone(),
                },
            );
        }
        store_on(&sim, 0, values[0]);
        sim.sample_lock_values(0);
        store_on(&sim, 0, values[1]);
        sim.sample_lock_values(0);
        assert_eq!(sim.failure, None);
        store_on(&sim, 0, values[2]);
        sim.sample_lock_values(0);
        let check = sim.failure.as_ref().map(|failure| failure.check);
        assert_eq!(
            check,
            Some("locks (c): a write with an older token never lands after a newer one")
        );
    }

    #[test]
    fn a_primary_missing_the_newest_acknowledged_guarded_write_fails_check_c() {
        let mut sim = settled_sim();
        let lineage = sim.lineage_of(0).expect("no split: a lineage");
        let owners = sim.owners_of(b"lock:0");
        let (low, high) = (1u64 << 60, (1u64 << 60) + 4);
        store_on(&sim, owners[0], &format!("t{low}:c0:1"));
        let acked = |token: u64| {
            Some((
                token,
                Bytes::from(format!("t{token}:c0:1")),
                lineage.clone(),
                0,
            ))
        };
        sim.locks.keys[0].acked_high_opt = acked(low);
        sim.check_lock_primaries();
        assert_eq!(sim.failure, None);
        sim.locks.keys[0].acked_high_opt = acked(high);
        sim.check_lock_primaries();
        let check = sim.failure.as_ref().map(|failure| failure.check);
        assert_eq!(
            check,
            Some("locks (c): the primary holds the newest acknowledged guarded write")
        );
    }

    #[test]
    fn a_stored_value_names_its_token() {
        assert_eq!(token_of(b"t42:c3:7"), Some(42));
        assert_eq!(token_of(b"t18446744073709551615:c0:1"), Some(u64::MAX));
        assert_eq!(token_of(b"c3-7"), None);
        assert_eq!(token_of(b"t:c3:7"), None);
        assert_eq!(token_of(b"\xff"), None);
    }
}
