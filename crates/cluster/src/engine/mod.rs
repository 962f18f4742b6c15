//! The cluster engine: partition ownership, replication, snapshots, handoff, failover, fencing
//! and split-heal merges (PROTOCOL.md §4–§12), as a synchronous, sans-IO, thread-safe state
//! machine.
//!
//! # Driving it
//!
//! The node (or the simulation) owns the links, the clock and the membership loop. It passes
//! every input in: client operations ([`Engine::execute`]), peer messages
//! ([`Engine::handle_message`]), acknowledgements ([`Engine::handle_ack`]), views
//! ([`Engine::handle_view`]), link changes, ticks and membership liveness. The engine sends
//! through the [`Host`], which queues frames and never blocks, and tells it which operations may
//! retry ([`Host::partition_changed`]) and which write-through waits are over ([`Host::acked`]).
//!
//! # Threads and locks
//!
//! `Engine` is `Send + Sync`: the node calls it from several threads at once. Each partition has
//! a `parking_lot` mutex over its [`state::PartitionState`], always taken before the store's
//! partition lock; everything about one partition happens under its mutex, so the replication
//! order is the execution order. Other locks (the view, the peers) are taken after a partition
//! lock, never before one, and only briefly. Nothing blocks or sleeps while holding a lock; the
//! host's methods must queue and return, never call back into the engine.
//!
//! # How ownership moves
//!
//! Every node evaluates the ownership rules (§5) for every partition when its view, its table or
//! a transfer changes, and on a timer: the first live backup promotes itself when the primary
//! dies, the target primary claims a partition nobody owns, and a primary snapshots its target
//! backups, hands primaryship to the target primary once it is a synced backup (after every
//! backup acknowledged everything, so no backup misses a write), and removes backups that left.
//! A node that learns a higher record for a partition adopts it at once, under the partition
//! lock, before anything else; when that deposes it (or replaces the primary it followed
//! without a handoff), it merges its data into the new primary before dropping it.

mod follower;
mod link;
mod primary;
mod rules;
mod state;
mod stats;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};
use store::{Op, Reply, Store};

pub use self::stats::{
    BUSY_PARTITIONS_SHOWN, EngineStats, HANDOFF_DURATIONS_KEPT_MAX, MemberOwnership, Summary,
    UNDER_REPLICATED_PARTITIONS_SHOWN,
};

use self::link::{Confirmation, PeerLink, PeerState};
use self::state::{HandoffPhase, PartitionState};
use self::stats::{Counters, HandoffDurations};
use crate::table::{
    Member, OWNERS_PER_PARTITION_MAX, Placement, Record, ViewMember, record_digest,
};
use crate::wire::{PeerMessage, RelayResult, SmallList, UnavailableReason};

/// What the engine needs from the node: queues to peers and a way to wake waiting operations.
///
/// Every method must return quickly without blocking and without calling back into the engine
/// (the engine may hold a partition lock while calling it).
pub trait Host: Send + Sync + 'static {
    /// Queues `message` on the link to `to`, encoding it now; never blocks. Returns the number
    /// this frame has toward `to`, or `None` when there is no link to `to` (the message is
    /// dropped).
    ///
    /// Frames are numbered 1, 2, 3… per peer member in queue order, and a new link to the same
    /// member continues the numbering: a number is never reused while the engine may still wait
    /// for it. `Engine::handle_ack` takes acknowledgements on the same scale.
    fn send(&self, to: Member, message: &PeerMessage) -> Option<u64>;
    /// Bytes queued on the link to `to` and not yet written (snapshot and merge pacing).
    fn backlog_bytes(&self, to: Member) -> usize;
    /// Something changed for `partition` (ownership, fence, handoff end): operations that got
    /// [`Execution::Wait`] for it should try again.
    fn partition_changed(&self, partition: u32);
    /// Acknowledgements from `from` now cover frames up to `frames`, or `from` was removed and
    /// all waits on it are released (`frames = u64::MAX`). The host wakes write-through waiters.
    fn acked(&self, from: Member, frames: u64);
    /// The highest number any frame toward `to` has had so far, on any link (the next frame
    /// gets a higher one).
    fn frames_sent(&self, to: Member) -> u64;
    /// Closes the current link to `to` now: no frame read on it after the one being handled
    /// is handled, and nothing more is acknowledged on it. The end of the link is reported
    /// ([`Engine::handle_link_down`]) as for any other reset, later, outside this call.
    fn reset_link(&self, to: Member);
}

/// The two storage models (DESIGN.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// A write is acknowledged once every synced backup has it.
    Through,
    /// A write is acknowledged at once; writers wait only when a backup link lags more than
    /// `max_lag_ms`.
    Delayed,
}

/// The engine's configuration. [`EngineConfig::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// This node.
    pub me: Member,
    /// This node's configured name (placement ranks names).
    pub name: String,
    /// Partition count, a power of two, the same on every node (and in the store).
    pub num_partitions: u32,
    /// Backups per partition.
    pub backups: usize,
    /// Write-through or delayed-write.
    pub write_mode: WriteMode,
    /// Delayed-write: the replication lag writers let a backup link reach, in ms.
    pub max_lag_ms: u64,
    /// A node started with seeds claims nothing until it exchanged tables with some member or
    /// this long passed since start, in ms (0: a node without seeds claims at once).
    pub join_wait_ms: u64,
    /// Operations wait (fenced) when the membership loop did not run for this long, in ms;
    /// below the failure-detection time.
    pub stall_fence_ms: u64,
    /// Most entries per snapshot or merge chunk.
    pub snapshot_chunk_items: usize,
    /// Most bytes (estimated) per snapshot or merge chunk.
    pub snapshot_chunk_bytes: usize,
    /// Most snapshots (and, separately, merges) this node sends at once.
    pub max_concurrent_snapshots: usize,
    /// Snapshot and merge chunks are queued only while a link's backlog is below this, in bytes.
    pub link_backlog_limit_bytes: usize,
    /// A snapshot whose receiver does not confirm it (`SnapshotDone`) this long after its end
    /// was sent is abandoned and started again, in ms.
    pub snapshot_done_timeout_ms: u64,
    /// Most bytes (estimated) of mutations per `Replicate` frame; larger writes (FLUSHDB) are
    /// split into several frames.
    pub replicate_frame_bytes_max: usize,
    /// Most relayed requests waiting per partition; more get `Unavailable`.
    pub deferred_per_partition_max: usize,
    /// A relayed request that waited this long gets `Unavailable`, in ms.
    pub deferred_wait_ms_max: u64,
    /// Most relayed replies waiting for write-through acknowledgements at once.
    pub pending_replies_max: usize,
    /// A partition whose owners this node saw die, ownerless for this long, is claimed by this
    /// node even if it is not the target primary (the target may not know those owners and wait
    /// out `unknown_member_grace_ms`), in ms. The target gets it back by handoff.
    pub claim_fallback_ms: u64,
    /// A member named in a record that this node has never seen alive counts as dead only after
    /// this long, in ms: a joining node must not take over partitions of members it has simply
    /// not heard from yet (those that knew them act), but must not wait forever either.
    pub unknown_member_grace_ms: u64,
    /// A handoff whose backups do not acknowledge within this is abandoned (and retried), in ms.
    pub handoff_drain_timeout_ms: u64,
    /// A backup removed from records while still in the view and unlinked (its link went down)
    /// that neither confirms it knows (over a new link) nor leaves the view within this, from
    /// its first drop, is given up on, in ms: the writes that waited for it are acknowledged,
    /// and its partitions serve again (PROTOCOL.md §6).
    pub confirm_timeout_ms: u64,
    /// Every partition's rules are evaluated at least this often, in ms.
    pub reevaluate_interval_ms: u64,
    /// Snapshot and merge chunks queued per tick, across partitions (bounded work per call).
    pub chunks_per_tick_max: usize,
    /// A peer whose table digest differs this many checks in a row is asked for its table.
    pub digest_mismatches_max: u32,
}

