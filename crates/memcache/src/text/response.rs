//! Text-protocol replies: classic reply lines, `VALUE` blocks, `STAT` lines, errors and meta
//! replies, appended to the connection's write buffer.

use bytes::{BufMut, BytesMut};

use super::{MetaArithmetic, MetaDelete, MetaFlag, MetaGet, MetaSet, TextError};

/// The message of the client error for `incr`/`decr`/`ma` on a value that is not a number:
/// `encode_client_error(out, NON_NUMERIC_VALUE_MESSAGE)`.
pub const NON_NUMERIC_VALUE_MESSAGE: &str = "cannot increment or decrement non-numeric value";

/// A classic reply line without arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextStatus {
    /// `STORED`: a storage command succeeded.
    Stored,
    /// `NOT_STORED`: the condition of `add`, `replace`, `append` or `prepend` was not met.
    NotStored,
    /// `EXISTS`: `cas` found a different CAS value.
    Exists,
    /// `NOT_FOUND`: the item does not exist (`cas`, `delete`, `incr`, `decr`, `touch`).
    NotFound,
    /// `DELETED`: `delete` succeeded.
    Deleted,
    /// `TOUCHED`: `touch` succeeded.
    Touched,
    /// `OK`: `flush_all`, `verbosity`.
    Ok,
    /// `END`: the end of a get's `VALUE` blocks or of `STAT` lines.
    End,
    /// `RESET`: `stats reset` succeeded.
    Reset,
}

impl TextStatus {
    fn word(self) -> &'static [u8] {
        match self {
            TextStatus::Stored => b"STORED",
            TextStatus::NotStored => b"NOT_STORED",
            TextStatus::Exists => b"EXISTS",
            TextStatus::NotFound => b"NOT_FOUND",
            TextStatus::Deleted => b"DELETED",
            TextStatus::Touched => b"TOUCHED",
            TextStatus::Ok => b"OK",
            TextStatus::End => b"END",
            TextStatus::Reset => b"RESET",
        }
    }
}

/// Writes `status` and `\r\n`.
pub fn encode_status(out: &mut BytesMut, status: TextStatus) {
    out.put_slice(status.word());
    out.put_slice(b"\r\n");
}

