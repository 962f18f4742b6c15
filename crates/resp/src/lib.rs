//! RESP2/RESP3 frames and commands for scd; no I/O.
//!
//! The node reads a client's bytes into a `BytesMut` and hands it to a [`RequestParser`],
//! which splits off complete requests (multibulk or inline) as zero-copy `Bytes` arguments,
//! enforcing [`Limits`] before buffering anything a header announces. [`Command::parse`]
//! turns the arguments into a typed [`Command`] or the exact error Redis 7 would send
//! ([`CommandError::reply_line`]). Replies are written with a [`ReplyEncoder`] in the
//! protocol version the client chose with `HELLO`. [`Frame`] parses and encodes any RESP2 or
//! RESP3 value, for tests and client-side code; [`table`] describes every command for
//! `COMMAND INFO` and `COMMAND DOCS`.
//!
//! A [`ProtocolError`] means the connection must be closed after its reply line; a
//! [`CommandError`] is answered and the connection goes on.

#![deny(missing_docs, unreachable_pub)]

mod cmd;
mod encode;
mod error;
mod frame;
mod limits;
mod number;
mod request;
pub mod table;

pub use cmd::{
    ClientCommand, ClientInfoAttribute, Command, CommandQuery, ConnectionCommand, Credentials,
    ExpireConditions, Expiry, FlushMode, HashCommand, Hello, HelpTopic, KeyCommand, Keys, Pairs,
    SCD_LEASE_MS_MAX, SCD_OWNER_MAX_BYTES, SCD_WAIT_MS_MAX, ScanCommand, ScdCommand, ScriptCall,
    ScriptingCommand, ServerCommand, SetCommand, SetCondition, StringCommand, TimeUnit, TtlUpdate,
    ValueTypeFilter,
};
pub use encode::{ProtocolVersion, ReplyEncoder};
pub use error::{CommandError, ProtocolError};
pub use frame::{Frame, MAX_FRAME_DEPTH};
pub use limits::Limits;
pub use request::{Request, RequestParser};
