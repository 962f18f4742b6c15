//! The node's Prometheus metrics: one registry per node with typed handles to increment.
//!
//! [`Metrics`] owns a `prometheus_client` [`Registry`] (never a global one, so several nodes
//! can run in one process, as the simulation and the tests do) and exposes a public handle per
//! metric. Every handle is a clone of the registered metric: incrementing one is a relaxed
//! atomic addition, with no lock and no lookup. Labelled counters are created for every label
//! value up front, so each series is exported from the start (as 0) and `inc` takes no lock.
//!
//! Adding a metric: add a field to [`Metrics`], create it in [`Metrics::new`] with one of the
//! `MetricsBuilder` helpers (which also puts it in `/stats`), and, for a new label, declare
//! its values with `metric_label!`.
//!
//! Values the node knows only on demand (keys, memory, connections) come from a callback set
//! with [`Metrics::set_on_demand_gauges`], called at every scrape.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::command_stats::{CommandStats, CommandStatsCollector};
use crate::histogram::LatencyHistogram;

/// The prefix of every metric name (`scd_…`).
pub const METRIC_NAME_PREFIX: &str = "scd";

/// Most peers whose replication lag is exported; past this, a peer's gauge still works but is
/// not exported, so a bug that invents peer names cannot grow the exposition without bound.
pub const REPLICATION_LAG_PEERS_MAX: usize = 1024;

/// Most on-demand gauges encoded per scrape; the rest are dropped with a warning.
pub const ON_DEMAND_GAUGES_MAX: usize = 256;

/// Content type of the exposition produced by [`Metrics::encode`].
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A label whose values are a closed set, so that its counters can be made up front.
pub trait MetricLabel: Copy + fmt::Debug + Send + Sync + 'static {
    /// The label's name in the exposition (`reason`, `kind`, `outcome`).
    const KEY: &'static str;
    /// Every value, in declaration order: `ALL[value.index()] == value`.
    const ALL: &'static [Self];
    /// The value as exported (`max_clients`).
    fn as_str(self) -> &'static str;
    /// The value's position in [`MetricLabel::ALL`].
    fn index(self) -> usize;
}

