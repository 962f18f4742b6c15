//! What the admin API shows about this node: health, `/stats`, `/cluster` and the gauges that are
//! computed when `/metrics` is scraped.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use admin::{AdminSource, AdminState, GaugeSample, Health};
use serde_json::{Value, json};

use crate::resp::{rss_bytes, used_memory_bytes};
use crate::state::{NodeCounters, NodeState};

/// Holds the node weakly: the node owns the admin server, and the admin server must not keep the
/// node alive after it stopped.
struct NodeAdmin {
    node: Weak<NodeState>,
}

/// The admin server's state for `node`, with the on-demand gauges registered.
pub(crate) fn admin_state(node: &Arc<NodeState>) -> AdminState {
    let weak = Arc::downgrade(node);
    node.metrics
        .set_on_demand_gauges(Box::new(move || match weak.upgrade() {
            Some(node) => gauges(&node),
            None => Vec::new(),
        }));
    AdminState::new(
        Arc::clone(&node.metrics),
        Arc::new(NodeAdmin {
            node: Arc::downgrade(node),
        }),
    )
}

fn gauges(node: &NodeState) -> Vec<GaugeSample> {
    vec![
        GaugeSample {
            name: "keys",
            help: "Keys stored on this node, primary and backup copies.",
            value: node.store.num_keys() as f64,
        },
        GaugeSample {
            name: "tombstones",
            help: "Deleted and expired keys remembered for --tombstone-ttl-ms, so that an older \
                   copy cannot bring them back after a network split heals.",
            value: node.store.stats().num_tombstones as f64,
        },
        GaugeSample {
            name: "memory_used_bytes",
            help: "Bytes allocated by the process.",
            value: used_memory_bytes(node) as f64,
        },
        GaugeSample {
            name: "memory_dataset_bytes",
            help: "Bytes the stored data accounts for (what max-memory bounds).",
            value: node.store.memory_used_bytes() as f64,
        },
        GaugeSample {
            name: "rss_bytes",
            help: "Resident set size of the process.",
            value: rss_bytes() as f64,
        },
        GaugeSample {
            name: "connections",
            help: "Client connections open now.",
            value: NodeCounters::get(&node.counters.connections_current) as f64,
        },
    ]
}

impl AdminSource for NodeAdmin {
    fn health(&self) -> Health {
        match self.node.upgrade() {
            Some(node) if !node.stopping.load(Ordering::SeqCst) => {
                Health::serving().with_detail("node", node.config.name.clone())
            }
            Some(_) => Health::not_serving("shutting down"),
            None => Health::not_serving("stopped"),
        }
    }

    fn stats(&self) -> Value {
        let Some(node) = self.node.upgrade() else {
            return json!({});
        };
        let counters = &node.counters;
        json!({
            "node": node.config.name,
            "cluster": node.config.cluster_name,
            "uptime_seconds": node.started_at.elapsed().as_secs(),
            "keys": node.store.num_keys(),
            "memory_used_bytes": used_memory_bytes(&node),
            "memory_dataset_bytes": node.store.memory_used_bytes(),
            "rss_bytes": rss_bytes(),
            "max_memory_bytes": node.config.max_memory_bytes,
            "connections": NodeCounters::get(&counters.connections_current),
            "connections_received": NodeCounters::get(&counters.connections_received),
            "connections_rejected_max_clients": NodeCounters::get(&counters.connections_rejected_max_clients),
            "connections_rejected_not_allowed": NodeCounters::get(&counters.connections_rejected_not_allowed),
            "commands_processed": node.commands_processed(),
            "error_replies": NodeCounters::get(&counters.error_replies),
            "net_input_bytes": NodeCounters::get(&counters.net_input_bytes),
            "net_output_bytes": NodeCounters::get(&counters.net_output_bytes),
            "expired_keys": node.store.stats().num_expired_keys_total,
        })
    }

    fn cluster(&self) -> Value {
        let Some(node) = self.node.upgrade() else {
            return json!({});
        };
        cluster_json(&node)
    }

    fn peer_allowed(&self, ip: IpAddr) -> bool {
        self.node
            .upgrade()
            .is_some_and(|node| node.config.is_allowed(ip))
    }
}

