//! RESP2 and RESP3 frames: the [`Frame`] type, a complete parser with limits, and an encoder.
//!
//! The node's request path does not use this parser (see [`crate::RequestParser`], which is
//! incremental and only accepts what clients send); this one reads any frame a server may
//! send, for tests and client-side code. It parses in two passes over the buffered bytes:
//! the first checks that a whole, valid frame is there and within the limits without
//! consuming anything, the second splits exactly that frame off the buffer and builds the
//! [`Frame`] from zero-copy slices of it. A partial frame is measured again on the next call,
//! which costs O(elements) per call, not O(bytes), since bulk strings are skipped by length.

use bytes::{Bytes, BytesMut};

use crate::encode::{ProtocolVersion, ReplyEncoder};
use crate::error::ProtocolError;
use crate::limits::Limits;
use crate::number::{parse_i64_lenient, parse_i64_strict};

/// Deepest nesting of aggregates [`Frame::parse`] accepts. Redis' replies nest at most a few
/// levels (`COMMAND DOCS` is the deepest at about 6); the bound keeps recursion off the end
/// of the stack whatever the input.
pub const MAX_FRAME_DEPTH: usize = 32;

/// The longest length or count header after its type byte: a sign and 19 digits.
const MAX_LENGTH_DIGITS: usize = 20;

/// The smallest frame on the wire, `_\r\n`: bounds how many elements fit in a byte budget.
const MIN_FRAME_BYTES: usize = 3;

/// One RESP2 or RESP3 value.
///
/// Strings are `Bytes` slices of the parsed buffer (no copy). RESP3 attributes are read and
/// dropped by the parser, because nothing in scd acts on them.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `+text`: a simple string.
    Simple(Bytes),
    /// `-CODE text`, or RESP3 `!len` blob error: an error reply.
    Error(Bytes),
    /// `:n`: a 64-bit integer.
    Integer(i64),
    /// `$len`: a bulk string.
    Bulk(Bytes),
    /// RESP3 `_`, RESP2 `$-1` and `*-1`: no value.
    Null,
    /// `*n`: an array.
    Array(Vec<Frame>),
    /// RESP3 `%n`: a map, as its pairs in wire order.
    Map(Vec<(Frame, Frame)>),
    /// RESP3 `~n`: a set.
    Set(Vec<Frame>),
    /// RESP3 `,x`: a double, including infinities and NaN.
    Double(f64),
    /// RESP3 `#t` or `#f`.
    Boolean(bool),
    /// RESP3 `(digits`: an integer of any size, as its decimal digits.
    BigNumber(Bytes),
    /// RESP3 `=len`: a string with a three-byte format such as `txt` or `mkd`.
    Verbatim {
        /// The format, e.g. `txt`.
        format: [u8; 3],
        /// The text after the `xxx:` prefix.
        text: Bytes,
    },
    /// RESP3 `>n`: an out-of-band push.
    Push(Vec<Frame>),
}

impl Frame {
    /// A bulk string frame, for building expected values and requests.
    pub fn bulk(value: impl Into<Bytes>) -> Frame {
        Frame::Bulk(value.into())
    }

    /// A simple string frame.
    pub fn simple(text: impl Into<Bytes>) -> Frame {
        Frame::Simple(text.into())
    }

    /// Parses one complete frame from the front of `input` and removes it from there.
    ///
    /// Returns `Ok(None)` when `input` holds only part of a frame (nothing is consumed), and
    /// an error when the frame is malformed or would exceed `limits` (checked as soon as a
    /// header announces the size, before the data is waited for). After an error the
    /// connection is out of step and must be closed.
    pub fn parse(input: &mut BytesMut, limits: &Limits) -> Result<Option<Frame>, ProtocolError> {
        let Some(frame_len) = measure(input, 0, limits, 0)? else {
            return Ok(None);
        };
        let frame_bytes = input.split_to(frame_len).freeze();
        let mut position = 0;
        let frame = decode(&frame_bytes, &mut position)?;
        debug_assert_eq!(
            position, frame_len,
            "measure and decode disagree on a frame"
        );
        Ok(Some(frame))
    }

    /// Appends this frame to `out` in `version`, with the RESP2 fallbacks of
    /// [`ReplyEncoder`] for RESP3 types. `Null` becomes `$-1` in RESP2.
    pub fn encode(&self, out: &mut BytesMut, version: ProtocolVersion) {
        self.write_to(&mut ReplyEncoder::new(out, version));
    }

