//! Incremental, zero-copy parsing of client requests: multibulk arrays and inline commands.
//!
//! This is the node's hot path. Arguments are `Bytes` slices split off the connection's
//! input buffer (`split_to().freeze()`), so no argument is copied. The parser consumes each
//! header and each complete argument as soon as it has it and remembers where it is (how
//! many arguments are left, the length of the bulk string it waits for, how far it searched
//! an inline line for its end), so a large value arriving in many reads costs O(1) per read
//! until it is complete: it is never scanned again from the start.
//!
//! The behaviour follows Redis' `processMultibulkBuffer` and `processInlineBuffer`
//! (`networking.c`): a request starting with `*` is a multibulk array of bulk strings,
//! anything else is an inline line split like `sdssplitargs`; arrays of no element (`*0`) or a
//! negative count (`*-1`, `*-5`: Redis skips any `ll <= 0` without a reply and keeps the
//! connection, its `protocol.tcl` test "Negative multibulk length") and empty inline lines are
//! skipped. It is stricter where Redis trusts the client (the CRLF after a bulk string is
//! checked) and enforces [`Limits`] as soon as a header announces a size.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::limits::Limits;
use crate::number::parse_i64_strict;

/// Longest length header after its type byte: a sign and 19 digits. A line that is longer
/// without its CR cannot be a valid number, so it is refused without waiting for the CR.
const MAX_LENGTH_DIGITS: usize = 20;

/// Smallest possible argument on the wire, `$0\r\n\r\n`: lets a `*N` header be refused at
/// once when N arguments could not fit in `max_request_bytes`.
const MIN_BULK_ARGUMENT_BYTES: usize = 6;

/// Most argument slots allocated up front for a `*N` header, whatever N says, so a header
/// alone cannot make the node allocate much. Redis caps its first allocation the same way.
const MAX_PREALLOCATED_ARGS: usize = 1024;

/// One complete request: its arguments, the command name first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The arguments, each a zero-copy slice of the input; never empty.
    pub args: Vec<Bytes>,
    /// Bytes the request took on the wire, headers and line endings included.
    pub wire_bytes: usize,
}

impl Request {
    /// The arguments, for [`crate::Command::parse`].
    pub fn into_args(self) -> Vec<Bytes> {
        self.args
    }
}

/// Where the parser is within the request at the front of the input.
#[derive(Debug, Default)]
enum State {
    /// Between requests.
    #[default]
    Idle,
    /// Inside an inline line whose first `searched_bytes` bytes contain no LF.
    Inline { searched_bytes: usize },
    /// Inside a multibulk array whose header and first `args.len()` arguments are consumed.
    Multibulk {
        args_expected: usize,
        args: Vec<Bytes>,
        /// The length of the bulk string whose `$` header is consumed but whose data is not.
        bulk_len_opt: Option<usize>,
        /// Bytes of this request consumed so far.
        wire_bytes: usize,
    },
}

/// Splits a connection's input into requests. One per connection; always call it with the
/// same buffer, since it consumes the parts of a request it has already read.
///
/// After an error the connection must be closed: the parser resets itself, but the input is
/// no longer in step with request boundaries.
#[derive(Debug, Default)]
pub struct RequestParser {
    state: State,
}

impl RequestParser {
    /// A parser between requests.
    pub fn new() -> RequestParser {
        RequestParser::default()
    }

    /// Whether the parser is between requests (no partial request has been consumed).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    /// Bytes of the partial request already consumed from the input (headers and complete
    /// arguments the parser holds); 0 between requests and inside an inline line, whose
    /// bytes stay in the input until its end arrives.
    pub fn partial_request_bytes(&self) -> usize {
        match &self.state {
            State::Multibulk { wire_bytes, .. } => *wire_bytes,
            State::Idle | State::Inline { .. } => 0,
        }
    }

