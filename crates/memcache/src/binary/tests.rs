//! Data-driven tests of the binary parser and encoders, with the packets of the protocol spec
//! (draft-stone-memcache-binary, memcached's doc/protocol-binary.txt).

use bytes::{BufMut, Bytes, BytesMut};

use super::*;
use crate::{Direction, Limits, StoreMode};

type Outcome = Result<BinaryCommand, BinaryError>;

/// Builds a request packet by hand, independently of `encode_request`.
fn packet(opcode: u8, extras: &[u8], key: &[u8], value: &[u8], opaque: u32, cas: u64) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u8(0x80);
    out.put_u8(opcode);
    out.put_u16(key.len() as u16);
    out.put_u8(extras.len() as u8);
    out.put_u8(0);
    out.put_u16(0);
    out.put_u32((extras.len() + key.len() + value.len()) as u32);
    out.put_u32(opaque);
    out.put_u64(cas);
    out.put_slice(extras);
    out.put_slice(key);
    out.put_slice(value);
    out.to_vec()
}

fn simple(opcode: u8) -> Vec<u8> {
    packet(opcode, &[], &[], &[], 0, 0)
}

/// Feeds `chunks` to one parser like the node does; stops at an error that closes the connection.
fn feed<'a>(chunks: impl IntoIterator<Item = &'a [u8]>, limits: &Limits) -> Vec<Outcome> {
    let mut parser = BinaryParser::new();
    let mut buf = BytesMut::new();
    let mut outcomes = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match parser.parse(&mut buf, limits) {
                Ok(None) => break,
                Ok(Some(request)) => outcomes.push(Ok(request.command)),
                Err(error) => {
                    let closes = error.closes_connection();
                    outcomes.push(Err(error));
                    if closes {
                        return outcomes;
                    }
                }
            }
        }
    }
    outcomes
}

/// Parses `input` whole, byte by byte, and split in two at every boundary; each must give `expect`.
fn check_with(input: &[u8], limits: &Limits, expect: &[Outcome]) {
    assert_eq!(feed([input], limits), expect, "whole");
    assert_eq!(feed(input.chunks(1), limits), expect, "byte by byte");
    for split in 0..=input.len() {
        let (head, tail) = input.split_at(split);
        assert_eq!(feed([head, tail], limits), expect, "split at {split}");
    }
}

fn check(input: &[u8], expect: &[Outcome]) {
    check_with(input, &Limits::default(), expect);
}

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn header_of(input: &[u8]) -> RequestHeader {
    let bytes: &[u8; HEADER_BYTES] = input[..HEADER_BYTES].try_into().expect("24 bytes");
    RequestHeader::parse(bytes)
}

/// The GET request of the spec, section 4.2.1.
const SPEC_GET_HELLO: [u8; 29] = [
    0x80, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, b'H', b'e', b'l', b'l', b'o',
];

/// The ADD request of the spec, section 4.3.1: flags 0xdeadbeef, expiry two hours.
const SPEC_ADD_HELLO_WORLD: [u8; 42] = [
    0x80, 0x02, 0x00, 0x05, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x12, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x00, 0x0e, 0x10,
    b'H', b'e', b'l', b'l', b'o', b'W', b'o', b'r', b'l', b'd',
];

fn hello_world_store(mode: StoreMode) -> BinaryCommand {
    BinaryCommand::Store {
        mode,
        key: b("Hello"),
        client_flags: 0xdead_beef,
        exptime: 3600,
        value: b("World"),
        compare_cas_opt: None,
        quiet: false,
    }
}

#[test]
fn the_spec_get_request_parses() {
    check(
        &SPEC_GET_HELLO,
        &[Ok(BinaryCommand::Get {
            key: b("Hello"),
            return_key: false,
            quiet: false,
        })],
    );
}

#[test]
fn the_spec_add_request_parses_and_a_set_differs_only_by_opcode() {
    check(
        &SPEC_ADD_HELLO_WORLD,
        &[Ok(hello_world_store(StoreMode::Add))],
    );
    let mut set = SPEC_ADD_HELLO_WORLD;
    set[1] = opcode::SET;
    check(&set, &[Ok(hello_world_store(StoreMode::Set))]);
}

