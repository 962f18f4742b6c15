//! Retrieval commands: `get`, `gets`, `gat`, `gats`.

use bytes::Bytes;

use super::{Line, TextError, TextRequest, is_valid_key, parse_i64};
use crate::Limits;

/// `get <key>*`, `gets <key>*`, `gat <exptime> <key>*`, `gats <exptime> <key>*`.
///
/// Answer with [`super::encode_value`] for each key found, in the order asked, then
/// [`super::TextStatus::End`]. Keys not found are simply left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetRequest {
    /// The keys, as many as `max_keys_per_get`. memcached answers a `gat` without keys with a
    /// bare `END`, so this may be empty for `gat`/`gats`; it never is for `get`/`gets`.
    pub keys: Vec<Bytes>,
    /// `gets`/`gats`: each `VALUE` line carries the item's CAS value.
    pub return_cas: bool,
    /// `gat`/`gats`: the exptime every item found gets before it is returned.
    pub touch_exptime_opt: Option<i64>,
}

pub(super) fn parse_get(
    line: &Line,
    return_cas: bool,
    touch: bool,
    limits: &Limits,
) -> Result<TextRequest, TextError> {
    if line.len() < 2 {
        return Err(TextError::UnknownCommand);
    }
    let (touch_exptime_opt, first_key) = if touch {
        let exptime =
            parse_i64(line.token(1)).ok_or(TextError::InvalidExptime { noreply: false })?;
        (Some(exptime), 2)
    } else {
        (None, 1)
    };
    let key_count = line.len() - first_key;
    if line.overflowed || key_count > limits.max_keys_per_get {
        return Err(TextError::TooManyKeys {
            max_keys_per_get: limits.max_keys_per_get,
        });
    }
    let mut keys = Vec::with_capacity(key_count);
    for index in first_key..line.len() {
        if !is_valid_key(line.token(index), limits) {
            return Err(TextError::BadCommandLineFormat { noreply: false });
        }
        keys.push(line.token_bytes(index));
    }
    Ok(TextRequest::Get(GetRequest {
        keys,
        return_cas,
        touch_exptime_opt,
    }))
}
