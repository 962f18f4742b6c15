//! The settings of one node, as the `scd` binary hands them over after merging flags and file.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use store::StoreConfig;

/// How a primary acknowledges writes (DESIGN.md, "write-through / delayed-write").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// Acknowledge a write only after every live backup has it.
    Through,
    /// Acknowledge at once; replicate within `max_lag_ms`.
    Delayed,
}

impl WriteMode {
    /// The name used on the command line and in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteMode::Through => "through",
            WriteMode::Delayed => "delayed",
        }
    }
}

/// Everything a node needs to run. Defaults are those of DESIGN.md's contract.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Stable name of this node; partitions are placed by it, so it must not change across restarts.
    pub name: String,
    /// Nodes only cluster with nodes of the same cluster name (and secret).
    pub cluster_name: String,
    /// RESP2/RESP3 listener for applications.
    pub client_addr: SocketAddr,
    /// memcached text + binary listener; off when `None`.
    pub memcached_addr_opt: Option<SocketAddr>,
    /// TCP listener for other nodes; heartbeats use UDP on the same address.
    pub peer_addr: SocketAddr,
    /// Peer addresses to contact at start; the rest of the cluster is learned from heartbeats.
    pub join: Vec<SocketAddr>,
    /// HTTP admin API, metrics and dashboard; off when `None`.
    pub admin_addr_opt: Option<SocketAddr>,
    /// Copies of every partition besides its primary.
    pub backups: u8,
    /// Storage model.
    pub write_mode: WriteMode,
    /// Delayed-write: the bound on replication lag.
    pub max_lag_ms: u64,
    /// How long the store keeps the tombstone of a deleted or expired key.
    pub tombstone_ttl_ms: u64,
    /// The cluster secret (contents of `--secret-file`); `None` means peers are not authenticated.
    pub secret_opt: Option<Vec<u8>>,
    /// Allow unauthenticated peers on a non-loopback address.
    pub insecure_peers: bool,
    /// Networks whose hosts may connect (client, memcached, peer, heartbeat and admin ports);
    /// empty means everyone.
    pub allow: Vec<IpNet>,
    /// Password clients must give with `AUTH` (or `HELLO ... AUTH`, or SASL on the memcached port).
    pub requirepass_opt: Option<String>,
    /// Bound on the memory the dataset may use; 0 means no bound.
    pub max_memory_bytes: u64,
    /// Largest value a client may store.
    pub max_value_bytes: usize,
    /// Most client connections (RESP and memcached together) open at once.
    pub max_clients: usize,
    /// Threads serving client connections, each a single-threaded runtime. Default: half the
    /// CPUs, at least one (see [`default_client_threads`]).
    pub client_threads: usize,
    /// Partition count: a power of two, the same on every node.
    pub num_partitions: u32,
    /// Interval between two heartbeats to each peer.
    pub heartbeat_interval_ms: u64,
    /// Phi-accrual suspicion threshold.
    pub phi_threshold: f64,
    /// How long a planned leave may take to hand partitions off before the node exits anyway.
    pub leave_timeout: Duration,
    /// Most `SCD.LOCK … WAIT` requests queued for one lock on its primary.
    pub max_lock_waiters_per_key: usize,
    /// Most `SCD.LOCK … WAIT` requests queued on this node over all locks.
    pub max_lock_waiters: usize,
}

impl NodeConfig {
    /// A configuration with the contract's defaults and the given name.
    pub fn with_name(name: impl Into<String>) -> NodeConfig {
        NodeConfig {
            name: name.into(),
            cluster_name: "scd".to_string(),
            client_addr: SocketAddr::from(([127, 0, 0, 1], 6379)),
            memcached_addr_opt: None,
            peer_addr: SocketAddr::from(([127, 0, 0, 1], 34567)),
            join: Vec::new(),
            admin_addr_opt: Some(SocketAddr::from(([127, 0, 0, 1], 34580))),
            backups: 1,
            write_mode: WriteMode::Through,
            max_lag_ms: 100,
            tombstone_ttl_ms: StoreConfig::default().tombstone_ttl_ms,
            secret_opt: None,
            insecure_peers: false,
            allow: Vec::new(),
            requirepass_opt: None,
            max_memory_bytes: 0,
            max_value_bytes: 1 << 20,
            max_clients: 10_000,
            client_threads: default_client_threads(),
            num_partitions: 1024,
            heartbeat_interval_ms: 100,
            phi_threshold: 8.0,
            leave_timeout: Duration::from_secs(30),
            max_lock_waiters_per_key: 1_024,
            max_lock_waiters: 65_536,
        }
    }

    /// Whether `ip` may connect, according to `allow`.
    pub fn is_allowed(&self, ip: std::net::IpAddr) -> bool {
        is_allowed(&self.allow, ip)
    }
}

/// Whether `ip` is inside one of `allow` (an empty list allows everyone). IPv4-mapped IPv6
/// addresses are compared as IPv4, so `127.0.0.0/8` also admits `::ffff:127.0.0.1`.
pub fn is_allowed(allow: &[IpNet], ip: std::net::IpAddr) -> bool {
    if allow.is_empty() {
        return true;
    }
    let ip = match ip {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(std::net::IpAddr::V4)
            .unwrap_or(std::net::IpAddr::V6(v6)),
        v4 => v4,
    };
    allow.iter().any(|net| net.contains(&ip))
}

/// The default number of client threads: half the CPUs, at least one. scd runs beside the web
/// server whose sessions it keeps, so its clients compete with it for the same cores; a thread
/// per core then mostly adds wake-ups. Measured on 2 cores with redis-benchmark sharing them
/// (`-c 50 -d 512`, no pipelining): one thread served 1.0x redis-server's rate, two 0.7x; with
/// `-P 16` two threads did better (README, Benchmarks), hence `--client-threads`.
pub fn default_client_threads() -> usize {
    std::thread::available_parallelism()
        .map(|cpus| (usize::from(cpus) / 2).max(1))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_allow_list_admits_everyone() {
        assert!(is_allowed(&[], "10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn allow_list_admits_only_its_networks() {
        let allow: Vec<IpNet> = vec![
            "127.0.0.0/8".parse().unwrap(),
            "10.0.0.0/24".parse().unwrap(),
        ];
        assert!(is_allowed(&allow, "127.0.0.1".parse().unwrap()));
        assert!(is_allowed(&allow, "10.0.0.200".parse().unwrap()));
        assert!(!is_allowed(&allow, "10.0.1.1".parse().unwrap()));
        assert!(is_allowed(&allow, "::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_allowed(&allow, "::1".parse().unwrap()));
    }
}