    /// Writes this frame through an existing encoder.
    pub fn write_to(&self, encoder: &mut ReplyEncoder<'_>) {
        match self {
            Frame::Simple(text) => encoder.simple(text),
            Frame::Error(text) => {
                if text.iter().any(|&byte| byte == b'\r' || byte == b'\n') {
                    encoder.blob_error(text);
                } else {
                    encoder.error(text);
                }
            }
            Frame::Integer(value) => encoder.integer(*value),
            Frame::Bulk(value) => encoder.bulk(value),
            Frame::Null => encoder.null(),
            Frame::Array(elements) => {
                encoder.array_header(elements.len());
                elements
                    .iter()
                    .for_each(|element| element.write_to(encoder));
            }
            Frame::Map(pairs) => {
                encoder.map_header(pairs.len());
                for (key, value) in pairs {
                    key.write_to(encoder);
                    value.write_to(encoder);
                }
            }
            Frame::Set(elements) => {
                encoder.set_header(elements.len());
                elements
                    .iter()
                    .for_each(|element| element.write_to(encoder));
            }
            Frame::Double(value) => encoder.double(*value),
            Frame::Boolean(value) => encoder.boolean(*value),
            Frame::BigNumber(digits) => encoder.big_number(digits),
            Frame::Verbatim { format, text } => encoder.verbatim(*format, text),
            Frame::Push(elements) => {
                encoder.push_header(elements.len());
                elements
                    .iter()
                    .for_each(|element| element.write_to(encoder));
            }
        }
    }
}

/// Finds the CRLF ending the line that starts at `start`. Returns the index of its CR and the
/// index after its LF, `None` if the line is not complete yet, or `too_long` once more than
/// `max_line_bytes` bytes arrived without a CR.
fn find_line_end(
    input: &[u8],
    start: usize,
    max_line_bytes: usize,
    too_long: ProtocolError,
) -> Result<Option<(usize, usize)>, ProtocolError> {
    let available = input.get(start..).unwrap_or_default();
    let searched = &available[..available.len().min(max_line_bytes.saturating_add(1))];
    // The search stops one byte past the longest allowed line, so a CR found is in bounds.
    match searched.iter().position(|&byte| byte == b'\r') {
        Some(offset) => {
            let carriage_return = start + offset;
            match input.get(carriage_return + 1) {
                None => Ok(None),
                Some(b'\n') => Ok(Some((carriage_return, carriage_return + 2))),
                Some(_) => Err(ProtocolError::MissingCrlf),
            }
        }
        None if available.len() > max_line_bytes => Err(too_long),
        None => Ok(None),
    }
}

/// Reads a length or count header line starting at `start` (after the type byte). Returns
/// the number and the index after its CRLF.
fn read_length(
    input: &[u8],
    start: usize,
    invalid: ProtocolError,
) -> Result<Option<(i64, usize)>, ProtocolError> {
    if input.get(start) == Some(&b'?') {
        return Err(ProtocolError::StreamedFrame);
    }
    let Some((line_end, next)) = find_line_end(input, start, MAX_LENGTH_DIGITS, invalid.clone())?
    else {
        return Ok(None);
    };
    let length = parse_i64_strict(&input[start..line_end]).ok_or(invalid)?;
    Ok(Some((length, next)))
}

fn check_total(end: usize, limits: &Limits) -> Result<(), ProtocolError> {
    if end > limits.max_request_bytes {
        return Err(ProtocolError::RequestTooLarge {
            max_request_bytes: limits.max_request_bytes,
        });
    }
    Ok(())
}