    /// How many more bytes the partial request at the front of `input` needs at least, for
    /// the node to `reserve` before reading: the rest of the bulk string being waited for,
    /// else 0 (unknown; any read will do).
    pub fn bytes_needed_hint(&self, input: &BytesMut) -> usize {
        match &self.state {
            State::Multibulk {
                bulk_len_opt: Some(bulk_len),
                ..
            } => (bulk_len + 2).saturating_sub(input.len()),
            _ => 0,
        }
    }

    /// Takes the next complete request off the front of `input`.
    ///
    /// Returns `Ok(None)` when `input` ends inside a request (the part already read is
    /// consumed and remembered; call again with more input), and an error, with the line to
    /// send before closing, for malformed or over-limit input. Empty requests (`*0`, a negative
    /// count such as `*-1`, blank inline lines) are skipped.
    pub fn parse(
        &mut self,
        input: &mut BytesMut,
        limits: &Limits,
    ) -> Result<Option<Request>, ProtocolError> {
        let result = self.parse_inner(input, limits);
        if result.is_err() {
            self.state = State::Idle;
        }
        result
    }

    fn parse_inner(
        &mut self,
        input: &mut BytesMut,
        limits: &Limits,
    ) -> Result<Option<Request>, ProtocolError> {
        loop {
            match &mut self.state {
                State::Idle => match input.first() {
                    None => return Ok(None),
                    Some(b'*') => {
                        let Some((count, header_bytes)) =
                            read_length_header(input, ProtocolError::InvalidMultibulkLength)?
                        else {
                            return Ok(None);
                        };
                        if count <= 0 {
                            // An empty, null or negative array carries no command; Redis skips
                            // it too (`ll <= 0` in `processMultibulkBuffer`), with no reply.
                            input.advance(header_bytes);
                            continue;
                        }
                        let args_expected = usize::try_from(count)
                            .map_err(|_| ProtocolError::InvalidMultibulkLength)?;
                        if args_expected > limits.max_args {
                            return Err(ProtocolError::TooManyArguments {
                                max_args: limits.max_args,
                            });
                        }
                        let smallest_request_bytes = args_expected
                            .saturating_mul(MIN_BULK_ARGUMENT_BYTES)
                            .saturating_add(header_bytes);
                        check_request_bytes(smallest_request_bytes, limits)?;
                        input.advance(header_bytes);
                        self.state = State::Multibulk {
                            args_expected,
                            args: Vec::with_capacity(args_expected.min(MAX_PREALLOCATED_ARGS)),
                            bulk_len_opt: None,
                            wire_bytes: header_bytes,
                        };
                    }
                    Some(_) => self.state = State::Inline { searched_bytes: 0 },
                },
                State::Inline { searched_bytes } => {
                    match parse_inline(input, searched_bytes, limits)? {
                        InlineOutcome::Incomplete => return Ok(None),
                        InlineOutcome::Blank => self.state = State::Idle,
                        InlineOutcome::Request(request) => {
                            self.state = State::Idle;
                            return Ok(Some(request));
                        }
                    }
                }
                State::Multibulk {
                    args_expected,
                    args,
                    bulk_len_opt,
                    wire_bytes,
                } => {
                    while args.len() < *args_expected {
                        let bulk_len = match *bulk_len_opt {
                            Some(bulk_len) => bulk_len,
                            None => {
                                let Some(&type_byte) = input.first() else {
                                    return Ok(None);
                                };
                                if type_byte != b'$' {
                                    return Err(ProtocolError::ExpectedBulk { got: type_byte });
                                }
                                let Some((length, header_bytes)) =
                                    read_length_header(input, ProtocolError::InvalidBulkLength)?
                                else {
                                    return Ok(None);
                                };
                                let bulk_len = usize::try_from(length)
                                    .map_err(|_| ProtocolError::InvalidBulkLength)?;
                                if bulk_len > limits.max_bulk_bytes {
                                    return Err(ProtocolError::ValueTooLarge {
                                        max_bulk_bytes: limits.max_bulk_bytes,
                                    });
                                }
                                // The arguments still to come need at least their headers.
                                let args_after_this = *args_expected - args.len() - 1;
                                let smallest_request_bytes = wire_bytes
                                    .saturating_add(header_bytes)
                                    .saturating_add(bulk_len)
                                    .saturating_add(2)
                                    .saturating_add(
                                        args_after_this.saturating_mul(MIN_BULK_ARGUMENT_BYTES),
                                    );
                                check_request_bytes(smallest_request_bytes, limits)?;
                                input.advance(header_bytes);
                                *wire_bytes += header_bytes;
                                *bulk_len_opt = Some(bulk_len);
                                bulk_len
                            }
                        };
                        if input.len() < bulk_len + 2 {
                            return Ok(None);
                        }
                        if &input[bulk_len..bulk_len + 2] != b"\r\n" {
                            return Err(ProtocolError::MissingCrlf);
                        }
                        args.push(input.split_to(bulk_len).freeze());
                        input.advance(2);
                        *wire_bytes += bulk_len + 2;
                        *bulk_len_opt = None;
                    }
                    let request = Request {
                        args: std::mem::take(args),
                        wire_bytes: *wire_bytes,
                    };
                    self.state = State::Idle;
                    return Ok(Some(request));
                }
            }
        }
    }
}

