//! Property tests: arbitrary input never panics a parser nor makes it buffer beyond the limits,
//! and requests survive an encode/parse round trip.

use bytes::{Bytes, BytesMut};
use memcache::binary::{
    self, BinaryCommand, BinaryParser, CreateCounter, HEADER_BYTES, MAX_SASL_DATA_BYTES,
    MAX_SASL_MECHANISM_BYTES,
};
use memcache::text::{TextParser, TextRequest};
use memcache::{Direction, Limits, StoreMode};
use proptest::prelude::*;

/// Small limits, so that random input reaches them often.
fn small_limits() -> Limits {
    Limits {
        max_key_bytes: 16,
        max_value_bytes: 64,
        max_line_bytes: 80,
        max_keys_per_get: 4,
    }
}

/// Pieces of text commands, so random input is often almost valid, plus arbitrary bytes.
fn text_chunk() -> impl Strategy<Value = Vec<u8>> {
    const FRAGMENTS: &[&str] = &[
        "get ",
        "gets ",
        "gat 10 ",
        "set ",
        "add ",
        "cas ",
        "append ",
        "k ",
        "key ",
        "0 ",
        "5 ",
        "-1 ",
        "99999999999 ",
        "noreply",
        "\r\n",
        "\n",
        "hello",
        "delete ",
        "incr ",
        "touch ",
        "flush_all",
        "stats",
        "mg ",
        "ms ",
        "md ",
        "ma ",
        "mn",
        " v",
        " q",
        " T30",
        " MA",
        " O1",
        " k",
        " b",
        "\r",
        " ",
    ];
    prop_oneof![
        proptest::sample::select(FRAGMENTS).prop_map(|text| text.as_bytes().to_vec()),
        proptest::collection::vec(any::<u8>(), 0..40),
        (0usize..200).prop_map(|length| vec![b'x'; length]),
    ]
}

/// Feeds `chunks` to a text parser the way the node does and checks the buffering bound after
/// every `Ok(None)`. Returns the requests parsed.
fn feed_text(chunks: &[Vec<u8>], limits: &Limits) -> Vec<TextRequest> {
    // A line waits for at most max_line_bytes; a data block (alone in the buffer once its line
    // is consumed) for at most max_value_bytes and the first byte of its "\r\n".
    let bound = limits.max_line_bytes.max(limits.max_value_bytes + 1);
    let mut parser = TextParser::new();
    let mut buf = BytesMut::new();
    let mut requests = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match parser.parse(&mut buf, limits) {
                Ok(None) => {
                    assert!(buf.len() <= bound, "{} bytes buffered", buf.len());
                    break;
                }
                Ok(Some(request)) => requests.push(request),
                Err(error) if error.closes_connection() => return requests,
                Err(_) => {}
            }
        }
    }
    requests
}

/// Pieces of binary packets: plausible headers for every opcode, plus arbitrary bytes.
fn binary_chunk() -> impl Strategy<Value = Vec<u8>> {
    let header = (
        prop_oneof![Just(0x80u8), any::<u8>()],
        0u8..0x30,
        0u16..40,
        prop_oneof![Just(0u8), Just(4), Just(8), Just(20), any::<u8>()],
        0u32..200,
    )
        .prop_map(|(magic, opcode, key_length, extras_length, body_length)| {
            let mut bytes = vec![magic, opcode];
            bytes.extend_from_slice(&key_length.to_be_bytes());
            bytes.extend_from_slice(&[extras_length, 0, 0, 0]);
            bytes.extend_from_slice(&body_length.to_be_bytes());
            bytes.extend_from_slice(&[0; 12]);
            bytes
        });
    prop_oneof![
        header,
        proptest::collection::vec(any::<u8>(), 0..64),
        (0usize..300).prop_map(|length| vec![0u8; length]),
    ]
}

