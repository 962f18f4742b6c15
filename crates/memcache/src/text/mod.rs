//! The memcached text protocol: [`TextParser`] turns bytes into [`TextRequest`]s, the `encode_*`
//! functions turn outcomes into reply lines.
//!
//! Parsing follows memcached 1.6's `proto_text.c`: a line ends at `\n` (a `\r` before it is
//! dropped), tokens are separated by spaces, command names are lower case, and every error is
//! worded as memcached words it. Where scd differs, the item's documentation says so.
//!
//! Keys and values are [`Bytes`] sharing the read buffer's memory (no copy); a store that keeps a
//! small value for long should copy it, so it does not pin a whole read buffer.

mod error;
mod meta;
mod mutation;
mod response;
mod retrieval;
mod server;
mod storage;

use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};

pub use error::{ReplyKind, TextError};
pub use meta::{
    MAX_META_TOKENS, MAX_OPAQUE_BYTES, MetaArithmetic, MetaDelete, MetaFlag, MetaGet, MetaSet,
};
pub use mutation::ArithmeticRequest;
pub use response::{
    MetaArithmeticOutcome, MetaDeleteOutcome, MetaGetHit, MetaSetOutcome,
    NON_NUMERIC_VALUE_MESSAGE, TextStatus, encode_client_error, encode_error,
    encode_meta_arithmetic, encode_meta_delete, encode_meta_get_hit, encode_meta_get_miss,
    encode_meta_noop, encode_meta_set, encode_number, encode_server_error, encode_stat,
    encode_status, encode_value, encode_version,
};
pub use retrieval::GetRequest;
pub use storage::StoreRequest;

use crate::Limits;

/// One complete text-protocol request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextRequest {
    /// `get`, `gets`, `gat`, `gats`: answer with a `VALUE` block per key found, then `END`.
    Get(GetRequest),
    /// `set`, `add`, `replace`, `append`, `prepend`, `cas`, with their data block.
    Store(StoreRequest),
    /// `delete <key> [noreply]`: answer `DELETED` or `NOT_FOUND`.
    Delete {
        /// The key to delete.
        key: Bytes,
        /// Send no reply.
        noreply: bool,
    },
    /// `incr`, `decr`: answer with the new value or `NOT_FOUND`.
    Arithmetic(ArithmeticRequest),
    /// `touch <key> <exptime> [noreply]`: answer `TOUCHED` or `NOT_FOUND`.
    Touch {
        /// The key whose expiry changes.
        key: Bytes,
        /// The new exptime; see [`crate::exptime_to_deadline`].
        exptime: i64,
        /// Send no reply.
        noreply: bool,
    },
    /// `flush_all [delay] [noreply]`: invalidate every item, now or after `delay_seconds`
    /// (an exptime, so it may also be an absolute time); answer `OK`.
    FlushAll {
        /// 0 for now, else an exptime after which everything stored before is invalid.
        delay_seconds: i64,
        /// Send no reply.
        noreply: bool,
    },
    /// `version`: answer `VERSION <version>`.
    Version,
    /// `stats [group...]`: answer `STAT <name> <value>` lines and `END`; an unknown group is
    /// answered with `ERROR`, as memcached does.
    Stats {
        /// The words after `stats` (`settings`, `items`, `slabs`, `conns`, ...); empty for the
        /// general statistics.
        arguments: Vec<Bytes>,
    },
    /// `verbosity <level> [noreply]`: answer `OK`.
    Verbosity {
        /// The requested log level; scd may ignore it.
        level: u32,
        /// Send no reply.
        noreply: bool,
    },
    /// `quit`: close the connection without a reply.
    Quit,
    /// `mg`: meta get.
    MetaGet(MetaGet),
    /// `ms`: meta set, with its data block.
    MetaSet(MetaSet),
    /// `md`: meta delete.
    MetaDelete(MetaDelete),
    /// `ma`: meta arithmetic.
    MetaArithmetic(MetaArithmetic),
    /// `mn`: meta no-op; answer `MN` (clients use it to mark the end of a pipeline of quiet
    /// commands).
    MetaNoop,
}

/// Turns the bytes of a text-protocol connection into requests, one at a time.
///
/// The parser keeps a little state between calls so that nothing is scanned twice: how much of
/// an incomplete line has been searched for its end, the command line of a storage command whose
/// data block has not fully arrived, and how many bytes of a refused data block are still to be
/// skipped. One parser per connection.
#[derive(Debug, Default)]
pub struct TextParser {
    state: State,
}

