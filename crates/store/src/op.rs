//! `Op`, `Reply` and `Outcome`: the protocol-neutral, one-key-per-operation interface of a partition.
//!
//! The RESP and memcached front ends translate commands into `Op`s (splitting multi-key commands
//! into one op per key), a relay serializes them to the partition's primary, and the replies come
//! back as `Reply`s the front ends turn into each protocol's exact answer.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{EntryImage, LockHolder, LockMode, Mutation, SmallList, StoreError, ValueType};

/// One operation on one key of one partition (or, for the keyspace ops, on a whole partition).
///
/// Deadlines are absolute wall-clock milliseconds: the front end converts EX/PX/EXAT/memcached
/// exptime, so that a relayed op means the same thing on every node. A key is live while
/// `now_ms <= expire_at_ms` (Redis's rule); a write whose deadline is `<= now_ms` deletes the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// GET: `Bulk` or `Nil`; `WrongType` for a hash.
    Get {
        /// The key.
        key: Bytes,
    },
    /// memcached get/gets: `Value { value, flags, cas }` or `Nil`.
    GetWithMeta {
        /// The key.
        key: Bytes,
    },
    /// SET (Redis, with NX/XX/GET/EX/PX/EXAT/PXAT/KEEPTTL) and memcached set/add/replace/cas.
    ///
    /// Replies `Written { cas }` on success (`Ok` when the deadline is already past, which leaves
    /// the key absent); `ConditionNotMet` when NX/XX failed; `NotFound` or
    /// `CasMismatch` for a failed CAS. With `return_old` the reply is instead the old value
    /// (`Bulk` or `Nil`, whether or not the write happened), or `WrongType` if the old value is a
    /// hash (and then nothing is written).
    Set {
        /// The key.
        key: Bytes,
        /// The new value (copied when stored).
        value: Bytes,
        /// What happens to the key's time to live.
        expiry: SetExpiry,
        /// When the write happens.
        condition: SetCondition,
        /// SET ... GET: reply the previous value.
        return_old: bool,
        /// memcached client flags, stored with the value; 0 from Redis.
        flags: u32,
    },
    /// GETEX: the value (`Bulk`/`Nil`), changing the expiry; a deadline `<= now` deletes the key
    /// after reading it.
    GetEx {
        /// The key.
        key: Bytes,
        /// The new expiry.
        expiry: ExpireTarget,
    },
    /// GETDEL: the value (`Bulk`/`Nil`), deleting the key.
    GetDel {
        /// The key.
        key: Bytes,
    },
    /// Redis APPEND: creates the key if absent; `Integer(new length)`.
    Append {
        /// The key.
        key: Bytes,
        /// Bytes to append.
        value: Bytes,
    },
    /// memcached append/prepend: `Written { cas }`, `NotFound` if absent (never creates), or
    /// `CasMismatch`. Keeps flags and expiry.
    Concat {
        /// The key.
        key: Bytes,
        /// Bytes to add.
        value: Bytes,
        /// Which end to add them to.
        side: ConcatSide,
        /// memcached binary CAS: only if the current CAS is this one.
        cas_opt: Option<u64>,
    },
    /// STRLEN: `Integer` (0 if absent).
    Strlen {
        /// The key.
        key: Bytes,
    },
    /// INCR/DECR/INCRBY/DECRBY: `Integer(new value)`; a missing key counts as 0. Keeps the TTL.
    IncrBy {
        /// The key.
        key: Bytes,
        /// The increment (the front end negates for DECRBY, refusing `i64::MIN`).
        delta: i64,
    },
    /// memcached incr/decr: unsigned 64-bit, incr wraps, decr floors at 0.
    /// `Counter { value, cas }`, `NotFound`, `CasMismatch`, or `NonNumericValue`.
    Counter {
        /// The key.
        key: Bytes,
        /// The amount.
        delta: u64,
        /// Up or down.
        direction: CounterDirection,
        /// memcached binary CAS: only if the current CAS is this one.
        cas_opt: Option<u64>,
        /// memcached binary: create a missing key with this value instead of `NotFound`.
        initial_opt: Option<CounterInitial>,
    },
    /// DEL/UNLINK and memcached delete: `Integer(1)` if a key was deleted, `Integer(0)` if absent,
    /// `CasMismatch`. Leaves a tombstone.
    Delete {
        /// The key.
        key: Bytes,
        /// memcached binary CAS: only if the current CAS is this one.
        cas_opt: Option<u64>,
    },
    /// phpredis' lock release script (`if get == ARGV[1] then del`): `Integer(1)` if deleted,
    /// else `Integer(0)`; `WrongType` for a hash.
    DeleteIfEquals {
        /// The key.
        key: Bytes,
        /// The value the key must hold.
        value: Bytes,
    },
    /// EXISTS (and Redis TOUCH, which is the same for a store without LRU): `Integer(1|0)`.
    Exists {
        /// The key.
        key: Bytes,
    },
    /// TYPE: `Type(None | Some(String) | Some(Hash))`.
    Type {
        /// The key.
        key: Bytes,
    },
    /// EXPIRE/PEXPIRE/EXPIREAT/PEXPIREAT (with NX/XX/GT/LT) and PERSIST: `Integer(1)` if the expiry
    /// changed (or the key was deleted because the deadline is past), `Integer(0)` otherwise.
    /// For `Persist` the conditions treat "no expiry" as an infinite deadline.
    Expire {
        /// The key.
        key: Bytes,
        /// The new deadline, or none.
        target: ExpireTarget,
        /// Redis 7's NX/XX/GT/LT.
        condition: ExpireCondition,
    },
    /// TTL/PTTL: `Integer` remaining time (seconds rounded like Redis, or ms), -2 missing,
    /// -1 no expiry.
    Ttl {
        /// The key.
        key: Bytes,
        /// Seconds (TTL) or milliseconds (PTTL).
        unit: TimeUnit,
    },
    /// EXPIRETIME/PEXPIRETIME: `Integer` absolute deadline, -2 missing, -1 no expiry.
    ExpireTime {
        /// The key.
        key: Bytes,
        /// Seconds or milliseconds.
        unit: TimeUnit,
    },
    /// memcached touch and gat/gats: sets the expiry. `Written { cas }` (touch) or
    /// `Value { .. }` (gat, `return_value`), `NotFound` if absent. A deadline `<= now` deletes.
    Touch {
        /// The key.
        key: Bytes,
        /// The new deadline, or none (memcached exptime 0).
        target: ExpireTarget,
        /// gat: reply the value with its flags and CAS.
        return_value: bool,
    },
    /// RENAME/RENAMENX within one partition (both keys here; checked, `KeysInDifferentPartitions`
    /// otherwise). `Ok` (RENAME) or `Integer(1|0)` (RENAMENX); `NoSuchKey` if `from` is absent.
    /// Keeps the expiry; `from` leaves a tombstone.
    Rename {
        /// The source key.
        from: Bytes,
        /// The destination key.
        to: Bytes,
        /// RENAMENX: only if `to` does not exist.
        only_if_target_absent: bool,
    },
    /// DUMP: `Image(entry)` or `Nil`. With RESTORE, how a caller renames across partitions.
    Dump {
        /// The key.
        key: Bytes,
    },
    /// RESTORE (with ABSTTL semantics): stores the image under a fresh version. `Ok`;
    /// `TargetKeyExists` without `replace`. A deadline already past stores nothing (and deletes
    /// the existing key when replacing), like Redis.
    Restore {
        /// The key.
        key: Bytes,
        /// The value, expiry and flags to store (its version is ignored).
        image: EntryImage,
        /// REPLACE.
        replace: bool,
    },
    /// HSET/HMSET: `Integer(number of new fields)`. Later pairs win over earlier equal fields.
    HashSet {
        /// The key.
        key: Bytes,
        /// Field/value pairs, at least one.
        pairs: Vec<(Bytes, Bytes)>,
    },
    /// HGET: `Bulk` or `Nil`.
    HashGet {
        /// The key.
        key: Bytes,
        /// The field.
        field: Bytes,
    },
    /// HMGET: `Array` of `Bulk`/`Nil`, one per field.
    HashMultiGet {
        /// The key.
        key: Bytes,
        /// The fields.
        fields: Vec<Bytes>,
    },
    /// HGETALL: `Pairs` (empty for a missing key).
    HashGetAll {
        /// The key.
        key: Bytes,
    },
    /// HDEL: `Integer(number removed)`; removing the last field deletes the key.
    HashDelete {
        /// The key.
        key: Bytes,
        /// The fields.
        fields: Vec<Bytes>,
    },
    /// HEXISTS: `Integer(1|0)`.
    HashExists {
        /// The key.
        key: Bytes,
        /// The field.
        field: Bytes,
    },
    /// HLEN: `Integer`.
    HashLen {
        /// The key.
        key: Bytes,
    },
    /// HKEYS: `Array` of `Bulk`.
    HashKeys {
        /// The key.
        key: Bytes,
    },
    /// HVALS: `Array` of `Bulk`.
    HashValues {
        /// The key.
        key: Bytes,
    },
    /// HINCRBY: `Integer(new value)`; a missing key or field counts as 0.
    HashIncrBy {
        /// The key.
        key: Bytes,
        /// The field.
        field: Bytes,
        /// The increment.
        delta: i64,
    },
    /// One SCAN page of this partition's `db`: `Scan(ScanPage)`. See `Partition::scan`.
    Scan {
        /// Where to start (0 for the first page, else the previous page's `next_position`).
        start_position: u64,
        /// How many keys to visit (a page may hold more, or fewer after filtering).
        count: usize,
        /// MATCH pattern.
        pattern: Option<Bytes>,
        /// TYPE filter.
        type_filter: Option<ValueType>,
    },
    /// KEYS: `Array` of `Bulk`, in SCAN position order.
    Keys {
        /// The glob pattern.
        pattern: Bytes,
    },
    /// DBSIZE: `Integer` keys of `db` in this partition (the caller sums partitions).
    DbSize,
    /// FLUSHDB: deletes every key of `db` in this partition (tombstones, one mutation per key). `Ok`.
    FlushDb,
    /// FLUSHALL: FLUSHDB for every database. `Ok`.
    FlushAll,
    /// SCD.LOCK, one attempt: takes the lock of `key` (an entry of `LOCK_DATABASE`, whatever the
    /// op's db) for `lease_ms` from now on the executing primary's clock.
    /// `LockGranted { token, deadline_ms }` when the lock was free (a new token: the entry's
    /// version) or already held by `owner` (the lease is refreshed and the token kept, so writes
    /// guarded by it stay valid); `LockHeld(holder)` when another owner holds it.
    /// `LockOwnerTooLong` beyond `LOCK_OWNER_MAX_BYTES`.
    ///
    /// The lease is a duration, not a deadline like the other ops' expiries: the lease starts
    /// when the primary grants it, however long the request waited in a queue or a relay.
    LockAcquire {
        /// The locked key (its partition is the lock's).
        key: Bytes,
        /// Who asks: the same owner re-acquiring refreshes its own lease.
        owner: Bytes,
        /// Lease or connection-tied.
        mode: LockMode,
        /// The lease, in milliseconds from the grant (0 counts as 1).
        lease_ms: u64,
        /// How long the requester is willing to wait in the primary's queue, in milliseconds
        /// from the primary's receipt; 0 = not at all. The store makes one attempt whatever
        /// this says; the node's lock manager queues the request.
        wait_ms: u64,
    },
    /// SCD.UNLOCK: releases the lock of `key` if it is held with exactly `token`.
    /// `Integer(1)` if released (a tombstone, so the next grant's token is larger), else
    /// `Integer(0)` (free, expired, or held with another token).
    LockRelease {
        /// The locked key.
        key: Bytes,
        /// The token of the grant being released.
        token: u64,
    },
    /// SCD.RENEW: moves the lease deadline of the lock of `key` to `lease_ms` from now if it is
    /// held with exactly `token`. `Integer(1)` if renewed, else `Integer(0)`.
    LockRenew {
        /// The locked key.
        key: Bytes,
        /// The token of the grant being renewed.
        token: u64,
        /// The new lease, in milliseconds from now (0 counts as 1).
        lease_ms: u64,
    },
    /// SCD.LOCKINFO: `LockHeld(holder)` or `Nil` when free.
    LockInspect {
        /// The locked key.
        key: Bytes,
    },
    /// SCD.SET: SET `key` in the op's db to `value` (flags 0) only while the lock of `key` is held
    /// with exactly `token`, checked and written in one step under the partition's lock (the data
    /// key and its lock are in the same partition). `Written { cas }` (`Ok` when the deadline is
    /// already past, which deletes the key); `Fenced` when the lock is free or held with another
    /// token.
    GuardedSet {
        /// The data key, which is also the locked key.
        key: Bytes,
        /// The new value.
        value: Bytes,
        /// `Never`, or `AtMs` (`Keep` keeps the current TTL).
        expiry: SetExpiry,
        /// The fencing token the writer holds.
        token: u64,
    },
}

