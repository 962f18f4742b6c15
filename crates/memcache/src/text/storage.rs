//! Storage commands: `set`, `add`, `replace`, `append`, `prepend`, `cas`.

use bytes::Bytes;

use super::{
    Line, Parsed, Pending, Rejection, TextError, is_valid_key, parse_data_length, parse_i64,
    parse_u32, parse_u64,
};
use crate::{Limits, StoreMode};

/// `<command> <key> <flags> <exptime> <bytes> [noreply]` or
/// `cas <key> <flags> <exptime> <bytes> <cas unique> [noreply]`, with the data block.
///
/// Answer with [`super::TextStatus`] `Stored`, `NotStored` (the condition of `add`, `replace`,
/// `append` or `prepend` was not met), `Exists` (the CAS value differs) or `NotFound` (a `cas` on
/// a missing key), unless `noreply`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreRequest {
    /// How the value combines with what is stored. `cas` is `Set` with `compare_cas_opt`.
    pub mode: StoreMode,
    /// The key.
    pub key: Bytes,
    /// Opaque 32-bit flags the client stores with the value and gets back; ignored by `append`
    /// and `prepend`.
    pub client_flags: u32,
    /// See [`crate::exptime_to_deadline`]; ignored by `append` and `prepend`.
    pub exptime: i64,
    /// The data block, at most `max_value_bytes`.
    pub value: Bytes,
    /// `cas`: store only if the item's CAS value is this one.
    pub compare_cas_opt: Option<u64>,
    /// Send no reply.
    pub noreply: bool,
}

pub(super) fn parse_store(
    line: &Line,
    mode: StoreMode,
    with_cas: bool,
    limits: &Limits,
) -> Result<Parsed, Rejection> {
    let argument_count = if with_cas { 5 } else { 4 };
    // memcached's WANT_TOKENS_OR: the arguments, plus optionally one more (meant for noreply).
    if line.overflowed || !(1 + argument_count..=2 + argument_count).contains(&line.len()) {
        return Err(TextError::UnknownCommand.into());
    }
    let noreply = line.ends_with_noreply();
    let bad_format = TextError::BadCommandLineFormat { noreply };
    let client_flags = parse_u32(line.token(2));
    let exptime = parse_i64(line.token(3));
    let data_length = parse_data_length(line.token(4));
    let compare_cas_opt = if with_cas {
        parse_u64(line.token(5)).map(Some)
    } else {
        Some(None)
    };
    let (Some(client_flags), Some(exptime), Some(data_bytes), Some(compare_cas_opt)) =
        (client_flags, exptime, data_length, compare_cas_opt)
    else {
        // memcached does not skip the data block here: it cannot trust a length from a line it
        // could not read, so the block is read as the next command line.
        return Err(bad_format.into());
    };
    // The block and its "\r\n" are skipped after a refusal, as memcached's conn_swallow does.
    let skip_bytes = data_bytes + 2;
    if !is_valid_key(line.token(1), limits) {
        // memcached does not skip the block after a bad key, so its data is then read as a
        // command; scd skips it so that one request gets one reply.
        return Err(Rejection {
            error: bad_format,
            skip_bytes,
        });
    }
    if data_bytes > limits.max_value_bytes {
        return Err(Rejection {
            error: TextError::ObjectTooLarge {
                noreply,
                skipped: true,
            },
            skip_bytes,
        });
    }
    Ok(Parsed::AwaitData {
        pending: Pending::Store(StoreRequest {
            mode,
            key: line.token_bytes(1),
            client_flags,
            exptime,
            value: Bytes::new(),
            compare_cas_opt,
            noreply,
        }),
        data_bytes,
    })
}