fn check_request_bytes(request_bytes: usize, limits: &Limits) -> Result<(), ProtocolError> {
    if request_bytes > limits.max_request_bytes {
        return Err(ProtocolError::RequestTooLarge {
            max_request_bytes: limits.max_request_bytes,
        });
    }
    Ok(())
}

/// Reads the `*N` or `$N` line at the front of `input` without consuming it. Returns the
/// number and the header's length with its CRLF, or `None` if the line is not complete.
fn read_length_header(
    input: &[u8],
    invalid: ProtocolError,
) -> Result<Option<(i64, usize)>, ProtocolError> {
    let digits_searched = &input[1..input.len().min(1 + MAX_LENGTH_DIGITS + 1)];
    let Some(digits_len) = digits_searched.iter().position(|&byte| byte == b'\r') else {
        if digits_searched.len() > MAX_LENGTH_DIGITS {
            return Err(invalid);
        }
        return Ok(None);
    };
    let carriage_return = 1 + digits_len;
    match input.get(carriage_return + 1) {
        None => Ok(None),
        Some(b'\n') => {
            let number = parse_i64_strict(&input[1..carriage_return]).ok_or(invalid)?;
            Ok(Some((number, carriage_return + 2)))
        }
        Some(_) => Err(ProtocolError::MissingCrlf),
    }
}

enum InlineOutcome {
    Incomplete,
    Blank,
    Request(Request),
}

/// Reads an inline line (ended by LF, optionally preceded by CR) and splits it into
/// arguments. `searched_bytes` is how much of `input` is already known to hold no LF.
fn parse_inline(
    input: &mut BytesMut,
    searched_bytes: &mut usize,
    limits: &Limits,
) -> Result<InlineOutcome, ProtocolError> {
    let max_line_bytes = limits.max_inline_bytes.min(limits.max_request_bytes);
    // A line of max_line_bytes plus CR LF is the longest allowed; search no further.
    let search_end = input.len().min(max_line_bytes.saturating_add(2));
    // The limits may have shrunk since the last call (a connection back to its
    // pre-authentication limits), leaving the part already searched beyond the new end.
    let search_start = (*searched_bytes).min(search_end);
    let Some(offset) = input[search_start..search_end]
        .iter()
        .position(|&byte| byte == b'\n')
    else {
        if input.len() >= max_line_bytes.saturating_add(2) {
            return Err(ProtocolError::TooBigInlineRequest);
        }
        *searched_bytes = search_end;
        return Ok(InlineOutcome::Incomplete);
    };
    let line_feed = search_start + offset;
    let line_len = if line_feed > 0 && input[line_feed - 1] == b'\r' {
        line_feed - 1
    } else {
        line_feed
    };
    if line_len > max_line_bytes {
        return Err(ProtocolError::TooBigInlineRequest);
    }
    let wire_bytes = line_feed + 1;
    let line = input.split_to(wire_bytes).freeze().slice(..line_len);
    let args = split_inline_args(&line)?;
    if args.is_empty() {
        return Ok(InlineOutcome::Blank);
    }
    if args.len() > limits.max_args {
        return Err(ProtocolError::TooManyArguments {
            max_args: limits.max_args,
        });
    }
    Ok(InlineOutcome::Request(Request { args, wire_bytes }))
}