impl Op {
    /// The key the op addresses (the source for RENAME); `None` for whole-partition ops.
    pub fn key(&self) -> Option<&Bytes> {
        match self {
            Op::Get { key }
            | Op::GetWithMeta { key }
            | Op::Set { key, .. }
            | Op::GetEx { key, .. }
            | Op::GetDel { key }
            | Op::Append { key, .. }
            | Op::Concat { key, .. }
            | Op::Strlen { key }
            | Op::IncrBy { key, .. }
            | Op::Counter { key, .. }
            | Op::Delete { key, .. }
            | Op::DeleteIfEquals { key, .. }
            | Op::Exists { key }
            | Op::Type { key }
            | Op::Expire { key, .. }
            | Op::Ttl { key, .. }
            | Op::ExpireTime { key, .. }
            | Op::Touch { key, .. }
            | Op::Dump { key }
            | Op::Restore { key, .. }
            | Op::HashSet { key, .. }
            | Op::HashGet { key, .. }
            | Op::HashMultiGet { key, .. }
            | Op::HashGetAll { key }
            | Op::HashDelete { key, .. }
            | Op::HashExists { key, .. }
            | Op::HashLen { key }
            | Op::HashKeys { key }
            | Op::HashValues { key }
            | Op::HashIncrBy { key, .. }
            | Op::LockAcquire { key, .. }
            | Op::LockRelease { key, .. }
            | Op::LockRenew { key, .. }
            | Op::LockInspect { key }
            | Op::GuardedSet { key, .. } => Some(key),
            Op::Rename { from, .. } => Some(from),
            Op::Scan { .. } | Op::Keys { .. } | Op::DbSize | Op::FlushDb | Op::FlushAll => None,
        }
    }

