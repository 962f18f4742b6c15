//! The in-memory partitioned session store of scd: values, versions, expiry, replication records;
//! no tokio, no I/O.
//!
//! A `Store` holds `num_partitions` `Partition`s, each behind a mutex. A front end turns a client
//! command into one `Op` per key, finds the key's partition with `partition_of`, and calls
//! `Partition::execute`, which returns the `Reply` and the `Mutation`s (full new states of the
//! keys, versioned by the node's `Hlc`) that replication streams to backups. Backups and merges
//! use `Partition::apply`, which only ever moves a key to a larger version.
//!
//! Locks (`Op::LockAcquire` and friends) are entries of the internal database `LOCK_DATABASE`,
//! so they replicate, expire and fail over like data; see the `lock` module's docs.
//!
//! Time is always passed in (`now_ms`); the crate never reads a clock.

#![deny(missing_docs, unreachable_pub)]

mod config;
mod error;
mod glob;
mod lock;
mod numbers;
mod op;
mod partition;
mod placement;
mod prefetch;
mod small_list;
mod store;
mod value;
mod version;

pub use config::{MAX_NUM_PARTITIONS, StoreConfig};
pub use error::StoreError;
pub use glob::glob_match;
pub use lock::{LOCK_LEASE_MS_MAX, LOCK_OWNER_MAX_BYTES, LOCK_WAIT_MS_MAX, LockHolder, LockMode};
pub use op::{
    ConcatSide, CounterDirection, CounterInitial, ExpireCondition, ExpireTarget, Mutations, Op,
    Outcome, Reply, ScanPage, SetCondition, SetExpiry, TimeUnit,
};
pub use partition::{
    ENTRY_OVERHEAD_BYTES, EXPIRY_INDEX_ITEM_OVERHEAD_BYTES, ExportCursor,
    HASH_FIELD_OVERHEAD_BYTES, Partition,
};
pub use placement::{SCAN_POSITION_SHIFT, hash_tag, partition_of, scan_position_of};
pub use small_list::SmallList;
pub use store::{Store, StoreStats};
pub use value::{Change, EntryImage, Mutation, SMALL_HASH_MAX_FIELDS, ValueImage, ValueType};
pub use version::{HLC_LOGICAL_BITS, HLC_MAX_WALL_MS, Hlc, Version};

/// Number of databases (`SELECT 0..15`); a db index is part of every key's address.
pub const NUM_DATABASES: u8 = 16;

/// The internal database that holds locks: one past the client databases, so SELECT never
/// reaches it, and SCAN, KEYS, DBSIZE, FLUSHDB, FLUSHALL and INFO keyspace (which visit client
/// databases) never show it. Replication, snapshots and merges carry it like any other.
pub const LOCK_DATABASE: u8 = NUM_DATABASES;

/// Databases a partition keeps: the client databases and `LOCK_DATABASE`.
pub(crate) const NUM_STORED_DATABASES: usize = NUM_DATABASES as usize + 1;
