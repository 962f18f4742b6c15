//! Meta commands: `mg`, `ms`, `md`, `ma` (`mn` takes no arguments and is parsed in `mod.rs`).
//!
//! `<command> <key> [<datalen>] <flag>*`: a flag is one character, optionally followed by a token
//! (`T30`, `Oabc`). Flags that ask for something back are answered in the order they were given,
//! which is why each request keeps [`MetaFlag`]s in a list.

use bytes::Bytes;

use super::{
    Line, Parsed, Pending, Rejection, TextError, TextRequest, is_valid_key, parse_data_length,
    parse_i64, parse_u32, parse_u64,
};
use crate::{Direction, Limits, StoreMode};

/// Most tokens (command, key, data length and flags) a meta command may have: memcached's
/// `MFLAG_MAX_OPT_LENGTH` is 20, counting the empty token its tokenizer ends with.
pub const MAX_META_TOKENS: usize = 19;

/// Longest `O` (opaque) token in bytes, counting the `O` itself (memcached's
/// `MFLAG_MAX_OPAQUE_LENGTH`).
pub const MAX_OPAQUE_BYTES: usize = 32;

/// A flag that asks for a value in the reply. The reply carries them in the order requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetaFlag {
    /// `c`: the item's CAS value.
    Cas,
    /// `f`: the client flags.
    ClientFlags,
    /// `h`: whether the item was fetched before (`h0`/`h1`).
    Hit,
    /// `k`: the key.
    Key,
    /// `l`: seconds since the item was last accessed.
    LastAccess,
    /// `O<token>`: the opaque token, echoed as sent.
    Opaque,
    /// `s`: the value's size in bytes.
    Size,
    /// `t`: seconds until the item expires, `-1` for never.
    Ttl,
}

/// `mg <key> <flag>*`: meta get.
///
/// A hit is answered with [`super::encode_meta_get_hit`] (`VA <size> <flags>` and the value when
/// `return_value`, else `HD <flags>`); a miss with [`super::encode_meta_get_miss`] (`EN`, or
/// nothing when `quiet`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaGet {
    /// The key.
    pub key: Bytes,
    /// `v`: return the value.
    pub return_value: bool,
    /// `q`: no reply on a miss.
    pub quiet: bool,
    /// `u`: do not count this access as a use of the item (no LRU bump, no access time update).
    pub no_lru_bump: bool,
    /// `T<exptime>`: touch the item, as `gat` does.
    pub touch_exptime_opt: Option<i64>,
    /// `N<exptime>`: on a miss, create an empty item with this exptime and let this client win
    /// the right to fill it (the reply then carries `W`).
    pub vivify_exptime_opt: Option<i64>,
    /// `R<seconds>`: if the item expires in fewer seconds than this, let this client win the
    /// right to refresh it.
    pub recache_threshold_opt: Option<i64>,
    /// `E<cas>`: the CAS value to give an item this command creates (with `N`).
    pub new_cas_opt: Option<u64>,
    /// `O<token>`: the opaque token without its `O`, echoed in the reply.
    pub opaque_opt: Option<Bytes>,
    /// The flags whose values the reply carries, in request order: `c f h k l O s t`.
    pub return_flags: Vec<MetaFlag>,
}

/// `ms <key> <datalen> <flag>*` and the data block: meta set.
///
/// Answered with [`super::encode_meta_set`]: `HD` (stored; nothing when `quiet`), `NS` (not
/// stored), `EX` (CAS mismatch) or `NF` (CAS on a missing item).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaSet {
    /// The key.
    pub key: Bytes,
    /// The data block, at most `max_value_bytes`.
    pub value: Bytes,
    /// `M<mode>`: `S` set (default), `E` add, `A` append, `P` prepend, `R` replace.
    pub mode: StoreMode,
    /// `F<flags>`: client flags, 0 when absent.
    pub client_flags: u32,
    /// `T<exptime>`: 0 (never) when absent.
    pub exptime: i64,
    /// `C<cas>`: store only if the item's CAS value is this one (with `Set` or `Replace` this is
    /// memcached's `cas`).
    pub compare_cas_opt: Option<u64>,
    /// `E<cas>`: the CAS value to give the stored item instead of a new one.
    pub new_cas_opt: Option<u64>,
    /// `I`: invalidate. With `C`, a CAS older than the item's still stores, but marks the item
    /// stale.
    pub invalidate: bool,
    /// `N<exptime>`: in append/prepend mode, create the item with this exptime if it is missing.
    pub vivify_exptime_opt: Option<i64>,
    /// `q`: no reply when stored.
    pub quiet: bool,
    /// `O<token>`: the opaque token without its `O`, echoed in the reply.
    pub opaque_opt: Option<Bytes>,
    /// The flags whose values the reply carries, in request order: `c k O`.
    pub return_flags: Vec<MetaFlag>,
}