    /// Whether the primary must wait for its backups before answering, whatever the write mode:
    /// lock operations, and the compatibility locks (`SET … NX PX`, memcached `add` with an
    /// expiry, phpredis' compare-and-delete release). A lock acknowledged before a backup has it
    /// could be lost by a failover and let a second holder in, and a release lost that way would
    /// keep the session locked until the lock expires; data writes may follow delayed-write,
    /// locks may not. (memcached's `delete` cannot be told from a data delete: it follows the
    /// write mode.)
    pub fn requires_write_through(&self) -> bool {
        matches!(
            self,
            Op::LockAcquire { .. }
                | Op::LockRelease { .. }
                | Op::LockRenew { .. }
                | Op::Set {
                    condition: SetCondition::IfAbsent,
                    expiry: SetExpiry::AtMs(_),
                    ..
                }
                | Op::DeleteIfEquals { .. }
        )
    }

    /// Whether the op reads or changes a lock's state (acquire, release, renew, inspect): the
    /// node's lock manager on the partition's primary sees these, so that it can queue waiters
    /// and wake them on release. `GuardedSet` only reads the lock and is not one of them.
    pub fn is_lock_op(&self) -> bool {
        matches!(
            self,
            Op::LockAcquire { .. }
                | Op::LockRelease { .. }
                | Op::LockRenew { .. }
                | Op::LockInspect { .. }
        )
    }
}

