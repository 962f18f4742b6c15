//! Binary responses. Every function echoes the request's opcode and opaque, and applies the
//! quiet rule of the module documentation, so the node just picks the one for the outcome.

use bytes::{BufMut, BytesMut};

use super::header::{HEADER_BYTES, RESPONSE_MAGIC, ResponseHeader};
use super::{BinaryCommand, BinaryError, BinaryRequest};

/// The status of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// 0x0000: success.
    NoError,
    /// 0x0001: no such item.
    KeyNotFound,
    /// 0x0002: the item exists (ADD) or its CAS value differs.
    KeyExists,
    /// 0x0003: the value is larger than the server accepts.
    ValueTooLarge,
    /// 0x0004: the request is malformed.
    InvalidArguments,
    /// 0x0005: the item was not stored (APPEND/PREPEND to a missing item).
    ItemNotStored,
    /// 0x0006: INCREMENT/DECREMENT of a value that is not a decimal number.
    NonNumericValue,
    /// 0x0020: authentication failed, or is required first.
    AuthError,
    /// 0x0021: the SASL exchange goes on; the body is the server's challenge.
    AuthContinue,
    /// 0x0081: the opcode is unknown (or the lengths of the header contradict each other).
    UnknownCommand,
    /// 0x0082: the server is out of memory.
    OutOfMemory,
    /// 0x0086: a temporary failure; the client may retry (scd: a partition is between owners).
    TemporaryFailure,
}

impl Status {
    /// The status code on the wire.
    pub fn code(self) -> u16 {
        match self {
            Status::NoError => 0x0000,
            Status::KeyNotFound => 0x0001,
            Status::KeyExists => 0x0002,
            Status::ValueTooLarge => 0x0003,
            Status::InvalidArguments => 0x0004,
            Status::ItemNotStored => 0x0005,
            Status::NonNumericValue => 0x0006,
            Status::AuthError => 0x0020,
            Status::AuthContinue => 0x0021,
            Status::UnknownCommand => 0x0081,
            Status::OutOfMemory => 0x0082,
            Status::TemporaryFailure => 0x0086,
        }
    }

    /// The text memcached puts in the body of an error response with this status (its
    /// `write_bin_error`); empty for the statuses that are not errors.
    pub fn message(self) -> &'static str {
        match self {
            Status::NoError | Status::AuthContinue => "",
            Status::KeyNotFound => "Not found",
            Status::KeyExists => "Data exists for key.",
            Status::ValueTooLarge => "Too large.",
            Status::InvalidArguments => "Invalid arguments",
            Status::ItemNotStored => "Not stored.",
            Status::NonNumericValue => "Non-numeric server-side value for incr or decr",
            Status::AuthError => "Auth failure.",
            Status::UnknownCommand => "Unknown command",
            Status::OutOfMemory => "Out of memory",
            Status::TemporaryFailure => "Temporary failure",
        }
    }
}

/// Appends one response packet. The building block of the other functions; it applies no quiet
/// rule.
#[allow(clippy::too_many_arguments)] // One argument per field of the packet reads best here.
pub fn encode_response(
    out: &mut BytesMut,
    opcode: u8,
    status: Status,
    opaque: u32,
    cas: u64,
    extras: &[u8],
    key: &[u8],
    value: &[u8],
) {
    let body_bytes = extras.len() + key.len() + value.len();
    debug_assert!(extras.len() <= usize::from(u8::MAX) && key.len() <= usize::from(u16::MAX));
    let header = ResponseHeader {
        magic: RESPONSE_MAGIC,
        opcode,
        key_length: key.len() as u16,
        extras_length: extras.len() as u8,
        data_type: 0,
        status: status.code(),
        total_body_length: u32::try_from(body_bytes).unwrap_or(u32::MAX),
        opaque,
        cas,
    };
    out.reserve(HEADER_BYTES + body_bytes);
    header.encode(out);
    out.put_slice(extras);
    out.put_slice(key);
    out.put_slice(value);
}

/// Answers a get (GET, GETK, GAT, GATK and quiet forms) or TOUCH that found its item: the client
/// flags as extras, the key for the K forms, the value except for TOUCH, and the item's CAS.
/// Quiet gets are answered too: only their misses are silent.
pub fn encode_get_hit(
    out: &mut BytesMut,
    request: &BinaryRequest,
    client_flags: u32,
    cas: u64,
    value: &[u8],
) {
    let (key, value): (&[u8], &[u8]) = match &request.command {
        BinaryCommand::Get {
            key,
            return_key: true,
            ..
        }
        | BinaryCommand::GetAndTouch {
            key,
            return_key: true,
            ..
        } => (key, value),
        BinaryCommand::Touch { .. } => (&[], &[]),
        _ => (&[], value),
    };
    encode_response(
        out,
        request.header.opcode,
        Status::NoError,
        request.header.opaque,
        cas,
        &client_flags.to_be_bytes(),
        key,
        value,
    );
}

