//! The `redis` crate against a real `scd` process, in RESP2 and in RESP3 (`HELLO 3`): every
//! command family of issue 2, Redis' error lines, and pipelining.
//!
//! Each test starts its own node and runs its checks once per protocol, with `FLUSHALL`
//! between the two runs. Time is the real clock here (expiry with paused time is tested
//! in-process, in `crates/node/tests/expiry.rs`), so TTLs are checked within a range.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufReader, Write};

use common::{IO_TIMEOUT, Scd, read_reply, request, wait_until};
use redis::{Connection, FromRedisValue, RedisError, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Resp2,
    Resp3,
}

const PROTOCOLS: [Protocol; 2] = [Protocol::Resp2, Protocol::Resp3];

/// phpredis' session lock release script (`redis_session.c`), which scd runs natively.
const PHPREDIS_LOCK_RELEASE_SCRIPT: &str = "if redis.call(\"get\",KEYS[1]) == ARGV[1] then return redis.call(\"del\",KEYS[1]) else return 0 end";
const PHPREDIS_LOCK_RELEASE_SHA1: &str = "b70c2384248f88e6b75b9f89241a180f856ad852";

fn connect_db(node: &Scd, protocol: Protocol, db: u8) -> Connection {
    let query = match protocol {
        Protocol::Resp2 => "",
        Protocol::Resp3 => "?protocol=resp3",
    };
    let url = format!("redis://{}/{db}{query}", node.client_addr);
    let client = redis::Client::open(url.as_str()).expect("a valid redis URL");
    let connection = client
        .get_connection_with_timeout(IO_TIMEOUT)
        .unwrap_or_else(|error| panic!("connecting to {url}: {error}"));
    connection
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("a read timeout");
    connection
}

fn connect(node: &Scd, protocol: Protocol) -> Connection {
    connect_db(node, protocol, 0)
}

/// Starts a node and runs `check` once per protocol on a fresh connection, after `FLUSHALL`.
fn for_each_protocol(check: impl Fn(&Scd, &mut Connection, Protocol)) {
    let node = Scd::start(&[]);
    for protocol in PROTOCOLS {
        let mut connection = connect(&node, protocol);
        let _: () = run(&mut connection, &["FLUSHALL"]);
        check(&node, &mut connection, protocol);
    }
}

fn command<A: redis::ToRedisArgs>(args: &[A]) -> redis::Cmd {
    let (name, rest) = args.split_first().expect("a command has a name");
    let mut command =
        redis::cmd(std::str::from_utf8(&name.to_redis_args()[0]).expect("command names are text"));
    for arg in rest {
        command.arg(arg);
    }
    command
}

/// Runs a command that must succeed and converts its reply.
#[track_caller]
fn run<T: FromRedisValue>(connection: &mut Connection, args: &[&str]) -> T {
    command(args)
        .query(connection)
        .unwrap_or_else(|error| panic!("{args:?} failed: {error}"))
}

/// Runs a command that must fail and returns its error line as the server sent it
/// (`WRONGTYPE Operation against ...`).
#[track_caller]
fn run_error(connection: &mut Connection, args: &[&str]) -> String {
    match command(args).query::<Value>(connection) {
        Ok(value) => panic!("{args:?} should fail, got {value:?}"),
        Err(error) => error_line(&error),
    }
}

fn error_line(error: &RedisError) -> String {
    match (error.code(), error.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => error.to_string(),
    }
}

#[track_caller]
fn check_int(connection: &mut Connection, args: &[&str], expect: i64) {
    let actual: i64 = run(connection, args);
    assert_eq!(actual, expect, "{args:?}");
}

#[track_caller]
/// Lowercase hexadecimal SHA1 of a script's text, as Redis and node-redis name scripts.
fn sha1_hex(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, text.as_bytes());
    digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn check_text(connection: &mut Connection, args: &[&str], expect: Option<&str>) {
    let actual: Option<String> = run(connection, args);
    assert_eq!(actual.as_deref(), expect, "{args:?}");
}

#[track_caller]
fn check_error(connection: &mut Connection, args: &[&str], expect: &str) {
    assert_eq!(run_error(connection, args), expect, "{args:?}");
}

#[track_caller]
fn check_ttl_within(connection: &mut Connection, key: &str, low_seconds: i64, high_seconds: i64) {
    let ttl: i64 = run(connection, &["TTL", key]);
    assert!(
        (low_seconds..=high_seconds).contains(&ttl),
        "TTL {key} = {ttl}, expected {low_seconds}..={high_seconds}"
    );
}

/// The server's clock in Unix milliseconds, from `TIME`.
fn server_time_ms(connection: &mut Connection) -> i64 {
    let (seconds, microseconds): (i64, i64) = run(connection, &["TIME"]);
    seconds * 1000 + microseconds / 1000
}

#[test]
fn hello_answers_in_the_protocol_it_selects() {
    for_each_protocol(|_, connection, protocol| {
        let number = match protocol {
            Protocol::Resp2 => "2",
            Protocol::Resp3 => "3",
        };
        let reply: Value = run(connection, &["HELLO", number]);
        let fields: HashMap<String, Value> = match (&reply, protocol) {
            (Value::Map(_), Protocol::Resp3) | (Value::Array(_), Protocol::Resp2) => {
                FromRedisValue::from_redis_value(reply.clone()).expect("HELLO pairs")
            }
            _ => panic!("HELLO {number} answered {reply:?}"),
        };
        let text = |name: &str| -> String {
            FromRedisValue::from_redis_value(fields[name].clone()).expect("a text field")
        };
        assert_eq!(text("server"), "redis");
        assert_eq!(text("proto"), number);
        assert_eq!(text("mode"), "standalone");
        assert_eq!(text("role"), "master");
        assert!(text("version").starts_with('7'), "{}", text("version"));
    });
}

