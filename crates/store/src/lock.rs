//! Session locks as stored entries: a lock on key K is an ordinary entry of K's partition in the
//! internal database `LOCK_DATABASE`, whose value encodes the holder and whose expiry is the
//! lease deadline. Replication, snapshots, merges, expiry and memory accounting then carry locks
//! like any other entry, so a failover neither drops a held lock nor frees it early.
//!
//! The **fencing token** of a grant is the lock entry's `version.hlc` at the grant. Every write of
//! a key gets a version above the one it replaces (entry or tombstone), a backup observes the
//! versions it receives in its clock, and a promoted backup's clock hands out larger ones: tokens
//! grow per key, across releases, expiries and failovers.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// Most bytes of a lock owner id: owner ids are short (a node's run id and a connection number,
/// or a client's own id), and each is stored with its lock and replicated.
pub const LOCK_OWNER_MAX_BYTES: usize = 256;

/// The longest lease a lock may be granted or renewed for, ms (one day). `SCD.LOCK` refuses more
/// when it parses; the store refuses it from any other source (a peer's relay).
pub const LOCK_LEASE_MS_MAX: u64 = 86_400_000;

/// The longest an acquisition may queue for a lock, ms (ten minutes); bounded like the lease.
pub const LOCK_WAIT_MS_MAX: u64 = 600_000;

/// The first byte of an encoded lock value: the layout version, so a later layout can be told
/// apart from this one.
const LOCK_VALUE_FORMAT: u8 = 1;

/// Bytes of an encoded lock value before the owner id: format, mode, token.
const LOCK_VALUE_HEADER_BYTES: usize = 1 + 1 + 8;

/// How a lock's lease ends besides release and expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockMode {
    /// The lease runs until released or until its deadline.
    Lease,
    /// `SESSION`: also released as soon as the client connection that acquired it closes (the
    /// node that holds the connection releases it with the token).
    Session,
}

impl LockMode {
    fn to_byte(self) -> u8 {
        match self {
            LockMode::Lease => 0,
            LockMode::Session => 1,
        }
    }

    fn from_byte(byte: u8) -> Option<LockMode> {
        match byte {
            0 => Some(LockMode::Lease),
            1 => Some(LockMode::Session),
            _ => None,
        }
    }

    /// The word `SCD.LOCKINFO` shows: `lease` or `session`.
    pub fn name(self) -> &'static str {
        match self {
            LockMode::Lease => "lease",
            LockMode::Session => "session",
        }
    }
}

/// Who holds a lock, as `Op::LockAcquire` (when refused) and `Op::LockInspect` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// The holder's owner id.
    pub owner: Bytes,
    /// The fencing token of the holder's grant.
    pub token: u64,
    /// The lease deadline, absolute wall-clock milliseconds on the primary's clock.
    pub deadline_ms: u64,
    /// Lease or connection-tied.
    pub mode: LockMode,
    /// Requests queued for the lock on the partition's primary. The store does not know waiters
    /// and says 0; the node's lock manager fills it in.
    pub num_waiters: u32,
}

/// The holder fields a lock entry's value encodes (the deadline is the entry's expiry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LockValue {
    pub(crate) mode: LockMode,
    pub(crate) token: u64,
    pub(crate) owner: Bytes,
}

impl LockValue {
    /// `format, mode, token (big-endian u64), owner bytes`, in one exact-size allocation.
    pub(crate) fn encode(&self) -> Bytes {
        let mut bytes = BytesMut::with_capacity(LOCK_VALUE_HEADER_BYTES + self.owner.len());
        bytes.put_u8(LOCK_VALUE_FORMAT);
        bytes.put_u8(self.mode.to_byte());
        bytes.put_u64(self.token);
        bytes.put_slice(&self.owner);
        bytes.freeze()
    }

    /// The holder a lock entry's value names; `None` for bytes this layout did not write.
    pub(crate) fn decode(bytes: &Bytes) -> Option<LockValue> {
        if bytes.len() < LOCK_VALUE_HEADER_BYTES || bytes[0] != LOCK_VALUE_FORMAT {
            return None;
        }
        let mode = LockMode::from_byte(bytes[1])?;
        let token = u64::from_be_bytes(bytes[2..10].try_into().ok()?);
        Some(LockValue {
            mode,
            token,
            owner: bytes.slice(LOCK_VALUE_HEADER_BYTES..),
        })
    }

    pub(crate) fn holder(&self, deadline_ms: u64) -> LockHolder {
        LockHolder {
            owner: self.owner.clone(),
            token: self.token,
            deadline_ms,
            mode: self.mode,
            num_waiters: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(value: LockValue, expect_hex: &str) {
        let encoded = value.encode();
        let hex: String = encoded.iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(hex, expect_hex);
        assert_eq!(LockValue::decode(&encoded), Some(value));
    }

    #[test]
    fn lock_values_encode_format_mode_token_and_owner() {
        check(
            LockValue {
                mode: LockMode::Lease,
                token: 0x0102_0304_0506_0708,
                owner: Bytes::from_static(b"w1"),
            },
            // format 1, lease, the token, then the owner "w1".
            "010001020304050607087731",
        );
        check(
            LockValue {
                mode: LockMode::Session,
                token: 1,
                owner: Bytes::new(),
            },
            "01010000000000000001",
        );
    }

    #[test]
    fn bytes_of_another_layout_name_no_holder() {
        for bytes in [
            &b""[..],
            &[1, 0, 0, 0][..],
            &[2, 0, 0, 0, 0, 0, 0, 0, 0, 1][..],
            &[1, 9, 0, 0, 0, 0, 0, 0, 0, 1][..],
        ] {
            assert_eq!(LockValue::decode(&Bytes::copy_from_slice(bytes)), None);
        }
    }
}