#[test]
fn encode_request_reproduces_the_spec_packets() {
    let mut out = BytesMut::new();
    encode_request(
        &mut out,
        0,
        &BinaryCommand::Get {
            key: b("Hello"),
            return_key: false,
            quiet: false,
        },
    );
    encode_request(&mut out, 0, &hello_world_store(StoreMode::Add));
    assert_eq!(&out[..29], &SPEC_GET_HELLO);
    assert_eq!(&out[29..], &SPEC_ADD_HELLO_WORLD);
}

fn request(input: &[u8]) -> BinaryRequest {
    let mut buf = BytesMut::from(input);
    BinaryParser::new()
        .parse(&mut buf, &Limits::default())
        .expect("a valid request")
        .expect("a complete request")
}

#[test]
fn get_responses_match_the_spec() {
    let get = request(&SPEC_GET_HELLO);
    let mut out = BytesMut::new();
    encode_get_hit(&mut out, &get, 0xdead_beef, 1, b"World");
    // Section 4.2.1, "get/getq response".
    let expected: [u8; 33] = [
        0x81, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef, b'W', b'o',
        b'r', b'l', b'd',
    ];
    assert_eq!(&out[..], &expected);

    // Section 4.1.1: the miss. memcached answers a plain GET miss with "Not found".
    out.clear();
    encode_get_miss(&mut out, &get);
    let expected: [u8; 33] = [
        0x81, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, b'N', b'o', b't', b' ', b'f', b'o',
        b'u', b'n', b'd',
    ];
    assert_eq!(&out[..], &expected);
}

#[test]
fn getk_responses_carry_the_key() {
    let mut getk = SPEC_GET_HELLO;
    getk[1] = opcode::GETK;
    let getk = request(&getk);
    let mut out = BytesMut::new();
    encode_get_hit(&mut out, &getk, 0xdead_beef, 1, b"World");
    // The spec's "getk/getkq response" figure, with two of its typos fixed: the opcode is GETK's
    // (0x0c, not 0x00) and the body is 14 bytes (flags, key and value), not 9.
    let expected: [u8; 38] = [
        0x81, 0x0c, 0x00, 0x05, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0e, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef, b'H', b'e',
        b'l', b'l', b'o', b'W', b'o', b'r', b'l', b'd',
    ];
    assert_eq!(&out[..], &expected);

    // A GETK miss carries the key instead of "Not found", as memcached does.
    out.clear();
    encode_get_miss(&mut out, &getk);
    let header = ResponseHeader::parse(out[..HEADER_BYTES].try_into().expect("24 bytes"));
    assert_eq!(header.status, Status::KeyNotFound.code());
    assert_eq!((header.key_length, header.total_body_length), (5, 5));
    assert_eq!(&out[HEADER_BYTES..], b"Hello");
}

#[test]
fn the_add_response_matches_the_spec() {
    let add = request(&SPEC_ADD_HELLO_WORLD);
    let mut out = BytesMut::new();
    encode_success(&mut out, &add, 1);
    // Section 4.3.1, "Successful add response".
    let mut expected = [0u8; 24];
    expected[0] = 0x81;
    expected[1] = 0x02;
    expected[23] = 0x01;
    assert_eq!(&out[..], &expected);
}

#[test]
fn every_get_form_parses() {
    for (code, return_key, quiet) in [
        (opcode::GET, false, false),
        (opcode::GETQ, false, true),
        (opcode::GETK, true, false),
        (opcode::GETKQ, true, true),
    ] {
        check(
            &packet(code, &[], b"k", &[], 0, 0),
            &[Ok(BinaryCommand::Get {
                key: b("k"),
                return_key,
                quiet,
            })],
        );
    }
    for (code, return_key, quiet) in [
        (opcode::GAT, false, false),
        (opcode::GATQ, false, true),
        (opcode::GATK, true, false),
        (opcode::GATKQ, true, true),
    ] {
        check(
            &packet(code, &60u32.to_be_bytes(), b"k", &[], 0, 0),
            &[Ok(BinaryCommand::GetAndTouch {
                key: b("k"),
                exptime: 60,
                return_key,
                quiet,
            })],
        );
    }
    check(
        &packet(opcode::TOUCH, &u32::MAX.to_be_bytes(), b"k", &[], 0, 0),
        &[Ok(BinaryCommand::Touch {
            key: b("k"),
            exptime: i64::from(u32::MAX),
        })],
    );
}

