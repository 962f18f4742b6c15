//! The cluster metrics and `/cluster` of in-process nodes on loopback: a partition handoff shows
//! up in `/metrics` as a sample of the `scd_handoff_duration_seconds` histogram; `/cluster` shows
//! primaries and backups per node and the replication lag per peer, and the crash of a node
//! shows as promotions and under-replicated partitions.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use node::clock::SystemClock;
use node::config::NodeConfig;
use node::{Listeners, run_with_clock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a test waits for a condition before failing.
const DEADLINE: Duration = Duration::from_secs(30);
/// The partition count of these nodes.
const PARTITIONS: u64 = 64;

fn loopback_config(name: &str, join: Vec<SocketAddr>) -> NodeConfig {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = NodeConfig::with_name(name);
    config.client_addr = loopback;
    config.peer_addr = loopback;
    config.admin_addr_opt = Some(loopback);
    config.num_partitions = PARTITIONS as u32;
    config.join = join;
    config
}

/// Starts a node on loopback ports chosen by the system, running until the returned sender is
/// dropped; returns its peer and admin addresses.
async fn start(
    name: &str,
    join: Vec<SocketAddr>,
) -> (SocketAddr, SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let config = loopback_config(name, join);
    let listeners = Listeners::bind(&config).expect("loopback ports bind");
    let peer_addr = listeners.peer_addr();
    let admin_addr = listeners.admin_addr().expect("an admin listener");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        run_with_clock(config, listeners, Arc::new(SystemClock), async move {
            let _ = stopped.await;
        })
        .await
        .expect("the node runs");
    });
    (peer_addr, admin_addr, stop)
}

/// A node on a runtime and a thread of its own: dropping it drops the runtime without the planned
/// leave, as `kill -9` would (its links close, its heartbeats stop).
struct CrashableNode {
    crash_opt: Option<tokio::sync::oneshot::Sender<()>>,
    thread_opt: Option<std::thread::JoinHandle<()>>,
}

impl CrashableNode {
    fn start(name: &str, join: Vec<SocketAddr>) -> CrashableNode {
        let config = loopback_config(name, join);
        let listeners = Listeners::bind(&config).expect("loopback ports bind");
        let (crash_tx, crash_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                tokio::select! {
                    result = node::run(config, listeners, std::future::pending::<()>()) => {
                        result.expect("the node runs");
                    }
                    _ = crash_rx => {}
                }
            });
            runtime.shutdown_background();
        });
        CrashableNode {
            crash_opt: Some(crash_tx),
            thread_opt: Some(thread),
        }
    }

    fn crash(&mut self) {
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

/// `GET /cluster` as JSON.
async fn cluster_view(admin: SocketAddr) -> serde_json::Value {
    let response = http_get(admin, "/cluster").await;
    let (_, body) = response.split_once("\r\n\r\n").expect("an HTTP answer");
    serde_json::from_str(body).expect("/cluster answers JSON")
}

/// The entry of `name` in a `/cluster` answer.
fn node_entry<'a>(view: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    view["nodes"]
        .as_array()?
        .iter()
        .find(|node| node["name"] == name)
}

