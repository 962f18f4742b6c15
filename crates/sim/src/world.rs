//! The simulated world: nodes (real `Membership`, `Engine` and `Store`), a clock, and a network
//! of heartbeat datagrams (delay, jitter, loss) and per-pair ordered links (latency, bandwidth,
//! resets, partitions between groups), driven by one seeded event queue.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cluster::auth::ClusterSecret;
use cluster::engine::{Engine, EngineConfig, FenceReason, WriteMode};
use cluster::membership::{
    MemberState, Membership, MembershipConfig, MembershipEvent, NodeAddresses, SelfIdentity,
};
use cluster::node_id::{Incarnation, NodeId};
use cluster::table::{Member, ViewMember};
use cluster::wire::{PeerMessage, RelayResult, decode_frame, encode_frame};
use store::{Store, StoreConfig};

use crate::client::{Client, Model};
use crate::host::SimHost;
use crate::rng::Rng;

/// How a simulated cluster is set up.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Partitions (a power of two).
    pub num_partitions: u32,
    /// Backups per partition.
    pub backups: usize,
    /// Write-through or delayed-write.
    pub write_mode: WriteMode,
    /// Delayed-write lag bound, in ms.
    pub max_lag_ms: u64,
    /// One-way latency of links and datagrams, in ms.
    pub latency_ms: u64,
    /// Extra delay of a datagram, uniform in `0..=jitter_ms`.
    pub jitter_ms: u64,
    /// Extra delay of a link frame, uniform in `0..=link_jitter_ms` (a link still delivers in
    /// order: a delayed frame holds back the ones behind it, as TCP does). With it, a node's
    /// frames to two peers arrive at different times, so a write acknowledged before a backup
    /// has it can be lost by a kill in between.
    pub link_jitter_ms: u64,
    /// Probability that a heartbeat datagram is lost.
    pub datagram_loss: f64,
    /// Link bandwidth, in bytes per ms.
    pub link_bytes_per_ms: usize,
    /// Simulated clients (each attached to a node, reattaching when it dies).
    pub clients: usize,
    /// String keys each client owns (only it writes them).
    pub keys_per_client: usize,
    /// Counter keys each client owns.
    pub counters_per_client: usize,
    /// Keys every client writes (for split-heal merges).
    pub shared_keys: usize,
    /// Time between a client's operations, uniform in this range, in ms.
    pub op_interval_ms: (u64, u64),
    /// Lock clients (web workers taking a key's lock, writing it guarded by their token and
    /// releasing it; see the `locks` module), besides `clients`.
    pub lock_clients: usize,
    /// Keys the lock clients contend for.
    pub lock_keys: usize,
    /// A lock client's lease, uniform in this range, in ms.
    pub lock_lease_ms: (u64, u64),
    /// A lock client waits for a held lock up to this long (half of them do not wait), in ms.
    pub lock_wait_ms_max: u64,
    /// Probability that a holder crashes: it never releases, the lease must run out.
    pub lock_crash_chance: f64,
    /// Probability that a holder stalls before each write, up to two leases, and then writes
    /// with a token that may be stale.
    pub lock_slow_chance: f64,
    /// Invariant 2 and the bounds are checked this often, in ms.
    pub check_interval_ms: u64,
    /// `AssertConverged` fails if the cluster has not settled after this long, in ms.
    pub settle_timeout_ms: u64,
    /// Print every step and notable event.
    pub trace: bool,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            num_partitions: 64,
            backups: 1,
            write_mode: WriteMode::Through,
            max_lag_ms: 300,
            latency_ms: 1,
            jitter_ms: 3,
            link_jitter_ms: 0,
            datagram_loss: 0.0,
            link_bytes_per_ms: 64 * 1024,
            clients: 4,
            keys_per_client: 24,
            counters_per_client: 4,
            shared_keys: 0,
            op_interval_ms: (2, 20),
            lock_clients: 0,
            lock_keys: 3,
            lock_lease_ms: (50, 1_500),
            lock_wait_ms_max: 1_000,
            lock_crash_chance: 0.15,
            lock_slow_chance: 0.1,
            check_interval_ms: 10,
            settle_timeout_ms: 30_000,
            trace: false,
        }
    }
}

/// A check that failed: where, and what was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckFailure {
    /// The seed of the run.
    pub seed: u64,
    /// The step being run (index into the steps taken so far).
    pub step_index: usize,
    /// The step, as text.
    pub step: String,
    /// The named check.
    pub check: &'static str,
    /// What was wrong.
    pub detail: String,
    /// Simulated time, in ms since the start.
    pub at_ms: u64,
}

impl std::fmt::Display for CheckFailure {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "seed {seed} step {} ({}) at {} ms: check `{}` failed: {}\n  replay: a random run \
             with `cargo run -p sim --release -- --seed {seed} --trace`, a scripted scenario by \
             running its test with SCD_SIM_SEED={seed}",
            self.step_index,
            self.step,
            self.at_ms,
            self.check,
            self.detail,
            seed = self.seed,
        )
    }
}

impl std::error::Error for CheckFailure {}

/// Whether a node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Running,
    /// Stopped (SIGSTOP): its inputs wait, its clock is not looked at.
    Paused,
    /// Killed: state gone.
    Dead,
    /// Left on purpose (planned leave finished).
    Left,
}

/// An input to a node, buffered while it is paused.
#[derive(Clone, Debug)]
pub(crate) enum Input {
    Datagram {
        from: SocketAddr,
        bytes: Bytes,
    },
    Frame {
        link_id: u64,
        from: Member,
        frame: u64,
        bytes: Bytes,
    },
    Ack {
        link_id: u64,
        from: Member,
        frames: u64,
    },
    LinkUp {
        peer: Member,
    },
    LinkDown {
        peer: Member,
    },
}

