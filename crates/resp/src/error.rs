//! The crate's two error types: [`ProtocolError`] ends a connection, [`CommandError`] is
//! answered and the connection goes on.
//!
//! Both are split on purpose: the node must close the connection after a protocol error (the
//! byte stream can no longer be trusted to be in step) but must keep it open after a command
//! error. Each has a `reply_line` method giving the exact line to send, without the leading
//! `-` and the trailing CRLF (the reply encoder adds those).

use thiserror::Error;

/// Malformed or over-limit input: the node sends [`ProtocolError::reply_line`] and closes the
/// connection, as Redis does.
///
/// No variant changes state outside the parser: what was consumed from the input buffer is
/// lost with the connection anyway. The parser resets itself, but the stream is out of step
/// and must not be parsed further.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// A `*` header that is not a valid count (not a number, negative other than `-1`, or
    /// longer than any number). Nothing changed; close the connection.
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// A `$` header that is not a valid length (not a number, negative, or longer than any
    /// number). Nothing changed; close the connection.
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// An element of a request array that is not a bulk string. Nothing changed; close the
    /// connection.
    #[error("Protocol error: expected '$', got '{}'", char::from(*got))]
    ExpectedBulk {
        /// The type byte that was found instead of `$`.
        got: u8,
    },
    /// A line or a bulk string not followed by CRLF. Nothing changed; close the connection.
    #[error("Protocol error: missing CRLF")]
    MissingCrlf,
    /// An inline command line longer than `max_inline_bytes`, refused before its end arrived.
    /// Nothing changed; close the connection.
    #[error("Protocol error: too big inline request")]
    TooBigInlineRequest,
    /// An inline command with an unterminated quote or a quote followed by a non-blank.
    /// Nothing changed; close the connection.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// A request (or aggregate frame) with more elements than `max_args`, refused at its
    /// header. Nothing changed; close the connection.
    #[error("Protocol error: request has more than {max_args} arguments (max-args)")]
    TooManyArguments {
        /// The limit that was exceeded.
        max_args: usize,
    },
    /// A bulk string longer than `max_bulk_bytes`, refused at its header before any of it
    /// was buffered. Nothing changed; close the connection.
    #[error("value is larger than max-value-bytes ({max_bulk_bytes})")]
    ValueTooLarge {
        /// The limit that was exceeded.
        max_bulk_bytes: usize,
    },
    /// A request (or frame) that would be longer than `max_request_bytes` once complete,
    /// refused as soon as that was known. Nothing changed; close the connection.
    #[error("Protocol error: request is larger than {max_request_bytes} bytes (max-request-bytes)")]
    RequestTooLarge {
        /// The limit that was exceeded.
        max_request_bytes: usize,
    },
    /// A frame starting with a byte that is no RESP2 or RESP3 type. Nothing changed.
    #[error("Protocol error: invalid frame type byte '{}'", char::from(*got))]
    InvalidFrameType {
        /// The byte found where a type byte was expected.
        got: u8,
    },
    /// A `:` integer frame that is not a 64-bit decimal integer. Nothing changed.
    #[error("Protocol error: invalid integer")]
    InvalidInteger,
    /// A `,` double frame that is not a number, `inf`, `-inf` or `nan`. Nothing changed.
    #[error("Protocol error: invalid double")]
    InvalidDouble,
    /// A `#` boolean frame other than `#t` or `#f`. Nothing changed.
    #[error("Protocol error: invalid boolean")]
    InvalidBoolean,
    /// A `(` big number frame that is not a decimal integer. Nothing changed.
    #[error("Protocol error: invalid big number")]
    InvalidBigNumber,
    /// A `=` verbatim string frame without its `xxx:` format prefix. Nothing changed.
    #[error("Protocol error: invalid verbatim string")]
    InvalidVerbatim,
    /// A `_` null frame with something between `_` and CRLF. Nothing changed.
    #[error("Protocol error: invalid null")]
    InvalidNull,
    /// A simple string, error or number line longer than `max_inline_bytes`. Nothing changed.
    #[error("Protocol error: line longer than {max_inline_bytes} bytes (max-inline-bytes)")]
    LineTooLong {
        /// The limit that was exceeded.
        max_inline_bytes: usize,
    },
    /// Aggregates nested deeper than [`crate::MAX_FRAME_DEPTH`]. Nothing changed.
    #[error("Protocol error: frame nested deeper than {max_depth} levels")]
    FrameTooDeep {
        /// The limit that was exceeded.
        max_depth: usize,
    },
    /// A RESP3 streamed string or aggregate (`$?`, `*?`), which scd never sends nor accepts.
    /// Nothing changed.
    #[error("Protocol error: streamed frames are not supported")]
    StreamedFrame,
}