#[test]
fn set_answers_every_option_as_redis_does() {
    for_each_protocol(|_, c, _| {
        check_text(c, &["SET", "k", "v1"], Some("OK"));
        check_text(c, &["GET", "k"], Some("v1"));
        // NX and XX.
        check_text(c, &["SET", "k", "v2", "NX"], None);
        check_text(c, &["SET", "fresh", "f", "NX"], Some("OK"));
        check_text(c, &["SET", "absent", "a", "XX"], None);
        check_int(c, &["EXISTS", "absent"], 0);
        check_text(c, &["SET", "k", "v3", "XX"], Some("OK"));
        // GET returns the old value, or nil when there was none (and still sets).
        check_text(c, &["SET", "k", "v4", "GET"], Some("v3"));
        check_text(c, &["SET", "new", "n", "GET"], None);
        check_text(c, &["GET", "new"], Some("n"));
        check_text(c, &["SET", "k", "v5", "XX", "GET"], Some("v4"));
        // EX, PX, EXAT, PXAT.
        check_text(c, &["SET", "k", "v", "EX", "100"], Some("OK"));
        check_ttl_within(c, "k", 99, 100);
        check_text(c, &["SET", "k", "v", "PX", "50000"], Some("OK"));
        let pttl: i64 = run(c, &["PTTL", "k"]);
        assert!((49_000..=50_000).contains(&pttl), "PTTL {pttl}");
        let now_ms = server_time_ms(c);
        let at_seconds = (now_ms / 1000 + 200).to_string();
        check_text(c, &["SET", "k", "v", "EXAT", &at_seconds], Some("OK"));
        check_ttl_within(c, "k", 198, 200);
        let at_ms = (now_ms + 300_000).to_string();
        check_text(c, &["SET", "k", "v", "PXAT", &at_ms], Some("OK"));
        check_ttl_within(c, "k", 298, 300);
        // KEEPTTL keeps the deadline; a plain SET removes it.
        check_text(c, &["SET", "k", "kept", "KEEPTTL"], Some("OK"));
        check_ttl_within(c, "k", 298, 300);
        check_text(c, &["GET", "k"], Some("kept"));
        check_text(c, &["SET", "k", "plain"], Some("OK"));
        check_int(c, &["TTL", "k"], -1);
        // A deadline in the past leaves no key.
        check_text(c, &["SET", "gone", "v", "PXAT", "1"], Some("OK"));
        check_int(c, &["EXISTS", "gone"], 0);
        // Errors, in Redis' words.
        check_error(
            c,
            &["SET", "k", "v", "EX", "0"],
            "ERR invalid expire time in 'set' command",
        );
        check_error(
            c,
            &["SET", "k", "v", "PX", "-5"],
            "ERR invalid expire time in 'set' command",
        );
        check_error(
            c,
            &["SET", "k", "v", "EX", "10", "PX", "10"],
            "ERR syntax error",
        );
        check_error(c, &["SET", "k", "v", "NX", "XX"], "ERR syntax error");
        check_error(
            c,
            &["SET", "k", "v", "KEEPTTL", "EX", "5"],
            "ERR syntax error",
        );
        check_error(
            c,
            &["SET", "k", "v", "EX", "ten"],
            "ERR value is not an integer or out of range",
        );
        check_error(c, &["SET", "k", "v", "FOREVER"], "ERR syntax error");
    });
}

#[test]
fn string_commands_answer_as_redis_does() {
    for_each_protocol(|_, c, _| {
        check_text(c, &["SETEX", "a", "100", "x"], Some("OK"));
        check_ttl_within(c, "a", 99, 100);
        check_text(c, &["PSETEX", "b", "100000", "y"], Some("OK"));
        check_ttl_within(c, "b", 99, 100);
        check_error(
            c,
            &["SETEX", "a", "0", "x"],
            "ERR invalid expire time in 'setex' command",
        );
        check_int(c, &["SETNX", "a", "other"], 0);
        check_int(c, &["SETNX", "c", "z"], 1);
        check_text(c, &["GET", "a"], Some("x"));
        // GETEX sets or removes the TTL and returns the value.
        check_text(c, &["GETEX", "c", "EX", "50"], Some("z"));
        check_ttl_within(c, "c", 49, 50);
        check_text(c, &["GETEX", "c", "PERSIST"], Some("z"));
        check_int(c, &["TTL", "c"], -1);
        check_text(c, &["GETEX", "missing", "EX", "5"], None);
        // GETDEL, GETSET.
        check_text(c, &["GETDEL", "c"], Some("z"));
        check_text(c, &["GETDEL", "c"], None);
        check_text(c, &["GETSET", "a", "new"], Some("x"));
        check_int(c, &["TTL", "a"], -1);
        check_text(c, &["GETSET", "d", "first"], None);
        // MSET, MGET (nil for missing keys and for keys of another type).
        check_text(c, &["MSET", "m1", "1", "m2", "2", "m3", "3"], Some("OK"));
        let _: i64 = run(c, &["HSET", "hash", "f", "v"]);
        let values: Vec<Option<String>> = run(c, &["MGET", "m1", "m2", "nope", "hash", "m3"]);
        assert_eq!(
            values,
            vec![
                Some("1".to_string()),
                Some("2".to_string()),
                None,
                None,
                Some("3".to_string())
            ]
        );
        // APPEND, STRLEN.
        check_int(c, &["APPEND", "s", "hello"], 5);
        check_int(c, &["APPEND", "s", " world"], 11);
        check_text(c, &["GET", "s"], Some("hello world"));
        check_int(c, &["STRLEN", "s"], 11);
        check_int(c, &["STRLEN", "nope"], 0);
        // INCR family.
        check_int(c, &["INCR", "n"], 1);
        check_int(c, &["INCRBY", "n", "10"], 11);
        check_int(c, &["DECR", "n"], 10);
        check_int(c, &["DECRBY", "n", "15"], -5);
        check_text(c, &["GET", "n"], Some("-5"));
        check_error(
            c,
            &["INCR", "s"],
            "ERR value is not an integer or out of range",
        );
        check_text(c, &["SET", "max", "9223372036854775807"], Some("OK"));
        check_error(
            c,
            &["INCR", "max"],
            "ERR increment or decrement would overflow",
        );
        check_error(
            c,
            &["INCRBY", "n", "x"],
            "ERR value is not an integer or out of range",
        );
    });
}

