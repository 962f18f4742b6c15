//! Property tests of the public API: arbitrary input never panics and never makes the parser
//! hold more than the limits allow, and what is encoded parses back to what it was.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use resp::{Command, Frame, Limits, ProtocolError, ProtocolVersion, ReplyEncoder, RequestParser};

/// Small limits so arbitrary input actually reaches them.
const SMALL_LIMITS: Limits = Limits {
    max_request_bytes: 512,
    max_args: 8,
    max_bulk_bytes: 64,
    max_inline_bytes: 96,
};

/// The longest header line the parser may hold in its input while waiting for its CR: a type
/// byte, a sign and 19 digits, plus the CR.
const MAX_HEADER_BYTES: usize = 23;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    }
}

/// Feeds `chunks` one after another, taking out every complete request after each, and
/// checks the bounds after every step. Returns the requests and the first error.
fn feed(chunks: &[Vec<u8>], limits: &Limits) -> (Vec<Vec<Bytes>>, Option<ProtocolError>) {
    feed_with_changing_limits(chunks, std::slice::from_ref(limits))
}

/// [`feed`], with the limits of each read taken in turn from `limits_by_read`, as when a
/// connection authenticates (larger limits) or is reset (smaller ones). A request is held to
/// the largest of the limits, since part of it may have been read under those.
fn feed_with_changing_limits(
    chunks: &[Vec<u8>],
    limits_by_read: &[Limits],
) -> (Vec<Vec<Bytes>>, Option<ProtocolError>) {
    let largest = |limit_of: fn(&Limits) -> usize| {
        limits_by_read
            .iter()
            .map(limit_of)
            .max()
            .unwrap_or_default()
    };
    let max_request_bytes = largest(|limits| limits.max_request_bytes);
    let max_args = largest(|limits| limits.max_args);
    let max_arg_bytes = largest(|limits| limits.max_bulk_bytes.max(limits.max_inline_bytes));
    let max_bulk_bytes = largest(|limits| limits.max_bulk_bytes);
    let mut parser = RequestParser::new();
    let mut input = BytesMut::new();
    let mut requests = Vec::new();
    for (index, chunk) in chunks.iter().enumerate() {
        let limits = &limits_by_read[index % limits_by_read.len()];
        input.extend_from_slice(chunk);
        loop {
            match parser.parse(&mut input, limits) {
                Ok(Some(request)) => {
                    assert!(!request.args.is_empty());
                    assert!(request.args.len() <= max_args);
                    assert!(request.wire_bytes <= max_request_bytes);
                    assert!(request.args.iter().all(|arg| arg.len() <= max_arg_bytes));
                    requests.push(request.args);
                }
                Ok(None) => break,
                Err(error) => return (requests, Some(error)),
            }
        }
        // What the parser holds of an unfinished request, in itself and in the input, stays
        // within the request limit (plus at most one header line it cannot judge yet).
        let held_bytes = parser.partial_request_bytes() + input.len();
        assert!(
            held_bytes <= max_request_bytes + MAX_HEADER_BYTES,
            "holds {held_bytes} bytes"
        );
        assert!(
            parser.bytes_needed_hint(&input) <= max_bulk_bytes + 2,
            "hint beyond the bulk limit"
        );
    }
    (requests, None)
}

fn multibulk(args: &[Vec<u8>]) -> Vec<u8> {
    let mut wire = BytesMut::new();
    let mut encoder = ReplyEncoder::new(&mut wire, ProtocolVersion::Resp2);
    encoder.array_header(args.len());
    args.iter().for_each(|arg| encoder.bulk(arg));
    wire.to_vec()
}

/// Splits `bytes` at the given cut points (taken modulo its length).
fn chunked(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|cut| cut % (bytes.len() + 1))
        .chain([0, bytes.len()])
        .collect();
    points.sort_unstable();
    points.dedup();
    points
        .windows(2)
        .map(|window| bytes[window[0]..window[1]].to_vec())
        .collect()
}

