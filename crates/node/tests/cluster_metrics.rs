//! The cluster metrics of in-process nodes on loopback: a partition handoff shows up in
//! `/metrics` as a sample of the `scd_handoff_duration_seconds` histogram.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use node::clock::SystemClock;
use node::config::NodeConfig;
use node::{Listeners, run_with_clock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a test waits for a condition before failing.
const DEADLINE: Duration = Duration::from_secs(30);

/// Starts a node on loopback ports chosen by the system, running until the returned sender is
/// dropped; returns its peer and admin addresses.
async fn start(
    name: &str,
    join: Vec<SocketAddr>,
) -> (SocketAddr, SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = NodeConfig::with_name(name);
    config.client_addr = loopback;
    config.peer_addr = loopback;
    config.admin_addr_opt = Some(loopback);
    config.num_partitions = 64;
    config.join = join;
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
