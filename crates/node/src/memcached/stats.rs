//! What the memcached front end counts, and the answers to `stats` (text) and STAT (binary).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::flush::FlushSchedule;
use crate::state::{NodeCounters, NodeState, memcached_command_index};

/// The memcached commands, as the node's command statistics count them. Binary opcodes count as
/// the text command they match (GETK and GETQ as `get`, SET with a CAS as `cas`, INCREMENT as
/// `incr`), so the numbers mean the same whichever protocol a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Command {
    Get,
    Gets,
    Gat,
    Gats,
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
    Delete,
    Incr,
    Decr,
    Touch,
    FlushAll,
    Version,
    Stats,
    Verbosity,
    Quit,
    MetaGet,
    MetaSet,
    MetaDelete,
    MetaArithmetic,
    MetaNoop,
    Noop,
    SaslListMechanisms,
    /// SASL_AUTH, and the text protocol's authenticating `set`.
    Auth,
    SaslStep,
}

/// The names of [`Command`]s in the command statistics, in the order of the enum. They follow the
/// RESP commands in the node's table, prefixed so that `memcached_get` and Redis' `get` stay apart.
pub(crate) const COMMAND_NAMES: [&str; 28] = [
    "memcached_get",
    "memcached_gets",
    "memcached_gat",
    "memcached_gats",
    "memcached_set",
    "memcached_add",
    "memcached_replace",
    "memcached_append",
    "memcached_prepend",
    "memcached_cas",
    "memcached_delete",
    "memcached_incr",
    "memcached_decr",
    "memcached_touch",
    "memcached_flush_all",
    "memcached_version",
    "memcached_stats",
    "memcached_verbosity",
    "memcached_quit",
    "memcached_mg",
    "memcached_ms",
    "memcached_md",
    "memcached_ma",
    "memcached_mn",
    "memcached_noop",
    "memcached_sasl_list_mechs",
    "memcached_auth",
    "memcached_sasl_step",
];

impl Command {
    /// The command's index in the node's command statistics.
    pub(super) fn stat_index(self) -> usize {
        memcached_command_index(self as usize)
    }
}

/// memcached's own counters (`cmd_get`, `get_hits`, ...), which the node's counters do not hold.
/// Relaxed atomics: each is an independent tally.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) cmd_get: AtomicU64,
    pub(super) cmd_set: AtomicU64,
    pub(super) cmd_flush: AtomicU64,
    pub(super) cmd_touch: AtomicU64,
    pub(super) get_hits: AtomicU64,
    pub(super) get_misses: AtomicU64,
    pub(super) delete_hits: AtomicU64,
    pub(super) delete_misses: AtomicU64,
    pub(super) incr_hits: AtomicU64,
    pub(super) incr_misses: AtomicU64,
    pub(super) decr_hits: AtomicU64,
    pub(super) decr_misses: AtomicU64,
    pub(super) cas_hits: AtomicU64,
    pub(super) cas_misses: AtomicU64,
    pub(super) cas_badval: AtomicU64,
    pub(super) touch_hits: AtomicU64,
    pub(super) touch_misses: AtomicU64,
    pub(super) auth_cmds: AtomicU64,
    pub(super) auth_errors: AtomicU64,
    /// Items stored since start (or `stats reset`).
    pub(super) total_items: AtomicU64,
}

impl Counters {
    pub(super) fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    /// Counts the keys of a get (or, with `touched`, of a get-and-touch), as memcached does:
    /// per key, not per command.
    pub(super) fn count_reads(&self, touched: bool, num_hits: u64, num_misses: u64) {
        let (commands, hits, misses) = if touched {
            (&self.cmd_touch, &self.touch_hits, &self.touch_misses)
        } else {
            (&self.cmd_get, &self.get_hits, &self.get_misses)
        };
        Counters::add(commands, num_hits + num_misses);
        Counters::add(hits, num_hits);
        Counters::add(misses, num_misses);
    }