/// Checks that a whole valid frame starts at `start` and returns the index after it, or
/// `None` if more input is needed. Consumes nothing.
fn measure(
    input: &[u8],
    start: usize,
    limits: &Limits,
    depth: usize,
) -> Result<Option<usize>, ProtocolError> {
    let Some(&type_byte) = input.get(start) else {
        return Ok(None);
    };
    let body = start + 1;
    let line_too_long = ProtocolError::LineTooLong {
        max_inline_bytes: limits.max_inline_bytes,
    };
    let end = match type_byte {
        b'+' | b'-' | b':' | b',' | b'#' | b'(' | b'_' => {
            let Some((line_end, next)) =
                find_line_end(input, body, limits.max_inline_bytes, line_too_long)?
            else {
                return Ok(None);
            };
            validate_line(type_byte, &input[body..line_end])?;
            next
        }
        b'$' | b'!' | b'=' => {
            let Some((length, next)) = read_length(input, body, ProtocolError::InvalidBulkLength)?
            else {
                return Ok(None);
            };
            if length == -1 && type_byte == b'$' {
                next
            } else {
                let length =
                    usize::try_from(length).map_err(|_| ProtocolError::InvalidBulkLength)?;
                if length > limits.max_bulk_bytes {
                    return Err(ProtocolError::ValueTooLarge {
                        max_bulk_bytes: limits.max_bulk_bytes,
                    });
                }
                let data_end = next + length;
                check_total(data_end + 2, limits)?;
                if input.len() < data_end + 2 {
                    return Ok(None);
                }
                if &input[data_end..data_end + 2] != b"\r\n" {
                    return Err(ProtocolError::MissingCrlf);
                }
                if type_byte == b'=' && (length < 4 || input[next + 3] != b':') {
                    return Err(ProtocolError::InvalidVerbatim);
                }
                data_end + 2
            }
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let Some((count, next)) =
                read_length(input, body, ProtocolError::InvalidMultibulkLength)?
            else {
                return Ok(None);
            };
            if count == -1 && type_byte == b'*' {
                next
            } else {
                let count =
                    usize::try_from(count).map_err(|_| ProtocolError::InvalidMultibulkLength)?;
                if depth >= MAX_FRAME_DEPTH {
                    return Err(ProtocolError::FrameTooDeep {
                        max_depth: MAX_FRAME_DEPTH,
                    });
                }
                if count > limits.max_args {
                    return Err(ProtocolError::TooManyArguments {
                        max_args: limits.max_args,
                    });
                }
                let elements = if matches!(type_byte, b'%' | b'|') {
                    count.saturating_mul(2)
                } else {
                    count
                };
                check_total(
                    next.saturating_add(elements.saturating_mul(MIN_FRAME_BYTES)),
                    limits,
                )?;
                let mut position = next;
                for _ in 0..elements {
                    match measure(input, position, limits, depth + 1)? {
                        Some(element_end) => position = element_end,
                        None => return Ok(None),
                    }
                }
                if type_byte == b'|' {
                    // An attribute annotates the frame that follows it; that frame is the value.
                    match measure(input, position, limits, depth)? {
                        Some(annotated_end) => position = annotated_end,
                        None => return Ok(None),
                    }
                }
                position
            }
        }
        other => return Err(ProtocolError::InvalidFrameType { got: other }),
    };
    check_total(end, limits)?;
    Ok(Some(end))
}

fn validate_line(type_byte: u8, line: &[u8]) -> Result<(), ProtocolError> {
    match type_byte {
        b':' => parse_i64_lenient(line)
            .map(drop)
            .ok_or(ProtocolError::InvalidInteger),
        b',' => parse_double(line).map(drop),
        b'#' => parse_boolean(line).map(drop),
        b'(' => {
            let digits = line.strip_prefix(b"-").unwrap_or(line);
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return Err(ProtocolError::InvalidBigNumber);
            }
            Ok(())
        }
        b'_' if !line.is_empty() => Err(ProtocolError::InvalidNull),
        _ => Ok(()),
    }
}

fn parse_double(line: &[u8]) -> Result<f64, ProtocolError> {
    match line {
        b"inf" | b"+inf" => Ok(f64::INFINITY),
        b"-inf" => Ok(f64::NEG_INFINITY),
        b"nan" | b"-nan" => Ok(f64::NAN),
        _ => std::str::from_utf8(line)
            .ok()
            // Rust also accepts "infinity" and "NaN" spellings; only digits reach here
            // in practice, and accepting more from a server is harmless.
            .and_then(|text| text.parse::<f64>().ok())
            .ok_or(ProtocolError::InvalidDouble),
    }
}

fn parse_boolean(line: &[u8]) -> Result<bool, ProtocolError> {
    match line {
        b"t" => Ok(true),
        b"f" => Ok(false),
        _ => Err(ProtocolError::InvalidBoolean),
    }
}