/// `isspace` in the C locale, which `sdssplitargs` uses between arguments.
fn is_c_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex_digit_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Splits an inline line into arguments exactly like Redis' `sdssplitargs`, so what works
/// typed into `redis-cli` or `nc` against Redis works here: blanks separate arguments;
/// `"..."` quotes with `\n \r \t \b \a \\ \"` and `\xHH` escapes; `'...'` quotes with only
/// `\'`; a closing quote must be followed by a blank or the end. The line ends at a NUL,
/// as the C string does. Unquoted arguments are zero-copy slices of `line`.
pub(crate) fn split_inline_args(line: &Bytes) -> Result<Vec<Bytes>, ProtocolError> {
    let end = line
        .iter()
        .position(|&byte| byte == 0)
        .unwrap_or(line.len());
    let bytes = &line[..end];
    let at = |index: usize| bytes.get(index).copied().unwrap_or(0);
    let mut args = Vec::new();
    let mut position = 0;
    loop {
        while position < end && is_c_space(bytes[position]) {
            position += 1;
        }
        if position >= end {
            return Ok(args);
        }
        // The argument is a slice of the line until the first quote or escape forces a copy.
        let start = position;
        let mut copied_opt: Option<Vec<u8>> = None;
        let mut in_double_quotes = false;
        let mut in_single_quotes = false;
        loop {
            let byte = at(position);
            if in_double_quotes {
                let copied = copied_opt.get_or_insert_with(Vec::new);
                if byte == b'\\'
                    && at(position + 1) == b'x'
                    && let (Some(high), Some(low)) = (
                        hex_digit_value(at(position + 2)),
                        hex_digit_value(at(position + 3)),
                    )
                {
                    copied.push(high * 16 + low);
                    position += 3;
                } else if byte == b'\\' && position + 1 < end {
                    position += 1;
                    copied.push(match bytes[position] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if byte == b'"' {
                    if position + 1 < end && !is_c_space(bytes[position + 1]) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    position += 1;
                    break;
                } else if position >= end {
                    return Err(ProtocolError::UnbalancedQuotes);
                } else {
                    copied.push(byte);
                }
            } else if in_single_quotes {
                let copied = copied_opt.get_or_insert_with(Vec::new);
                if byte == b'\\' && at(position + 1) == b'\'' {
                    position += 1;
                    copied.push(b'\'');
                } else if byte == b'\'' {
                    if position + 1 < end && !is_c_space(bytes[position + 1]) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    position += 1;
                    break;
                } else if position >= end {
                    return Err(ProtocolError::UnbalancedQuotes);
                } else {
                    copied.push(byte);
                }
            } else {
                match byte {
                    // Only the end of the line reads as NUL: the line was cut at its first NUL.
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => break,
                    b'"' | b'\'' => {
                        // A quote may start in the middle of an argument: `a"b c"` is `ab c`.
                        copied_opt.get_or_insert_with(|| bytes[start..position].to_vec());
                        in_double_quotes = byte == b'"';
                        in_single_quotes = byte == b'\'';
                    }
                    other => {
                        if let Some(copied) = copied_opt.as_mut() {
                            copied.push(other);
                        }
                    }
                }
            }
            position += 1;
        }
        args.push(match copied_opt {
            Some(copied) => Bytes::from(copied),
            None => line.slice(start..position),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits_small() -> Limits {
        Limits {
            max_request_bytes: 128,
            max_args: 4,
            max_bulk_bytes: 16,
            max_inline_bytes: 32,
        }
    }

    /// Parses all of `input` at once and compares every request that comes out.
    fn check(input: &[u8], expect: &[&[&str]]) {
        let mut buffer = BytesMut::from(input);
        let mut parser = RequestParser::new();
        let mut got = Vec::new();
        while let Some(request) = parser
            .parse(&mut buffer, &Limits::default())
            .unwrap_or_else(|error| panic!("input {input:?}: {error}"))
        {
            got.push(request.args);
        }
        let expect: Vec<Vec<Bytes>> = expect
            .iter()
            .map(|args| {
                args.iter()
                    .map(|arg| Bytes::from(arg.to_string()))
                    .collect()
            })
            .collect();
        assert_eq!(got, expect, "input {:?}", String::from_utf8_lossy(input));
        assert!(buffer.is_empty(), "input {input:?} left {buffer:?}");
        assert!(parser.is_idle());
    }

    fn check_error(input: &[u8], limits: Limits, expect: ProtocolError) {
        let mut buffer = BytesMut::from(input);
        let mut parser = RequestParser::new();
        let result = loop {
            match parser.parse(&mut buffer, &limits) {
                Ok(Some(_)) => continue,
                other => break other,
            }
        };
        assert_eq!(
            result,
            Err(expect),
            "input {:?}",
            String::from_utf8_lossy(input)
        );
        assert!(parser.is_idle(), "the parser resets after an error");
    }

    #[test]
    fn multibulk_requests_parse() {
        check(b"*1\r\n$4\r\nPING\r\n", &[&["PING"]]);
        check(
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n",
            &[&["SET", "k", ""]],
        );
        check(b"*1\r\n$4\r\na\r\nb\r\n", &[&["a\r\nb"]]);
        check(
            b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
            &[&["PING"], &["GET", "k"]],
        );
    }

    #[test]
    fn empty_and_null_arrays_and_blank_lines_are_skipped() {
        check(
            b"*0\r\n*-1\r\n\r\n\n   \r\n*1\r\n$4\r\nPING\r\n",
            &[&["PING"]],
        );
        check(b"*0\r\n", &[]);
        // Any negative count, as Redis' "Negative multibulk length" test sends it.
        check(b"*-10\r\n*1\r\n$4\r\nPING\r\n", &[&["PING"]]);
        check(b"*-2\r\n*-9223372036854775808\r\n", &[]);
    }

    #[test]
    fn inline_requests_split_like_sdssplitargs() {
        check(b"PING\r\n", &[&["PING"]]);
        check(b"PING\n", &[&["PING"]]);
        check(b"  SET  a   b \r\n", &[&["SET", "a", "b"]]);
        check(b"SET a \"b c\"\r\n", &[&["SET", "a", "b c"]]);
        check(b"SET a 'b c'\r\n", &[&["SET", "a", "b c"]]);
        check(
            b"ECHO \"\\x41\\n\\t\\\"\\\\\"\r\n",
            &[&["ECHO", "A\n\t\"\\"]],
        );
        check(b"ECHO \"\\xZZ\"\r\n", &[&["ECHO", "xZZ"]]);
        check(b"ECHO 'it\\'s' 'a\\nb'\r\n", &[&["ECHO", "it's", "a\\nb"]]);
    }

    #[test]
    fn inline_quotes_inside_an_argument_join_it() {
        // Redis keeps going after a closing quote only when a blank follows, so `a"b c"`
        // (quote opened mid-argument, closed at the end) is the argument `ab c`.
        check(b"ECHO a\"b c\"\r\n", &[&["ECHO", "ab c"]]);
        check(b"ECHO \"\" ''\r\n", &[&["ECHO", "", ""]]);
    }

    #[test]
    fn inline_line_ends_at_a_nul_like_the_c_string() {
        check(b"ECHO a\0b c\r\n", &[&["ECHO", "a"]]);
    }

    #[test]
    fn unbalanced_inline_quotes_are_refused() {
        for input in [
            &b"SET a \"b\r\n"[..],
            b"SET a 'b\r\n",
            b"SET a \"b\"c\r\n",
            b"SET a 'b'c\r\n",
            b"SET a \"b\\\"\r\n",
        ] {
            check_error(input, Limits::default(), ProtocolError::UnbalancedQuotes);
        }
    }

    #[test]
    fn a_request_fed_one_byte_at_a_time_comes_out_once_at_the_end() {
        let inputs: [&[u8]; 3] = [
            b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$10\r\n0123456789\r\n",
            b"SET key \"a b\"\r\n",
            b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n",
        ];
        for input in inputs {
            let mut parser = RequestParser::new();
            let mut buffer = BytesMut::new();
            for (index, &byte) in input.iter().enumerate() {
                buffer.extend_from_slice(&[byte]);
                let result = parser.parse(&mut buffer, &Limits::default());
                if index + 1 < input.len() {
                    assert_eq!(result, Ok(None), "input {input:?} byte {index}");
                } else {
                    let request = result
                        .unwrap_or_else(|error| panic!("{error}"))
                        .unwrap_or_else(|| panic!("no request at the end of {input:?}"));
                    assert_eq!(request.wire_bytes, input.len());
                }
            }
            assert!(buffer.is_empty());
        }
    }

    #[test]
    fn a_large_value_in_many_reads_is_not_rescanned() {
        // The header is consumed at once and the hint says exactly what is missing, which is
        // what keeps many small reads O(n) overall.
        let mut parser = RequestParser::new();
        let mut buffer = BytesMut::from(&b"*2\r\n$4\r\nECHO\r\n$100\r\n"[..]);
        assert_eq!(parser.parse(&mut buffer, &Limits::default()), Ok(None));
        assert!(
            buffer.is_empty(),
            "headers and complete arguments are consumed"
        );
        assert_eq!(parser.bytes_needed_hint(&buffer), 102);
        buffer.extend_from_slice(&[b'x'; 60]);
        assert_eq!(parser.parse(&mut buffer, &Limits::default()), Ok(None));
        assert_eq!(buffer.len(), 60, "a partial value stays in the buffer");
        assert_eq!(parser.bytes_needed_hint(&buffer), 42);
        buffer.extend_from_slice(&[b'x'; 40]);
        buffer.extend_from_slice(b"\r\n");
        let request = parser.parse(&mut buffer, &Limits::default());
        assert!(matches!(request, Ok(Some(Request { ref args, .. })) if args[1].len() == 100));
    }

    #[test]
    fn arguments_are_slices_of_the_input_buffer() {
        let mut buffer = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n"[..]);
        let start = buffer.as_ptr() as usize;
        let end = start + buffer.len();
        let request = RequestParser::new()
            .parse(&mut buffer, &Limits::default())
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no request"));
        for arg in &request.args {
            let address = arg.as_ptr() as usize;
            assert!(
                address >= start && address < end,
                "argument {arg:?} was copied"
            );
        }
    }

    #[test]
    fn malformed_multibulk_input_is_refused() {
        let limits = Limits::default();
        check_error(b"*abc\r\n", limits, ProtocolError::InvalidMultibulkLength);
        check_error(b"*-0\r\n", limits, ProtocolError::InvalidMultibulkLength);
        check_error(b"*-\r\n", limits, ProtocolError::InvalidMultibulkLength);
        check_error(b"*01\r\n", limits, ProtocolError::InvalidMultibulkLength);
        check_error(b"*\r\n", limits, ProtocolError::InvalidMultibulkLength);
        check_error(
            b"*123456789012345678901",
            limits,
            ProtocolError::InvalidMultibulkLength,
        );
        check_error(b"*1\rX", limits, ProtocolError::MissingCrlf);
        check_error(b"*1\r\n$-1\r\n", limits, ProtocolError::InvalidBulkLength);
        check_error(b"*1\r\n$x\r\n", limits, ProtocolError::InvalidBulkLength);
        check_error(
            b"*1\r\n$999999999999999999999",
            limits,
            ProtocolError::InvalidBulkLength,
        );
        check_error(
            b"*1\r\nx3\r\nabc\r\n",
            limits,
            ProtocolError::ExpectedBulk { got: b'x' },
        );
        check_error(
            b"*1\r\n:3\r\n",
            limits,
            ProtocolError::ExpectedBulk { got: b':' },
        );
        check_error(b"*1\r\n$3\r\nabcXY", limits, ProtocolError::MissingCrlf);
        check_error(b"*1\r\n$3\r\nabc\n\r", limits, ProtocolError::MissingCrlf);
    }

    #[test]
    fn limits_are_enforced_at_the_header_before_the_data() {
        check_error(
            b"*5\r\n",
            limits_small(),
            ProtocolError::TooManyArguments { max_args: 4 },
        );
        check_error(
            b"*1000000000\r\n",
            Limits::default(),
            ProtocolError::TooManyArguments {
                max_args: Limits::default().max_args,
            },
        );
        check_error(
            b"*1000000000\r\n",
            Limits {
                max_args: usize::MAX,
                ..Limits::default()
            },
            ProtocolError::RequestTooLarge {
                max_request_bytes: Limits::default().max_request_bytes,
            },
        );
        check_error(
            b"*1\r\n$17\r\n",
            limits_small(),
            ProtocolError::ValueTooLarge { max_bulk_bytes: 16 },
        );
        check_error(
            b"*1\r\n$2000000000\r\n",
            Limits::default(),
            ProtocolError::ValueTooLarge {
                max_bulk_bytes: Limits::default().max_bulk_bytes,
            },
        );
        // Four 16-byte arguments take 96 bytes with their headers, more than 90: refused at
        // the fourth header, before its data.
        let mut input = b"*4\r\n".to_vec();
        for _ in 0..3 {
            input.extend_from_slice(b"$16\r\n0123456789abcdef\r\n");
        }
        input.extend_from_slice(b"$16\r\n");
        check_error(
            &input,
            Limits {
                max_request_bytes: 90,
                ..limits_small()
            },
            ProtocolError::RequestTooLarge {
                max_request_bytes: 90,
            },
        );
        // Four arguments cannot fit when the first one is already too long to leave room.
        check_error(
            b"*4\r\n$16\r\n",
            Limits {
                max_request_bytes: 40,
                ..limits_small()
            },
            ProtocolError::RequestTooLarge {
                max_request_bytes: 40,
            },
        );
    }

    #[test]
    fn limits_may_shrink_in_the_middle_of_a_request() {
        let mut parser = RequestParser::new();
        let mut buffer = BytesMut::from(&vec![b'a'; 60][..]);
        assert_eq!(parser.parse(&mut buffer, &Limits::default()), Ok(None));
        assert_eq!(
            parser.parse(&mut buffer, &limits_small()),
            Err(ProtocolError::TooBigInlineRequest)
        );
        let mut parser = RequestParser::new();
        let mut buffer = BytesMut::from(&vec![b'a'; 20][..]);
        assert_eq!(parser.parse(&mut buffer, &Limits::default()), Ok(None));
        buffer.extend_from_slice(b" b\r\n");
        let request = parser.parse(&mut buffer, &limits_small());
        assert!(matches!(request, Ok(Some(Request { ref args, .. })) if args.len() == 2));
    }

    #[test]
    fn inline_limits_are_enforced_before_the_line_ends() {
        let long_line = vec![b'a'; 34];
        check_error(
            &long_line,
            limits_small(),
            ProtocolError::TooBigInlineRequest,
        );
        let mut exactly_too_long = vec![b'a'; 33];
        exactly_too_long.extend_from_slice(b"\r\n");
        check_error(
            &exactly_too_long,
            limits_small(),
            ProtocolError::TooBigInlineRequest,
        );
        check_error(
            b"a b c d e\r\n",
            limits_small(),
            ProtocolError::TooManyArguments { max_args: 4 },
        );
        // The longest allowed line still parses.
        let mut longest = vec![b'a'; 32];
        longest.extend_from_slice(b"\r\n");
        let mut buffer = BytesMut::from(&longest[..]);
        let result = RequestParser::new().parse(&mut buffer, &limits_small());
        assert!(matches!(result, Ok(Some(_))), "{result:?}");
    }
}