impl ProtocolError {
    /// The error line to send before closing, e.g. `ERR Protocol error: invalid bulk length`.
    pub fn reply_line(&self) -> String {
        format!("ERR {self}")
    }
}

/// A well-formed request that is not a valid command: the node sends
/// [`CommandError::reply_line`] and reads the next request.
///
/// Every variant comes from parsing, before anything was executed, so none changed any state;
/// the node also uses [`CommandError::DbIndexOutOfRange`] for `SELECT` of a database it does
/// not have. Messages are Redis 7's, word for word, because client libraries and people match
/// on them.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    /// A request without any argument; the request parser never produces one. No state changed.
    #[error("empty command")]
    Empty,
    /// A command name that scd does not implement. No state changed.
    #[error("unknown command '{name}', with args beginning with: {args_preview}")]
    UnknownCommand {
        /// The name as the client sent it, at most 128 bytes, converted lossily to UTF-8.
        name: String,
        /// The first arguments, each quoted and followed by a space, as Redis shows them.
        args_preview: String,
    },
    /// A subcommand that scd does not implement for a container command (CLIENT, COMMAND,
    /// CONFIG, SCRIPT). No state changed.
    #[error("unknown subcommand '{subcommand}'. Try {container} HELP.")]
    UnknownSubcommand {
        /// The container command, upper case.
        container: String,
        /// The subcommand as the client sent it, at most 128 bytes.
        subcommand: String,
    },
    /// An argument count outside the command's arity. No state changed.
    #[error("wrong number of arguments for '{command}' command")]
    WrongNumberOfArguments {
        /// The command's full name, e.g. `get` or `client|setname`.
        command: &'static str,
    },
    /// Options that do not form a valid command. No state changed.
    #[error("syntax error")]
    Syntax,
    /// An argument that must be a 64-bit integer and is not. No state changed.
    #[error("value is not an integer or out of range")]
    NotAnInteger,
    /// An expiry that is zero, negative where that is not allowed, or would overflow when
    /// converted to milliseconds. No state changed.
    #[error("invalid expire time in '{command}' command")]
    InvalidExpireTime {
        /// The command's name, e.g. `set` or `getex`.
        command: &'static str,
    },
    /// EXPIRE's NX together with XX, GT or LT. No state changed.
    #[error("NX and XX, GT or LT options at the same time are not compatible")]
    ExpireNxNotCompatible,
    /// EXPIRE's GT together with LT. No state changed.
    #[error("GT and LT options at the same time are not compatible")]
    ExpireGtLtNotCompatible,
    /// An EXPIRE option other than NX, XX, GT and LT. No state changed.
    #[error("Unsupported option {option}")]
    UnsupportedExpireOption {
        /// The option as sent.
        option: String,
    },
    /// A negative database index; the node also uses it for indexes it does not have.
    /// No state changed.
    #[error("DB index is out of range")]
    DbIndexOutOfRange,
    /// HELLO with a protocol version that is not an integer. No state changed.
    #[error("Protocol version is not an integer or out of range")]
    ProtocolVersionNotAnInteger,
    /// HELLO with a protocol version other than 2 and 3; the line starts with `NOPROTO`.
    /// No state changed.
    #[error("unsupported protocol version")]
    UnsupportedProtocolVersion,
    /// HELLO with an option other than AUTH and SETNAME, or without their values.
    /// No state changed.
    #[error("Syntax error in HELLO option '{option}'")]
    HelloOption {
        /// The option as sent.
        option: String,
    },
    /// A client name with a byte outside `!`..`~`. No state changed.
    #[error("Client names cannot contain spaces, newlines or special characters.")]
    InvalidClientName,
    /// CLIENT SETINFO with an attribute other than LIB-NAME and LIB-VER. No state changed.
    #[error("Unrecognized option '{option}'")]
    UnrecognizedClientInfoOption {
        /// The attribute as sent.
        option: String,
    },
    /// CLIENT SETINFO with a value containing a byte outside `!`..`~`. No state changed.
    #[error("{attribute} cannot contain spaces, newlines or special characters.")]
    InvalidClientInfoValue {
        /// The attribute as sent.
        attribute: String,
    },
    /// A SCAN cursor that is not an unsigned 64-bit integer. No state changed.
    #[error("invalid cursor")]
    InvalidCursor,
    /// EVAL or EVALSHA with a negative key count. No state changed.
    #[error("Number of keys can't be negative")]
    NegativeNumberOfKeys,
    /// EVAL or EVALSHA with a key count above the number of arguments left. No state changed.
    #[error("Number of keys can't be greater than number of args")]
    TooManyKeys,
    /// SCRIPT FLUSH with an option other than SYNC and ASYNC. No state changed.
    #[error("SCRIPT FLUSH only support SYNC|ASYNC option")]
    ScriptFlushOption,
    /// DECRBY by `i64::MIN`, whose negation does not fit. No state changed.
    #[error("decrement would overflow")]
    DecrementWouldOverflow,
    /// An argument of an `SCD.*` command outside what it allows (Redis has no such command, so
    /// the line names the argument and the allowed values). No state changed.
    #[error("invalid {argument} in '{command}' command: {allowed}")]
    InvalidArgument {
        /// The command's name, e.g. `scd.lock`.
        command: &'static str,
        /// The argument, e.g. `lease-ms` or `WAIT`.
        argument: &'static str,
        /// What it may be, e.g. `an integer from 1 to 86400000`.
        allowed: &'static str,
    },
}