/// Builds the frame that [`measure`] validated. Errors only if the two passes disagree,
/// which would be a bug; they are returned rather than panicked on.
fn decode(bytes: &Bytes, position: &mut usize) -> Result<Frame, ProtocolError> {
    let type_byte = *bytes.get(*position).ok_or(ProtocolError::MissingCrlf)?;
    *position += 1;
    let frame = match type_byte {
        b'+' => Frame::Simple(take_line(bytes, position)?),
        b'-' => Frame::Error(take_line(bytes, position)?),
        b':' => Frame::Integer(
            parse_i64_lenient(&take_line(bytes, position)?).ok_or(ProtocolError::InvalidInteger)?,
        ),
        b',' => Frame::Double(parse_double(&take_line(bytes, position)?)?),
        b'#' => Frame::Boolean(parse_boolean(&take_line(bytes, position)?)?),
        b'(' => Frame::BigNumber(take_line(bytes, position)?),
        b'_' => {
            take_line(bytes, position)?;
            Frame::Null
        }
        b'$' | b'!' | b'=' => {
            let length = take_length(bytes, position)?;
            if length == -1 {
                Frame::Null
            } else {
                let length =
                    usize::try_from(length).map_err(|_| ProtocolError::InvalidBulkLength)?;
                let data = bytes
                    .get(*position..*position + length)
                    .map(|_| bytes.slice(*position..*position + length))
                    .ok_or(ProtocolError::MissingCrlf)?;
                *position += length + 2;
                match type_byte {
                    b'$' => Frame::Bulk(data),
                    b'!' => Frame::Error(data),
                    _ => {
                        let format = data
                            .get(..3)
                            .and_then(|format| <[u8; 3]>::try_from(format).ok())
                            .ok_or(ProtocolError::InvalidVerbatim)?;
                        Frame::Verbatim {
                            format,
                            text: data.slice(4..),
                        }
                    }
                }
            }
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let count = take_length(bytes, position)?;
            if count == -1 {
                return Ok(Frame::Null);
            }
            let count =
                usize::try_from(count).map_err(|_| ProtocolError::InvalidMultibulkLength)?;
            match type_byte {
                b'%' => {
                    let mut pairs = Vec::with_capacity(count);
                    for _ in 0..count {
                        let key = decode(bytes, position)?;
                        let value = decode(bytes, position)?;
                        pairs.push((key, value));
                    }
                    Frame::Map(pairs)
                }
                b'|' => {
                    for _ in 0..count.saturating_mul(2) {
                        decode(bytes, position)?;
                    }
                    decode(bytes, position)?
                }
                _ => {
                    let mut elements = Vec::with_capacity(count);
                    for _ in 0..count {
                        elements.push(decode(bytes, position)?);
                    }
                    match type_byte {
                        b'*' => Frame::Array(elements),
                        b'~' => Frame::Set(elements),
                        _ => Frame::Push(elements),
                    }
                }
            }
        }
        other => return Err(ProtocolError::InvalidFrameType { got: other }),
    };
    Ok(frame)
}

fn take_line(bytes: &Bytes, position: &mut usize) -> Result<Bytes, ProtocolError> {
    let start = *position;
    let offset = bytes
        .get(start..)
        .and_then(|rest| rest.iter().position(|&byte| byte == b'\r'))
        .ok_or(ProtocolError::MissingCrlf)?;
    *position = start + offset + 2;
    Ok(bytes.slice(start..start + offset))
}