/// `md <key> <flag>*`: meta delete.
///
/// Answered with [`super::encode_meta_delete`]: `HD` (deleted or invalidated; nothing when
/// `quiet`), `NF` (missing) or `EX` (CAS mismatch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaDelete {
    /// The key.
    pub key: Bytes,
    /// `C<cas>`: delete only if the item's CAS value is this one.
    pub compare_cas_opt: Option<u64>,
    /// `E<cas>`: with `I`, the CAS value the invalidated item gets.
    pub new_cas_opt: Option<u64>,
    /// `I`: instead of deleting, mark the item stale (the next `mg` wins the right to refresh
    /// it).
    pub invalidate: bool,
    /// `T<exptime>`: with `I`, the new exptime of the invalidated item.
    pub new_exptime_opt: Option<i64>,
    /// `q`: no reply on success.
    pub quiet: bool,
    /// `O<token>`: the opaque token without its `O`, echoed in the reply.
    pub opaque_opt: Option<Bytes>,
    /// The flags whose values the reply carries, in request order: `k O`.
    pub return_flags: Vec<MetaFlag>,
}

/// `ma <key> <flag>*`: meta arithmetic.
///
/// Answered with [`super::encode_meta_arithmetic`]: `HD` or `VA` with the number (nothing when
/// `quiet`), `NF`, `NS` or `EX`; a non-numeric value is a client error with
/// [`super::NON_NUMERIC_VALUE_MESSAGE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaArithmetic {
    /// The key of the counter.
    pub key: Bytes,
    /// `M<mode>`: `I`/`+` increment (default), `D`/`-` decrement.
    pub direction: Direction,
    /// `D<delta>`: the amount, 1 when absent.
    pub delta: u64,
    /// `J<initial>`: the value of a counter created by `N`, 0 when absent.
    pub initial: u64,
    /// `N<exptime>`: create the counter with `initial` and this exptime if it is missing.
    pub vivify_exptime_opt: Option<i64>,
    /// `T<exptime>`: the new exptime of the counter.
    pub touch_exptime_opt: Option<i64>,
    /// `C<cas>`: change the counter only if its CAS value is this one.
    pub compare_cas_opt: Option<u64>,
    /// `E<cas>`: the CAS value to give the changed counter instead of a new one.
    pub new_cas_opt: Option<u64>,
    /// `v`: return the new value (`VA`) rather than just `HD`.
    pub return_value: bool,
    /// `q`: no reply on success.
    pub quiet: bool,
    /// `O<token>`: the opaque token without its `O`, echoed in the reply.
    pub opaque_opt: Option<Bytes>,
    /// The flags whose values the reply carries, in request order: `c t k O`.
    pub return_flags: Vec<MetaFlag>,
}

/// Calls `handle(flag, token, index)` for every flag token from `first_index` on, refusing
/// repeated flags and the base64 `b` flag.
fn walk_flags(
    line: &Line,
    first_index: usize,
    mut handle: impl FnMut(u8, &[u8], usize) -> Result<(), TextError>,
) -> Result<(), TextError> {
    let mut seen = [false; 256];
    for index in first_index..line.len() {
        // The tokenizer makes no empty tokens, so every token has a flag character.
        let Some((&flag, token)) = line.token(index).split_first() else {
            continue;
        };
        if std::mem::replace(&mut seen[usize::from(flag)], true) {
            return Err(TextError::DuplicateFlag);
        }
        if flag == b'b' {
            return Err(TextError::Base64KeyUnsupported);
        }
        handle(flag, token, index)?;
    }
    Ok(())
}

fn exptime_token(token: &[u8]) -> Result<Option<i64>, TextError> {
    parse_i64(token).map(Some).ok_or(TextError::BadToken)
}

fn cas_token(token: &[u8]) -> Result<Option<u64>, TextError> {
    parse_u64(token).map(Some).ok_or(TextError::BadToken)
}

/// The one mode character of an `M` token.
fn mode_token(token: &[u8]) -> Result<u8, TextError> {
    match token {
        [mode] => Ok(*mode),
        _ => Err(TextError::BadModeTokenLength),
    }
}

fn opaque_token(line: &Line, index: usize) -> Bytes {
    line.token_bytes(index).slice(1..)
}

/// memcached checks the length of `O` after the other flags, so this runs after the walk.
fn check_opaque(opaque_opt: &Option<Bytes>) -> Result<(), TextError> {
    match opaque_opt {
        Some(opaque) if 1 + opaque.len() > MAX_OPAQUE_BYTES => Err(TextError::OpaqueTooLong),
        _ => Ok(()),
    }
}