impl EngineConfig {
    /// The defaults for node `me` named `name` with `num_partitions` partitions: one backup,
    /// write-through.
    pub fn new(me: Member, name: impl Into<String>, num_partitions: u32) -> EngineConfig {
        EngineConfig {
            me,
            name: name.into(),
            num_partitions,
            backups: 1,
            write_mode: WriteMode::Through,
            max_lag_ms: 1_000,
            join_wait_ms: 2_000,
            stall_fence_ms: 500,
            snapshot_chunk_items: 512,
            snapshot_chunk_bytes: 256 * 1024,
            max_concurrent_snapshots: 4,
            link_backlog_limit_bytes: 64 * 1024 * 1024,
            snapshot_done_timeout_ms: 10_000,
            replicate_frame_bytes_max: 1024 * 1024,
            deferred_per_partition_max: 1_024,
            deferred_wait_ms_max: 5_000,
            pending_replies_max: 65_536,
            unknown_member_grace_ms: 3_000,
            claim_fallback_ms: 1_000,
            handoff_drain_timeout_ms: 2_000,
            confirm_timeout_ms: 3_000,
            reevaluate_interval_ms: 200,
            chunks_per_tick_max: 64,
            digest_mismatches_max: 3,
        }
    }

    /// Checks every field; the error names the first one out of range.
    pub fn validate(&self) -> Result<(), EngineError> {
        let out_of_range = |field: &'static str, value: String, allowed: &'static str| {
            Err(EngineError::InvalidConfig {
                field,
                value,
                allowed,
            })
        };
        if !self.num_partitions.is_power_of_two() || self.num_partitions > store::MAX_NUM_PARTITIONS
        {
            return out_of_range(
                "num_partitions",
                self.num_partitions.to_string(),
                "a power of two up to 65536",
            );
        }
        if self.backups >= OWNERS_PER_PARTITION_MAX {
            return out_of_range("backups", self.backups.to_string(), "0 to 7");
        }
        if !crate::node_id::is_valid_name(&self.name) {
            return out_of_range("name", self.name.clone(), "1 to 64 printable bytes");
        }
        for (field, value) in [
            ("snapshot_chunk_items", self.snapshot_chunk_items),
            ("snapshot_chunk_bytes", self.snapshot_chunk_bytes),
            ("max_concurrent_snapshots", self.max_concurrent_snapshots),
            ("link_backlog_limit_bytes", self.link_backlog_limit_bytes),
            ("replicate_frame_bytes_max", self.replicate_frame_bytes_max),
            (
                "deferred_per_partition_max",
                self.deferred_per_partition_max,
            ),
            ("pending_replies_max", self.pending_replies_max),
            ("chunks_per_tick_max", self.chunks_per_tick_max),
        ] {
            if value == 0 {
                return out_of_range(field, value.to_string(), "at least 1");
            }
        }
        if self.snapshot_chunk_bytes > crate::wire::FRAME_LEN_MAX / 4
            || self.replicate_frame_bytes_max > crate::wire::FRAME_LEN_MAX / 4
        {
            return out_of_range(
                "snapshot_chunk_bytes",
                self.snapshot_chunk_bytes.to_string(),
                "at most a quarter of the frame limit",
            );
        }
        if self.stall_fence_ms == 0 || self.reevaluate_interval_ms == 0 {
            return out_of_range(
                "stall_fence_ms",
                self.stall_fence_ms.to_string(),
                "at least 1 (and reevaluate_interval_ms too)",
            );
        }
        Ok(())
    }
}

/// Why an engine could not be built. Nothing was created.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// A configuration field is out of range. Nothing was created.
    #[error("{field} is {value}, it must be {allowed}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        allowed: &'static str,
    },
    /// The store was built with another partition count or node id. Nothing was created.
    #[error(
        "the store has {store} partitions and node id {store_node}, the engine {engine} and {engine_node}"
    )]
    StoreMismatch {
        /// The engine's partition count.
        engine: u32,
        /// The store's partition count.
        store: u32,
        /// The engine's node id.
        engine_node: u32,
        /// The node id the store stamps into versions.
        store_node: u32,
    },
}

/// What became of an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Execution {
    /// Executed here; reply now.
    Done(Reply),
    /// Executed here; reply once each listed link acknowledged that frame (or was released,
    /// [`Host::acked`] with `u64::MAX`).
    AwaitAcks {
        /// The reply to send then.
        reply: Reply,
        /// (member, frame number) pairs.
        waits: SmallList<(Member, u64)>,
    },
    /// This node is not the primary: relay to this member.
    Forward(Member),
    /// Not now: retry after [`Host::partition_changed`] for the partition or a short timeout.
    Wait {
        /// Why.
        reason: WaitReason,
    },
}

/// Why an operation must wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitReason {
    /// The partition index is out of range (a caller bug).
    NoSuchPartition,
    /// Nobody owns the partition yet (the cluster is forming, or a claim is pending).
    NoRecord,
    /// The record's primary is not in this node's view, or there is no link to it (yet); a
    /// promotion, a claim or a link is pending.
    NoLivePrimary,
    /// The partition is being handed to another node.
    Handoff,
    /// This node just became the partition's primary and waits until its peers acknowledged the
    /// new record (one round trip).
    Announcing,
    /// A backup of the partition lost its link while still alive, and does not know yet that
    /// it was removed from the record; writes wait until it does (a reconnection).
    BackupUnconfirmed,
    /// This node stalled or was declared dead; it waits for fresh tables from its view.
    Fenced,
    /// A member entered the view (or a link came up) and tables are not exchanged yet.
    TableExchange,
}

/// Why the node fences the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FenceReason {
    /// Membership reported `SelfStalled`.
    Stalled,
    /// A member reported this node dead (`SelfDeclaredDead`).
    DeclaredDead,
}

/// The view as the engine uses it: members, a fast membership test, and the placement.
#[derive(Debug)]
pub(crate) struct ViewState {
    pub(crate) members: Vec<ViewMember>,
    /// Sorted, for binary search.
    pub(crate) sorted: Vec<Member>,
    pub(crate) placement: Placement,
}

impl ViewState {
    fn new(mut members: Vec<ViewMember>, num_partitions: u32, backups: usize) -> ViewState {
        members.sort();
        members.dedup_by(|a, b| a.member == b.member);
        let mut sorted: Vec<Member> = members.iter().map(|member| member.member).collect();
        sorted.sort_unstable();
        let placement = Placement::new(&members, num_partitions, backups);
        ViewState {
            members,
            sorted,
            placement,
        }
    }

    pub(crate) fn contains(&self, member: Member) -> bool {
        self.sorted.binary_search(&member).is_ok()
    }

    pub(crate) fn live_count(&self) -> usize {
        self.sorted.len()
    }
}

/// Inputs of one call: the time and the view it runs against.
pub(crate) struct Ctx {
    pub(crate) now_ms: u64,
    pub(crate) view: Arc<ViewState>,
}

/// Most members `seen_members` remembers; beyond, the oldest never-seen ones are forgotten.
const SEEN_MEMBERS_MAX: usize = 16_384;

/// What this node knows of a member named in records.
#[derive(Clone, Copy, Debug)]
struct SeenMember {
    /// It was in this node's view or linked to it at some point.
    seen_alive: bool,
    /// When this node first heard of it, in ms.
    first_heard_ms: u64,
}

/// What an acknowledgement did to the confirmation its member owed (`Engine::handle_ack`).
enum Confirmed {
    No,
    /// The table was acknowledged; the partitions stop waiting, the acknowledgements stay held.
    Partitions(Vec<u32>),
    /// The confirmation is over.
    Whole(Confirmation),
}

/// What a node knows of a member's death (see `Engine::death_knowledge`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Death {
    /// Alive, or unknown and within the grace.
    Alive,
    /// Seen alive before and gone, or replaced by a newer incarnation.
    Known,
    /// Never heard from, for longer than the grace.
    Presumed,
}