#[test]
fn values_are_binary_safe_and_large_values_round_trip() {
    for_each_protocol(|_, c, _| {
        let every_byte: Vec<u8> = (0..=255u8).collect();
        let _: () = redis::cmd("SET")
            .arg(&every_byte[..])
            .arg(&every_byte[..])
            .query(c)
            .expect("SET of binary key and value");
        let back: Vec<u8> = redis::cmd("GET")
            .arg(&every_byte[..])
            .query(c)
            .expect("GET");
        assert_eq!(back, every_byte);
        let large: Vec<u8> = (0..512 * 1024).map(|index| (index % 251) as u8).collect();
        let _: () = redis::cmd("SET")
            .arg("large")
            .arg(&large[..])
            .query(c)
            .expect("SET of 512 KiB");
        let back: Vec<u8> = redis::cmd("GET").arg("large").query(c).expect("GET");
        assert!(back == large, "the 512 KiB value came back changed");
        let empty: String = run(c, &["SET", "empty", ""]);
        assert_eq!(empty, "OK");
        check_text(c, &["GET", "empty"], Some(""));
        check_int(c, &["EXISTS", "empty"], 1);
    });
}

#[test]
fn key_commands_answer_as_redis_does() {
    for_each_protocol(|_, c, _| {
        check_text(
            c,
            &["MSET", "a", "1", "b", "2", "c", "3", "d", "4"],
            Some("OK"),
        );
        let _: i64 = run(c, &["HSET", "h", "f", "v"]);
        check_int(c, &["EXISTS", "a", "a", "nope", "h"], 3);
        check_int(c, &["TOUCH", "a", "b", "nope"], 2);
        check_int(c, &["DEL", "a", "b", "nope"], 2);
        check_int(c, &["UNLINK", "c", "c"], 1);
        check_int(c, &["DEL", "c"], 0);
        check_int(c, &["EXISTS", "a", "b", "c", "d"], 1);
        check_text(c, &["TYPE", "d"], Some("string"));
        check_text(c, &["TYPE", "h"], Some("hash"));
        check_text(c, &["TYPE", "nope"], Some("none"));
        // TTL and PTTL of missing keys and keys without expiry.
        check_int(c, &["TTL", "nope"], -2);
        check_int(c, &["PTTL", "nope"], -2);
        check_int(c, &["TTL", "d"], -1);
        check_int(c, &["PTTL", "d"], -1);
        // EXPIRE and its conditions.
        check_int(c, &["EXPIRE", "nope", "10"], 0);
        check_int(c, &["EXPIRE", "d", "100", "XX"], 0);
        check_int(c, &["EXPIRE", "d", "100", "GT"], 0);
        check_int(c, &["EXPIRE", "d", "100", "NX"], 1);
        check_ttl_within(c, "d", 99, 100);
        check_int(c, &["EXPIRE", "d", "500", "NX"], 0);
        check_int(c, &["EXPIRE", "d", "50", "GT"], 0);
        check_int(c, &["EXPIRE", "d", "500", "GT"], 1);
        check_ttl_within(c, "d", 499, 500);
        check_int(c, &["EXPIRE", "d", "900", "LT"], 0);
        check_int(c, &["EXPIRE", "d", "300", "LT"], 1);
        check_ttl_within(c, "d", 299, 300);
        check_int(c, &["EXPIRE", "d", "200", "XX"], 1);
        check_ttl_within(c, "d", 199, 200);
        check_int(c, &["PEXPIRE", "d", "150000"], 1);
        check_ttl_within(c, "d", 149, 150);
        let now_ms = server_time_ms(c);
        let at_seconds = (now_ms / 1000 + 400).to_string();
        check_int(c, &["EXPIREAT", "d", &at_seconds], 1);
        check_ttl_within(c, "d", 398, 400);
        let at_ms = (now_ms + 600_000).to_string();
        check_int(c, &["PEXPIREAT", "d", &at_ms, "GT"], 1);
        check_ttl_within(c, "d", 598, 600);
        // Hashes expire like strings.
        check_int(c, &["EXPIRE", "h", "60"], 1);
        check_ttl_within(c, "h", 59, 60);
        // PERSIST.
        check_int(c, &["PERSIST", "d"], 1);
        check_int(c, &["PERSIST", "d"], 0);
        check_int(c, &["TTL", "d"], -1);
        check_int(c, &["PERSIST", "nope"], 0);
        // LT on a key without expiry: no expiry counts as infinite, so LT applies.
        check_int(c, &["EXPIRE", "d", "70", "LT"], 1);
        check_ttl_within(c, "d", 69, 70);
        // A deadline in the past deletes the key.
        check_int(c, &["EXPIRE", "d", "-1"], 1);
        check_int(c, &["EXISTS", "d"], 0);
        check_error(
            c,
            &["EXPIRE", "h", "10", "NX", "XX"],
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        );
        check_error(
            c,
            &["EXPIRE", "h", "10", "GT", "LT"],
            "ERR GT and LT options at the same time are not compatible",
        );
        // KEYS.
        check_text(
            c,
            &["MSET", "user:1", "a", "user:2", "b", "other", "c"],
            Some("OK"),
        );
        let mut keys: Vec<String> = run(c, &["KEYS", "user:*"]);
        keys.sort();
        assert_eq!(keys, vec!["user:1", "user:2"]);
        let all: Vec<String> = run(c, &["KEYS", "*"]);
        assert_eq!(all.len(), 4, "{all:?}");
    });
}