#[derive(Debug)]
enum State {
    /// Waiting for a command line. The first `scanned_bytes` bytes of the buffer are known to
    /// hold no `\n`.
    Line { scanned_bytes: usize },
    /// A storage command line was parsed; waiting for `data_bytes` bytes of data and `\r\n`.
    Data { pending: Pending, data_bytes: usize },
    /// A storage command was refused; `remaining_bytes` more bytes of its data block are dropped
    /// as they arrive, as memcached's `conn_swallow` does.
    Skip { remaining_bytes: usize },
}

impl Default for State {
    fn default() -> Self {
        State::Line { scanned_bytes: 0 }
    }
}

/// A storage command waiting for its data block; its `value` is still empty.
#[derive(Debug)]
enum Pending {
    Store(StoreRequest),
    MetaSet(MetaSet),
}

impl Pending {
    fn into_request(self, value: Bytes) -> TextRequest {
        match self {
            Pending::Store(mut request) => {
                request.value = value;
                TextRequest::Store(request)
            }
            Pending::MetaSet(mut request) => {
                request.value = value;
                TextRequest::MetaSet(request)
            }
        }
    }

    /// memcached sends `CLIENT_ERROR bad data chunk` even to `noreply` meta sets (its
    /// `mset_res` path), but not to classic `noreply` sets.
    fn bad_data_chunk(&self) -> TextError {
        match self {
            Pending::Store(request) => TextError::BadDataChunk {
                noreply: request.noreply,
            },
            Pending::MetaSet(_) => TextError::BadDataChunk { noreply: false },
        }
    }
}

/// What a command line turned into.
#[derive(Debug)]
enum Parsed {
    /// A complete request.
    Request(TextRequest),
    /// A storage command whose data block follows.
    AwaitData { pending: Pending, data_bytes: usize },
}

/// A refused command line, and how much of the data block after it to skip.
#[derive(Debug)]
struct Rejection {
    error: TextError,
    /// Bytes to drop after the line: a refused storage command's data block and its `\r\n`, or 0.
    skip_bytes: usize,
}

impl From<TextError> for Rejection {
    fn from(error: TextError) -> Self {
        Rejection {
            error,
            skip_bytes: 0,
        }
    }
}

impl TextParser {
    /// A parser for a new connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next complete request off the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not yet hold a complete request (read more and call
    /// again; the parser remembers how far it got), `Ok(Some(_))` with the bytes of the request
    /// removed from `buf`, or an error to answer with [`encode_error`]. After an error that does
    /// not [close the connection](TextError::closes_connection) the bad request has been consumed
    /// (with its data block, skipped as it arrives), and parsing simply goes on.
    ///
    /// Never asks for more than `max_line_bytes` of command line plus `max_value_bytes` of data
    /// (and its `\r\n`) to be buffered: beyond that it answers with an error instead of `Ok(None)`.
    pub fn parse(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
    ) -> Result<Option<TextRequest>, TextError> {
        if let State::Skip { remaining_bytes } = &mut self.state {
            let skipped_bytes = (*remaining_bytes).min(buf.len());
            buf.advance(skipped_bytes);
            *remaining_bytes -= skipped_bytes;
            if *remaining_bytes > 0 {
                return Ok(None);
            }
            self.state = State::default();
        }
        match &mut self.state {
            State::Line { scanned_bytes } => {
                let Some(line) = take_line(buf, scanned_bytes, limits)? else {
                    return Ok(None);
                };
                match parse_line(line, limits) {
                    Ok(Parsed::Request(request)) => Ok(Some(request)),
                    Ok(Parsed::AwaitData {
                        pending,
                        data_bytes,
                    }) => {
                        self.state = State::Data {
                            pending,
                            data_bytes,
                        };
                        self.parse_data(buf)
                    }
                    Err(rejection) => Err(self.reject(rejection, limits)),
                }
            }
            State::Data { .. } => self.parse_data(buf),
            State::Skip { .. } => unreachable!("the skip state was left above"),
        }
    }

    /// Completes a storage command once its data block and the `\r\n` after it have arrived.
    fn parse_data(&mut self, buf: &mut BytesMut) -> Result<Option<TextRequest>, TextError> {
        let State::Data { data_bytes, .. } = &self.state else {
            unreachable!("parse_data is only called in the data state")
        };
        let data_bytes = *data_bytes;
        // data_bytes is at most max_value_bytes, checked when the line was parsed.
        if buf.len() < data_bytes + 2 {
            return Ok(None);
        }
        let State::Data { pending, .. } = std::mem::take(&mut self.state) else {
            unreachable!("checked above")
        };
        if &buf[data_bytes..data_bytes + 2] != b"\r\n" {
            // memcached reads exactly <bytes> + 2 bytes into the item before it checks them, so
            // that much is consumed here too, and parsing resumes after it.
            buf.advance(data_bytes + 2);
            return Err(pending.bad_data_chunk());
        }
        let value = buf.split_to(data_bytes).freeze();
        buf.advance(2);
        Ok(Some(pending.into_request(value)))
    }

