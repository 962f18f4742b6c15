//! Fuzzes the memcached binary parser: arbitrary bytes, delivered in chunks, must never panic it
//! nor leave more than one request buffered; every request it accepts must encode back to a
//! packet that parses to the same request, and every reply must encode without panicking.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use memcache::Limits;
use memcache::binary::{self, BinaryParser, BinaryRequest, HEADER_BYTES, MAX_SASL_DATA_BYTES};

/// Small limits, so the fuzzer reaches them with short inputs.
const SMALL_LIMITS: Limits = Limits {
    max_key_bytes: 16,
    max_value_bytes: 64,
    max_line_bytes: 80,
    max_keys_per_get: 4,
};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the limits and how the input is cut into reads.
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let limits = if seed & 1 == 0 {
        Limits::default()
    } else {
        SMALL_LIMITS
    };
    let chunk_bytes = usize::from(seed >> 1).max(1);
    let bound =
        HEADER_BYTES + 20 + limits.max_key_bytes + limits.max_value_bytes.max(MAX_SASL_DATA_BYTES);
    let mut parser = BinaryParser::new();
    let mut buf = BytesMut::new();
    let mut out = BytesMut::new();
    for chunk in input.chunks(chunk_bytes) {
        buf.extend_from_slice(chunk);
        loop {
            match parser.parse(&mut buf, &limits) {
                Ok(None) => {
                    assert!(buf.len() < bound, "{} bytes buffered", buf.len());
                    break;
                }
                Ok(Some(request)) => {
                    round_trip(&request, &limits);
                    reply(&mut out, &request);
                }
                Err(error) => {
                    binary::encode_error(&mut out, &error);
                    if error.closes_connection() {
                        return;
                    }
                }
            }
        }
        out.clear();
    }
});

/// The request, encoded again, must parse to itself.
fn round_trip(request: &BinaryRequest, limits: &Limits) {
    let mut wire = BytesMut::new();
    binary::encode_request(&mut wire, request.header.opaque, &request.command);
    let again = BinaryParser::new()
        .parse(&mut wire, limits)
        .expect("an accepted request encodes to a valid one")
        .expect("the whole request was encoded");
    assert_eq!(again.command, request.command);
    assert_eq!(again.header.opaque, request.header.opaque);
    assert!(wire.is_empty());
}

fn reply(out: &mut BytesMut, request: &BinaryRequest) {
    binary::encode_get_hit(out, request, 1, 2, b"value");
    binary::encode_get_miss(out, request);
    binary::encode_success(out, request, 3);
    binary::encode_failure(out, request, binary::Status::KeyNotFound);
    binary::encode_counter(out, request, 4, 5);
    binary::encode_version(out, request, "1.6.0");
    binary::encode_stat(out, request, "pid", "1");
    binary::encode_stat_end(out, request);
}