#[test]
fn rename_moves_values_across_partitions_and_keeps_their_ttl() {
    for_each_protocol(|_, c, _| {
        // With 1024 partitions, nearly every one of these pairs is split over two partitions
        // (RENAME's cross-partition path); the hash-tagged pair shares one (its atomic path).
        let mut pairs: Vec<(String, String)> = (0..40)
            .map(|index| (format!("source:{index}"), format!("target:{index}")))
            .collect();
        pairs.push(("{tag}source".to_string(), "{tag}target".to_string()));
        for (index, (from, to)) in pairs.iter().enumerate() {
            if index % 2 == 0 {
                check_text(
                    c,
                    &["SET", from, &format!("value {index}"), "EX", "1000"],
                    Some("OK"),
                );
            } else {
                check_int(c, &["HSET", from, "field", &format!("value {index}")], 1);
                check_int(c, &["EXPIRE", from, "1000"], 1);
            }
            // Every third target exists already and is replaced.
            if index % 3 == 0 {
                check_text(c, &["SET", to, "old"], Some("OK"));
            }
            check_text(c, &["RENAME", from, to], Some("OK"));
            check_int(c, &["EXISTS", from], 0);
            if index % 2 == 0 {
                check_text(c, &["GET", to], Some(&format!("value {index}")));
            } else {
                check_text(c, &["HGET", to, "field"], Some(&format!("value {index}")));
            }
            check_ttl_within(c, to, 990, 1000);
        }
        check_int(c, &["DBSIZE"], pairs.len() as i64);
        check_error(c, &["RENAME", "missing", "x"], "ERR no such key");
        check_text(c, &["SET", "same", "v"], Some("OK"));
        check_text(c, &["RENAME", "same", "same"], Some("OK"));
        check_text(c, &["GET", "same"], Some("v"));
    });
}

/// Iterates SCAN to the end with these extra arguments; returns every key and the number of
/// calls.
fn scan_all(c: &mut Connection, extra: &[&str]) -> (Vec<String>, usize) {
    let mut cursor = "0".to_string();
    let mut keys = Vec::new();
    let mut calls = 0;
    loop {
        let mut args = vec!["SCAN", cursor.as_str()];
        args.extend_from_slice(extra);
        let (next, page): (String, Vec<String>) = run(c, &args);
        calls += 1;
        keys.extend(page);
        assert!(calls < 100_000, "SCAN does not end");
        if next == "0" {
            return (keys, calls);
        }
        cursor = next;
    }
}

#[test]
fn scan_returns_every_key_and_filters_by_match_count_and_type() {
    const NUM_STRINGS: usize = 1500;
    const NUM_HASHES: usize = 500;
    for_each_protocol(|node, c, protocol| {
        let mut pipeline = redis::pipe();
        for index in 0..NUM_STRINGS {
            pipeline
                .cmd("SET")
                .arg(format!("session:{index}"))
                .arg(index)
                .ignore();
        }
        for index in 0..NUM_HASHES {
            pipeline
                .cmd("HSET")
                .arg(format!("user:{index}"))
                .arg("name")
                .arg(index)
                .ignore();
        }
        let _: () = pipeline.query(c).expect("loading keys");
        let strings: BTreeSet<String> = (0..NUM_STRINGS).map(|i| format!("session:{i}")).collect();
        let hashes: BTreeSet<String> = (0..NUM_HASHES).map(|i| format!("user:{i}")).collect();
        let everything: BTreeSet<String> = strings.union(&hashes).cloned().collect();

        // A full iteration returns every key exactly once (no rehashing happens meanwhile).
        let (keys, calls_count_100) = scan_all(c, &["COUNT", "100"]);
        assert_eq!(keys.len(), everything.len(), "duplicates or missing keys");
        assert_eq!(keys.into_iter().collect::<BTreeSet<_>>(), everything);
        // COUNT changes how much one call does.
        let (keys, calls_count_10000) = scan_all(c, &["COUNT", "10000"]);
        assert_eq!(keys.into_iter().collect::<BTreeSet<_>>(), everything);
        assert!(
            calls_count_10000 < calls_count_100,
            "COUNT 10000 took {calls_count_10000} calls, COUNT 100 took {calls_count_100}"
        );
        let (keys, _) = scan_all(c, &[]);
        assert_eq!(keys.into_iter().collect::<BTreeSet<_>>(), everything);

        // MATCH.
        let (keys, _) = scan_all(c, &["MATCH", "session:1*", "COUNT", "500"]);
        let expected: BTreeSet<String> = strings
            .iter()
            .filter(|key| key.starts_with("session:1"))
            .cloned()
            .collect();
        assert_eq!(keys.into_iter().collect::<BTreeSet<_>>(), expected);
        // TYPE.
        let (keys, _) = scan_all(c, &["TYPE", "hash", "COUNT", "1000"]);
        assert_eq!(keys.into_iter().collect::<BTreeSet<_>>(), hashes);
        let (keys, _) = scan_all(c, &["TYPE", "string", "COUNT", "1000"]);
        assert_eq!(keys.into_iter().collect::<BTreeSet<_>>(), strings);
        let (keys, _) = scan_all(c, &["TYPE", "list", "COUNT", "1000"]);
        assert!(keys.is_empty(), "{keys:?}");
        let (keys, _) = scan_all(c, &["MATCH", "user:4?", "TYPE", "hash"]);
        let expected: BTreeSet<String> = (40..50).map(|i| format!("user:{i}")).collect();
        assert_eq!(keys.into_iter().collect::<BTreeSet<_>>(), expected);

        // The client's own SCAN iterator.
        let iterated: BTreeSet<String> = redis::cmd("SCAN")
            .cursor_arg(0)
            .arg("MATCH")
            .arg("user:*")
            .clone()
            .iter::<String>(c)
            .expect("scan iterator")
            .map(|key| key.expect("a key"))
            .collect();
        assert_eq!(iterated, hashes);

        // Another database is another keyspace.
        let mut db1 = connect_db(node, protocol, 1);
        let (keys, _) = scan_all(&mut db1, &["COUNT", "1000"]);
        assert!(keys.is_empty(), "db 1 sees {} keys of db 0", keys.len());

        check_error(c, &["SCAN", "0", "COUNT", "0"], "ERR syntax error");
        check_error(c, &["SCAN", "abc"], "ERR invalid cursor");
    });
}

