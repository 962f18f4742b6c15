//! INFO and CONFIG GET: what a node tells about itself, in Redis' formats so tools parse it.

use std::fmt::Write;

use bytes::Bytes;

use super::dispatch::REDIS_COMPATIBLE_VERSION;
use crate::state::{NodeCounters, NodeState};

/// The sections INFO prints without arguments, in order.
const DEFAULT_SECTIONS: [&str; 8] = [
    "server",
    "clients",
    "memory",
    "stats",
    "replication",
    "cpu",
    "cluster",
    "keyspace",
];

/// INFO's text for `sections` (none, `default`, `all`, `everything` or names, any case).
pub(crate) fn render(state: &NodeState, sections: &[Bytes]) -> String {
    let wanted: Vec<String> = sections
        .iter()
        .map(|section| String::from_utf8_lossy(section).to_ascii_lowercase())
        .collect();
    let all = wanted.is_empty()
        || wanted
            .iter()
            .any(|name| matches!(name.as_str(), "all" | "everything" | "default"));
    let mut text = String::new();
    for section in DEFAULT_SECTIONS {
        if !(all || wanted.iter().any(|name| name == section)) {
            continue;
        }
        if !text.is_empty() {
            text.push_str("\r\n");
        }
        match section {
            "server" => server(state, &mut text),
            "clients" => clients(state, &mut text),
            "memory" => memory(state, &mut text),
            "stats" => stats(state, &mut text),
            "replication" => replication(state, &mut text),
            "cpu" => cpu(&mut text),
            "cluster" => cluster(state, &mut text),
            "keyspace" => keyspace(state, &mut text),
            _ => {}
        }
    }
    text
}

fn server(state: &NodeState, text: &mut String) {
    let uptime = state.started_at.elapsed().as_secs();
    let _ = write!(
        text,
        "# Server\r\nredis_version:{REDIS_COMPATIBLE_VERSION}\r\nscd_version:{}\r\nredis_mode:standalone\r\n\
         os:{} {}\r\narch_bits:{}\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\nserver_time_usec:{}\r\n\
         uptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\nexecutable:{}\r\nconfig_file:\r\n\
         scd_node_name:{}\r\nscd_cluster_name:{}\r\n",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH,
        usize::BITS,
        std::process::id(),
        state.run_id,
        state.addresses.client.port(),
        state.now_ms() * 1000,
        uptime / 86_400,
        std::env::current_exe()
            .map(|path| path.display().to_string())
            .unwrap_or_default(),
        state.config.name,
        state.config.cluster_name,
    );
}

fn clients(state: &NodeState, text: &mut String) {
    let _ = write!(
        text,
        "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:0\r\n",
        NodeCounters::get(&state.counters.connections_current),
        state.config.max_clients,
    );
}

/// Bytes the process has allocated, when the binary counts them (`alloc::CountingAllocator`);
/// else the dataset's accounted bytes.
pub(crate) fn used_memory_bytes(state: &NodeState) -> u64 {
    match crate::alloc::allocated_bytes() {
        0 => state.store.memory_used_bytes(),
        allocated => allocated,
    }
}

/// Resident set size from `/proc/self/statm`, 0 where that file does not exist.
pub(crate) fn rss_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let resident_pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|pages| pages.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    resident_pages * u64::try_from(page_size).unwrap_or(4096)
}

fn human(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes}B"),
        1024..1_048_576 => format!("{:.2}K", bytes as f64 / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.2}M", bytes as f64 / 1_048_576.0),
        _ => format!("{:.2}G", bytes as f64 / 1_073_741_824.0),
    }
}

fn memory(state: &NodeState, text: &mut String) {
    let used = used_memory_bytes(state);
    let dataset = state.store.memory_used_bytes();
    let rss = rss_bytes();
    let max_memory = state.config.max_memory_bytes;
    let _ = write!(
        text,
        "# Memory\r\nused_memory:{used}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\n\
         used_memory_rss_human:{}\r\nused_memory_dataset:{dataset}\r\nused_memory_dataset_human:{}\r\n\
         maxmemory:{max_memory}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:noeviction\r\n\
         mem_fragmentation_ratio:{:.2}\r\nmem_allocator:{}\r\nscd_tombstones:{}\r\n",
        human(used),
        human(rss),
        human(dataset),
        human(max_memory),
        if used == 0 {
            0.0
        } else {
            rss as f64 / used as f64
        },
        if crate::alloc::allocated_bytes() == 0 {
            "libc"
        } else {
            "libc (counted)"
        },
        state.store.stats().num_tombstones,
    );
}

