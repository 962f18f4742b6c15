//! The memcached binary protocol: [`BinaryParser`] turns bytes into [`BinaryRequest`]s, the
//! `encode_*` functions turn outcomes into response packets.
//!
//! Every packet is a 24-byte header (magic, opcode, key length, extras length, data type,
//! vbucket/status, total body length, opaque, CAS; big-endian) followed by the body: extras, key,
//! value. This follows memcached 1.6's `proto_bin.c` and `protocol_binary.h`: the same commands,
//! the same checks of each opcode's extras/key/value shape, the same status codes, and the same
//! rule for quiet commands:
//!
//! - a quiet *get* (`GETQ`, `GETKQ`, `GATQ`, `GATKQ`) is answered when it hits and not when it
//!   misses;
//! - any other quiet command (`SETQ`, `DELETEQ`, `INCREMENTQ`, `FLUSHQ`, `QUITQ`, ...) is answered
//!   only when it fails;
//! - errors are always answered.
//!
//! The `encode_*` functions apply this rule themselves, so the node calls the one that matches the
//! outcome and never checks `quiet`. Clients end a pipeline of quiet commands with `NOOP`, whose
//! answer tells them everything before it has been answered.

mod error;
mod header;
mod request;
mod response;

pub use error::BinaryError;
pub use header::{HEADER_BYTES, REQUEST_MAGIC, RESPONSE_MAGIC, RequestHeader, ResponseHeader};
pub use request::{
    BinaryCommand, BinaryParser, BinaryRequest, CreateCounter, MAX_SASL_DATA_BYTES,
    MAX_SASL_MECHANISM_BYTES, encode_request,
};
pub use response::{
    Status, encode_counter, encode_error, encode_failure, encode_failure_saying, encode_get_hit,
    encode_get_miss, encode_response, encode_sasl_authenticated, encode_sasl_mechanisms,
    encode_stat, encode_stat_end, encode_success, encode_version,
};

/// Command opcodes, as in memcached's `protocol_binary.h`.
pub mod opcode {
    /// Get a value.
    pub const GET: u8 = 0x00;
    /// Store a value unconditionally.
    pub const SET: u8 = 0x01;
    /// Store a value if the key holds none.
    pub const ADD: u8 = 0x02;
    /// Store a value if the key holds one.
    pub const REPLACE: u8 = 0x03;
    /// Delete an item.
    pub const DELETE: u8 = 0x04;
    /// Increment a counter.
    pub const INCREMENT: u8 = 0x05;
    /// Decrement a counter.
    pub const DECREMENT: u8 = 0x06;
    /// Answer, then close the connection.
    pub const QUIT: u8 = 0x07;
    /// Invalidate every item.
    pub const FLUSH: u8 = 0x08;
    /// Quiet GET: no answer on a miss.
    pub const GETQ: u8 = 0x09;
    /// Do nothing; answer.
    pub const NOOP: u8 = 0x0a;
    /// The server's version.
    pub const VERSION: u8 = 0x0b;
    /// GET, with the key in the answer.
    pub const GETK: u8 = 0x0c;
    /// Quiet GETK.
    pub const GETKQ: u8 = 0x0d;
    /// Append to a value.
    pub const APPEND: u8 = 0x0e;
    /// Prepend to a value.
    pub const PREPEND: u8 = 0x0f;
    /// Statistics, one packet per statistic and an empty one at the end.
    pub const STAT: u8 = 0x10;
    /// Quiet SET.
    pub const SETQ: u8 = 0x11;
    /// Quiet ADD.
    pub const ADDQ: u8 = 0x12;
    /// Quiet REPLACE.
    pub const REPLACEQ: u8 = 0x13;
    /// Quiet DELETE.
    pub const DELETEQ: u8 = 0x14;
    /// Quiet INCREMENT.
    pub const INCREMENTQ: u8 = 0x15;
    /// Quiet DECREMENT.
    pub const DECREMENTQ: u8 = 0x16;
    /// Close the connection without an answer.
    pub const QUITQ: u8 = 0x17;
    /// Quiet FLUSH.
    pub const FLUSHQ: u8 = 0x18;
    /// Quiet APPEND.
    pub const APPENDQ: u8 = 0x19;
    /// Quiet PREPEND.
    pub const PREPENDQ: u8 = 0x1a;
    /// Set the logging verbosity (libmemcached's `memcached_verbosity`).
    pub const VERBOSITY: u8 = 0x1b;
    /// Change an item's expiry.
    pub const TOUCH: u8 = 0x1c;
    /// Get and touch.
    pub const GAT: u8 = 0x1d;
    /// Quiet GAT.
    pub const GATQ: u8 = 0x1e;
    /// List the SASL mechanisms.
    pub const SASL_LIST_MECHS: u8 = 0x20;
    /// Start SASL authentication.
    pub const SASL_AUTH: u8 = 0x21;
    /// Continue SASL authentication.
    pub const SASL_STEP: u8 = 0x22;
    /// GAT, with the key in the answer.
    pub const GATK: u8 = 0x23;
    /// Quiet GATK.
    pub const GATKQ: u8 = 0x24;
}

#[cfg(test)]
mod tests;