/// One simulated node.
pub(crate) struct SimNode {
    pub(crate) name: String,
    pub(crate) address: SocketAddr,
    pub(crate) member: Member,
    pub(crate) status: Status,
    pub(crate) membership: Membership,
    pub(crate) engine: Engine<SimHost>,
    pub(crate) host: SimHost,
    pub(crate) store: Arc<Store>,
    pub(crate) inbox: VecDeque<Input>,
    /// The view last given to the engine (without this node).
    pub(crate) engine_view: Vec<ViewMember>,
    pub(crate) leaving: bool,
    /// When the planned leave started, in ms.
    pub(crate) leaving_since_ms: u64,
}

impl SimNode {
    pub(crate) fn is_up(&self) -> bool {
        matches!(self.status, Status::Running | Status::Paused)
    }
}

/// An open link between two nodes.
#[derive(Clone, Debug)]
pub(crate) struct Link {
    pub(crate) id: u64,
    /// Per direction (low index → high, high → low): when the wire is free, and the last
    /// delivery time (frames and acknowledgements arrive in order).
    free_at_ms: [u64; 2],
    last_delivery_ms: [u64; 2],
}

#[derive(Debug)]
enum EventKind {
    Input {
        node: usize,
        member: Member,
        input: Input,
    },
    MembershipTick {
        node: usize,
        member: Member,
    },
    EngineTick {
        node: usize,
        member: Member,
    },
    ClientTick {
        client: usize,
    },
    Connect {
        low: usize,
        high: usize,
        low_member: Member,
        high_member: Member,
    },
    Check,
}

struct Scheduled {
    at_ms: u64,
    order: u64,
    kind: EventKind,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at_ms, self.order) == (other.at_ms, other.order)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at_ms, self.order).cmp(&(other.at_ms, other.order))
    }
}

/// Faults since the cluster last settled: they decide which losses are excused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) kills: usize,
    pub(crate) partitions: usize,
    pub(crate) pauses: usize,
    pub(crate) link_resets: usize,
    /// The fewest running, non-leaving nodes in the window: at its start (the last settle)
    /// and at each kill (`None` before the first settle). A partition cannot have more copies
    /// than that.
    pub(crate) fewest_eligible: Option<usize>,
}

impl Window {
    /// Whether an acknowledged write may have been lost in this window (invariant 1 promises
    /// survival only of up to `backups` crashes in write-through, with no other fault).
    pub(crate) fn excuses_loss(&self, config: &SimConfig) -> bool {
        let copies_beyond_primary = self.fewest_eligible.map_or(config.backups, |eligible| {
            config.backups.min(eligible.saturating_sub(1))
        });
        // A link reset between two live nodes costs no acknowledged write when the primary
        // dies next: the backup keeps its copy, writes wait for it while it is brought up to
        // date in place, and those that waited for frames the link lost are acknowledged only
        // once it holds them (PROTOCOL.md §6); a node that claims the partition instead of it
        // serves only once that copy is merged in (§5 rule 2). It is out of the record,
        // though: should the primary die, a node promoted instead does not wait for it, so a
        // second kill costs a copy as it would with one backup fewer.
        self.kills > 0
            && (config.write_mode == WriteMode::Delayed
                || config.backups == 0
                || self.kills > copies_beyond_primary
                || (self.kills > 1 && self.kills + self.link_resets > copies_beyond_primary)
                || self.partitions > 0
                || self.pauses > 0)
    }

    /// Whether reads must return the acknowledged state now: no split or pause (whose minority
    /// side may serve an older state), and no loss excused.
    pub(crate) fn reads_are_strict(&self, config: &SimConfig) -> bool {
        self.partitions == 0 && self.pauses == 0 && !self.excuses_loss(config)
    }
}

/// Counters of what a run did, for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Client operations completed with a reply.
    pub ops_completed: u64,
    /// Writes acknowledged.
    pub writes_acked: u64,
    /// Reads whose answer was checked against the model.
    pub reads_checked: u64,
    /// Operations that gave up (TRYAGAIN) where that is excused (a split, a pause…).
    pub tryagain_excused: u64,
    /// Operations whose outcome is unknown (gave up after sending).
    pub ops_unknown: u64,
    /// Operations that ended because their client's node died or left.
    pub connections_lost: u64,
    /// Acknowledged writes lost where the window excuses it (more kills than backups…).
    pub losses_excused: u64,
    /// Links an engine reset because the stream on them was out of step.
    pub engine_link_resets: u64,
    /// Times a node declared a running, reachable peer down, which is checked as a split.
    pub view_splits: u64,
    /// Counters whose value went back after a split (by design: the side that claimed the
    /// partition empty wins by version), their versions did not.
    pub counter_regressions_after_split: u64,
    /// Lost delayed-write keys found marked possibly stale.
    pub losses_marked_stale: u64,
    /// Times the cluster settled.
    pub settles: u64,
    /// Locks granted to lock clients.
    pub lock_grants: u64,
    /// Acquisitions that found the lock held.
    pub lock_contended: u64,
    /// Of those, the ones that waited (retried at the holder's deadline or on a release).
    pub lock_waits: u64,
    /// Locks released by their holder.
    pub lock_releases: u64,
    /// Leases renewed.
    pub lock_renewals: u64,
    /// Holders that crashed (their lease had to run out).
    pub lock_crashes: u64,
    /// Slow holders whose lease ran out before they were done.
    pub lock_leases_ran_out: u64,
    /// Guarded writes acknowledged.
    pub guarded_writes_acked: u64,
    /// Guarded writes refused as fenced (a stale or expired token).
    pub guarded_writes_fenced: u64,
    /// Grants not compared with earlier holds: a loss of locks was excused.
    pub lock_checks_excused: u64,
    /// Grants not compared: their acquisition was in flight across a heal.
    pub lock_checks_skipped_across_heal: u64,
    /// Grants made while a hold from the other side of a split was valid (no consensus: each
    /// side grants; fencing orders the writes).
    pub lock_split_grants: u64,
    /// Times a node's stored guarded write went to an older token by a split's merge.
    pub lock_split_merges: u64,
    /// Frames delivered.
    pub frames: u64,
    /// Datagrams delivered.
    pub datagrams: u64,
    /// The engines' counters, summed over every node that ran (killed and restarted ones too).
    pub engine: cluster::engine::EngineStats,
    /// Simulated time, in ms.
    pub duration_ms: u64,
    /// Steps run.
    pub steps: usize,
}