/// A relayed reply waiting for write-through acknowledgements.
#[derive(Debug)]
struct PendingReply {
    to: Member,
    id: u64,
    reply: Reply,
    waits: SmallList<(Arc<PeerLink>, u64)>,
}

/// The cluster engine of one node; see the module docs.
pub struct Engine<H: Host> {
    config: EngineConfig,
    store: Arc<Store>,
    host: H,
    partitions: Box<[Mutex<PartitionState>]>,
    /// Set when a partition has tick work; the tick scans these instead of every lock.
    active: Box<[AtomicBool]>,
    view: RwLock<Arc<ViewState>>,
    /// Taken after a partition lock or the view lock, never before them.
    peers: Mutex<BTreeMap<Member, PeerState>>,
    pending_replies: Mutex<Vec<PendingReply>>,
    /// Partitions whose new primaryship waits for acknowledgements (`PrimaryState::announce`).
    announcing: Mutex<std::collections::BTreeSet<u32>>,
    /// Members named in records: whether this node saw them alive, and when it first heard of
    /// them (see `unknown_member_grace_ms`). Bounded by `SEEN_MEMBERS_MAX`.
    seen_members: Mutex<BTreeMap<Member, SeenMember>>,
    /// Open: not fenced, every view member's table arrived since it was admitted, and every
    /// linked peer's table arrived on its link (PROTOCOL.md §9.3, §10).
    gate_open: AtomicBool,
    fenced: AtomicBool,
    fence_requested: AtomicBool,
    last_alive_ms: AtomicU64,
    leaving: AtomicBool,
    started_ms: u64,
    exchanged_with_any: AtomicBool,
    /// Every peer this node is linked to is in its view: a linked peer outside it shows the view
    /// lags what this node knows (PROTOCOL.md §5 rule 2). Kept by `recompute_gate`.
    links_in_view: AtomicBool,
    /// Every member of the view reported the same view as this node's, as the node layer last
    /// said ([`Engine::handle_view_agreement`]).
    view_agreed: AtomicBool,
    table_digest: AtomicU64,
    snapshots_in_progress: AtomicUsize,
    deferred_total: AtomicUsize,
    last_full_evaluation_ms: AtomicU64,
    stats: Counters,
    /// Durations of completed handoffs the node has not drained into its histogram yet.
    handoff_durations: HandoffDurations,
}

impl<H: Host> Engine<H> {
    /// An engine for `config.me` over `store`, alone in its view, owning nothing.
    pub fn new(
        config: EngineConfig,
        store: Arc<Store>,
        host: H,
        now_ms: u64,
    ) -> Result<Engine<H>, EngineError> {
        config.validate()?;
        if store.num_partitions() != config.num_partitions || store.hlc().node() != config.me.id.0 {
            return Err(EngineError::StoreMismatch {
                engine: config.num_partitions,
                store: store.num_partitions(),
                engine_node: config.me.id.0,
                store_node: store.hlc().node(),
            });
        }
        let partitions = (0..config.num_partitions)
            .map(|_| {
                Mutex::new(PartitionState {
                    needs_evaluation: true,
                    ..PartitionState::default()
                })
            })
            .collect();
        let active = (0..config.num_partitions)
            .map(|_| AtomicBool::new(true))
            .collect();
        let view = ViewState::new(
            vec![ViewMember {
                member: config.me,
                name: config.name.clone(),
                leaving: false,
            }],
            config.num_partitions,
            config.backups,
        );
        let engine = Engine {
            store,
            host,
            partitions,
            active,
            view: RwLock::new(Arc::new(view)),
            peers: Mutex::new(BTreeMap::new()),
            pending_replies: Mutex::new(Vec::new()),
            announcing: Mutex::new(std::collections::BTreeSet::new()),
            seen_members: Mutex::new(BTreeMap::new()),
            gate_open: AtomicBool::new(true),
            fenced: AtomicBool::new(false),
            fence_requested: AtomicBool::new(false),
            last_alive_ms: AtomicU64::new(now_ms),
            leaving: AtomicBool::new(false),
            started_ms: now_ms,
            exchanged_with_any: AtomicBool::new(false),
            links_in_view: AtomicBool::new(true),
            view_agreed: AtomicBool::new(true),
            table_digest: AtomicU64::new(0),
            snapshots_in_progress: AtomicUsize::new(0),
            deferred_total: AtomicUsize::new(0),
            last_full_evaluation_ms: AtomicU64::new(now_ms),
            stats: Counters::default(),
            handoff_durations: HandoffDurations::default(),
            config,
        };
        if engine.config.join_wait_ms == 0 {
            // A node that joins nobody owns everything from its first instant, before anyone can
            // join: a joining node then adopts its records instead of racing it with claims.
            engine.evaluate_all(now_ms);
        }
        Ok(engine)
    }

