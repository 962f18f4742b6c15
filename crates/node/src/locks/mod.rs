//! Session locks on a node (PROTOCOL.md §13): the `LockManager` that queues waiters on a
//! partition's primary and grants them the lock the moment it is free, with no polling.
//!
//! A lock is an entry of the store's lock database, so the store and the engine already grant,
//! release, replicate and fail locks over; what they cannot do is wait. The manager adds that:
//!
//! - Every lock operation of this node's clients (`execute`) and every one relayed to this node
//!   by a peer (`handle_relayed`, called from the link reader before the engine sees the
//!   request) goes through the manager. On the primary it runs the operation on the engine; an
//!   acquisition that finds the lock held and may wait joins the key's FIFO queue.
//! - A queue is served (`pump`) right after a release through the manager, when the holder's
//!   lease deadline passes (a timer armed at the deadline the store reported), when the
//!   partition changes (the engine's host sets a flag), and when a waiter's own wait runs out.
//!   Serving a queue tries the head's acquisition on the engine: granted, the head is answered
//!   and the next one tried; held, the lease timer is re-armed.
//! - When the partition moves (handoff, failover, deposition), local waiters are told to retry
//!   through the relay, and relayed ones get `NotPrimary`, so their node retries at the new
//!   primary.
//!
//! One mutex guards all queues and is held across the engine calls that grant or refuse, so a
//! release and the grant to the next waiter are one step, and a new request can never see the
//! lock free while someone is queued (strict FIFO). The engine never calls back into the
//! manager: its host only marks partitions in `LockSignals` (lock order: manager, then the
//! engine's partition lock).

mod route;
mod session;
mod signals;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cluster::engine::{Execution, Host, WaitReason};
use cluster::table::Member;
use cluster::wire::{PeerMessage, RelayResult, SmallList, UnavailableReason};
use parking_lot::Mutex;
use store::{LockMode, Op, Reply, StoreError};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::cluster_io::ClusterIo;
use crate::pending::Pending;
use crate::router::{self, RELAY_DEADLINE};

pub(crate) use session::{SESSION_LOCKS_PER_CONNECTION_MAX, SessionLocks};
pub(crate) use signals::LockSignals;

/// Whether this node is the partition's primary but cannot act for a moment (a handoff, an
/// announcement, a fence, a table exchange): a relayed operation is retried and a queue is
/// served again on the partition's change signal. The other reasons mean the primary is
/// elsewhere or not known yet.
fn engine_defers(reason: WaitReason) -> bool {
    !matches!(
        reason,
        WaitReason::NoRecord | WaitReason::NoLivePrimary | WaitReason::NoSuchPartition
    )
}

/// The manager's bounds; `NodeConfig` gives them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LockLimits {
    /// Most requests queued for one lock.
    pub(crate) waiters_per_key_max: usize,
    /// Most requests queued on this node over all locks.
    pub(crate) waiters_max: usize,
}

/// Where a queued request came from, and so how it is answered.
enum Origin {
    /// A client of this node: its task awaits the outcome.
    Local(oneshot::Sender<WaiterOutcome>),
    /// A peer's relay: answered with a `Response` frame.
    Relayed { from: Member, id: u64 },
}

/// An operation the engine ran here: its reply, and the backups' acknowledgements due before the
/// reply may be sent (none in delayed-write for data, or without backups).
pub(crate) struct Executed {
    pub(crate) reply: Reply,
    pub(crate) waits: SmallList<(Member, u64)>,
}

impl Executed {
    fn now(reply: Reply) -> Executed {
        Executed {
            reply,
            waits: SmallList::new(),
        }
    }

    /// The token, when this is a grant.
    fn granted_token(&self) -> Option<u64> {
        match self.reply {
            Reply::LockGranted { token, .. } => Some(token),
            _ => None,
        }
    }
}

/// What a local waiter learns.
pub(crate) enum WaiterOutcome {
    /// The acquisition ran on the engine (granted, or refused with an error); acknowledgements
    /// may still be due.
    Executed(Executed),
    /// Its wait ran out: the lock stayed held.
    TimedOut,
    /// The partition moved or this node stopped being able to serve it: try again through the
    /// router.
    Reroute,
}

/// One request in a lock's queue.
struct Waiter {
    id: u64,
    db: u8,
    owner: Bytes,
    mode: LockMode,
    lease_ms: u64,
    origin: Origin,
    enqueued_at: Instant,
    /// The timer of its wait deadline, removed when it leaves the queue.
    timeout: TimerKey,
}

impl Waiter {
    fn acquire_op(&self, key: &Bytes) -> Op {
        Op::LockAcquire {
            key: key.clone(),
            owner: self.owner.clone(),
            mode: self.mode,
            lease_ms: self.lease_ms,
            wait_ms: 0,
        }
    }