/// What a SET does to the key's time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetExpiry {
    /// No expiry (plain SET clears any TTL; memcached exptime 0).
    Never,
    /// KEEPTTL: keep the current TTL, if any.
    Keep,
    /// Expire at this absolute wall-clock millisecond; `<= now` deletes the key instead.
    AtMs(u64),
}

/// When a SET writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetCondition {
    /// Always (SET, memcached set).
    Always,
    /// NX / memcached add: only if the key is absent.
    IfAbsent,
    /// XX / memcached replace: only if the key is present.
    IfPresent,
    /// memcached cas: only if the key's CAS (its `version.hlc`) is this one.
    IfCasEquals(u64),
}

/// A new expiry for EXPIRE, GETEX and memcached touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpireTarget {
    /// Expire at this absolute wall-clock millisecond; `<= now` deletes the key.
    AtMs(u64),
    /// Remove the expiry (PERSIST, GETEX PERSIST, memcached exptime 0).
    Persist,
}

/// Redis 7's EXPIRE conditions. "No expiry" counts as an infinite deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpireCondition {
    /// Always.
    Always,
    /// NX: only if the key has no expiry.
    IfNoExpiry,
    /// XX: only if the key has an expiry.
    IfHasExpiry,
    /// GT: only if the new deadline is greater than the current one.
    IfGreater,
    /// LT: only if the new deadline is less than the current one.
    IfLess,
    /// XX and LT together: only if the key has an expiry and the new deadline is less. (XX with
    /// GT needs no variant of its own: GT already fails on a key without expiry.)
    IfHasExpiryAndLess,
}

