//! `--allow` covers the heartbeat and peer ports too: a node does not even decode heartbeats from
//! hosts outside its list, counts them, and such a host never enters its view.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use node::clock::SystemClock;
use node::config::NodeConfig;
use node::{Listeners, run_with_clock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A node on loopback ports chosen by the system, running until the returned sender is dropped.
async fn start(mut config: NodeConfig) -> (Listeners2, tokio::sync::oneshot::Sender<()>) {
    config.client_addr = "127.0.0.1:0".parse().unwrap();
    let listeners = Listeners::bind(&config).expect("binds");
    let addresses = Listeners2 {
        peer: listeners.peer_addr(),
        admin_opt: listeners.admin_addr(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        run_with_clock(config, listeners, Arc::new(SystemClock), async move {
            let _ = stopped.await;
        })
        .await
        .expect("the node runs");
    });
    (addresses, stop)
}

struct Listeners2 {
    peer: SocketAddr,
    admin_opt: Option<SocketAddr>,
}

async fn http_get(address: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("admin port answers");
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// The value of the first sample line of `metrics` that starts with `prefix`.
fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_from_hosts_outside_allow_are_dropped_and_counted() {
    // The guarded node allows only ::1, so its admin port (on ::1) can be asked, while the
    // joining node's heartbeats come from 127.0.0.1.
    let mut guarded = NodeConfig::with_name("guarded");
    guarded.peer_addr = "127.0.0.1:0".parse().unwrap();
    guarded.admin_addr_opt = Some("[::1]:0".parse().unwrap());
    guarded.allow = vec!["::1/128".parse().unwrap()];
    let (guarded_addresses, _stop_guarded) = start(guarded).await;

    let mut joiner = NodeConfig::with_name("joiner");
    joiner.peer_addr = "127.0.0.1:0".parse().unwrap();
    joiner.admin_addr_opt = Some("127.0.0.1:0".parse().unwrap());
    joiner.join = vec![guarded_addresses.peer];
    let (joiner_addresses, _stop_joiner) = start(joiner).await;

    let guarded_admin = guarded_addresses.admin_opt.unwrap();
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
        (joiner_addresses.admin_opt.unwrap(), "guarded"),
    ] {
        let cluster = http_get(admin, "/cluster").await;
        assert!(
            !cluster.contains(&format!("\"name\":\"{other}\"")),
            "{other} entered a view:\n{cluster}"
        );
    }
}