/// Declares a fieldless enum whose variants are the values of a metric label.
macro_rules! metric_label {
    (
        $(#[$meta:meta])*
        pub enum $name:ident: $key:literal {
            $( $(#[$variant_meta:meta])* $variant:ident => $value:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$variant_meta])* $variant, )+
        }

        impl MetricLabel for $name {
            const KEY: &'static str = $key;
            const ALL: &'static [Self] = &[$( $name::$variant, )+];

            fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $value, )+
                }
            }

            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

metric_label! {
    /// Why a client connection was refused.
    pub enum ConnectionRejectReason: "reason" {
        /// The node already serves its maximum number of clients.
        MaxClients => "max_clients",
        /// The client's address is not in the `--allow` list.
        NotAllowed => "not_allowed",
    }
}

metric_label! {
    /// The kind of error reply a client got.
    pub enum ClientErrorKind: "kind" {
        /// The request could not be parsed.
        Protocol => "protocol",
        /// Authentication was missing or wrong.
        Auth => "auth",
        /// The request exceeded a limit (value size, argument count, frame size).
        Limit => "limit",
        /// The node is out of its memory budget.
        Oom => "oom",
        /// An unknown command, or a command with the wrong arguments (arity, syntax, a value
        /// that is not a number).
        Command => "command",
    }
}

metric_label! {
    /// Why a received heartbeat was dropped.
    pub enum HeartbeatRejectReason: "reason" {
        /// The datagram could not be decoded.
        Malformed => "malformed",
        /// The MAC did not verify with the cluster secret.
        BadMac => "bad_mac",
        /// The heartbeat belongs to another cluster.
        OtherCluster => "other_cluster",
        /// The heartbeat comes from an older incarnation of a node, or repeats an old one.
        Stale => "stale",
        /// The sender speaks another peer protocol version.
        ProtocolMismatch => "protocol_mismatch",
        /// The sender has another partition count.
        PartitionCountMismatch => "partition_count_mismatch",
        /// Another node uses this node's name, or a name is used by two nodes.
        NameClash => "name_clash",
        /// The member table is full.
        MemberLimit => "member_limit",
        /// The sender's address is outside `--allow`.
        NotAllowed => "not_allowed",
    }
}

metric_label! {
    /// How a relayed command ended.
    pub enum RelayOutcome: "outcome" {
        /// The primary answered and the answer was sent back.
        Ok => "ok",
        /// The primary answered with an error, or the peer link failed.
        Error => "error",
        /// The primary did not answer in time.
        Timeout => "timeout",
        /// No primary was reachable for the partition.
        Unavailable => "unavailable",
    }
}

metric_label! {
    /// Why an admin HTTP connection was refused.
    pub enum AdminRejectReason: "reason" {
        /// The admin port already serves its maximum number of connections.
        TooManyConnections => "too_many_connections",
        /// The peer's address is not in the `--allow` list.
        NotAllowed => "not_allowed",
    }
}

/// One counter per value of the label `L`, exported as one family.
pub struct LabelledCounter<L> {
    /// Indexed by `L::index()`; filled for every value of `L` at construction.
    counters: Box<[Counter]>,
    label: PhantomData<fn() -> L>,
}

impl<L: MetricLabel> LabelledCounter<L> {
    /// The counter of `value`.
    #[inline]
    pub fn get(&self, value: L) -> &Counter {
        &self.counters[value.index()]
    }

    /// Adds one to the counter of `value`.
    #[inline]
    pub fn inc(&self, value: L) {
        self.get(value).inc();
    }

    fn to_json(&self) -> serde_json::Value {
        L::ALL
            .iter()
            .map(|value| (value.as_str().to_owned(), self.get(*value).get().into()))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

impl<L: MetricLabel> fmt::Debug for LabelledCounter<L> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = formatter.debug_map();
        for value in L::ALL {
            map.entry(&value.as_str(), &self.get(*value).get());
        }
        map.finish()
    }
}

/// A gauge the node computes when asked, returned by its on-demand callback.
#[derive(Clone, Debug, PartialEq)]
pub struct GaugeSample {
    /// Name without the `scd_` prefix, unit last (`memory_used_bytes`, `keys`).
    pub name: &'static str,
    /// One sentence for `# HELP`.
    pub help: &'static str,
    /// The current value.
    pub value: f64,
}

/// The callback that produces the on-demand gauges at every scrape. It runs on the admin
/// server's tasks, so it must be quick and must not block.
pub type OnDemandGauges = Box<dyn Fn() -> Vec<GaugeSample> + Send + Sync>;

/// A replication lag gauge, in seconds.
pub type LagGauge = Gauge<f64, AtomicU64>;

/// Shared between [`Metrics`] and its collector in the registry.
struct NodeGauges {
    /// A `std::sync::Mutex`: held only to clone the `Arc` or to touch the map, never while
    /// calling the callback or awaiting.
    on_demand: Mutex<Option<Arc<OnDemandGauges>>>,
    replication_lag_by_peer: Mutex<BTreeMap<String, LagGauge>>,
    /// Names already registered, which an on-demand gauge must not reuse.
    reserved_names: HashSet<String>,
}

impl NodeGauges {
    fn on_demand_samples(&self) -> Vec<GaugeSample> {
        let callback = self
            .on_demand
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(callback) = callback else {
            return Vec::new();
        };
        let mut samples = callback();
        if samples.len() > ON_DEMAND_GAUGES_MAX {
            tracing::warn!(
                num_gauges = samples.len(),
                max = ON_DEMAND_GAUGES_MAX,
                "too many on-demand gauges, dropping the rest"
            );
            samples.truncate(ON_DEMAND_GAUGES_MAX);
        }
        let mut seen_names = HashSet::new();
        samples.retain(|sample| {
            let is_usable = is_valid_metric_name(sample.name)
                && !self.reserved_names.contains(sample.name)
                && seen_names.insert(sample.name);
            if !is_usable {
                tracing::warn!(
                    name = sample.name,
                    "skipping invalid or duplicate on-demand gauge"
                );
            }
            is_usable
        });
        samples
    }

    fn replication_lags(&self) -> Vec<(String, f64)> {
        self.replication_lag_by_peer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(peer, gauge)| (peer.clone(), gauge.get()))
            .collect()
    }
}

impl fmt::Debug for NodeGauges {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("NodeGauges")
            .field("replication_lags", &self.replication_lags())
            .finish_non_exhaustive()
    }
}

/// Encodes the on-demand gauges and the per-peer replication lag at every scrape.
#[derive(Debug)]
struct NodeGaugesCollector {
    node_gauges: Arc<NodeGauges>,
}

impl Collector for NodeGaugesCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let lags = self.node_gauges.replication_lags();
        let mut lag_encoder = encoder.encode_descriptor(
            "replication_lag",
            "How far this node's replication stream to a peer is behind, per peer.",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for (peer, lag_seconds) in &lags {
            lag_encoder
                .encode_family(&[("peer", peer.as_str())])?
                .encode_gauge(lag_seconds)?;
        }
        for sample in self.node_gauges.on_demand_samples() {
            encoder
                .encode_descriptor(
                    sample.name,
                    &escape_help(sample.help),
                    None,
                    MetricType::Gauge,
                )?
                .encode_gauge(&sample.value)?;
        }
        Ok(())
    }
}