    /// Arranges for the data block of a refused command to be skipped, or turns the refusal into
    /// one that closes the connection when the block is beyond the skip bound.
    fn reject(&mut self, rejection: Rejection, limits: &Limits) -> TextError {
        let Rejection { error, skip_bytes } = rejection;
        if skip_bytes == 0 {
            return error;
        }
        if skip_bytes > limits.max_skip_bytes() {
            // A block beyond the skip bound is also beyond max_value_bytes, so "too large" is
            // true whatever else was wrong with the line.
            return TextError::ObjectTooLarge {
                noreply: false,
                skipped: false,
            };
        }
        self.state = State::Skip {
            remaining_bytes: skip_bytes,
        };
        error
    }
}

/// Removes the next command line from `buf` with its `\n`, or returns `None` if the line is not
/// complete yet. `scanned_bytes` remembers how much was already searched.
fn take_line(
    buf: &mut BytesMut,
    scanned_bytes: &mut usize,
    limits: &Limits,
) -> Result<Option<Bytes>, TextError> {
    // A line may hold max_line_bytes bytes before its '\n', so the '\n' may be at index
    // max_line_bytes at the latest; searching further would only find lines that are too long.
    let search_end = buf.len().min(limits.max_line_bytes.saturating_add(1));
    let search_start = (*scanned_bytes).min(search_end);
    match buf[search_start..search_end]
        .iter()
        .position(|&byte| byte == b'\n')
    {
        Some(offset) => {
            *scanned_bytes = 0;
            Ok(Some(buf.split_to(search_start + offset + 1).freeze()))
        }
        None if buf.len() > limits.max_line_bytes => {
            *scanned_bytes = 0;
            Err(TextError::LineTooLong)
        }
        None => {
            *scanned_bytes = search_end;
            Ok(None)
        }
    }
}

/// A command line split into space-separated tokens.
#[derive(Debug)]
struct Line {
    bytes: Bytes,
    tokens: Vec<Range<usize>>,
    /// More tokens than [`Line::MAX_TOKENS_FLOOR`] or the get limit allowed were on the line.
    overflowed: bool,
}

impl Line {
    /// The fewest tokens kept for any line; memcached's tokenizer keeps 24.
    const MAX_TOKENS_FLOOR: usize = 24;

    /// Splits `bytes` (a line with its `\n`) like memcached's `tokenize_command`: on spaces only,
    /// after dropping the `\n` and a `\r` before it.
    fn split(bytes: Bytes, limits: &Limits) -> Line {
        let mut end = bytes.len() - 1;
        // memcached drops the '\r' only when something precedes it, so "\r\n" is the one-byte
        // command "\r" (which is an ERROR either way).
        if end > 1 && bytes[end - 1] == b'\r' {
            end -= 1;
        }
        // Bound the token list: a get names at most max_keys_per_get keys, anything else needs
        // far fewer tokens, and a line of single-letter tokens must not cost an allocation
        // proportional to max_line_bytes.
        let max_tokens = limits
            .max_keys_per_get
            .saturating_add(2)
            .max(Self::MAX_TOKENS_FLOOR);
        let mut tokens = Vec::new();
        let mut overflowed = false;
        let mut token_start = None;
        for index in 0..=end {
            let at_separator = index == end || bytes[index] == b' ';
            match (at_separator, token_start) {
                (true, Some(start)) => {
                    if tokens.len() == max_tokens {
                        overflowed = true;
                        break;
                    }
                    tokens.push(start..index);
                    token_start = None;
                }
                (false, None) => token_start = Some(index),
                _ => {}
            }
        }
        Line {
            bytes,
            tokens,
            overflowed,
        }
    }

    fn len(&self) -> usize {
        self.tokens.len()
    }

    fn token(&self, index: usize) -> &[u8] {
        &self.bytes[self.tokens[index].clone()]
    }

    fn token_bytes(&self, index: usize) -> Bytes {
        self.bytes.slice(self.tokens[index].clone())
    }