/// A simulated cluster.
pub struct Sim {
    pub(crate) seed: u64,
    pub(crate) config: SimConfig,
    pub(crate) rng: Rng,
    /// Draws the links' jitter, apart from `rng`: a run without link jitter draws what it drew
    /// before link jitter existed.
    link_rng: Rng,
    pub(crate) now_ms: u64,
    pub(crate) start_ms: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    order: u64,
    pub(crate) nodes: Vec<SimNode>,
    links: BTreeMap<(usize, usize), Link>,
    next_link_id: u64,
    pending_connects: BTreeSet<(usize, usize)>,
    /// Groups of node indexes that can talk to each other; `None`: everyone can.
    pub(crate) groups: Option<Vec<BTreeSet<usize>>>,
    pub(crate) clients: Vec<Client>,
    pub(crate) model: Model,
    pub(crate) locks: crate::locks::LockModel,
    pub(crate) window: Window,
    pub(crate) stats: RunStats,
    pub(crate) failure: Option<CheckFailure>,
    pub(crate) step_index: usize,
    pub(crate) step_label: String,
    next_request_id: u64,
    /// (node, request id) → client waiting for the response.
    pub(crate) relays: BTreeMap<(usize, u64), usize>,
    incarnations: u64,
    /// Counters of engines a restart replaced.
    retired_engines: cluster::engine::EngineStats,
    /// Clients start no new operation (the settle checks wait for quiet).
    pub(crate) quiesce: bool,
    /// Frames and acknowledgements scheduled on links and not handled yet.
    links_in_flight: usize,
    /// Per client, the time of its one pending tick (duplicates would pile up otherwise).
    client_tick_at: Vec<Option<u64>>,
    /// When tracing: the last record seen per (node, partition), to print changes.
    traced_records: BTreeMap<(usize, u32), Option<cluster::table::Record>>,
    traced_partition: Option<u32>,
}

/// The stream of `Sim::link_rng`, apart from the world's.
const LINK_STREAM: u64 = 0x5eed_c0ff_ee00_0003;

/// A leaving node exits after this long even if it still owns partitions (the node's
/// `leave_timeout`), in ms.
pub(crate) const LEAVE_TIMEOUT_MS: u64 = 10_000;

pub(crate) fn address_of(index: usize) -> SocketAddr {
    // Only a label inside the simulation.
    SocketAddr::from(([10, 0, (index / 250) as u8, (index % 250 + 1) as u8], 7000))
}

pub(crate) fn name_of(index: usize) -> String {
    format!("node-{index}")
}

impl Sim {
    /// An empty world (no nodes yet) driven by `seed`.
    pub fn new(seed: u64, config: SimConfig) -> Sim {
        let mut sim = Sim {
            seed,
            rng: Rng::new(seed),
            link_rng: Rng::new(seed ^ LINK_STREAM),
            now_ms: 1_000_000,
            start_ms: 1_000_000,
            queue: BinaryHeap::new(),
            order: 0,
            nodes: Vec::new(),
            links: BTreeMap::new(),
            next_link_id: 1,
            pending_connects: BTreeSet::new(),
            groups: None,
            clients: Vec::new(),
            model: Model::default(),
            locks: crate::locks::LockModel::default(),
            window: Window::default(),
            stats: RunStats::default(),
            failure: None,
            step_index: 0,
            step_label: String::from("start"),
            next_request_id: 1,
            relays: BTreeMap::new(),
            incarnations: 0,
            retired_engines: cluster::engine::EngineStats::default(),
            quiesce: false,
            links_in_flight: 0,
            client_tick_at: Vec::new(),
            traced_records: BTreeMap::new(),
            traced_partition: std::env::var("SIM_TRACE_PARTITION")
                .ok()
                .and_then(|text| text.parse().ok()),
            config,
        };
        let check_at = sim.now_ms + sim.config.check_interval_ms;
        sim.schedule(check_at, EventKind::Check);
        sim
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// What the run did so far.
    pub fn stats(&self) -> RunStats {
        let mut stats = self.stats.clone();
        stats.duration_ms = self.now_ms - self.start_ms;
        stats.engine = self.retired_engines;
        for node in &self.nodes {
            stats.engine.accumulate(&node.engine.stats());
        }
        stats
    }

    /// How many partitions node `index`'s table says it is primary of (0 for a slot that is
    /// not up).
    pub fn primary_count(&self, index: usize) -> usize {
        let Some(node) = self.nodes.get(index).filter(|node| node.is_up()) else {
            return 0;
        };
        (0..self.config.num_partitions)
            .filter(|&partition| {
                node.engine
                    .record(partition)
                    .is_some_and(|record| record.primary == node.member)
            })
            .count()
    }

    /// The slots of the nodes that the table of the first running node names as primary and
    /// backups of `key`'s partition (primary first; empty before the table exists).
    pub fn owners_of(&self, key: &[u8]) -> Vec<usize> {
        let partition = store::partition_of(key, self.config.num_partitions);
        let Some(&observer) = self.running_nodes().first() else {
            return Vec::new();
        };
        let Some(record) = self.nodes[observer].engine.record(partition) else {
            return Vec::new();
        };
        std::iter::once(record.primary)
            .chain(record.backups.iter().copied())
            .filter_map(|member| self.index_of_member(member))
            .collect()
    }

    /// Number of node slots (up or not).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub(crate) fn trace(&self, text: impl FnOnce() -> String) {
        if self.config.trace {
            println!("[{:>7} ms] {}", self.now_ms - self.start_ms, text());
        }
    }

    /// Records a failed check (the first one wins; the run stops at the next chance).
    pub(crate) fn fail(&mut self, check: &'static str, detail: String) {
        if self.failure.is_none() {
            self.failure = Some(CheckFailure {
                seed: self.seed,
                step_index: self.step_index,
                step: self.step_label.clone(),
                check,
                detail,
                at_ms: self.now_ms - self.start_ms,
            });
        }
    }