#[test]
fn hash_commands_answer_as_redis_does() {
    for_each_protocol(|_, c, protocol| {
        check_int(c, &["HSET", "h", "f1", "v1", "f2", "v2"], 2);
        check_int(c, &["HSET", "h", "f1", "x", "f3", "v3"], 1);
        check_text(c, &["HGET", "h", "f1"], Some("x"));
        check_text(c, &["HGET", "h", "nope"], None);
        check_text(c, &["HGET", "nope", "f1"], None);
        check_text(c, &["HMSET", "h", "f4", "v4", "f5", "v5"], Some("OK"));
        let values: Vec<Option<String>> = run(c, &["HMGET", "h", "f1", "nope", "f5"]);
        assert_eq!(values, vec![Some("x".into()), None, Some("v5".into())]);
        // HGETALL is a map in RESP3 and a flat array in RESP2.
        let raw: Value = run(c, &["HGETALL", "h"]);
        match (protocol, &raw) {
            (Protocol::Resp3, Value::Map(pairs)) => assert_eq!(pairs.len(), 5),
            (Protocol::Resp2, Value::Array(items)) => assert_eq!(items.len(), 10),
            _ => panic!("HGETALL in {protocol:?} answered {raw:?}"),
        }
        let all: HashMap<String, String> = run(c, &["HGETALL", "h"]);
        let expected: HashMap<String, String> = [
            ("f1", "x"),
            ("f2", "v2"),
            ("f3", "v3"),
            ("f4", "v4"),
            ("f5", "v5"),
        ]
        .into_iter()
        .map(|(field, value)| (field.to_string(), value.to_string()))
        .collect();
        assert_eq!(all, expected);
        let empty: HashMap<String, String> = run(c, &["HGETALL", "nope"]);
        assert!(empty.is_empty());
        check_int(c, &["HLEN", "h"], 5);
        check_int(c, &["HLEN", "nope"], 0);
        check_int(c, &["HEXISTS", "h", "f2"], 1);
        check_int(c, &["HEXISTS", "h", "nope"], 0);
        let mut fields: Vec<String> = run(c, &["HKEYS", "h"]);
        fields.sort();
        assert_eq!(fields, vec!["f1", "f2", "f3", "f4", "f5"]);
        let mut values: Vec<String> = run(c, &["HVALS", "h"]);
        values.sort();
        assert_eq!(values, vec!["v2", "v3", "v4", "v5", "x"]);
        check_int(c, &["HDEL", "h", "f1", "f2", "nope"], 2);
        check_int(c, &["HLEN", "h"], 3);
        check_int(c, &["HINCRBY", "h", "n", "5"], 5);
        check_int(c, &["HINCRBY", "h", "n", "-7"], -2);
        check_error(
            c,
            &["HINCRBY", "h", "f3", "1"],
            "ERR hash value is not an integer",
        );
        check_error(
            c,
            &["HINCRBY", "h", "n", "x"],
            "ERR value is not an integer or out of range",
        );
        // Deleting the last field deletes the key.
        check_int(c, &["HDEL", "h", "f3", "f4", "f5", "n"], 4);
        check_int(c, &["EXISTS", "h"], 0);
    });
}

#[test]
fn wrong_type_and_arity_errors_are_redis_lines() {
    const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
    for_each_protocol(|_, c, _| {
        check_text(c, &["SET", "s", "text"], Some("OK"));
        check_int(c, &["HSET", "h", "f", "v"], 1);
        for args in [
            &["GET", "h"][..],
            &["APPEND", "h", "x"],
            &["INCR", "h"],
            &["STRLEN", "h"],
            &["GETDEL", "h"],
            &["GETEX", "h", "EX", "5"],
            &["HGET", "s", "f"],
            &["HSET", "s", "f", "v"],
            &["HGETALL", "s"],
            &["HLEN", "s"],
            &["HINCRBY", "s", "f", "1"],
        ] {
            check_error(c, args, WRONGTYPE);
        }
        // The failed commands changed nothing.
        check_text(c, &["GET", "s"], Some("text"));
        check_text(c, &["HGET", "h", "f"], Some("v"));
        for (args, name) in [
            (&["GET"][..], "get"),
            (&["SET", "k"], "set"),
            (&["HSET", "k", "f"], "hset"),
            (&["MSET", "a"], "mset"),
            (&["EXPIRE", "k"], "expire"),
            (&["DEL"], "del"),
            (&["HGET", "k"], "hget"),
            (&["INCRBY", "k"], "incrby"),
            (&["ECHO"], "echo"),
            (&["RENAME", "a"], "rename"),
            (&["CLIENT", "SETNAME"], "client|setname"),
        ] {
            check_error(
                c,
                args,
                &format!("ERR wrong number of arguments for '{name}' command"),
            );
        }
        check_error(
            c,
            &["NOSUCHCOMMAND", "a", "b"],
            "ERR unknown command 'NOSUCHCOMMAND', with args beginning with: 'a' 'b' ",
        );
        check_error(
            c,
            &["CLIENT", "NOSUCH"],
            "ERR unknown subcommand 'NOSUCH'. Try CLIENT HELP.",
        );
        check_error(c, &["SELECT", "16"], "ERR DB index is out of range");
        check_error(
            c,
            &["SELECT", "x"],
            "ERR value is not an integer or out of range",
        );
        // The connection still works after all those errors.
        check_text(c, &["PING"], Some("PONG"));
    });
}

#[test]
fn select_gives_sixteen_separate_keyspaces() {
    for_each_protocol(|node, c, protocol| {
        for db in 0..16 {
            let _: () = run(c, &["SELECT", &db.to_string()]);
            check_text(c, &["SET", "k", &format!("db{db}")], Some("OK"));
            for extra in 0..db {
                check_text(c, &["SET", &format!("extra{extra}"), "x"], Some("OK"));
            }
        }
        for db in 0..16u8 {
            // The client's own database selection (phpredis' `database=`) sends SELECT.
            let mut in_db = connect_db(node, protocol, db);
            check_text(&mut in_db, &["GET", "k"], Some(&format!("db{db}")));
            check_int(&mut in_db, &["DBSIZE"], i64::from(db) + 1);
        }
        let info: redis::InfoDict = run(c, &["INFO", "keyspace"]);
        let db15: String = info.get("db15").expect("db15 in INFO keyspace");
        assert!(db15.starts_with("keys=16,"), "{db15}");
        // FLUSHDB empties the selected database only.
        let mut db3 = connect_db(node, protocol, 3);
        check_text(&mut db3, &["FLUSHDB"], Some("OK"));
        check_int(&mut db3, &["DBSIZE"], 0);
        let mut db4 = connect_db(node, protocol, 4);
        check_int(&mut db4, &["DBSIZE"], 5);
        // FLUSHALL empties every database.
        check_text(c, &["FLUSHALL"], Some("OK"));
        for db in 0..16u8 {
            check_int(&mut connect_db(node, protocol, db), &["DBSIZE"], 0);
        }
    });
}