    /// The configuration in force.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// This node.
    pub fn me(&self) -> Member {
        self.config.me
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The host.
    pub fn host(&self) -> &H {
        &self.host
    }

    // ----------------------------------------------------------------------------------------
    // Client path

    /// Executes `op` on partition `partition`, database `db`, if this node is its primary and
    /// may act (see [`Execution`]). The common case (a GET, or a SET streamed to a backup)
    /// allocates nothing beyond the store's own allocations and the reply.
    pub fn execute(&self, partition: u32, db: u8, op: Op, now_ms: u64) -> Execution {
        let Some(slot) = self.partitions.get(partition as usize) else {
            return Execution::Wait {
                reason: WaitReason::NoSuchPartition,
            };
        };
        let mut state = slot.lock();
        let execution = self.execute_locked(partition, &mut state, db, op, now_ms);
        if state.needs_evaluation {
            self.mark_active(partition);
        }
        execution
    }

    /// Starts loading into the cache what an op on `key` will read (`store::Store::prefetch`),
    /// when this node is the partition's primary: elsewhere the op is relayed, and a backup's
    /// copy would be loaded for nothing. A hint, for the requests of a pipelined batch before
    /// they run: it never waits for a lock.
    pub fn prefetch(&self, partition: u32, db: u8, key: &[u8]) {
        let Some(slot) = self.partitions.get(partition as usize) else {
            return;
        };
        let is_primary = slot.try_lock().is_some_and(|state| state.primary.is_some());
        if is_primary {
            self.store.prefetch(partition, db, key);
        }
    }

    /// Records `record` for `partition` if it is higher than the one held (a relay learned it
    /// from a `NotPrimary` response).
    pub fn learn_record(&self, partition: u32, record: Record, now_ms: u64) {
        let Some(slot) = self.partitions.get(partition as usize) else {
            return;
        };
        let ctx = self.ctx(now_ms);
        let mut state = slot.lock();
        if self.adopt_record(partition, &mut state, record, &ctx) {
            self.evaluate(partition, &mut state, &ctx);
            self.run_deferred(partition, &mut state, &ctx);
        }
        self.finish(partition, &state);
    }

    /// Whether a key of `partition` whose version has clock reading `version_hlc` may lack
    /// writes lost in a delayed-write failover (`SCD.STALE`, PROTOCOL.md §9.2).
    pub fn is_possibly_stale(&self, partition: u32, version_hlc: u64) -> bool {
        self.partitions
            .get(partition as usize)
            .and_then(|slot| {
                let state = slot.lock();
                state
                    .record
                    .as_ref()
                    .map(|record| version_hlc < record.suspect_before_hlc)
            })
            .unwrap_or(false)
    }

    // ----------------------------------------------------------------------------------------
    // Peer path

    /// A frame arrived from `from`. `Ack` frames belong to the link layer (which calls
    /// [`Engine::handle_ack`]) and `Response` frames to the relay (which calls
    /// [`Engine::learn_record`]); both are ignored here.
    pub fn handle_message(&self, from: Member, message: PeerMessage, now_ms: u64) {
        if let Some(partition) = message.partition()
            && partition >= self.config.num_partitions
        {
            self.stats
                .invalid_partitions
                .fetch_add(1, Ordering::Relaxed);
            if let PeerMessage::Request { id, .. } = message {
                self.send_response(
                    from,
                    id,
                    RelayResult::Unavailable {
                        reason: UnavailableReason::NoSuchPartition,
                    },
                );
            }
            return;
        }
        let ctx = self.ctx(now_ms);
        match message {
            PeerMessage::Request {
                id,
                partition,
                db,
                op,
            } => self.handle_request(from, id, partition, db, op, &ctx),
            PeerMessage::Response { .. } | PeerMessage::Ack { .. } => {}
            PeerMessage::Record { partition, record } => {
                self.handle_record(from, partition, record, &ctx)
            }
            PeerMessage::TableRequest => {
                self.send_table(from, now_ms);
            }
            PeerMessage::Table { records } => self.handle_table(from, records, &ctx),
            PeerMessage::Replicate {
                partition,
                epoch,
                seq,
                mutations,
            } => self.handle_replicate(from, partition, epoch, seq, mutations, &ctx),
            PeerMessage::SnapshotBegin {
                partition,
                epoch,
                next_seq,
            } => self.handle_snapshot_begin(from, partition, epoch, next_seq, &ctx),
            PeerMessage::SnapshotChunk {
                partition,
                mutations,
                ..
            } => self.handle_snapshot_chunk(from, partition, mutations, &ctx),
            PeerMessage::SnapshotEnd { partition, epoch } => {
                self.handle_snapshot_end(from, partition, epoch, &ctx)
            }
            PeerMessage::SnapshotDone { partition, .. } => {
                self.handle_snapshot_done(from, partition, &ctx)
            }
            PeerMessage::Resync { partition } => self.handle_resync(from, partition, &ctx),
            PeerMessage::Handoff { partition, record } => {
                self.handle_handoff(from, partition, record, &ctx)
            }
            PeerMessage::HandoffDone { partition, epoch } => {
                self.handle_handoff_done(from, partition, epoch, &ctx)
            }
            PeerMessage::Merge {
                partition,
                mutations,
                last,
                ..
            } => self.handle_merge(from, partition, mutations, last, &ctx),
            PeerMessage::HandoffRefused { partition, epoch } => {
                self.handle_handoff_refused(from, partition, epoch, &ctx)
            }
            PeerMessage::MergeIntent { partition, epoch } => {
                self.handle_merge_intent(from, partition, epoch, &ctx)
            }
        }
    }

    /// The link layer received `Ack { frames }` from `from`.
    pub fn handle_ack(&self, from: Member, frames: u64) {
        let (confirmed, held) = {
            let mut peers = self.peers.lock();
            let Some(state) = peers.get_mut(&from) else {
                return;
            };
            let Some(link) = &state.link else {
                return;
            };
            link.note_acked(frames);
            match &mut state.confirmation {
                None => (Confirmed::No, false),
                // It must confirm it was removed (`link::Confirmation`), and `frames` does not
                // cover the table that tells it: the writes that waited for it stay
                // unacknowledged (waits on this link's own frames are not the host's).
                Some(confirmation)
                    if confirmation
                        .table_frame
                        .is_none_or(|table_frame| frames < table_frame) =>
                {
                    (Confirmed::No, true)
                }
                // Confirmed, but it lacks frames writes wait for: its partitions serve again
                // (it is brought up to date in place), its acknowledgements stay held until
                // the partitions that lost frames are snapshotted.
                Some(confirmation) if !confirmation.missed.is_empty() => {
                    if confirmation.table_acked_ms.is_some() {
                        (Confirmed::No, true)
                    } else {
                        // An acknowledgement carries no time: the last membership tick's,
                        // up to a tick early, starts the bound on the hold.
                        let now_ms = self.last_alive_ms.load(Ordering::Acquire);
                        confirmation.table_acked_ms = Some(now_ms);
                        let partitions = std::mem::take(&mut confirmation.partitions);
                        (Confirmed::Partitions(partitions), true)
                    }
                }
                Some(_) => match state.confirmation.take() {
                    Some(confirmation) => (Confirmed::Whole(confirmation), false),
                    None => (Confirmed::No, false),
                },
            }
        };
        match confirmed {
            Confirmed::No => {}
            Confirmed::Partitions(partitions) => {
                self.stats
                    .removals_confirmed
                    .fetch_add(1, Ordering::Relaxed);
                self.stop_awaiting(from, &partitions);
            }
            Confirmed::Whole(confirmation) => {
                if confirmation.table_acked_ms.is_none() {
                    self.stats
                        .removals_confirmed
                        .fetch_add(1, Ordering::Relaxed);
                }
                self.end_confirmation(from, confirmation, frames, None);
            }
        }
        if !held {
            self.host.acked(from, frames);
        }
        self.complete_pending_replies();
        // An acknowledgement carries no time: the requests deferred behind an announcement run
        // at the next tick, with its clock. Run here, they would take the last membership
        // tick's time, up to a tick in the past: a lease (SCD.RENEW, SCD.LOCK) or a relative
        // expiry would end that much earlier than the primary answered (sim seed 120).
        self.complete_announcements(None);
    }

    /// Partitions whose new primary's record every peer acknowledged start serving; with a
    /// time, the requests deferred meanwhile run now (else the next tick runs them: a partition
    /// with deferred requests stays active). Takes partition locks: call it with none held.
    pub(super) fn complete_announcements(&self, now_opt: Option<u64>) {
        let partitions: Vec<u32> = self.announcing.lock().iter().copied().collect();
        if partitions.is_empty() {
            return;
        }
        let ctx_opt = now_opt.map(|now_ms| self.ctx(now_ms));
        for partition in partitions {
            let mut state = self.partitions[partition as usize].lock();
            let done = match &mut state.primary {
                Some(primary) => {
                    if primary.records_acknowledged() {
                        // Every peer answered the claim: no more copies to hear of.
                        primary.claim_open = false;
                    }
                    if let Some(ctx) = &ctx_opt {
                        self.prune_awaited_merges(partition, primary, ctx);
                    }
                    let announced = primary.is_announced();
                    if announced {
                        primary.announce.clear();
                    }
                    announced
                }
                None => true,
            };
            if done {
                self.announcing.lock().remove(&partition);
                self.host.partition_changed(partition);
                if let Some(ctx) = &ctx_opt {
                    self.run_deferred(partition, &mut state, ctx);
                }
                self.finish(partition, &state);
            }
        }
    }

    // ----------------------------------------------------------------------------------------
    // Membership and links

    /// The view changed (membership events). `view` lists the members believed alive with
    /// their names and leaving flags; this node is added if missing, with its own leaving flag.
    pub fn handle_view(&self, view: Vec<ViewMember>, now_ms: u64) {
        let me = self.config.me;
        let leaving = self.leaving.load(Ordering::Acquire);
        let mut members: Vec<ViewMember> = view
            .into_iter()
            .filter(|member| member.member.id != me.id || member.member == me)
            .collect();
        match members.iter_mut().find(|member| member.member == me) {
            Some(own) => own.leaving = leaving,
            None => members.push(ViewMember {
                member: me,
                name: self.config.name.clone(),
                leaving,
            }),
        }
        let new_view = Arc::new(ViewState::new(
            members,
            self.config.num_partitions,
            self.config.backups,
        ));
        let old_view = {
            let mut view = self.view.write();
            if view.members == new_view.members {
                return;
            }
            std::mem::replace(&mut *view, new_view.clone())
        };
        self.note_alive(new_view.sorted.iter().copied(), now_ms);
        let removed: Vec<Member> = old_view
            .sorted
            .iter()
            .copied()
            .filter(|member| !new_view.contains(*member))
            .collect();
        let added: Vec<Member> = new_view
            .sorted
            .iter()
            .copied()
            .filter(|member| *member != me && !old_view.contains(*member))
            .collect();
        let mut ended_confirmations = Vec::new();
        {
            let mut peers = self.peers.lock();
            for member in &added {
                let peer = peers.entry(*member).or_default();
                // Admitted: its table must arrive before this node acts again (§10), unless
                // the link already exchanged tables before membership admitted it.
                peer.exchanged_since_admission =
                    peer.link.as_ref().is_some_and(|link| link.is_exchanged());
            }
            for member in &removed {
                if let Some(peer) = peers.get_mut(member) {
                    peer.exchanged_since_admission = false;
                    if let Some(link) = &peer.link {
                        link.release();
                    }
                    if let Some(confirmation) = peer.confirmation.take() {
                        // Out of the view: if it promotes itself it does so in another group.
                        ended_confirmations.push((*member, confirmation));
                    }
                }
            }
            peers.retain(|member, peer| {
                peer.link.is_some() || peer.confirmation.is_some() || new_view.contains(*member)
            });
        }
        for member in &removed {
            self.host.acked(*member, u64::MAX);
        }
        for (member, confirmation) in ended_confirmations {
            self.end_confirmation(member, confirmation, u64::MAX, Some(now_ms));
        }
        if !removed.is_empty() {
            self.complete_pending_replies();
        }
        self.recompute_gate();
        self.evaluate_all(now_ms);
    }

    /// A link to `peer` is up (authenticated): the table exchange starts, and until it is done
    /// this node does not act as primary (§10).
    ///
    /// The engine keeps the state of one link per member: the host reports the end of a link
    /// ([`Engine::handle_link_down`]) before the start of the link that replaces it, and never
    /// after. (An end reported late would be taken for the new link's: the engine would keep
    /// no state for a link that is up, ignore its acknowledgements, and leave the writes that
    /// wait for them waiting.)
    pub fn handle_link_up(&self, peer: Member, now_ms: u64) {
        self.note_alive(std::iter::once(peer), now_ms);
        let link = Arc::new(PeerLink::new());
        {
            let mut peers = self.peers.lock();
            let state = peers.entry(peer).or_default();
            if let Some(old) = state.link.replace(link) {
                old.release();
            }
            state.digest_mismatches = 0;
        }
        self.recompute_gate();
        self.stats
            .table_requests_sent
            .fetch_add(1, Ordering::Relaxed);
        self.send(peer, &PeerMessage::TableRequest, now_ms);
        let table_frame = self.send_table(peer, now_ms);
        if let Some(confirmation) = self
            .peers
            .lock()
            .get_mut(&peer)
            .and_then(|state| state.confirmation.as_mut())
        {
            // It handles the table before acknowledging it: then it holds every record that
            // removed it.
            confirmation.table_frame = table_frame;
        }
        self.mark_all_for_evaluation();
    }

    /// The link to `peer` is gone: snapshots, merges and handoffs to it are abandoned, it is no
    /// longer a backup of this node's partitions, and waits on it are released: at once, unless
    /// it was a backup here and is still in the view, then once it confirms
    /// (`link::Confirmation`).
    pub fn handle_link_down(&self, peer: Member, now_ms: u64) {
        let link = {
            let mut peers = self.peers.lock();
            let Some(state) = peers.get_mut(&peer) else {
                return;
            };
            state.link.take()
        };
        let Some(link) = link else {
            return;
        };
        self.pending_replies
            .lock()
            .retain(|pending| pending.to != peer);
        // Removing it from the records of this node's partitions makes it confirm
        // (`author_record`) when it may still be alive.
        let ctx = self.ctx(now_ms);
        for partition in 0..self.config.num_partitions {
            let mut state = self.partitions[partition as usize].lock();
            self.forget_link(partition, &mut state, peer, &ctx);
            self.finish(partition, &state);
        }
        let held = {
            let mut peers = self.peers.lock();
            match peers
                .get_mut(&peer)
                .and_then(|state| state.confirmation.as_mut())
            {
                Some(confirmation) => {
                    confirmation.ended.push(Arc::clone(&link));
                    confirmation.table_frame = None;
                    if confirmation.table_acked_ms.take().is_some() {
                        // It had confirmed: a new confirmation, with its own time to come.
                        confirmation.since_ms = now_ms;
                    }
                    confirmation.generation += 1;
                    confirmation.ended_last_frame = confirmation
                        .ended_last_frame
                        .max(self.host.frames_sent(peer));
                    true
                }
                None => false,
            }
        };
        if !held {
            link.release();
            self.host.acked(peer, u64::MAX);
        }
        self.complete_pending_replies();
        self.complete_announcements(Some(now_ms));
        self.recompute_gate();
    }

    /// Time passes: evaluates the rules where needed, paces snapshots and merges, watches
    /// handoffs and re-runs deferred requests. Bounded work per call.
    pub fn handle_tick(&self, now_ms: u64) {
        if self.fence_requested.swap(false, Ordering::AcqRel) {
            self.fence_self(FenceReason::Stalled);
        }
        let last_full_ms = self.last_full_evaluation_ms.load(Ordering::Relaxed);
        if now_ms >= last_full_ms.saturating_add(self.config.reevaluate_interval_ms) {
            self.last_full_evaluation_ms
                .store(now_ms, Ordering::Relaxed);
            self.mark_all_for_evaluation();
        }
        self.complete_announcements(Some(now_ms));
        self.expire_confirmations(now_ms);
        self.settle_missed(now_ms);
        let ctx = self.ctx(now_ms);
        let mut chunk_budget = self.config.chunks_per_tick_max;
        // The partitions whose snapshots hold back a member's acknowledgements (and with them
        // every write waiting for that member) go first.
        let missed: BTreeSet<u32> = self
            .peers
            .lock()
            .values()
            .filter_map(|peer| peer.confirmation.as_ref())
            .flat_map(|confirmation| confirmation.missed.iter().copied())
            .collect();
        let rest = (0..self.config.num_partitions).filter(|partition| !missed.contains(partition));
        for partition in missed.iter().copied().chain(rest) {
            if !self.active[partition as usize].swap(false, Ordering::AcqRel) {
                continue;
            }
            let mut state = self.partitions[partition as usize].lock();
            if state.needs_evaluation {
                self.evaluate(partition, &mut state, &ctx);
            }
            self.tick_partition(partition, &mut state, &ctx, &mut chunk_budget);
            self.run_deferred(partition, &mut state, &ctx);
            self.finish(partition, &state);
        }
    }

    /// The membership loop ran (the node calls this every membership tick). A gap longer than
    /// `stall_fence_ms` since the previous call means this node stalled: it fences itself.
    pub fn handle_membership_alive(&self, now_ms: u64) {
        let previous_ms = self.last_alive_ms.swap(now_ms, Ordering::AcqRel);
        let stalled = now_ms > previous_ms.saturating_add(self.config.stall_fence_ms);
        if stalled || self.fence_requested.swap(false, Ordering::AcqRel) {
            self.fence_self(FenceReason::Stalled);
        }
    }

    /// Fences this node (PROTOCOL.md §9.3): every partition operation waits until tables are
    /// exchanged again with every member of the view (at once if alone).
    pub fn fence_self(&self, _reason: FenceReason) {
        self.stats.fences.fetch_add(1, Ordering::Relaxed);
        self.fenced.store(true, Ordering::Release);
        self.gate_open.store(false, Ordering::Release);
        let linked: Vec<Member> = {
            let mut peers = self.peers.lock();
            for peer in peers.values_mut() {
                peer.exchanged_since_admission = false;
                if let Some(link) = &peer.link {
                    link.set_exchanged(false);
                }
            }
            peers
                .iter()
                .filter(|(_, peer)| peer.link.is_some())
                .map(|(member, _)| *member)
                .collect()
        };
        let now_ms = self.last_alive_ms.load(Ordering::Acquire);
        for member in linked {
            self.stats
                .table_requests_sent
                .fetch_add(1, Ordering::Relaxed);
            self.send(member, &PeerMessage::TableRequest, now_ms);
        }
        self.recompute_gate();
    }

    /// Whether every member of this node's view reported (in its heartbeats) the same view as
    /// this node's. Claims wait for agreement (PROTOCOL.md §5 rule 2): two nodes whose views
    /// differ can each be the target primary of a partition nobody owns yet.
    pub fn handle_view_agreement(&self, agreed: bool) {
        let was_agreed = self.view_agreed.swap(agreed, Ordering::AcqRel);
        if agreed && !was_agreed {
            self.mark_all_for_evaluation();
        }
    }

    /// A peer's heartbeat advertised table digest `digest`: after
    /// `digest_mismatches_max` differing checks in a row, its table is requested.
    pub fn handle_peer_digest(&self, peer: Member, digest: u64, now_ms: u64) {
        let own = self.table_digest();
        let request = {
            let mut peers = self.peers.lock();
            let Some(state) = peers.get_mut(&peer) else {
                return;
            };
            if state.link.is_none() || digest == own {
                state.digest_mismatches = 0;
                false
            } else {
                state.digest_mismatches += 1;
                if state.digest_mismatches >= self.config.digest_mismatches_max {
                    state.digest_mismatches = 0;
                    true
                } else {
                    false
                }
            }
        };
        if request {
            self.stats
                .table_requests_sent
                .fetch_add(1, Ordering::Relaxed);
            self.send(peer, &PeerMessage::TableRequest, now_ms);
        }
    }

    /// Planned leave: this node stops being a target; the rules hand its partitions off.
    pub fn leave(&self, now_ms: u64) {
        self.leaving.store(true, Ordering::Release);
        let members = self.view.read().members.clone();
        // Force the rebuild: the member list compares equal until the flag is applied.
        {
            let mut view = self.view.write();
            let mut changed: Vec<ViewMember> = members.clone();
            for member in &mut changed {
                if member.member == self.config.me {
                    member.leaving = true;
                }
            }
            *view = Arc::new(ViewState::new(
                changed,
                self.config.num_partitions,
                self.config.backups,
            ));
        }
        self.evaluate_all(now_ms);
    }

    /// Whether this node is leaving.
    pub fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::Acquire)
    }

    /// Whether no record names this node and it has nothing left to merge: a leaving node may
    /// exit.
    pub fn owns_nothing(&self) -> bool {
        let me = self.config.me;
        self.partitions.iter().all(|slot| {
            let state = slot.lock();
            state.merge.is_none() && !state.record.as_ref().is_some_and(|r| r.is_owner(me))
        })
    }

    // ----------------------------------------------------------------------------------------
    // Introspection

    /// The record held for `partition`.
    pub fn record(&self, partition: u32) -> Option<Record> {
        self.partitions
            .get(partition as usize)
            .and_then(|slot| slot.lock().record.clone())
    }

    /// Whether this node would execute an operation of `partition` at `now_ms`.
    pub fn accepting_writes(&self, partition: u32, now_ms: u64) -> bool {
        let Some(slot) = self.partitions.get(partition as usize) else {
            return false;
        };
        let state = slot.lock();
        state
            .primary
            .as_ref()
            .is_some_and(|primary| primary.handoff.is_none() && primary.is_announced())
            && self.gate_reason(now_ms, false).is_none()
    }

    /// Whether a link to `member` is up and its table arrived on it.
    pub fn table_synced_with(&self, member: Member) -> bool {
        self.peers
            .lock()
            .get(&member)
            .and_then(|peer| peer.link.as_ref().map(|link| link.is_exchanged()))
            .unwrap_or(false)
    }

    /// The digest of this node's table (membership advertises it in heartbeats).
    pub fn table_digest(&self) -> u64 {
        self.table_digest.load(Ordering::Acquire)
    }

    /// The view the engine works with, this node included.
    pub fn view(&self) -> Vec<ViewMember> {
        self.view.read().members.clone()
    }

    /// Counters.
    pub fn stats(&self) -> EngineStats {
        self.stats.snapshot()
    }

    /// The durations in ms of the handoffs completed (as the old primary) since the last call,
    /// oldest first, for a histogram; at most `HANDOFF_DURATIONS_KEPT_MAX`, the oldest dropped
    /// first when nobody drains them.
    pub fn drain_handoff_durations_ms(&self) -> Vec<u64> {
        self.handoff_durations.drain()
    }

    /// The cluster as this node sees it.
    pub fn summary(&self, now_ms: u64) -> Summary {
        let view = self.view.read().clone();
        let wanted_backups = self.config.backups.min(view.live_count().saturating_sub(1));
        let mut summary = Summary {
            gate_open: self.gate_open.load(Ordering::Acquire),
            pending_replies: self.pending_replies.lock().len() as u32,
            ..Summary::default()
        };
        for (partition, slot) in self.partitions.iter().enumerate() {
            let state = slot.lock();
            let busy = state.merge.is_some()
                || state.following.as_ref().is_some_and(|f| f.receiving)
                || state.primary.as_ref().is_some_and(|primary| {
                    primary.handoff.is_some()
                        || primary.catch_up.is_some()
                        || primary
                            .stream
                            .iter()
                            .any(|member| !matches!(member.phase, state::StreamPhase::Synced))
                });
            if busy && summary.busy_partitions.len() < stats::BUSY_PARTITIONS_SHOWN {
                summary.busy_partitions.push(partition as u32);
            }
            summary.deferred_requests += state.deferred.len() as u32;
            if state.merge.is_some() {
                summary.merges_in_progress += 1;
            }
            if state.following.as_ref().is_some_and(|f| f.receiving) {
                summary.snapshots_receiving += 1;
            }
            if let Some(primary) = &state.primary {
                if primary.handoff.is_some() {
                    summary.handoffs_in_progress += 1;
                }
                if primary.catch_up.is_some() {
                    summary.merges_in_progress += 1;
                }
                summary.snapshots_in_progress += primary
                    .stream
                    .iter()
                    .filter(|member| !matches!(member.phase, state::StreamPhase::Synced))
                    .count() as u32;
            }
            let Some(record) = &state.record else {
                summary.without_record += 1;
                continue;
            };
            summary
                .ownership
                .entry(record.primary)
                .or_default()
                .primaries += 1;
            for backup in &record.backups {
                summary.ownership.entry(*backup).or_default().backups += 1;
            }
            if !view.contains(record.primary) {
                summary.without_live_primary += 1;
            }
            if !record.has_owners(view.placement.targets(partition as u32)) {
                summary.to_move += 1;
            }
            let live_backups = record
                .backups
                .iter()
                .filter(|backup| view.contains(**backup))
                .count();
            if live_backups < self.config.backups {
                summary.short_of_backups += 1;
            }
            if live_backups < wanted_backups {
                summary.under_replicated += 1;
                if summary.under_replicated_partitions.len() < UNDER_REPLICATED_PARTITIONS_SHOWN {
                    summary.under_replicated_partitions.push(partition as u32);
                }
            }
        }
        for (member, peer) in self.peers.lock().iter() {
            if let Some(link) = &peer.link {
                summary.lag_ms.insert(*member, link.lag_ms(now_ms));
            }
        }
        summary
    }

    // ----------------------------------------------------------------------------------------
    // Internals shared by the submodules

    fn ctx(&self, now_ms: u64) -> Ctx {
        Ctx {
            now_ms,
            view: self.view.read().clone(),
        }
    }

    /// Remembers that these members were alive (in the view or linked).
    fn note_alive(&self, members: impl Iterator<Item = Member>, now_ms: u64) {
        let mut seen = self.seen_members.lock();
        for member in members {
            seen.entry(member)
                .or_insert(SeenMember {
                    seen_alive: true,
                    first_heard_ms: now_ms,
                })
                .seen_alive = true;
        }
        Self::bound_seen(&mut seen);
    }

    fn bound_seen(seen: &mut BTreeMap<Member, SeenMember>) {
        while seen.len() > SEEN_MEMBERS_MAX {
            let oldest = seen
                .iter()
                .min_by_key(|(_, state)| (state.seen_alive, state.first_heard_ms))
                .map(|(member, _)| *member);
            match oldest {
                Some(member) => {
                    seen.remove(&member);
                }
                None => break,
            }
        }
    }

    /// Whether `member` is dead for the ownership rules: not alive, and either seen alive
    /// before, replaced by a newer incarnation of its node, or unheard of for longer than
    /// `unknown_member_grace_ms`.
    pub(crate) fn is_dead(&self, ctx: &Ctx, member: Member) -> bool {
        self.death_knowledge(ctx, member) != Death::Alive
    }

    /// What this node knows of `member`'s death: alive, dead (seen alive before, or replaced by
    /// a newer incarnation), or presumed dead (never heard from for `unknown_member_grace_ms`);
    /// `Alive` also while it is unknown but within the grace.
    pub(crate) fn death_knowledge(&self, ctx: &Ctx, member: Member) -> Death {
        if self.is_alive(ctx, member) {
            return Death::Alive;
        }
        if member.id == self.config.me.id
            || ctx.view.sorted.iter().any(|alive| alive.id == member.id)
        {
            // Another incarnation of a node that is alive: that run is over.
            return Death::Known;
        }
        let mut seen = self.seen_members.lock();
        let state = *seen.entry(member).or_insert(SeenMember {
            seen_alive: false,
            first_heard_ms: ctx.now_ms,
        });
        Self::bound_seen(&mut seen);
        if state.seen_alive {
            Death::Known
        } else if ctx.now_ms
            >= state
                .first_heard_ms
                .saturating_add(self.config.unknown_member_grace_ms)
        {
            Death::Presumed
        } else {
            Death::Alive
        }
    }

    fn mark_active(&self, partition: u32) {
        if let Some(flag) = self.active.get(partition as usize) {
            flag.store(true, Ordering::Release);
        }
    }

    /// After any change to a partition's state: keeps its tick flag true while it has work.
    fn finish(&self, partition: u32, state: &PartitionState) {
        if state.needs_tick() {
            self.mark_active(partition);
        }
    }

    fn mark_all_for_evaluation(&self) {
        for partition in 0..self.config.num_partitions {
            self.partitions[partition as usize].lock().needs_evaluation = true;
            self.mark_active(partition);
        }
    }

    fn evaluate_all(&self, now_ms: u64) {
        let ctx = self.ctx(now_ms);
        for partition in 0..self.config.num_partitions {
            let mut state = self.partitions[partition as usize].lock();
            self.evaluate(partition, &mut state, &ctx);
            self.run_deferred(partition, &mut state, &ctx);
            self.finish(partition, &state);
        }
    }

    /// Why operations must wait now, if they must. `request_fence`: a stale membership loop
    /// asks the next tick to fence this node.
    fn gate_reason(&self, now_ms: u64, request_fence: bool) -> Option<WaitReason> {
        let last_alive_ms = self.last_alive_ms.load(Ordering::Acquire);
        if now_ms > last_alive_ms.saturating_add(self.config.stall_fence_ms) {
            if request_fence {
                self.fence_requested.store(true, Ordering::Release);
            }
            return Some(WaitReason::Fenced);
        }
        if self.gate_open.load(Ordering::Acquire) {
            return None;
        }
        Some(if self.fenced.load(Ordering::Acquire) {
            WaitReason::Fenced
        } else {
            WaitReason::TableExchange
        })
    }

    /// Opens the gate when every view member's table arrived (ending a fence), closes it
    /// otherwise; wakes every partition's waiters when it opens.
    fn recompute_gate(&self) {
        let view = self.view.read().clone();
        let me = self.config.me;
        let (all_exchanged, links_in_view) = {
            let peers = self.peers.lock();
            // Every member of the view exchanged tables since it was admitted, and every linked
            // peer (in the view or not yet: membership can admit a member after its link is up)
            // exchanged on its current link: until then it may hold records this node lacks.
            let all_exchanged = view
                .sorted
                .iter()
                .filter(|member| **member != me)
                .all(|member| {
                    peers
                        .get(member)
                        .is_some_and(|peer| peer.exchanged_since_admission)
                })
                && peers
                    .values()
                    .all(|peer| peer.link.as_ref().is_none_or(|link| link.is_exchanged()));
            let links_in_view = peers
                .iter()
                .filter(|(_, peer)| peer.link.is_some())
                .all(|(member, _)| view.contains(*member));
            (all_exchanged, links_in_view)
        };
        let links_were_in_view = self.links_in_view.swap(links_in_view, Ordering::AcqRel);
        if links_in_view && !links_were_in_view {
            self.mark_all_for_evaluation();
        }
        if all_exchanged {
            self.fenced.store(false, Ordering::Release);
        }
        let was_open = self.gate_open.swap(all_exchanged, Ordering::AcqRel);
        if all_exchanged && !was_open {
            for partition in 0..self.config.num_partitions {
                self.host.partition_changed(partition);
            }
            self.mark_all_for_evaluation();
        }
    }

    /// Whether operations run now: not fenced, and tables exchanged with every member (§10).
    pub fn accepts_operations(&self) -> bool {
        self.gate_open.load(Ordering::Acquire)
    }

    fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    fn link(&self, member: Member) -> Option<Arc<PeerLink>> {
        self.peers.lock().get(&member)?.link.clone()
    }

    /// The link to `member` if it is up and its table exchange is done.
    fn ready_link(&self, member: Member) -> Option<Arc<PeerLink>> {
        self.link(member).filter(|link| link.is_exchanged())
    }

    /// Sends through the host and notes the frame for the lag measurement.
    fn send(&self, to: Member, message: &PeerMessage, now_ms: u64) -> Option<u64> {
        let frame = self.host.send(to, message)?;
        if let Some(link) = self.link(to) {
            link.note_sent(frame, now_ms);
        }
        Some(frame)
    }

    /// Sends a relay's answer. Not noted for the lag measurement: the requester acknowledges
    /// a `Response` only with the next frame that needs an `Ack` (PROTOCOL.md §6), so on a link
    /// that carries only relays it would count as replication lag that never ends.
    fn send_response(&self, to: Member, id: u64, result: RelayResult) {
        let _ = self.host.send(to, &PeerMessage::Response { id, result });
    }

    fn send_table(&self, to: Member, now_ms: u64) -> Option<u64> {
        let records: Vec<(u32, Record)> = (0..self.config.num_partitions)
            .filter_map(|partition| {
                let state = self.partitions[partition as usize].lock();
                state.record.clone().map(|record| (partition, record))
            })
            .collect();
        self.send(to, &PeerMessage::Table { records }, now_ms)
    }

    /// Keeps the table digest equal to the sum of the partitions' record digests.
    fn update_digest(&self, partition: u32, old: Option<&Record>, new: Option<&Record>) {
        let delta = record_digest(partition, new).wrapping_sub(record_digest(partition, old));
        self.table_digest.fetch_add(delta, Ordering::AcqRel);
    }

    /// Gives up on confirmations older than `confirm_timeout_ms` (the member stays in the view
    /// but no link to it comes up): availability is chosen over the rare case of this node
    /// crashing before it learns.
    fn expire_confirmations(&self, now_ms: u64) {
        let expired: Vec<(Member, Confirmation)> = {
            let mut peers = self.peers.lock();
            peers
                .iter_mut()
                .filter(|(_, state)| {
                    // One that confirmed waits only for the snapshots of `missed`, which may
                    // take longer than a reconnection.
                    state.confirmation.as_ref().is_some_and(|confirmation| {
                        let overall_ms =
                            self.config.confirm_timeout_ms + self.config.snapshot_done_timeout_ms;
                        now_ms >= confirmation.first_since_ms + overall_ms
                            || match confirmation.table_acked_ms {
                                None => {
                                    now_ms >= confirmation.since_ms + self.config.confirm_timeout_ms
                                }
                                Some(acked_ms) => {
                                    now_ms >= acked_ms + self.config.snapshot_done_timeout_ms
                                }
                            }
                    })
                })
                .filter_map(|(member, state)| Some((*member, state.confirmation.take()?)))
                .collect()
        };
        for (member, confirmation) in expired {
            self.stats
                .removals_unconfirmed
                .fetch_add(1, Ordering::Relaxed);
            // The current link's acknowledgements were held back too; a write whose send failed
            // waits for the first number after the ended links' (`waits`).
            let current = self.link(member).map_or(0, |link| link.acked_frames());
            let frames = (confirmation.ended_last_frame + 1).max(current);
            let partitions = confirmation.partitions.clone();
            self.end_confirmation(member, confirmation, frames, Some(now_ms));
            // Nor are its partitions waiting for it to be brought up to date in place, unless
            // a newer drop made them wait again.
            for partition in partitions {
                let mut state = self.partitions[partition as usize].lock();
                let still_awaited = self.awaited_again(member, partition);
                if let Some(primary) = &mut state.primary
                    && !still_awaited
                    && primary.is_resyncing(member)
                {
                    primary.resyncing.retain(|resync| resync.member != member);
                    self.host.partition_changed(partition);
                }
            }
        }
    }

    /// A confirmation is over: the waits on `member`'s ended links, and on frames up to
    /// `frames`, end; its partitions serve again.
    fn end_confirmation(
        &self,
        member: Member,
        confirmation: Confirmation,
        frames: u64,
        now_opt: Option<u64>,
    ) {
        for link in &confirmation.ended {
            link.release();
        }
        self.host.acked(member, frames);
        self.stop_awaiting(member, &confirmation.partitions);
        self.complete_pending_replies();
        self.complete_announcements(now_opt);
    }

    /// `member` confirmed (or was given up on, or left the view): `partitions` stop waiting
    /// for it, unless a newer drop made them wait again.
    fn stop_awaiting(&self, member: Member, partitions: &[u32]) {
        for &partition in partitions {
            let mut state = self.partitions[partition as usize].lock();
            let still_awaited = self.awaited_again(member, partition);
            if let Some(primary) = &mut state.primary
                && !still_awaited
                && primary.awaiting.contains(&member)
            {
                primary.awaiting.retain(|awaited| *awaited != member);
            }
            self.finish(partition, &state);
        }
    }

    /// Whether a newer confirmation of `member` waits for `partition` too (a drop after the
    /// one being ended). Called under the partition's lock, as `await_confirmation` adds to it.
    fn awaited_again(&self, member: Member, partition: u32) -> bool {
        self.peers
            .lock()
            .get(&member)
            .and_then(|peer| peer.confirmation.as_ref())
            .is_some_and(|newer| newer.partitions.contains(&partition))
    }

    /// Ends the confirmations whose member acknowledged its table once every partition that
    /// lost frames to it is done with its in-place snapshot (`Confirmation::missed`).
    fn settle_missed(&self, now_ms: u64) {
        let candidates: Vec<(Member, u64, Vec<u32>)> = self
            .peers
            .lock()
            .iter()
            .filter_map(|(member, peer)| {
                let confirmation = peer.confirmation.as_ref()?;
                (confirmation.table_acked_ms.is_some() && !confirmation.missed.is_empty()).then(
                    || {
                        (
                            *member,
                            confirmation.generation,
                            confirmation.missed.clone(),
                        )
                    },
                )
            })
            .collect();
        for (member, generation, missed) in candidates {
            // Done: the snapshot ended, or the member is no longer waited for here (given up,
            // not a target, or this node is not primary any more).
            let done: Vec<u32> = missed
                .into_iter()
                .filter(|&partition| {
                    let state = self.partitions[partition as usize].lock();
                    state
                        .primary
                        .as_ref()
                        .is_none_or(|primary| !primary.is_resyncing(member))
                })
                .collect();
            let ended = {
                let mut peers = self.peers.lock();
                let Some(peer) = peers.get_mut(&member) else {
                    continue;
                };
                match &mut peer.confirmation {
                    // A link that ended, or a send that failed, meanwhile may have lost more
                    // frames of these: they are checked again at the next tick.
                    Some(confirmation) if confirmation.generation == generation => {
                        confirmation
                            .missed
                            .retain(|partition| !done.contains(partition));
                        if confirmation.table_acked_ms.is_some() && confirmation.missed.is_empty() {
                            peer.confirmation.take()
                        } else {
                            None
                        }
                    }
                    _ => None,
                }
            };
            if let Some(confirmation) = ended {
                let frames = self.link(member).map_or(0, |link| link.acked_frames());
                self.end_confirmation(member, confirmation, frames, Some(now_ms));
            }
        }
    }

    /// Sends relayed replies whose waits are all over.
    fn complete_pending_replies(&self) {
        // Called on every acknowledgement: the replies still waiting stay where they are, so
        // only the ready ones are moved (splitting the list into two new ones each time was 3 %
        // of a backup's CPU under pipelined relayed writes).
        let ready: Vec<PendingReply> = {
            let mut pending = self.pending_replies.lock();
            if pending.is_empty() {
                return;
            }
            pending
                .extract_if(.., |reply| {
                    reply
                        .waits
                        .iter()
                        .all(|(link, frame)| link.is_satisfied(*frame))
                })
                .collect()
        };
        for reply in ready {
            self.send_response(reply.to, reply.id, RelayResult::Reply(reply.reply));
        }
    }

    /// Whether the handoff of `state` (if any) is past the point where the new primary may
    /// have taken over.
    fn handoff_sent(state: &PartitionState) -> bool {
        state
            .primary
            .as_ref()
            .and_then(|primary| primary.handoff.as_ref())
            .is_some_and(|handoff| !matches!(handoff.phase, HandoffPhase::Draining))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_id::{Incarnation, NodeId};

    fn assert_send_sync<T: Send + Sync>() {}

    struct NullHost;

    impl Host for NullHost {
        fn send(&self, _to: Member, _message: &PeerMessage) -> Option<u64> {
            None
        }
        fn backlog_bytes(&self, _to: Member) -> usize {
            0
        }
        fn partition_changed(&self, _partition: u32) {}
        fn acked(&self, _from: Member, _frames: u64) {}
        fn reset_link(&self, _to: Member) {}
        fn frames_sent(&self, _to: Member) -> u64 {
            0
        }
    }

    #[test]
    fn the_engine_is_send_and_sync() {
        assert_send_sync::<Engine<NullHost>>();
    }

    #[test]
    fn invalid_configurations_are_named() {
        let me = Member {
            id: NodeId::from_name("a"),
            incarnation: Incarnation(1),
        };
        let check = |change: &dyn Fn(&mut EngineConfig), field: &str| {
            let mut config = EngineConfig::new(me, "a", 16);
            change(&mut config);
            match config.validate() {
                Err(EngineError::InvalidConfig { field: actual, .. }) => assert_eq!(actual, field),
                other => panic!("{field}: {other:?}"),
            }
        };
        assert_eq!(EngineConfig::new(me, "a", 16).validate(), Ok(()));
        check(&|config| config.num_partitions = 3, "num_partitions");
        check(&|config| config.backups = 8, "backups");
        check(&|config| config.name = String::new(), "name");
        check(
            &|config| config.snapshot_chunk_items = 0,
            "snapshot_chunk_items",
        );
        check(
            &|config| config.pending_replies_max = 0,
            "pending_replies_max",
        );
        check(&|config| config.stall_fence_ms = 0, "stall_fence_ms");
    }

    #[test]
    fn an_engine_refuses_a_store_of_another_shape() {
        let me = Member {
            id: NodeId::from_name("a"),
            incarnation: Incarnation(1),
        };
        let store = Arc::new(
            Store::new(store::StoreConfig {
                num_partitions: 8,
                node_id: me.id.0,
                ..store::StoreConfig::default()
            })
            .expect("valid store"),
        );
        let config = EngineConfig::new(me, "a", 16);
        assert!(matches!(
            Engine::new(config, store, NullHost, 0),
            Err(EngineError::StoreMismatch { .. })
        ));
    }
}
