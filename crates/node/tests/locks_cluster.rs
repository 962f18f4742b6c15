//! Locks across two in-process nodes on the system clock: a waiter on the node that is not the
//! primary queues through its relay and is granted when the holder releases; a release relayed
//! from the other node wakes a waiter on the primary; a held lock and its waiter survive the
//! crash of the primary (the backup is promoted with the lock, and the waiter's node queues it
//! there); `SCD.STALE` marks a key after a delayed-write failover.

mod support;

use std::time::Instant;

use node::config::{NodeConfig, WriteMode};
use redis::aio::MultiplexedConnection;
use support::{CrashableNode, TestNode, connect, lock_info, run, wait_for_waiters, wait_until};

const NUM_PARTITIONS: u32 = 64;

/// A key whose partition's target primary is `primary` rather than `other`: with `primary`
/// started first (it claims every partition) and `other` joining, `primary` stays its primary.
fn key_with_primary(prefix: &str, primary: &str, other: &str) -> String {
    (0..)
        .map(|index| format!("{prefix}:{index}"))
        .find(|key| {
            let partition = store::partition_of(key.as_bytes(), NUM_PARTITIONS);
            cluster::table::rendezvous_score(primary, partition)
                > cluster::table::rendezvous_score(other, partition)
        })
        .expect("some key has each node as target primary")
}

/// Waits until a write of a key in `key`'s partition (same hash tag) through `writer` is on
/// `replica`'s store: the two nodes formed a cluster and `replica` backs that partition up.
async fn wait_until_replicated(
    writer: &mut MultiplexedConnection,
    replica: &mut MultiplexedConnection,
    key: &str,
) {
    let probe = format!("{{{key}}}:probe");
    let _: () = run(writer, &["SET", &probe, "x"]).await;
    wait_until("the probe is replicated to the other node", || {
        let mut replica = replica.clone();
        async move {
            let info: String = run(&mut replica, &["INFO", "keyspace"]).await;
            info.contains("db0:keys=1,")
        }
    })
    .await;
}

