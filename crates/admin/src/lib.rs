//! HTTP admin API, Prometheus metrics and dashboard of scd.
//!
//! - [`CommandStats`] (`command_stats.rs`): per-command calls, errors and latency histograms,
//!   recorded lock-free on the client hot path.
//! - [`LatencyHistogram`] and [`percentile_from_buckets`] (`histogram.rs`): the sharded atomic
//!   histogram behind them, and percentile estimation from buckets.
//! - [`Metrics`] (`metrics.rs`): the node's Prometheus registry (one per node) with typed
//!   handles, the command statistics and the node's on-demand gauges in one exposition.
//! - [`serve`] (`http.rs`): the admin HTTP server, `/health`, `/metrics`, `/stats`,
//!   `/cluster` and the dashboard at `/` (`dashboard.html`), everything bounded.
//!
//! The node implements [`AdminSource`] to tell the admin API about itself.

#![deny(missing_docs, unreachable_pub)]

mod command_stats;
mod histogram;
mod http;
mod metrics;

pub use command_stats::{CommandSnapshot, CommandStats, CommandStatsSnapshot};
pub use histogram::{
    HistogramSnapshot, LATENCY_BUCKET_BOUNDS_NS, LatencyHistogram, NUM_BUCKETS, bucket_index,
    percentile_from_buckets,
};
pub use http::{AdminLimits, AdminSource, AdminState, Health, router, serve, serve_with_routes};
pub use metrics::{
    AdminRejectReason, ClientErrorKind, ConnectionRejectReason, GaugeSample, HeartbeatRejectReason,
    LabelledCounter, LagGauge, METRIC_NAME_PREFIX, MetricLabel, Metrics, ON_DEMAND_GAUGES_MAX,
    OPENMETRICS_CONTENT_TYPE, OnDemandGauges, REPLICATION_LAG_PEERS_MAX, RelayOutcome,
};