#[test]
fn every_storage_form_parses() {
    let extras = [&7u32.to_be_bytes()[..], &30u32.to_be_bytes()].concat();
    for (code, mode, quiet) in [
        (opcode::SET, StoreMode::Set, false),
        (opcode::SETQ, StoreMode::Set, true),
        (opcode::ADD, StoreMode::Add, false),
        (opcode::ADDQ, StoreMode::Add, true),
        (opcode::REPLACE, StoreMode::Replace, false),
        (opcode::REPLACEQ, StoreMode::Replace, true),
    ] {
        check(
            &packet(code, &extras, b"k", b"v", 0, 0),
            &[Ok(BinaryCommand::Store {
                mode,
                key: b("k"),
                client_flags: 7,
                exptime: 30,
                value: b("v"),
                compare_cas_opt: None,
                quiet,
            })],
        );
    }
    for (code, mode, quiet) in [
        (opcode::APPEND, StoreMode::Append, false),
        (opcode::APPENDQ, StoreMode::Append, true),
        (opcode::PREPEND, StoreMode::Prepend, false),
        (opcode::PREPENDQ, StoreMode::Prepend, true),
    ] {
        check(
            &packet(code, &[], b"k", b"tail", 0, 42),
            &[Ok(BinaryCommand::Store {
                mode,
                key: b("k"),
                client_flags: 0,
                exptime: 0,
                value: b("tail"),
                compare_cas_opt: Some(42),
                quiet,
            })],
        );
    }
    // An empty value is a value.
    check(
        &packet(opcode::SET, &extras, b"k", &[], 0, 9),
        &[Ok(BinaryCommand::Store {
            mode: StoreMode::Set,
            key: b("k"),
            client_flags: 7,
            exptime: 30,
            value: Bytes::new(),
            compare_cas_opt: Some(9),
            quiet: false,
        })],
    );
}

#[test]
fn delete_and_arithmetic_parse_with_their_cas() {
    check(
        &packet(opcode::DELETE, &[], b"k", &[], 0, 0),
        &[Ok(BinaryCommand::Delete {
            key: b("k"),
            compare_cas_opt: None,
            quiet: false,
        })],
    );
    check(
        &packet(opcode::DELETEQ, &[], b"k", &[], 0, 5),
        &[Ok(BinaryCommand::Delete {
            key: b("k"),
            compare_cas_opt: Some(5),
            quiet: true,
        })],
    );
    let extras = |delta: u64, initial: u64, expiration: u32| {
        [
            &delta.to_be_bytes()[..],
            &initial.to_be_bytes(),
            &expiration.to_be_bytes(),
        ]
        .concat()
    };
    for (code, direction, quiet) in [
        (opcode::INCREMENT, Direction::Increment, false),
        (opcode::INCREMENTQ, Direction::Increment, true),
        (opcode::DECREMENT, Direction::Decrement, false),
        (opcode::DECREMENTQ, Direction::Decrement, true),
    ] {
        check(
            &packet(code, &extras(2, 10, 60), b"n", &[], 0, 0),
            &[Ok(BinaryCommand::Arithmetic {
                key: b("n"),
                direction,
                delta: 2,
                create_opt: Some(CreateCounter {
                    initial: 10,
                    exptime: 60,
                }),
                compare_cas_opt: None,
                quiet,
            })],
        );
    }
    // An expiration of 0xffffffff means: do not create a missing counter.
    check(
        &packet(opcode::INCREMENT, &extras(1, 0, u32::MAX), b"n", &[], 0, 3),
        &[Ok(BinaryCommand::Arithmetic {
            key: b("n"),
            direction: Direction::Increment,
            delta: 1,
            create_opt: None,
            compare_cas_opt: Some(3),
            quiet: false,
        })],
    );
}

#[test]
fn commands_without_a_key_parse() {
    check(&simple(opcode::NOOP), &[Ok(BinaryCommand::Noop)]);
    check(
        &packet(opcode::VERBOSITY, &[0, 0, 0, 3], &[], &[], 0, 0),
        &[Ok(BinaryCommand::Verbosity { level: 3 })],
    );
    check(&simple(opcode::VERSION), &[Ok(BinaryCommand::Version)]);
    check(
        &simple(opcode::QUIT),
        &[Ok(BinaryCommand::Quit { quiet: false })],
    );
    check(
        &simple(opcode::QUITQ),
        &[Ok(BinaryCommand::Quit { quiet: true })],
    );
    check(
        &simple(opcode::FLUSH),
        &[Ok(BinaryCommand::Flush {
            delay_seconds: 0,
            quiet: false,
        })],
    );
    check(
        &packet(opcode::FLUSHQ, &10u32.to_be_bytes(), &[], &[], 0, 0),
        &[Ok(BinaryCommand::Flush {
            delay_seconds: 10,
            quiet: true,
        })],
    );
    check(
        &simple(opcode::STAT),
        &[Ok(BinaryCommand::Stat { group_opt: None })],
    );
    check(
        &packet(opcode::STAT, &[], b"settings", &[], 0, 0),
        &[Ok(BinaryCommand::Stat {
            group_opt: Some(b("settings")),
        })],
    );
}

