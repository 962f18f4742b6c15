//! Expiry with paused time: a node started in-process on a [`ManualClock`], driven by the
//! `redis` crate. SET's EX/PX/EXAT/PXAT/KEEPTTL, EXPIRE's NX/XX/GT/LT, TTL/PTTL, PERSIST and
//! GETEX are checked to the millisecond; keys are gone once the clock passes their deadline;
//! and the active sweeper removes keys nobody reads. Nothing here sleeps for time to pass: the
//! clock is moved, and the sweeper (a real 100 ms tokio interval reading the manual clock) is
//! waited for on a condition with a deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use node::clock::ManualClock;
use node::config::NodeConfig;
use redis::FromRedisValue;
use redis::aio::MultiplexedConnection;
use tokio::sync::oneshot;

/// The clock's start, in Unix milliseconds: a whole second, so EXAT and PXAT line up.
const START_MS: u64 = 1_700_000_000_000;
/// How long a test waits for the sweeper before failing.
const SWEEP_DEADLINE: Duration = Duration::from_secs(20);
/// The node's `tombstone_ttl_ms`, shorter than the default so the test shows it is honoured.
const TOMBSTONE_TTL_MS: u64 = 60_000;

/// A node on a manual clock, stopped when dropped.
struct PausedNode {
    client_addr: SocketAddr,
    clock: ManualClock,
    shutdown_opt: Option<oneshot::Sender<()>>,
}

impl PausedNode {
    async fn start() -> PausedNode {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut config = NodeConfig::with_name("expiry-test");
        config.client_addr = loopback;
        config.peer_addr = loopback;
        config.admin_addr_opt = None;
        config.num_partitions = 64;
        config.tombstone_ttl_ms = TOMBSTONE_TTL_MS;
        let listeners = node::Listeners::bind(&config).expect("loopback ports bind");
        let client_addr = listeners.client_addr();
        let clock = ManualClock::new(START_MS);
        let node_clock: Arc<dyn node::clock::Clock> = Arc::new(clock.clone());
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = shutdown_rx.await;
            };
            node::run_with_clock(config, listeners, node_clock, shutdown)
                .await
                .expect("the node runs");
        });
        PausedNode {
            client_addr,
            clock,
            shutdown_opt: Some(shutdown_tx),
        }
    }

    async fn connect(&self) -> MultiplexedConnection {
        let client =
            redis::Client::open(format!("redis://{}/", self.client_addr)).expect("a redis URL");
        client
            .get_multiplexed_async_connection()
            .await
            .expect("a connection to the in-process node")
    }
}

impl Drop for PausedNode {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown_opt.take() {
            let _ = shutdown.send(());
        }
    }
}

async fn run<T: FromRedisValue>(connection: &mut MultiplexedConnection, args: &[&str]) -> T {
    let (name, rest) = args.split_first().expect("a command name");
    let mut command = redis::cmd(name);
    for arg in rest {
        command.arg(*arg);
    }
    command
        .query_async(connection)
        .await
        .unwrap_or_else(|error| panic!("{args:?}: {error}"))
}

/// Runs each `(args, expected integer)` in order.
async fn check_ints(connection: &mut MultiplexedConnection, cases: &[(&[&str], i64)]) {
    for (args, expect) in cases {
        let actual: i64 = run(connection, args).await;
        assert_eq!(actual, *expect, "{args:?}");
    }
}

async fn get(connection: &mut MultiplexedConnection, key: &str) -> Option<String> {
    run(connection, &["GET", key]).await
}

fn at_seconds(offset_ms: u64) -> String {
    ((START_MS + offset_ms) / 1000).to_string()
}