/// What `/stats` reads for each registered metric.
enum JsonSource {
    Counter(Counter),
    Gauge(Gauge),
    /// A labelled counter, type-erased over its label.
    Labelled(Box<dyn Fn() -> serde_json::Value + Send + Sync>),
    Histogram(LatencyHistogram),
}

impl fmt::Debug for JsonSource {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonSource::Counter(counter) => write!(formatter, "Counter({})", counter.get()),
            JsonSource::Gauge(gauge) => write!(formatter, "Gauge({})", gauge.get()),
            JsonSource::Labelled(to_json) => write!(formatter, "Labelled({})", to_json()),
            JsonSource::Histogram(histogram) => write!(formatter, "{histogram:?}"),
        }
    }
}

/// Registers metrics and remembers how to show each in `/stats`.
struct MetricsBuilder {
    registry: Registry,
    /// JSON key (the exported name without prefix) and where its value comes from.
    json_sources: Vec<(String, JsonSource)>,
    reserved_names: HashSet<String>,
}

impl MetricsBuilder {
    fn reserve(&mut self, exported_name: String) {
        let is_new = self.reserved_names.insert(exported_name.clone());
        assert!(is_new, "metric {exported_name} is registered twice");
    }

    fn counter(&mut self, name: &'static str, help: &'static str) -> Counter {
        let counter = Counter::default();
        self.registry.register(name, help, counter.clone());
        self.reserve(name.to_owned());
        self.json_sources.push((
            format!("{name}_total"),
            JsonSource::Counter(counter.clone()),
        ));
        counter
    }

    fn bytes_counter(&mut self, name: &'static str, help: &'static str) -> Counter {
        let counter = Counter::default();
        self.registry
            .register_with_unit(name, help, Unit::Bytes, counter.clone());
        self.reserve(format!("{name}_bytes"));
        self.json_sources.push((
            format!("{name}_bytes_total"),
            JsonSource::Counter(counter.clone()),
        ));
        counter
    }

    fn gauge(&mut self, name: &'static str, help: &'static str) -> Gauge {
        let gauge = Gauge::default();
        self.registry.register(name, help, gauge.clone());
        self.reserve(name.to_owned());
        self.json_sources
            .push((name.to_owned(), JsonSource::Gauge(gauge.clone())));
        gauge
    }

    fn labelled<L: MetricLabel>(
        &mut self,
        name: &'static str,
        help: &'static str,
    ) -> Arc<LabelledCounter<L>> {
        let family = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let counters = L::ALL
            .iter()
            .map(|value| family.get_or_create_owned(&[(L::KEY, value.as_str())]))
            .collect();
        self.registry.register(name, help, family);
        self.reserve(name.to_owned());
        let labelled = Arc::new(LabelledCounter {
            counters,
            label: PhantomData,
        });
        let for_json = Arc::clone(&labelled);
        self.json_sources.push((
            format!("{name}_total"),
            JsonSource::Labelled(Box::new(move || for_json.to_json())),
        ));
        labelled
    }

