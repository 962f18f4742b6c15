//! The memcached binary protocol against a node started in-process: every opcode, quiet forms
//! and pipelines, CAS in answers, expiry, errors, STAT groups and SASL PLAIN.

mod memcached_support;

use bytes::Bytes;
use memcache::binary::{BinaryCommand, CreateCounter, opcode};
use memcache::{Direction, StoreMode};
use memcached_support::{Response, START_MS, TestNode};

const NO_ERROR: u16 = 0x0000;
const KEY_NOT_FOUND: u16 = 0x0001;
const KEY_EXISTS: u16 = 0x0002;
const VALUE_TOO_LARGE: u16 = 0x0003;
const INVALID_ARGUMENTS: u16 = 0x0004;
const ITEM_NOT_STORED: u16 = 0x0005;
const NON_NUMERIC_VALUE: u16 = 0x0006;
const AUTH_ERROR: u16 = 0x0020;
const UNKNOWN_COMMAND: u16 = 0x0081;

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn get(key: &str) -> BinaryCommand {
    BinaryCommand::Get {
        key: bytes(key),
        return_key: false,
        quiet: false,
    }
}

fn getk(key: &str, quiet: bool) -> BinaryCommand {
    BinaryCommand::Get {
        key: bytes(key),
        return_key: true,
        quiet,
    }
}

fn store(
    mode: StoreMode,
    key: &str,
    value: &str,
    client_flags: u32,
    exptime: i64,
) -> BinaryCommand {
    BinaryCommand::Store {
        mode,
        key: bytes(key),
        client_flags,
        exptime,
        value: bytes(value),
        compare_cas_opt: None,
        quiet: false,
    }
}

fn quiet(command: BinaryCommand) -> BinaryCommand {
    match command {
        BinaryCommand::Store {
            mode,
            key,
            client_flags,
            exptime,
            value,
            compare_cas_opt,
            ..
        } => BinaryCommand::Store {
            mode,
            key,
            client_flags,
            exptime,
            value,
            compare_cas_opt,
            quiet: true,
        },
        BinaryCommand::Delete {
            key,
            compare_cas_opt,
            ..
        } => BinaryCommand::Delete {
            key,
            compare_cas_opt,
            quiet: true,
        },
        other => panic!("no quiet form in these tests: {other:?}"),
    }
}

fn with_cas(command: BinaryCommand, cas: u64) -> BinaryCommand {
    match command {
        BinaryCommand::Store {
            mode,
            key,
            client_flags,
            exptime,
            value,
            quiet,
            ..
        } => BinaryCommand::Store {
            mode,
            key,
            client_flags,
            exptime,
            value,
            compare_cas_opt: Some(cas),
            quiet,
        },
        other => panic!("no CAS form in these tests: {other:?}"),
    }
}

fn delete(key: &str, compare_cas_opt: Option<u64>) -> BinaryCommand {
    BinaryCommand::Delete {
        key: bytes(key),
        compare_cas_opt,
        quiet: false,
    }
}

fn counter(
    key: &str,
    direction: Direction,
    delta: u64,
    create_opt: Option<CreateCounter>,
) -> BinaryCommand {
    BinaryCommand::Arithmetic {
        key: bytes(key),
        direction,
        delta,
        create_opt,
        compare_cas_opt: None,
        quiet: false,
    }
}

/// Checks a response's opcode, status, key and value; returns its CAS.
fn check(response: &Response, opcode: u8, status: u16, key: &str, value: &[u8]) -> u64 {
    assert_eq!(
        (
            response.header.opcode,
            response.status(),
            &response.key[..],
            &response.value[..]
        ),
        (opcode, status, key.as_bytes(), value),
        "{response:?}"
    );
    response.header.cas
}