fn at_ms(offset_ms: u64) -> String {
    (START_MS + offset_ms).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_expiry_options_count_down_with_the_clock() {
    let node = PausedNode::start().await;
    let mut c = node.connect().await;
    let _: () = run(&mut c, &["SET", "ex", "v", "EX", "10"]).await;
    let _: () = run(&mut c, &["SET", "px", "v", "PX", "1500"]).await;
    let _: () = run(&mut c, &["SET", "exat", "v", "EXAT", &at_seconds(20_000)]).await;
    let _: () = run(&mut c, &["SET", "pxat", "v", "PXAT", &at_ms(2_500)]).await;
    let _: () = run(&mut c, &["SETEX", "setex", "30", "v"]).await;
    let _: () = run(&mut c, &["PSETEX", "psetex", "700", "v"]).await;
    let _: () = run(&mut c, &["SET", "forever", "v"]).await;
    check_ints(
        &mut c,
        &[
            (&["PTTL", "ex"], 10_000),
            (&["TTL", "ex"], 10),
            (&["PTTL", "px"], 1_500),
            // TTL rounds to the nearest second, as Redis does.
            (&["TTL", "px"], 2),
            (&["PTTL", "exat"], 20_000),
            (&["PTTL", "pxat"], 2_500),
            (&["PTTL", "setex"], 30_000),
            (&["PTTL", "psetex"], 700),
            (&["TTL", "forever"], -1),
            (&["PTTL", "forever"], -1),
            (&["TTL", "missing"], -2),
        ],
    )
    .await;

    // A key lives while now <= deadline.
    node.clock.advance_ms(700);
    check_ints(&mut c, &[(&["PTTL", "psetex"], 0), (&["TTL", "px"], 1)]).await;
    assert_eq!(get(&mut c, "psetex").await.as_deref(), Some("v"));
    node.clock.advance_ms(1);
    assert_eq!(get(&mut c, "psetex").await, None);
    check_ints(
        &mut c,
        &[(&["PTTL", "psetex"], -2), (&["EXISTS", "psetex"], 0)],
    )
    .await;

    node.clock.advance_ms(799); // now START + 1500
    assert_eq!(get(&mut c, "px").await.as_deref(), Some("v"));
    node.clock.advance_ms(1);
    assert_eq!(get(&mut c, "px").await, None);
    node.clock.advance_ms(1_000); // START + 2501
    assert_eq!(get(&mut c, "pxat").await, None);
    check_ints(&mut c, &[(&["PTTL", "ex"], 7_499), (&["TTL", "ex"], 7)]).await;
    node.clock.advance_ms(7_499); // START + 10000
    assert_eq!(get(&mut c, "ex").await.as_deref(), Some("v"));
    node.clock.advance_ms(1);
    assert_eq!(get(&mut c, "ex").await, None);
    node.clock.advance_ms(10_000); // START + 20001
    assert_eq!(get(&mut c, "exat").await, None);
    assert_eq!(get(&mut c, "setex").await.as_deref(), Some("v"));
    node.clock.advance_ms(10_000);
    assert_eq!(get(&mut c, "setex").await, None);
    assert_eq!(get(&mut c, "forever").await.as_deref(), Some("v"));
    let keys: Vec<String> = run(&mut c, &["KEYS", "*"]).await;
    assert_eq!(keys, vec!["forever"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepttl_keeps_the_deadline_and_plain_set_removes_it() {
    let node = PausedNode::start().await;
    let mut c = node.connect().await;
    let _: () = run(&mut c, &["SET", "k", "first", "PX", "5000"]).await;
    node.clock.advance_ms(1_000);
    let _: () = run(&mut c, &["SET", "k", "second", "KEEPTTL"]).await;
    check_ints(&mut c, &[(&["PTTL", "k"], 4_000)]).await;
    let old: Option<String> = run(&mut c, &["SET", "k", "third", "KEEPTTL", "GET"]).await;
    assert_eq!(old.as_deref(), Some("second"));
    check_ints(&mut c, &[(&["PTTL", "k"], 4_000)]).await;
    // NX/XX with an expiry only set it when they write.
    let refused: Option<String> = run(&mut c, &["SET", "k", "x", "NX", "PX", "100"]).await;
    assert_eq!(refused, None);
    check_ints(&mut c, &[(&["PTTL", "k"], 4_000)]).await;
    let _: () = run(&mut c, &["SET", "k", "fourth", "XX", "PX", "9000"]).await;
    check_ints(&mut c, &[(&["PTTL", "k"], 9_000)]).await;
    let _: () = run(&mut c, &["SET", "k", "plain"]).await;
    check_ints(&mut c, &[(&["PTTL", "k"], -1)]).await;
    node.clock.advance_ms(1_000_000);
    assert_eq!(get(&mut c, "k").await.as_deref(), Some("plain"));
    // GETSET and APPEND: GETSET removes the TTL, APPEND keeps it (as Redis).
    let _: () = run(&mut c, &["SET", "g", "1", "PX", "3000"]).await;
    let _: Option<String> = run(&mut c, &["GETSET", "g", "2"]).await;
    check_ints(&mut c, &[(&["PTTL", "g"], -1)]).await;
    let _: () = run(&mut c, &["SET", "a", "1", "PX", "3000"]).await;
    check_ints(
        &mut c,
        &[(&["APPEND", "a", "2"], 2), (&["PTTL", "a"], 3_000)],
    )
    .await;
    check_ints(&mut c, &[(&["INCR", "a"], 13), (&["PTTL", "a"], 3_000)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expire_conditions_follow_redis_rules_to_the_millisecond() {
    let node = PausedNode::start().await;
    let mut c = node.connect().await;
    let _: () = run(&mut c, &["SET", "k", "v"]).await;
    check_ints(
        &mut c,
        &[
            // XX and GT need an existing TTL; NX needs none.
            (&["EXPIRE", "k", "100", "XX"], 0),
            (&["EXPIRE", "k", "100", "GT"], 0),
            (&["PTTL", "k"], -1),
            (&["EXPIRE", "k", "100", "NX"], 1),
            (&["PTTL", "k"], 100_000),
            (&["EXPIRE", "k", "200", "NX"], 0),
            (&["EXPIRE", "k", "50", "GT"], 0),
            (&["EXPIRE", "k", "100", "GT"], 0),
            (&["EXPIRE", "k", "150", "GT"], 1),
            (&["PTTL", "k"], 150_000),
            (&["EXPIRE", "k", "150", "LT"], 0),
            (&["EXPIRE", "k", "200", "LT"], 0),
            (&["PEXPIRE", "k", "149999", "LT"], 1),
            (&["PTTL", "k"], 149_999),
            (&["PEXPIRE", "k", "1234", "XX"], 1),
            (&["PTTL", "k"], 1_234),
            (&["EXPIREAT", "k", &at_seconds(60_000)], 1),
            (&["PTTL", "k"], 60_000),
            (&["PEXPIREAT", "k", &at_ms(61_001), "GT"], 1),
            (&["PTTL", "k"], 61_001),
            (&["PEXPIREAT", "k", &at_ms(70_000), "LT"], 0),
            (&["EXPIRE", "missing", "10"], 0),
            (&["EXPIRE", "missing", "10", "NX"], 0),
        ],
    )
    .await;
    // LT on a key without a TTL: no TTL counts as infinite, so any deadline is less.
    let _: () = run(&mut c, &["SET", "n", "v"]).await;
    check_ints(
        &mut c,
        &[
            (&["EXPIRE", "n", "500", "LT"], 1),
            (&["PTTL", "n"], 500_000),
        ],
    )
    .await;
    // A deadline not after now deletes the key at once.
    check_ints(
        &mut c,
        &[
            (&["PEXPIREAT", "n", &at_ms(0)], 1),
            (&["EXISTS", "n"], 0),
            (&["EXPIRE", "k", "0"], 1),
            (&["EXISTS", "k"], 0),
        ],
    )
    .await;
    // Hashes expire like strings.
    check_ints(
        &mut c,
        &[
            (&["HSET", "h", "f", "v", "g", "w"], 2),
            (&["PEXPIRE", "h", "300"], 1),
            (&["PTTL", "h"], 300),
        ],
    )
    .await;
    node.clock.advance_ms(301);
    let fields: std::collections::HashMap<String, String> = run(&mut c, &["HGETALL", "h"]).await;
    assert!(fields.is_empty(), "{fields:?}");
    check_ints(&mut c, &[(&["EXISTS", "h"], 0), (&["HLEN", "h"], 0)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persist_and_getex_change_the_deadline() {
    let node = PausedNode::start().await;
    let mut c = node.connect().await;
    let _: () = run(&mut c, &["SET", "k", "v", "PX", "1000"]).await;
    check_ints(
        &mut c,
        &[
            (&["PERSIST", "k"], 1),
            (&["PERSIST", "k"], 0),
            (&["PTTL", "k"], -1),
            (&["PERSIST", "missing"], 0),
        ],
    )
    .await;
    node.clock.advance_ms(5_000);
    assert_eq!(get(&mut c, "k").await.as_deref(), Some("v"));
    for (args, expect_pttl) in [
        (&["GETEX", "k", "EX", "7"][..], 7_000),
        (&["GETEX", "k", "PX", "2500"], 2_500),
        (&["GETEX", "k", "EXAT", &at_seconds(5_000 + 9_000)], 9_000),
        (&["GETEX", "k", "PXAT", &at_ms(5_000 + 4_321)], 4_321),
        (&["GETEX", "k"], 4_321),
        (&["GETEX", "k", "PERSIST"], -1),
        (&["GETEX", "k", "PX", "10"], 10),
    ] {
        let value: Option<String> = run(&mut c, args).await;
        assert_eq!(value.as_deref(), Some("v"), "{args:?}");
        check_ints(&mut c, &[(&["PTTL", "k"], expect_pttl)]).await;
    }
    node.clock.advance_ms(11);
    let value: Option<String> = run(&mut c, &["GETEX", "k", "PERSIST"]).await;
    assert_eq!(value, None, "GETEX returned an expired value");
    check_ints(&mut c, &[(&["EXISTS", "k"], 0)]).await;
    // GETDEL of an expired key finds nothing.
    let _: () = run(&mut c, &["SET", "d", "v", "PX", "5"]).await;
    node.clock.advance_ms(6);
    let value: Option<String> = run(&mut c, &["GETDEL", "d"]).await;
    assert_eq!(value, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_keeps_the_exact_deadline_and_expired_keys_cannot_be_renamed() {
    let node = PausedNode::start().await;
    let mut c = node.connect().await;
    for index in 0..20 {
        let from = format!("from:{index}");
        let to = format!("to:{index}");
        let _: () = run(&mut c, &["SET", &from, "v", "PX", "8000"]).await;
        let _: () = run(&mut c, &["RENAME", &from, &to]).await;
        check_ints(&mut c, &[(&["PTTL", &to], 8_000), (&["EXISTS", &from], 0)]).await;
    }
    node.clock.advance_ms(8_001);
    let _: () = run(&mut c, &["SET", "late", "v", "PX", "1"]).await;
    node.clock.advance_ms(2);
    let error = redis::cmd("RENAME")
        .arg("late")
        .arg("other")
        .query_async::<()>(&mut c)
        .await
        .expect_err("renaming an expired key");
    assert_eq!(error.detail(), Some("no such key"), "{error:?}");
    let keys: Vec<String> = run(&mut c, &["KEYS", "*"]).await;
    assert!(keys.is_empty(), "{keys:?}");
}

/// `keys=` and `expires=` of `db0` in INFO keyspace (0 when the line is absent).
async fn keyspace_counts(connection: &mut MultiplexedConnection) -> (u64, u64) {
    let info: redis::InfoDict = run(connection, &["INFO", "keyspace"]).await;
    let Some(db0) = info.get::<String>("db0") else {
        return (0, 0);
    };
    let field = |name: &str| -> u64 {
        db0.split(',')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {db0}"))
    };
    (field("keys"), field("expires"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_removes_expired_keys_nobody_reads() {
    const NUM_EXPIRING: usize = 20_000;
    let node = PausedNode::start().await;
    let mut c = node.connect().await;
    let mut pipeline = redis::pipe();
    for index in 0..NUM_EXPIRING {
        pipeline
            .cmd("SET")
            .arg(format!("session:{index}"))
            .arg("data")
            .arg("PX")
            .arg(1_000 + (index % 1_000))
            .ignore();
    }
    for index in 0..10 {
        pipeline
            .cmd("SET")
            .arg(format!("kept:{index}"))
            .arg("v")
            .ignore();
    }
    for index in 0..5 {
        pipeline
            .cmd("SET")
            .arg(format!("later:{index}"))
            .arg("v")
            .arg("EX")
            .arg(3_600)
            .ignore();
    }
    let _: () = pipeline.query_async(&mut c).await.expect("loading keys");
    assert_eq!(
        keyspace_counts(&mut c).await,
        (NUM_EXPIRING as u64 + 15, NUM_EXPIRING as u64 + 5)
    );
    let info: redis::InfoDict = run(&mut c, &["INFO", "memory"]).await;
    let used_before: u64 = info.get("used_memory").expect("used_memory");

    // DBSIZE counts what INFO keyspace counts.
    let dbsize: i64 = run(&mut c, &["DBSIZE"]).await;
    assert_eq!(dbsize, NUM_EXPIRING as i64 + 15);

    // Past every deadline, the sweeper removes the keys without anyone reading them.
    node.clock.advance_ms(2_000);
    let started = std::time::Instant::now();
    loop {
        let counts = keyspace_counts(&mut c).await;
        if counts == (15, 5) {
            break;
        }
        assert!(
            started.elapsed() < SWEEP_DEADLINE,
            "the sweeper left {counts:?} (keys, expires) after {SWEEP_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dbsize: i64 = run(&mut c, &["DBSIZE"]).await;
    assert_eq!(dbsize, 15);
    let stats: redis::InfoDict = run(&mut c, &["INFO", "stats"]).await;
    let expired: u64 = stats.get("expired_keys").expect("expired_keys");
    assert_eq!(expired, NUM_EXPIRING as u64);
    let info: redis::InfoDict = run(&mut c, &["INFO", "memory"]).await;
    let used_after: u64 = info.get("used_memory").expect("used_memory");
    assert!(
        used_after < used_before,
        "used_memory {used_before} -> {used_after} after sweeping {NUM_EXPIRING} keys"
    );
    // Each expired key left the tombstone of its version (so that an older copy cannot bring it
    // back after a network split), which the sweeper removes `tombstone_ttl_ms` later.
    let tombstones: u64 = info.get("scd_tombstones").expect("scd_tombstones");
    assert_eq!(tombstones, NUM_EXPIRING as u64);
    node.clock.advance_ms(TOMBSTONE_TTL_MS);
    let started = std::time::Instant::now();
    let used_final = loop {
        let info: redis::InfoDict = run(&mut c, &["INFO", "memory"]).await;
        let tombstones: u64 = info.get("scd_tombstones").expect("scd_tombstones");
        if tombstones == 0 {
            break info.get::<u64>("used_memory").expect("used_memory");
        }
        assert!(
            started.elapsed() < SWEEP_DEADLINE,
            "the sweeper left {tombstones} tombstones after {SWEEP_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // What is left is the 15 other keys.
    assert!(
        used_final * 100 < used_before,
        "used_memory {used_before} -> {used_final} with 15 of {} keys left",
        NUM_EXPIRING + 15
    );
    // The keys without a deadline, or with a later one, are untouched.
    assert_eq!(get(&mut c, "kept:3").await.as_deref(), Some("v"));
    check_ints(&mut c, &[(&["TTL", "later:0"], 3_538)]).await;
}

/// `avg_ttl=` of `db0` in INFO keyspace.
async fn average_ttl_ms(connection: &mut MultiplexedConnection) -> u64 {
    let info: redis::InfoDict = run(connection, &["INFO", "keyspace"]).await;
    let db0: String = info.get("db0").expect("a db0 line");
    db0.split(',')
        .find_map(|pair| pair.strip_prefix("avg_ttl="))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no avg_ttl in {db0}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_keyspace_avg_ttl_is_the_mean_ttl_in_ms_of_the_keys_with_an_expiry() {
    let node = PausedNode::start().await;
    let mut c = node.connect().await;
    let _: () = run(&mut c, &["SET", "plain", "v"]).await;
    assert_eq!(average_ttl_ms(&mut c).await, 0, "no key with an expiry");
    let _: () = run(&mut c, &["SET", "short", "v", "PX", "10000"]).await;
    let _: () = run(&mut c, &["SET", "long", "v", "EX", "30"]).await;
    assert_eq!(average_ttl_ms(&mut c).await, 20_000);
    node.clock.advance_ms(4_000);
    assert_eq!(average_ttl_ms(&mut c).await, 16_000);
    let _: i64 = run(&mut c, &["PERSIST", "long"]).await;
    assert_eq!(average_ttl_ms(&mut c).await, 6_000);
    let _: i64 = run(&mut c, &["EXPIRE", "plain", "100"]).await;
    assert_eq!(average_ttl_ms(&mut c).await, 53_000);
}
