//! Starting and stopping the cluster side of a node: the engine, the peer links and the membership
//! thread; the tick that drives the engine; the planned leave on shutdown.

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cluster::auth::{ClusterKeys, ClusterSecret, LocalPeer};
use cluster::engine::{Engine, EngineConfig, EngineStats, WriteMode};
use cluster::membership::{
    MembershipConfig, MembershipStats, NodeAddresses, NodeLoad, RejectReason, SelfIdentity,
};
use cluster::node_id::{Incarnation, NodeId};
use cluster::table::Member;
use store::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::NodeError;
use crate::clock::Clock;
use crate::cluster_io::{ClusterHost, ClusterIo, Frames, Observer, PendingRelays, ROLE_LEAVING};
use crate::config::{self, NodeConfig};
use crate::membership::{self, MembershipCommand, MembershipHandle};
use crate::peer::Peers;
use crate::state::{BoundAddresses, NodeCounters, NodeState};

/// How often the engine's tick runs: paces snapshots and handoffs, re-runs waiting requests.
const ENGINE_TICK_INTERVAL: Duration = Duration::from_millis(10);
/// How often load and counters are published (heartbeats, metrics).
const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);
/// A node started with `--join` claims no partition before it has exchanged tables with a member,
/// or this long passed: long enough for a seed to answer, short enough for a first start.
const JOIN_WAIT_MS: u64 = 3_000;

/// A new incarnation: wall-clock microseconds, so a restart is always higher than the run before.
fn new_incarnation() -> Incarnation {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros())
        .unwrap_or(0);
    Incarnation(u64::try_from(micros).unwrap_or(u64::MAX))
}

/// Starts the engine, the peer links and the membership thread.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start(
    config: &NodeConfig,
    addresses: &BoundAddresses,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    metrics: Arc<admin::Metrics>,
    heartbeat_socket: UdpSocket,
    peer_listener: tokio::net::TcpListener,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> Result<Arc<ClusterIo>, NodeError> {
    let me = Member {
        id: NodeId::from_name(&config.name),
        incarnation: new_incarnation(),
    };
    let secret_opt = config.secret_opt.clone().map(ClusterSecret);
    let keys = ClusterKeys::derive(secret_opt.as_ref(), &config.cluster_name);
    if !keys.has_secret() {
        tracing::warn!(
            "no --secret-file: peers are not authenticated (anyone who can reach {} may join); \
             acceptable on loopback only",
            addresses.peer
        );
    }
    let local = LocalPeer {
        cluster_name: config.cluster_name.clone(),
        node_id: me.id,
        protocol_version: cluster::membership::wire::PROTOCOL_VERSION,
        partition_count: config.num_partitions,
        channel_binding: Vec::new(),
    };
    let peers = Peers::new(
        me,
        keys,
        local,
        config.allow.clone(),
        tasks.clone(),
        shutdown.clone(),
    );
    let host = ClusterHost::new(Arc::clone(&peers), config.num_partitions);
    let mut engine_config = EngineConfig::new(me, config.name.clone(), config.num_partitions);
    engine_config.backups = usize::from(config.backups);
    engine_config.write_mode = match config.write_mode {
        config::WriteMode::Through => WriteMode::Through,
        config::WriteMode::Delayed => WriteMode::Delayed,
    };
    engine_config.max_lag_ms = config.max_lag_ms;
    engine_config.join_wait_ms = if config.join.is_empty() {
        0
    } else {
        JOIN_WAIT_MS
    };
    let engine = Engine::new(engine_config, store, host, clock.now_ms())
        .map_err(|error| NodeError::Cluster(error.to_string()))?;
    let io = Arc::new(ClusterIo {
        engine,
        peers: Arc::clone(&peers),
        relays: PendingRelays::default(),
        clock: Arc::clone(&clock),
        membership: OnceLock::new(),
        metrics,
        frame_errors_log: crate::log::RateLimited::new(),
    });
    peers.set_handler(Arc::new(Frames(Arc::downgrade(&io))));

    let mut membership_config =
        MembershipConfig::new(config.cluster_name.clone(), config.num_partitions);
    membership_config.secret_opt = config.secret_opt.clone().map(ClusterSecret);
    membership_config.seed_addresses = config
        .join
        .iter()
        .copied()
        .map(membership::seed_heartbeat_address)
        .collect();
    membership_config.heartbeat_interval_ms = config.heartbeat_interval_ms;
    membership_config.phi_threshold = config.phi_threshold;
    let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
    let identity = SelfIdentity {
        name: config.name.clone(),
        incarnation: me.incarnation,
        addresses: NodeAddresses {
            peer: addresses.peer,
            heartbeat: addresses.peer,
            client: addresses.client,
            memcached_opt: addresses.memcached_opt,
            admin: addresses.admin_opt.unwrap_or(unspecified),
        },
    };
    let observer = Observer {
        io: Arc::downgrade(&io),
        last_view: Vec::new(),
        last_digest_check_ms: 0,
        digest_check_interval_ms: config.heartbeat_interval_ms,
        gate_was_open: false,
    };
    let observer_clock = Arc::clone(&clock);
    let handle = MembershipHandle::start(
        heartbeat_socket,
        config.allow.clone(),
        membership_config,
        identity,
        observer,
        move || observer_clock.now_ms(),
    )
    .map_err(NodeError::Cluster)?;
    let _ = io.membership.set(handle);
    tasks.spawn(Arc::clone(&peers).accept_forever(peer_listener));
    Ok(io)
}