fn take_length(bytes: &Bytes, position: &mut usize) -> Result<i64, ProtocolError> {
    let line = take_line(bytes, position)?;
    parse_i64_strict(&line).ok_or(ProtocolError::InvalidBulkLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_limits() -> Limits {
        Limits {
            max_request_bytes: 256,
            max_args: 8,
            max_bulk_bytes: 32,
            max_inline_bytes: 32,
        }
    }

    /// Parses `input` with generous limits and compares the frame, and checks that exactly
    /// the frame's bytes were consumed.
    fn check(input: &str, expect: Frame) {
        let mut buffer = BytesMut::from(input.as_bytes());
        let frame = Frame::parse(&mut buffer, &Limits::default());
        assert_eq!(frame, Ok(Some(expect)), "input {input:?}");
        assert!(buffer.is_empty(), "input {input:?} left {buffer:?}");
    }

    fn check_error(input: &str, limits: Limits, expect: ProtocolError) {
        let mut buffer = BytesMut::from(input.as_bytes());
        assert_eq!(
            Frame::parse(&mut buffer, &limits),
            Err(expect),
            "input {input:?}"
        );
    }

    fn bulk(text: &'static str) -> Frame {
        Frame::bulk(text)
    }

    #[test]
    fn frames_of_every_type_parse() {
        check("+OK\r\n", Frame::simple("OK"));
        check(
            "-ERR bad thing\r\n",
            Frame::Error(Bytes::from("ERR bad thing")),
        );
        check(
            "!8\r\nERR a\r\nb\r\n",
            Frame::Error(Bytes::from("ERR a\r\nb")),
        );
        check(":-12\r\n", Frame::Integer(-12));
        check(":+7\r\n", Frame::Integer(7));
        check("$5\r\nhello\r\n", bulk("hello"));
        check("$0\r\n\r\n", bulk(""));
        check("$4\r\na\r\nb\r\n", bulk("a\r\nb"));
        check("$-1\r\n", Frame::Null);
        check("*-1\r\n", Frame::Null);
        check("_\r\n", Frame::Null);
        check("*0\r\n", Frame::Array(vec![]));
        check(
            "*2\r\n$3\r\nGET\r\n:1\r\n",
            Frame::Array(vec![bulk("GET"), Frame::Integer(1)]),
        );
        check(
            "%2\r\n+a\r\n:1\r\n+b\r\n#f\r\n",
            Frame::Map(vec![
                (Frame::simple("a"), Frame::Integer(1)),
                (Frame::simple("b"), Frame::Boolean(false)),
            ]),
        );
        check("~1\r\n#t\r\n", Frame::Set(vec![Frame::Boolean(true)]));
        check(",1.5\r\n", Frame::Double(1.5));
        check(",-inf\r\n", Frame::Double(f64::NEG_INFINITY));
        check(",1e300\r\n", Frame::Double(1e300));
        check(
            "(3492890328409238509324850943850943825024385\r\n",
            Frame::BigNumber(Bytes::from("3492890328409238509324850943850943825024385")),
        );
        check(
            "=15\r\ntxt:Some string\r\n",
            Frame::Verbatim {
                format: *b"txt",
                text: Bytes::from("Some string"),
            },
        );
        check(
            ">2\r\n+message\r\n$2\r\nhi\r\n",
            Frame::Push(vec![Frame::simple("message"), bulk("hi")]),
        );
        check(
            "*1\r\n*1\r\n*1\r\n:3\r\n",
            Frame::Array(vec![Frame::Array(vec![Frame::Array(vec![
                Frame::Integer(3),
            ])])]),
        );
    }

    #[test]
    fn nan_doubles_parse_as_nan() {
        let mut buffer = BytesMut::from(&b",nan\r\n"[..]);
        match Frame::parse(&mut buffer, &Limits::default()) {
            Ok(Some(Frame::Double(value))) => assert!(value.is_nan()),
            other => panic!("expected a NaN double, got {other:?}"),
        }
    }

    #[test]
    fn attributes_are_skipped_and_the_annotated_frame_returned() {
        check(
            "|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n*1\r\n:2039123\r\n",
            Frame::Array(vec![Frame::Integer(2_039_123)]),
        );
    }

    #[test]
    fn only_the_first_frame_is_consumed() {
        let mut buffer = BytesMut::from(&b"+A\r\n+B\r\n"[..]);
        let limits = Limits::default();
        assert_eq!(
            Frame::parse(&mut buffer, &limits),
            Ok(Some(Frame::simple("A")))
        );
        assert_eq!(&buffer[..], b"+B\r\n");
    }

    #[test]
    fn every_strict_prefix_of_a_frame_is_incomplete() {
        let input = b"*3\r\n$3\r\nSET\r\n%1\r\n+k\r\n,2.5\r\n=8\r\ntxt:abcd\r\n";
        for cut in 0..input.len() {
            let mut buffer = BytesMut::from(&input[..cut]);
            assert_eq!(
                Frame::parse(&mut buffer, &Limits::default()),
                Ok(None),
                "cut at {cut}"
            );
            assert_eq!(
                buffer.len(),
                cut,
                "nothing is consumed from an incomplete frame"
            );
        }
        let mut buffer = BytesMut::from(&input[..]);
        assert!(matches!(
            Frame::parse(&mut buffer, &Limits::default()),
            Ok(Some(Frame::Array(_)))
        ));
    }

    #[test]
    fn malformed_frames_are_refused() {
        let limits = Limits::default();
        check_error(
            "?\r\n",
            limits,
            ProtocolError::InvalidFrameType { got: b'?' },
        );
        check_error(":12a\r\n", limits, ProtocolError::InvalidInteger);
        check_error(",abc\r\n", limits, ProtocolError::InvalidDouble);
        check_error("#x\r\n", limits, ProtocolError::InvalidBoolean);
        check_error("(12a\r\n", limits, ProtocolError::InvalidBigNumber);
        check_error("_x\r\n", limits, ProtocolError::InvalidNull);
        check_error("=3\r\ntxt\r\n", limits, ProtocolError::InvalidVerbatim);
        check_error("$-2\r\n", limits, ProtocolError::InvalidBulkLength);
        check_error("$abc\r\n", limits, ProtocolError::InvalidBulkLength);
        check_error("*-2\r\n", limits, ProtocolError::InvalidMultibulkLength);
        check_error("~-1\r\n", limits, ProtocolError::InvalidMultibulkLength);
        check_error("$3\r\nabcd\r\n", limits, ProtocolError::MissingCrlf);
        check_error("+OK\rX", limits, ProtocolError::MissingCrlf);
        check_error("$?\r\n", limits, ProtocolError::StreamedFrame);
        check_error(
            "$123456789012345678901",
            limits,
            ProtocolError::InvalidBulkLength,
        );
    }

    #[test]
    fn limits_are_enforced_before_the_data_arrives() {
        check_error(
            "$33\r\n",
            small_limits(),
            ProtocolError::ValueTooLarge { max_bulk_bytes: 32 },
        );
        check_error(
            "*9\r\n",
            small_limits(),
            ProtocolError::TooManyArguments { max_args: 8 },
        );
        // Six 37-byte elements fit in 256 bytes, a seventh does not: refused at its header.
        let too_long_array = format!(
            "*8\r\n{}$30\r\n",
            format!("${}\r\n{}\r\n", 30, "v".repeat(30)).repeat(6)
        );
        check_error(
            &too_long_array,
            small_limits(),
            ProtocolError::RequestTooLarge {
                max_request_bytes: 256,
            },
        );
        let long_line = format!("+{}", "a".repeat(33));
        check_error(
            &long_line,
            small_limits(),
            ProtocolError::LineTooLong {
                max_inline_bytes: 32,
            },
        );
        let deep = "*1\r\n".repeat(MAX_FRAME_DEPTH + 1);
        check_error(
            &deep,
            Limits::default(),
            ProtocolError::FrameTooDeep {
                max_depth: MAX_FRAME_DEPTH,
            },
        );
    }

    #[test]
    fn encoding_then_parsing_gives_the_frame_back_in_resp3() {
        let frame = Frame::Array(vec![
            Frame::simple("OK"),
            Frame::Error(Bytes::from("ERR x")),
            Frame::Error(Bytes::from("ERR multi\nline")),
            Frame::Integer(i64::MIN),
            bulk("v"),
            Frame::Null,
            Frame::Map(vec![(bulk("k"), Frame::Double(-2.25))]),
            Frame::Set(vec![Frame::Boolean(true)]),
            Frame::BigNumber(Bytes::from("-123456789012345678901234567890")),
            Frame::Verbatim {
                format: *b"mkd",
                text: Bytes::from("# title"),
            },
            Frame::Push(vec![bulk("p")]),
        ]);
        let mut out = BytesMut::new();
        frame.encode(&mut out, ProtocolVersion::Resp3);
        assert_eq!(Frame::parse(&mut out, &Limits::default()), Ok(Some(frame)));
        assert!(out.is_empty());
    }

    #[test]
    fn encoding_in_resp2_uses_the_fallbacks() {
        let frame = Frame::Map(vec![(bulk("a"), Frame::Boolean(true))]);
        let mut out = BytesMut::new();
        frame.encode(&mut out, ProtocolVersion::Resp2);
        assert_eq!(&out[..], b"*2\r\n$1\r\na\r\n:1\r\n");
    }
}