fn stats(state: &NodeState, text: &mut String) {
    let counters = &state.counters;
    let store_stats = state.store.stats();
    let _ = write!(
        text,
        "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\n\
         total_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\nrejected_connections:{}\r\n\
         scd_rejected_connections_not_allowed:{}\r\nexpired_keys:{}\r\nevicted_keys:0\r\n\
         total_error_replies:{}\r\n",
        NodeCounters::get(&counters.connections_received),
        state.commands_processed(),
        NodeCounters::get(&counters.net_input_bytes),
        NodeCounters::get(&counters.net_output_bytes),
        NodeCounters::get(&counters.connections_rejected_max_clients),
        NodeCounters::get(&counters.connections_rejected_not_allowed),
        store_stats.num_expired_keys_total,
        NodeCounters::get(&counters.error_replies),
    );
}

fn replication(state: &NodeState, text: &mut String) {
    let engine = state.io.engine.stats();
    let _ = write!(
        text,
        "# Replication\r\nrole:master\r\nconnected_slaves:0\r\nscd_backups:{}\r\nscd_write_mode:{}\r\n\
         scd_max_lag_ms:{}\r\nscd_promotions:{}\r\nscd_failover_marked_sessions:{}\r\n",
        state.config.backups,
        state.config.write_mode.as_str(),
        state.config.max_lag_ms,
        engine.promotions,
        engine.failover_marked_keys,
    );
}

fn cpu(text: &mut String) {
    // SAFETY: getrusage fills the struct we pass; RUSAGE_SELF is always valid.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    let _ = write!(
        text,
        "# CPU\r\nused_cpu_sys:{:.6}\r\nused_cpu_user:{:.6}\r\n",
        seconds(usage.ru_stime),
        seconds(usage.ru_utime)
    );
}

fn cluster(state: &NodeState, text: &mut String) {
    // redis_cluster is 0: scd is not a Redis Cluster; clients must not use cluster redirections.
    let _ = write!(
        text,
        "# Cluster\r\ncluster_enabled:0\r\nscd_partitions:{}\r\nscd_peer_address:{}\r\n",
        state.config.num_partitions, state.addresses.peer,
    );
}

/// Keys, keys with an expiry and their mean TTL in ms per database, of this node's store:
/// primary and backup copies alike, as `DBSIZE` is not (it counts the cluster's keys once).
fn keyspace(state: &NodeState, text: &mut String) {
    let store_stats = state.store.stats();
    let now_ms = state.now_ms();
    text.push_str("# Keyspace\r\n");
    for db in 0..store::NUM_DATABASES {
        let keys = store_stats.num_keys_per_db[usize::from(db)];
        if keys > 0 {
            let expires = store_stats.num_keys_with_expiry_per_db[usize::from(db)];
            let avg_ttl_ms = store_stats.average_ttl_ms(db, now_ms);
            let _ = write!(
                text,
                "db{db}:keys={keys},expires={expires},avg_ttl={avg_ttl_ms}\r\n"
            );
        }
    }
}

/// What CONFIG GET answers: the settings tools ask for (redis-benchmark asks for `save` and
/// `appendonly`), under Redis' names where one exists, scd's own names otherwise.
pub(crate) fn config_settings(state: &NodeState) -> Vec<(&'static str, String)> {
    let config = &state.config;
    vec![
        ("appendonly", "no".to_string()),
        ("save", String::new()),
        ("databases", store::NUM_DATABASES.to_string()),
        ("maxclients", config.max_clients.to_string()),
        ("maxmemory", config.max_memory_bytes.to_string()),
        ("maxmemory-policy", "noeviction".to_string()),
        ("proto-max-bulk-len", config.max_value_bytes.to_string()),
        ("timeout", "0".to_string()),
        ("port", state.addresses.client.port().to_string()),
        ("bind", state.addresses.client.ip().to_string()),
        ("cluster-enabled", "no".to_string()),
        ("max-value-bytes", config.max_value_bytes.to_string()),
        ("max-memory", config.max_memory_bytes.to_string()),
        ("max-clients", config.max_clients.to_string()),
        ("backups", config.backups.to_string()),
        ("write-mode", config.write_mode.as_str().to_string()),
        ("max-lag-ms", config.max_lag_ms.to_string()),
        ("partitions", config.num_partitions.to_string()),
        ("name", config.name.clone()),
        ("cluster", config.cluster_name.clone()),
    ]
}