async fn http_get(address: SocketAddr, path: &str) -> String {
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

/// The value of the sample line of `metrics` whose series is exactly `series`, if any.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(name, _)| *name == series)
        .and_then(|(_, value)| value.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_handoff_to_a_joining_node_is_a_sample_of_the_handoff_duration_histogram() {
    let (first_peer, first_admin, _stop_first) = start("first", Vec::new()).await;
    let (_, _, _stop_second) = start("second", vec![first_peer]).await;

    // The first node owned every partition; the second takes its share by handoffs, which the
    // first counts as the old primary. Counter and histogram are published once a second.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let metrics = http_get(first_admin, "/metrics").await;
        let handoffs = sample(&metrics, "scd_handoffs_total").unwrap_or(0.0);
        let samples = sample(&metrics, "scd_handoff_duration_seconds_count");
        let largest_bucket = sample(&metrics, "scd_handoff_duration_seconds_bucket{le=\"+Inf\"}");
        let sum = sample(&metrics, "scd_handoff_duration_seconds_sum");
        if handoffs > 0.0 && samples == Some(handoffs) {
            assert_eq!(largest_bucket, samples, "+Inf bucket against _count");
            let sum = sum.expect("a _sum sample");
            // No handoff takes longer than the test waited for it.
            assert!(
                (0.0..=handoffs * DEADLINE.as_secs_f64()).contains(&sum),
                "sum {sum} for {handoffs} handoffs"
            );
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no handoff sample: handoffs {handoffs}, histogram count {samples:?}\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_shows_ownership_and_lag_per_node_and_a_crash_shows_as_promotions() {
    let (first_peer, first_admin, _stop_first) = start("first", Vec::new()).await;
    let mut second = CrashableNode::start("second", vec![first_peer]);

    // Settled: every partition has a primary and one backup, split between the two nodes, and
    // the first node measures the lag of its link to the second.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let view = cluster_view(first_admin).await;
        let owned = |field: &str| -> Option<Vec<u64>> {
            ["first", "second"]
                .iter()
                .map(|name| node_entry(&view, name)?[field].as_u64())
                .collect()
        };
        let settled = view["handoffs_in_progress"] == 0
            && view["snapshots_in_progress"] == 0
            && view["under_replicated_partitions"] == 0
            && owned("primaries").is_some_and(|primaries| {
                primaries.iter().sum::<u64>() == PARTITIONS && !primaries.contains(&0)
            })
            && owned("backups").is_some_and(|backups| backups.iter().sum::<u64>() == PARTITIONS);
        if settled {
            let first = node_entry(&view, "first").expect("first listed");
            let second = node_entry(&view, "second").expect("second listed");
            assert_eq!(first["self"], true, "{view}");
            assert!(first["replication_lag_ms"].is_null(), "{view}");
            assert!(second["replication_lag_ms"].is_u64(), "{view}");
            assert_eq!(
                view["under_replicated_partitions_shown"],
                serde_json::json!([])
            );
            assert!(
                view["since_start"]["snapshots_sent"].as_u64() > Some(0),
                "{view}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the two nodes did not settle: {view}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let metrics = http_get(first_admin, "/metrics").await;
        let lag = sample(&metrics, "scd_replication_lag_seconds{peer=\"second\"}");
        let snapshots = sample(&metrics, "scd_snapshots_sent_total").unwrap_or(0.0);
        if lag.is_some() && snapshots > 0.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no lag gauge or snapshot count:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The second node crashes: the first promotes itself for every partition the second was
    // primary of, and counts it in /cluster and /metrics.
    second.crash();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let view = cluster_view(first_admin).await;
        let metrics = http_get(first_admin, "/metrics").await;
        let promotions = view["since_start"]["promotions"].as_u64().unwrap_or(0);
        let promotions_metric = sample(&metrics, "scd_promotions_total").unwrap_or(0.0);
        let second_state = node_entry(&view, "second").map(|entry| entry["state"].clone());
        let first_primaries =
            node_entry(&view, "first").and_then(|entry| entry["primaries"].as_u64());
        if promotions > 0
            && promotions_metric == promotions as f64
            && second_state.is_some_and(|state| state != "alive")
            && first_primaries == Some(PARTITIONS)
        {
            // Alone, the first node wants no backup: nothing is under-replicated.
            assert_eq!(view["under_replicated_partitions"], 0, "{view}");
            assert!(
                sample(&metrics, "scd_replication_lag_seconds{peer=\"second\"}").is_none(),
                "a gone peer's lag is still exported:\n{metrics}"
            );
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no promotion shown: promotions {promotions}, metric {promotions_metric}: {view}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