/// Which end memcached append/prepend adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConcatSide {
    /// append: after the current value.
    Append,
    /// prepend: before the current value.
    Prepend,
}

/// memcached incr or decr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CounterDirection {
    /// incr: wraps around at 2^64.
    Increment,
    /// decr: stops at 0.
    Decrement,
}

/// memcached binary incr/decr's "create if missing" values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterInitial {
    /// The value a missing counter is created with (the delta is not applied).
    pub value: u64,
    /// Its expiry; 0 = none.
    pub expire_at_ms: u64,
}

/// Seconds or milliseconds, for TTL and EXPIRETIME replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimeUnit {
    /// TTL, EXPIRETIME.
    Seconds,
    /// PTTL, PEXPIRETIME.
    Milliseconds,
}

/// A protocol-neutral reply; each front end maps it to its protocol's exact answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Redis `+OK`.
    Ok,
    /// A missing value: Redis nil, memcached miss.
    Nil,
    /// A Redis integer.
    Integer(i64),
    /// A Redis bulk string.
    Bulk(Bytes),
    /// A value with its memcached metadata (get/gets/gat).
    Value {
        /// The value.
        value: Bytes,
        /// memcached client flags.
        flags: u32,
        /// The CAS unique (the version's `hlc`, never 0).
        cas: u64,
    },
    /// A write happened (Redis `+OK`, memcached `STORED`/`TOUCHED`); the key's new CAS.
    Written {
        /// The CAS unique after the write.
        cas: u64,
    },
    /// A memcached incr/decr result.
    Counter {
        /// The new value.
        value: u64,
        /// The CAS unique after the write.
        cas: u64,
    },
    /// A Redis array.
    Array(Vec<Reply>),
    /// Field/value pairs (HGETALL): a flat array in RESP2, a map in RESP3.
    Pairs(Vec<(Bytes, Bytes)>),
    /// TYPE's answer: `None` for a missing key (Redis `none`), else the value's type
    /// (`ValueType::name` gives Redis's simple string).
    Type(Option<ValueType>),
    /// A DUMP image.
    Image(Box<EntryImage>),
    /// A SCAN page.
    Scan(ScanPage),
    /// NX/XX (or add/replace) did not hold: Redis nil, memcached `NOT_STORED`.
    ConditionNotMet,
    /// A CAS did not match: memcached `EXISTS`.
    CasMismatch,
    /// The key a conditional write needs is absent: memcached `NOT_FOUND`.
    NotFound,
    /// The op was refused; state unchanged.
    Error(StoreError),
    /// `LockAcquire` took (or refreshed) the lock.
    LockGranted {
        /// The fencing token of the grant.
        token: u64,
        /// The lease deadline, absolute wall-clock milliseconds on the primary's clock.
        deadline_ms: u64,
    },
    /// The lock is held by someone else (`LockAcquire`), or by this holder (`LockInspect`).
    /// Boxed: rare, and it would make every other reply larger.
    LockHeld(Box<LockHolder>),
}

/// One page of a partition's SCAN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanPage {
    /// Keys in ascending position order (ties in key order).
    pub keys: Vec<Bytes>,
    /// Where the next page starts, or `None` when the partition's db is done.
    pub next_position: Option<u64>,
}

/// What executing an op produced: the reply and the state changes to replicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The reply for the client.
    pub reply: Reply,
    /// The changes, in the order a backup must apply them (empty for reads and failed writes).
    pub mutations: Mutations,
}

impl Outcome {
    pub(crate) fn reply(reply: Reply) -> Outcome {
        Outcome {
            reply,
            mutations: Mutations::new(),
        }
    }

    pub(crate) fn error(error: StoreError) -> Outcome {
        Outcome::reply(Reply::Error(error))
    }
}