    fn duration_histogram(
        &mut self,
        name: &'static str,
        help: &'static str,
        histogram: LatencyHistogram,
    ) -> LatencyHistogram {
        self.registry
            .register_with_unit(name, help, Unit::Seconds, histogram.clone());
        self.reserve(format!("{name}_seconds"));
        self.json_sources.push((
            format!("{name}_seconds"),
            JsonSource::Histogram(histogram.clone()),
        ));
        histogram
    }
}

/// All metrics of one node. Create it once at start, share it in an `Arc`, and increment the
/// public handles from anywhere.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    command_stats: Arc<CommandStats>,
    node_gauges: Arc<NodeGauges>,
    json_sources: Vec<(String, JsonSource)>,

    /// Client connections accepted (RESP and memcached).
    pub client_connections_accepted: Counter,
    /// Client connections refused, by reason.
    pub client_connections_rejected: Arc<LabelledCounter<ConnectionRejectReason>>,
    /// Error replies sent to clients, by kind.
    pub client_errors: Arc<LabelledCounter<ClientErrorKind>>,
    /// Heartbeats sent to peers.
    pub heartbeats_sent: Counter,
    /// Heartbeats received and accepted.
    pub heartbeats_received: Counter,
    /// Heartbeats received and dropped, by reason.
    pub heartbeats_rejected: Arc<LabelledCounter<HeartbeatRejectReason>>,
    /// Times the failure detector started suspecting a peer.
    pub peer_suspicions: Counter,
    /// Peer TCP connections established (either direction).
    pub peer_connections_opened: Counter,
    /// Peer TCP connections closed or lost.
    pub peer_connections_closed: Counter,
    /// Commands relayed to a partition's primary, by outcome.
    pub relays: Arc<LabelledCounter<RelayOutcome>>,
    /// Time from sending a relayed command to getting its answer.
    pub relay_duration: LatencyHistogram,
    /// Partition handoffs completed.
    pub handoffs: Counter,
    /// Partition handoffs abandoned (target gone, refused, or draining timed out).
    pub handoffs_aborted: Counter,
    /// Time a handoff took, from start to ownership moved; buckets 1 ms to 1000 s.
    pub handoff_duration: LatencyHistogram,
    /// Backups promoted to primary after a primary failed.
    pub promotions: Counter,
    /// Partition snapshots sent to new backups.
    pub snapshots_sent: Counter,
    /// Partition snapshots received.
    pub snapshots_received: Counter,
    /// Partition snapshots abandoned before the backup had all of it (link lost, resync, lost
    /// primaryship).
    pub snapshots_abandoned: Counter,
    /// Bytes of partition snapshots sent.
    pub snapshot_sent_bytes: Counter,
    /// Bytes of partition snapshots received.
    pub snapshot_received_bytes: Counter,
    /// Partitions with fewer live backups than configured.
    pub under_replicated_partitions: Gauge,
    /// Partitions with fewer live backups than `--backups`, also when too few nodes are alive
    /// to hold them: what a failure now could lose.
    pub partitions_short_of_backups: Gauge,
    /// Partitions whose owners are not yet the placement's targets (a rebalance to come).
    pub partitions_to_move: Gauge,
    /// Keys merged by version after a network split healed.
    pub split_merged_keys: Counter,
    /// Peer links reset because the replication stream on them was out of step.
    pub stream_link_resets: Counter,
    /// Backups that lost their link while alive and were given up on before confirming they
    /// knew of their removal (PROTOCOL.md §6).
    pub backup_removals_unconfirmed: Counter,
    /// Partitions that stopped waiting for a backup being brought up to date in place after a
    /// link reset, because its stream did not resume in time (PROTOCOL.md §6).
    pub resyncs_given_up: Counter,
    /// Merges of kept copies that a claim stopped waiting for before they were in (PROTOCOL.md
    /// §5 rule 2).
    pub claim_merges_given_up: Counter,
    /// Time a lock request waited before it was granted.
    pub lock_wait_duration: LatencyHistogram,
    /// Lock acquisitions that found the lock held and had to wait or retry.
    pub lock_contended_acquisitions: Counter,
    /// Lock leases that expired before being released.
    pub lock_lease_expiries: Counter,
    /// Sessions marked as possibly missing their latest writes after a failover.
    pub failover_marked_sessions: Counter,
    /// Admin HTTP connections refused, by reason.
    pub admin_connections_rejected: Arc<LabelledCounter<AdminRejectReason>>,
}

