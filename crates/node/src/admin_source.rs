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
            "commands_processed": NodeCounters::get(&counters.commands_processed),
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
        let config = &node.config;
        json!({
            "node": config.name,
            "cluster": config.cluster_name,
            "partitions": config.num_partitions,
            "backups": config.backups,
            "write_mode": config.write_mode.as_str(),
            "under_replicated_partitions": 0,
            "handoffs_in_progress": 0,
            "unowned_partitions": 0,
            "nodes": [{
                "name": config.name,
                "self": true,
                "state": "alive",
                "incarnation": null,
                "peer": node.addresses.peer.to_string(),
                "address": node.addresses.peer.to_string(),
                "client": node.addresses.client.to_string(),
                "admin": node.addresses.admin_opt.map(|address| address.to_string()),
                "sessions": node.store.num_keys(),
                "connections": NodeCounters::get(&node.counters.connections_current),
                "primaries": config.num_partitions,
                "backups": 0,
                "replication_lag_ms": null,
                "phi": 0.0,
            }],
        })
    }

    fn peer_allowed(&self, ip: IpAddr) -> bool {
        self.node
            .upgrade()
            .is_some_and(|node| node.config.is_allowed(ip))
    }
}