/// memcached reports any flag problem of `md` and `ma` as "invalid or duplicate flag".
fn collapse_flag_error(error: TextError) -> TextError {
    match error {
        TextError::Base64KeyUnsupported => error,
        _ => TextError::InvalidOrDuplicateFlag,
    }
}

/// The checks every meta command with a key starts with, in memcached's order.
fn check_key_and_length(line: &Line, limits: &Limits) -> Result<(), TextError> {
    if line.len() < 2 {
        return Err(TextError::UnknownCommand);
    }
    if !is_valid_key(line.token(1), limits) {
        return Err(TextError::BadCommandLineFormat { noreply: false });
    }
    if line.overflowed || line.len() > MAX_META_TOKENS {
        return Err(TextError::TooManyFlags);
    }
    Ok(())
}

pub(super) fn parse_meta_get(line: &Line, limits: &Limits) -> Result<TextRequest, TextError> {
    check_key_and_length(line, limits)?;
    let mut request = MetaGet {
        key: line.token_bytes(1),
        return_value: false,
        quiet: false,
        no_lru_bump: false,
        touch_exptime_opt: None,
        vivify_exptime_opt: None,
        recache_threshold_opt: None,
        new_cas_opt: None,
        opaque_opt: None,
        return_flags: Vec::new(),
    };
    walk_flags(line, 2, |flag, token, index| {
        match flag {
            b'v' => request.return_value = true,
            b'q' => request.quiet = true,
            b'u' => request.no_lru_bump = true,
            b'T' => request.touch_exptime_opt = exptime_token(token)?,
            b'N' => request.vivify_exptime_opt = exptime_token(token)?,
            b'R' => request.recache_threshold_opt = exptime_token(token)?,
            b'E' => request.new_cas_opt = cas_token(token)?,
            b'O' => {
                request.opaque_opt = Some(opaque_token(line, index));
                request.return_flags.push(MetaFlag::Opaque);
            }
            b'c' => request.return_flags.push(MetaFlag::Cas),
            b'f' => request.return_flags.push(MetaFlag::ClientFlags),
            b'h' => request.return_flags.push(MetaFlag::Hit),
            b'k' => request.return_flags.push(MetaFlag::Key),
            b'l' => request.return_flags.push(MetaFlag::LastAccess),
            b's' => request.return_flags.push(MetaFlag::Size),
            b't' => request.return_flags.push(MetaFlag::Ttl),
            _ => return Err(TextError::InvalidFlag),
        }
        Ok(())
    })?;
    check_opaque(&request.opaque_opt)?;
    Ok(TextRequest::MetaGet(request))
}

pub(super) fn parse_meta_set(line: &Line, limits: &Limits) -> Result<Parsed, Rejection> {
    if line.len() < 2 {
        return Err(TextError::UnknownCommand.into());
    }
    if line.len() == 2 {
        return Err(TextError::BadCommandLineFormat { noreply: false }.into());
    }
    let Some(data_bytes) = parse_data_length(line.token(2)) else {
        // Without a length the data block cannot be skipped; memcached reads it as a command.
        return Err(TextError::BadCommandLineFormat { noreply: false }.into());
    };
    // From here on the data block is skipped after any refusal, as memcached's ms does after
    // flag errors, so that one request gets one reply.
    let reject = |error| Rejection {
        error,
        skip_bytes: data_bytes + 2,
    };
    if !is_valid_key(line.token(1), limits) {
        return Err(reject(TextError::BadCommandLineFormat { noreply: false }));
    }
    if line.overflowed || line.len() > MAX_META_TOKENS {
        return Err(reject(TextError::TooManyFlags));
    }
    let mut request = MetaSet {
        key: line.token_bytes(1),
        value: Bytes::new(),
        mode: StoreMode::Set,
        client_flags: 0,
        exptime: 0,
        compare_cas_opt: None,
        new_cas_opt: None,
        invalidate: false,
        vivify_exptime_opt: None,
        quiet: false,
        opaque_opt: None,
        return_flags: Vec::new(),
    };
    let mut mode_opt = None;
    walk_flags(line, 3, |flag, token, index| {
        match flag {
            b'q' => request.quiet = true,
            b'I' => request.invalidate = true,
            b'T' => request.exptime = exptime_token(token)?.unwrap_or(0),
            b'N' => request.vivify_exptime_opt = exptime_token(token)?,
            b'C' => request.compare_cas_opt = cas_token(token)?,
            b'E' => request.new_cas_opt = cas_token(token)?,
            // memcached reports a bad F token with the generic message.
            b'F' => {
                request.client_flags =
                    parse_u32(token).ok_or(TextError::BadCommandLineFormat { noreply: false })?
            }
            b'M' => mode_opt = Some(mode_token(token)?),
            b'O' => {
                request.opaque_opt = Some(opaque_token(line, index));
                request.return_flags.push(MetaFlag::Opaque);
            }
            b'c' => request.return_flags.push(MetaFlag::Cas),
            b'k' => request.return_flags.push(MetaFlag::Key),
            _ => return Err(TextError::InvalidFlag),
        }
        Ok(())
    })
    .map_err(reject)?;
    check_opaque(&request.opaque_opt).map_err(reject)?;
    request.mode = match mode_opt {
        None | Some(b'S' | b's') => StoreMode::Set,
        Some(b'E' | b'e') => StoreMode::Add,
        Some(b'A' | b'a') => StoreMode::Append,
        Some(b'P' | b'p') => StoreMode::Prepend,
        Some(b'R' | b'r') => StoreMode::Replace,
        Some(_) => return Err(reject(TextError::InvalidSetMode)),
    };
    if data_bytes > limits.max_value_bytes {
        // Meta commands always report errors, quiet or not (memcached's out_errstring).
        return Err(reject(TextError::ObjectTooLarge {
            noreply: false,
            skipped: true,
        }));
    }
    Ok(Parsed::AwaitData {
        pending: Pending::MetaSet(request),
        data_bytes,
    })
}

