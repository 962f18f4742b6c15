//! Reply encoding into a `BytesMut`, in the protocol version the client chose with `HELLO`.
//!
//! RESP3 types have RESP2 fallbacks chosen the way Redis 7 chooses them (`networking.c`):
//! a map becomes a flat array of 2n elements, a set or push an array, a double a bulk string,
//! a boolean the integer 1 or 0, a verbatim string a bulk string of its text, a big number a
//! bulk string, and null becomes `$-1` (null bulk) or `*-1` (null array) as the caller says.

use bytes::{BufMut, BytesMut};

use crate::number::{MAX_I64_DECIMAL_BYTES, format_i64};

/// The RESP version a connection speaks: 2 until the client sends `HELLO 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum ProtocolVersion {
    /// RESP2, the default of every connection.
    #[default]
    Resp2,
    /// RESP3, chosen with `HELLO 3`.
    Resp3,
}

impl ProtocolVersion {
    /// The version for HELLO's `protover` argument, if it is one scd speaks.
    pub fn from_number(number: i64) -> Option<ProtocolVersion> {
        match number {
            2 => Some(ProtocolVersion::Resp2),
            3 => Some(ProtocolVersion::Resp3),
            _ => None,
        }
    }

    /// The version as HELLO's reply states it (`proto`).
    pub fn number(self) -> i64 {
        match self {
            ProtocolVersion::Resp2 => 2,
            ProtocolVersion::Resp3 => 3,
        }
    }
}

/// Writes replies into an output buffer in one protocol version.
///
/// Cheap to create per reply: it only borrows the buffer. Hot replies (`+OK`, integers, bulk
/// strings, nulls) are written with `put_slice` and a hand-rolled integer formatter, never
/// `format!`.
#[derive(Debug)]
pub struct ReplyEncoder<'a> {
    out: &'a mut BytesMut,
    version: ProtocolVersion,
}

