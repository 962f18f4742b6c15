//! memcached text and binary protocol codec for scd; no I/O.
//!
//! The node reads bytes into a [`bytes::BytesMut`], looks at the first byte of the connection
//! ([`detect_protocol`]) and from then on asks one parser for complete requests:
//!
//! - [`text::TextParser`] for the text protocol: classic commands (`get`, `set`, `delete`, ...) and
//!   the meta commands (`mg`, `ms`, `md`, `ma`, `mn`), as people type them on `nc`.
//! - [`binary::BinaryParser`] for the binary protocol, which libmemcached (and therefore
//!   php-memcached's session handler and libmemcached-tools) speaks by default.
//!
//! Both parsers return `Ok(None)` for incomplete input, a request when one is complete, and an
//! error the node answers with the reply the error encodes (`text::encode_error`,
//! `binary::encode_error`). An error either consumed the bad request, so parsing goes on, or says
//! [`closes_connection`](text::TextError::closes_connection): the node sends the reply and closes.
//! Every input is bounded by [`Limits`]: a parser never asks the node to buffer more than one
//! command line plus one value.
//!
//! Replies are built with the `encode_*` functions of each module. Expiry times in both protocols
//! follow memcached's rules; [`exptime_to_deadline`] turns them into a deadline.

#![deny(missing_docs, unreachable_pub)]

pub mod binary;
mod expiry;
pub mod text;

pub use expiry::{Expiry, RELATIVE_EXPTIME_MAX_SECONDS, exptime_to_deadline};

/// Bounds on everything a client can make the node buffer or process.
///
/// The defaults are memcached's where memcached has one (250-byte keys, 1 MiB values) and fit the
/// worst case of the other fields: a `gets` of `max_keys_per_get` keys of `max_key_bytes` bytes
/// fits in `max_line_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest key in bytes. memcached's `KEY_MAX_LENGTH` is 250; both protocols refuse longer.
    pub max_key_bytes: usize,
    /// Largest value in bytes a storage command may carry. A larger one is answered with
    /// `SERVER_ERROR object too large for cache` (text) or status 0x0003 (binary) and skipped.
    pub max_value_bytes: usize,
    /// Longest text command line in bytes, not counting its `\n`. A longer line closes the
    /// connection after `CLIENT_ERROR line too long`.
    pub max_line_bytes: usize,
    /// Most keys one `get`/`gets`/`gat`/`gats` may name.
    pub max_keys_per_get: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_bytes: 250,
            max_value_bytes: 1024 * 1024,
            max_line_bytes: 64 * 1024,
            max_keys_per_get: 256,
        }
    }
}

impl Limits {
    /// Most bytes a parser will skip after refusing a value that is too large, so the connection
    /// can go on as memcached's does. A client announcing more than this is answered and
    /// disconnected instead: skipping costs no memory, but a bound keeps a confused client from
    /// holding the connection with gigabytes of junk.
    pub fn max_skip_bytes(&self) -> usize {
        self.max_value_bytes
            .saturating_mul(16)
            .max(16 * 1024 * 1024)
    }
}

/// The protocol a client speaks, told by the first byte it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Text lines: classic and meta commands.
    Text,
    /// Binary packets starting with the request magic [`binary::REQUEST_MAGIC`] (0x80).
    Binary,
}

/// The protocol of a connection whose first byte is `first_byte`.
///
/// memcached decides the same way: no text command starts with 0x80, and every binary request
/// does.
pub fn detect_protocol(first_byte: u8) -> Protocol {
    if first_byte == binary::REQUEST_MAGIC {
        Protocol::Binary
    } else {
        Protocol::Text
    }
}

/// How a storage command combines its value with what is stored.
///
/// A compare-and-swap is not a mode of its own: it is `Set` (or `Replace`) carrying a CAS value to
/// compare, as in memcached, whose `cas` command, meta `ms ... C<cas>` and binary SET with a
/// non-zero CAS all become the same operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreMode {
    /// Store unconditionally (`set`, `ms`, binary SET).
    Set,
    /// Store only if the key holds nothing (`add`, `ms ... ME`, binary ADD).
    Add,
    /// Store only if the key holds something (`replace`, `ms ... MR`, binary REPLACE).
    Replace,
    /// Add the data after the stored value; flags and exptime are ignored (`append`, `MA`).
    Append,
    /// Add the data before the stored value; flags and exptime are ignored (`prepend`, `MP`).
    Prepend,
}

/// Which way an arithmetic command moves a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `incr`, `ma` (mode `I` or `+`), binary INCREMENT: wraps around at 2^64.
    Increment,
    /// `decr`, `ma` (mode `D` or `-`), binary DECREMENT: stops at 0.
    Decrement,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_byte_0x80_means_binary_and_anything_else_text() {
        assert_eq!(detect_protocol(0x80), Protocol::Binary);
        for byte in [b'g', b's', b'm', b'\r', 0x00, 0x81, 0xff] {
            assert_eq!(detect_protocol(byte), Protocol::Text, "byte {byte:#04x}");
        }
    }

    #[test]
    fn default_limits_fit_the_longest_gets_line() {
        let limits = Limits::default();
        let longest_gets_line = "gets".len() + limits.max_keys_per_get * (1 + limits.max_key_bytes);
        assert!(longest_gets_line <= limits.max_line_bytes);
        assert_eq!(limits.max_key_bytes, 250);
    }

    #[test]
    fn skip_bound_is_above_the_value_limit() {
        let limits = Limits::default();
        assert!(limits.max_skip_bytes() > limits.max_value_bytes);
        let huge = Limits {
            max_value_bytes: usize::MAX,
            ..Limits::default()
        };
        assert_eq!(huge.max_skip_bytes(), usize::MAX);
    }
}