pub(super) fn parse_meta_delete(line: &Line, limits: &Limits) -> Result<TextRequest, TextError> {
    check_key_and_length(line, limits)?;
    let mut request = MetaDelete {
        key: line.token_bytes(1),
        compare_cas_opt: None,
        new_cas_opt: None,
        invalidate: false,
        new_exptime_opt: None,
        quiet: false,
        opaque_opt: None,
        return_flags: Vec::new(),
    };
    walk_flags(line, 2, |flag, token, index| {
        match flag {
            b'q' => request.quiet = true,
            b'I' => request.invalidate = true,
            b'T' => request.new_exptime_opt = exptime_token(token)?,
            b'C' => request.compare_cas_opt = cas_token(token)?,
            b'E' => request.new_cas_opt = cas_token(token)?,
            b'O' => {
                request.opaque_opt = Some(opaque_token(line, index));
                request.return_flags.push(MetaFlag::Opaque);
            }
            b'k' => request.return_flags.push(MetaFlag::Key),
            _ => return Err(TextError::InvalidFlag),
        }
        Ok(())
    })
    .map_err(collapse_flag_error)?;
    check_opaque(&request.opaque_opt)?;
    Ok(TextRequest::MetaDelete(request))
}

pub(super) fn parse_meta_arithmetic(
    line: &Line,
    limits: &Limits,
) -> Result<TextRequest, TextError> {
    check_key_and_length(line, limits)?;
    let mut request = MetaArithmetic {
        key: line.token_bytes(1),
        direction: Direction::Increment,
        delta: 1,
        initial: 0,
        vivify_exptime_opt: None,
        touch_exptime_opt: None,
        compare_cas_opt: None,
        new_cas_opt: None,
        return_value: false,
        quiet: false,
        opaque_opt: None,
        return_flags: Vec::new(),
    };
    let mut mode_opt = None;
    walk_flags(line, 2, |flag, token, index| {
        match flag {
            b'v' => request.return_value = true,
            b'q' => request.quiet = true,
            b'N' => request.vivify_exptime_opt = exptime_token(token)?,
            b'T' => request.touch_exptime_opt = exptime_token(token)?,
            b'C' => request.compare_cas_opt = cas_token(token)?,
            b'E' => request.new_cas_opt = cas_token(token)?,
            b'J' => request.initial = parse_u64(token).ok_or(TextError::BadToken)?,
            b'D' => request.delta = parse_u64(token).ok_or(TextError::BadToken)?,
            b'M' => mode_opt = Some(mode_token(token)?),
            b'O' => {
                request.opaque_opt = Some(opaque_token(line, index));
                request.return_flags.push(MetaFlag::Opaque);
            }
            b'c' => request.return_flags.push(MetaFlag::Cas),
            b't' => request.return_flags.push(MetaFlag::Ttl),
            b'k' => request.return_flags.push(MetaFlag::Key),
            _ => return Err(TextError::InvalidFlag),
        }
        Ok(())
    })
    .map_err(collapse_flag_error)?;
    check_opaque(&request.opaque_opt)?;
    request.direction = match mode_opt {
        None | Some(b'I' | b'i' | b'+') => Direction::Increment,
        Some(b'D' | b'd' | b'-') => Direction::Decrement,
        Some(_) => return Err(TextError::InvalidArithmeticMode),
    };
    Ok(TextRequest::MetaArithmetic(request))
}
