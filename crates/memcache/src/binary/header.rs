//! The 24-byte headers of binary requests and responses.

use bytes::{BufMut, BytesMut};

/// The first byte of every binary request.
pub const REQUEST_MAGIC: u8 = 0x80;

/// The first byte of every binary response.
pub const RESPONSE_MAGIC: u8 = 0x81;

/// The size of a request or response header.
pub const HEADER_BYTES: usize = 24;

/// A request header, fields in host order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RequestHeader {
    /// [`REQUEST_MAGIC`] in every valid request.
    pub magic: u8,
    /// The command; see [`super::opcode`].
    pub opcode: u8,
    /// Length of the key, which follows the extras.
    pub key_length: u16,
    /// Length of the command-specific extras, which follow the header.
    pub extras_length: u8,
    /// Reserved; 0 (raw bytes) in practice. Kept, not checked, as memcached does.
    pub data_type: u8,
    /// Reserved in requests (the vbucket id in Couchbase); ignored.
    pub vbucket: u16,
    /// Length of extras, key and value together.
    pub total_body_length: u32,
    /// Copied into the response, so clients can match answers to pipelined requests.
    pub opaque: u32,
    /// The CAS value to compare (0: none) for storage, delete and arithmetic commands.
    pub cas: u64,
}

impl RequestHeader {
    /// Reads a header from its 24 bytes.
    pub fn parse(bytes: &[u8; HEADER_BYTES]) -> RequestHeader {
        RequestHeader {
            magic: bytes[0],
            opcode: bytes[1],
            key_length: u16::from_be_bytes([bytes[2], bytes[3]]),
            extras_length: bytes[4],
            data_type: bytes[5],
            vbucket: u16::from_be_bytes([bytes[6], bytes[7]]),
            total_body_length: u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
            opaque: u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]),
            cas: u64::from_be_bytes([
                bytes[16], bytes[17], bytes[18], bytes[19], bytes[20], bytes[21], bytes[22],
                bytes[23],
            ]),
        }
    }

    /// Appends the header's 24 bytes to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(self.magic);
        out.put_u8(self.opcode);
        out.put_u16(self.key_length);
        out.put_u8(self.extras_length);
        out.put_u8(self.data_type);
        out.put_u16(self.vbucket);
        out.put_u32(self.total_body_length);
        out.put_u32(self.opaque);
        out.put_u64(self.cas);
    }

    /// Length of the value: the body minus extras and key, or `None` when they do not fit in
    /// the body.
    pub fn value_length(&self) -> Option<u32> {
        self.total_body_length
            .checked_sub(u32::from(self.extras_length) + u32::from(self.key_length))
    }
}

/// A response header, fields in host order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ResponseHeader {
    /// [`RESPONSE_MAGIC`].
    pub magic: u8,
    /// The opcode of the request answered.
    pub opcode: u8,
    /// Length of the key in the body (GETK answers).
    pub key_length: u16,
    /// Length of the extras in the body (the flags of GET answers).
    pub extras_length: u8,
    /// 0: raw bytes.
    pub data_type: u8,
    /// The outcome; see [`super::Status`].
    pub status: u16,
    /// Length of extras, key and value together.
    pub total_body_length: u32,
    /// The request's opaque.
    pub opaque: u32,
    /// The item's CAS value, or 0.
    pub cas: u64,
}

impl ResponseHeader {
    /// Reads a header from its 24 bytes (for clients and tests; the server only writes these).
    pub fn parse(bytes: &[u8; HEADER_BYTES]) -> ResponseHeader {
        let request = RequestHeader::parse(bytes);
        ResponseHeader {
            magic: request.magic,
            opcode: request.opcode,
            key_length: request.key_length,
            extras_length: request.extras_length,
            data_type: request.data_type,
            status: request.vbucket,
            total_body_length: request.total_body_length,
            opaque: request.opaque,
            cas: request.cas,
        }
    }

    /// Appends the header's 24 bytes to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        RequestHeader {
            magic: self.magic,
            opcode: self.opcode,
            key_length: self.key_length,
            extras_length: self.extras_length,
            data_type: self.data_type,
            vbucket: self.status,
            total_body_length: self.total_body_length,
            opaque: self.opaque,
            cas: self.cas,
        }
        .encode(out);
    }
}