    /// Whether nobody is listening for the answer any more (a local client went away).
    fn is_abandoned(&self) -> bool {
        matches!(&self.origin, Origin::Local(sender) if sender.is_closed())
    }
}

/// The queue of one lock.
struct KeyQueue {
    partition: u32,
    waiters: VecDeque<Waiter>,
    /// The timer armed at the holder's lease deadline, if any.
    lease_timer: Option<TimerKey>,
}

/// Timers by due instant; the sequence number keeps keys unique.
type TimerKey = (Instant, u64);

#[derive(Clone, Debug)]
enum TimerKind {
    /// The holder's lease deadline: serve the queue.
    Lease,
    /// A waiter's wait deadline.
    WaitTimeout { waiter_id: u64 },
}

#[derive(Clone, Debug)]
struct Timer {
    key: Bytes,
    kind: TimerKind,
}

#[derive(Default)]
struct State {
    /// Only locks with waiters have a queue.
    queues: HashMap<Bytes, KeyQueue>,
    num_waiters: usize,
    timers: BTreeMap<TimerKey, Timer>,
    next_timer_seq: u64,
}

impl State {
    /// Removes every queued waiter `leaves` picks (unanswered) and returns the keys whose
    /// queues lost one.
    fn remove_waiters(&mut self, leaves: impl Fn(&Waiter) -> bool) -> Vec<Bytes> {
        let mut keys = Vec::new();
        let mut removed_timers = Vec::new();
        for (key, queue) in &mut self.queues {
            let before = queue.waiters.len();
            queue.waiters.retain(|waiter| {
                let leaving = leaves(waiter);
                if leaving {
                    removed_timers.push(waiter.timeout);
                }
                !leaving
            });
            if queue.waiters.len() < before {
                keys.push(key.clone());
            }
        }
        self.num_waiters -= removed_timers.len();
        for timer in removed_timers {
            self.timers.remove(&timer);
        }
        keys
    }

    fn add_timer(&mut self, at: Instant, timer: Timer) -> TimerKey {
        self.next_timer_seq += 1;
        let key = (at, self.next_timer_seq);
        self.timers.insert(key, timer);
        key
    }
}

/// What a lock operation came to, right away.
pub(crate) enum Attempt {
    /// It ran on the engine here.
    Executed(Executed),
    /// It is queued; a local request's outcome arrives on the receiver (a relayed one is
    /// answered on its link).
    Queued(Option<oneshot::Receiver<WaiterOutcome>>),
    /// This node is not the primary: relay it there.
    Forward(Member),
    /// The partition cannot act now; retry after it changes.
    Wait(WaitReason),
}

/// Effects decided under the manager's mutex and carried out after it is released.
#[derive(Default)]
struct Effects {
    /// Relayed requests answered: requester, request id, the lock's key, what ran.
    responses: Vec<(Member, u64, Bytes, Executed)>,
    /// Relayed requests whose partition moved: requester, request id, partition.
    not_primary: Vec<(Member, u64, u32)>,
}

/// The node's lock manager; see the module docs.
pub(crate) struct LockManager {
    io: Arc<ClusterIo>,
    clock: Arc<dyn Clock>,
    metrics: Arc<admin::Metrics>,
    limits: LockLimits,
    num_partitions: u32,
    /// A `parking_lot` mutex: nothing awaits while it is held; engine calls made under it only
    /// take a partition lock and queue frames.
    state: Mutex<State>,
    /// Woken when a timer earlier than every other is armed.
    timers_changed: Notify,
    next_waiter_id: AtomicU64,
    /// Relayed operations waiting for their partition to be able to act, at most
    /// `LockLimits::waiters_max`.
    relayed_waiting_for_change: AtomicUsize,
    /// The node's run id and a connection number make an owner id unique across restarts.
    owner_prefix: String,
    /// Cancelled when the node stops: queued requests are answered and waits end.
    shutdown: CancellationToken,
}

impl LockManager {
    pub(crate) fn new(
        io: Arc<ClusterIo>,
        clock: Arc<dyn Clock>,
        metrics: Arc<admin::Metrics>,
        limits: LockLimits,
        num_partitions: u32,
        run_id: &str,
        shutdown: CancellationToken,
    ) -> Arc<LockManager> {
        Arc::new(LockManager {
            io,
            clock,
            metrics,
            limits,
            num_partitions,
            state: Mutex::new(State::default()),
            timers_changed: Notify::new(),
            next_waiter_id: AtomicU64::new(1),
            relayed_waiting_for_change: AtomicUsize::new(0),
            owner_prefix: run_id.chars().take(16).collect(),
            shutdown,
        })
    }

    /// The owner id of a client connection that gave no `OWNER`: unique per connection and per
    /// node start, so a restarted node's connection 5 is not taken for the old one.
    pub(crate) fn connection_owner(&self, client_id: u64) -> Bytes {
        Bytes::from(format!("{}:{client_id}", self.owner_prefix))
    }