/// Answers a get or TOUCH that found nothing: nothing for quiet gets; status `KeyNotFound` with
/// the key for the K forms (as memcached's `write_bin_miss_response`), else with "Not found".
pub fn encode_get_miss(out: &mut BytesMut, request: &BinaryRequest) {
    match &request.command {
        BinaryCommand::Get { quiet: true, .. } | BinaryCommand::GetAndTouch { quiet: true, .. } => {
        }
        BinaryCommand::Get {
            key,
            return_key: true,
            ..
        }
        | BinaryCommand::GetAndTouch {
            key,
            return_key: true,
            ..
        } => encode_response(
            out,
            request.header.opcode,
            Status::KeyNotFound,
            request.header.opaque,
            0,
            &[],
            key,
            &[],
        ),
        _ => encode_failure(out, request, Status::KeyNotFound),
    }
}

/// Answers a command that succeeded with nothing to return (storage, DELETE, FLUSH, NOOP, QUIT):
/// status `NoError` with `cas` (the stored item's new CAS value, or 0), or nothing for quiet
/// commands.
pub fn encode_success(out: &mut BytesMut, request: &BinaryRequest, cas: u64) {
    if request.quiet() {
        return;
    }
    encode_response(
        out,
        request.header.opcode,
        Status::NoError,
        request.header.opaque,
        cas,
        &[],
        &[],
        &[],
    );
}

/// Answers a command that failed: `status` with memcached's text for it. Always sent, quiet
/// command or not.
pub fn encode_failure(out: &mut BytesMut, request: &BinaryRequest, status: Status) {
    encode_failure_saying(out, request, status, status.message());
}

/// Answers a command that failed: `status` with `message` as the body (a limit named with its
/// value, a server's own words). Always sent, quiet command or not.
pub fn encode_failure_saying(
    out: &mut BytesMut,
    request: &BinaryRequest,
    status: Status,
    message: &str,
) {
    encode_response(
        out,
        request.header.opcode,
        status,
        request.header.opaque,
        0,
        &[],
        &[],
        message.as_bytes(),
    );
}

/// Answers INCREMENT/DECREMENT: the counter's new value as 8 big-endian bytes and its CAS, or
/// nothing for the quiet forms.
pub fn encode_counter(out: &mut BytesMut, request: &BinaryRequest, value: u64, cas: u64) {
    if request.quiet() {
        return;
    }
    encode_response(
        out,
        request.header.opcode,
        Status::NoError,
        request.header.opaque,
        cas,
        &[],
        &[],
        &value.to_be_bytes(),
    );
}

/// Answers VERSION with the version string as the value.
pub fn encode_version(out: &mut BytesMut, request: &BinaryRequest, version: &str) {
    encode_response(
        out,
        request.header.opcode,
        Status::NoError,
        request.header.opaque,
        0,
        &[],
        &[],
        version.as_bytes(),
    );
}

/// Answers STAT with one statistic: its name as the key, its value as the value. End the list
/// with [`encode_stat_end`].
pub fn encode_stat(out: &mut BytesMut, request: &BinaryRequest, name: &str, value: &str) {
    // Names are the server's own; one longer than a key field cannot be sent whole.
    let name = &name.as_bytes()[..name.len().min(usize::from(u16::MAX))];
    encode_response(
        out,
        request.header.opcode,
        Status::NoError,
        request.header.opaque,
        0,
        &[],
        name,
        value.as_bytes(),
    );
}

/// Ends the answer to STAT: a packet with an empty key and value.
pub fn encode_stat_end(out: &mut BytesMut, request: &BinaryRequest) {
    encode_response(
        out,
        request.header.opcode,
        Status::NoError,
        request.header.opaque,
        0,
        &[],
        &[],
        &[],
    );
}

/// Answers SASL_LIST_MECHS with the mechanisms, separated by spaces (scd offers `PLAIN`).
pub fn encode_sasl_mechanisms(out: &mut BytesMut, request: &BinaryRequest, mechanisms: &str) {
    encode_response(
        out,
        request.header.opcode,
        Status::NoError,
        request.header.opaque,
        0,
        &[],
        &[],
        mechanisms.as_bytes(),
    );
}

/// Answers a successful SASL_AUTH/SASL_STEP with memcached's `Authenticated`. A failure is
/// [`encode_failure`] with [`Status::AuthError`].
pub fn encode_sasl_authenticated(out: &mut BytesMut, request: &BinaryRequest) {
    encode_response(
        out,
        request.header.opcode,
        Status::NoError,
        request.header.opaque,
        0,
        &[],
        &[],
        b"Authenticated",
    );
}

/// Answers a refused request: the error's status, the request's opcode and opaque, and the
/// error's own description as the body (clearer than memcached's generic text, and clients only
/// look at the status).
pub fn encode_error(out: &mut BytesMut, error: &BinaryError) {
    let header = error.header();
    encode_response(
        out,
        header.opcode,
        error.status(),
        header.opaque,
        0,
        &[],
        &[],
        error.to_string().as_bytes(),
    );
}