    /// Whether the last token is `noreply`, the way memcached's `set_noreply_maybe` decides.
    fn ends_with_noreply(&self) -> bool {
        self.len() > 1 && self.token(self.len() - 1) == b"noreply"
    }
}

fn parse_line(bytes: Bytes, limits: &Limits) -> Result<Parsed, Rejection> {
    let line = Line::split(bytes, limits);
    // memcached: no valid command is shorter than two bytes, and an empty line is an ERROR too.
    if line.len() == 0 || line.token(0).len() < 2 {
        return Err(TextError::UnknownCommand.into());
    }
    let request = match line.token(0) {
        b"get" => retrieval::parse_get(&line, false, false, limits)?,
        b"gets" => retrieval::parse_get(&line, true, false, limits)?,
        b"gat" => retrieval::parse_get(&line, false, true, limits)?,
        b"gats" => retrieval::parse_get(&line, true, true, limits)?,
        b"set" => return storage::parse_store(&line, crate::StoreMode::Set, false, limits),
        b"add" => return storage::parse_store(&line, crate::StoreMode::Add, false, limits),
        b"replace" => return storage::parse_store(&line, crate::StoreMode::Replace, false, limits),
        b"append" => return storage::parse_store(&line, crate::StoreMode::Append, false, limits),
        b"prepend" => return storage::parse_store(&line, crate::StoreMode::Prepend, false, limits),
        b"cas" => return storage::parse_store(&line, crate::StoreMode::Set, true, limits),
        b"delete" => mutation::parse_delete(&line, limits)?,
        b"incr" => mutation::parse_arithmetic(&line, crate::Direction::Increment, limits)?,
        b"decr" => mutation::parse_arithmetic(&line, crate::Direction::Decrement, limits)?,
        b"touch" => mutation::parse_touch(&line, limits)?,
        b"flush_all" => server::parse_flush_all(&line)?,
        b"version" => TextRequest::Version,
        b"stats" => server::parse_stats(&line)?,
        b"verbosity" => server::parse_verbosity(&line)?,
        b"quit" => TextRequest::Quit,
        b"mg" => meta::parse_meta_get(&line, limits)?,
        b"ms" => return meta::parse_meta_set(&line, limits),
        b"md" => meta::parse_meta_delete(&line, limits)?,
        b"ma" => meta::parse_meta_arithmetic(&line, limits)?,
        b"mn" => TextRequest::MetaNoop,
        // memcached also knows shutdown, slabs, lru, lru_crawler, watch, cache_memlimit, me and
        // extstore; they manage a single memcached process and mean nothing to scd.
        _ => return Err(TextError::UnknownCommand.into()),
    };
    Ok(Parsed::Request(request))
}

/// Whether `key` can be used in the text protocol: not longer than `max_key_bytes`, no control
/// characters and no spaces (protocol.txt, "Keys").
fn is_valid_key(key: &[u8], limits: &Limits) -> bool {
    !key.is_empty()
        && key.len() <= limits.max_key_bytes
        && key.iter().all(|&byte| byte > b' ' && byte != 0x7f)
}

/// A decimal number made of digits only, as memcached's `safe_strtoull` accepts it (minus the
/// leading whitespace and `+` that `strtoull` would also skip).
fn parse_u64(token: &[u8]) -> Option<u64> {
    if token.is_empty() || token.len() > 20 {
        return None;
    }
    token.iter().try_fold(0u64, |number, &byte| {
        let digit = byte.checked_sub(b'0').filter(|digit| *digit <= 9)?;
        number.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

fn parse_u32(token: &[u8]) -> Option<u32> {
    parse_u64(token).and_then(|number| u32::try_from(number).ok())
}

/// A decimal number with an optional leading `-`.
///
/// memcached reads exptimes into an `int32_t`; scd takes any `i64` so that absolute times after
/// 2038 work. [`crate::exptime_to_deadline`] saturates, so no value is dangerous.
fn parse_i64(token: &[u8]) -> Option<i64> {
    match token.split_first() {
        Some((b'-', digits)) => {
            let magnitude = parse_u64(digits)?;
            0i64.checked_sub_unsigned(magnitude)
        }
        _ => parse_u64(token).and_then(|number| i64::try_from(number).ok()),
    }
}

/// The length of a data block as a storage command states it: memcached takes an `int32_t` and
/// refuses it when negative or above `INT_MAX - 2`.
fn parse_data_length(token: &[u8]) -> Option<usize> {
    let length = parse_u64(token)?;
    if length > (i32::MAX as u64) - 2 {
        return None;
    }
    usize::try_from(length).ok()
}

#[cfg(test)]
mod tests;