#[tokio::test]
async fn gets_answer_flags_cas_and_the_key_for_the_k_forms() {
    let node = TestNode::start().await;
    let mut client = node.binary().await;
    let stored = client
        .call(&store(StoreMode::Set, "k", "v1", 0xdead_beef, 0))
        .await;
    let cas = check(&stored, opcode::SET, NO_ERROR, "", b"");
    assert_ne!(cas, 0);
    let hit = client.call(&get("k")).await;
    assert_eq!(check(&hit, opcode::GET, NO_ERROR, "", b"v1"), cas);
    assert_eq!(hit.client_flags(), 0xdead_beef);
    let hit = client.call(&getk("k", false)).await;
    assert_eq!(check(&hit, opcode::GETK, NO_ERROR, "k", b"v1"), cas);
    let miss = client.call(&get("nope")).await;
    check(&miss, opcode::GET, KEY_NOT_FOUND, "", b"Not found");
    let miss = client.call(&getk("nope", false)).await;
    check(&miss, opcode::GETK, KEY_NOT_FOUND, "nope", b"");
}

#[tokio::test]
async fn a_pipeline_of_quiet_gets_answers_only_the_hits_then_the_noop() {
    let node = TestNode::start().await;
    let mut client = node.binary().await;
    client.call(&store(StoreMode::Set, "a", "1", 1, 0)).await;
    client.call(&store(StoreMode::Set, "c", "3", 3, 0)).await;
    let first = client.send(&getk("a", true)).await;
    client.send(&getk("b", true)).await;
    let third = client.send(&getk("c", true)).await;
    client
        .send(&BinaryCommand::Get {
            key: bytes("b"),
            return_key: false,
            quiet: true,
        })
        .await;
    let noop = client.send(&BinaryCommand::Noop).await;
    let responses = client.read_until(noop).await;
    assert_eq!(responses.len(), 3, "{responses:?}");
    assert_eq!(responses[0].header.opaque, first);
    check(&responses[0], opcode::GETKQ, NO_ERROR, "a", b"1");
    assert_eq!(responses[1].header.opaque, third);
    check(&responses[1], opcode::GETKQ, NO_ERROR, "c", b"3");
    assert_eq!(responses[1].client_flags(), 3);
    check(&responses[2], opcode::NOOP, NO_ERROR, "", b"");
}

