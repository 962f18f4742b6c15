//! Fuzzes the RESP request path: arbitrary bytes, delivered in reads of a size the input
//! picks, go through the request parser and `Command::parse` as on a connection. Nothing may
//! panic, no request may exceed the limits, the parser may never hold more than one request's
//! worth of bytes, every error must encode to exactly one line, and the same bytes read as a
//! RESP frame must re-encode to something that parses again.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use resp::table::{encode_command_query, encode_help};
use resp::{Command, Frame, Limits, ProtocolVersion, ReplyEncoder, RequestParser, ServerCommand};

/// Small limits, so the fuzzer reaches them with short inputs.
const SMALL_LIMITS: Limits = Limits {
    max_request_bytes: 512,
    max_args: 8,
    max_bulk_bytes: 64,
    max_inline_bytes: 96,
};

/// The longest header line the parser may hold while waiting for its CR.
const MAX_HEADER_BYTES: usize = 23;

/// Checks that an error line encodes to one protocol line whatever client bytes it quotes.
fn assert_one_error_line(line: String, version: ProtocolVersion) {
    let mut out = BytesMut::new();
    ReplyEncoder::new(&mut out, version).error(line);
    assert_eq!(out.iter().filter(|&&byte| byte == b'\n').count(), 1);
    assert_eq!(out.iter().filter(|&&byte| byte == b'\r').count(), 1);
    assert!(out.ends_with(b"\r\n"));
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the limits (fixed, or changing at every read as when a connection
    // authenticates or is reset), the protocol version and the size of the reads.
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let limits = if seed & 1 == 0 {
        Limits::BEFORE_AUTH
    } else {
        SMALL_LIMITS
    };
    let limits_by_read = if seed & 4 == 0 {
        [limits, limits]
    } else {
        [Limits::BEFORE_AUTH, SMALL_LIMITS]
    };
    // Part of a request may have been read under either, so it is held to the larger.
    let max_request_bytes = limits_by_read[0]
        .max_request_bytes
        .max(limits_by_read[1].max_request_bytes);
    let max_args = limits_by_read[0].max_args.max(limits_by_read[1].max_args);
    let version = if seed & 2 == 0 {
        ProtocolVersion::Resp2
    } else {
        ProtocolVersion::Resp3
    };
    let read_bytes = usize::from(seed >> 3).max(1);

    let mut parser = RequestParser::new();
    let mut buffer = BytesMut::new();
    let mut replies = BytesMut::new();
    'connection: for (read_index, read) in input.chunks(read_bytes).enumerate() {
        let limits = limits_by_read[read_index % 2];
        buffer.extend_from_slice(read);
        loop {
            match parser.parse(&mut buffer, &limits) {
                Ok(Some(request)) => {
                    assert!(!request.args.is_empty());
                    assert!(request.args.len() <= max_args);
                    assert!(request.wire_bytes <= max_request_bytes);
                    match Command::parse(request.args) {
                        Ok(command) => {
                            assert!(command.keys().count() <= max_args);
                            let mut encoder = ReplyEncoder::new(&mut replies, version);
                            match &command {
                                Command::Server(ServerCommand::Command(query)) => {
                                    encode_command_query(query, &mut encoder);
                                }
                                Command::Help(topic) => encode_help(*topic, &mut encoder),
                                _ => {}
                            }
                            // Keep memory flat over a long input.
                            replies.clear();
                        }
                        Err(error) => assert_one_error_line(error.reply_line(), version),
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    assert_one_error_line(error.reply_line(), version);
                    break 'connection;
                }
            }
        }
        assert!(
            parser.partial_request_bytes() + buffer.len() <= max_request_bytes + MAX_HEADER_BYTES
        );
    }

    let mut frame_input = BytesMut::from(input);
    let before = frame_input.len();
    match Frame::parse(&mut frame_input, &limits) {
        Ok(Some(frame)) => {
            assert!(before - frame_input.len() <= limits.max_request_bytes);
            let mut encoded = BytesMut::new();
            frame.encode(&mut encoded, version);
            assert!(matches!(
                Frame::parse(&mut encoded, &Limits::default()),
                Ok(Some(_))
            ));
            assert!(encoded.is_empty());
        }
        Ok(None) => assert_eq!(frame_input.len(), before),
        Err(error) => assert_one_error_line(error.reply_line(), version),
    }
});