/// Drives the engine and publishes this node's load, table digest and counters until shutdown.
pub(crate) async fn tick_forever(node: Arc<NodeState>) {
    let mut tick = tokio::time::interval(ENGINE_TICK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_digest = None;
    let mut last_publish = Instant::now();
    let mut published = Published::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = node.shutdown.cancelled() => return,
        }
        let engine = &node.io.engine;
        engine.handle_tick(node.now_ms());
        let digest = engine.table_digest();
        if last_digest != Some(digest) {
            last_digest = Some(digest);
            node.io
                .send_membership(MembershipCommand::SetTableDigest(digest));
        }
        if last_publish.elapsed() >= PUBLISH_INTERVAL {
            last_publish = Instant::now();
            node.io
                .send_membership(MembershipCommand::SetLoad(NodeLoad {
                    num_sessions: node.store.num_keys(),
                    num_connections: NodeCounters::get(&node.counters.connections_current),
                }));
            published.update(&node);
        }
    }
}

/// Counters last copied into the metrics, to add only what changed since.
#[derive(Default)]
struct Published {
    engine: EngineStats,
    membership: MembershipStats,
    heartbeats_not_allowed: u64,
    /// Replication lag gauges by peer name, so a peer that left stops being exported.
    lag_gauges: std::collections::HashMap<String, admin::LagGauge>,
}