#[test]
fn sasl_commands_parse_within_their_bounds() {
    check(
        &simple(opcode::SASL_LIST_MECHS),
        &[Ok(BinaryCommand::SaslListMechanisms)],
    );
    check(
        &packet(opcode::SASL_AUTH, &[], b"PLAIN", b"\0user\0secret", 0, 0),
        &[Ok(BinaryCommand::SaslAuth {
            mechanism: b("PLAIN"),
            data: b("\0user\0secret"),
        })],
    );
    check(
        &packet(opcode::SASL_STEP, &[], b"PLAIN", b"more", 0, 0),
        &[Ok(BinaryCommand::SaslStep {
            mechanism: b("PLAIN"),
            data: b("more"),
        })],
    );
    let long_mechanism = packet(
        opcode::SASL_AUTH,
        &[],
        &[b'M'; MAX_SASL_MECHANISM_BYTES + 1],
        &[],
        0,
        0,
    );
    check(
        &long_mechanism,
        &[Err(BinaryError::InvalidArguments {
            header: header_of(&long_mechanism),
        })],
    );
    let long_data = packet(
        opcode::SASL_AUTH,
        &[],
        b"PLAIN",
        &[0; MAX_SASL_DATA_BYTES + 1],
        0,
        0,
    );
    check(
        &long_data,
        &[Err(BinaryError::InvalidArguments {
            header: header_of(&long_data),
        })],
    );
}

#[test]
fn pipelined_requests_come_out_in_order_with_their_opaque() {
    let input = [
        packet(opcode::GETKQ, &[], b"a", &[], 1, 0),
        packet(opcode::GETKQ, &[], b"b", &[], 2, 0),
        packet(opcode::NOOP, &[], &[], &[], 3, 0),
    ]
    .concat();
    let mut buf = BytesMut::from(&input[..]);
    let mut parser = BinaryParser::new();
    let mut opaques = Vec::new();
    while let Some(request) = parser
        .parse(&mut buf, &Limits::default())
        .expect("valid requests")
    {
        opaques.push(request.header.opaque);
    }
    assert_eq!(opaques, [1, 2, 3]);
    assert!(buf.is_empty());
}

#[test]
fn malformed_headers_close_the_connection_and_consume_nothing() {
    let mut bad_magic = simple(opcode::NOOP);
    bad_magic[0] = 0x81;
    let mut inconsistent = packet(opcode::GET, &[], b"key", &[], 0, 0);
    inconsistent[11] = 2; // total body 2 < key length 3
    let long_key = packet(opcode::GET, &[], &[b'k'; 251], &[], 0, 0);
    let cases = [
        (
            bad_magic.clone(),
            BinaryError::BadMagic {
                header: header_of(&bad_magic),
            },
        ),
        (
            inconsistent.clone(),
            BinaryError::LengthsInconsistent {
                header: header_of(&inconsistent),
            },
        ),
        (
            long_key.clone(),
            BinaryError::KeyTooLong {
                header: header_of(&long_key),
                max_key_bytes: 250,
            },
        ),
    ];
    for (input, error) in cases {
        assert!(error.closes_connection());
        let mut buf = BytesMut::from(&input[..]);
        assert_eq!(
            BinaryParser::new().parse(&mut buf, &Limits::default()),
            Err(error.clone())
        );
        assert_eq!(buf.len(), input.len(), "{error}");
        check(&input, &[Err(error)]);
    }
}

