//! The state every task of a node shares: configuration, store, router, clock, metrics, counters.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use admin::{CommandStats, Metrics};
use store::Store;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::clock::Clock;
use crate::config::NodeConfig;
use crate::router::Router;

/// Counters for INFO and `/stats`. Relaxed atomics: each is an independent tally.
#[derive(Debug, Default)]
pub(crate) struct NodeCounters {
    /// Client connections accepted since start (RESP and memcached).
    pub(crate) connections_received: AtomicU64,
    /// Client connections open now.
    pub(crate) connections_current: AtomicU64,
    /// Connections refused: over `--max-clients`.
    pub(crate) connections_rejected_max_clients: AtomicU64,
    /// Connections refused: not in `--allow`.
    pub(crate) connections_rejected_not_allowed: AtomicU64,
    /// Bytes read from clients.
    pub(crate) net_input_bytes: AtomicU64,
    /// Bytes written to clients.
    pub(crate) net_output_bytes: AtomicU64,
    /// Error replies sent to clients.
    pub(crate) error_replies: AtomicU64,
}

/// A connection's wait for the node's shutdown. Waiting on the node's token itself would lock
/// its one mutex twice per read (register, unregister) from every client thread at once; a
/// child token, cancelled with it, waited on by one future kept for the whole connection, is
/// locked only by this connection.
pub(crate) struct ShutdownSignal(std::pin::Pin<Box<WaitForCancellationFutureOwned>>);

impl ShutdownSignal {
    pub(crate) fn new(node_shutdown: &CancellationToken) -> ShutdownSignal {
        ShutdownSignal(Box::pin(node_shutdown.child_token().cancelled_owned()))
    }

    /// Completes once the node shuts down (at once if it has).
    pub(crate) async fn wait(&mut self) {
        self.0.as_mut().await;
    }
}

/// Bytes a connection read and wrote, added to the node's counters in batches: two shared atomics
/// touched by every command of every connection would bounce between cores. Whatever is left is
/// added when the tally is dropped, with its connection.
pub(crate) struct ByteTally<'a> {
    counters: &'a NodeCounters,
    input_bytes: u64,
    output_bytes: u64,
}

impl<'a> ByteTally<'a> {
    /// A batch is added to the shared counters once it holds this many bytes.
    const FLUSH_BYTES: u64 = 64 * 1024;

    pub(crate) fn new(counters: &'a NodeCounters) -> ByteTally<'a> {
        ByteTally {
            counters,
            input_bytes: 0,
            output_bytes: 0,
        }
    }

    pub(crate) fn read(&mut self, bytes: usize) {
        self.input_bytes += bytes as u64;
        self.flush_if_large();
    }

    pub(crate) fn wrote(&mut self, bytes: usize) {
        self.output_bytes += bytes as u64;
        self.flush_if_large();
    }

    fn flush_if_large(&mut self) {
        if self.input_bytes + self.output_bytes >= Self::FLUSH_BYTES {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.input_bytes > 0 {
            NodeCounters::add(
                &self.counters.net_input_bytes,
                std::mem::take(&mut self.input_bytes),
            );
        }
        if self.output_bytes > 0 {
            NodeCounters::add(
                &self.counters.net_output_bytes,
                std::mem::take(&mut self.output_bytes),
            );
        }
    }
}

impl Drop for ByteTally<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

impl NodeCounters {
    pub(crate) fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The addresses the listeners actually got (port 0 in tests becomes a real port).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BoundAddresses {
    pub(crate) client: SocketAddr,
    pub(crate) memcached_opt: Option<SocketAddr>,
    pub(crate) peer: SocketAddr,
    pub(crate) admin_opt: Option<SocketAddr>,
}

/// Shared by every task of the node.
pub(crate) struct NodeState {
    pub(crate) config: NodeConfig,
    pub(crate) addresses: BoundAddresses,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) store: Arc<Store>,
    pub(crate) router: Router,
    /// The cluster side: engine, peer links, membership.
    pub(crate) io: Arc<crate::cluster_io::ClusterIo>,
    /// Lock waiters, lease timers and connection-tied locks.
    pub(crate) locks: Arc<crate::locks::LockManager>,
    /// The memcached front end's counters and pending delayed flush.
    pub(crate) memcached: Arc<crate::memcached::NodeMemcached>,
    /// The SHA1s EVALSHA answers for.
    pub(crate) scripts: crate::resp::scripting::ScriptCache,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) command_stats: Arc<CommandStats>,
    pub(crate) counters: NodeCounters,
    /// Client ids for CLIENT ID, unique for the life of the process, starting at 1.
    pub(crate) next_client_id: AtomicU64,
    pub(crate) started_at: Instant,
    /// 40 hexadecimal characters, new at every start, as Redis' `run_id`.
    pub(crate) run_id: String,
    /// Cancelled when the node starts to shut down: listeners stop accepting.
    pub(crate) shutdown: CancellationToken,
    /// Set once the node stops serving (shutting down); `/health` then says so.
    pub(crate) stopping: AtomicBool,
}

impl NodeState {
    /// A fresh client id.
    pub(crate) fn next_client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Commands executed since start (RESP and memcached), from the sharded command statistics.
    pub(crate) fn commands_processed(&self) -> u64 {
        self.command_stats.snapshot().total().count()
    }

    /// Milliseconds since the Unix epoch, from the node's clock.
    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
}

/// The names the command statistics count by: every row of the RESP command table (a container
/// command such as CLIENT counts as one), then the memcached commands. Built once per process.
pub(crate) fn command_stat_names() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| {
        resp::table::COMMAND_TABLE
            .iter()
            .map(|spec| spec.name)
            .chain(crate::memcached::COMMAND_NAMES.iter().copied())
            .collect()
    })
}

/// The statistics index of the memcached command at `memcached_index` of
/// `memcached::COMMAND_NAMES`: the memcached commands follow the RESP ones.
pub(crate) fn memcached_command_index(memcached_index: usize) -> usize {
    resp::table::COMMAND_TABLE.len() + memcached_index
}

/// A random 40-hex-digit run id. Not a secret: it only has to differ between starts.
pub(crate) fn new_run_id() -> String {
    let mut bytes = [0u8; 20];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the operating system's random source is available");
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
