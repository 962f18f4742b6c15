//! Commands that change one existing item without a data block: `delete`, `incr`, `decr`, `touch`.

use bytes::Bytes;

use super::{Line, TextError, TextRequest, is_valid_key, parse_i64, parse_u64};
use crate::{Direction, Limits};

/// `incr <key> <delta> [noreply]` or `decr <key> <delta> [noreply]`.
///
/// The item's value is a decimal unsigned 64-bit number. Answer with [`super::encode_number`] and
/// the new value, `NotFound`, or a client error with [`super::NON_NUMERIC_VALUE_MESSAGE`] when the
/// value is not a number; nothing unless `noreply` is false.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArithmeticRequest {
    /// The key of the counter.
    pub key: Bytes,
    /// Up (wrapping at 2^64) or down (stopping at 0).
    pub direction: Direction,
    /// The amount.
    pub delta: u64,
    /// Send no reply.
    pub noreply: bool,
}

/// `delete <key> [0] [noreply]`: memcached still accepts the old hold time when it is 0.
pub(super) fn parse_delete(line: &Line, limits: &Limits) -> Result<TextRequest, TextError> {
    if line.overflowed || !(2..=4).contains(&line.len()) {
        return Err(TextError::UnknownCommand);
    }
    let noreply = line.ends_with_noreply();
    if line.len() > 2 {
        let hold_is_zero = line.token(2) == b"0";
        let valid = (line.len() == 3 && (hold_is_zero || noreply))
            || (line.len() == 4 && hold_is_zero && noreply);
        if !valid {
            return Err(TextError::DeleteUsage { noreply });
        }
    }
    if !is_valid_key(line.token(1), limits) {
        return Err(TextError::BadCommandLineFormat { noreply });
    }
    Ok(TextRequest::Delete {
        key: line.token_bytes(1),
        noreply,
    })
}

pub(super) fn parse_arithmetic(
    line: &Line,
    direction: Direction,
    limits: &Limits,
) -> Result<TextRequest, TextError> {
    if line.overflowed || !(3..=4).contains(&line.len()) {
        return Err(TextError::UnknownCommand);
    }
    let noreply = line.ends_with_noreply();
    if !is_valid_key(line.token(1), limits) {
        return Err(TextError::BadCommandLineFormat { noreply });
    }
    let delta = parse_u64(line.token(2)).ok_or(TextError::InvalidDelta { noreply })?;
    Ok(TextRequest::Arithmetic(ArithmeticRequest {
        key: line.token_bytes(1),
        direction,
        delta,
        noreply,
    }))
}

pub(super) fn parse_touch(line: &Line, limits: &Limits) -> Result<TextRequest, TextError> {
    if line.overflowed || !(3..=4).contains(&line.len()) {
        return Err(TextError::UnknownCommand);
    }
    let noreply = line.ends_with_noreply();
    if !is_valid_key(line.token(1), limits) {
        return Err(TextError::BadCommandLineFormat { noreply });
    }
    let exptime = parse_i64(line.token(2)).ok_or(TextError::InvalidExptime { noreply })?;
    Ok(TextRequest::Touch {
        key: line.token_bytes(1),
        exptime,
        noreply,
    })
}