impl CommandError {
    /// The error code that starts the reply line: `ERR` for all but HELLO's `NOPROTO`.
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::UnsupportedProtocolVersion => "NOPROTO",
            _ => "ERR",
        }
    }

    /// The error line to send, e.g. `ERR wrong number of arguments for 'get' command`.
    pub fn reply_line(&self) -> String {
        format!("{} {self}", self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_error_lines_match_redis_wording() {
        let check = |error: ProtocolError, expect: &str| assert_eq!(error.reply_line(), expect);
        check(
            ProtocolError::InvalidMultibulkLength,
            "ERR Protocol error: invalid multibulk length",
        );
        check(
            ProtocolError::InvalidBulkLength,
            "ERR Protocol error: invalid bulk length",
        );
        check(
            ProtocolError::ExpectedBulk { got: b'x' },
            "ERR Protocol error: expected '$', got 'x'",
        );
        check(
            ProtocolError::TooBigInlineRequest,
            "ERR Protocol error: too big inline request",
        );
        check(
            ProtocolError::TooManyArguments { max_args: 1024 },
            "ERR Protocol error: request has more than 1024 arguments (max-args)",
        );
        check(
            ProtocolError::ValueTooLarge {
                max_bulk_bytes: 1_048_576,
            },
            "ERR value is larger than max-value-bytes (1048576)",
        );
    }

    #[test]
    fn command_error_lines_carry_their_code() {
        assert_eq!(
            CommandError::UnsupportedProtocolVersion.reply_line(),
            "NOPROTO unsupported protocol version"
        );
        assert_eq!(CommandError::Syntax.reply_line(), "ERR syntax error");
    }
}
