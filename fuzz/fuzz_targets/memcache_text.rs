//! Fuzzes the memcached text parser: arbitrary bytes, delivered in chunks, must never panic it,
//! never leave more than one line or one data block buffered, and every request and error it
//! produces must encode a reply without panicking.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use memcache::Limits;
use memcache::text::{self, TextParser, TextRequest};

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
    let bound = limits.max_line_bytes.max(limits.max_value_bytes + 1);
    let mut parser = TextParser::new();
    let mut buf = BytesMut::new();
    let mut out = BytesMut::new();
    for chunk in input.chunks(chunk_bytes) {
        buf.extend_from_slice(chunk);
        loop {
            match parser.parse(&mut buf, &limits) {
                Ok(None) => {
                    assert!(buf.len() <= bound, "{} bytes buffered", buf.len());
                    break;
                }
                Ok(Some(request)) => reply(&mut out, &request),
                Err(error) => {
                    text::encode_error(&mut out, &error);
                    if error.closes_connection() {
                        return;
                    }
                }
            }
        }
        out.clear();
    }
});

/// Encodes a plausible reply, so the encoders see whatever the parser lets through.
fn reply(out: &mut BytesMut, request: &TextRequest) {
    match request {
        TextRequest::Get(get) => {
            for key in &get.keys {
                text::encode_value(out, key, 1, key, get.return_cas.then_some(7));
            }
            text::encode_status(out, text::TextStatus::End);
        }
        TextRequest::Store(store) => {
            assert!(store.value.len() <= SMALL_LIMITS.max_value_bytes.max(1024 * 1024));
            text::encode_status(out, text::TextStatus::Stored);
        }
        TextRequest::Arithmetic(arithmetic) => text::encode_number(out, arithmetic.delta),
        TextRequest::MetaGet(meta_get) => {
            let hit = text::MetaGetHit {
                value: &meta_get.key,
                client_flags: 1,
                cas: 2,
                ttl_remaining_seconds_opt: meta_get
                    .touch_exptime_opt
                    .map(|seconds| seconds.unsigned_abs()),
                seconds_since_last_access: 3,
                fetched_before: true,
                won: meta_get.vivify_exptime_opt.is_some(),
                stale: false,
                win_already_sent: false,
            };
            text::encode_meta_get_hit(out, meta_get, &hit);
            text::encode_meta_get_miss(out, meta_get);
        }
        TextRequest::MetaSet(meta_set) => {
            text::encode_meta_set(out, meta_set, text::MetaSetOutcome::Stored { cas: 1 });
            text::encode_meta_set(out, meta_set, text::MetaSetOutcome::NotStored);
        }
        TextRequest::MetaDelete(meta_delete) => {
            text::encode_meta_delete(out, meta_delete, text::MetaDeleteOutcome::Deleted);
            text::encode_meta_delete(out, meta_delete, text::MetaDeleteOutcome::NotFound);
        }
        TextRequest::MetaArithmetic(meta_arithmetic) => {
            let done = text::MetaArithmeticOutcome::Done {
                value: meta_arithmetic.delta,
                cas: 1,
                ttl_remaining_seconds_opt: None,
            };
            text::encode_meta_arithmetic(out, meta_arithmetic, done);
            text::encode_meta_arithmetic(out, meta_arithmetic, text::MetaArithmeticOutcome::Exists);
        }
        TextRequest::MetaNoop => text::encode_meta_noop(out),
        TextRequest::Version => text::encode_version(out, "1.6.0"),
        TextRequest::Stats { arguments } => {
            for argument in arguments {
                text::encode_stat(out, &String::from_utf8_lossy(argument), "0");
            }
            text::encode_status(out, text::TextStatus::End);
        }
        TextRequest::Delete { .. }
        | TextRequest::Touch { .. }
        | TextRequest::FlushAll { .. }
        | TextRequest::Verbosity { .. }
        | TextRequest::Quit => text::encode_status(out, text::TextStatus::Ok),
    }
}
