//! RENAME across partitions on a two-node cluster of in-process nodes, while another client keeps
//! writing the old name: the outcome is always one a single Redis could give, RENAME taking
//! effect at one instant. A write of the old name acknowledged after the value was copied is
//! never dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use node::clock::SystemClock;
use node::config::NodeConfig;
use node::{Listeners, run_with_clock};
use redis::aio::MultiplexedConnection;

/// How long the test waits for the cluster before failing.
const DEADLINE: Duration = Duration::from_secs(30);
/// Renames raced against a writer; each has a window of a few round trips.
const ROUNDS: u64 = 300;
const PARTITIONS: u32 = 64;

/// Starts a node on loopback ports chosen by the system, running until the returned sender is
/// dropped; returns its client and peer addresses.
async fn start(
    name: &str,
    join: Vec<SocketAddr>,
) -> (SocketAddr, SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = NodeConfig::with_name(name);
    config.client_addr = loopback;
    config.peer_addr = loopback;
    config.admin_addr_opt = None;
    config.num_partitions = PARTITIONS;
    config.join = join;
    let listeners = Listeners::bind(&config).expect("loopback ports bind");
    let client_addr = listeners.client_addr();
    let peer_addr = listeners.peer_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        run_with_clock(config, listeners, Arc::new(SystemClock), async move {
            let _ = stopped.await;
        })
        .await
        .expect("the node runs");
    });
    (client_addr, peer_addr, stop)
}

async fn connect(address: SocketAddr) -> MultiplexedConnection {
    redis::Client::open(format!("redis://{address}/"))
        .expect("a redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("a connection to the in-process node")
}

async fn get(connection: &mut MultiplexedConnection, key: &str) -> Option<u64> {
    let value: Option<String> = redis::cmd("GET")
        .arg(key)
        .query_async(connection)
        .await
        .expect("GET answers");
    value.map(|value| value.parse().expect("a number"))
}

/// Two names of the round in different partitions.
fn names(round: u64) -> (String, String) {
    let from = format!("rename:{round}:from");
    let to = (0..)
        .map(|salt| format!("rename:{round}:to:{salt}"))
        .find(|to| {
            store::partition_of(to.as_bytes(), PARTITIONS)
                != store::partition_of(from.as_bytes(), PARTITIONS)
        })
        .expect("a name in another partition");
    (from, to)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_across_partitions_never_drops_a_write_of_the_old_name_that_came_after_the_copy() {
    let (first_client, first_peer, _stop_first) = start("first", Vec::new()).await;
    let (second_client, _, _stop_second) = start("second", vec![first_peer]).await;
    let mut renamer = connect(second_client).await;
    let mut writer = connect(first_client).await;
    // Both nodes serve: a write through each is read back through the other.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let _: () = redis::cmd("SET")
            .arg("ready")
            .arg(1)
            .query_async(&mut renamer)
            .await
            .expect("SET through the second node");
        if get(&mut writer, "ready").await == Some(1) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no cluster formed");
    }

    let mut moved_while_writing = 0;
    for round in 0..ROUNDS {
        let (from, to) = names(round);
        let _: () = redis::cmd("SET")
            .arg(&from)
            .arg(0)
            .query_async(&mut writer)
            .await
            .expect("SET");
        let stop = Arc::new(AtomicBool::new(false));
        let last_acknowledged = Arc::new(AtomicU64::new(0));
        let writing = tokio::spawn({
            let (stop, last_acknowledged) = (Arc::clone(&stop), Arc::clone(&last_acknowledged));
            let (mut writer, from) = (writer.clone(), from.clone());
            async move {
                for value in 1.. {
                    let _: () = redis::cmd("SET")
                        .arg(&from)
                        .arg(value)
                        .query_async(&mut writer)
                        .await
                        .expect("SET of the old name");
                    last_acknowledged.store(value, Ordering::SeqCst);
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                }
            }
        });
        // Let a few writes land first, so the rename races a writer in full swing.
        while last_acknowledged.load(Ordering::SeqCst) < 3 {
            tokio::task::yield_now().await;
        }
        let renamed: String = redis::cmd("RENAME")
            .arg(&from)
            .arg(&to)
            .query_async(&mut renamer)
            .await
            .expect("RENAME answers");
        assert_eq!(renamed, "OK");
        stop.store(true, Ordering::SeqCst);
        writing.await.expect("the writer ends");
        let last = last_acknowledged.load(Ordering::SeqCst);
        let moved = get(&mut writer, &to)
            .await
            .unwrap_or_else(|| panic!("round {round}: {to} is missing after RENAME"));
        let left = get(&mut writer, &from).await;
        // RENAME took effect between the write of `moved` and the next one: every later write
        // is on the old name, the last one last.
        let expected_left = (last > moved).then_some(last);
        assert_eq!(
            left, expected_left,
            "round {round}: RENAME moved {moved}, the last acknowledged write was {last}"
        );
        if last > moved {
            moved_while_writing += 1;
        }
    }
    eprintln!("{moved_while_writing} of {ROUNDS} renames had writes after their copy");
}
