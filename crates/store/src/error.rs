//! `StoreError`: every way an operation or a configuration can be refused, with Redis's error lines.

use serde::{Deserialize, Serialize};

/// Why the store refused an operation or a configuration.
///
/// Every variant says whether state changed: an operation that fails never changes the store,
/// so a front end can always answer the error and carry on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum StoreError {
    /// The key holds a value of another type (a hash where a string was expected, or the reverse).
    /// State unchanged.
    #[error("operation against a key holding the wrong kind of value")]
    WrongType,
    /// The stored string (or the increment) is not a base-10 signed 64-bit integer. State unchanged.
    #[error("value is not an integer or out of range")]
    NotAnInteger,
    /// The hash field holds something that is not a base-10 signed 64-bit integer. State unchanged.
    #[error("hash value is not an integer")]
    HashValueNotAnInteger,
    /// The increment would take the integer past `i64::MIN..=i64::MAX`. State unchanged.
    #[error("increment or decrement would overflow")]
    IncrementOverflow,
    /// The memcached counter holds something that is not an unsigned decimal number. State unchanged.
    #[error("cannot increment or decrement non-numeric value")]
    NonNumericValue,
    /// The source key of a RENAME does not exist. State unchanged.
    #[error("no such key")]
    NoSuchKey,
    /// RESTORE without REPLACE found the target key present. State unchanged.
    #[error("target key name already exists")]
    TargetKeyExists,
    /// A two-key operation named keys of different partitions (the caller must split it). State
    /// unchanged.
    #[error("keys in request don't hash to the same partition")]
    KeysInDifferentPartitions,
    /// The write would grow memory past `max_memory_bytes`; nothing is evicted. State unchanged.
    #[error("command not allowed when used memory > 'max-memory' ({max_memory_bytes} bytes)")]
    OutOfMemory {
        /// The configured limit.
        max_memory_bytes: u64,
    },
    /// The value (or the result of APPEND / HSET growth) would exceed `max_value_bytes`.
    /// State unchanged.
    #[error("value is larger than max-value-bytes ({max_value_bytes})")]
    ValueTooLarge {
        /// The configured limit.
        max_value_bytes: usize,
    },
    /// The key is longer than `max_key_bytes`. State unchanged.
    #[error("key is larger than max-key-bytes ({max_key_bytes})")]
    KeyTooLarge {
        /// The configured limit.
        max_key_bytes: usize,
    },
    /// The hash would have more than `max_hash_fields` fields. State unchanged.
    #[error("hash would have more than max-hash-fields ({max_hash_fields}) fields")]
    TooManyHashFields {
        /// The configured limit.
        max_hash_fields: usize,
    },
    /// The database index is not below `NUM_DATABASES`. State unchanged.
    #[error("DB index is out of range")]
    DatabaseOutOfRange,
    /// `StoreConfig` validation failed; no store was built.
    #[error("invalid store configuration: {reason}")]
    InvalidConfig {
        /// What is wrong, in words a person configuring scd can act on.
        reason: String,
    },
    /// Not raised by the store itself: the node could not reach the partition's primary within
    /// its relay deadline (a cluster forming, or more nodes failing than there are backups).
    /// Carried in a `Reply` like the store's own errors so every front end reports it the same
    /// way. The operation may or may not have run.
    #[error("partition {partition} has no reachable primary ({reason})")]
    PartitionUnavailable {
        /// The partition.
        partition: u32,
        /// What the node last saw, in words.
        reason: String,
    },
    /// Not raised by the store itself: a write ran on its partition's primary, but a backup it
    /// had to wait for (write-through) did not acknowledge it within the node's deadline for an
    /// operation. The write is in the primary's store and may or may not survive that
    /// primary's failure; it was not acknowledged.
    #[error(
        "the write ran on the primary of partition {partition} but a backup did not acknowledge \
         it within {deadline_ms} ms; it may be lost if that primary fails"
    )]
    Unconfirmed {
        /// The partition.
        partition: u32,
        /// The deadline, ms.
        deadline_ms: u64,
    },
    /// `GuardedSet` with a token that does not hold the lock of the key: a newer grant exists
    /// (the writer's lease ran out and someone else took the lock), the token was never granted
    /// for this key, or the lock is free. State unchanged.
    #[error("{}", fenced_text(*token, *held_token_opt))]
    Fenced {
        /// The token the writer presented.
        token: u64,
        /// The token the lock is held with now; `None` when it is free.
        held_token_opt: Option<u64>,
    },
    /// A lock owner id longer than `LOCK_OWNER_MAX_BYTES`. State unchanged.
    #[error("lock owner is longer than {max_lock_owner_bytes} bytes")]
    LockOwnerTooLong {
        /// The limit.
        max_lock_owner_bytes: usize,
    },
    /// A lock lease or wait longer than `LOCK_LEASE_MS_MAX` or `LOCK_WAIT_MS_MAX` (only a peer
    /// can send one: `SCD.LOCK` refuses it when it parses). State unchanged.
    #[error("lock {what} of {ms} ms is longer than the maximum of {max_ms} ms")]
    LockTimeTooLong {
        /// "lease" or "wait".
        what: String,
        /// What was asked for.
        ms: u64,
        /// The limit.
        max_ms: u64,
    },
    /// Not raised by the store itself: the primary's queue of waiters for this lock is full.
    /// Nothing was queued and the lock is unchanged.
    #[error("too many waiters for this lock (max-lock-waiters-per-key {max_lock_waiters_per_key})")]
    TooManyLockWaiters {
        /// The limit per key.
        max_lock_waiters_per_key: usize,
    },
    /// Not raised by the store itself: the primary holds as many lock waiters as it may, over
    /// all keys. Nothing was queued and the lock is unchanged.
    #[error("too many lock waiters on this node (max-lock-waiters {max_lock_waiters})")]
    TooManyLockWaitersInTotal {
        /// The limit per node.
        max_lock_waiters: usize,
    },
}

