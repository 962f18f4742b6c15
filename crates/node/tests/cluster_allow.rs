//! `--allow` covers the heartbeat and peer ports too: a node does not even decode heartbeats from
//! hosts outside its list, counts them, and such a host never enters its view.

mod support;

use std::time::Duration;

use support::{TestNode, http_get, sample};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_from_hosts_outside_allow_are_dropped_and_counted() {
    // The guarded node allows only ::1, so its admin port (on ::1) can be asked, while the
    // joining node's heartbeats come from 127.0.0.1.
    let guarded = TestNode::start_named("guarded", |config| {
        config.admin_addr_opt = Some("[::1]:0".parse().unwrap());
        config.allow = vec!["::1/128".parse().unwrap()];
    })
    .await;
    let joiner = TestNode::start_named("joiner", |config| {
        config.admin_addr_opt = Some("127.0.0.1:0".parse().unwrap());
        config.join = vec![guarded.peer_addr];
    })
    .await;

    let guarded_admin = guarded.admin_addr_opt.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = http_get(guarded_admin, "/metrics").await;
        let dropped = sample(
            &metrics,
            "scd_heartbeats_rejected_total{reason=\"not_allowed\"}",
        )
        .unwrap_or(0.0);
        if dropped >= 5.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no heartbeat was counted as not allowed:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Normally a cluster forms within a few heartbeats; a second later still nobody sees the other.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (admin, other) in [
        (guarded_admin, "joiner"),
        (joiner.admin_addr_opt.unwrap(), "guarded"),
    ] {
        let cluster = http_get(admin, "/cluster").await;
        assert!(
            !cluster.contains(&format!("\"name\":\"{other}\"")),
            "{other} entered a view:\n{cluster}"
        );
    }
}