impl<'a> ReplyEncoder<'a> {
    /// An encoder appending to `out` in `version`.
    pub fn new(out: &'a mut BytesMut, version: ProtocolVersion) -> ReplyEncoder<'a> {
        ReplyEncoder { out, version }
    }

    /// The protocol version this encoder writes.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// `+OK`, the reply of most writes.
    pub fn ok(&mut self) {
        self.out.put_slice(b"+OK\r\n");
    }

    /// A simple string. CR and LF are replaced by spaces, because they would end the line
    /// early and desynchronise the client.
    pub fn simple(&mut self, text: impl AsRef<[u8]>) {
        self.out.put_u8(b'+');
        self.put_line_sanitized(text.as_ref());
    }

    /// An error line such as `ERR syntax error` (the code first, no leading `-`). CR and LF
    /// are replaced by spaces, as Redis does, because error text may quote client input.
    pub fn error(&mut self, line: impl AsRef<[u8]>) {
        self.out.put_u8(b'-');
        self.put_line_sanitized(line.as_ref());
    }

    /// An integer.
    pub fn integer(&mut self, value: i64) {
        match value {
            0 => self.out.put_slice(b":0\r\n"),
            1 => self.out.put_slice(b":1\r\n"),
            _ => {
                self.out.put_u8(b':');
                self.put_i64(value);
                self.out.put_slice(b"\r\n");
            }
        }
    }

    /// A bulk string.
    pub fn bulk(&mut self, value: impl AsRef<[u8]>) {
        let value = value.as_ref();
        self.out.reserve(value.len() + 16);
        self.put_length_header(b'$', value.len());
        self.out.put_slice(value);
        self.out.put_slice(b"\r\n");
    }

    /// An integer written as a bulk string, as `TIME` and `CONFIG GET` reply.
    pub fn bulk_i64(&mut self, value: i64) {
        let mut buffer = [0u8; MAX_I64_DECIMAL_BYTES];
        let digits = format_i64(value, &mut buffer);
        self.put_length_header(b'$', digits.len());
        self.out.put_slice(digits);
        self.out.put_slice(b"\r\n");
    }

    /// A missing value where a bulk string was expected: `$-1` in RESP2, `_` in RESP3.
    pub fn null(&mut self) {
        match self.version {
            ProtocolVersion::Resp2 => self.out.put_slice(b"$-1\r\n"),
            ProtocolVersion::Resp3 => self.out.put_slice(b"_\r\n"),
        }
    }

    /// A missing value where an array was expected: `*-1` in RESP2, `_` in RESP3.
    pub fn null_array(&mut self) {
        match self.version {
            ProtocolVersion::Resp2 => self.out.put_slice(b"*-1\r\n"),
            ProtocolVersion::Resp3 => self.out.put_slice(b"_\r\n"),
        }
    }

    /// The header of an array of `len` elements; the caller writes the elements next.
    pub fn array_header(&mut self, len: usize) {
        self.put_length_header(b'*', len);
    }

    /// The header of a map of `pairs` key-value pairs (RESP2: an array of `2 * pairs`); the
    /// caller writes key, value, key, value... next.
    pub fn map_header(&mut self, pairs: usize) {
        match self.version {
            ProtocolVersion::Resp2 => self.put_length_header(b'*', pairs.saturating_mul(2)),
            ProtocolVersion::Resp3 => self.put_length_header(b'%', pairs),
        }
    }

    /// The header of a set of `len` elements (RESP2: an array).
    pub fn set_header(&mut self, len: usize) {
        match self.version {
            ProtocolVersion::Resp2 => self.put_length_header(b'*', len),
            ProtocolVersion::Resp3 => self.put_length_header(b'~', len),
        }
    }

    /// The header of an out-of-band push of `len` elements (RESP2: an array).
    pub fn push_header(&mut self, len: usize) {
        match self.version {
            ProtocolVersion::Resp2 => self.put_length_header(b'*', len),
            ProtocolVersion::Resp3 => self.put_length_header(b'>', len),
        }
    }

    /// A double (RESP2: a bulk string of its decimal form). Infinities are `inf` and `-inf`,
    /// NaN is `nan`, as in Redis.
    pub fn double(&mut self, value: f64) {
        let text = format_double(value);
        match self.version {
            ProtocolVersion::Resp2 => self.bulk(text.as_bytes()),
            ProtocolVersion::Resp3 => {
                self.out.put_u8(b',');
                self.out.put_slice(text.as_bytes());
                self.out.put_slice(b"\r\n");
            }
        }
    }

    /// A boolean (RESP2: the integer 1 or 0).
    pub fn boolean(&mut self, value: bool) {
        match (self.version, value) {
            (ProtocolVersion::Resp2, true) => self.out.put_slice(b":1\r\n"),
            (ProtocolVersion::Resp2, false) => self.out.put_slice(b":0\r\n"),
            (ProtocolVersion::Resp3, true) => self.out.put_slice(b"#t\r\n"),
            (ProtocolVersion::Resp3, false) => self.out.put_slice(b"#f\r\n"),
        }
    }

    /// A verbatim string with its three-byte format such as `txt` (RESP2: a bulk string of
    /// the text alone, as Redis sends `INFO` to RESP2 clients).
    pub fn verbatim(&mut self, format: [u8; 3], text: impl AsRef<[u8]>) {
        let text = text.as_ref();
        match self.version {
            ProtocolVersion::Resp2 => self.bulk(text),
            ProtocolVersion::Resp3 => {
                self.out.reserve(text.len() + 20);
                self.put_length_header(b'=', text.len() + 4);
                self.out.put_slice(&format);
                self.out.put_u8(b':');
                self.out.put_slice(text);
                self.out.put_slice(b"\r\n");
            }
        }
    }

    /// A big number given as its decimal digits (RESP2: a bulk string).
    pub fn big_number(&mut self, digits: impl AsRef<[u8]>) {
        let digits = digits.as_ref();
        match self.version {
            ProtocolVersion::Resp2 => self.bulk(digits),
            ProtocolVersion::Resp3 => {
                self.out.put_u8(b'(');
                self.put_line_sanitized(digits);
            }
        }
    }

    /// A RESP3 blob error (`!len`), for error text that contains CR or LF; RESP2 has no such
    /// type, so there the text is sent as an error line with CR and LF replaced by spaces.
    pub fn blob_error(&mut self, text: impl AsRef<[u8]>) {
        let text = text.as_ref();
        match self.version {
            ProtocolVersion::Resp2 => self.error(text),
            ProtocolVersion::Resp3 => {
                self.put_length_header(b'!', text.len());
                self.out.put_slice(text);
                self.out.put_slice(b"\r\n");
            }
        }
    }

    fn put_length_header(&mut self, type_byte: u8, len: usize) {
        self.out.put_u8(type_byte);
        // A length above i64::MAX cannot exist in memory; saturate rather than wrap.
        self.put_i64(i64::try_from(len).unwrap_or(i64::MAX));
        self.out.put_slice(b"\r\n");
    }

    fn put_i64(&mut self, value: i64) {
        let mut buffer = [0u8; MAX_I64_DECIMAL_BYTES];
        self.out.put_slice(format_i64(value, &mut buffer));
    }

    fn put_line_sanitized(&mut self, text: &[u8]) {
        if text.iter().any(|&byte| byte == b'\r' || byte == b'\n') {
            self.out.extend(text.iter().map(|&byte| match byte {
                b'\r' | b'\n' => b' ',
                other => other,
            }));
        } else {
            self.out.put_slice(text);
        }
        self.out.put_slice(b"\r\n");
    }
}

/// The decimal form of a double as scd sends it: integral values without a fraction, very
/// large or small magnitudes in exponent form, `inf`, `-inf` and `nan` as Redis spells them.
pub(crate) fn format_double(value: f64) -> String {
    if value.is_nan() {
        "nan".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else if value == 0.0 || (1e-5..1e17).contains(&value.abs()) {
        // Display prints the shortest decimal that parses back to the same value.
        format!("{value}")
    } else {
        format!("{value:e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `write` against a fresh buffer in both versions and compares the bytes.
    fn check(write: impl Fn(&mut ReplyEncoder<'_>), expect_resp2: &str, expect_resp3: &str) {
        for (version, expect) in [
            (ProtocolVersion::Resp2, expect_resp2),
            (ProtocolVersion::Resp3, expect_resp3),
        ] {
            let mut out = BytesMut::new();
            write(&mut ReplyEncoder::new(&mut out, version));
            assert_eq!(String::from_utf8_lossy(&out), expect, "version {version:?}");
        }
    }

    #[test]
    fn hot_replies_are_the_same_in_both_versions() {
        check(|reply| reply.ok(), "+OK\r\n", "+OK\r\n");
        check(|reply| reply.integer(0), ":0\r\n", ":0\r\n");
        check(|reply| reply.integer(1), ":1\r\n", ":1\r\n");
        check(|reply| reply.integer(-42), ":-42\r\n", ":-42\r\n");
        check(
            |reply| reply.integer(i64::MIN),
            ":-9223372036854775808\r\n",
            ":-9223372036854775808\r\n",
        );
        check(
            |reply| reply.bulk(b"hello"),
            "$5\r\nhello\r\n",
            "$5\r\nhello\r\n",
        );
        check(|reply| reply.bulk(b""), "$0\r\n\r\n", "$0\r\n\r\n");
        check(
            |reply| reply.bulk_i64(1700),
            "$4\r\n1700\r\n",
            "$4\r\n1700\r\n",
        );
        check(|reply| reply.simple("PONG"), "+PONG\r\n", "+PONG\r\n");
        check(
            |reply| reply.error("ERR syntax error"),
            "-ERR syntax error\r\n",
            "-ERR syntax error\r\n",
        );
        check(|reply| reply.array_header(3), "*3\r\n", "*3\r\n");
    }

    #[test]
    fn lines_never_carry_cr_or_lf_from_their_text() {
        check(
            |reply| reply.error("ERR unknown command 'a\r\nb'"),
            "-ERR unknown command 'a  b'\r\n",
            "-ERR unknown command 'a  b'\r\n",
        );
        check(|reply| reply.simple("a\nb"), "+a b\r\n", "+a b\r\n");
    }

    #[test]
    fn resp3_types_fall_back_to_their_resp2_forms() {
        check(|reply| reply.null(), "$-1\r\n", "_\r\n");
        check(|reply| reply.null_array(), "*-1\r\n", "_\r\n");
        check(|reply| reply.map_header(2), "*4\r\n", "%2\r\n");
        check(|reply| reply.set_header(2), "*2\r\n", "~2\r\n");
        check(|reply| reply.push_header(3), "*3\r\n", ">3\r\n");
        check(|reply| reply.boolean(true), ":1\r\n", "#t\r\n");
        check(|reply| reply.boolean(false), ":0\r\n", "#f\r\n");
        check(|reply| reply.double(1.5), "$3\r\n1.5\r\n", ",1.5\r\n");
        check(|reply| reply.double(3.0), "$1\r\n3\r\n", ",3\r\n");
        check(
            |reply| reply.double(f64::INFINITY),
            "$3\r\ninf\r\n",
            ",inf\r\n",
        );
        check(
            |reply| reply.double(f64::NEG_INFINITY),
            "$4\r\n-inf\r\n",
            ",-inf\r\n",
        );
        check(|reply| reply.double(f64::NAN), "$3\r\nnan\r\n", ",nan\r\n");
        check(|reply| reply.double(1e300), "$5\r\n1e300\r\n", ",1e300\r\n");
        check(
            |reply| reply.verbatim(*b"txt", b"Some string"),
            "$11\r\nSome string\r\n",
            "=15\r\ntxt:Some string\r\n",
        );
        check(
            |reply| reply.big_number(b"3492890328409238509324850943850943825024385"),
            "$43\r\n3492890328409238509324850943850943825024385\r\n",
            "(3492890328409238509324850943850943825024385\r\n",
        );
        check(
            |reply| reply.blob_error(b"SYNTAX a\r\nb"),
            "-SYNTAX a  b\r\n",
            "!11\r\nSYNTAX a\r\nb\r\n",
        );
    }

    #[test]
    fn protocol_versions_map_to_hello_numbers() {
        assert_eq!(
            ProtocolVersion::from_number(2),
            Some(ProtocolVersion::Resp2)
        );
        assert_eq!(
            ProtocolVersion::from_number(3),
            Some(ProtocolVersion::Resp3)
        );
        assert_eq!(ProtocolVersion::from_number(4), None);
        assert_eq!(ProtocolVersion::Resp3.number(), 3);
        assert_eq!(ProtocolVersion::default(), ProtocolVersion::Resp2);
    }
}