/// What a `Fenced` refusal says: which token holds the lock now, if any, and how it relates to
/// the writer's.
fn fenced_text(token: u64, held_token_opt: Option<u64>) -> String {
    match held_token_opt {
        Some(held) if held > token => {
            format!("token {token} is stale: the lock is held with newer token {held}")
        }
        Some(held) => {
            format!("token {token} was not granted for this lock: it is held with token {held}")
        }
        None => format!("token {token} no longer holds the lock: the lock is free"),
    }
}

impl StoreError {
    /// The error line a Redis client expects, without the leading `-` and trailing CRLF,
    /// e.g. `WRONGTYPE Operation against a key holding the wrong kind of value`.
    ///
    /// The texts are Redis 7's where Redis has the same error, so client libraries that match on
    /// them (WRONGTYPE, OOM, BUSYKEY) keep working.
    pub fn redis_error_line(&self) -> String {
        match self {
            StoreError::WrongType => {
                "WRONGTYPE Operation against a key holding the wrong kind of value".to_string()
            }
            StoreError::NotAnInteger => "ERR value is not an integer or out of range".to_string(),
            StoreError::HashValueNotAnInteger => "ERR hash value is not an integer".to_string(),
            StoreError::IncrementOverflow => {
                "ERR increment or decrement would overflow".to_string()
            }
            StoreError::NonNumericValue => {
                "ERR cannot increment or decrement non-numeric value".to_string()
            }
            StoreError::NoSuchKey => "ERR no such key".to_string(),
            StoreError::TargetKeyExists => "BUSYKEY Target key name already exists.".to_string(),
            StoreError::KeysInDifferentPartitions => {
                "CROSSSLOT Keys in request don't hash to the same slot".to_string()
            }
            StoreError::OutOfMemory { max_memory_bytes } => format!(
                "OOM command not allowed when used memory > 'max-memory' ({max_memory_bytes} bytes)"
            ),
            StoreError::ValueTooLarge { max_value_bytes } => {
                format!("ERR value is larger than max-value-bytes ({max_value_bytes})")
            }
            StoreError::KeyTooLarge { max_key_bytes } => {
                format!("ERR key is larger than max-key-bytes ({max_key_bytes})")
            }
            StoreError::TooManyHashFields { max_hash_fields } => {
                format!("ERR hash would have more than max-hash-fields ({max_hash_fields}) fields")
            }
            StoreError::DatabaseOutOfRange => "ERR DB index is out of range".to_string(),
            StoreError::InvalidConfig { reason } => {
                format!("ERR invalid store configuration: {reason}")
            }
            StoreError::PartitionUnavailable { partition, reason } => format!(
                "TRYAGAIN partition {partition} has no reachable primary ({reason}); retry shortly"
            ),
            StoreError::Unconfirmed { .. } => format!("UNCONFIRMED {self}"),
            StoreError::Fenced { .. } => format!("FENCED {self}"),
            StoreError::LockOwnerTooLong { .. }
            | StoreError::LockTimeTooLong { .. }
            | StoreError::TooManyLockWaiters { .. }
            | StoreError::TooManyLockWaitersInTotal { .. } => format!("ERR {self}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(error: StoreError, expect: &str) {
        assert_eq!(error.redis_error_line(), expect);
    }

    #[test]
    fn error_lines_are_the_ones_redis_clients_match_on() {
        check(
            StoreError::WrongType,
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        );
        check(
            StoreError::NotAnInteger,
            "ERR value is not an integer or out of range",
        );
        check(
            StoreError::HashValueNotAnInteger,
            "ERR hash value is not an integer",
        );
        check(
            StoreError::IncrementOverflow,
            "ERR increment or decrement would overflow",
        );
        check(StoreError::NoSuchKey, "ERR no such key");
        check(
            StoreError::TargetKeyExists,
            "BUSYKEY Target key name already exists.",
        );
        check(
            StoreError::OutOfMemory {
                max_memory_bytes: 1_048_576,
            },
            "OOM command not allowed when used memory > 'max-memory' (1048576 bytes)",
        );
        check(
            StoreError::ValueTooLarge {
                max_value_bytes: 1_048_576,
            },
            "ERR value is larger than max-value-bytes (1048576)",
        );
        check(
            StoreError::TooManyHashFields {
                max_hash_fields: 4096,
            },
            "ERR hash would have more than max-hash-fields (4096) fields",
        );
        check(
            StoreError::NonNumericValue,
            "ERR cannot increment or decrement non-numeric value",
        );
        check(
            StoreError::Unconfirmed {
                partition: 7,
                deadline_ms: 5000,
            },
            "UNCONFIRMED the write ran on the primary of partition 7 but a backup did not \
             acknowledge it within 5000 ms; it may be lost if that primary fails",
        );
    }

    #[test]
    fn lock_refusals_name_the_tokens_and_the_bounds() {
        check(
            StoreError::Fenced {
                token: 5,
                held_token_opt: Some(9),
            },
            "FENCED token 5 is stale: the lock is held with newer token 9",
        );
        check(
            StoreError::Fenced {
                token: 9,
                held_token_opt: Some(5),
            },
            "FENCED token 9 was not granted for this lock: it is held with token 5",
        );
        check(
            StoreError::Fenced {
                token: 5,
                held_token_opt: None,
            },
            "FENCED token 5 no longer holds the lock: the lock is free",
        );
        check(
            StoreError::LockOwnerTooLong {
                max_lock_owner_bytes: 256,
            },
            "ERR lock owner is longer than 256 bytes",
        );
        check(
            StoreError::TooManyLockWaiters {
                max_lock_waiters_per_key: 1024,
            },
            "ERR too many waiters for this lock (max-lock-waiters-per-key 1024)",
        );
        check(
            StoreError::TooManyLockWaitersInTotal {
                max_lock_waiters: 65536,
            },
            "ERR too many lock waiters on this node (max-lock-waiters 65536)",
        );
    }

    #[test]
    fn display_texts_are_lowercase_without_a_trailing_period() {
        let text = StoreError::OutOfMemory {
            max_memory_bytes: 5,
        }
        .to_string();
        assert!(text.starts_with("command not allowed"));
        assert!(!text.ends_with('.'));
    }
}
