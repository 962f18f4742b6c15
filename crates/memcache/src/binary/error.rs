//! Errors of the binary protocol.

use super::{RequestHeader, Status};

/// A binary request that was refused, with the header it came with, so the answer can echo its
/// opcode and opaque ([`super::encode_error`]).
///
/// Errors that [close the connection](BinaryError::closes_connection) consumed nothing: the stream
/// cannot be trusted any more, and the node sends the answer and closes, as memcached does. The
/// others consumed the header and skip the body as it arrives; no store state changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BinaryError {
    /// The first byte is not 0x80. Nothing consumed; closes the connection (memcached closes
    /// without an answer; scd answers 0x0004 first so a person can see why).
    #[error("invalid magic byte {:#04x}, expected 0x80", header.magic)]
    BadMagic {
        /// The header as read.
        header: RequestHeader,
    },
    /// Key and extras are longer than the whole body. Nothing consumed; closes the connection
    /// after status 0x0081, as memcached does.
    #[error(
        "key length {} plus extras length {} exceed total body length {}",
        header.key_length,
        header.extras_length,
        header.total_body_length
    )]
    LengthsInconsistent {
        /// The header as read.
        header: RequestHeader,
    },
    /// A key longer than `max_key_bytes`. Nothing consumed; closes the connection after status
    /// 0x0004, as memcached does.
    #[error("key length {} exceeds max-key-bytes ({max_key_bytes})", header.key_length)]
    KeyTooLong {
        /// The header as read.
        header: RequestHeader,
        /// The limit.
        max_key_bytes: usize,
    },
    /// Extras, key or value lengths that the opcode does not allow (e.g. a GET with extras, a SET
    /// without its 8 bytes of extras, a SASL packet over its bounds). Nothing consumed; closes the
    /// connection after status 0x0004, as memcached does.
    #[error("invalid arguments for opcode {:#04x}", header.opcode)]
    InvalidArguments {
        /// The header as read.
        header: RequestHeader,
    },
    /// An opcode scd does not implement. The header was consumed and the body is skipped,
    /// unless it is beyond [`crate::Limits::max_skip_bytes`], in which case the connection closes;
    /// answered with status 0x0081; nothing changed.
    #[error("unknown command {:#04x}", header.opcode)]
    UnknownCommand {
        /// The header as read.
        header: RequestHeader,
        /// The body will be skipped; if false the connection must close.
        skipped: bool,
    },
    /// A value larger than `max_value_bytes`. The header was consumed and the body is skipped,
    /// unless it is beyond [`crate::Limits::max_skip_bytes`], in which case the connection closes;
    /// answered with status 0x0003; nothing changed.
    #[error("value length {value_bytes} exceeds max-value-bytes ({max_value_bytes})")]
    ValueTooLarge {
        /// The header as read.
        header: RequestHeader,
        /// The length of the refused value.
        value_bytes: u32,
        /// The limit.
        max_value_bytes: usize,
        /// The body will be skipped; if false the connection must close.
        skipped: bool,
    },
}

impl BinaryError {
    /// The header of the refused request.
    pub fn header(&self) -> &RequestHeader {
        match self {
            BinaryError::BadMagic { header }
            | BinaryError::LengthsInconsistent { header }
            | BinaryError::KeyTooLong { header, .. }
            | BinaryError::InvalidArguments { header }
            | BinaryError::UnknownCommand { header, .. }
            | BinaryError::ValueTooLarge { header, .. } => header,
        }
    }

    /// The status of the answer, the one memcached uses for the same error.
    pub fn status(&self) -> Status {
        match self {
            BinaryError::BadMagic { .. }
            | BinaryError::KeyTooLong { .. }
            | BinaryError::InvalidArguments { .. } => Status::InvalidArguments,
            BinaryError::LengthsInconsistent { .. } | BinaryError::UnknownCommand { .. } => {
                Status::UnknownCommand
            }
            BinaryError::ValueTooLarge { .. } => Status::ValueTooLarge,
        }
    }

    /// Whether the node must close the connection after sending the answer.
    pub fn closes_connection(&self) -> bool {
        match self {
            BinaryError::UnknownCommand { skipped, .. }
            | BinaryError::ValueTooLarge { skipped, .. } => !skipped,
            _ => true,
        }
    }
}
