//! What the tests of in-process nodes share: nodes on loopback (on a manual or the system clock,
//! or on a runtime of their own so a test can crash one), `redis` crate connections without a
//! response timeout (a waiting `SCD.LOCK` answers when it is granted), `GET` on the admin port and
//! a `/metrics` sample read as a number, and for the lock tests `SCD.LOCKINFO` read as a struct.

#![allow(dead_code)] // Each test file uses a different part of this module.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use node::clock::{Clock, ManualClock, SystemClock};
use node::config::NodeConfig;
use redis::aio::MultiplexedConnection;
use redis::{FromRedisValue, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// How long a test waits for a condition before failing.
pub const DEADLINE: Duration = Duration::from_secs(20);
/// The manual clock's start, in Unix milliseconds.
pub const START_MS: u64 = 1_700_000_000_000;

/// The name of a node started without one; enough where a test runs a single node.
const DEFAULT_NAME: &str = "locks-test";

/// A node running in the test's runtime, stopped (a planned leave) when dropped.
pub struct TestNode {
    pub client_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    /// `None` unless `configure` gave the node an admin address (the default has none).
    pub admin_addr_opt: Option<SocketAddr>,
    pub clock_opt: Option<ManualClock>,
    shutdown_opt: Option<oneshot::Sender<()>>,
    task_opt: Option<tokio::task::JoinHandle<()>>,
}

fn loopback_config(name: &str) -> NodeConfig {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = NodeConfig::with_name(name);
    config.client_addr = loopback;
    config.peer_addr = loopback;
    config.admin_addr_opt = None;
    config.num_partitions = 64;
    config
}

/// The loopback configuration of a node called `name`, changed by `configure`, and its listeners,
/// bound before the node starts so that the test knows the ports the system chose.
fn bind(name: &str, configure: impl FnOnce(&mut NodeConfig)) -> (NodeConfig, node::Listeners) {
    let mut config = loopback_config(name);
    configure(&mut config);
    let listeners = node::Listeners::bind(&config).expect("loopback ports bind");
    (config, listeners)
}

impl TestNode {
    /// A node on a manual clock reading `START_MS`.
    pub async fn start_paused(configure: impl FnOnce(&mut NodeConfig)) -> TestNode {
        Self::start_with(DEFAULT_NAME, configure, Some(ManualClock::new(START_MS))).await
    }

    /// A node on the system clock (lease timers fire in real time).
    pub async fn start(configure: impl FnOnce(&mut NodeConfig)) -> TestNode {
        Self::start_with(DEFAULT_NAME, configure, None).await
    }

    /// A node called `name` on the system clock: the nodes of a cluster need names of their own,
    /// and `/cluster` and the metrics' `peer` label show them.
    pub async fn start_named(name: &str, configure: impl FnOnce(&mut NodeConfig)) -> TestNode {
        Self::start_with(name, configure, None).await
    }

    async fn start_with(
        name: &str,
        configure: impl FnOnce(&mut NodeConfig),
        clock_opt: Option<ManualClock>,
    ) -> TestNode {
        let (config, listeners) = bind(name, configure);
        let client_addr = listeners.client_addr();
        let peer_addr = listeners.peer_addr();
        let admin_addr_opt = listeners.admin_addr();
        let clock: Arc<dyn Clock> = match &clock_opt {
            Some(clock) => Arc::new(clock.clone()),
            None => Arc::new(SystemClock),
        };
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = shutdown_rx.await;
            };
            node::run_with_clock(config, listeners, clock, shutdown)
                .await
                .expect("the node runs");
        });
        TestNode {
            client_addr,
            peer_addr,
            admin_addr_opt,
            clock_opt,
            shutdown_opt: Some(shutdown_tx),
            task_opt: Some(task),
        }
    }

    /// Stops the node (a planned leave) and waits until it has stopped, at most `DEADLINE`.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown_opt.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task_opt.take() {
            tokio::time::timeout(DEADLINE, task)
                .await
                .expect("the node stops in time")
                .expect("the node's task");
        }
    }

    pub async fn connect(&self) -> MultiplexedConnection {
        connect(self.client_addr).await
    }

    pub fn advance_ms(&self, milliseconds: u64) {
        self.clock_opt
            .as_ref()
            .expect("a node on a manual clock")
            .advance_ms(milliseconds);
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown_opt.take() {
            let _ = shutdown.send(());
        }
    }
}