fn feed_binary(chunks: &[Vec<u8>], limits: &Limits) -> Vec<BinaryCommand> {
    // The largest request: header, the largest extras (arithmetic's 20), a key, and the larger
    // of a value and a SASL payload; Ok(None) means that request is not complete yet.
    let bound =
        HEADER_BYTES + 20 + limits.max_key_bytes + limits.max_value_bytes.max(MAX_SASL_DATA_BYTES);
    let mut parser = BinaryParser::new();
    let mut buf = BytesMut::new();
    let mut commands = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match parser.parse(&mut buf, limits) {
                Ok(None) => {
                    assert!(buf.len() < bound, "{} bytes buffered", buf.len());
                    break;
                }
                Ok(Some(request)) => commands.push(request.command),
                Err(error) if error.closes_connection() => return commands,
                Err(_) => {}
            }
        }
    }
    commands
}

fn key() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(0x21u8..0x7f, 1..=16).prop_map(Bytes::from)
}

fn value() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..=64).prop_map(Bytes::from)
}

fn cas_opt() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![Just(None), (1..=u64::MAX).prop_map(Some)]
}

fn exptime() -> impl Strategy<Value = i64> {
    0..=i64::from(u32::MAX)
}

fn store_mode() -> impl Strategy<Value = StoreMode> {
    proptest::sample::select(vec![
        StoreMode::Set,
        StoreMode::Add,
        StoreMode::Replace,
        StoreMode::Append,
        StoreMode::Prepend,
    ])
}

fn direction() -> impl Strategy<Value = Direction> {
    prop_oneof![Just(Direction::Increment), Just(Direction::Decrement)]
}