#[test]
fn a_shape_the_opcode_does_not_allow_is_invalid_arguments() {
    let set_extras = [0u8; 8];
    for input in [
        packet(opcode::GET, &[0; 4], b"k", &[], 0, 0),
        packet(opcode::GET, &[], &[], &[], 0, 0),
        packet(opcode::GET, &[], b"k", b"v", 0, 0),
        packet(opcode::SET, &[], b"k", b"v", 0, 0),
        packet(opcode::SET, &set_extras, &[], b"v", 0, 0),
        packet(opcode::APPEND, &set_extras, b"k", b"v", 0, 0),
        packet(opcode::DELETE, &[0; 4], b"k", &[], 0, 0),
        packet(opcode::INCREMENT, &[0; 8], b"k", &[], 0, 0),
        packet(opcode::TOUCH, &[], b"k", &[], 0, 0),
        packet(opcode::GAT, &[0; 4], b"k", b"v", 0, 0),
        packet(opcode::NOOP, &[], &[], b"x", 0, 0),
        packet(opcode::VERSION, &[], b"k", &[], 0, 0),
        packet(opcode::QUIT, &[0; 4], &[], &[], 0, 0),
        packet(opcode::FLUSH, &[0; 8], &[], &[], 0, 0),
        packet(opcode::FLUSH, &[], b"k", &[], 0, 0),
        packet(opcode::VERBOSITY, &[], &[], &[], 0, 0),
        packet(opcode::VERBOSITY, &[0; 4], b"k", &[], 0, 0),
        packet(opcode::STAT, &[], b"items", b"x", 0, 0),
        packet(opcode::SASL_AUTH, &[], &[], b"x", 0, 0),
    ] {
        let error = BinaryError::InvalidArguments {
            header: header_of(&input),
        };
        assert_eq!(error.status(), Status::InvalidArguments);
        check(&input, &[Err(error)]);
    }
}

#[test]
fn an_unknown_opcode_is_answered_and_its_body_skipped() {
    let unknown = packet(0x3f, &[0, 0, 0, 1], &[], &[], 7, 0);
    let input = [unknown.clone(), simple(opcode::NOOP)].concat();
    check(
        &input,
        &[
            Err(BinaryError::UnknownCommand {
                header: header_of(&unknown),
                skipped: true,
            }),
            Ok(BinaryCommand::Noop),
        ],
    );
}

#[test]
fn a_value_over_the_limit_is_answered_and_skipped() {
    let limits = Limits {
        max_value_bytes: 3,
        ..Limits::default()
    };
    let too_large = packet(opcode::SETQ, &[0; 8], b"k", b"four", 0, 0);
    let input = [too_large.clone(), simple(opcode::NOOP)].concat();
    check_with(
        &input,
        &limits,
        &[
            Err(BinaryError::ValueTooLarge {
                header: header_of(&too_large),
                value_bytes: 4,
                max_value_bytes: 3,
                skipped: true,
            }),
            Ok(BinaryCommand::Noop),
        ],
    );
    let fits = packet(opcode::APPEND, &[], b"k", b"abc", 0, 0);
    assert_eq!(feed([&fits[..]], &limits).len(), 1);
    assert!(feed([&fits[..]], &limits)[0].is_ok());
}

#[test]
fn a_body_beyond_the_skip_bound_closes_the_connection() {
    let limits = Limits::default();
    let body_bytes = u32::try_from(limits.max_skip_bytes() + 1).expect("fits in the field");
    let mut huge_set = packet(opcode::SET, &[0; 8], b"k", &[], 0, 0);
    huge_set[8..12].copy_from_slice(&body_bytes.to_be_bytes());
    let mut huge_unknown = simple(0x55);
    huge_unknown[8..12].copy_from_slice(&body_bytes.to_be_bytes());
    for input in [huge_set, huge_unknown] {
        let outcomes = feed([&input[..]], &limits);
        assert_eq!(outcomes.len(), 1);
        let error = outcomes[0].clone().expect_err("refused");
        assert!(error.closes_connection(), "{error}");
    }
}

#[test]
fn nothing_is_buffered_beyond_one_request() {
    // A valid SET announcing a value at the limit: the parser waits for it and reserves room for
    // exactly that request.
    let limits = Limits {
        max_value_bytes: 1000,
        ..Limits::default()
    };
    let mut input = packet(opcode::SET, &[0; 8], b"k", &[], 0, 0);
    input[8..12].copy_from_slice(&1009u32.to_be_bytes());
    let mut buf = BytesMut::from(&input[..]);
    assert_eq!(BinaryParser::new().parse(&mut buf, &limits), Ok(None));
    assert!(buf.capacity() >= HEADER_BYTES + 1009);
}

