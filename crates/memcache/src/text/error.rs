//! Errors of the text protocol, each worded as memcached 1.6 words its reply.

/// A text-protocol request that was refused, and the reply it gets.
///
/// Unless it [closes the connection](TextError::closes_connection), an error has consumed the bad
/// request, and the data block of a refused storage command is skipped as it arrives: no store
/// state changed and the parser is ready for the next request. The reply line is
/// `<kind> <message>` ([`TextError::reply_line`]); [`super::encode_error`] writes it.
///
/// `noreply` fields record that the client asked for no reply: memcached then sends none, not even
/// an error (its `out_string` drops everything while `noreply` is set).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Unknown command name, or a known command with the wrong number of arguments: the reply is
    /// a bare `ERROR`. The line was consumed; nothing changed.
    #[error("unknown command")]
    UnknownCommand,
    /// A malformed argument or an invalid key (too long, control characters). The line was
    /// consumed, and the data block of a storage command whose length could be read is skipped;
    /// nothing changed.
    #[error("bad command line format")]
    BadCommandLineFormat {
        /// The client asked for no reply.
        noreply: bool,
    },
    /// `delete` with arguments other than `[0] [noreply]`. The line was consumed; nothing changed.
    #[error("bad command line format.  Usage: delete <key> [noreply]")]
    DeleteUsage {
        /// The client asked for no reply.
        noreply: bool,
    },
    /// An exptime that is not a number (`touch`, `gat`, `gats`, `flush_all`). The line was
    /// consumed; nothing changed.
    #[error("invalid exptime argument")]
    InvalidExptime {
        /// The client asked for no reply.
        noreply: bool,
    },
    /// An `incr`/`decr` amount that is not an unsigned 64-bit number. The line was consumed;
    /// nothing changed.
    #[error("invalid numeric delta argument")]
    InvalidDelta {
        /// The client asked for no reply.
        noreply: bool,
    },
    /// A get naming more keys than `max_keys_per_get` (a limit memcached does not have). The line
    /// was consumed; nothing changed.
    #[error("too many keys (max-keys-per-get is {max_keys_per_get})")]
    TooManyKeys {
        /// The limit that was exceeded.
        max_keys_per_get: usize,
    },
    /// A data block larger than `max_value_bytes`. The line was consumed and nothing changed;
    /// the data block is skipped as it arrives, unless it is beyond [`crate::Limits::max_skip_bytes`],
    /// in which case the node sends the reply and closes the connection.
    #[error("object too large for cache")]
    ObjectTooLarge {
        /// The client asked for no reply.
        noreply: bool,
        /// The data block will be skipped; if false the connection must close.
        skipped: bool,
    },
    /// The data block was not followed by `\r\n`. The line and `<bytes> + 2` bytes after it were
    /// consumed; nothing changed.
    #[error("bad data chunk")]
    BadDataChunk {
        /// The client asked for no reply.
        noreply: bool,
    },
    /// No `\n` within `max_line_bytes` bytes. Nothing was consumed; the node sends the reply and
    /// closes the connection (memcached closes silently after 2048 bytes, except for gets).
    #[error("line too long")]
    LineTooLong,
    /// A meta command (`mg`, `ms`) repeated a flag. The line was consumed (an `ms` data block is
    /// skipped); nothing changed.
    #[error("duplicate flag")]
    DuplicateFlag,
    /// A meta command (`mg`, `ms`) used a flag scd does not know for it. The line was consumed (an
    /// `ms` data block is skipped); nothing changed.
    #[error("invalid flag")]
    InvalidFlag,
    /// `md` or `ma` with an unknown, repeated or malformed flag (memcached reports all of these
    /// with one message for these two commands). The line was consumed; nothing changed.
    #[error("invalid or duplicate flag")]
    InvalidOrDuplicateFlag,
    /// A meta flag token that is not a number where one is needed (`T`, `N`, `R`, `C`, `E`). The
    /// line was consumed (an `ms` data block is skipped); nothing changed.
    #[error("bad token in command line format")]
    BadToken,
    /// A meta `M` flag not followed by exactly one mode character. The line was consumed (an `ms`
    /// data block is skipped); nothing changed.
    #[error("incorrect length for M token")]
    BadModeTokenLength,
    /// `ms` with a mode other than `E A P R S`. The line was consumed and the data block is
    /// skipped; nothing changed.
    #[error("invalid mode for ms M token")]
    InvalidSetMode,
    /// `ma` with a mode other than `I + D -`. The line was consumed; nothing changed.
    #[error("invalid mode for ma M token")]
    InvalidArithmeticMode,
    /// A meta `O` (opaque) token longer than [`super::MAX_OPAQUE_BYTES`]. The line was consumed
    /// (an `ms` data block is skipped); nothing changed.
    #[error("opaque token too long")]
    OpaqueTooLong,
    /// A meta command with more than [`super::MAX_META_TOKENS`] tokens. The line was consumed;
    /// nothing changed.
    #[error("options flags too long")]
    TooManyFlags,
    /// A meta command with the `b` flag: scd does not decode base64 keys. The line was consumed
    /// (an `ms` data block is skipped); nothing changed.
    #[error("base64 keys (b flag) are not supported")]
    Base64KeyUnsupported,
}

/// The first word of an error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// `ERROR`, alone on its line: the command does not exist.
    Error,
    /// `CLIENT_ERROR <message>`: the input does not conform to the protocol.
    ClientError,
    /// `SERVER_ERROR <message>`: the server cannot carry out the command.
    ServerError,
}

impl TextError {
    /// The first word of the reply.
    pub fn kind(&self) -> ReplyKind {
        match self {
            TextError::UnknownCommand => ReplyKind::Error,
            TextError::ObjectTooLarge { .. } => ReplyKind::ServerError,
            _ => ReplyKind::ClientError,
        }
    }

    /// The whole reply line without its `\r\n`, e.g. `CLIENT_ERROR bad command line format`.
    pub fn reply_line(&self) -> String {
        match self.kind() {
            ReplyKind::Error => "ERROR".to_owned(),
            ReplyKind::ClientError => format!("CLIENT_ERROR {self}"),
            ReplyKind::ServerError => format!("SERVER_ERROR {self}"),
        }
    }

    /// Whether the node must close the connection after sending the reply: the rest of the
    /// stream cannot be read as requests any more.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            TextError::LineTooLong | TextError::ObjectTooLarge { skipped: false, .. }
        )
    }

    /// Whether memcached would send no reply because the client asked for none. Errors that close
    /// the connection are always answered, so a person sees why.
    pub fn reply_suppressed(&self) -> bool {
        let noreply = match self {
            TextError::BadCommandLineFormat { noreply }
            | TextError::DeleteUsage { noreply }
            | TextError::InvalidExptime { noreply }
            | TextError::InvalidDelta { noreply }
            | TextError::ObjectTooLarge { noreply, .. }
            | TextError::BadDataChunk { noreply } => *noreply,
            _ => false,
        };
        noreply && !self.closes_connection()
    }
}