/// Every binary command, with the values its wire form can carry.
fn binary_command() -> impl Strategy<Value = BinaryCommand> {
    prop_oneof![
        (key(), any::<bool>(), any::<bool>()).prop_map(|(key, return_key, quiet)| {
            BinaryCommand::Get {
                key,
                return_key,
                quiet,
            }
        }),
        (key(), exptime(), any::<bool>(), any::<bool>()).prop_map(
            |(key, exptime, return_key, quiet)| BinaryCommand::GetAndTouch {
                key,
                exptime,
                return_key,
                quiet,
            }
        ),
        (key(), exptime()).prop_map(|(key, exptime)| BinaryCommand::Touch { key, exptime }),
        (
            store_mode(),
            key(),
            any::<u32>(),
            exptime(),
            value(),
            cas_opt(),
            any::<bool>()
        )
            .prop_map(
                |(mode, key, client_flags, exptime, value, compare_cas_opt, quiet)| {
                    // APPEND and PREPEND carry no flags nor exptime on the wire.
                    let concatenates = matches!(mode, StoreMode::Append | StoreMode::Prepend);
                    BinaryCommand::Store {
                        mode,
                        key,
                        client_flags: if concatenates { 0 } else { client_flags },
                        exptime: if concatenates { 0 } else { exptime },
                        value,
                        compare_cas_opt,
                        quiet,
                    }
                }
            ),
        (key(), cas_opt(), any::<bool>()).prop_map(|(key, compare_cas_opt, quiet)| {
            BinaryCommand::Delete {
                key,
                compare_cas_opt,
                quiet,
            }
        }),
        (
            key(),
            direction(),
            any::<u64>(),
            prop_oneof![
                Just(None),
                (any::<u64>(), 0..i64::from(u32::MAX))
                    .prop_map(|(initial, exptime)| Some(CreateCounter { initial, exptime }))
            ],
            cas_opt(),
            any::<bool>()
        )
            .prop_map(
                |(key, direction, delta, create_opt, compare_cas_opt, quiet)| {
                    BinaryCommand::Arithmetic {
                        key,
                        direction,
                        delta,
                        create_opt,
                        compare_cas_opt,
                        quiet,
                    }
                }
            ),
        (exptime(), any::<bool>()).prop_map(|(delay_seconds, quiet)| BinaryCommand::Flush {
            delay_seconds,
            quiet
        }),
        Just(BinaryCommand::Noop),
        Just(BinaryCommand::Version),
        any::<bool>().prop_map(|quiet| BinaryCommand::Quit { quiet }),
        prop_oneof![Just(None), key().prop_map(Some)]
            .prop_map(|group_opt| BinaryCommand::Stat { group_opt }),
        Just(BinaryCommand::SaslListMechanisms),
        (
            proptest::collection::vec(any::<u8>(), 1..=MAX_SASL_MECHANISM_BYTES),
            proptest::collection::vec(any::<u8>(), 0..=MAX_SASL_DATA_BYTES),
            any::<bool>()
        )
            .prop_map(|(mechanism, data, step)| {
                let (mechanism, data) = (Bytes::from(mechanism), Bytes::from(data));
                if step {
                    BinaryCommand::SaslStep { mechanism, data }
                } else {
                    BinaryCommand::SaslAuth { mechanism, data }
                }
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn text_parser_survives_arbitrary_input_within_its_limits(
        chunks in proptest::collection::vec(text_chunk(), 0..30),
    ) {
        feed_text(&chunks, &small_limits());
        feed_text(&chunks, &Limits::default());
    }

    #[test]
    fn binary_parser_survives_arbitrary_input_within_its_limits(
        chunks in proptest::collection::vec(binary_chunk(), 0..30),
    ) {
        feed_binary(&chunks, &small_limits());
        feed_binary(&chunks, &Limits::default());
    }

    #[test]
    fn binary_requests_survive_an_encode_parse_round_trip(
        commands in proptest::collection::vec((binary_command(), any::<u32>()), 1..8),
        split in any::<prop::sample::Index>(),
    ) {
        let mut wire = BytesMut::new();
        for (command, opaque) in &commands {
            binary::encode_request(&mut wire, *opaque, command);
        }
        // Pipelined and cut anywhere, as a network delivers them.
        let wire = wire.to_vec();
        let (head, tail) = wire.split_at(split.index(wire.len() + 1));
        let mut parser = BinaryParser::new();
        let mut buf = BytesMut::new();
        let mut parsed = Vec::new();
        for chunk in [head, tail] {
            buf.extend_from_slice(chunk);
            while let Some(request) = parser.parse(&mut buf, &Limits::default()).expect("valid") {
                parsed.push((request.command, request.header.opaque));
            }
        }
        prop_assert_eq!(parsed, commands);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn text_storage_and_get_lines_parse_back_to_what_was_sent(
        key in key(),
        client_flags in any::<u32>(),
        exptime in any::<i64>(),
        value in value(),
        noreply in any::<bool>(),
        split in any::<prop::sample::Index>(),
    ) {
        let mut wire = format!(
            "set {} {client_flags} {exptime} {}{}\r\n",
            String::from_utf8_lossy(&key),
            value.len(),
            if noreply { " noreply" } else { "" },
        )
        .into_bytes();
        wire.extend_from_slice(&value);
        wire.extend_from_slice(b"\r\nget ");
        wire.extend_from_slice(&key);
        wire.extend_from_slice(b"\r\n");
        let (head, tail) = wire.split_at(split.index(wire.len() + 1));
        let requests = feed_text(&[head.to_vec(), tail.to_vec()], &small_limits());
        prop_assert_eq!(requests.len(), 2);
        match &requests[0] {
            TextRequest::Store(store) => {
                prop_assert_eq!(store.mode, StoreMode::Set);
                prop_assert_eq!(&store.key, &key);
                prop_assert_eq!(store.client_flags, client_flags);
                prop_assert_eq!(store.exptime, exptime);
                prop_assert_eq!(&store.value, &value);
                prop_assert_eq!(store.noreply, noreply);
            }
            other => prop_assert!(false, "expected a store, got {other:?}"),
        }
        match &requests[1] {
            TextRequest::Get(get) => prop_assert_eq!(&get.keys, &vec![key.clone()]),
            other => prop_assert!(false, "expected a get, got {other:?}"),
        }
    }
}