#[test]
fn phpredis_lock_release_script_runs_by_sha1_and_by_text() {
    for_each_protocol(|_, c, _| {
        // phpredis: SET <sid>_LOCK <secret> NX PX <ms>, then EVALSHA, falling back to EVAL.
        check_text(
            c,
            &["SET", "sid_LOCK", "secret-1", "NX", "PX", "30000"],
            Some("OK"),
        );
        check_text(
            c,
            &["SET", "sid_LOCK", "secret-2", "NX", "PX", "30000"],
            None,
        );
        let sha = PHPREDIS_LOCK_RELEASE_SHA1;
        check_int(c, &["EVALSHA", sha, "1", "sid_LOCK", "someone-else"], 0);
        check_int(c, &["EXISTS", "sid_LOCK"], 1);
        check_int(c, &["EVALSHA", sha, "1", "sid_LOCK", "secret-1"], 1);
        check_int(c, &["EXISTS", "sid_LOCK"], 0);
        check_int(c, &["EVALSHA", sha, "1", "sid_LOCK", "secret-1"], 0);
        check_text(
            c,
            &["SET", "sid_LOCK", "secret-3", "NX", "PX", "30000"],
            Some("OK"),
        );
        let script = PHPREDIS_LOCK_RELEASE_SCRIPT;
        check_int(c, &["EVAL", script, "1", "sid_LOCK", "secret-3"], 1);
        check_int(c, &["EXISTS", "sid_LOCK"], 0);
        // SCRIPT LOAD gives the SHA1 phpredis uses; SCRIPT EXISTS knows it.
        check_text(c, &["SCRIPT", "LOAD", script], Some(sha));
        let known: Vec<i64> = run(
            c,
            &[
                "SCRIPT",
                "EXISTS",
                sha,
                "0000000000000000000000000000000000000000",
            ],
        );
        assert_eq!(known, vec![1, 0]);
        // A spelling variant is named by the SHA1 of its own text, as Redis names it, until
        // SCRIPT FLUSH; the canonical script is built in and stays.
        let variant = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";
        let variant_sha1 = sha1_hex(variant);
        assert_ne!(variant_sha1, sha);
        check_error(
            c,
            &["EVALSHA", &variant_sha1, "1", "sid_LOCK", "x"],
            "NOSCRIPT No matching script. Please use EVAL.",
        );
        check_text(c, &["SCRIPT", "LOAD", variant], Some(&variant_sha1));
        check_text(
            c,
            &["SET", "sid_LOCK", "secret-4", "NX", "PX", "30000"],
            Some("OK"),
        );
        check_int(
            c,
            &["EVALSHA", &variant_sha1, "1", "sid_LOCK", "secret-4"],
            1,
        );
        check_text(c, &["SCRIPT", "FLUSH"], Some("OK"));
        check_error(
            c,
            &["EVALSHA", &variant_sha1, "1", "sid_LOCK", "x"],
            "NOSCRIPT No matching script. Please use EVAL.",
        );
        check_int(c, &["EVALSHA", sha, "1", "sid_LOCK", "x"], 0);
        // Other scripts get an error that says what is supported.
        let error = run_error(c, &["EVAL", "return redis.call('get', KEYS[1])", "1", "k"]);
        assert!(error.starts_with("ERR "), "{error}");
        assert!(
            error.contains(sha),
            "the error should name what is supported: {error}"
        );
        check_error(
            c,
            &["EVALSHA", "0000000000000000000000000000000000000000", "0"],
            "NOSCRIPT No matching script. Please use EVAL.",
        );
        // Keys and arguments beyond the ones the script reads are ignored, as by Lua; too few
        // are refused.
        check_text(c, &["SET", "a", "c"], Some("OK"));
        check_int(c, &["EVALSHA", sha, "2", "a", "b", "c", "d"], 1);
        let error = run_error(c, &["EVALSHA", sha, "1", "a"]);
        assert!(error.contains("takes 1 key"), "{error}");
    });
}

#[test]
fn info_sections_parse_with_the_client() {
    for_each_protocol(|_, c, protocol| {
        check_text(c, &["MSET", "a", "1", "b", "2"], Some("OK"));
        check_text(c, &["SET", "c", "3", "EX", "100"], Some("OK"));
        let raw: Value = run(c, &["INFO"]);
        match (protocol, &raw) {
            (Protocol::Resp3, Value::VerbatimString { .. })
            | (Protocol::Resp2, Value::BulkString(_)) => {}
            _ => panic!("INFO in {protocol:?} answered {raw:?}"),
        }
        let info: redis::InfoDict = run(c, &["INFO"]);
        let version: String = info.get("redis_version").expect("redis_version");
        assert!(version.starts_with('7'), "{version}");
        let clients: i64 = info.get("connected_clients").expect("connected_clients");
        assert!(clients >= 1, "connected_clients {clients}");
        let used_memory: i64 = info.get("used_memory").expect("used_memory");
        assert!(used_memory > 0);
        let _: i64 = info.get("total_commands_processed").expect("stats section");
        let _: String = info.get("role").expect("replication section");
        let db0: String = info.get("db0").expect("keyspace section");
        assert!(db0.starts_with("keys=3,expires=1"), "{db0}");
        for section in ["server", "clients", "memory", "stats", "keyspace"] {
            let text: String = run(c, &["INFO", section]);
            let first_line = text.lines().next().unwrap_or_default().to_ascii_lowercase();
            assert_eq!(first_line, format!("# {section}"), "INFO {section}: {text}");
            assert!(
                text.lines()
                    .skip(1)
                    .all(|line| line.is_empty() || line.starts_with('#') || line.contains(':')),
                "INFO {section} has a line that is not name:value: {text}"
            );
        }
        let memory: String = run(c, &["INFO", "memory"]);
        assert!(!memory.contains("redis_version"), "{memory}");
        assert!(memory.contains("used_memory:"), "{memory}");
        let several: String = run(c, &["INFO", "server", "keyspace"]);
        assert!(several.contains("# Server") && several.contains("# Keyspace"));
        assert!(!several.contains("# Memory"));
    });
}