    /// `stats reset`: every counter back to 0.
    fn reset(&self) {
        for counter in [
            &self.cmd_get,
            &self.cmd_set,
            &self.cmd_flush,
            &self.cmd_touch,
            &self.get_hits,
            &self.get_misses,
            &self.delete_hits,
            &self.delete_misses,
            &self.incr_hits,
            &self.incr_misses,
            &self.decr_hits,
            &self.decr_misses,
            &self.cas_hits,
            &self.cas_misses,
            &self.cas_badval,
            &self.touch_hits,
            &self.touch_misses,
            &self.auth_cmds,
            &self.auth_errors,
            &self.total_items,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// What the memcached front end keeps per node: its counters and the pending delayed flush.
#[derive(Debug, Default)]
pub(crate) struct NodeMemcached {
    pub(super) counters: Counters,
    pub(super) flush: FlushSchedule,
}

/// The memcached state of `state`'s node.
pub(super) fn node_memcached(state: &Arc<NodeState>) -> Arc<NodeMemcached> {
    Arc::clone(&state.memcached)
}

/// The answer to `stats [group]` or STAT with a group.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum StatsAnswer {
    /// `STAT <name> <value>` lines (possibly none), then the end marker.
    Lines(Vec<(&'static str, String)>),
    /// `stats reset` was done.
    Reset,
    /// No such group: `ERROR` (text) or status `KeyNotFound` (binary), as memcached answers.
    UnknownGroup,
}

/// Groups memcached has that describe its slab allocator and connections, which scd does not
/// have: answered with no lines, so tools that ask for them get an empty table, not an error.
const EMPTY_GROUPS: [&[u8]; 4] = [b"items", b"slabs", b"sizes", b"conns"];

/// The statistics of `group_opt` (`None`: the general ones, what `memcstat` prints).
pub(super) fn answer(
    state: &NodeState,
    node: &NodeMemcached,
    group_opt: Option<&[u8]>,
) -> StatsAnswer {
    match group_opt {
        None => StatsAnswer::Lines(general(state, &node.counters)),
        Some(b"settings") => StatsAnswer::Lines(settings(state)),
        Some(b"reset") => {
            node.counters.reset();
            StatsAnswer::Reset
        }
        Some(group) if EMPTY_GROUPS.contains(&group) => StatsAnswer::Lines(Vec::new()),
        Some(_) => StatsAnswer::UnknownGroup,
    }
}

/// memcached's general statistics, with scd's numbers.
fn general(state: &NodeState, counters: &Counters) -> Vec<(&'static str, String)> {
    let node_counters = &state.counters;
    let store_stats = state.store.stats();
    let (user, system) = cpu_times();
    let count = |counter: &AtomicU64| Counters::get(counter).to_string();
    let node_count = |counter: &AtomicU64| NodeCounters::get(counter).to_string();
    let rejected_connections = NodeCounters::get(&node_counters.connections_rejected_max_clients)
        + NodeCounters::get(&node_counters.connections_rejected_not_allowed);
    vec![
        ("pid", std::process::id().to_string()),
        ("uptime", state.started_at.elapsed().as_secs().to_string()),
        ("time", (state.now_ms() / 1000).to_string()),
        ("version", super::VERSION.to_string()),
        ("pointer_size", usize::BITS.to_string()),
        ("rusage_user", user),
        ("rusage_system", system),
        ("max_connections", state.config.max_clients.to_string()),
        (
            "curr_connections",
            node_count(&node_counters.connections_current),
        ),
        (
            "total_connections",
            node_count(&node_counters.connections_received),
        ),
        ("rejected_connections", rejected_connections.to_string()),
        (
            "connection_structures",
            node_count(&node_counters.connections_current),
        ),
        ("cmd_get", count(&counters.cmd_get)),
        ("cmd_set", count(&counters.cmd_set)),
        ("cmd_flush", count(&counters.cmd_flush)),
        ("cmd_touch", count(&counters.cmd_touch)),
        ("get_hits", count(&counters.get_hits)),
        ("get_misses", count(&counters.get_misses)),
        ("delete_misses", count(&counters.delete_misses)),
        ("delete_hits", count(&counters.delete_hits)),
        ("incr_misses", count(&counters.incr_misses)),
        ("incr_hits", count(&counters.incr_hits)),
        ("decr_misses", count(&counters.decr_misses)),
        ("decr_hits", count(&counters.decr_hits)),
        ("cas_misses", count(&counters.cas_misses)),
        ("cas_hits", count(&counters.cas_hits)),
        ("cas_badval", count(&counters.cas_badval)),
        ("touch_hits", count(&counters.touch_hits)),
        ("touch_misses", count(&counters.touch_misses)),
        ("auth_cmds", count(&counters.auth_cmds)),
        ("auth_errors", count(&counters.auth_errors)),
        ("bytes_read", node_count(&node_counters.net_input_bytes)),
        ("bytes_written", node_count(&node_counters.net_output_bytes)),
        ("limit_maxbytes", state.config.max_memory_bytes.to_string()),
        ("accepting_conns", "1".to_string()),
        ("threads", num_threads().to_string()),
        ("bytes", store_stats.memory_used_bytes.to_string()),
        (
            "curr_items",
            store_stats.num_keys_per_db[usize::from(super::ops::MEMCACHED_DB)].to_string(),
        ),
        ("total_items", count(&counters.total_items)),
        ("expired_unfetched", "0".to_string()),
        ("evictions", "0".to_string()),
        ("reclaimed", "0".to_string()),
    ]
}

/// `stats settings`: the memcached settings that have an scd counterpart.
fn settings(state: &NodeState) -> Vec<(&'static str, String)> {
    let config = &state.config;
    let sasl_enabled = if config.requirepass_opt.is_some() {
        "yes"
    } else {
        "no"
    };
    vec![
        ("maxbytes", config.max_memory_bytes.to_string()),
        ("maxconns", config.max_clients.to_string()),
        (
            "tcpport",
            state
                .addresses
                .memcached_opt
                .map_or(0, |address| address.port())
                .to_string(),
        ),
        ("evictions", "off".to_string()),
        ("cas_enabled", "yes".to_string()),
        ("item_size_max", config.max_value_bytes.to_string()),
        ("binding_protocol", "auto-negotiate".to_string()),
        ("auth_enabled_sasl", sasl_enabled.to_string()),
        ("auth_enabled_ascii", sasl_enabled.to_string()),
        ("num_threads", num_threads().to_string()),
        ("flush_enabled", "yes".to_string()),
    ]
}

/// The runtime's worker threads (what serves clients), or 1 outside a runtime.
fn num_threads() -> usize {
    tokio::runtime::Handle::try_current()
        .map(|handle| handle.metrics().num_workers())
        .unwrap_or(1)
}

/// User and system CPU time of the process as memcached prints them, `seconds.microseconds`.
fn cpu_times() -> (String, String) {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a complete rusage into the pointed-to memory, which is valid and
    // large enough; on failure the zeroed value is read, which is a valid rusage.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let format = |time: libc::timeval| format!("{}.{:06}", time.tv_sec.max(0), time.tv_usec.max(0));
    (format(usage.ru_utime), format(usage.ru_stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_is_one_name_per_command_and_names_are_unique() {
        assert_eq!(COMMAND_NAMES.len(), Command::SaslStep as usize + 1);
        assert_eq!(COMMAND_NAMES[Command::Get as usize], "memcached_get");
        assert_eq!(COMMAND_NAMES[Command::Auth as usize], "memcached_auth");
        let mut names = COMMAND_NAMES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COMMAND_NAMES.len());
    }

    #[test]
    fn reads_count_per_key_under_get_or_touch() {
        let counters = Counters::default();
        counters.count_reads(false, 2, 1);
        counters.count_reads(true, 1, 3);
        assert_eq!(Counters::get(&counters.cmd_get), 3);
        assert_eq!(Counters::get(&counters.get_hits), 2);
        assert_eq!(Counters::get(&counters.get_misses), 1);
        assert_eq!(Counters::get(&counters.cmd_touch), 4);
        assert_eq!(Counters::get(&counters.touch_hits), 1);
        assert_eq!(Counters::get(&counters.touch_misses), 3);
        counters.reset();
        assert_eq!(Counters::get(&counters.cmd_get), 0);
        assert_eq!(Counters::get(&counters.touch_misses), 0);
    }

    #[test]
    fn cpu_times_are_seconds_dot_six_digit_microseconds() {
        let (user, system) = cpu_times();
        for time in [user, system] {
            let (seconds, microseconds) = time.split_once('.').expect("a dot");
            assert!(seconds.parse::<u64>().is_ok(), "{time}");
            assert_eq!(microseconds.len(), 6, "{time}");
        }
    }
}