    pub(crate) fn io(&self) -> &Arc<ClusterIo> {
        &self.io
    }

    fn partition_of(&self, key: &[u8]) -> u32 {
        store::partition_of(key, self.num_partitions)
    }

    /// Runs a lock operation (`Op::is_lock_op`) of this node's client: at once when this node is
    /// the primary and the answer is known, else later (a relay, a queue, acknowledgements).
    ///
    /// With the connection's `SessionLocks`, a grant is tied to the connection and a release
    /// unties it once it ran (released, or not held with that token).
    ///
    /// Anything that may grant a lock and is not answered at once runs in its own task, so a
    /// client that goes away before the grant arrives does not leave the lock held: a queued
    /// acquisition leaves its queue, and a grant that arrives anyway is released again. The
    /// task holds the connection's `SessionLocks` weakly, so a connection that closes while it
    /// waits frees its other `SESSION` locks at once.
    pub(crate) fn execute(
        self: &Arc<Self>,
        db: u8,
        op: Op,
        session_locks_opt: Option<SessionLocks>,
    ) -> Pending<Reply> {
        debug_assert!(op.is_lock_op());
        let Some(key) = op.key().cloned() else {
            return Pending::Ready(Reply::Error(StoreError::DatabaseOutOfRange));
        };
        let partition = self.partition_of(&key);
        let started = Instant::now();
        let first = self.attempt(partition, db, op.clone(), None);
        let first = match first {
            Attempt::Executed(executed) if executed.waits.is_empty() => {
                if let Some(session_locks) = &session_locks_opt {
                    session_locks.settle(&key, &op, &executed.reply);
                }
                return Pending::Ready(executed.reply);
            }
            other => other,
        };
        let manager = Arc::clone(self);
        let (mut reply_tx, reply_rx) = oneshot::channel();
        let session_locks_weak_opt = session_locks_opt.as_ref().map(SessionLocks::downgrade);
        drop(session_locks_opt);
        tokio::spawn(async move {
            let reply = route::finish(
                &manager,
                partition,
                db,
                op.clone(),
                first,
                started,
                reply_tx.closed(),
            )
            .await;
            let granted_token_opt = match &reply {
                Reply::LockGranted { token, .. } => Some(*token),
                _ => None,
            };
            let mut tied = false;
            if let Some(session_locks) = session_locks_weak_opt
                .as_ref()
                .and_then(|weak| weak.upgrade())
            {
                session_locks.settle(&key, &op, &reply);
                tied = granted_token_opt.is_some();
            }
            // A tied grant whose connection is gone is released by the `SessionLocks` drop.
            if reply_tx.send(reply).is_err()
                && !tied
                && let Some(token) = granted_token_opt
            {
                // Nobody will ever learn this token: give the lock back at once.
                manager.release_detached(key, token);
            }
        });
        Pending::Later(Box::pin(async move {
            reply_rx.await.unwrap_or_else(|_| {
                Reply::Error(StoreError::PartitionUnavailable {
                    partition,
                    reason: "the node is shutting down".to_string(),
                })
            })
        }))
    }