impl Metrics {
    /// The metrics of one node, with `command_stats` encoded into the same exposition.
    pub fn new(command_stats: Arc<CommandStats>) -> Metrics {
        // Help texts below end without a period: the registry appends one.
        let mut builder = MetricsBuilder {
            registry: Registry::with_prefix(METRIC_NAME_PREFIX),
            json_sources: Vec::new(),
            reserved_names: HashSet::new(),
        };
        for name in ["commands", "command_errors", "command_duration_seconds"] {
            builder.reserve(name.to_owned());
        }
        builder.reserve("replication_lag_seconds".to_owned());
        let b = &mut builder;

        let client_connections_accepted =
            b.counter("client_connections_accepted", "Client connections accepted");
        let client_connections_rejected = b.labelled(
            "client_connections_rejected",
            "Client connections refused, by reason",
        );
        let client_errors = b.labelled("client_errors", "Error replies sent to clients, by kind");
        let heartbeats_sent = b.counter("heartbeats_sent", "Heartbeats sent to peers");
        let heartbeats_received =
            b.counter("heartbeats_received", "Heartbeats received and accepted");
        let heartbeats_rejected = b.labelled(
            "heartbeats_rejected",
            "Heartbeats received and dropped, by reason",
        );
        let peer_suspicions = b.counter(
            "peer_suspicions",
            "Times the failure detector started suspecting a peer",
        );
        let peer_connections_opened = b.counter(
            "peer_connections_opened",
            "Peer TCP connections established",
        );
        let peer_connections_closed = b.counter(
            "peer_connections_closed",
            "Peer TCP connections closed or lost",
        );
        let relays = b.labelled(
            "relays",
            "Commands relayed to a partition's primary, by outcome",
        );
        let relay_duration = b.duration_histogram(
            "relay_duration",
            "Time from relaying a command to the primary to getting its answer",
            LatencyHistogram::new(),
        );
        let handoffs = b.counter("handoffs", "Partition handoffs completed");
        let handoffs_aborted = b.counter(
            "handoffs_aborted",
            "Partition handoffs abandoned (target gone, refused, or draining timed out)",
        );
        let handoff_duration = b.duration_histogram(
            "handoff_duration",
            "Time a partition handoff took",
            LatencyHistogram::with_bucket_scale(100),
        );
        let promotions = b.counter(
            "promotions",
            "Backups promoted to primary after a primary failed",
        );
        let snapshots_sent = b.counter("snapshots_sent", "Partition snapshots sent");
        let snapshots_received = b.counter("snapshots_received", "Partition snapshots received");
        let snapshots_abandoned = b.counter(
            "snapshots_abandoned",
            "Partition snapshots abandoned before the backup had all of it",
        );
        let snapshot_sent_bytes =
            b.bytes_counter("snapshot_sent", "Bytes of partition snapshots sent");
        let snapshot_received_bytes =
            b.bytes_counter("snapshot_received", "Bytes of partition snapshots received");
        let under_replicated_partitions = b.gauge(
            "under_replicated_partitions",
            "Partitions with fewer live backups than the live nodes allow (copies still to make)",
        );
        let partitions_short_of_backups = b.gauge(
            "partitions_short_of_backups",
            "Partitions with fewer live backups than --backups, too few live nodes included",
        );
        let partitions_to_move = b.gauge(
            "partitions_to_move",
            "Partitions whose owners are not yet the placement's targets (a rebalance to come)",
        );
        let stream_link_resets = b.counter(
            "stream_link_resets",
            "Peer links reset because the replication stream on them was out of step",
        );
        let backup_removals_unconfirmed = b.counter(
            "backup_removals_unconfirmed",
            "Backups removed after losing their link that never confirmed it",
        );
        let resyncs_given_up = b.counter(
            "resyncs_given_up",
            "Partitions that stopped waiting for a backup's in-place snapshot after a link reset",
        );
        let claim_merges_given_up = b.counter(
            "claim_merges_given_up",
            "Merges of kept copies a claimed partition stopped waiting for before serving",
        );
        let split_merged_keys = b.counter(
            "split_merged_keys",
            "Keys merged by version after a network split healed",
        );
        let lock_wait_duration = b.duration_histogram(
            "lock_wait_duration",
            "Time a lock request waited before it was granted",
            LatencyHistogram::new(),
        );
        let lock_contended_acquisitions = b.counter(
            "lock_contended_acquisitions",
            "Lock acquisitions that found the lock held",
        );
        let lock_lease_expiries = b.counter(
            "lock_lease_expiries",
            "Lock leases that expired before being released",
        );
        let failover_marked_sessions = b.counter(
            "failover_marked_sessions",
            "Sessions marked as possibly missing their latest writes after a failover",
        );
        let admin_connections_rejected = b.labelled(
            "admin_connections_rejected",
            "Admin HTTP connections refused, by reason",
        );

        let MetricsBuilder {
            mut registry,
            json_sources,
            reserved_names,
        } = builder;
        registry.register_collector(Box::new(CommandStatsCollector {
            command_stats: Arc::clone(&command_stats),
        }));
        let node_gauges = Arc::new(NodeGauges {
            on_demand: Mutex::new(None),
            replication_lag_by_peer: Mutex::new(BTreeMap::new()),
            reserved_names,
        });
        registry.register_collector(Box::new(NodeGaugesCollector {
            node_gauges: Arc::clone(&node_gauges),
        }));

        Metrics {
            registry,
            command_stats,
            node_gauges,
            json_sources,
            client_connections_accepted,
            client_connections_rejected,
            client_errors,
            heartbeats_sent,
            heartbeats_received,
            heartbeats_rejected,
            peer_suspicions,
            peer_connections_opened,
            peer_connections_closed,
            relays,
            relay_duration,
            handoffs,
            handoffs_aborted,
            handoff_duration,
            promotions,
            snapshots_sent,
            snapshots_received,
            snapshots_abandoned,
            snapshot_sent_bytes,
            snapshot_received_bytes,
            under_replicated_partitions,
            partitions_short_of_backups,
            partitions_to_move,
            split_merged_keys,
            stream_link_resets,
            backup_removals_unconfirmed,
            resyncs_given_up,
            claim_merges_given_up,
            lock_wait_duration,
            lock_contended_acquisitions,
            lock_lease_expiries,
            failover_marked_sessions,
            admin_connections_rejected,
        }
    }