fn config(name: &str, write_mode: WriteMode) -> impl FnOnce(&mut NodeConfig) + '_ {
    move |config| {
        config.name = name.to_string();
        config.num_partitions = NUM_PARTITIONS;
        config.write_mode = write_mode;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_on_the_other_node_is_granted_when_the_holder_on_the_primary_releases() {
    let first = TestNode::start(config("first", WriteMode::Through)).await;
    let join = first.peer_addr;
    let second = TestNode::start(|node_config| {
        config("second", WriteMode::Through)(node_config);
        node_config.join = vec![join];
    })
    .await;
    let key = key_with_primary("sess", "first", "second");
    let mut on_first = first.connect().await;
    let mut on_second = second.connect().await;
    wait_until_replicated(&mut on_first, &mut on_second, &key).await;

    let token: i64 = run(
        &mut on_first,
        &["SCD.LOCK", &key, "60000", "OWNER", "holder"],
    )
    .await;
    let waiter = {
        let address = second.client_addr;
        let key = key.clone();
        tokio::spawn(async move {
            let mut connection = connect(address).await;
            let token: Option<i64> = run(
                &mut connection,
                &[
                    "SCD.LOCK", &key, "60000", "WAIT", "20000", "OWNER", "remote",
                ],
            )
            .await;
            (token, Instant::now())
        })
    };
    // Queued on the primary, seen from either node.
    wait_for_waiters(&mut on_second, &key, 1).await;
    let released_at = Instant::now();
    let released: i64 = run(&mut on_first, &["SCD.UNLOCK", &key, &token.to_string()]).await;
    assert_eq!(released, 1);
    let (granted, granted_at) = waiter.await.expect("the waiter task");
    let granted = granted.expect("granted on release");
    println!(
        "a waiter on the non-primary node was granted {:?} after the release was sent",
        granted_at.duration_since(released_at)
    );
    assert!(granted > token);
    let info = lock_info(&mut on_first, &key).await.expect("held");
    assert_eq!((info.owner.as_str(), info.token), ("remote", granted));

    // The other way round: a waiter on the primary, woken by a release relayed from the other
    // node.
    let waiter = {
        let address = first.client_addr;
        let key = key.clone();
        tokio::spawn(async move {
            let mut connection = connect(address).await;
            let token: Option<i64> = run(
                &mut connection,
                &["SCD.LOCK", &key, "60000", "WAIT", "20000", "OWNER", "local"],
            )
            .await;
            token
        })
    };
    wait_for_waiters(&mut on_first, &key, 1).await;
    let released: i64 = run(&mut on_second, &["SCD.UNLOCK", &key, &granted.to_string()]).await;
    assert_eq!(released, 1);
    let last = waiter.await.expect("the waiter task").expect("granted");
    assert!(last > granted);
    // A write guarded by the remote node's old token is fenced, wherever it is sent.
    let fenced: Result<(), String> = support::try_run(
        &mut on_second,
        &["SCD.SET", &key, "late", &granted.to_string()],
    )
    .await;
    assert_eq!(
        fenced,
        Err(format!(
            "FENCED token {granted} is stale: the lock is held with newer token {last}"
        ))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_and_its_waiter_survive_the_crash_of_the_primary() {
    let mut first = CrashableNode::start("first", config("first", WriteMode::Through));
    let join = first.peer_addr;
    let second = TestNode::start(|node_config| {
        config("second", WriteMode::Through)(node_config);
        node_config.join = vec![join];
    })
    .await;
    let key = key_with_primary("sess", "first", "second");
    let mut on_first = connect(first.client_addr).await;
    let mut on_second = second.connect().await;
    wait_until_replicated(&mut on_first, &mut on_second, &key).await;

    // A lease long enough to outlive the failover, short enough for the test.
    let token: i64 = run(
        &mut on_first,
        &["SCD.LOCK", &key, "3000", "OWNER", "holder"],
    )
    .await;
    let waiter = {
        let address = second.client_addr;
        let key = key.clone();
        tokio::spawn(async move {
            let mut connection = connect(address).await;
            let token: Option<i64> = run(
                &mut connection,
                &[
                    "SCD.LOCK", &key, "60000", "WAIT", "20000", "OWNER", "waiter",
                ],
            )
            .await;
            (token, Instant::now())
        })
    };
    wait_for_waiters(&mut on_second, &key, 1).await;
    let crashed_at = Instant::now();
    first.crash();
    // The promoted backup holds the lock with the same token: the failover freed nothing.
    let info = lock_info(&mut on_second, &key).await.expect("still held");
    assert_eq!((info.owner.as_str(), info.token), ("holder", token));
    // The waiter queued again on the new primary and gets the lock when the lease runs out.
    let (granted, granted_at) = waiter.await.expect("the waiter task");
    let granted = granted.expect("granted after the lease ran out");
    println!(
        "after the primary crashed, the waiter was granted {:?} later (the 3 s lease ran out)",
        granted_at.duration_since(crashed_at)
    );
    assert!(granted > token, "tokens grow across the failover");
    let info = lock_info(&mut on_second, &key).await.expect("held");
    assert_eq!(info.owner, "waiter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scd_stale_marks_a_key_whose_primary_failed_in_delayed_write_until_it_is_written() {
    let mut first = CrashableNode::start("first", config("first", WriteMode::Delayed));
    let join = first.peer_addr;
    let second = TestNode::start(|node_config| {
        config("second", WriteMode::Delayed)(node_config);
        node_config.join = vec![join];
    })
    .await;
    let key = key_with_primary("sess", "first", "second");
    let mut on_first = connect(first.client_addr).await;
    let mut on_second = second.connect().await;
    wait_until_replicated(&mut on_first, &mut on_second, &key).await;
    let _: () = run(&mut on_first, &["SET", &key, "before"]).await;
    let not_yet: i64 = run(&mut on_first, &["SCD.STALE", &key]).await;
    assert_eq!(not_yet, 0);
    // The value reached the backup (replication is prompt); its primary then dies.
    wait_until("the write reached the backup", || {
        let mut on_second = on_second.clone();
        let key = key.clone();
        async move {
            let info: String = run(&mut on_second, &["INFO", "keyspace"]).await;
            let value: Option<String> = run(&mut on_second, &["GET", &key]).await;
            info.contains("db0:keys=2,") && value.as_deref() == Some("before")
        }
    })
    .await;
    first.crash();
    // The survivor cannot know whether later writes were lost: the key is marked.
    let stale: i64 = run(&mut on_second, &["SCD.STALE", &key]).await;
    assert_eq!(stale, 1);
    let missing: i64 = run(&mut on_second, &["SCD.STALE", "never-written"]).await;
    assert_eq!(missing, 0);
    let _: () = run(&mut on_second, &["SET", &key, "after"]).await;
    let rewritten: i64 = run(&mut on_second, &["SCD.STALE", &key]).await;
    assert_eq!(rewritten, 0);
}