    /// Releases `key` held with `token` in the background (a connection closed, or a grant
    /// nobody is waiting for any more).
    pub(crate) fn release_detached(self: &Arc<Self>, key: Bytes, token: u64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // The runtime is gone (the node stopped): the lease deadline frees the lock.
            return;
        };
        let manager = Arc::clone(self);
        runtime.spawn(async move {
            let partition = manager.partition_of(&key);
            let op = Op::LockRelease { key, token };
            let first = manager.attempt(partition, 0, op.clone(), None);
            let reply = route::finish(
                &manager,
                partition,
                0,
                op,
                first,
                Instant::now(),
                std::future::pending(),
            )
            .await;
            tracing::debug!(?reply, "released a lock whose holder went away");
        });
    }

    /// A lock operation relayed by `from` as request `id`: answered here when this node is the
    /// primary (at once, after acknowledgements, or when a queued acquisition is granted or its
    /// wait runs out), else with `NotPrimary`. While the partition waits for a handoff, a fence
    /// or a table exchange, the manager tries it again on each change of the partition
    /// (`retry_relayed_after_change`).
    pub(crate) fn handle_relayed(
        self: &Arc<Self>,
        from: Member,
        id: u64,
        partition: u32,
        db: u8,
        op: Op,
    ) {
        if partition >= self.num_partitions {
            // The engine answers an out-of-range partition (and counts it).
            let message = PeerMessage::Request {
                id,
                partition,
                db,
                op,
            };
            self.io
                .engine
                .handle_message(from, message, self.clock.now_ms());
            return;
        }
        let key = op.key().cloned().unwrap_or_default();
        match self.attempt(partition, db, op.clone(), Some((from, id))) {
            Attempt::Executed(executed) => self.respond(from, id, key, executed),
            Attempt::Queued(_) => {}
            Attempt::Wait(reason) if engine_defers(reason) => {
                self.retry_relayed_after_change(from, id, partition, db, op);
            }
            Attempt::Forward(_) | Attempt::Wait(_) => self.respond_not_primary(from, id, partition),
        }
    }

    /// A relayed operation whose partition cannot act for a moment (a handoff, an
    /// announcement, a fence, a table exchange) is tried again here each time the partition
    /// changes, not handed to the engine's deferral: the engine would run it past the queues,
    /// so a release would wake no waiter and an acquisition could pass them. At the relay
    /// deadline it is answered `Unavailable`, and the requester tries again.
    fn retry_relayed_after_change(
        self: &Arc<Self>,
        from: Member,
        id: u64,
        partition: u32,
        db: u8,
        op: Op,
    ) {
        let unavailable = move |reason| PeerMessage::Response {
            id,
            result: RelayResult::Unavailable { reason },
        };
        let waiting = self
            .relayed_waiting_for_change
            .fetch_add(1, Ordering::Relaxed);
        if waiting >= self.limits.waiters_max {
            self.relayed_waiting_for_change
                .fetch_sub(1, Ordering::Relaxed);
            let _ = self
                .io
                .host()
                .send(from, &unavailable(UnavailableReason::DeferredQueueFull));
            return;
        }
        let manager = Arc::clone(self);
        tokio::spawn(async move {
            let started = Instant::now();
            let deadline = started + RELAY_DEADLINE;
            let key = op.key().cloned().unwrap_or_default();
            let notify = manager.io.host().partition_notify(partition);
            loop {
                // The look that found the partition unable to act came before this
                // registration; `wait_for_change` looks again within its retry interval.
                let mut changed = Box::pin(notify.notified());
                changed.as_mut().enable();
                router::wait_for_change(changed, deadline.into_std()).await;
                if Instant::now() >= deadline {
                    let _ = manager
                        .io
                        .host()
                        .send(from, &unavailable(UnavailableReason::WaitTimedOut));
                    break;
                }
                let waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                let retry =
                    route::with_wait_ms(&op, route::wait_ms_of(&op).saturating_sub(waited_ms));
                match manager.attempt(partition, db, retry, Some((from, id))) {
                    Attempt::Executed(executed) => {
                        manager.respond(from, id, key, executed);
                        break;
                    }
                    Attempt::Queued(_) => break,
                    Attempt::Wait(reason) if engine_defers(reason) => {}
                    Attempt::Forward(_) | Attempt::Wait(_) => {
                        manager.respond_not_primary(from, id, partition);
                        break;
                    }
                }
            }
            manager
                .relayed_waiting_for_change
                .fetch_sub(1, Ordering::Relaxed);
        });
    }

    /// The link to `member` went down: its relayed waiters leave their queues. The requester
    /// failed those relays and retries them with new request ids, so an answer to the old ones
    /// would reach nobody, and a grant to one would hold the lock for nobody until its lease
    /// ran out.
    pub(crate) fn link_down(self: &Arc<Self>, member: Member) {
        let mut effects = Effects::default();
        {
            let mut state = self.state.lock();
            let keys = state.remove_waiters(
                |waiter| matches!(waiter.origin, Origin::Relayed { from, .. } if from == member),
            );
            for key in keys {
                self.pump_locked(&mut state, &mut effects, &key);
            }
        }
        self.apply(effects);
    }

    /// One attempt of a lock operation on this node, under the manager's mutex.
    /// `relayed_opt` names the requester of a relayed operation.
    pub(crate) fn attempt(
        self: &Arc<Self>,
        partition: u32,
        db: u8,
        op: Op,
        relayed_opt: Option<(Member, u64)>,
    ) -> Attempt {
        let mut effects = Effects::default();
        let attempt = {
            let mut state = self.state.lock();
            self.attempt_locked(&mut state, &mut effects, partition, db, op, relayed_opt)
        };
        self.apply(effects);
        attempt
    }

    fn attempt_locked(
        self: &Arc<Self>,
        state: &mut State,
        effects: &mut Effects,
        partition: u32,
        db: u8,
        op: Op,
        relayed_opt: Option<(Member, u64)>,
    ) -> Attempt {
        let Some(key) = op.key().cloned() else {
            return Attempt::Executed(Executed::now(Reply::Error(StoreError::DatabaseOutOfRange)));
        };
        // A lock that became free (an expired lease not yet noticed) goes to the queue first.
        if self.pump_locked(state, effects, &key) > 0 {
            self.metrics.lock_lease_expiries.inc();
        }
        let now_ms = self.clock.now_ms();
        let waiting = match &op {
            Op::LockAcquire {
                owner,
                mode,
                lease_ms,
                wait_ms,
                ..
            } => Some((owner.clone(), *mode, *lease_ms, *wait_ms)),
            _ => None,
        };
        let is_release = matches!(op, Op::LockRelease { .. });
        let is_inspect = matches!(op, Op::LockInspect { .. });
        let execution = self.io.engine.execute(partition, db, op, now_ms);
        let (reply, waits) = match execution {
            Execution::Done(reply) => (reply, SmallList::new()),
            Execution::AwaitAcks { reply, waits } => (reply, waits),
            Execution::Forward(member) => return Attempt::Forward(member),
            Execution::Wait { reason } => return Attempt::Wait(reason),
        };
        let executed = |reply: Reply, waits| Attempt::Executed(Executed { reply, waits });
        match reply {
            Reply::LockHeld(mut holder) => {
                let queue = state.queues.get(&key);
                let queue_len = queue.map_or(0, |queue| queue.waiters.len());
                // Waiters whose client went away keep their places until served or purged;
                // they are not reported.
                let num_live_waiters = || {
                    let live = queue.map_or(0, |queue| {
                        queue
                            .waiters
                            .iter()
                            .filter(|waiter| !waiter.is_abandoned())
                            .count()
                    });
                    u32::try_from(live).unwrap_or(u32::MAX)
                };
                if is_inspect {
                    holder.num_waiters = num_live_waiters();
                    return executed(Reply::LockHeld(holder), waits);
                }
                self.metrics.lock_contended_acquisitions.inc();
                let Some((owner, mode, lease_ms, wait_ms)) = waiting else {
                    return executed(Reply::LockHeld(holder), waits);
                };
                if wait_ms == 0 {
                    holder.num_waiters = num_live_waiters();
                    return executed(Reply::LockHeld(holder), waits);
                }
                let queue_len = if queue_len >= self.limits.waiters_per_key_max
                    || state.num_waiters >= self.limits.waiters_max
                {
                    // Make room first: waiters whose client went away hold places until served.
                    state.remove_waiters(Waiter::is_abandoned);
                    state
                        .queues
                        .get(&key)
                        .map_or(0, |queue| queue.waiters.len())
                } else {
                    queue_len
                };
                if queue_len >= self.limits.waiters_per_key_max {
                    return Attempt::Executed(Executed::now(Reply::Error(
                        StoreError::TooManyLockWaiters {
                            max_lock_waiters_per_key: self.limits.waiters_per_key_max,
                        },
                    )));
                }
                if state.num_waiters >= self.limits.waiters_max {
                    return Attempt::Executed(Executed::now(Reply::Error(
                        StoreError::TooManyLockWaitersInTotal {
                            max_lock_waiters: self.limits.waiters_max,
                        },
                    )));
                }
                let (origin, receiver_opt) = match relayed_opt {
                    Some((from, id)) => (Origin::Relayed { from, id }, None),
                    None => {
                        let (sender, receiver) = oneshot::channel();
                        (Origin::Local(sender), Some(receiver))
                    }
                };
                let waiter_id = self.next_waiter_id.fetch_add(1, Ordering::Relaxed);
                let now = Instant::now();
                let timeout = state.add_timer(
                    now + Duration::from_millis(wait_ms),
                    Timer {
                        key: key.clone(),
                        kind: TimerKind::WaitTimeout { waiter_id },
                    },
                );
                let queue = state.queues.entry(key.clone()).or_insert_with(|| KeyQueue {
                    partition,
                    waiters: VecDeque::new(),
                    lease_timer: None,
                });
                queue.waiters.push_back(Waiter {
                    id: waiter_id,
                    db,
                    owner,
                    mode,
                    lease_ms,
                    origin,
                    enqueued_at: now,
                    timeout,
                });
                state.num_waiters += 1;
                self.arm_lease_timer(state, &key, holder.deadline_ms);
                self.timers_changed.notify_one();
                Attempt::Queued(receiver_opt)
            }
            Reply::LockGranted { .. } => {
                self.metrics.lock_wait_duration.observe(Duration::ZERO);
                executed(reply, waits)
            }
            Reply::Integer(1) if is_release => {
                // Released: the next waiter gets the lock in the same step.
                self.pump_locked(state, effects, &key);
                executed(reply, waits)
            }
            reply => executed(reply, waits),
        }
    }

    /// Serves the queue of `key`: grants the lock to waiters in order while it is free.
    /// Returns how many waiters were granted it.
    fn pump_locked(
        self: &Arc<Self>,
        state: &mut State,
        effects: &mut Effects,
        key: &Bytes,
    ) -> usize {
        let mut num_granted = 0;
        loop {
            let Some(queue) = state.queues.get_mut(key) else {
                return num_granted;
            };
            let partition = queue.partition;
            let Some(head) = queue.waiters.front() else {
                if let Some(lease_timer) = queue.lease_timer {
                    state.timers.remove(&lease_timer);
                }
                state.queues.remove(key);
                return num_granted;
            };
            if head.is_abandoned() {
                self.pop_head(state, key);
                continue;
            }
            let op = head.acquire_op(key);
            let db = head.db;
            let now_ms = self.clock.now_ms();
            match self.io.engine.execute(partition, db, op, now_ms) {
                Execution::Done(Reply::LockHeld(holder)) => {
                    self.arm_lease_timer(state, key, holder.deadline_ms);
                    return num_granted;
                }
                Execution::Wait { reason } if engine_defers(reason) => {
                    // The partition is briefly unable to act: its change signal serves the
                    // queue again.
                    return num_granted;
                }
                Execution::Forward(_) | Execution::Wait { .. } => {
                    self.reroute_all(state, effects, key);
                    return num_granted;
                }
                Execution::Done(reply) => {
                    if self.serve_head(state, effects, key, Executed::now(reply)) {
                        num_granted += 1;
                    }
                }
                Execution::AwaitAcks { reply, waits } => {
                    if self.serve_head(state, effects, key, Executed { reply, waits }) {
                        num_granted += 1;
                    }
                }
            }
        }
    }

    /// Answers the head waiter of `key` with its acquisition's outcome (a grant, or an error
    /// such as out-of-memory) and removes it. Returns whether it was a grant.
    fn serve_head(
        self: &Arc<Self>,
        state: &mut State,
        effects: &mut Effects,
        key: &Bytes,
        executed: Executed,
    ) -> bool {
        let Some(waiter) = self.pop_head(state, key) else {
            return false;
        };
        let granted = executed.granted_token().is_some();
        if granted {
            self.metrics
                .lock_wait_duration
                .observe(waiter.enqueued_at.elapsed());
        }
        self.complete(effects, key, waiter, executed);
        granted
    }

    /// Removes the head waiter of `key`'s queue and its timer.
    fn pop_head(&self, state: &mut State, key: &Bytes) -> Option<Waiter> {
        let waiter = state.queues.get_mut(key)?.waiters.pop_front()?;
        state.timers.remove(&waiter.timeout);
        state.num_waiters -= 1;
        Some(waiter)
    }

    /// Answers a waiter with the engine's execution of its acquisition.
    fn complete(
        self: &Arc<Self>,
        effects: &mut Effects,
        key: &Bytes,
        waiter: Waiter,
        executed: Executed,
    ) {
        match waiter.origin {
            Origin::Local(sender) => {
                if let Err(WaiterOutcome::Executed(executed)) =
                    sender.send(WaiterOutcome::Executed(executed))
                    && let Some(token) = executed.granted_token()
                {
                    // The client left between the check and the grant: release it again.
                    self.release_detached(key.clone(), token);
                }
            }
            Origin::Relayed { from, id } => {
                effects.responses.push((from, id, key.clone(), executed))
            }
        }
    }

    /// The partition of `key` moved: every waiter retries where it now lives.
    fn reroute_all(&self, state: &mut State, effects: &mut Effects, key: &Bytes) {
        let Some(queue) = state.queues.remove(key) else {
            return;
        };
        if let Some(lease_timer) = queue.lease_timer {
            state.timers.remove(&lease_timer);
        }
        for waiter in queue.waiters {
            state.timers.remove(&waiter.timeout);
            state.num_waiters -= 1;
            match waiter.origin {
                Origin::Local(sender) => {
                    let _ = sender.send(WaiterOutcome::Reroute);
                }
                Origin::Relayed { from, id } => {
                    effects.not_primary.push((from, id, queue.partition))
                }
            }
        }
    }

    /// Arms the timer of `key`'s queue at the holder's lease deadline (wall-clock ms on this
    /// node's clock), unless one is armed no later.
    fn arm_lease_timer(&self, state: &mut State, key: &Bytes, deadline_ms: u64) {
        let now_ms = self.clock.now_ms();
        // Live while now <= deadline: the first millisecond it can be taken is deadline + 1.
        let delay =
            Duration::from_millis(deadline_ms.saturating_add(1).saturating_sub(now_ms).max(1));
        let at = Instant::now() + delay;
        let Some(existing) = state.queues.get(key).map(|queue| queue.lease_timer) else {
            return;
        };
        if existing.is_some_and(|(armed_at, _)| armed_at <= at) {
            return;
        }
        if let Some(existing) = existing {
            state.timers.remove(&existing);
        }
        let timer = state.add_timer(
            at,
            Timer {
                key: key.clone(),
                kind: TimerKind::Lease,
            },
        );
        if let Some(queue) = state.queues.get_mut(key) {
            queue.lease_timer = Some(timer);
        }
        self.timers_changed.notify_one();
    }

    /// Sends what was decided under the mutex.
    fn apply(self: &Arc<Self>, effects: Effects) {
        for (from, id, key, executed) in effects.responses {
            self.respond(from, id, key, executed);
        }
        for (from, id, partition) in effects.not_primary {
            self.respond_not_primary(from, id, partition);
        }
    }

    /// Answers relayed request `id` of `from` about the lock of `key`, after the
    /// acknowledgements it must wait for but the requester's own: the answer follows the
    /// `Replicate` on the requester's link, as in the engine's relay (PROTOCOL.md §6).
    fn respond(self: &Arc<Self>, from: Member, id: u64, key: Bytes, mut executed: Executed) {
        executed.waits.retain(|(member, _)| *member != from);
        if executed.waits.is_empty() {
            self.send_response(from, id, key, executed.reply);
            return;
        }
        let manager = Arc::clone(self);
        tokio::spawn(async move {
            let reply = manager.confirm(&key, executed).await;
            manager.send_response(from, id, key, reply);
        });
    }

    /// `executed`'s reply once the backups acknowledged what it waits for, or an
    /// `UNCONFIRMED` error after the relay deadline. A grant that is not confirmed is given
    /// back: its requester is told it failed and will not use the token.
    pub(super) async fn confirm(self: &Arc<Self>, key: &Bytes, executed: Executed) -> Reply {
        let partition = self.partition_of(key);
        let granted_token_opt = match &executed.reply {
            Reply::LockGranted { token, .. } => Some(*token),
            _ => None,
        };
        let deadline = std::time::Instant::now() + RELAY_DEADLINE;
        let reply = router::acknowledged(
            &self.io,
            partition,
            executed.reply,
            &executed.waits,
            deadline,
        )
        .await;
        if let (Reply::Error(StoreError::Unconfirmed { .. }), Some(token)) =
            (&reply, granted_token_opt)
        {
            self.release_detached(key.clone(), token);
        }
        reply
    }

    fn send_response(self: &Arc<Self>, from: Member, id: u64, key: Bytes, reply: Reply) {
        let granted_token_opt = match &reply {
            Reply::LockGranted { token, .. } => Some(*token),
            _ => None,
        };
        let message = PeerMessage::Response {
            id,
            result: RelayResult::Reply(reply),
        };
        if self.io.host().send(from, &message).is_none()
            && let Some(token) = granted_token_opt
        {
            // No link to the requester any more: nobody can learn the token, so the lock is
            // released at once rather than held until its lease runs out.
            self.release_detached(key, token);
        }
    }

    fn respond_not_primary(&self, from: Member, id: u64, partition: u32) {
        let message = PeerMessage::Response {
            id,
            result: RelayResult::NotPrimary {
                record: self.io.engine.record(partition),
            },
        };
        let _ = self.io.host().send(from, &message);
    }

    /// Serves timers and partition changes until shutdown.
    pub(crate) async fn run(self: Arc<Self>, signals: Arc<LockSignals>) {
        let shutdown = self.shutdown.clone();
        loop {
            let next_due = self.state.lock().timers.keys().next().map(|(at, _)| *at);
            let sleep = async {
                match next_due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = signals.changed() => {
                    for partition in signals.take_changed() {
                        self.partition_changed(partition);
                    }
                }
                () = self.timers_changed.notified() => {}
                () = sleep => self.fire_due_timers(),
                () = shutdown.cancelled() => break,
            }
        }
        // Nothing would time the queued requests out any more: local ones are told to retry
        // (and end, the node stopping), relayed ones retry at another node.
        let mut effects = Effects::default();
        {
            let mut state = self.state.lock();
            let keys: Vec<Bytes> = state.queues.keys().cloned().collect();
            for key in keys {
                self.reroute_all(&mut state, &mut effects, &key);
            }
        }
        self.apply(effects);
    }

    /// Resolves when the node stops.
    pub(crate) async fn stopped(&self) {
        self.shutdown.cancelled().await;
    }

    /// Re-serves every queue of `partition` (it may have moved, or become able to act).
    fn partition_changed(self: &Arc<Self>, partition: u32) {
        let mut effects = Effects::default();
        {
            let mut state = self.state.lock();
            let keys: Vec<Bytes> = state
                .queues
                .iter()
                .filter(|(_, queue)| queue.partition == partition)
                .map(|(key, _)| key.clone())
                .collect();
            for key in keys {
                self.pump_locked(&mut state, &mut effects, &key);
            }
        }
        self.apply(effects);
    }

    /// Handles every timer due by now: lease deadlines serve their queue, wait deadlines
    /// answer their waiter.
    fn fire_due_timers(self: &Arc<Self>) {
        let now = Instant::now();
        loop {
            let mut effects = Effects::default();
            {
                let mut state = self.state.lock();
                let Some((&timer_key, _)) = state.timers.iter().next() else {
                    return;
                };
                if timer_key.0 > now {
                    return;
                }
                let Some(timer) = state.timers.remove(&timer_key) else {
                    return;
                };
                if !state.queues.contains_key(&timer.key) {
                    // The queue emptied since: nothing to serve.
                    continue;
                }
                match timer.kind {
                    TimerKind::Lease => {
                        if let Some(queue) = state.queues.get_mut(&timer.key)
                            && queue.lease_timer == Some(timer_key)
                        {
                            queue.lease_timer = None;
                        }
                        // A grant now means the holder's lease ran out before it released.
                        if self.pump_locked(&mut state, &mut effects, &timer.key) > 0 {
                            self.metrics.lock_lease_expiries.inc();
                        }
                    }
                    TimerKind::WaitTimeout { waiter_id } => {
                        self.time_out(&mut state, &mut effects, &timer.key, waiter_id);
                        self.pump_locked(&mut state, &mut effects, &timer.key);
                    }
                }
            }
            self.apply(effects);
        }
    }

    /// Removes waiter `waiter_id` of `key` whose wait ran out and answers it.
    fn time_out(&self, state: &mut State, effects: &mut Effects, key: &Bytes, waiter_id: u64) {
        let Some(queue) = state.queues.get_mut(key) else {
            return;
        };
        let Some(index) = queue
            .waiters
            .iter()
            .position(|waiter| waiter.id == waiter_id)
        else {
            return;
        };
        let Some(waiter) = queue.waiters.remove(index) else {
            return;
        };
        state.num_waiters -= 1;
        match waiter.origin {
            Origin::Local(sender) => {
                let _ = sender.send(WaiterOutcome::TimedOut);
            }
            Origin::Relayed { from, id } => {
                effects
                    .responses
                    .push((from, id, key.clone(), Executed::now(Reply::Nil)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster_io::tests::member_of;

    /// Queues a waiter of `origin` for `key`, with its wait timer, as `attempt_locked` does.
    fn enqueue(state: &mut State, key: &'static str, id: u64, origin: Origin) {
        let key = Bytes::from_static(key.as_bytes());
        let timeout = state.add_timer(
            Instant::now(),
            Timer {
                key: key.clone(),
                kind: TimerKind::WaitTimeout { waiter_id: id },
            },
        );
        state
            .queues
            .entry(key)
            .or_insert_with(|| KeyQueue {
                partition: 0,
                waiters: VecDeque::new(),
                lease_timer: None,
            })
            .waiters
            .push_back(Waiter {
                id,
                db: 0,
                owner: Bytes::from_static(b"o"),
                mode: LockMode::Lease,
                lease_ms: 1,
                origin,
                enqueued_at: Instant::now(),
                timeout,
            });
        state.num_waiters += 1;
    }

    #[test]
    fn the_command_parser_and_the_store_bound_leases_waits_and_owners_alike() {
        assert_eq!(resp::SCD_LEASE_MS_MAX, store::LOCK_LEASE_MS_MAX);
        assert_eq!(resp::SCD_WAIT_MS_MAX, store::LOCK_WAIT_MS_MAX);
        assert_eq!(resp::SCD_OWNER_MAX_BYTES, store::LOCK_OWNER_MAX_BYTES);
    }

    #[tokio::test]
    async fn a_peers_relayed_waiters_and_abandoned_local_ones_can_be_removed_with_their_timers() {
        let (a, b) = (member_of(1), member_of(2));
        let mut state = State::default();
        let (live_tx, _live_rx) = oneshot::channel();
        let (gone_tx, gone_rx) = oneshot::channel();
        drop(gone_rx);
        enqueue(&mut state, "k1", 1, Origin::Relayed { from: a, id: 10 });
        enqueue(&mut state, "k1", 2, Origin::Relayed { from: b, id: 11 });
        enqueue(&mut state, "k1", 3, Origin::Relayed { from: a, id: 12 });
        enqueue(&mut state, "k2", 4, Origin::Local(live_tx));
        enqueue(&mut state, "k3", 5, Origin::Local(gone_tx));

        let keys = state.remove_waiters(
            |waiter| matches!(waiter.origin, Origin::Relayed { from, .. } if from == a),
        );
        assert_eq!(keys, vec![Bytes::from_static(b"k1")]);
        let left: Vec<u64> = state.queues[&Bytes::from_static(b"k1")]
            .waiters
            .iter()
            .map(|waiter| waiter.id)
            .collect();
        assert_eq!(left, vec![2]);
        assert_eq!((state.num_waiters, state.timers.len()), (3, 3));

        let keys = state.remove_waiters(Waiter::is_abandoned);
        assert_eq!(keys, vec![Bytes::from_static(b"k3")]);
        assert_eq!((state.num_waiters, state.timers.len()), (2, 2));
        assert!(state.queues[&Bytes::from_static(b"k3")].waiters.is_empty());
    }
}