    /// The per-command statistics encoded with these metrics.
    pub fn command_stats(&self) -> &Arc<CommandStats> {
        &self.command_stats
    }

    /// Sets (or replaces) the callback that produces the on-demand gauges (keys, memory used,
    /// RSS, current connections, partitions owned) at every scrape. Samples with an invalid
    /// name, a name already used by another metric, or a repeated name are skipped.
    pub fn set_on_demand_gauges(&self, on_demand_gauges: OnDemandGauges) {
        *self
            .node_gauges
            .on_demand
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(on_demand_gauges));
    }

    /// The replication lag gauge of `peer` (seconds), exported as
    /// `scd_replication_lag_seconds{peer}`. Take it once per peer link and `set` it without
    /// locking. Past [`REPLICATION_LAG_PEERS_MAX`] peers the gauge works but is not exported.
    pub fn replication_lag_gauge(&self, peer: &str) -> LagGauge {
        let mut lag_by_peer = self
            .node_gauges
            .replication_lag_by_peer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(gauge) = lag_by_peer.get(peer) {
            return gauge.clone();
        }
        let gauge = LagGauge::default();
        if lag_by_peer.len() < REPLICATION_LAG_PEERS_MAX {
            lag_by_peer.insert(peer.to_owned(), gauge.clone());
        } else {
            tracing::warn!(
                peer,
                max = REPLICATION_LAG_PEERS_MAX,
                "too many peers, not exporting this peer's replication lag"
            );
        }
        gauge
    }

    /// Stops exporting `peer`'s replication lag (the peer left the cluster).
    pub fn forget_peer(&self, peer: &str) {
        self.node_gauges
            .replication_lag_by_peer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(peer);
    }

    /// The OpenMetrics text exposition of every metric, ending with `# EOF`.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut text = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// The numbers of `/metrics` as JSON: `commands` (calls, errors, latency percentiles,
    /// `by_command`), `metrics` (every counter, gauge and histogram summary, keyed by exported
    /// name without the prefix), `replication_lag_seconds` by peer, and `gauges` (on-demand).
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        let metrics: serde_json::Map<String, serde_json::Value> = self
            .json_sources
            .iter()
            .map(|(name, source)| {
                let value = match source {
                    JsonSource::Counter(counter) => counter.get().into(),
                    JsonSource::Gauge(gauge) => gauge.get().into(),
                    JsonSource::Labelled(to_json) => to_json(),
                    JsonSource::Histogram(histogram) => histogram.snapshot().summary_json(),
                };
                (name.clone(), value)
            })
            .collect();
        let replication_lags: serde_json::Map<String, serde_json::Value> = self
            .node_gauges
            .replication_lags()
            .into_iter()
            .map(|(peer, lag_seconds)| (peer, lag_seconds.into()))
            .collect();
        let gauges: serde_json::Map<String, serde_json::Value> = self
            .node_gauges
            .on_demand_samples()
            .into_iter()
            .map(|sample| (sample.name.to_owned(), sample.value.into()))
            .collect();
        let mut object = serde_json::Map::new();
        object.insert(
            "commands".to_owned(),
            self.command_stats.snapshot().to_json(),
        );
        object.insert("metrics".to_owned(), metrics.into());
        object.insert(
            "replication_lag_seconds".to_owned(),
            replication_lags.into(),
        );
        object.insert("gauges".to_owned(), gauges.into());
        object
    }
}