#[test]
fn client_commands_name_and_describe_the_connection() {
    for_each_protocol(|node, c, protocol| {
        check_text(c, &["CLIENT", "GETNAME"], None);
        check_text(c, &["CLIENT", "SETNAME", "worker-7"], Some("OK"));
        check_text(c, &["CLIENT", "GETNAME"], Some("worker-7"));
        let id: i64 = run(c, &["CLIENT", "ID"]);
        assert!(id > 0);
        let info: String = run(c, &["CLIENT", "INFO"]);
        let fields: HashMap<&str, &str> = info
            .split_whitespace()
            .filter_map(|field| field.split_once('='))
            .collect();
        assert_eq!(fields.get("id"), Some(&id.to_string().as_str()), "{info}");
        assert_eq!(fields.get("name"), Some(&"worker-7"), "{info}");
        assert_eq!(fields.get("db"), Some(&"0"), "{info}");
        let resp = match protocol {
            Protocol::Resp2 => "2",
            Protocol::Resp3 => "3",
        };
        assert_eq!(fields.get("resp"), Some(&resp), "{info}");
        // The redis crate announces itself with CLIENT SETINFO.
        assert_eq!(fields.get("lib-name"), Some(&"redis-rs"), "{info}");
        check_text(c, &["CLIENT", "SETINFO", "LIB-NAME", "tests"], Some("OK"));
        let info: String = run(c, &["CLIENT", "INFO"]);
        assert!(info.contains("lib-name=tests "), "{info}");
        // Another connection has another id.
        let mut other = connect(node, protocol);
        let other_id: i64 = run(&mut other, &["CLIENT", "ID"]);
        assert_ne!(other_id, id);
    });
}

#[test]
fn command_config_time_and_dbsize_answer_as_redis_does() {
    for_each_protocol(|_, c, protocol| {
        let count: i64 = run(c, &["COMMAND", "COUNT"]);
        assert!(count >= 60, "COMMAND COUNT {count}");
        let docs: Value = run(c, &["COMMAND", "DOCS", "GET", "SET"]);
        let docs: HashMap<String, Value> = match (protocol, &docs) {
            (Protocol::Resp3, Value::Map(_)) | (Protocol::Resp2, Value::Array(_)) => {
                FromRedisValue::from_redis_value(docs).expect("name/doc pairs")
            }
            _ => panic!("COMMAND DOCS in {protocol:?} answered {docs:?}"),
        };
        assert_eq!(docs.len(), 2);
        let get_doc: HashMap<String, Value> =
            FromRedisValue::from_redis_value(docs["get"].clone()).expect("a doc map");
        let summary: String =
            FromRedisValue::from_redis_value(get_doc["summary"].clone()).expect("a summary");
        assert!(!summary.is_empty());
        assert!(get_doc.contains_key("arguments"));
        let info: Vec<Value> = run(c, &["COMMAND", "INFO", "GET"]);
        assert_eq!(info.len(), 1);

        let config: HashMap<String, String> = run(c, &["CONFIG", "GET", "maxmemory"]);
        assert_eq!(config.get("maxmemory").map(String::as_str), Some("0"));
        let config: HashMap<String, String> = run(c, &["CONFIG", "GET", "max*"]);
        assert!(config.contains_key("maxclients"), "{config:?}");
        assert!(config.len() >= 2, "{config:?}");
        // Names match regardless of case, as in Redis.
        let upper: HashMap<String, String> = run(c, &["CONFIG", "GET", "MAX*"]);
        assert_eq!(upper, config);
        let none: HashMap<String, String> = run(c, &["CONFIG", "GET", "no-such-setting"]);
        assert!(none.is_empty());

        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as i64;
        let server_ms = server_time_ms(c);
        assert!(
            (server_ms - now_ms).abs() < 5_000,
            "TIME {server_ms} vs {now_ms}"
        );

        check_int(c, &["DBSIZE"], 0);
        check_text(c, &["MSET", "a", "1", "b", "2"], Some("OK"));
        check_int(c, &["DBSIZE"], 2);
        check_text(c, &["FLUSHDB"], Some("OK"));
        check_int(c, &["DBSIZE"], 0);
        check_text(c, &["ECHO", "hello"], Some("hello"));
        check_text(c, &["PING", "hello"], Some("hello"));
    });
}

#[test]
fn pipelines_answer_every_command_in_order() {
    for_each_protocol(|_, c, _| {
        let mut pipeline = redis::pipe();
        for index in 0..2000 {
            pipeline.cmd("SET").arg(format!("k{index}")).arg(index);
            pipeline.cmd("INCR").arg("counter");
            pipeline.cmd("GET").arg(format!("k{index}"));
            pipeline
                .cmd("HSET")
                .arg("h")
                .arg(format!("f{index}"))
                .arg(index);
        }
        let replies: Vec<Value> = pipeline.query(c).expect("the pipeline");
        assert_eq!(replies.len(), 8000);
        for (index, chunk) in replies.chunks(4).enumerate() {
            assert_eq!(chunk[0], Value::Okay, "SET #{index}");
            assert_eq!(chunk[1], Value::Int(index as i64 + 1), "INCR #{index}");
            assert_eq!(
                chunk[2],
                Value::BulkString(index.to_string().into_bytes()),
                "GET #{index}"
            );
            assert_eq!(chunk[3], Value::Int(1), "HSET #{index}");
        }
    });
}