/// A node on a runtime and a thread of its own, so that a test can crash it: `crash` drops the
/// runtime without the planned leave, as `kill -9` would (its links close, its heartbeats stop).
pub struct CrashableNode {
    pub client_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    /// `None` unless `configure` gave the node an admin address (the default has none).
    pub admin_addr_opt: Option<SocketAddr>,
    crash_opt: Option<oneshot::Sender<()>>,
    thread_opt: Option<std::thread::JoinHandle<()>>,
}

impl CrashableNode {
    pub fn start(name: &str, configure: impl FnOnce(&mut NodeConfig)) -> CrashableNode {
        let (config, listeners) = bind(name, configure);
        let client_addr = listeners.client_addr();
        let peer_addr = listeners.peer_addr();
        let admin_addr_opt = listeners.admin_addr();
        let (crash_tx, crash_rx) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let never = std::future::pending::<()>();
                tokio::select! {
                    result = node::run(config, listeners, never) => {
                        result.expect("the node runs");
                    }
                    _ = crash_rx => {}
                }
            });
            // Every task is dropped where it stands: no leave, no goodbye.
            runtime.shutdown_background();
        });
        CrashableNode {
            client_addr,
            peer_addr,
            admin_addr_opt,
            crash_opt: Some(crash_tx),
            thread_opt: Some(thread),
        }
    }

    pub fn crash(&mut self) {
        if let Some(crash) = self.crash_opt.take() {
            let _ = crash.send(());
        }
        if let Some(thread) = self.thread_opt.take() {
            thread.join().expect("the node's thread ends");
        }
    }
}

impl Drop for CrashableNode {
    fn drop(&mut self) {
        self.crash();
    }
}

/// A connection without the `redis` crate's response timeout: a waiting lock answers late.
pub async fn connect(address: SocketAddr) -> MultiplexedConnection {
    let client = redis::Client::open(format!("redis://{address}/")).expect("a redis URL");
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("a connection to the in-process node")
}

/// `GET path` over HTTP/1.0 on a node's admin port: the whole answer, status line and headers
/// included.
pub async fn http_get(address: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("admin port answers");
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .expect("request sent");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response read");
    response
}

/// The value of the sample line of `metrics` whose series (name and labels) is exactly `series`,
/// if any.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(name, _)| *name == series)
        .and_then(|(_, value)| value.parse().ok())
}

/// Runs one command; a Redis error becomes `Err(its line)`.
pub async fn try_run<T: FromRedisValue>(
    connection: &mut MultiplexedConnection,
    args: &[&str],
) -> Result<T, String> {
    let (name, rest) = args.split_first().expect("a command name");
    let mut command = redis::cmd(name);
    for arg in rest {
        command.arg(*arg);
    }
    command.query_async(connection).await.map_err(|error| {
        // "FENCED: token …" as the crate prints it; put the line back as the server sent it.
        match (error.code(), error.detail()) {
            (Some(code), Some(detail)) => format!("{code} {detail}"),
            _ => error.to_string(),
        }
    })
}

/// Runs one command and panics on an error reply.
pub async fn run<T: FromRedisValue>(connection: &mut MultiplexedConnection, args: &[&str]) -> T {
    try_run(connection, args)
        .await
        .unwrap_or_else(|error| panic!("{args:?}: {error}"))
}

/// `SCD.LOCKINFO` as a struct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockInfo {
    pub owner: String,
    pub token: i64,
    pub remaining_ms: i64,
    pub mode: String,
    pub waiters: i64,
}

pub async fn lock_info(connection: &mut MultiplexedConnection, key: &str) -> Option<LockInfo> {
    let value: Value = run(connection, &["SCD.LOCKINFO", key]).await;
    match value {
        Value::Nil => None,
        Value::Array(items) => {
            let text = |value: &Value| String::from_redis_value(value.clone()).expect("text");
            let number = |value: &Value| i64::from_redis_value(value.clone()).expect("integer");
            Some(LockInfo {
                owner: text(&items[0]),
                token: number(&items[1]),
                remaining_ms: number(&items[2]),
                mode: text(&items[3]),
                waiters: number(&items[4]),
            })
        }
        other => panic!("SCD.LOCKINFO answered {other:?}"),
    }
}

/// Waits until `condition` holds, checking it again and again until `DEADLINE`.
pub async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `key`'s lock has `waiters` requests queued.
pub async fn wait_for_waiters(connection: &mut MultiplexedConnection, key: &str, waiters: i64) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let info = lock_info(connection, key).await;
        if info.as_ref().is_some_and(|info| info.waiters == waiters) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{key} never had {waiters} waiters: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