    fn schedule(&mut self, at_ms: u64, kind: EventKind) {
        self.order += 1;
        self.queue.push(Reverse(Scheduled {
            at_ms,
            order: self.order,
            kind,
        }));
    }

    /// Indexes of nodes that are up (running or paused).
    pub(crate) fn up_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&index| self.nodes[index].is_up())
            .collect()
    }

    /// Whether nothing keeps the cluster from settling now: no split, no paused node.
    pub(crate) fn has_no_split_or_pause(&self) -> bool {
        self.groups.is_none() && self.nodes.iter().all(|node| node.status != Status::Paused)
    }

    /// Indexes of running nodes.
    pub(crate) fn running_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&index| self.nodes[index].status == Status::Running)
            .collect()
    }

    pub(crate) fn index_of_member(&self, member: Member) -> Option<usize> {
        self.nodes
            .iter()
            .position(|node| node.member == member && node.is_up())
    }

    fn index_of_address(&self, address: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|node| node.address == address)
    }

    pub(crate) fn reachable(&self, a: usize, b: usize) -> bool {
        match &self.groups {
            None => true,
            Some(groups) => groups
                .iter()
                .any(|group| group.contains(&a) && group.contains(&b)),
        }
    }

    // ----------------------------------------------------------------------------------------
    // Node life cycle

    /// Starts a node in slot `index` (a new slot when `index == nodes.len()`), joining through
    /// the nodes up now.
    pub(crate) fn start_node(&mut self, index: usize) {
        let seeds: Vec<SocketAddr> = self
            .up_nodes()
            .into_iter()
            .filter(|&other| other != index)
            .map(address_of)
            .collect();
        let name = name_of(index);
        self.incarnations += 1;
        // Incarnations of a name must increase across restarts.
        let incarnation = Incarnation(self.now_ms * 1_000 + self.incarnations);
        let address = address_of(index);
        let mut membership_config = MembershipConfig::new("sim", self.config.num_partitions);
        membership_config.secret_opt = Some(ClusterSecret(b"simulated secret".to_vec()));
        membership_config.seed_addresses = seeds.clone();
        let identity = SelfIdentity {
            name: name.clone(),
            incarnation,
            addresses: NodeAddresses {
                peer: address,
                heartbeat: address,
                client: address,
                memcached_opt: None,
                admin: address,
            },
        };
        let membership = match Membership::new(membership_config, identity, self.now_ms) {
            Ok(membership) => membership,
            Err(error) => {
                self.fail(
                    "setup",
                    format!("membership refused its configuration: {error}"),
                );
                return;
            }
        };
        let member = Member {
            id: NodeId::from_name(&name),
            incarnation,
        };
        let store = match Store::new(StoreConfig {
            num_partitions: self.config.num_partitions,
            node_id: member.id.0,
            ..StoreConfig::default()
        }) {
            Ok(store) => Arc::new(store),
            Err(error) => {
                self.fail("setup", format!("store refused its configuration: {error}"));
                return;
            }
        };
        let mut engine_config = EngineConfig::new(member, name.clone(), self.config.num_partitions);
        engine_config.backups = self.config.backups;
        engine_config.write_mode = self.config.write_mode;
        engine_config.max_lag_ms = self.config.max_lag_ms;
        engine_config.join_wait_ms = if seeds.is_empty() { 0 } else { 1_500 };
        engine_config.snapshot_chunk_items = 64;
        engine_config.link_backlog_limit_bytes = 256 * 1024;
        let host = SimHost::default();
        host.set_now(self.now_ms);
        let engine = match Engine::new(engine_config, store.clone(), host.clone(), self.now_ms) {
            Ok(engine) => engine,
            Err(error) => {
                self.fail(
                    "setup",
                    format!("engine refused its configuration: {error}"),
                );
                return;
            }
        };
        // Invariant 3: a new incarnation starts with nothing.
        // Its only records can be its own claims (a node that joins nobody claims at once).
        let foreign_record = (0..self.config.num_partitions).any(|partition| {
            engine
                .record(partition)
                .is_some_and(|record| record.primary != member || !record.backups.is_empty())
        });
        if store.num_keys() != 0 || foreign_record {
            self.fail(
                "invariant 3: restart starts empty",
                format!("{name} started with data"),
            );
        }
        let node = SimNode {
            name,
            address,
            member,
            status: Status::Running,
            membership,
            engine,
            host,
            store,
            inbox: VecDeque::new(),
            engine_view: Vec::new(),
            leaving: false,
            leaving_since_ms: 0,
        };
        if index == self.nodes.len() {
            self.nodes.push(node);
        } else {
            let retired = self.nodes[index].engine.stats();
            self.retired_engines.accumulate(&retired);
            self.nodes[index] = node;
        }
        self.trace(|| format!("start {} as {member}", name_of(index)));
        let now_ms = self.now_ms;
        self.schedule(
            now_ms,
            EventKind::MembershipTick {
                node: index,
                member,
            },
        );
        let offset = self.rng.up_to(9);
        self.schedule(
            now_ms + offset,
            EventKind::EngineTick {
                node: index,
                member,
            },
        );
    }

    /// Kills node `index`: its state is gone; its links reset.
    pub(crate) fn kill_node(&mut self, index: usize) {
        if !self.nodes[index].is_up() {
            return;
        }
        self.trace(|| format!("kill {}", name_of(index)));
        self.nodes[index].status = Status::Dead;
        self.nodes[index].inbox.clear();
        self.close_links_of(index);
        self.relays.retain(|(node, _), _| *node != index);
        self.detach_clients(index);
    }

    pub(crate) fn pause_node(&mut self, index: usize) {
        if self.nodes[index].status == Status::Running {
            self.trace(|| format!("pause {}", name_of(index)));
            self.nodes[index].status = Status::Paused;
        }
    }

    pub(crate) fn resume_node(&mut self, index: usize) {
        if self.nodes[index].status != Status::Paused {
            return;
        }
        self.trace(|| format!("resume {}", name_of(index)));
        self.nodes[index].status = Status::Running;
        let member = self.nodes[index].member;
        // Its loop runs first (as a stalled process would), then the inputs that waited.
        self.membership_tick(index);
        while let Some(input) = self.nodes[index].inbox.pop_front() {
            self.handle_input(index, input);
            if self.nodes[index].status != Status::Running {
                break;
            }
        }
        let now_ms = self.now_ms;
        self.schedule(
            now_ms + 1,
            EventKind::EngineTick {
                node: index,
                member,
            },
        );
    }

    /// Starts a planned leave of node `index`.
    pub(crate) fn leave_node(&mut self, index: usize) {
        if self.nodes[index].status != Status::Running || self.nodes[index].leaving {
            return;
        }
        self.trace(|| format!("leave {}", name_of(index)));
        let now_ms = self.now_ms;
        let node = &mut self.nodes[index];
        node.leaving = true;
        node.leaving_since_ms = now_ms;
        node.host.set_now(now_ms);
        node.membership.set_role(1);
        node.engine.leave(now_ms);
        self.flush(index);
    }

    // ----------------------------------------------------------------------------------------
    // Links

    fn link_key(a: usize, b: usize) -> (usize, usize) {
        (a.min(b), a.max(b))
    }

    /// Resets the link between `a` and `b`, if any: both ends see it go down (and membership
    /// treats it as a hint).
    pub(crate) fn close_link(&mut self, a: usize, b: usize) {
        let key = Self::link_key(a, b);
        if self.links.remove(&key).is_none() {
            return;
        }
        self.trace(|| format!("link {}–{} reset", name_of(key.0), name_of(key.1)));
        let (member_a, member_b) = (self.nodes[a].member, self.nodes[b].member);
        self.nodes[a].host.close_link(member_b);
        self.nodes[b].host.close_link(member_a);
        for (node, peer) in [(a, member_b), (b, member_a)] {
            if self.nodes[node].is_up() {
                let member = self.nodes[node].member;
                let at_ms = self.now_ms;
                self.schedule(
                    at_ms,
                    EventKind::Input {
                        node,
                        member,
                        input: Input::LinkDown { peer },
                    },
                );
            }
        }
    }

    pub(crate) fn close_links_of(&mut self, index: usize) {
        let keys: Vec<(usize, usize)> = self
            .links
            .keys()
            .copied()
            .filter(|&(low, high)| low == index || high == index)
            .collect();
        for (low, high) in keys {
            self.close_link(low, high);
        }
    }

    pub(crate) fn has_link(&self, a: usize, b: usize) -> bool {
        self.links.contains_key(&Self::link_key(a, b))
    }

    /// The node layer of `index` opens links to the members of its view with a higher id, as
    /// the real node does (the lower id connects).
    fn ensure_links(&mut self, index: usize) {
        if self.nodes[index].status != Status::Running {
            return;
        }
        let me = self.nodes[index].member;
        let peers: Vec<Member> = self.nodes[index]
            .engine_view
            .iter()
            .map(|member| member.member)
            .collect();
        for peer in peers {
            let Some(other) = self.index_of_member(peer) else {
                continue;
            };
            if me.id >= peer.id || !self.reachable(index, other) {
                continue;
            }
            let key = Self::link_key(index, other);
            if self.links.contains_key(&key) || self.pending_connects.contains(&key) {
                continue;
            }
            self.pending_connects.insert(key);
            let at_ms = self.now_ms + 2 * self.config.latency_ms;
            let (low, high) = key;
            let (low_member, high_member) = (self.nodes[low].member, self.nodes[high].member);
            self.schedule(
                at_ms,
                EventKind::Connect {
                    low,
                    high,
                    low_member,
                    high_member,
                },
            );
        }
    }

    fn connect(&mut self, low: usize, high: usize, low_member: Member, high_member: Member) {
        let key = (low, high);
        self.pending_connects.remove(&key);
        let valid = self.nodes[low].member == low_member
            && self.nodes[high].member == high_member
            && self.nodes[low].is_up()
            && self.nodes[high].is_up()
            && self.reachable(low, high)
            && !self.links.contains_key(&key);
        if !valid {
            return;
        }
        let id = self.next_link_id;
        self.next_link_id += 1;
        self.links.insert(
            key,
            Link {
                id,
                free_at_ms: [0; 2],
                last_delivery_ms: [0; 2],
            },
        );
        self.trace(|| format!("link {}–{} up (#{id})", name_of(low), name_of(high)));
        self.nodes[low].host.open_link(high_member, id);
        self.nodes[high].host.open_link(low_member, id);
        for (node, member, peer) in [
            (low, low_member, high_member),
            (high, high_member, low_member),
        ] {
            self.deliver_input(node, member, Input::LinkUp { peer });
        }
    }

    /// Hands `input` to node `node` now (running), or keeps it for later (paused).
    fn deliver_input(&mut self, node: usize, member: Member, input: Input) {
        let Some(target) = self.nodes.get_mut(node) else {
            return;
        };
        if target.member != member {
            return;
        }
        match target.status {
            Status::Running => self.handle_input(node, input),
            Status::Paused => target.inbox.push_back(input),
            Status::Dead | Status::Left => {}
        }
    }

    /// Queues `bytes` on the link from `from` to `to`, in order behind what is already queued.
    fn schedule_on_link(&mut self, from: usize, to: usize, input: Input, size: usize) -> bool {
        let key = Self::link_key(from, to);
        let direction = usize::from(from > to);
        let bandwidth = self.config.link_bytes_per_ms.max(1);
        let latency = match self.config.link_jitter_ms {
            0 => self.config.latency_ms,
            jitter => self.config.latency_ms + self.link_rng.up_to(jitter),
        };
        let now_ms = self.now_ms;
        let Some(link) = self.links.get_mut(&key) else {
            return false;
        };
        let written_at = link.free_at_ms[direction].max(now_ms) + size.div_ceil(bandwidth) as u64;
        link.free_at_ms[direction] = written_at;
        let deliver_at = (written_at + latency).max(link.last_delivery_ms[direction]);
        link.last_delivery_ms[direction] = deliver_at;
        let to_member = self.nodes[to].member;
        self.nodes[from]
            .host
            .note_written_at(to_member, written_at, size);
        self.links_in_flight += 1;
        self.schedule(
            deliver_at,
            EventKind::Input {
                node: to,
                member: to_member,
                input,
            },
        );
        true
    }

    /// Moves what node `index` queued (frames, datagrams) into the network, and wakes its
    /// clients waiting on partitions that changed.
    pub(crate) fn flush(&mut self, index: usize) {
        let outgoing = self.nodes[index].host.take_outbox();
        for frame in outgoing {
            let Some(to) = self.index_of_member(frame.to) else {
                continue;
            };
            let Some(link_id) = self.nodes[index].host.link_id(frame.to) else {
                continue;
            };
            if self
                .links
                .get(&Self::link_key(index, to))
                .map(|link| link.id)
                != Some(link_id)
            {
                continue;
            }
            let size = frame.bytes.len();
            let from = self.nodes[index].member;
            self.schedule_on_link(
                index,
                to,
                Input::Frame {
                    link_id,
                    from,
                    frame: frame.frame,
                    bytes: frame.bytes,
                },
                size,
            );
        }
        while let Some(transmit) = self.nodes[index].membership.poll_transmit() {
            let Some(to) = self.index_of_address(transmit.to) else {
                continue;
            };
            if !self.reachable(index, to) || self.rng.chance(self.config.datagram_loss) {
                continue;
            }
            let delay = self.config.latency_ms + self.rng.up_to(self.config.jitter_ms);
            let member = self.nodes[to].member;
            let from = self.nodes[index].address;
            let at_ms = self.now_ms + delay;
            self.schedule(
                at_ms,
                EventKind::Input {
                    node: to,
                    member,
                    input: Input::Datagram {
                        from,
                        bytes: transmit.bytes,
                    },
                },
            );
        }
        let changed = self.nodes[index].host.take_changed();
        if !changed.is_empty() {
            self.partitions_changed(index, &changed);
        }
        // Every event a node handles ends here: its stored guarded writes are checked after
        // each one.
        self.sample_lock_values(index);
    }

    // ----------------------------------------------------------------------------------------
    // Inputs

    /// When tracing, prints the records of node `index` that changed since last looked at.
    fn trace_records(&mut self, index: usize, cause: &str) {
        if !self.config.trace {
            return;
        }
        let partitions: Vec<u32> = match self.traced_partition {
            Some(partition) => vec![partition],
            None => (0..self.config.num_partitions).collect(),
        };
        for partition in partitions {
            let record = self.nodes[index].engine.record(partition);
            let previous = self
                .traced_records
                .insert((index, partition), record.clone());
            if previous.as_ref() != Some(&record) {
                let name = |member: cluster::table::Member| {
                    self.nodes
                        .iter()
                        .position(|node| node.member.id == member.id)
                        .map_or_else(|| member.to_string(), name_of)
                };
                let text = record.as_ref().map_or("none".to_string(), |record| {
                    format!(
                        "{}.{} primary {} backups {:?}",
                        record.epoch.term,
                        name(cluster::table::Member {
                            id: record.epoch.node,
                            incarnation: Incarnation(0)
                        }),
                        name(record.primary),
                        record.backups.iter().map(|m| name(*m)).collect::<Vec<_>>()
                    )
                });
                let accepting = self.nodes[index]
                    .engine
                    .accepting_writes(partition, self.now_ms);
                self.trace(|| {
                    format!(
                        "{} p{partition} → {text}{} ({cause})",
                        name_of(index),
                        if accepting { " [accepting]" } else { "" }
                    )
                });
            }
        }
    }

    fn handle_input(&mut self, index: usize, input: Input) {
        if self.config.trace {
            let cause = match &input {
                Input::Datagram { .. } => "datagram".to_string(),
                Input::Frame { from, bytes, .. } => {
                    let mut buf = BytesMut::from(&bytes[..]);
                    let kind = decode_frame(&mut buf)
                        .ok()
                        .flatten()
                        .map_or("?", |message| message.kind());
                    let from = self
                        .nodes
                        .iter()
                        .position(|node| node.member == *from)
                        .map_or_else(|| from.to_string(), name_of);
                    format!("{kind} from {from}")
                }
                Input::Ack { .. } => "ack".to_string(),
                Input::LinkUp { .. } => "link up".to_string(),
                Input::LinkDown { .. } => "link down".to_string(),
            };
            self.handle_input_inner(index, input);
            if self.nodes[index].is_up() {
                self.trace_records(index, &cause);
            }
        } else {
            self.handle_input_inner(index, input);
        }
    }

    fn handle_input_inner(&mut self, index: usize, input: Input) {
        let now_ms = self.now_ms;
        self.nodes[index].host.set_now(now_ms);
        match input {
            Input::Datagram { from, bytes } => {
                self.stats.datagrams += 1;
                let _ = self.nodes[index]
                    .membership
                    .handle_datagram(from, &bytes, now_ms);
                self.after_membership(index, false);
            }
            Input::LinkUp { peer } => {
                self.nodes[index].engine.handle_link_up(peer, now_ms);
            }
            Input::LinkDown { peer } => {
                self.nodes[index].engine.handle_link_down(peer, now_ms);
                self.nodes[index]
                    .membership
                    .handle_peer_reset(peer.id, now_ms);
                self.relay_link_down(index, peer);
                self.after_membership(index, false);
            }
            Input::Ack {
                link_id,
                from,
                frames,
            } => {
                if self.nodes[index].host.link_id(from) == Some(link_id) {
                    self.nodes[index].engine.handle_ack(from, frames);
                }
            }
            Input::Frame {
                link_id,
                from,
                frame,
                bytes,
            } => {
                if self.nodes[index].host.link_id(from) != Some(link_id) {
                    return;
                }
                self.stats.frames += 1;
                let mut buf = BytesMut::from(&bytes[..]);
                let message = match decode_frame(&mut buf) {
                    Ok(Some(message)) if buf.is_empty() => message,
                    other => {
                        self.fail(
                            "wire: every frame decodes",
                            format!("a frame from {from} decoded as {other:?}"),
                        );
                        return;
                    }
                };
                self.deliver_message(index, from, message);
                // A link the engine reset acknowledges nothing more (the ack below is only
                // sent over a link that is still up).
                for peer in self.nodes[index].host.take_resets() {
                    if let Some(other) = self.index_of_member(peer) {
                        self.stats.engine_link_resets += 1;
                        self.window.link_resets += 1;
                        self.close_link(index, other);
                    }
                }
                // The link layer acknowledges after the engine handled the frame, behind
                // whatever the engine queued meanwhile.
                self.flush(index);
                if let Some(sender) = self.index_of_member(from)
                    && self.has_link(index, sender)
                {
                    let me = self.nodes[index].member;
                    let ack = Input::Ack {
                        link_id,
                        from: me,
                        frames: frame,
                    };
                    let mut buf = BytesMut::new();
                    let size = encode_frame(&PeerMessage::Ack { frames: frame }, &mut buf)
                        .map_or(8, |()| buf.len());
                    self.schedule_on_link(index, sender, ack, size);
                }
            }
        }
        self.flush(index);
    }

    fn deliver_message(&mut self, index: usize, from: Member, message: PeerMessage) {
        let now_ms = self.now_ms;
        if self.config.trace
            && let Some(partition) = self.traced_partition
            && (message.partition() == Some(partition)
                || (std::env::var("SIM_TRACE_ALL").is_ok() && message.partition().is_none()))
        {
            let from_name = self
                .nodes
                .iter()
                .position(|node| node.member == from)
                .map_or_else(|| from.to_string(), name_of);
            let text = format!("{message:?}");
            self.trace(|| {
                format!(
                    "{} ← {from_name}: {}",
                    name_of(index),
                    text.chars().take(160).collect::<String>()
                )
            });
        }
        if let PeerMessage::Response { id, result } = message {
            self.relay_response(index, id, result);
            return;
        }
        // Invariant 2, second half: a node that learned a higher record acts on it at once.
        let carried: Vec<(u32, cluster::table::Record)> = match &message {
            PeerMessage::Record { partition, record } => vec![(*partition, record.clone())],
            PeerMessage::Table { records } => records.clone(),
            _ => Vec::new(),
        };
        self.nodes[index]
            .engine
            .handle_message(from, message, now_ms);
        for (partition, record) in carried {
            let held = self.nodes[index].engine.record(partition);
            if held.as_ref().is_none_or(|held| *held < record) {
                self.fail(
                    "invariant 2: a higher record is adopted at once",
                    format!(
                        "{} holds {held:?} for partition {partition} after receiving {record:?}",
                        self.nodes[index].name
                    ),
                );
            }
            let me = self.nodes[index].member;
            if self.nodes[index].engine.accepting_writes(partition, now_ms)
                && held.as_ref().is_some_and(|held| held.primary != me)
            {
                self.fail(
                    "invariant 2: never act on a lower epoch",
                    format!(
                        "{} accepts writes for partition {partition} under {held:?}",
                        self.nodes[index].name
                    ),
                );
            }
        }
    }

    /// After membership handled an input: transmits, events (link closes, fences), the view
    /// given to the engine, and links to open.
    fn after_membership(&mut self, index: usize, tick: bool) {
        let now_ms = self.now_ms;
        let mut events = false;
        let mut downs = Vec::new();
        while let Some(event) = self.nodes[index].membership.poll_event() {
            events = true;
            match event {
                MembershipEvent::NodeDown {
                    id, incarnation, ..
                } => downs.push(Member { id, incarnation }),
                MembershipEvent::SelfStalled { .. } => {
                    self.nodes[index].engine.fence_self(FenceReason::Stalled);
                }
                MembershipEvent::SelfDeclaredDead { .. } => {
                    self.nodes[index]
                        .engine
                        .fence_self(FenceReason::DeclaredDead);
                }
                _ => {}
            }
        }
        for down in downs {
            // The node layer closes the link of a member it declared down.
            if let Some(other) = self.nodes.iter().position(|node| node.member == down) {
                self.close_link(index, other);
            }
        }
        if events || tick {
            let view: Vec<ViewMember> = self.nodes[index]
                .membership
                .members()
                .into_iter()
                .filter(|info| {
                    !info.is_self && matches!(info.state, MemberState::Alive | MemberState::Suspect)
                })
                .map(|info| ViewMember {
                    member: Member {
                        id: info.id,
                        incarnation: info.incarnation,
                    },
                    name: info.name,
                    leaving: info.role & 1 != 0,
                })
                .collect();
            let agreed = self.nodes[index].membership.view_agreed();
            self.nodes[index].engine.handle_view_agreement(agreed);
            if view != self.nodes[index].engine_view {
                self.trace(|| {
                    let names: Vec<&str> = view.iter().map(|member| member.name.as_str()).collect();
                    format!("{} sees {names:?}", name_of(index))
                });
                if self.drops_a_live_peer(index, &view) {
                    self.note_view_split(index);
                }
                self.nodes[index].engine_view = view.clone();
                self.nodes[index].engine.handle_view(view, now_ms);
            }
            self.ensure_links(index);
        }
        self.flush(index);
    }

    /// Whether `view`, the new view of node `index`, leaves out a peer that is running, not
    /// leaving, and reachable: a false suspicion (a link reset and a lost heartbeat are enough).
    fn drops_a_live_peer(&self, index: usize, view: &[ViewMember]) -> bool {
        self.nodes[index]
            .engine_view
            .iter()
            .filter(|old| !view.iter().any(|new| new.member == old.member))
            .filter_map(|old| self.index_of_member(old.member))
            .any(|other| {
                self.nodes[other].status == Status::Running
                    && !self.nodes[other].leaving
                    && self.reachable(index, other)
            })
    }

    /// Node `index` declared a live peer down: until the views agree again the cluster is split
    /// as by a network partition (each side may claim and write what the other holds; invariant
    /// 2's check already asks only nodes in each other's views to agree), so it is checked as
    /// one: a window with a partition, and for the lock checks a new era whose events, up to the
    /// next settle, are related to nothing.
    fn note_view_split(&mut self, index: usize) {
        self.trace(|| format!("{} split from a live peer", name_of(index)));
        self.window.partitions += 1;
        self.stats.view_splits += 1;
        self.locks.network_era += 1;
        self.locks.healing = true;
    }

    fn membership_tick(&mut self, index: usize) {
        let now_ms = self.now_ms;
        let node = &mut self.nodes[index];
        node.host.set_now(now_ms);
        node.membership.set_table_digest(node.engine.table_digest());
        node.membership.handle_tick(now_ms);
        node.engine.handle_membership_alive(now_ms);
        self.after_membership(index, true);
        let node = &mut self.nodes[index];
        for info in node.membership.members() {
            if info.is_self || !matches!(info.state, MemberState::Alive | MemberState::Suspect) {
                continue;
            }
            let member = Member {
                id: info.id,
                incarnation: info.incarnation,
            };
            node.engine
                .handle_peer_digest(member, info.table_digest, now_ms);
        }
        let timed_out = now_ms.saturating_sub(node.leaving_since_ms) > LEAVE_TIMEOUT_MS;
        if node.leaving && (node.engine.owns_nothing() || timed_out) {
            // The planned leave is complete (or took too long, and the node exits anyway, which
            // is a crash for whatever it still held): say goodbye and exit.
            if timed_out && !node.engine.owns_nothing() {
                self.window.kills += 1;
            }
            let node = &mut self.nodes[index];
            node.membership.leave(now_ms);
            self.flush(index);
            self.trace(|| format!("{} left", name_of(index)));
            self.nodes[index].status = Status::Left;
            self.close_links_of(index);
            self.detach_clients(index);
        }
        self.flush(index);
    }

    // ----------------------------------------------------------------------------------------
    // The event loop

    /// Runs events until simulated time `until_ms` (or a check fails).
    pub(crate) fn run_until(&mut self, until_ms: u64) {
        while self.failure.is_none() {
            let Some(Reverse(next)) = self.queue.peek() else {
                break;
            };
            if next.at_ms > until_ms {
                break;
            }
            let Some(Reverse(event)) = self.queue.pop() else {
                break;
            };
            self.now_ms = self.now_ms.max(event.at_ms);
            self.handle_event(event.kind);
        }
        if self.failure.is_none() {
            self.now_ms = self.now_ms.max(until_ms);
        }
    }

    /// Runs for `duration_ms` of simulated time.
    pub fn run_for(&mut self, duration_ms: u64) {
        let until = self.now_ms + duration_ms;
        self.run_until(until);
    }

    fn handle_event(&mut self, kind: EventKind) {
        match kind {
            EventKind::Input {
                node,
                member,
                input,
            } => {
                if matches!(input, Input::Frame { .. } | Input::Ack { .. }) {
                    self.links_in_flight -= 1;
                }
                self.deliver_input(node, member, input);
            }
            EventKind::MembershipTick { node, member } => {
                if self.nodes[node].member != member || !self.nodes[node].is_up() {
                    return;
                }
                if self.nodes[node].status == Status::Running {
                    self.membership_tick(node);
                }
                if self.nodes[node].status == Status::Left {
                    return;
                }
                let next = self.nodes[node]
                    .membership
                    .next_timeout_ms()
                    .unwrap_or(self.now_ms + 100)
                    .clamp(self.now_ms + 1, self.now_ms + 100);
                self.schedule(next, EventKind::MembershipTick { node, member });
            }
            EventKind::EngineTick { node, member } => {
                if self.nodes[node].member != member || !self.nodes[node].is_up() {
                    return;
                }
                if self.nodes[node].status == Status::Running {
                    let now_ms = self.now_ms;
                    self.nodes[node].host.set_now(now_ms);
                    self.nodes[node].engine.handle_tick(now_ms);
                    self.flush(node);
                    self.trace_records(node, "tick");
                }
                let next = self.now_ms + 10;
                self.schedule(next, EventKind::EngineTick { node, member });
            }
            EventKind::ClientTick { client } => {
                // Only the pending tick runs; an earlier one replaced later ones.
                if self.client_tick_at.get(client).copied().flatten() == Some(self.now_ms) {
                    self.client_tick_at[client] = None;
                    self.client_tick(client);
                }
            }
            EventKind::Connect {
                low,
                high,
                low_member,
                high_member,
            } => self.connect(low, high, low_member, high_member),
            EventKind::Check => {
                self.periodic_checks();
                let next = self.now_ms + self.config.check_interval_ms;
                self.schedule(next, EventKind::Check);
            }
        }
    }

    /// Whether frames or acknowledgements are still travelling on some link.
    pub(crate) fn links_busy(&self) -> bool {
        self.links_in_flight > 0
    }

    /// Makes sure client `client` runs at `at_ms` at the latest (one pending tick per client).
    pub(crate) fn schedule_client(&mut self, client: usize, at_ms: u64) {
        if self.client_tick_at.len() <= client {
            self.client_tick_at.resize(client + 1, None);
        }
        if self.client_tick_at[client].is_some_and(|pending| pending <= at_ms) {
            return;
        }
        self.client_tick_at[client] = Some(at_ms);
        self.schedule(at_ms, EventKind::ClientTick { client });
    }

    /// Sends a relayed request from node `index` to `to`; returns its id, or `None` without a
    /// link.
    pub(crate) fn send_request(
        &mut self,
        index: usize,
        to: Member,
        partition: u32,
        op: store::Op,
    ) -> Option<u64> {
        let id = self.next_request_id;
        self.next_request_id += 1;
        let message = PeerMessage::Request {
            id,
            partition,
            db: 0,
            op,
        };
        self.nodes[index].host.set_now(self.now_ms);
        self.nodes[index].host.send_relay(to, &message)?;
        self.flush(index);
        Some(id)
    }

    fn relay_response(&mut self, index: usize, id: u64, result: RelayResult) {
        let Some(client) = self.relays.remove(&(index, id)) else {
            return;
        };
        self.client_response(client, index, id, result);
    }
}