/// A Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn is_valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_' || first == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Escapes `\` and line feeds in `# HELP` text, as the exposition format requires.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    static NAMES: &[&str] = &["get", "set"];

    fn metrics() -> Metrics {
        Metrics::new(Arc::new(CommandStats::with_shards(NAMES, 2)))
    }

    fn assert_label_indexes_match<L: MetricLabel>() {
        for (position, value) in L::ALL.iter().enumerate() {
            assert_eq!(value.index(), position, "{value:?}");
        }
    }

    #[test]
    fn label_indexes_follow_declaration_order() {
        assert_label_indexes_match::<ConnectionRejectReason>();
        assert_label_indexes_match::<ClientErrorKind>();
        assert_label_indexes_match::<HeartbeatRejectReason>();
        assert_label_indexes_match::<RelayOutcome>();
        assert_label_indexes_match::<AdminRejectReason>();
    }

    #[test]
    fn counters_and_labelled_counters_appear_in_the_exposition() {
        let metrics = metrics();
        metrics.heartbeats_sent.inc_by(3);
        metrics
            .client_connections_rejected
            .inc(ConnectionRejectReason::NotAllowed);
        metrics.snapshot_sent_bytes.inc_by(4096);
        metrics.under_replicated_partitions.set(2);
        metrics.partitions_to_move.set(5);
        let text = metrics
            .encode()
            .expect("encoding into a String cannot fail");
        for line in [
            "# TYPE scd_heartbeats_sent counter",
            "scd_heartbeats_sent_total 3",
            "scd_client_connections_rejected_total{reason=\"not_allowed\"} 1",
            "scd_client_connections_rejected_total{reason=\"max_clients\"} 0",
            "scd_snapshot_sent_bytes_total 4096",
            "# UNIT scd_snapshot_sent_bytes bytes",
            "scd_under_replicated_partitions 2",
            "scd_partitions_to_move 5",
            "# TYPE scd_relay_duration_seconds histogram",
            "scd_relay_duration_seconds_count 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn command_stats_are_encoded_only_for_called_commands() {
        let metrics = metrics();
        metrics.command_stats().record(1, 30_000, true);
        let text = metrics
            .encode()
            .expect("encoding into a String cannot fail");
        for line in [
            "scd_commands_total{command=\"set\"} 1",
            "scd_command_errors_total{command=\"set\"} 1",
            "scd_command_duration_seconds_bucket{le=\"0.00001\",command=\"set\"} 0",
            "scd_command_duration_seconds_bucket{le=\"+Inf\",command=\"set\"} 1",
            "scd_command_duration_seconds_count{command=\"set\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(!text.contains("command=\"get\""), "{text}");
    }

    #[test]
    fn on_demand_gauges_are_called_at_scrape_time_and_bad_names_are_skipped() {
        let metrics = metrics();
        let calls = Arc::new(AtomicU64::new(0));
        let calls_in_callback = Arc::clone(&calls);
        metrics.set_on_demand_gauges(Box::new(move || {
            let call = calls_in_callback.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            vec![
                GaugeSample {
                    name: "keys",
                    help: "Keys stored.",
                    value: call as f64 + 10.0,
                },
                GaugeSample {
                    name: "bad name",
                    help: "Invalid.",
                    value: 1.0,
                },
                GaugeSample {
                    name: "heartbeats_sent",
                    help: "Taken.",
                    value: 1.0,
                },
                GaugeSample {
                    name: "keys",
                    help: "Repeated.",
                    value: 1.0,
                },
            ]
        }));
        let first = metrics
            .encode()
            .expect("encoding into a String cannot fail");
        let second = metrics
            .encode()
            .expect("encoding into a String cannot fail");
        assert!(first.lines().any(|l| l == "scd_keys 10.0"), "{first}");
        assert!(second.lines().any(|l| l == "scd_keys 11.0"), "{second}");
        assert_eq!(first.matches("# TYPE scd_keys gauge").count(), 1, "{first}");
        assert!(!first.contains("bad name"));
        assert_eq!(first.matches("# TYPE scd_heartbeats_sent ").count(), 1);
        assert_eq!(
            metrics.to_json()["gauges"],
            serde_json::json!({"keys": 12.0})
        );
    }

    #[test]
    fn replication_lag_is_exported_per_peer_until_the_peer_is_forgotten() {
        let metrics = metrics();
        metrics.replication_lag_gauge("node-b").set(0.25);
        // A second handle shares the value.
        assert_eq!(metrics.replication_lag_gauge("node-b").get(), 0.25);
        let text = metrics
            .encode()
            .expect("encoding into a String cannot fail");
        assert!(
            text.lines()
                .any(|l| l == "scd_replication_lag_seconds{peer=\"node-b\"} 0.25"),
            "{text}"
        );
        metrics.forget_peer("node-b");
        let text = metrics
            .encode()
            .expect("encoding into a String cannot fail");
        assert!(!text.contains("node-b"), "{text}");
    }

    #[test]
    fn json_has_the_same_numbers_as_the_exposition() {
        let metrics = metrics();
        metrics.relays.inc(RelayOutcome::Timeout);
        metrics.relay_duration.observe_ns(20_000);
        metrics.command_stats().record(0, 5_000, false);
        let json = serde_json::Value::from(metrics.to_json());
        assert_eq!(json["metrics"]["relays_total"]["timeout"], 1);
        assert_eq!(json["metrics"]["relays_total"]["ok"], 0);
        assert_eq!(json["metrics"]["relay_duration_seconds"]["count"], 1);
        assert_eq!(json["metrics"]["heartbeats_sent_total"], 0);
        assert_eq!(json["commands"]["calls"], 1);
        assert_eq!(json["commands"]["by_command"]["get"]["calls"], 1);
        assert!(json["commands"]["by_command"].get("set").is_none());
    }

    #[test]
    fn metric_names_are_checked() {
        for (name, expect) in [
            ("keys", true),
            ("memory_used_bytes", true),
            ("_x:y1", true),
            ("", false),
            ("1keys", false),
            ("bad-name", false),
            ("bad name", false),
        ] {
            assert_eq!(is_valid_metric_name(name), expect, "{name:?}");
        }
    }
}