fn parsed(input: &[u8]) -> BinaryRequest {
    request(input)
}

fn encoded(encode: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(&mut out);
    out.to_vec()
}

/// The parts of one response packet: header, extras, key and value.
fn response_parts(packet: &[u8]) -> (ResponseHeader, &[u8], &[u8], &[u8]) {
    let header = ResponseHeader::parse(packet[..HEADER_BYTES].try_into().expect("24 bytes"));
    let body = &packet[HEADER_BYTES..];
    assert_eq!(body.len(), header.total_body_length as usize);
    let extras_end = usize::from(header.extras_length);
    let key_end = extras_end + usize::from(header.key_length);
    (
        header,
        &body[..extras_end],
        &body[extras_end..key_end],
        &body[key_end..],
    )
}

#[test]
fn quiet_commands_are_silent_on_success_and_answered_on_failure() {
    let setq = parsed(&packet(opcode::SETQ, &[0; 8], b"k", b"v", 9, 0));
    assert!(encoded(|out| encode_success(out, &setq, 5)).is_empty());
    let failure = encoded(|out| encode_failure(out, &setq, Status::KeyExists));
    let (header, extras, key, value) = response_parts(&failure);
    assert_eq!(
        (header.opcode, header.status, header.opaque),
        (opcode::SETQ, 0x0002, 9)
    );
    assert_eq!(
        (extras, key, value),
        (&b""[..], &b""[..], &b"Data exists for key."[..])
    );

    let incrq = parsed(&packet(opcode::INCREMENTQ, &[0; 20], b"n", &[], 0, 0));
    assert!(encoded(|out| encode_counter(out, &incrq, 3, 4)).is_empty());
    let quitq = parsed(&simple(opcode::QUITQ));
    assert!(encoded(|out| encode_success(out, &quitq, 0)).is_empty());

    let getq = parsed(&packet(opcode::GETQ, &[], b"k", &[], 1, 0));
    assert!(encoded(|out| encode_get_miss(out, &getq)).is_empty());
    assert!(!encoded(|out| encode_get_hit(out, &getq, 0, 1, b"v")).is_empty());
    let gatkq = parsed(&packet(opcode::GATKQ, &[0; 4], b"k", &[], 1, 0));
    assert!(encoded(|out| encode_get_miss(out, &gatkq)).is_empty());
}

#[test]
fn loud_commands_are_answered_with_their_opcode_opaque_and_cas() {
    let set = parsed(&packet(opcode::SET, &[0; 8], b"k", b"v", 0xabcd, 0));
    let packet_bytes = encoded(|out| encode_success(out, &set, 77));
    let (header, _, _, value) = response_parts(&packet_bytes);
    assert_eq!(
        (
            header.magic,
            header.opcode,
            header.status,
            header.opaque,
            header.cas
        ),
        (0x81, opcode::SET, 0, 0xabcd, 77)
    );
    assert!(value.is_empty());

    let incr = parsed(&packet(opcode::INCREMENT, &[0; 20], b"n", &[], 1, 0));
    let packet_bytes = encoded(|out| encode_counter(out, &incr, 258, 9));
    let (header, _, _, value) = response_parts(&packet_bytes);
    assert_eq!((header.cas, value), (9, &258u64.to_be_bytes()[..]));

    let touch = parsed(&packet(opcode::TOUCH, &[0; 4], b"k", &[], 1, 0));
    let packet_bytes = encoded(|out| encode_get_hit(out, &touch, 7, 3, b"ignored"));
    let (_, extras, key, value) = response_parts(&packet_bytes);
    assert_eq!(
        (extras, key, value),
        (&7u32.to_be_bytes()[..], &b""[..], &b""[..])
    );

    let version = parsed(&simple(opcode::VERSION));
    let packet_bytes = encoded(|out| encode_version(out, &version, "1.6.0"));
    assert_eq!(response_parts(&packet_bytes).3, b"1.6.0");
}

#[test]
fn stat_answers_one_packet_per_statistic_and_an_empty_end() {
    let stat = parsed(&simple(opcode::STAT));
    let packet_bytes = encoded(|out| {
        encode_stat(out, &stat, "pid", "42");
        encode_stat_end(out, &stat);
    });
    let (first, _, key, value) = response_parts(&packet_bytes[..HEADER_BYTES + 5]);
    assert_eq!(
        (first.opcode, key, value),
        (opcode::STAT, &b"pid"[..], &b"42"[..])
    );
    let (end, _, key, value) = response_parts(&packet_bytes[HEADER_BYTES + 5..]);
    assert_eq!((end.opcode, key, value), (opcode::STAT, &b""[..], &b""[..]));
}