/// The mutations of one op: zero, one or two inline (every op but the flushes), more on the heap
/// (only FLUSHDB and FLUSHALL).
pub type Mutations = SmallList<Mutation>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Change, ValueImage, Version};

    fn round_trip<T>(value: &T) -> T
    where
        T: Serialize + for<'de> Deserialize<'de>,
    {
        let encoded = postcard::to_stdvec(value).expect("serializable");
        postcard::from_bytes(&encoded).expect("deserializable")
    }

    #[test]
    fn ops_replies_and_mutations_survive_the_relay_encoding() {
        let key = Bytes::from_static(b"sess:1");
        let ops = vec![
            Op::Set {
                key: key.clone(),
                value: Bytes::from_static(b"v"),
                expiry: SetExpiry::AtMs(5),
                condition: SetCondition::IfCasEquals(9),
                return_old: true,
                flags: 3,
            },
            Op::HashSet {
                key: key.clone(),
                pairs: vec![(Bytes::from_static(b"f"), Bytes::new())],
            },
            Op::Scan {
                start_position: 77,
                count: 10,
                pattern: Some(Bytes::from_static(b"s*")),
                type_filter: Some(ValueType::Hash),
            },
            Op::FlushAll,
        ];
        for op in &ops {
            assert_eq!(&round_trip(op), op);
        }
        let image = EntryImage {
            value: ValueImage::Hash(vec![(Bytes::from_static(b"f"), Bytes::from_static(b"v"))]),
            version: Version {
                hlc: 1 << 20,
                node: 2,
            },
            expire_at_ms: 0,
            flags: 0,
        };
        let replies = vec![
            Reply::Type(Some(ValueType::String)),
            Reply::Error(StoreError::OutOfMemory {
                max_memory_bytes: 10,
            }),
            Reply::Array(vec![Reply::Nil, Reply::Integer(-2)]),
            Reply::Image(Box::new(image.clone())),
            Reply::Scan(ScanPage {
                keys: vec![key.clone()],
                next_position: None,
            }),
        ];
        for reply in &replies {
            assert_eq!(&round_trip(reply), reply);
        }
        let mutation = Mutation {
            db: 3,
            key,
            change: Change::Put(image),
        };
        assert_eq!(round_trip(&mutation), mutation);
    }

    #[test]
    fn lock_ops_and_replies_survive_the_relay_encoding() {
        let key = Bytes::from_static(b"sess:1");
        let ops = vec![
            Op::LockAcquire {
                key: key.clone(),
                owner: Bytes::from_static(b"worker-7"),
                mode: crate::LockMode::Session,
                lease_ms: 30_000,
                wait_ms: 5_000,
            },
            Op::LockRelease {
                key: key.clone(),
                token: u64::MAX,
            },
            Op::LockRenew {
                key: key.clone(),
                token: 1,
                lease_ms: 0,
            },
            Op::LockInspect { key: key.clone() },
            Op::GuardedSet {
                key: key.clone(),
                value: Bytes::from_static(b"data"),
                expiry: SetExpiry::AtMs(9),
                token: 77,
            },
        ];
        for op in &ops {
            assert_eq!(&round_trip(op), op);
        }
        let replies = vec![
            Reply::LockGranted {
                token: 1 << 40,
                deadline_ms: 12,
            },
            Reply::LockHeld(Box::new(crate::LockHolder {
                owner: Bytes::from_static(b"w"),
                token: 5,
                deadline_ms: 6,
                mode: crate::LockMode::Lease,
                num_waiters: 3,
            })),
            Reply::Error(StoreError::Fenced {
                token: 5,
                held_token_opt: None,
            }),
            Reply::Error(StoreError::TooManyLockWaiters {
                max_lock_waiters_per_key: 1024,
            }),
        ];
        for reply in &replies {
            assert_eq!(&round_trip(reply), reply);
        }
    }

    #[test]
    fn mutations_hold_two_inline_and_more_on_the_heap_in_order() {
        let mutation = |db| Mutation {
            db,
            key: Bytes::new(),
            change: Change::Delete {
                version: Version { hlc: 1, node: 0 },
            },
        };
        let mut mutations = Mutations::new();
        assert!(mutations.is_empty());
        for db in 0..5 {
            mutations.push(mutation(db));
            assert_eq!(mutations.len(), usize::from(db) + 1);
        }
        let dbs: Vec<u8> = mutations.iter().map(|m| m.db).collect();
        assert_eq!(dbs, vec![0, 1, 2, 3, 4]);
        let owned: Vec<u8> = mutations.into_iter().map(|m| m.db).collect();
        assert_eq!(owned, vec![0, 1, 2, 3, 4]);
    }
}