/// The cluster as this node sees it: every member membership knows (alive or not) with its load
/// and what the partition table says it owns. `scd status` prints it; the dashboard draws it.
pub(crate) fn cluster_json(node: &NodeState) -> Value {
    let config = &node.config;
    let engine = &node.io.engine;
    let now_ms = node.now_ms();
    let summary = engine.summary(now_ms);
    let members = node
        .io
        .membership
        .get()
        .map(|membership| membership.snapshot().members.clone())
        .unwrap_or_default();
    let nodes: Vec<Value> = members
        .iter()
        .map(|info| {
            let member = cluster::table::Member {
                id: info.id,
                incarnation: info.incarnation,
            };
            let ownership = summary.ownership.get(&member).copied().unwrap_or_default();
            let state = match info.state {
                cluster::membership::MemberState::Alive => "alive",
                cluster::membership::MemberState::Suspect => "suspect",
                cluster::membership::MemberState::Down => "down",
            };
            let leaving = info.role & crate::cluster_io::ROLE_LEAVING != 0;
            json!({
                "name": info.name,
                "id": info.id.0,
                "self": info.is_self,
                "state": if leaving && state == "alive" { "leaving" } else { state },
                "incarnation": info.incarnation.0,
                "peer": info.addresses.peer.to_string(),
                "address": info.addresses.peer.to_string(),
                "client": info.addresses.client.to_string(),
                "memcached": info.addresses.memcached_opt.map(|address| address.to_string()),
                "admin": info.addresses.admin.to_string(),
                "sessions": info.load.num_sessions,
                "connections": info.load.num_connections,
                "primaries": ownership.primaries,
                "backups": ownership.backups,
                "replication_lag_ms": summary.lag_ms.get(&member).copied(),
                "phi": (info.phi * 10.0).round() / 10.0,
                "down_reason": info.down_reason_opt.map(|reason| format!("{reason:?}")),
            })
        })
        .collect();
    // Per partition, for the dashboard's map: the primary's name (null without one) and how
    // many backups the record lists.
    let name_of = |id: cluster::node_id::NodeId| {
        members
            .iter()
            .find(|info| info.id == id)
            .map_or_else(|| format!("{id}"), |info| info.name.clone())
    };
    let (partition_primaries, partition_backups): (Vec<Value>, Vec<usize>) = (0..config
        .num_partitions)
        .map(|partition| match engine.record(partition) {
            Some(record) => (json!(name_of(record.primary.id)), record.backups.len()),
            None => (Value::Null, 0),
        })
        .unzip();
    json!({
        "node": config.name,
        "cluster": config.cluster_name,
        "partitions": config.num_partitions,
        "partition_primaries": partition_primaries,
        "partition_backups": partition_backups,
        "backups": config.backups,
        "write_mode": config.write_mode.as_str(),
        "table_digest": format!("{:016x}", engine.table_digest()),
        "under_replicated_partitions": summary.under_replicated,
        "under_replicated_partitions_shown": summary.under_replicated_partitions,
        "partitions_short_of_backups": summary.short_of_backups,
        "partitions_to_move": summary.to_move,
        "handoffs_in_progress": summary.handoffs_in_progress,
        "snapshots_in_progress": summary.snapshots_in_progress,
        "snapshots_receiving": summary.snapshots_receiving,
        "merges_in_progress": summary.merges_in_progress,
        "deferred_requests": summary.deferred_requests,
        "busy_partitions_shown": summary.busy_partitions,
        "unowned_partitions": summary.without_record + summary.without_live_primary,
        "serving": summary.gate_open,
        "since_start": since_start(&engine.stats()),
        "nodes": nodes,
    })
}

/// The engine's counters an operator asks about after a failure, since this node started.
fn since_start(stats: &cluster::engine::EngineStats) -> Value {
    json!({
        "promotions": stats.promotions,
        "promotions_unsynced": stats.promotions_unsynced,
        "lost_partitions": stats.lost_partitions,
        "handoffs_completed": stats.handoffs_completed,
        "handoffs_aborted": stats.handoffs_aborted,
        "handoff_duration_ms_max": stats.handoff_duration_ms_max,
        "snapshots_sent": stats.snapshots_sent,
        "snapshots_completed": stats.snapshots_completed,
        "snapshots_abandoned": stats.snapshots_abandoned,
        "snapshots_received": stats.snapshots_received,
        "resyncs_sent": stats.resyncs_sent,
        "stream_link_resets": stats.stream_link_resets,
        "backup_removals_confirmed": stats.removals_confirmed,
        "backup_removals_unconfirmed": stats.removals_unconfirmed,
        "resyncs_given_up": stats.resyncs_given_up,
        "claim_merges_awaited": stats.claim_merges_awaited,
        "claim_merges_given_up": stats.claim_merges_given_up,
        "merged_keys": stats.merged_keys,
        "failover_marked_keys": stats.failover_marked_keys,
    })
}