#[test]
fn sasl_answers_match_memcached() {
    let list = parsed(&simple(opcode::SASL_LIST_MECHS));
    let packet_bytes = encoded(|out| encode_sasl_mechanisms(out, &list, "PLAIN"));
    assert_eq!(response_parts(&packet_bytes).3, b"PLAIN");
    let auth = parsed(&packet(opcode::SASL_AUTH, &[], b"PLAIN", b"\0u\0p", 4, 0));
    let packet_bytes = encoded(|out| encode_sasl_authenticated(out, &auth));
    assert_eq!(response_parts(&packet_bytes).3, b"Authenticated");
    let packet_bytes = encoded(|out| encode_failure(out, &auth, Status::AuthError));
    let (header, _, _, value) = response_parts(&packet_bytes);
    assert_eq!(
        (header.status, header.opaque, value),
        (0x0020, 4, &b"Auth failure."[..])
    );
}

#[test]
fn errors_are_answered_with_the_status_memcached_uses() {
    let mut bad_magic = simple(opcode::GET);
    bad_magic[0] = 0x00;
    bad_magic[12..16].copy_from_slice(&5u32.to_be_bytes());
    let error = feed([&bad_magic[..]], &Limits::default())
        .pop()
        .expect("one outcome")
        .expect_err("refused");
    let packet_bytes = encoded(|out| encode_error(out, &error));
    let (header, _, _, value) = response_parts(&packet_bytes);
    assert_eq!((header.status, header.opaque), (0x0004, 5));
    assert_eq!(value, b"invalid magic byte 0x00, expected 0x80");

    let codes = [
        (Status::NoError, 0x0000),
        (Status::KeyNotFound, 0x0001),
        (Status::KeyExists, 0x0002),
        (Status::ValueTooLarge, 0x0003),
        (Status::InvalidArguments, 0x0004),
        (Status::ItemNotStored, 0x0005),
        (Status::NonNumericValue, 0x0006),
        (Status::AuthError, 0x0020),
        (Status::AuthContinue, 0x0021),
        (Status::UnknownCommand, 0x0081),
        (Status::OutOfMemory, 0x0082),
        (Status::TemporaryFailure, 0x0086),
    ];
    for (status, code) in codes {
        assert_eq!(status.code(), code, "{status:?}");
    }
}

#[test]
fn each_error_has_memcacheds_status_and_only_skippable_ones_keep_the_connection() {
    let header = RequestHeader::default();
    let cases = [
        (
            BinaryError::BadMagic { header },
            Status::InvalidArguments,
            true,
        ),
        (
            BinaryError::LengthsInconsistent { header },
            Status::UnknownCommand,
            true,
        ),
        (
            BinaryError::KeyTooLong {
                header,
                max_key_bytes: 250,
            },
            Status::InvalidArguments,
            true,
        ),
        (
            BinaryError::InvalidArguments { header },
            Status::InvalidArguments,
            true,
        ),
        (
            BinaryError::UnknownCommand {
                header,
                skipped: true,
            },
            Status::UnknownCommand,
            false,
        ),
        (
            BinaryError::UnknownCommand {
                header,
                skipped: false,
            },
            Status::UnknownCommand,
            true,
        ),
        (
            BinaryError::ValueTooLarge {
                header,
                value_bytes: 2,
                max_value_bytes: 1,
                skipped: true,
            },
            Status::ValueTooLarge,
            false,
        ),
        (
            BinaryError::ValueTooLarge {
                header,
                value_bytes: 2,
                max_value_bytes: 1,
                skipped: false,
            },
            Status::ValueTooLarge,
            true,
        ),
    ];
    for (error, status, closes) in cases {
        assert_eq!(error.status(), status, "{error}");
        assert_eq!(error.closes_connection(), closes, "{error}");
        let packet_bytes = encoded(|out| encode_error(out, &error));
        let (response, _, _, value) = response_parts(&packet_bytes);
        assert_eq!(response.status, status.code());
        assert_eq!(value, error.to_string().as_bytes());
    }
}