/// Writes one item of a get reply: `VALUE <key> <flags> <bytes> [<cas>]\r\n<data>\r\n`, with the
/// CAS value for `gets`/`gats`.
pub fn encode_value(
    out: &mut BytesMut,
    key: &[u8],
    client_flags: u32,
    data: &[u8],
    cas_opt: Option<u64>,
) {
    out.reserve(key.len() + data.len() + 64);
    out.put_slice(b"VALUE ");
    out.put_slice(key);
    out.put_u8(b' ');
    put_decimal(out, u64::from(client_flags));
    out.put_u8(b' ');
    put_decimal(out, data.len() as u64);
    if let Some(cas) = cas_opt {
        out.put_u8(b' ');
        put_decimal(out, cas);
    }
    out.put_slice(b"\r\n");
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// Writes the new value of a counter after `incr`/`decr`.
pub fn encode_number(out: &mut BytesMut, value: u64) {
    put_decimal(out, value);
    out.put_slice(b"\r\n");
}

/// Writes `VERSION <version>`.
pub fn encode_version(out: &mut BytesMut, version: &str) {
    out.put_slice(b"VERSION ");
    put_sanitized(out, version);
    out.put_slice(b"\r\n");
}

/// Writes one statistic, `STAT <name> <value>`; end the list with [`TextStatus::End`].
pub fn encode_stat(out: &mut BytesMut, name: &str, value: &str) {
    out.put_slice(b"STAT ");
    put_sanitized(out, name);
    out.put_u8(b' ');
    put_sanitized(out, value);
    out.put_slice(b"\r\n");
}

/// Writes the reply to a refused request, unless memcached would send none because the client
/// asked for no reply ([`TextError::reply_suppressed`]).
pub fn encode_error(out: &mut BytesMut, error: &TextError) {
    if error.reply_suppressed() {
        return;
    }
    out.put_slice(error.reply_line().as_bytes());
    out.put_slice(b"\r\n");
}

/// Writes `CLIENT_ERROR <message>`: the request cannot be carried out because of what it asks
/// (e.g. [`NON_NUMERIC_VALUE_MESSAGE`]). Line breaks in `message` become spaces.
pub fn encode_client_error(out: &mut BytesMut, message: &str) {
    out.put_slice(b"CLIENT_ERROR ");
    put_sanitized(out, message);
    out.put_slice(b"\r\n");
}

/// Writes `SERVER_ERROR <message>`: the server cannot carry out the request (e.g.
/// `out of memory storing object`). Line breaks in `message` become spaces.
pub fn encode_server_error(out: &mut BytesMut, message: &str) {
    out.put_slice(b"SERVER_ERROR ");
    put_sanitized(out, message);
    out.put_slice(b"\r\n");
}

/// What the store knows about the item an `mg` found, for the flags the request asks back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaGetHit<'a> {
    /// The value; sent when the request has `v`, its size is `s`.
    pub value: &'a [u8],
    /// `f`.
    pub client_flags: u32,
    /// `c`.
    pub cas: u64,
    /// `t`: seconds until the item expires, `None` for never (sent as `-1`).
    pub ttl_remaining_seconds_opt: Option<u64>,
    /// `l`: seconds since the item was last accessed, before this access.
    pub seconds_since_last_access: u64,
    /// `h`: whether the item had been fetched before this access.
    pub fetched_before: bool,
    /// `W`: this client won the right to refresh the item (vivified by `N`, under `R`, or stale).
    pub won: bool,
    /// `X`: the item is stale (invalidated by `md ... I` or `ms ... I`).
    pub stale: bool,
    /// `Z`: another client already won the right to refresh the item.
    pub win_already_sent: bool,
}

/// How an `ms` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaSetOutcome {
    /// `HD`: stored, with the item's new CAS value (sent for `c`).
    Stored {
        /// The CAS value of the stored item.
        cas: u64,
    },
    /// `NS`: the mode's condition was not met.
    NotStored,
    /// `EX`: the CAS value differs.
    Exists,
    /// `NF`: a CAS compare on a missing item.
    NotFound,
}

/// How an `md` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaDeleteOutcome {
    /// `HD`: deleted, or marked stale with `I`.
    Deleted,
    /// `NF`: no such item.
    NotFound,
    /// `EX`: the CAS value differs.
    Exists,
}

/// How an `ma` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaArithmeticOutcome {
    /// `HD`, or `VA` with the value when the request has `v`.
    Done {
        /// The counter's new value.
        value: u64,
        /// The counter's new CAS value (`c`).
        cas: u64,
        /// Seconds until the counter expires, `None` for never (`t`, sent as `-1`).
        ttl_remaining_seconds_opt: Option<u64>,
    },
    /// `NF`: no such counter, and no `N` to create it.
    NotFound,
    /// `NS`: the counter could not be created.
    NotStored,
    /// `EX`: the CAS value differs.
    Exists,
}

