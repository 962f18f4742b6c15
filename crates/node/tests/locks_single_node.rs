//! Native session locks on one in-process node, through the `redis` crate: acquire, refuse,
//! renew, release; FIFO waiters granted on release (timed, printed); lease expiry waking the next
//! waiter; `SESSION` locks freed when their connection drops; guarded writes refused after a
//! newer grant; the waiter bound; `SCD.STALE` on a node that never failed over.

mod support;

use std::time::{Duration, Instant};

use redis::Value;
use support::{LockInfo, TestNode, connect, lock_info, run, try_run, wait_for_waiters, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_is_granted_refused_renewed_inspected_and_released_with_its_token() {
    let node = TestNode::start_paused(|_| {}).await;
    let mut holder = node.connect().await;
    let mut other = node.connect().await;
    assert_eq!(lock_info(&mut holder, "s1").await, None);
    let token: i64 = run(&mut holder, &["SCD.LOCK", "s1", "30000", "OWNER", "w1"]).await;
    assert!(token > 0);
    // Someone else without WAIT: nil at once.
    let refused: Option<i64> = run(&mut other, &["SCD.LOCK", "s1", "30000", "OWNER", "w2"]).await;
    assert_eq!(refused, None);
    assert_eq!(
        lock_info(&mut other, "s1").await,
        Some(LockInfo {
            owner: "w1".into(),
            token,
            remaining_ms: 30_000,
            mode: "lease".into(),
            waiters: 0,
        })
    );
    node.advance_ms(10_000);
    let token_text = token.to_string();
    let renewed: i64 = run(&mut holder, &["SCD.RENEW", "s1", &token_text, "60000"]).await;
    assert_eq!(renewed, 1);
    assert_eq!(
        lock_info(&mut holder, "s1")
            .await
            .map(|info| info.remaining_ms),
        Some(60_000)
    );
    // Wrong tokens renew and release nothing.
    let bogus = (token - 1).to_string();
    let not_renewed: i64 = run(&mut other, &["SCD.RENEW", "s1", &bogus, "60000"]).await;
    let not_released: i64 = run(&mut other, &["SCD.UNLOCK", "s1", &bogus]).await;
    assert_eq!((not_renewed, not_released), (0, 0));
    // The holder re-acquiring refreshes its lease and keeps its token.
    let again: i64 = run(&mut holder, &["SCD.LOCK", "s1", "5000", "OWNER", "w1"]).await;
    assert_eq!(again, token);
    let released: i64 = run(&mut holder, &["SCD.UNLOCK", "s1", &token_text]).await;
    assert_eq!(released, 1);
    assert_eq!(lock_info(&mut holder, "s1").await, None);
    let released_twice: i64 = run(&mut holder, &["SCD.UNLOCK", "s1", &token_text]).await;
    assert_eq!(released_twice, 0);
    let next: i64 = run(&mut other, &["SCD.LOCK", "s1", "1000", "OWNER", "w2"]).await;
    assert!(next > token, "tokens grow: {next} after {token}");
    // Locks are not keys: no client database shows them.
    let keys: Vec<String> = run(&mut holder, &["KEYS", "*"]).await;
    let size: i64 = run(&mut holder, &["DBSIZE"]).await;
    assert!(keys.is_empty() && size == 0, "{keys:?} {size}");
    let _: () = run(&mut holder, &["FLUSHALL"]).await;
    assert_eq!(
        lock_info(&mut holder, "s1").await.map(|info| info.token),
        Some(next)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_with_bad_arguments_get_redis_style_errors() {
    let node = TestNode::start_paused(|_| {}).await;
    let mut client = node.connect().await;
    let cases: &[(&[&str], &str)] = &[
        (
            &["SCD.LOCK", "s1", "0"],
            "ERR invalid lease-ms in 'scd.lock' command: an integer from 1 to 86400000",
        ),
        (&["SCD.LOCK", "s1", "10", "FOREVER"], "ERR syntax error"),
        (
            &["SCD.UNLOCK", "s1"],
            "ERR wrong number of arguments for 'scd.unlock' command",
        ),
        (
            &["SCD.SET", "s1", "v", "-3"],
            "ERR invalid token in 'scd.set' command: a positive integer as SCD.LOCK returned it",
        ),
    ];
    for (args, expect) in cases {
        let error = try_run::<Value>(&mut client, args)
            .await
            .expect_err("an error reply");
        assert!(error.contains(expect), "{args:?}: {error}");
    }
}

/// Sends `SCD.LOCK key … WAIT` on a connection of its own and returns the pending answer.
fn spawn_waiter(
    node_addr: std::net::SocketAddr,
    key: &'static str,
    owner: &'static str,
    wait_ms: u64,
) -> tokio::task::JoinHandle<(Option<i64>, Instant)> {
    tokio::spawn(async move {
        let mut connection = connect(node_addr).await;
        let wait = wait_ms.to_string();
        let token: Option<i64> = run(
            &mut connection,
            &["SCD.LOCK", key, "60000", "WAIT", &wait, "OWNER", owner],
        )
        .await;
        (token, Instant::now())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_granted_in_fifo_order_each_within_a_round_trip_of_the_release() {
    let node = TestNode::start_paused(|_| {}).await;
    let mut observer = node.connect().await;
    let mut holder = node.connect().await;
    let first: i64 = run(&mut holder, &["SCD.LOCK", "s1", "60000", "OWNER", "holder"]).await;
    let owners = ["w1", "w2", "w3", "w4"];
    let mut waiters = Vec::new();
    for (index, owner) in owners.iter().enumerate() {
        waiters.push(spawn_waiter(node.client_addr, "s1", owner, 20_000));
        // Queued before the next one asks: the order is the order of arrival.
        wait_for_waiters(&mut observer, "s1", index as i64 + 1).await;
    }
    let mut previous_token = first;
    let mut releaser = holder;
    let mut release_token = first;
    for (index, waiter) in waiters.into_iter().enumerate() {
        let released_at = Instant::now();
        let released: i64 = run(
            &mut releaser,
            &["SCD.UNLOCK", "s1", &release_token.to_string()],
        )
        .await;
        assert_eq!(released, 1);
        let (token, granted_at) = waiter.await.expect("the waiter task");
        let token = token.expect("granted, not timed out");
        println!(
            "waiter {} granted {:?} after the release was sent (release round trip included)",
            owners[index],
            granted_at.duration_since(released_at)
        );
        assert!(token > previous_token, "tokens grow in grant order");
        let info = lock_info(&mut observer, "s1").await.expect("held");
        assert_eq!(info.owner, owners[index], "granted in FIFO order");
        assert_eq!(info.waiters, (owners.len() - index - 1) as i64);
        previous_token = token;
        // The next release comes from a fresh connection with the holder's token: tokens, not
        // connections, hold locks.
        releaser = node.connect().await;
        release_token = token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_whose_wait_runs_out_gets_nil_and_leaves_the_queue() {
    let node = TestNode::start(|_| {}).await;
    let mut holder = node.connect().await;
    let mut observer = node.connect().await;
    let _: i64 = run(&mut holder, &["SCD.LOCK", "s1", "60000"]).await;
    let started = Instant::now();
    let waiter = spawn_waiter(node.client_addr, "s1", "late", 200);
    let (token, answered_at) = waiter.await.expect("the waiter task");
    assert_eq!(token, None);
    assert!(answered_at.duration_since(started) >= Duration::from_millis(200));
    assert_eq!(
        lock_info(&mut observer, "s1")
            .await
            .map(|info| info.waiters),
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_runs_out_wakes_the_next_waiter() {
    let node = TestNode::start(|_| {}).await;
    let mut holder = node.connect().await;
    let mut observer = node.connect().await;
    let first: i64 = run(&mut holder, &["SCD.LOCK", "s1", "300", "OWNER", "crashed"]).await;
    let acquired_at = Instant::now();
    let waiter = spawn_waiter(node.client_addr, "s1", "next", 10_000);
    wait_for_waiters(&mut observer, "s1", 1).await;
    // The holder never releases.
    let (token, granted_at) = waiter.await.expect("the waiter task");
    let token = token.expect("granted when the lease ran out");
    println!(
        "a 300 ms lease freed the lock for its waiter {:?} after it was taken",
        granted_at.duration_since(acquired_at)
    );
    assert!(token > first);
    assert!(granted_at.duration_since(acquired_at) >= Duration::from_millis(250));
    let info = lock_info(&mut observer, "s1").await.expect("held");
    assert_eq!(info.owner, "next");
    // The expired holder's token no longer releases anything.
    let released: i64 = run(&mut holder, &["SCD.UNLOCK", "s1", &first.to_string()]).await;
    assert_eq!(released, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_lock_is_freed_when_its_connection_drops() {
    let node = TestNode::start_paused(|_| {}).await;
    let mut observer = node.connect().await;
    // Nobody waits: the lock is released as soon as the connection is gone.
    {
        let mut worker = node.connect().await;
        let token: i64 = run(&mut worker, &["SCD.LOCK", "s1", "600000", "SESSION"]).await;
        let info = lock_info(&mut observer, "s1").await.expect("held");
        assert_eq!((info.token, info.mode.as_str()), (token, "session"));
    }
    wait_until("the dropped connection's lock is released", || {
        let mut observer = observer.clone();
        async move { lock_info(&mut observer, "s1").await.is_none() }
    })
    .await;
    // A waiter is granted the moment the holder's connection drops.
    let worker = {
        let mut worker = node.connect().await;
        let _: i64 = run(&mut worker, &["SCD.LOCK", "s2", "600000", "SESSION"]).await;
        worker
    };
    let waiter = spawn_waiter(node.client_addr, "s2", "next", 20_000);
    wait_for_waiters(&mut observer, "s2", 1).await;
    let dropped_at = Instant::now();
    drop(worker);
    let (token, granted_at) = waiter.await.expect("the waiter task");
    assert!(
        token.is_some(),
        "granted when the holder's connection closed"
    );
    println!(
        "a SESSION lock was granted to its waiter {:?} after the holder's connection dropped",
        granted_at.duration_since(dropped_at)
    );
    // A lease lock (no SESSION) outlives its connection.
    {
        let mut worker = node.connect().await;
        let _: i64 = run(&mut worker, &["SCD.LOCK", "s3", "600000"]).await;
    }
    let mut probe = node.connect().await;
    let _: () = run(&mut probe, &["PING"]).await;
    assert!(lock_info(&mut observer, "s3").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guarded_write_with_an_old_token_is_refused_after_a_newer_grant() {
    let node = TestNode::start_paused(|_| {}).await;
    let mut slow = node.connect().await;
    let mut fast = node.connect().await;
    let old: i64 = run(&mut slow, &["SCD.LOCK", "sess:1", "1000"]).await;
    let old_text = old.to_string();
    let _: () = run(
        &mut slow,
        &["SCD.SET", "sess:1", "v1", &old_text, "EX", "1440"],
    )
    .await;
    // The slow worker's lease runs out; another takes the lock.
    node.advance_ms(1_001);
    let new: i64 = run(&mut fast, &["SCD.LOCK", "sess:1", "1000"]).await;
    assert!(new > old);
    let refused = try_run::<()>(&mut slow, &["SCD.SET", "sess:1", "v-late", &old_text])
        .await
        .expect_err("a write with a stale token is fenced");
    assert_eq!(
        refused,
        format!("FENCED token {old} is stale: the lock is held with newer token {new}")
    );
    let value: String = run(&mut fast, &["GET", "sess:1"]).await;
    assert_eq!(value, "v1");
    let ttl: i64 = run(&mut fast, &["TTL", "sess:1"]).await;
    assert_eq!(ttl, 1_439);
    let _: () = run(&mut fast, &["SCD.SET", "sess:1", "v2", &new.to_string()]).await;
    let value: String = run(&mut fast, &["GET", "sess:1"]).await;
    assert_eq!(value, "v2");
    let _: i64 = run(&mut fast, &["SCD.UNLOCK", "sess:1", &new.to_string()]).await;
    let refused = try_run::<()>(&mut fast, &["SCD.SET", "sess:1", "v3", &new.to_string()])
        .await
        .expect_err("a write after the release is fenced");
    assert_eq!(
        refused,
        format!("FENCED token {new} no longer holds the lock: the lock is free")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_beyond_the_bound_get_an_error_naming_it() {
    let node = TestNode::start_paused(|config| {
        config.max_lock_waiters_per_key = 2;
        config.max_lock_waiters = 3;
    })
    .await;
    let mut holder = node.connect().await;
    let mut observer = node.connect().await;
    let _: i64 = run(&mut holder, &["SCD.LOCK", "a", "60000"]).await;
    let _: i64 = run(&mut holder, &["SCD.LOCK", "b", "60000"]).await;
    let _first = spawn_waiter(node.client_addr, "a", "w1", 20_000);
    let _second = spawn_waiter(node.client_addr, "a", "w2", 20_000);
    wait_for_waiters(&mut observer, "a", 2).await;
    let mut third = node.connect().await;
    let refused = try_run::<Option<i64>>(&mut third, &["SCD.LOCK", "a", "60000", "WAIT", "100"])
        .await
        .expect_err("the queue is full");
    assert_eq!(
        refused,
        "ERR too many waiters for this lock (max-lock-waiters-per-key 2)"
    );
    // Without WAIT nothing queues, so the bound does not apply.
    let not_queued: Option<i64> = run(&mut third, &["SCD.LOCK", "a", "60000"]).await;
    assert_eq!(not_queued, None);
    let _on_b = spawn_waiter(node.client_addr, "b", "w3", 20_000);
    wait_for_waiters(&mut observer, "b", 1).await;
    let refused = try_run::<Option<i64>>(&mut third, &["SCD.LOCK", "b", "60000", "WAIT", "100"])
        .await
        .expect_err("the node's queues are full");
    assert_eq!(
        refused,
        "ERR too many lock waiters on this node (max-lock-waiters 3)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_answers_its_waiters_instead_of_waiting_for_them() {
    let node = TestNode::start_paused(|_| {}).await;
    let mut holder = node.connect().await;
    let mut observer = node.connect().await;
    let _: i64 = run(&mut holder, &["SCD.LOCK", "s1", "600000"]).await;
    let waiter = tokio::spawn({
        let address = node.client_addr;
        async move {
            let mut connection = connect(address).await;
            try_run::<Option<i64>>(
                &mut connection,
                &["SCD.LOCK", "s1", "60000", "WAIT", "600000"],
            )
            .await
        }
    });
    wait_for_waiters(&mut observer, "s1", 1).await;
    let stopping_at = Instant::now();
    node.stop().await;
    println!(
        "the node stopped {:?} after it was told to, with a lock waiter queued",
        stopping_at.elapsed()
    );
    let answer = waiter.await.expect("the waiter task");
    assert!(
        answer
            .as_ref()
            .is_err_and(|error| error.contains("shutting down") || error.contains("closed")),
        "{answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scd_stale_is_0_on_a_node_that_never_failed_over() {
    let node = TestNode::start_paused(|_| {}).await;
    let mut client = node.connect().await;
    let _: () = run(&mut client, &["SET", "sess:1", "v"]).await;
    let _: i64 = run(&mut client, &["HSET", "sess:2", "f", "v"]).await;
    for key in ["sess:1", "sess:2", "missing"] {
        let stale: i64 = run(&mut client, &["SCD.STALE", key]).await;
        assert_eq!(stale, 0, "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_closes_while_it_waits_leaves_the_queue_and_frees_its_session_locks() {
    let node = TestNode::start_paused(|_| {}).await;
    let mut holder = node.connect().await;
    let mut observer = node.connect().await;
    let held: i64 = run(&mut holder, &["SCD.LOCK", "wanted", "600000"]).await;
    let worker = {
        let address = node.client_addr;
        tokio::spawn(async move {
            let mut worker = connect(address).await;
            let _: i64 = run(&mut worker, &["SCD.LOCK", "mine", "600000", "SESSION"]).await;
            // Never answered: the task, and with it the connection, is dropped while it waits.
            let _: Option<i64> = run(
                &mut worker,
                &["SCD.LOCK", "wanted", "600000", "WAIT", "600000", "SESSION"],
            )
            .await;
            panic!("the wait should not end while the lock is held");
        })
    };
    wait_for_waiters(&mut observer, "wanted", 1).await;
    assert!(lock_info(&mut observer, "mine").await.is_some());
    worker.abort();
    assert!(worker.await.expect_err("aborted").is_cancelled());
    // Noticed while the wait lasts (ten minutes), not when it ends.
    wait_until("the closed connection's SESSION lock is released", || {
        let mut observer = observer.clone();
        async move { lock_info(&mut observer, "mine").await.is_none() }
    })
    .await;
    wait_for_waiters(&mut observer, "wanted", 0).await;
    // The release grants the lock to nobody: it is free afterwards.
    let released: i64 = run(&mut holder, &["SCD.UNLOCK", "wanted", &held.to_string()]).await;
    assert_eq!(released, 1);
    assert!(lock_info(&mut observer, "wanted").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_that_pipelined_more_than_the_read_ahead_and_closed_leaves_the_queue() {
    use tokio::io::AsyncWriteExt;
    let node = TestNode::start_paused(|_| {}).await;
    let mut holder = node.connect().await;
    let mut observer = node.connect().await;
    let held: i64 = run(&mut holder, &["SCD.LOCK", "wanted", "600000"]).await;
    let mut waiter = tokio::net::TcpStream::connect(node.client_addr)
        .await
        .expect("connect");
    let wait = "*6\r\n$8\r\nSCD.LOCK\r\n$6\r\nwanted\r\n$6\r\n600000\r\n$4\r\nWAIT\r\n\
                $6\r\n600000\r\n$7\r\nSESSION\r\n";
    waiter.write_all(wait.as_bytes()).await.expect("send");
    wait_for_waiters(&mut observer, "wanted", 1).await;
    // 70 KB of commands behind the wait: more than a waiting connection reads ahead (64 KiB),
    // so the node stops reading before it reaches the close.
    let pings = "*1\r\n$4\r\nPING\r\n".repeat(5_000);
    waiter.write_all(pings.as_bytes()).await.expect("send");
    drop(waiter);
    wait_for_waiters(&mut observer, "wanted", 0).await;
    // The release grants the lock to nobody: it is free afterwards.
    let released: i64 = run(&mut holder, &["SCD.UNLOCK", "wanted", &held.to_string()]).await;
    assert_eq!(released, 1);
    assert!(lock_info(&mut observer, "wanted").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_that_pipelined_more_than_the_read_ahead_gets_every_reply_once_granted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let node = TestNode::start_paused(|_| {}).await;
    let mut holder = node.connect().await;
    let mut observer = node.connect().await;
    let held: i64 = run(&mut holder, &["SCD.LOCK", "wanted", "600000"]).await;
    let waiter = tokio::net::TcpStream::connect(node.client_addr)
        .await
        .expect("connect");
    let (mut from_node, mut to_node) = waiter.into_split();
    let wait = "*5\r\n$8\r\nSCD.LOCK\r\n$6\r\nwanted\r\n$6\r\n600000\r\n$4\r\nWAIT\r\n\
                $6\r\n600000\r\n";
    to_node.write_all(wait.as_bytes()).await.expect("send");
    wait_for_waiters(&mut observer, "wanted", 1).await;
    // 420 KB of commands behind the wait: the node reads ahead 64 KiB of them and leaves the
    // rest in the socket while it waits. The client stays connected (its writing half too).
    let pings = 30_000;
    let writer = tokio::spawn(async move {
        to_node
            .write_all("*1\r\n$4\r\nPING\r\n".repeat(pings).as_bytes())
            .await
            .expect("send");
        to_node
    });
    // Until the node has read ahead all it will: its input count passes 64 KiB.
    wait_until("the node has read 64 KiB ahead of the wait", || {
        let mut observer = observer.clone();
        async move {
            let info: String = run(&mut observer, &["INFO", "stats"]).await;
            info.lines()
                .find_map(|line| line.strip_prefix("total_net_input_bytes:"))
                .and_then(|bytes| bytes.trim().parse::<u64>().ok())
                .is_some_and(|bytes| bytes >= 64 * 1024)
        }
    })
    .await;
    let released: i64 = run(&mut holder, &["SCD.UNLOCK", "wanted", &held.to_string()]).await;
    assert_eq!(released, 1);
    // The grant, then every PONG: the input left unread while it waited is read after it.
    let expected = pings * "+PONG\r\n".len();
    let mut replies = Vec::new();
    let mut buffer = vec![0; 64 * 1024];
    let read_all = async {
        loop {
            let token_line = replies.iter().position(|&byte| byte == b'\n');
            if token_line.is_some_and(|end| replies.len() - end > expected) {
                return;
            }
            let read = from_node.read(&mut buffer).await.expect("read");
            assert!(read > 0, "the node closed the connection");
            replies.extend_from_slice(&buffer[..read]);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read_all)
        .await
        .expect("every reply within 20 s");
    let _to_node = writer.await.expect("writer");
    let text = String::from_utf8_lossy(&replies);
    assert!(
        text.starts_with(':'),
        "the grant's token first: {}",
        &text[..40.min(text.len())]
    );
    assert_eq!(text.matches("+PONG\r\n").count(), pings);
}
