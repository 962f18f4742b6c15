//! RENAME across partitions on a two-node cluster of in-process nodes, while another client keeps
//! writing the old name: the outcome is always one a single Redis could give, RENAME taking
//! effect at one instant. A write of the old name acknowledged after the value was copied is
//! never dropped.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use node::config::NodeConfig;
use redis::aio::MultiplexedConnection;
use support::TestNode;

/// How long the test waits for the cluster before failing.
const DEADLINE: Duration = Duration::from_secs(30);
/// Renames raced against a writer; each has a window of a few round trips.
const ROUNDS: u64 = 300;
const PARTITIONS: u32 = 64;

/// The configuration of these nodes: `PARTITIONS`, which `names` counts on, and `join`.
fn joining(join: Vec<SocketAddr>) -> impl FnOnce(&mut NodeConfig) {
    move |config| {
        config.num_partitions = PARTITIONS;
        config.join = join;
    }
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
    let first = TestNode::start_named("first", joining(Vec::new())).await;
    let second = TestNode::start_named("second", joining(vec![first.peer_addr])).await;
    let mut renamer = second.connect().await;
    let mut writer = first.connect().await;
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