/// Writes the reply to an `mg` that found its item: `VA <size> <flags>\r\n<value>\r\n` with `v`,
/// else `HD <flags>\r\n`. The flags follow the request's order, then `Z`, `X` and `W` as they
/// apply, the order memcached uses.
pub fn encode_meta_get_hit(out: &mut BytesMut, request: &MetaGet, hit: &MetaGetHit<'_>) {
    out.reserve(hit.value.len() + request.key.len() + 96);
    put_meta_code(out, request.return_value, hit.value.len());
    for flag in &request.return_flags {
        match flag {
            MetaFlag::Cas => put_flag_number(out, b'c', hit.cas),
            MetaFlag::ClientFlags => put_flag_number(out, b'f', u64::from(hit.client_flags)),
            MetaFlag::Hit => put_flag_number(out, b'h', u64::from(hit.fetched_before)),
            MetaFlag::Key => put_flag_bytes(out, b'k', &request.key),
            MetaFlag::LastAccess => put_flag_number(out, b'l', hit.seconds_since_last_access),
            MetaFlag::Opaque => put_opaque(out, &request.opaque_opt),
            MetaFlag::Size => put_flag_number(out, b's', hit.value.len() as u64),
            MetaFlag::Ttl => put_ttl(out, hit.ttl_remaining_seconds_opt),
        }
    }
    for (applies, flag) in [
        (hit.win_already_sent, b'Z'),
        (hit.stale, b'X'),
        (hit.won, b'W'),
    ] {
        if applies {
            out.put_slice(&[b' ', flag]);
        }
    }
    out.put_slice(b"\r\n");
    if request.return_value {
        out.put_slice(hit.value);
        out.put_slice(b"\r\n");
    }
}

/// Writes the reply to an `mg` that found nothing: `EN` with the `O` and `k` flags asked for, or
/// nothing when the request is quiet.
pub fn encode_meta_get_miss(out: &mut BytesMut, request: &MetaGet) {
    if request.quiet {
        return;
    }
    out.put_slice(b"EN");
    put_echo_flags(
        out,
        &request.return_flags,
        &request.key,
        &request.opaque_opt,
    );
    out.put_slice(b"\r\n");
}

/// Writes the reply to an `ms`: nothing when stored and quiet, else the code with `O`, `k` and
/// (when stored) `c`.
pub fn encode_meta_set(out: &mut BytesMut, request: &MetaSet, outcome: MetaSetOutcome) {
    let code: &[u8] = match outcome {
        MetaSetOutcome::Stored { .. } if request.quiet => return,
        MetaSetOutcome::Stored { .. } => b"HD",
        MetaSetOutcome::NotStored => b"NS",
        MetaSetOutcome::Exists => b"EX",
        MetaSetOutcome::NotFound => b"NF",
    };
    out.put_slice(code);
    for flag in &request.return_flags {
        match (flag, outcome) {
            (MetaFlag::Cas, MetaSetOutcome::Stored { cas }) => put_flag_number(out, b'c', cas),
            (MetaFlag::Key, _) => put_flag_bytes(out, b'k', &request.key),
            (MetaFlag::Opaque, _) => put_opaque(out, &request.opaque_opt),
            _ => {}
        }
    }
    out.put_slice(b"\r\n");
}

/// Writes the reply to an `md`: nothing when deleted and quiet, else the code with `O` and `k`.
pub fn encode_meta_delete(out: &mut BytesMut, request: &MetaDelete, outcome: MetaDeleteOutcome) {
    let code: &[u8] = match outcome {
        MetaDeleteOutcome::Deleted if request.quiet => return,
        MetaDeleteOutcome::Deleted => b"HD",
        MetaDeleteOutcome::NotFound => b"NF",
        MetaDeleteOutcome::Exists => b"EX",
    };
    out.put_slice(code);
    put_echo_flags(
        out,
        &request.return_flags,
        &request.key,
        &request.opaque_opt,
    );
    out.put_slice(b"\r\n");
}