impl Published {
    fn update(&mut self, node: &NodeState) {
        let metrics = &node.metrics;
        let engine = node.io.engine.stats();
        let delta = |now: u64, before: u64| now.saturating_sub(before);
        metrics
            .promotions
            .inc_by(delta(engine.promotions, self.engine.promotions));
        metrics.handoffs.inc_by(delta(
            engine.handoffs_completed,
            self.engine.handoffs_completed,
        ));
        metrics
            .handoffs_aborted
            .inc_by(delta(engine.handoffs_aborted, self.engine.handoffs_aborted));
        // Drained after the counter was read: a handoff completing in between shows in the
        // histogram a second before the counter, never the other way round.
        for duration_ms in node.io.engine.drain_handoff_durations_ms() {
            metrics
                .handoff_duration
                .observe(Duration::from_millis(duration_ms));
        }
        metrics
            .snapshots_sent
            .inc_by(delta(engine.snapshots_sent, self.engine.snapshots_sent));
        metrics.snapshots_received.inc_by(delta(
            engine.snapshots_received,
            self.engine.snapshots_received,
        ));
        metrics.snapshots_abandoned.inc_by(delta(
            engine.snapshots_abandoned,
            self.engine.snapshots_abandoned,
        ));
        metrics.snapshot_sent_bytes.inc_by(delta(
            engine.snapshot_bytes_sent,
            self.engine.snapshot_bytes_sent,
        ));
        metrics.snapshot_received_bytes.inc_by(delta(
            engine.snapshot_bytes_received,
            self.engine.snapshot_bytes_received,
        ));
        metrics.stream_link_resets.inc_by(delta(
            engine.stream_link_resets,
            self.engine.stream_link_resets,
        ));
        metrics.backup_removals_unconfirmed.inc_by(warn_given_up(
            delta(
                engine.removals_unconfirmed,
                self.engine.removals_unconfirmed,
            ),
            "backups",
            "a backup that lost its link was given up on (it did not confirm over a new link, or \
             its snapshots did not end in time); writes are acknowledged without it, and are \
             lost if this node crashes before it is a backup again",
        ));
        metrics.resyncs_given_up.inc_by(warn_given_up(
            delta(engine.resyncs_given_up, self.engine.resyncs_given_up),
            "partitions",
            "a backup that lost its link did not receive the stream again in time; these \
             partitions' writes are acknowledged without it until it is a backup again",
        ));
        metrics.claim_merges_given_up.inc_by(warn_given_up(
            delta(
                engine.claim_merges_given_up,
                self.engine.claim_merges_given_up,
            ),
            "merges",
            "a claimed partition stopped waiting for a copy kept by a peer (it left, or its merge \
             made no progress); it serves, and writes accepted before the copy arrives may hide \
             older acknowledged ones",
        ));
        metrics
            .split_merged_keys
            .inc_by(delta(engine.merged_keys, self.engine.merged_keys));
        metrics.failover_marked_sessions.inc_by(delta(
            engine.failover_marked_keys,
            self.engine.failover_marked_keys,
        ));
        self.engine = engine;
        let mut names = std::collections::HashMap::new();
        if let Some(membership) = node.io.membership.get() {
            let snapshot = membership.snapshot();
            let stats = snapshot.stats;
            metrics.heartbeats_sent.inc_by(delta(
                stats.heartbeats_sent,
                self.membership.heartbeats_sent,
            ));
            metrics.heartbeats_received.inc_by(delta(
                stats.heartbeats_received,
                self.membership.heartbeats_received,
            ));
            metrics
                .peer_suspicions
                .inc_by(delta(stats.downs, self.membership.downs));
            for reason in RejectReason::ALL {
                let count = delta(
                    stats.rejected.get(reason),
                    self.membership.rejected.get(reason),
                );
                metrics
                    .heartbeats_rejected
                    .get(heartbeat_reject_label(reason))
                    .inc_by(count);
            }
            metrics
                .heartbeats_rejected
                .get(admin::HeartbeatRejectReason::NotAllowed)
                .inc_by(delta(snapshot.not_allowed, self.heartbeats_not_allowed));
            self.heartbeats_not_allowed = snapshot.not_allowed;
            self.membership = stats;
            names = snapshot
                .members
                .iter()
                .map(|info| {
                    let member = Member {
                        id: info.id,
                        incarnation: info.incarnation,
                    };
                    (member, info.name.clone())
                })
                .collect();
        }
        let summary = node.io.engine.summary(node.now_ms());
        metrics
            .under_replicated_partitions
            .set(i64::from(summary.under_replicated));
        metrics
            .partitions_short_of_backups
            .set(i64::from(summary.short_of_backups));
        metrics.partitions_to_move.set(i64::from(summary.to_move));
        // One lag gauge per linked peer, by name; a peer that is gone stops being exported.
        let mut current = std::collections::HashSet::new();
        for (member, lag_ms) in &summary.lag_ms {
            let Some(name) = names.get(member) else {
                continue;
            };
            current.insert(name.clone());
            self.lag_gauges
                .entry(name.clone())
                .or_insert_with(|| metrics.replication_lag_gauge(name))
                .set(*lag_ms as f64 / 1000.0);
        }
        self.lag_gauges.retain(|name, _| {
            let keep = current.contains(name);
            if !keep {
                metrics.forget_peer(name);
            }
            keep
        });
    }
}

/// A planned leave (PROTOCOL.md §11): stop being a target, wait until every partition this node
/// owned has been handed off (or `leave_timeout`), then tell the others with leave datagrams.
pub(crate) async fn leave(node: &NodeState) {
    let engine = &node.io.engine;
    engine.leave(node.now_ms());
    node.io
        .send_membership(MembershipCommand::SetRole(ROLE_LEAVING));
    let deadline = Instant::now() + node.config.leave_timeout;
    loop {
        let others_remain = engine
            .view()
            .iter()
            .any(|member| member.member != engine.me() && !member.leaving);
        if engine.owns_nothing() || !others_remain {
            break;
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                timeout = ?node.config.leave_timeout,
                "leaving before every partition was handed off: the leave timeout passed"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(membership) = node.io.membership.get() {
        membership.stop(MembershipCommand::Leave);
    }
}

/// The metric label of a membership rejection.
fn heartbeat_reject_label(reason: RejectReason) -> admin::HeartbeatRejectReason {
    use admin::HeartbeatRejectReason as Label;
    match reason {
        RejectReason::Malformed => Label::Malformed,
        RejectReason::BadMac => Label::BadMac,
        RejectReason::OtherCluster => Label::OtherCluster,
        RejectReason::ProtocolMismatch => Label::ProtocolMismatch,
        RejectReason::PartitionCountMismatch => Label::PartitionCountMismatch,
        RejectReason::Replayed | RejectReason::StaleIncarnation => Label::Stale,
        RejectReason::NameClash => Label::NameClash,
        RejectReason::MemberLimit => Label::MemberLimit,
    }
}

/// Logs `message` when the engine gave up waiting for `count` copies (`what`: backups,
/// partitions, merges) since the last look: writes may have one copy meanwhile. Returns
/// `count`, for the metric.
fn warn_given_up(count: u64, what: &str, message: &str) -> u64 {
    if count > 0 {
        tracing::warn!(count, what, "{message}");
    }
    count
}
