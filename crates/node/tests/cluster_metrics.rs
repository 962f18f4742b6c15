//! The cluster metrics and `/cluster` of in-process nodes on loopback: a partition handoff shows
//! up in `/metrics` as a sample of the `scd_handoff_duration_seconds` histogram; `/cluster` shows
//! primaries and backups per node and the replication lag per peer, and the crash of a node
//! shows as promotions and under-replicated partitions.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use node::config::NodeConfig;
use support::{CrashableNode, TestNode, http_get, sample};

/// How long a test waits for a condition before failing.
const DEADLINE: Duration = Duration::from_secs(30);
/// The partition count of these nodes.
const PARTITIONS: u64 = 64;

/// The configuration of these nodes: an admin port to read, and `join` to find the cluster by.
fn with_admin_joining(join: Vec<SocketAddr>) -> impl FnOnce(&mut NodeConfig) {
    move |config| {
        config.admin_addr_opt = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        config.num_partitions = PARTITIONS as u32;
        config.join = join;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_handoff_to_a_joining_node_is_a_sample_of_the_handoff_duration_histogram() {
    let first = TestNode::start_named("first", with_admin_joining(Vec::new())).await;
    let _second = TestNode::start_named("second", with_admin_joining(vec![first.peer_addr])).await;
    let first_admin = first.admin_addr_opt.expect("an admin listener");

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
    let first = TestNode::start_named("first", with_admin_joining(Vec::new())).await;
    let first_admin = first.admin_addr_opt.expect("an admin listener");
    let mut second = CrashableNode::start("second", with_admin_joining(vec![first.peer_addr]));

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
            // The dashboard's partition map: each partition's primary by name, and its
            // backups, agreeing with the per-node counts.
            let primaries = view["partition_primaries"].as_array().expect("a list");
            let backups = view["partition_backups"].as_array().expect("a list");
            assert_eq!(primaries.len() as u64, PARTITIONS);
            assert!(backups.iter().all(|count| count == 1), "{view}");
            for name in ["first", "second"] {
                let drawn = primaries.iter().filter(|primary| **primary == name).count();
                assert_eq!(
                    Some(drawn as u64),
                    node_entry(&view, name).and_then(|node| node["primaries"].as_u64()),
                    "{view}"
                );
            }
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
            && sample(&metrics, "scd_partitions_short_of_backups") == Some(PARTITIONS as f64)
        {
            // Alone, the first node can make no backup: nothing is under-replicated, but every
            // partition is short of its backup.
            assert_eq!(view["under_replicated_partitions"], 0, "{view}");
            assert_eq!(view["partitions_short_of_backups"], PARTITIONS, "{view}");
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