/// Writes the reply to an `ma`: nothing when done and quiet; `HD <flags>`, or
/// `VA <size> <flags>\r\n<value>` with `v`, when done; else the code with `O` and `k`.
pub fn encode_meta_arithmetic(
    out: &mut BytesMut,
    request: &MetaArithmetic,
    outcome: MetaArithmeticOutcome,
) {
    let (value, cas, ttl_remaining_seconds_opt) = match outcome {
        MetaArithmeticOutcome::Done { .. } if request.quiet => return,
        MetaArithmeticOutcome::Done {
            value,
            cas,
            ttl_remaining_seconds_opt,
        } => (value, cas, ttl_remaining_seconds_opt),
        MetaArithmeticOutcome::NotFound
        | MetaArithmeticOutcome::NotStored
        | MetaArithmeticOutcome::Exists => {
            out.put_slice(match outcome {
                MetaArithmeticOutcome::NotFound => b"NF",
                MetaArithmeticOutcome::NotStored => b"NS",
                _ => b"EX",
            });
            put_echo_flags(
                out,
                &request.return_flags,
                &request.key,
                &request.opaque_opt,
            );
            out.put_slice(b"\r\n");
            return;
        }
    };
    let mut digits = [0u8; 20];
    let digits = decimal(value, &mut digits);
    put_meta_code(out, request.return_value, digits.len());
    for flag in &request.return_flags {
        match flag {
            MetaFlag::Cas => put_flag_number(out, b'c', cas),
            MetaFlag::Ttl => put_ttl(out, ttl_remaining_seconds_opt),
            MetaFlag::Key => put_flag_bytes(out, b'k', &request.key),
            MetaFlag::Opaque => put_opaque(out, &request.opaque_opt),
            _ => {}
        }
    }
    out.put_slice(b"\r\n");
    if request.return_value {
        out.put_slice(digits);
        out.put_slice(b"\r\n");
    }
}

/// Writes `MN`, the reply to `mn`.
pub fn encode_meta_noop(out: &mut BytesMut) {
    out.put_slice(b"MN\r\n");
}

/// `VA <size>` or `HD`.
fn put_meta_code(out: &mut BytesMut, with_value: bool, value_bytes: usize) {
    if with_value {
        out.put_slice(b"VA ");
        put_decimal(out, value_bytes as u64);
    } else {
        out.put_slice(b"HD");
    }
}

/// The `O` and `k` flags, which every meta reply echoes, whatever its code.
fn put_echo_flags(
    out: &mut BytesMut,
    return_flags: &[MetaFlag],
    key: &[u8],
    opaque_opt: &Option<bytes::Bytes>,
) {
    for flag in return_flags {
        match flag {
            MetaFlag::Key => put_flag_bytes(out, b'k', key),
            MetaFlag::Opaque => put_opaque(out, opaque_opt),
            _ => {}
        }
    }
}

fn put_flag_number(out: &mut BytesMut, flag: u8, number: u64) {
    out.put_slice(&[b' ', flag]);
    put_decimal(out, number);
}

fn put_flag_bytes(out: &mut BytesMut, flag: u8, bytes: &[u8]) {
    out.put_slice(&[b' ', flag]);
    out.put_slice(bytes);
}

fn put_opaque(out: &mut BytesMut, opaque_opt: &Option<bytes::Bytes>) {
    put_flag_bytes(out, b'O', opaque_opt.as_deref().unwrap_or_default());
}

fn put_ttl(out: &mut BytesMut, ttl_remaining_seconds_opt: Option<u64>) {
    match ttl_remaining_seconds_opt {
        Some(seconds) => put_flag_number(out, b't', seconds),
        None => out.put_slice(b" t-1"),
    }
}

fn put_decimal(out: &mut BytesMut, number: u64) {
    let mut digits = [0u8; 20];
    out.put_slice(decimal(number, &mut digits));
}

/// `number` in decimal, written at the end of `digits` (20 bytes hold any u64).
fn decimal(mut number: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (number % 10) as u8;
        number /= 10;
        if number == 0 {
            return &digits[start..];
        }
    }
}

/// Writes `text` with `\r` and `\n` replaced by spaces, so a message cannot end the reply line
/// early and smuggle in a reply of its own.
fn put_sanitized(out: &mut BytesMut, text: &str) {
    out.extend(text.bytes().map(|byte| match byte {
        b'\r' | b'\n' => b' ',
        other => other,
    }));
}