/// An inline argument every byte of which survives `sdssplitargs`: double-quoted, each byte
/// as a `\xHH` escape.
fn inline_quoted(arg: &[u8]) -> String {
    let escaped: String = arg.iter().map(|byte| format!("\\x{byte:02x}")).collect();
    format!("\"{escaped}\"")
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    let text = "[a-zA-Z0-9 :._-]{0,12}".prop_map(Bytes::from);
    let leaf = prop_oneof![
        text.clone().prop_map(Frame::Simple),
        "[a-zA-Z0-9 \r\n]{1,12}".prop_map(|error| Frame::Error(Bytes::from(error))),
        any::<i64>().prop_map(Frame::Integer),
        vec(any::<u8>(), 0..40).prop_map(|bulk| Frame::Bulk(Bytes::from(bulk))),
        Just(Frame::Null),
        any::<f64>()
            .prop_filter("NaN is not equal to itself", |value| !value.is_nan())
            .prop_map(Frame::Double),
        any::<bool>().prop_map(Frame::Boolean),
        "-?[1-9][0-9]{0,40}".prop_map(|digits| Frame::BigNumber(Bytes::from(digits))),
        ("[a-z]{3}", vec(any::<u8>(), 0..20)).prop_map(|(format, text)| Frame::Verbatim {
            format: format.as_bytes().try_into().unwrap_or(*b"txt"),
            text: Bytes::from(text),
        }),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Frame::Array),
            vec(inner.clone(), 0..6).prop_map(Frame::Set),
            vec(inner.clone(), 0..6).prop_map(Frame::Push),
            vec((inner.clone(), inner), 0..4).prop_map(Frame::Map),
        ]
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic_nor_exceed_the_limits(
        chunks in vec(vec(any::<u8>(), 0..64), 0..12),
    ) {
        feed(&chunks, &SMALL_LIMITS);
    }

    #[test]
    fn request_shaped_garbage_never_panics_nor_exceeds_the_limits(
        pieces in vec(prop_oneof![
            Just(b"*".to_vec()), Just(b"$".to_vec()), Just(b"\r\n".to_vec()),
            Just(b"\"".to_vec()), Just(b"'".to_vec()), Just(b" ".to_vec()),
            Just(b"\\x4".to_vec()), Just(b"-1".to_vec()),
            "[0-9]{1,3}".prop_map(String::into_bytes),
            "[a-z]{1,5}".prop_map(String::into_bytes),
        ], 0..60),
        cuts in vec(any::<usize>(), 0..6),
    ) {
        let bytes = pieces.concat();
        feed(&chunked(&bytes, &cuts), &SMALL_LIMITS);
    }

    #[test]
    fn limits_changing_between_reads_never_panic_nor_exceed_the_largest(
        pieces in vec(prop_oneof![
            Just(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n".to_vec()),
            Just(b"*1\r\n$70\r\n".to_vec()),
            Just(b"PING ".to_vec()),
            Just(b"\r\n".to_vec()),
            vec(any::<u8>(), 0..100),
        ], 0..20),
        cuts in vec(any::<usize>(), 0..10),
    ) {
        let bytes = pieces.concat();
        feed_with_changing_limits(&chunked(&bytes, &cuts), &[SMALL_LIMITS, Limits::BEFORE_AUTH]);
        feed_with_changing_limits(&chunked(&bytes, &cuts), &[Limits::BEFORE_AUTH, SMALL_LIMITS]);
    }

    #[test]
    fn multibulk_requests_survive_any_chunking(
        requests in vec(vec(vec(any::<u8>(), 0..64), 1..8), 1..4),
        cuts in vec(any::<usize>(), 0..8),
    ) {
        let wire: Vec<u8> = requests.iter().flat_map(|args| multibulk(args)).collect();
        let (parsed, error) = feed(&chunked(&wire, &cuts), &Limits::default());
        prop_assert_eq!(error, None);
        let expect: Vec<Vec<Bytes>> = requests
            .iter()
            .map(|args| args.iter().map(|arg| Bytes::copy_from_slice(arg)).collect())
            .collect();
        prop_assert_eq!(parsed, expect);
    }

    #[test]
    fn inline_requests_with_escaped_bytes_parse_back(
        args in vec(vec(any::<u8>(), 0..16), 1..6),
        line_ending in prop_oneof![Just("\r\n"), Just("\n")],
    ) {
        let line: Vec<String> = args.iter().map(|arg| inline_quoted(arg)).collect();
        let wire = format!("{}{line_ending}", line.join(" ")).into_bytes();
        let (parsed, error) = feed(&[wire], &Limits::default());
        prop_assert_eq!(error, None);
        let expect: Vec<Bytes> = args.iter().map(|arg| Bytes::copy_from_slice(arg)).collect();
        prop_assert_eq!(parsed, vec![expect]);
    }

    #[test]
    fn frames_encoded_in_resp3_parse_back_unchanged(frame in arb_frame()) {
        let mut out = BytesMut::new();
        frame.encode(&mut out, ProtocolVersion::Resp3);
        let parsed = Frame::parse(&mut out, &Limits::default());
        prop_assert_eq!(parsed, Ok(Some(frame)));
        prop_assert!(out.is_empty());
    }

    #[test]
    fn frames_encoded_in_resp2_parse_back_as_some_frame(frame in arb_frame()) {
        let mut out = BytesMut::new();
        frame.encode(&mut out, ProtocolVersion::Resp2);
        let parsed = Frame::parse(&mut out, &Limits::default());
        prop_assert!(matches!(parsed, Ok(Some(_))), "{:?}", parsed);
        prop_assert!(out.is_empty());
    }

    #[test]
    fn arbitrary_frame_bytes_never_panic_and_respect_the_limits(
        bytes in vec(any::<u8>(), 0..256),
    ) {
        let mut input = BytesMut::from(&bytes[..]);
        let before = input.len();
        match Frame::parse(&mut input, &SMALL_LIMITS) {
            Ok(Some(_)) => prop_assert!(before - input.len() <= SMALL_LIMITS.max_request_bytes),
            Ok(None) => prop_assert_eq!(input.len(), before),
            Err(_) => {}
        }
    }

    #[test]
    fn command_parsing_never_panics(
        name_index in any::<prop::sample::Index>(),
        sub_name in prop_oneof![
            Just("setname"), Just("getname"), Just("setinfo"), Just("load"), Just("flush"),
            Just("docs"), Just("info"), Just("get"), Just("x"),
        ],
        rest in vec(prop_oneof![
            "[a-zA-Z]{1,8}".prop_map(String::into_bytes),
            "-?[0-9]{1,20}".prop_map(String::into_bytes),
            Just(b"EX".to_vec()), Just(b"PX".to_vec()), Just(b"NX".to_vec()),
            Just(b"XX".to_vec()), Just(b"GT".to_vec()), Just(b"LT".to_vec()),
            Just(b"KEEPTTL".to_vec()), Just(b"GET".to_vec()), Just(b"PERSIST".to_vec()),
            Just(b"AUTH".to_vec()), Just(b"SETNAME".to_vec()), Just(b"COUNT".to_vec()),
            Just(b"MATCH".to_vec()), Just(b"TYPE".to_vec()),
            vec(any::<u8>(), 0..8),
        ], 0..8),
    ) {
        let spec = name_index.get(resp::table::COMMAND_TABLE);
        let mut args = vec![Bytes::from_static(spec.name.as_bytes())];
        if !spec.subcommands.is_empty() {
            args.push(Bytes::from_static(sub_name.as_bytes()));
        }
        args.extend(rest.into_iter().map(Bytes::from));
        if let Err(error) = Command::parse(args) {
            // Error lines may quote client input; encoded, they must still be one line.
            let mut out = BytesMut::new();
            ReplyEncoder::new(&mut out, ProtocolVersion::Resp3).error(error.reply_line());
            prop_assert!(out.starts_with(b"-ERR ") || out.starts_with(b"-NOPROTO "));
            prop_assert_eq!(out.iter().filter(|&&byte| byte == b'\n').count(), 1);
            prop_assert_eq!(out.iter().filter(|&&byte| byte == b'\r').count(), 1);
            prop_assert!(out.ends_with(b"\r\n"));
        }
    }
}