#[tokio::test]
async fn storage_opcodes_answer_memcacheds_statuses_and_quiet_forms_only_failures() {
    let node = TestNode::start().await;
    let mut client = node.binary().await;
    let cases: Vec<(BinaryCommand, u8, u16)> = vec![
        (store(StoreMode::Add, "k", "a", 0, 0), opcode::ADD, NO_ERROR),
        (
            store(StoreMode::Add, "k", "b", 0, 0),
            opcode::ADD,
            KEY_EXISTS,
        ),
        (
            store(StoreMode::Replace, "k", "c", 7, 0),
            opcode::REPLACE,
            NO_ERROR,
        ),
        (
            store(StoreMode::Replace, "none", "c", 0, 0),
            opcode::REPLACE,
            KEY_NOT_FOUND,
        ),
        (
            store(StoreMode::Append, "k", "d", 0, 0),
            opcode::APPEND,
            NO_ERROR,
        ),
        (
            store(StoreMode::Prepend, "k", "b", 0, 0),
            opcode::PREPEND,
            NO_ERROR,
        ),
        (
            store(StoreMode::Append, "none", "d", 0, 0),
            opcode::APPEND,
            ITEM_NOT_STORED,
        ),
        (
            store(StoreMode::Prepend, "none", "d", 0, 0),
            opcode::PREPEND,
            ITEM_NOT_STORED,
        ),
    ];
    for (command, expect_opcode, expect_status) in cases {
        let response = client.call(&command).await;
        assert_eq!(
            (response.header.opcode, response.status()),
            (expect_opcode, expect_status),
            "{command:?}: {response:?}"
        );
        let cas = response.header.cas;
        assert_eq!(cas != 0, expect_status == NO_ERROR, "{response:?}");
    }
    let hit = client.call(&get("k")).await;
    check(&hit, opcode::GET, NO_ERROR, "", b"bcd");
    assert_eq!(hit.client_flags(), 7);

    // Quiet forms: silent on success, answered on failure, in order, then the NOOP.
    client
        .send(&quiet(store(StoreMode::Set, "q", "1", 0, 0)))
        .await;
    let failed_add = client
        .send(&quiet(store(StoreMode::Add, "q", "2", 0, 0)))
        .await;
    client
        .send(&quiet(store(StoreMode::Append, "q", "x", 0, 0)))
        .await;
    let failed_replace = client
        .send(&quiet(store(StoreMode::Replace, "none", "x", 0, 0)))
        .await;
    client.send(&quiet(delete("q", None))).await;
    let failed_delete = client.send(&quiet(delete("q", None))).await;
    let noop = client.send(&BinaryCommand::Noop).await;
    let responses = client.read_until(noop).await;
    let statuses: Vec<(u32, u8, u16)> = responses
        .iter()
        .map(|response| {
            (
                response.header.opaque,
                response.header.opcode,
                response.status(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            (failed_add, opcode::ADDQ, KEY_EXISTS),
            (failed_replace, opcode::REPLACEQ, KEY_NOT_FOUND),
            (failed_delete, opcode::DELETEQ, KEY_NOT_FOUND),
            (noop, opcode::NOOP, NO_ERROR),
        ]
    );
}

#[tokio::test]
async fn a_cas_in_the_header_makes_every_write_a_compare_and_swap() {
    let node = TestNode::start().await;
    let mut client = node.binary().await;
    let cas = client
        .call(&store(StoreMode::Set, "k", "a", 0, 0))
        .await
        .header
        .cas;
    let stale = client
        .call(&with_cas(store(StoreMode::Set, "k", "b", 0, 0), cas + 1))
        .await;
    check(&stale, opcode::SET, KEY_EXISTS, "", b"Data exists for key.");
    let swapped = client
        .call(&with_cas(store(StoreMode::Set, "k", "b", 0, 0), cas))
        .await;
    let new_cas = check(&swapped, opcode::SET, NO_ERROR, "", b"");
    assert!(new_cas > cas);
    assert_eq!(client.call(&get("k")).await.header.cas, new_cas);
    let missing = client
        .call(&with_cas(store(StoreMode::Replace, "none", "b", 0, 0), cas))
        .await;
    check(&missing, opcode::REPLACE, KEY_NOT_FOUND, "", b"Not found");
    let append = client
        .call(&with_cas(store(StoreMode::Append, "k", "c", 0, 0), cas))
        .await;
    check(
        &append,
        opcode::APPEND,
        KEY_EXISTS,
        "",
        b"Data exists for key.",
    );
    let deleted_stale = client.call(&delete("k", Some(cas))).await;
    check(
        &deleted_stale,
        opcode::DELETE,
        KEY_EXISTS,
        "",
        b"Data exists for key.",
    );
    let deleted = client.call(&delete("k", Some(new_cas))).await;
    check(&deleted, opcode::DELETE, NO_ERROR, "", b"");
    let again = client.call(&delete("k", None)).await;
    check(&again, opcode::DELETE, KEY_NOT_FOUND, "", b"Not found");
}

#[tokio::test]
async fn increment_and_decrement_create_with_an_initial_value_only_when_asked() {
    let node = TestNode::start().await;
    let mut client = node.binary().await;
    let missing = client
        .call(&counter("n", Direction::Increment, 1, None))
        .await;
    check(&missing, opcode::INCREMENT, KEY_NOT_FOUND, "", b"Not found");
    let create = Some(CreateCounter {
        initial: 10,
        exptime: 0,
    });
    let created = client
        .call(&counter("n", Direction::Increment, 5, create))
        .await;
    assert_eq!((created.status(), created.counter()), (NO_ERROR, 10));
    assert_ne!(created.header.cas, 0);
    let incremented = client
        .call(&counter("n", Direction::Increment, 5, create))
        .await;
    assert_eq!(incremented.counter(), 15);
    let decremented = client
        .call(&counter("n", Direction::Decrement, 100, None))
        .await;
    check(
        &decremented,
        opcode::DECREMENT,
        NO_ERROR,
        "",
        &0u64.to_be_bytes(),
    );
    // Created already expired: answered with the initial value, nothing stored.
    let expired = Some(CreateCounter {
        initial: 7,
        exptime: START_MS as i64 / 1000 - 1,
    });
    let ghost = client
        .call(&counter("ghost", Direction::Increment, 1, expired))
        .await;
    assert_eq!(
        (ghost.status(), ghost.counter(), ghost.header.cas),
        (NO_ERROR, 7, 0)
    );
    check(
        &client.call(&get("ghost")).await,
        opcode::GET,
        KEY_NOT_FOUND,
        "",
        b"Not found",
    );

    client
        .call(&store(StoreMode::Set, "word", "abc", 0, 0))
        .await;
    let non_numeric = client
        .call(&counter("word", Direction::Increment, 1, None))
        .await;
    check(
        &non_numeric,
        opcode::INCREMENT,
        NON_NUMERIC_VALUE,
        "",
        b"Non-numeric server-side value for incr or decr",
    );
    // The counter is text to the other commands.
    check(
        &client.call(&get("n")).await,
        opcode::GET,
        NO_ERROR,
        "",
        b"0",
    );
    let quiet_increment = BinaryCommand::Arithmetic {
        key: bytes("n"),
        direction: Direction::Increment,
        delta: 2,
        create_opt: None,
        compare_cas_opt: None,
        quiet: true,
    };
    client.send(&quiet_increment).await;
    let quiet_miss = client
        .send(&BinaryCommand::Arithmetic {
            key: bytes("none"),
            direction: Direction::Decrement,
            delta: 1,
            create_opt: None,
            compare_cas_opt: None,
            quiet: true,
        })
        .await;
    let noop = client.send(&BinaryCommand::Noop).await;
    let responses = client.read_until(noop).await;
    assert_eq!(responses.len(), 2, "{responses:?}");
    assert_eq!(responses[0].header.opaque, quiet_miss);
    check(
        &responses[0],
        opcode::DECREMENTQ,
        KEY_NOT_FOUND,
        "",
        b"Not found",
    );
    let hit = client.call(&get("n")).await;
    let cas = check(&hit, opcode::GET, NO_ERROR, "", b"2");
    let compare = |compare_cas| BinaryCommand::Arithmetic {
        key: bytes("n"),
        direction: Direction::Increment,
        delta: 1,
        create_opt: None,
        compare_cas_opt: Some(compare_cas),
        quiet: false,
    };
    let stale = client.call(&compare(cas + 1)).await;
    check(
        &stale,
        opcode::INCREMENT,
        KEY_EXISTS,
        "",
        b"Data exists for key.",
    );
    let swapped = client.call(&compare(cas)).await;
    assert_eq!((swapped.status(), swapped.counter()), (NO_ERROR, 3));
    assert!(swapped.header.cas > cas);
}

#[tokio::test]
async fn touch_and_gat_move_the_expiry_and_gat_answers_the_value() {
    let node = TestNode::start().await;
    let mut client = node.binary().await;
    client.call(&store(StoreMode::Set, "t", "v", 9, 10)).await;
    let touched = client
        .call(&BinaryCommand::Touch {
            key: bytes("t"),
            exptime: 100,
        })
        .await;
    check(&touched, opcode::TOUCH, NO_ERROR, "", b"");
    assert_eq!(touched.client_flags(), 9);
    let missing = client
        .call(&BinaryCommand::Touch {
            key: bytes("none"),
            exptime: 100,
        })
        .await;
    check(&missing, opcode::TOUCH, KEY_NOT_FOUND, "", b"Not found");
    node.clock.advance_ms(50_000);
    let gat = client
        .call(&BinaryCommand::GetAndTouch {
            key: bytes("t"),
            exptime: 10,
            return_key: true,
            quiet: false,
        })
        .await;
    check(&gat, opcode::GATK, NO_ERROR, "t", b"v");
    assert_eq!(gat.client_flags(), 9);
    let quiet_miss = client
        .send(&BinaryCommand::GetAndTouch {
            key: bytes("none"),
            exptime: 10,
            return_key: false,
            quiet: true,
        })
        .await;
    let noop = client.send(&BinaryCommand::Noop).await;
    let responses = client.read_until(noop).await;
    assert!(
        responses
            .iter()
            .all(|response| response.header.opaque != quiet_miss)
    );
    node.clock.advance_ms(10_001);
    check(
        &client.call(&get("t")).await,
        opcode::GET,
        KEY_NOT_FOUND,
        "",
        b"Not found",
    );
}

#[tokio::test]
async fn expiry_counts_up_to_thirty_days_from_now_and_beyond_as_absolute_time() {
    let node = TestNode::start().await;
    let mut client = node.binary().await;
    let absolute = (START_MS / 1000 + 60) as i64;
    client.call(&store(StoreMode::Set, "rel", "r", 0, 30)).await;
    client
        .call(&store(StoreMode::Set, "abs", "a", 0, absolute))
        .await;
    client
        .call(&store(StoreMode::Set, "month", "m", 0, 2_592_000))
        .await;
    node.clock.advance_ms(30_001);
    check(
        &client.call(&get("rel")).await,
        opcode::GET,
        KEY_NOT_FOUND,
        "",
        b"Not found",
    );
    check(
        &client.call(&get("abs")).await,
        opcode::GET,
        NO_ERROR,
        "",
        b"a",
    );
    node.clock.advance_ms(30_000);
    check(
        &client.call(&get("abs")).await,
        opcode::GET,
        KEY_NOT_FOUND,
        "",
        b"Not found",
    );
    check(
        &client.call(&get("month")).await,
        opcode::GET,
        NO_ERROR,
        "",
        b"m",
    );
    // An absolute time already past stores nothing and removes the item a SET replaces.
    let past = (START_MS / 1000) as i64;
    let stored = client
        .call(&store(StoreMode::Set, "month", "x", 0, past))
        .await;
    check(&stored, opcode::SET, NO_ERROR, "", b"");
    check(
        &client.call(&get("month")).await,
        opcode::GET,
        KEY_NOT_FOUND,
        "",
        b"Not found",
    );
}

#[tokio::test]
async fn server_opcodes_version_noop_flush_stat_and_quit() {
    let node = TestNode::start().await;
    let mut client = node.binary().await;
    check(
        &client.call(&BinaryCommand::Version).await,
        opcode::VERSION,
        NO_ERROR,
        "",
        b"1.6.21 scd 0.0.0",
    );
    check(
        &client.call(&BinaryCommand::Noop).await,
        opcode::NOOP,
        NO_ERROR,
        "",
        b"",
    );
    // libmemcached's memcached_verbosity: accepted, with no effect.
    check(
        &client.call(&BinaryCommand::Verbosity { level: 1 }).await,
        opcode::VERBOSITY,
        NO_ERROR,
        "",
        b"",
    );
    client.call(&store(StoreMode::Set, "k", "v", 0, 0)).await;
    let stats = client.stats(None).await;
    let stat = |name: &str| {
        stats
            .iter()
            .find(|(stat_name, _)| stat_name == name)
            .map(|(_, value)| value.clone())
            .unwrap_or_else(|| panic!("no {name} in {stats:?}"))
    };
    assert_eq!(stat("cmd_set"), "1");
    assert_eq!(stat("curr_items"), "1");
    assert_eq!(stat("version"), "1.6.21 scd 0.0.0");
    let settings = client.stats(Some("settings")).await;
    assert!(settings.iter().any(|(name, _)| name == "item_size_max"));
    assert!(client.stats(Some("items")).await.is_empty());
    let unknown = client
        .call(&BinaryCommand::Stat {
            group_opt: Some(bytes("bogus")),
        })
        .await;
    check(&unknown, opcode::STAT, KEY_NOT_FOUND, "", b"Not found");
    let flushed = client
        .call(&BinaryCommand::Flush {
            delay_seconds: 0,
            quiet: false,
        })
        .await;
    check(&flushed, opcode::FLUSH, NO_ERROR, "", b"");
    check(
        &client.call(&get("k")).await,
        opcode::GET,
        KEY_NOT_FOUND,
        "",
        b"Not found",
    );
    client
        .send(&BinaryCommand::Flush {
            delay_seconds: 0,
            quiet: true,
        })
        .await;
    let noop = client.send(&BinaryCommand::Noop).await;
    assert_eq!(client.read_until(noop).await.len(), 1);
    let quit = client.call(&BinaryCommand::Quit { quiet: false }).await;
    check(&quit, opcode::QUIT, NO_ERROR, "", b"");
    client.expect_closed().await;

    // A packet after the quit, in the same write, is not read: neither answered nor counted.
    let error_replies = || async {
        let info = String::from_utf8(node.resp(&[b"INFO", b"stats"]).await).expect("text");
        info.lines()
            .find_map(|line| line.strip_prefix("total_error_replies:"))
            .map(str::to_string)
            .expect("total_error_replies in INFO")
    };
    let errors_before = error_replies().await;
    let mut quiet_quitter = node.binary().await;
    let mut packets = bytes::BytesMut::new();
    memcache::binary::encode_request(&mut packets, 1, &BinaryCommand::Quit { quiet: true });
    packets.extend_from_slice(&[0x80, 0x45, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    packets.extend_from_slice(&[0; 8]);
    quiet_quitter.send_raw(&packets).await;
    quiet_quitter.expect_closed().await;
    assert_eq!(error_replies().await, errors_before);
}

/// Packets sent in one write are taken off the input in batches; a packet the front end refuses
/// while taking them is answered in its place among the responses.
#[tokio::test]
async fn refused_packets_in_a_pipeline_are_answered_in_their_place() {
    let node = TestNode::start().await;
    let mut client = node.binary().await;
    let mut packets = bytes::BytesMut::new();
    let mut expected = Vec::new();
    let mut opaque = 100_u32;
    let mut push = |packets: &mut bytes::BytesMut, command: Option<&BinaryCommand>, answer| {
        opaque += 1;
        match command {
            Some(command) => memcache::binary::encode_request(packets, opaque, command),
            None => {
                // An opcode scd does not know, with a 3-byte body.
                packets.extend_from_slice(&[0x80, 0x45, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]);
                packets.extend_from_slice(&opaque.to_be_bytes());
                packets.extend_from_slice(&[0; 8]);
                packets.extend_from_slice(b"abc");
            }
        }
        expected.push((opaque, answer));
    };
    for index in 0..30 {
        let key = format!("k{index}");
        let value = format!("v{index}");
        push(
            &mut packets,
            Some(&store(StoreMode::Set, &key, &value, 0, 0)),
            (opcode::SET, NO_ERROR, String::new()),
        );
        if index % 4 == 0 {
            push(
                &mut packets,
                None,
                (0x45, UNKNOWN_COMMAND, "unknown command 0x45".to_string()),
            );
        }
        push(
            &mut packets,
            Some(&get(&key)),
            (opcode::GET, NO_ERROR, value),
        );
    }
    push(
        &mut packets,
        Some(&BinaryCommand::Noop),
        (opcode::NOOP, NO_ERROR, String::new()),
    );
    let last = expected.last().expect("packets").0;
    client.send_raw(&packets).await;
    let answered: Vec<(u32, (u8, u16, String))> = client
        .read_until(last)
        .await
        .iter()
        .map(|response| {
            (
                response.header.opaque,
                (
                    response.header.opcode,
                    response.status(),
                    String::from_utf8_lossy(&response.value).into_owned(),
                ),
            )
        })
        .collect();
    assert_eq!(answered, expected);
}

#[tokio::test]
async fn refused_packets_get_memcached_statuses_and_only_broken_streams_close() {
    let node = TestNode::start_with(|config| config.max_value_bytes = 1024).await;
    let mut client = node.binary().await;
    // An opcode scd does not know: its body is skipped and the connection goes on.
    let mut unknown = vec![0x80, 0x45, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 9];
    unknown.extend_from_slice(&[0; 8]);
    unknown.extend_from_slice(b"abc");
    client.send_raw(&unknown).await;
    let response = client.read().await;
    assert_eq!(
        (
            response.header.opcode,
            response.status(),
            response.header.opaque
        ),
        (0x45, UNKNOWN_COMMAND, 9)
    );
    let too_large = client
        .call(&store(StoreMode::Set, "big", &"x".repeat(1025), 0, 0))
        .await;
    assert_eq!(too_large.status(), VALUE_TOO_LARGE);
    check(
        &client.call(&get("big")).await,
        opcode::GET,
        KEY_NOT_FOUND,
        "",
        b"Not found",
    );
    // Appending past the limit is refused by the store, with the limit named.
    client
        .call(&store(StoreMode::Set, "full", &"y".repeat(1024), 0, 0))
        .await;
    let grown = client
        .call(&store(StoreMode::Append, "full", "z", 0, 0))
        .await;
    check(
        &grown,
        opcode::APPEND,
        VALUE_TOO_LARGE,
        "",
        b"value is larger than max-value-bytes (1024)",
    );
    check(
        &client.call(&BinaryCommand::Version).await,
        opcode::VERSION,
        NO_ERROR,
        "",
        b"1.6.21 scd 0.0.0",
    );
    // A GET with extras cannot be read safely: answered, then the connection closes.
    let mut bad_shape = vec![0x80, opcode::GET, 0, 1, 4, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 1];
    bad_shape.extend_from_slice(&[0; 8]);
    bad_shape.extend_from_slice(b"xxxxk");
    client.send_raw(&bad_shape).await;
    assert_eq!(client.read().await.status(), INVALID_ARGUMENTS);
    client.expect_closed().await;
}

#[tokio::test]
async fn binary_and_text_and_resp_clients_share_keys_and_flags() {
    let node = TestNode::start().await;
    let mut binary = node.binary().await;
    binary
        .call(&store(StoreMode::Set, "shared", "from-binary", 77, 0))
        .await;
    let mut text = node.text().await;
    text.check(
        "get shared\r\n",
        "VALUE shared 77 11\r\nfrom-binary\r\nEND\r\n",
    )
    .await;
    assert_eq!(
        node.resp(&[b"GET", b"shared"]).await,
        b"$11\r\nfrom-binary\r\n"
    );
    assert_eq!(node.resp(&[b"SET", b"r", b"resp"]).await, b"+OK\r\n");
    let hit = binary.call(&get("r")).await;
    check(&hit, opcode::GET, NO_ERROR, "", b"resp");
    assert_eq!(hit.client_flags(), 0);
}

#[tokio::test]
async fn with_a_password_binary_clients_authenticate_with_sasl_plain() {
    let node = TestNode::start_with(|config| config.requirepass_opt = Some("s3cret".into())).await;
    let mut client = node.binary().await;
    let mechanisms = client.call(&BinaryCommand::SaslListMechanisms).await;
    check(&mechanisms, opcode::SASL_LIST_MECHS, NO_ERROR, "", b"PLAIN");
    check(
        &client.call(&BinaryCommand::Version).await,
        opcode::VERSION,
        NO_ERROR,
        "",
        b"1.6.21 scd 0.0.0",
    );
    let wrong = client
        .call(&BinaryCommand::SaslAuth {
            mechanism: bytes("PLAIN"),
            data: Bytes::from_static(b"\0user\0wrong"),
        })
        .await;
    check(&wrong, opcode::SASL_AUTH, AUTH_ERROR, "", b"Auth failure.");
    let step = client
        .call(&BinaryCommand::SaslStep {
            mechanism: bytes("PLAIN"),
            data: Bytes::from_static(b"\0user\0s3cret"),
        })
        .await;
    assert_eq!(step.status(), AUTH_ERROR);
    let right = client
        .call(&BinaryCommand::SaslAuth {
            mechanism: bytes("PLAIN"),
            data: Bytes::from_static(b"\0user\0s3cret"),
        })
        .await;
    check(&right, opcode::SASL_AUTH, NO_ERROR, "", b"Authenticated");
    check(
        &client.call(&store(StoreMode::Set, "k", "v", 0, 0)).await,
        opcode::SET,
        NO_ERROR,
        "",
        b"",
    );
    check(
        &client.call(&get("k")).await,
        opcode::GET,
        NO_ERROR,
        "",
        b"v",
    );

    // Before authenticating any other command is refused, and the connection closed, as
    // memcached does.
    let mut unauthenticated = node.binary().await;
    let refused = unauthenticated.call(&get("k")).await;
    check(&refused, opcode::GET, AUTH_ERROR, "", b"Auth failure.");
    unauthenticated.expect_closed().await;
    // A value too large for an unauthenticated client is refused the same way.
    let mut large = node.binary().await;
    let refused = large
        .call(&store(StoreMode::Set, "k", &"x".repeat(4096), 0, 0))
        .await;
    assert_eq!(
        (refused.header.opcode, refused.status()),
        (opcode::SET, AUTH_ERROR)
    );
    large.expect_closed().await;
}

#[tokio::test]
async fn without_a_password_any_sasl_exchange_succeeds() {
    let node = TestNode::start().await;
    let mut client = node.binary().await;
    let answer = client
        .call(&BinaryCommand::SaslAuth {
            mechanism: bytes("PLAIN"),
            data: Bytes::from_static(b"\0user\0anything"),
        })
        .await;
    check(&answer, opcode::SASL_AUTH, NO_ERROR, "", b"Authenticated");
}