#[test]
fn raw_pipelines_keep_order_through_errors_and_inline_commands() {
    let node = Scd::start(&[]);
    let mut stream = node.connect();
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for index in 0..5000 {
        match index % 5 {
            0 => {
                batch.extend_from_slice(&request(&[b"INCR", b"counter"]));
                expected.push(format!(":{}\r\n", index / 5 + 1).into_bytes());
            }
            1 => {
                batch.extend_from_slice(b"PING\r\n");
                expected.push(b"+PONG\r\n".to_vec());
            }
            2 => {
                batch.extend_from_slice(&request(&[b"GET", b"counter"]));
                let value = (index / 5 + 1).to_string();
                expected.push(format!("${}\r\n{value}\r\n", value.len()).into_bytes());
            }
            3 => {
                batch.extend_from_slice(&request(&[b"GET"]));
                expected.push(b"-ERR wrong number of arguments for 'get' command\r\n".to_vec());
            }
            _ => {
                batch.extend_from_slice(b"ECHO \"a b\"\r\n");
                expected.push(b"$3\r\na b\r\n".to_vec());
            }
        }
    }
    // One write with everything; the replies are read while it is still being sent.
    let mut writer = stream.try_clone().expect("a second handle");
    let sender = std::thread::spawn(move || writer.write_all(&batch));
    let mut reader = BufReader::new(&mut stream);
    for (index, expect) in expected.iter().enumerate() {
        let reply = read_reply(&mut reader).expect("a reply");
        assert_eq!(
            String::from_utf8_lossy(&reply),
            String::from_utf8_lossy(expect),
            "reply #{index}"
        );
    }
    sender.join().expect("sender").expect("sending the batch");
}

#[test]
fn resp3_replies_use_resp3_types_and_resp2_its_own() {
    let node = Scd::start(&[]);
    let exchange = |stream: &mut std::net::TcpStream, args: &[&[u8]]| -> String {
        stream.write_all(&request(args)).expect("send");
        String::from_utf8_lossy(&read_reply(&mut BufReader::new(stream)).expect("reply"))
            .into_owned()
    };
    let mut stream = node.connect();
    assert_eq!(
        exchange(&mut stream, &[b"HSET", b"h", b"f", b"v"]),
        ":1\r\n"
    );
    assert_eq!(exchange(&mut stream, &[b"GET", b"nope"]), "$-1\r\n");
    assert_eq!(
        exchange(&mut stream, &[b"HGETALL", b"h"]),
        "*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
    );
    assert_eq!(
        exchange(&mut stream, &[b"HMGET", b"h", b"nope"]),
        "*1\r\n$-1\r\n"
    );
    assert!(exchange(&mut stream, &[b"HELLO", b"3"]).starts_with("%7\r\n"));
    assert_eq!(exchange(&mut stream, &[b"GET", b"nope"]), "_\r\n");
    assert_eq!(
        exchange(&mut stream, &[b"HGETALL", b"h"]),
        "%1\r\n$1\r\nf\r\n$1\r\nv\r\n"
    );
    assert_eq!(
        exchange(&mut stream, &[b"HMGET", b"h", b"nope"]),
        "*1\r\n_\r\n"
    );
    assert!(exchange(&mut stream, &[b"INFO", b"server"]).starts_with('='));
    assert!(exchange(&mut stream, &[b"CONFIG", b"GET", b"maxmemory"]).starts_with("%1\r\n"));
    assert!(exchange(&mut stream, &[b"HELLO", b"2"]).starts_with("*14\r\n"));
    assert_eq!(exchange(&mut stream, &[b"GET", b"nope"]), "$-1\r\n");
}

#[test]
fn an_http_request_on_the_redis_port_closes_the_connection_and_runs_nothing() {
    // Cross protocol scripting: a web page makes a browser POST a body of Redis commands here.
    let node = Scd::start(&[]);
    for request_text in [
        "POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 18\r\n\r\nSET xproto pwned\r\n",
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nSET xproto pwned\r\n",
    ] {
        let mut stream = node.connect();
        stream
            .write_all(request_text.as_bytes())
            .expect("request sent");
        let mut answer = Vec::new();
        std::io::Read::read_to_end(&mut stream, &mut answer).expect("closed by the node");
        let answer = String::from_utf8_lossy(&answer).into_owned();
        assert!(
            !answer.contains("+OK"),
            "{request_text:?} ran a SET: {answer:?}"
        );
    }
    let mut c = connect(&node, Protocol::Resp2);
    let value: Option<String> = run(&mut c, &["GET", "xproto"]);
    assert_eq!(value, None);
    check_text(&mut c, &["PING"], Some("PONG"));
}

/// Requests a client sends while its `SCD.LOCK … WAIT` is pending are read ahead (to notice a
/// client that leaves) and run once the wait ends, without waiting for the client to send more:
/// whether the wait held up a request behind it or was the last request read.
#[test]
fn requests_sent_during_a_lock_wait_run_when_it_ends() {
    let node = Scd::start(&[]);
    let mut holder = connect(&node, Protocol::Resp2);
    let lock_waiters = |holder: &mut Connection, key: &str| -> Option<i64> {
        match run::<Value>(holder, &["SCD.LOCKINFO", key]) {
            Value::Array(items) => Some(i64::from_redis_value(items[4].clone()).expect("waiters")),
            _ => None,
        }
    };
    let mut waiter = node.connect();
    let mut replies = BufReader::new(waiter.try_clone().expect("clone"));
    let read = |replies: &mut BufReader<std::net::TcpStream>| {
        String::from_utf8_lossy(&read_reply(replies).expect("a reply in time")).into_owned()
    };
    for (key, behind) in [("first", Some("GET")), ("second", None)] {
        // The holder's lease ends the wait: the PING below is sent 700 ms before, and so read
        // while the wait is pending (the node reads ahead then), not after it.
        let _: i64 = run(&mut holder, &["SCD.LOCK", key, "700"]);
        let mut requests = request(&[b"SCD.LOCK", key.as_bytes(), b"60000", b"WAIT", b"20000"]);
        if let Some(name) = behind {
            requests.extend_from_slice(&request(&[name.as_bytes(), key.as_bytes()]));
        }
        waiter.write_all(&requests).expect("send");
        wait_until(IO_TIMEOUT, || {
            (lock_waiters(&mut holder, key) == Some(1)).then_some(())
        })
        .unwrap_or_else(|| panic!("the wait for {key} was never queued"));
        waiter.write_all(&request(&[b"PING"])).expect("send");
        let granted = read(&mut replies);
        assert!(granted.starts_with(':'), "{key}: {granted:?}");
        if behind.is_some() {
            assert_eq!(read(&mut replies), "$-1\r\n", "{key}");
        }
        assert_eq!(read(&mut replies), "+PONG\r\n", "{key}");
    }
}
