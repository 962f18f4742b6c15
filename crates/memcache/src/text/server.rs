//! Commands about the server rather than one item: `flush_all`, `stats`, `verbosity`.
//! (`version` and `quit` take no arguments and are parsed in `mod.rs`.)

use super::{Line, TextError, TextRequest, parse_i64, parse_u32};

/// `flush_all [delay] [noreply]`.
pub(super) fn parse_flush_all(line: &Line) -> Result<TextRequest, TextError> {
    if line.overflowed || !(1..=3).contains(&line.len()) {
        return Err(TextError::UnknownCommand);
    }
    let noreply = line.ends_with_noreply();
    let tokens_without_delay = if noreply { 2 } else { 1 };
    let delay_seconds = if line.len() == tokens_without_delay {
        0
    } else {
        parse_i64(line.token(1)).ok_or(TextError::InvalidExptime { noreply })?
    };
    Ok(TextRequest::FlushAll {
        delay_seconds,
        noreply,
    })
}

/// `stats [group...]`.
pub(super) fn parse_stats(line: &Line) -> Result<TextRequest, TextError> {
    if line.overflowed {
        return Err(TextError::UnknownCommand);
    }
    let arguments = (1..line.len())
        .map(|index| line.token_bytes(index))
        .collect();
    Ok(TextRequest::Stats { arguments })
}

/// `verbosity <level> [noreply]`.
pub(super) fn parse_verbosity(line: &Line) -> Result<TextRequest, TextError> {
    if line.overflowed || !(2..=3).contains(&line.len()) {
        return Err(TextError::UnknownCommand);
    }
    let noreply = line.ends_with_noreply();
    let level = parse_u32(line.token(1)).ok_or(TextError::BadCommandLineFormat { noreply })?;
    Ok(TextRequest::Verbosity { level, noreply })
}
