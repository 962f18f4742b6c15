//! `Partition`: one partition's keys in all databases, with expiry, tombstones and accounting.
//!
//! Every change to a key goes through `Keyspace::modify`, which is the one place that keeps the
//! expiry index, the memory accounting and the key counters true; the op files only decide what
//! the new state of a key is.

mod buckets;
mod hashes;
mod keyspace_ops;
mod locks;
mod replication;
mod strings;

use std::collections::{BTreeSet, hash_map};
use std::sync::Arc;

use bytes::Bytes;

use crate::store::Shared;
use crate::value::{HashValue, Value};
use crate::{
    Change, EntryImage, LOCK_DATABASE, LOCK_LEASE_MS_MAX, LOCK_WAIT_MS_MAX, Mutation, Mutations,
    NUM_DATABASES, NUM_STORED_DATABASES, Op, Outcome, Reply, StoreError, Version, scan_position_of,
};
use buckets::{Buckets, shrink_if_sparse};

pub use replication::ExportCursor;

/// Accounted bytes of a key slot (entry or tombstone) beyond its key and value bytes: its share of
/// the index's hash table (an 8-byte position and a bucket of about 100 bytes, at the usual load),
/// and the reference-count headers `Bytes` allocates the first time the key and value copies are
/// shared with a reply or a mutation. `tests/allocations.rs` measures the heap with a counting
/// allocator and checks that the accounting stays within a few percent of it (about 228 bytes
/// measured).
pub const ENTRY_OVERHEAD_BYTES: u64 = 240;

/// Accounted bytes of one hash field beyond the field and value bytes: the pair of `Bytes`
/// handles (64 bytes), their reference-count headers, and vector or hash-map slack. Measured
/// like `ENTRY_OVERHEAD_BYTES`.
pub const HASH_FIELD_OVERHEAD_BYTES: u64 = 160;

/// Accounted bytes of an expiry-index item (keys with a TTL, and tombstones): a deadline, a db and
/// a shared handle on the key (48 bytes) in a B-tree node at the usual fill (about 92 bytes
/// measured).
pub const EXPIRY_INDEX_ITEM_OVERHEAD_BYTES: u64 = 96;

/// A live key's state.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) value: Value,
    pub(crate) version: Version,
    /// 0 = no expiry.
    pub(crate) expire_at_ms: u64,
    pub(crate) flags: u32,
}

impl Entry {
    /// Redis's rule: a key is live while `now <= deadline`.
    pub(crate) fn is_expired(&self, now_ms: u64) -> bool {
        self.expire_at_ms != 0 && now_ms > self.expire_at_ms
    }

    pub(crate) fn image(&self) -> EntryImage {
        EntryImage {
            value: self.value.to_image(),
            version: self.version,
            expire_at_ms: self.expire_at_ms,
            flags: self.flags,
        }
    }
}

/// What the partition holds for a key.
#[derive(Debug, Clone)]
pub(crate) enum Slot {
    Live(Entry),
    /// The trace of a delete or an expiry, kept until `purge_at_ms` so that an older write
    /// arriving later (a reordered stream, a merge after a split) cannot resurrect the key.
    Tombstone {
        version: Version,
        purge_at_ms: u64,
    },
}

impl Slot {
    fn version(&self) -> Version {
        match self {
            Slot::Live(entry) => entry.version,
            Slot::Tombstone { version, .. } => *version,
        }
    }
}

/// The live entry in `slot`, if any.
pub(crate) fn live(slot: &Option<Slot>) -> Option<&Entry> {
    match slot {
        Some(Slot::Live(entry)) => Some(entry),
        _ => None,
    }
}

/// The live entry in `slot`, if any, mutably.
pub(crate) fn live_mut(slot: &mut Option<Slot>) -> Option<&mut Entry> {
    match slot {
        Some(Slot::Live(entry)) => Some(entry),
        _ => None,
    }
}

/// The version of whatever `slot` holds (entry or tombstone): a write must exceed it.
pub(crate) fn held_version(slot: &Option<Slot>) -> Option<Version> {
    slot.as_ref().map(Slot::version)
}

/// What a write did to its slot, before it becomes a replication record. Building the record
/// means cloning the value into an image, which promotes the value to a shared buffer that later
/// costs an atomic and two frees to drop; `Keyspace::modify` does it only when the partition
/// records mutations (it has backups to send them to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// The slot now holds a live entry, written or re-versioned: its image is the record.
    Put,
    /// The slot now holds a tombstone of this version.
    Delete {
        /// The tombstone's version.
        version: Version,
    },
}

/// Stores `value` in `slot` under a fresh version, refusing growth past `max_memory_bytes`.
/// Returns the new version and the effect to replicate; on error `slot` is unchanged.
pub(crate) fn put_checked(
    shared: &Shared,
    key_len: usize,
    slot: &mut Option<Slot>,
    now_ms: u64,
    value: Value,
    expire_at_ms: u64,
    flags: u32,
) -> Result<(Version, Effect), StoreError> {
    let version = shared.hlc.now_after(now_ms, held_version(slot));
    let effect = put_versioned(shared, key_len, slot, version, value, expire_at_ms, flags)?;
    Ok((version, effect))
}

/// Stores `value` in `slot` under `version` (the caller took it from the clock, above the slot's
/// version: a lock's value names its own version), refusing growth past `max_memory_bytes`.
/// Returns the effect to replicate; on error `slot` is unchanged.
pub(crate) fn put_versioned(
    shared: &Shared,
    key_len: usize,
    slot: &mut Option<Slot>,
    version: Version,
    value: Value,
    expire_at_ms: u64,
    flags: u32,
) -> Result<Effect, StoreError> {
    debug_assert!(held_version(slot).is_none_or(|held| version > held));
    let new_slot = Slot::Live(Entry {
        value,
        version,
        expire_at_ms,
        flags,
    });
    Partition::check_growth(
        shared,
        slot_cost_bytes(key_len, slot.as_ref()),
        slot_cost_bytes(key_len, Some(&new_slot)),
    )?;
    *slot = Some(new_slot);
    Ok(Effect::Put)
}

/// Gives the live entry in `slot` a fresh version after an in-place change (the caller checked
/// limits) and returns the change to replicate.
pub(crate) fn touch_version(
    shared: &Shared,
    slot: &mut Option<Slot>,
    now_ms: u64,
) -> Option<(Version, Effect)> {
    let version = shared.hlc.now_after(now_ms, held_version(slot));
    let entry = live_mut(slot)?;
    entry.version = version;
    Some((version, Effect::Put))
}

/// Deletes whatever `slot` holds, leaving a tombstone so that an older write arriving later
/// cannot resurrect the key. Deletes are never refused for memory.
pub(crate) fn delete_with_tombstone(
    shared: &Shared,
    slot: &mut Option<Slot>,
    now_ms: u64,
) -> (Version, Effect) {
    let version = shared.hlc.now_after(now_ms, held_version(slot));
    *slot = Some(Slot::Tombstone {
        version,
        purge_at_ms: now_ms.saturating_add(shared.config.tombstone_ttl_ms),
    });
    (version, Effect::Delete { version })
}

/// What an expired entry becomes: a tombstone of its version, so that an older write of the key
/// arriving later (a merge after a network split) cannot bring it back (invariant 5). Every
/// replica expires the entry by the same deadline into the same tombstone, kept
/// `tombstone_ttl_ms` past that deadline (a replica that receives it as a `Delete` keeps it
/// `tombstone_ttl_ms` from then).
fn expiry_tombstone(shared: &Shared, entry: &Entry) -> Slot {
    Slot::Tombstone {
        version: entry.version,
        purge_at_ms: entry
            .expire_at_ms
            .saturating_add(shared.config.tombstone_ttl_ms),
    }
}

#[derive(Debug)]
struct KeySlot {
    key: Bytes,
    slot: Slot,
}

/// The keys sharing one 48-bit SCAN position: almost always one, so no vector is allocated then.
#[derive(Debug)]
enum Bucket {
    One(KeySlot),
    Many(Vec<KeySlot>),
}

impl Bucket {
    fn slots(&self) -> &[KeySlot] {
        match self {
            Bucket::One(key_slot) => std::slice::from_ref(key_slot),
            Bucket::Many(key_slots) => key_slots,
        }
    }

    fn slots_mut(&mut self) -> &mut [KeySlot] {
        match self {
            Bucket::One(key_slot) => std::slice::from_mut(key_slot),
            Bucket::Many(key_slots) => key_slots,
        }
    }

    fn find(&self, key: &[u8]) -> Option<usize> {
        self.slots()
            .iter()
            .position(|key_slot| key_slot.key.as_ref() == key)
    }

    fn push(&mut self, key_slot: KeySlot) {
        *self = match std::mem::replace(self, Bucket::Many(Vec::new())) {
            Bucket::One(first) => Bucket::Many(vec![first, key_slot]),
            Bucket::Many(mut key_slots) => {
                key_slots.push(key_slot);
                Bucket::Many(key_slots)
            }
        };
    }

    /// Removes the key slot at `index`; an emptied bucket is `Many(vec![])`, for the caller to drop.
    fn remove(&mut self, index: usize) -> KeySlot {
        match std::mem::replace(self, Bucket::Many(Vec::new())) {
            Bucket::One(only) => only,
            Bucket::Many(mut key_slots) => {
                let removed = key_slots.remove(index);
                *self = match key_slots.pop() {
                    Some(last) if key_slots.is_empty() => Bucket::One(last),
                    Some(last) => {
                        key_slots.push(last);
                        Bucket::Many(key_slots)
                    }
                    None => Bucket::Many(key_slots),
                };
                removed
            }
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Bucket::Many(key_slots) if key_slots.is_empty())
    }
}

/// What accounting needs to know about a slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Summary {
    cost_bytes: u64,
    live: bool,
    expiring: bool,
    /// A live key's deadline in whole seconds (0 without one), summed for `INFO`'s `avg_ttl`.
    expire_at_s: u64,
    tombstone: bool,
    /// The slot's expiry-index item: a live key's deadline, or a tombstone's purge time.
    index_deadline_ms: Option<u64>,
}

/// Accounted bytes of a value.
pub(crate) fn value_cost_bytes(value: &Value) -> u64 {
    match value {
        Value::String(bytes) => bytes.len() as u64,
        Value::Hash(hash) => hash_cost_bytes(hash),
    }
}

pub(crate) fn hash_cost_bytes(hash: &HashValue) -> u64 {
    hash.payload_bytes() as u64 + hash.len() as u64 * HASH_FIELD_OVERHEAD_BYTES
}

fn summarize(key_len: usize, slot: Option<&Slot>) -> Summary {
    let key_cost_bytes = key_len as u64 + ENTRY_OVERHEAD_BYTES;
    match slot {
        None => Summary::default(),
        Some(Slot::Live(entry)) => {
            let expiring = entry.expire_at_ms != 0;
            Summary {
                cost_bytes: key_cost_bytes
                    + value_cost_bytes(&entry.value)
                    + if expiring {
                        EXPIRY_INDEX_ITEM_OVERHEAD_BYTES
                    } else {
                        0
                    },
                live: true,
                expiring,
                expire_at_s: entry.expire_at_ms / 1000,
                tombstone: false,
                index_deadline_ms: expiring.then_some(entry.expire_at_ms),
            }
        }
        Some(Slot::Tombstone { purge_at_ms, .. }) => Summary {
            cost_bytes: key_cost_bytes + EXPIRY_INDEX_ITEM_OVERHEAD_BYTES,
            live: false,
            expiring: false,
            expire_at_s: 0,
            tombstone: true,
            index_deadline_ms: Some(*purge_at_ms),
        },
    }
}

/// The accounted bytes of `slot` stored under a key of `key_len` bytes.
pub(crate) fn slot_cost_bytes(key_len: usize, slot: Option<&Slot>) -> u64 {
    summarize(key_len, slot).cost_bytes
}

/// The partition's own totals; the store-wide atomics are the sums of these over partitions.
#[derive(Debug, Default, Clone)]
struct Totals {
    memory_bytes: u64,
    /// Per stored database: the client ones, then `LOCK_DATABASE`.
    num_keys_per_db: [u64; NUM_STORED_DATABASES],
    num_keys_with_expiry_per_db: [u64; NUM_STORED_DATABASES],
    /// Per stored database: the sum of the deadlines of the keys with an expiry, in seconds.
    expire_at_s_sum_per_db: [u64; NUM_STORED_DATABASES],
    num_tombstones: u64,
}

/// An expiry-index item: deadline first, so the earliest is `first()`.
type ExpiryItem = (u64, u8, Bytes);

#[derive(Debug, Default)]
struct Keyspace {
    /// Per database, keys by SCAN position in a hash table (`buckets.rs`): SCAN, KEYS and
    /// snapshot export walk them in position order, a node-independent order, made when asked
    /// for. The client databases, then `LOCK_DATABASE`.
    dbs: [Buckets; NUM_STORED_DATABASES],
    /// Every live key with an expiry and every tombstone, by deadline: sweep pops from the front,
    /// O(log n) per removal, never a scan.
    expiry_index: BTreeSet<ExpiryItem>,
    totals: Totals,
    /// Set while nobody would receive the replication records of writes (a partition without
    /// backups): `modify` then builds none.
    skip_mutations: bool,
}

impl Keyspace {
    /// Runs `f` on the state of `key` (`None` = absent; an expired entry is presented as the
    /// tombstone of its version, which is kept unless `f` writes something) and stores what `f`
    /// leaves. `f` returns its result and, for a write, the change to replicate. Keeps the expiry
    /// index, the partition totals and the store-wide counters true.
    fn modify<R>(
        &mut self,
        shared: &Shared,
        db: u8,
        key: &[u8],
        now_ms: u64,
        f: impl FnOnce(&mut Option<Slot>) -> (R, Option<Effect>),
    ) -> (R, Option<Mutation>) {
        let Keyspace {
            dbs,
            expiry_index,
            totals,
            skip_mutations,
        } = self;
        let db_index = usize::from(db);
        let position = scan_position_of(key);
        let mut bucket_entry = dbs[db_index].entry(position);
        let mut existing_index = None;
        let mut slot = None;
        if let hash_map::Entry::Occupied(occupied) = &mut bucket_entry {
            let bucket = occupied.get_mut();
            if let Some(index) = bucket.find(key) {
                existing_index = Some(index);
                // A cheap placeholder while `f` owns the slot; it is always overwritten below.
                let placeholder = Slot::Tombstone {
                    version: Version { hlc: 0, node: 0 },
                    purge_at_ms: 0,
                };
                slot = Some(std::mem::replace(
                    &mut bucket.slots_mut()[index].slot,
                    placeholder,
                ));
            }
        }
        let before = summarize(key.len(), slot.as_ref());
        let expired = matches!(&slot, Some(Slot::Live(entry)) if entry.is_expired(now_ms));
        if expired && let Some(Slot::Live(entry)) = &slot {
            slot = Some(expiry_tombstone(shared, entry));
        }
        let (result, effect) = f(&mut slot);
        let change = if *skip_mutations {
            None
        } else {
            effect.and_then(|effect| match (effect, &slot) {
                (Effect::Put, Some(Slot::Live(entry))) => Some(Change::Put(entry.image())),
                (Effect::Delete { version }, _) => Some(Change::Delete { version }),
                (Effect::Put, _) => {
                    debug_assert!(false, "a put left no live entry in its slot");
                    None
                }
            })
        };
        let after = summarize(key.len(), slot.as_ref());
        let needs_stored_key =
            change.is_some() || before.index_deadline_ms != after.index_deadline_ms;
        let mut stored_key = None;
        match (bucket_entry, existing_index, slot) {
            (hash_map::Entry::Occupied(mut occupied), Some(index), Some(slot)) => {
                let key_slot = &mut occupied.get_mut().slots_mut()[index];
                key_slot.slot = slot;
                if needs_stored_key {
                    stored_key = Some(key_slot.key.clone());
                }
            }
            (hash_map::Entry::Occupied(mut occupied), Some(index), None) => {
                let removed = occupied.get_mut().remove(index);
                if occupied.get().is_empty() {
                    occupied.remove();
                    shrink_if_sparse(&mut dbs[db_index]);
                }
                stored_key = Some(removed.key);
            }
            (hash_map::Entry::Occupied(mut occupied), None, Some(slot)) => {
                let key = Bytes::copy_from_slice(key);
                if needs_stored_key {
                    stored_key = Some(key.clone());
                }
                occupied.get_mut().push(KeySlot { key, slot });
            }
            (hash_map::Entry::Vacant(vacant), _, Some(slot)) => {
                let key = Bytes::copy_from_slice(key);
                if needs_stored_key {
                    stored_key = Some(key.clone());
                }
                vacant.insert(Bucket::One(KeySlot { key, slot }));
            }
            (_, _, None) => {}
        }
        if expired {
            shared.counters.add_expired_keys(1);
        }
        if before != after {
            account(totals, shared, db_index, before, after);
            if before.index_deadline_ms != after.index_deadline_ms
                && let Some(stored_key) = &stored_key
            {
                if let Some(deadline_ms) = before.index_deadline_ms {
                    expiry_index.remove(&(deadline_ms, db, stored_key.clone()));
                }
                if let Some(deadline_ms) = after.index_deadline_ms {
                    expiry_index.insert((deadline_ms, db, stored_key.clone()));
                }
            }
        }
        let mutation = change.map(|change| Mutation {
            db,
            key: stored_key.unwrap_or_else(|| Bytes::copy_from_slice(key)),
            change,
        });
        (result, mutation)
    }

    /// A read-only look at the live entry of `key` (expired entries count as absent).
    fn peek<R>(&self, db: u8, key: &[u8], now_ms: u64, f: impl FnOnce(Option<&Entry>) -> R) -> R {
        let entry = self.slot(db, key).and_then(|slot| match slot {
            Slot::Live(entry) if !entry.is_expired(now_ms) => Some(entry),
            _ => None,
        });
        f(entry)
    }

    /// Looks `key` up and asks for its string value's first cache lines (`crate::prefetch`),
    /// changing nothing: what a GET will copy or a SET will free is then on its way.
    fn prefetch(&self, db: u8, key: &[u8]) {
        if let Some(Slot::Live(Entry {
            value: Value::String(value),
            ..
        })) = self.slot(db, key)
        {
            crate::prefetch::value_lines(value);
        }
    }

    /// What the keyspace holds for `key` in `db`, expired or not (`None` for a database out of
    /// range too).
    fn slot(&self, db: u8, key: &[u8]) -> Option<&Slot> {
        let bucket = self.dbs.get(usize::from(db))?.get(&scan_position_of(key))?;
        bucket.find(key).map(|index| &bucket.slots()[index].slot)
    }
}

fn account(totals: &mut Totals, shared: &Shared, db_index: usize, before: Summary, after: Summary) {
    let counters = &shared.counters;
    if before.cost_bytes != after.cost_bytes {
        totals.memory_bytes = totals.memory_bytes + after.cost_bytes - before.cost_bytes;
        counters.add_memory_bytes(after.cost_bytes.wrapping_sub(before.cost_bytes));
    }
    let delta = |before: bool, after: bool| u64::from(after).wrapping_sub(u64::from(before));
    if before.live != after.live {
        let change = delta(before.live, after.live);
        totals.num_keys_per_db[db_index] = totals.num_keys_per_db[db_index].wrapping_add(change);
        counters.add_keys(db_index, change);
    }
    if before.expiring != after.expiring {
        let change = delta(before.expiring, after.expiring);
        totals.num_keys_with_expiry_per_db[db_index] =
            totals.num_keys_with_expiry_per_db[db_index].wrapping_add(change);
        counters.add_keys_with_expiry(db_index, change);
    }
    if before.expire_at_s != after.expire_at_s {
        let change = after.expire_at_s.wrapping_sub(before.expire_at_s);
        totals.expire_at_s_sum_per_db[db_index] =
            totals.expire_at_s_sum_per_db[db_index].wrapping_add(change);
        counters.add_expire_at_s_sum(db_index, change);
    }
    if before.tombstone != after.tombstone {
        let change = delta(before.tombstone, after.tombstone);
        totals.num_tombstones = totals.num_tombstones.wrapping_add(change);
        counters.add_tombstones(change);
    }
}

/// One partition of the store: all keys of all databases whose hash tag maps to it.
///
/// Not thread-safe by itself: the `Store` keeps each behind a mutex, and the node executes an op
/// and records its replication record while holding it, so the replication order is the
/// execution order.
#[derive(Debug)]
pub struct Partition {
    index: u32,
    shared: Arc<Shared>,
    keyspace: Keyspace,
}

impl Drop for Partition {
    fn drop(&mut self) {
        // Keeps the store-wide counters equal to the sum over live partitions.
        self.clear();
    }
}

impl Partition {
    pub(crate) fn new(index: u32, shared: Arc<Shared>) -> Partition {
        Partition {
            index,
            shared,
            keyspace: Keyspace::default(),
        }
    }

    /// This partition's index in the store.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Live keys in all databases, held locks included (including expired keys not yet swept,
    /// like Redis's DBSIZE).
    pub fn num_keys(&self) -> u64 {
        self.keyspace.totals.num_keys_per_db.iter().sum()
    }

    /// Held locks (entries of `LOCK_DATABASE`, including expired ones not yet swept).
    pub fn num_locks(&self) -> u64 {
        self.num_keys_in_db(LOCK_DATABASE)
    }

    /// Live keys of one database (`LOCK_DATABASE`: locks).
    pub fn num_keys_in_db(&self, db: u8) -> u64 {
        self.keyspace
            .totals
            .num_keys_per_db
            .get(usize::from(db))
            .copied()
            .unwrap_or(0)
    }

    /// Tombstones held.
    pub fn num_tombstones(&self) -> u64 {
        self.keyspace.totals.num_tombstones
    }

    /// Accounted bytes of this partition's entries, tombstones and index items.
    pub fn memory_bytes(&self) -> u64 {
        self.keyspace.totals.memory_bytes
    }

    /// Starts loading into the cache what an op on `key` in `db` will read, changing nothing:
    /// the table slot, the key and the first lines of a string value. A hint for a batch of
    /// pipelined requests, whose lookups' cache misses then overlap (`Store::prefetch`).
    pub fn prefetch(&self, db: u8, key: &[u8]) {
        self.keyspace.prefetch(db, key);
    }

    /// Executes `op` on database `db` at wall-clock `now_ms`; see `Op` for each op's replies.
    ///
    /// A refused op (`Reply::Error`) changed nothing and has no mutations.
    pub fn execute(&mut self, db: u8, op: Op, now_ms: u64) -> Outcome {
        if db >= NUM_DATABASES {
            return Outcome::error(StoreError::DatabaseOutOfRange);
        }
        let max_key_bytes = self.shared.config.max_key_bytes;
        let key_too_long = match &op {
            Op::Rename { from, to, .. } => from.len().max(to.len()) > max_key_bytes,
            op => op.key().is_some_and(|key| key.len() > max_key_bytes),
        };
        if key_too_long {
            return Outcome::error(StoreError::KeyTooLarge { max_key_bytes });
        }
        match op {
            Op::Get { key } => self.get(db, &key, now_ms),
            Op::GetWithMeta { key } => self.get_with_meta(db, &key, now_ms),
            Op::Set {
                key,
                value,
                expiry,
                condition,
                return_old,
                flags,
            } => self.set(
                db,
                &key,
                strings::SetArgs {
                    value,
                    expiry,
                    condition,
                    return_old,
                    flags,
                },
                now_ms,
            ),
            Op::GetEx { key, expiry } => self.get_ex(db, &key, expiry, now_ms),
            Op::GetDel { key } => self.get_del(db, &key, now_ms),
            Op::Append { key, value } => self.append(db, &key, &value, now_ms),
            Op::Concat {
                key,
                value,
                side,
                cas_opt,
            } => self.concat(db, &key, &value, side, cas_opt, now_ms),
            Op::Strlen { key } => self.strlen(db, &key, now_ms),
            Op::IncrBy { key, delta } => self.incr_by(db, &key, delta, now_ms),
            Op::Counter {
                key,
                delta,
                direction,
                cas_opt,
                initial_opt,
            } => self.counter(db, &key, delta, direction, cas_opt, initial_opt, now_ms),
            Op::Delete { key, cas_opt } => self.delete(db, &key, cas_opt, now_ms),
            Op::DeleteIfEquals { key, value } => self.delete_if_equals(db, &key, &value, now_ms),
            Op::Exists { key } => self.exists(db, &key, now_ms),
            Op::Type { key } => self.type_of(db, &key, now_ms),
            Op::Expire {
                key,
                target,
                condition,
            } => self.expire(db, &key, target, condition, now_ms),
            Op::Ttl { key, unit } => self.ttl(db, &key, unit, false, now_ms),
            Op::ExpireTime { key, unit } => self.ttl(db, &key, unit, true, now_ms),
            Op::Touch {
                key,
                target,
                return_value,
            } => self.touch(db, &key, target, return_value, now_ms),
            Op::Rename {
                from,
                to,
                only_if_target_absent,
            } => self.rename(db, &from, &to, only_if_target_absent, now_ms),
            Op::Dump { key } => self.dump(db, &key, now_ms),
            Op::Restore {
                key,
                image,
                replace,
            } => self.restore(db, &key, image, replace, now_ms),
            Op::HashSet { key, pairs } => self.hash_set(db, &key, pairs, now_ms),
            Op::HashGet { key, field } => self.hash_get(db, &key, &field, now_ms),
            Op::HashMultiGet { key, fields } => self.hash_multi_get(db, &key, &fields, now_ms),
            Op::HashGetAll { key } => self.hash_get_all(db, &key, now_ms),
            Op::HashDelete { key, fields } => self.hash_delete(db, &key, &fields, now_ms),
            Op::HashExists { key, field } => self.hash_exists(db, &key, &field, now_ms),
            Op::HashLen { key } => self.hash_len(db, &key, now_ms),
            Op::HashKeys { key } => self.hash_keys_or_values(db, &key, true, now_ms),
            Op::HashValues { key } => self.hash_keys_or_values(db, &key, false, now_ms),
            Op::HashIncrBy { key, field, delta } => {
                self.hash_incr_by(db, &key, field, delta, now_ms)
            }
            Op::Scan {
                start_position,
                count,
                pattern,
                type_filter,
            } => Outcome::reply(Reply::Scan(self.scan(
                db,
                start_position,
                count,
                pattern.as_deref(),
                type_filter,
                now_ms,
            ))),
            Op::Keys { pattern } => self.keys(db, &pattern, now_ms),
            Op::DbSize => Outcome::reply(Reply::Integer(self.num_keys_in_db(db) as i64)),
            Op::FlushDb => self.flush(Some(db), now_ms),
            Op::FlushAll => self.flush(None, now_ms),
            Op::LockAcquire {
                key,
                owner,
                mode,
                lease_ms,
                wait_ms,
            } => match lock_time_error("lease", lease_ms, LOCK_LEASE_MS_MAX)
                .or_else(|| lock_time_error("wait", wait_ms, LOCK_WAIT_MS_MAX))
            {
                Some(error) => Outcome::error(error),
                None => self.lock_acquire(&key, owner, mode, lease_ms, now_ms),
            },
            Op::LockRelease { key, token } => self.lock_release(&key, token, now_ms),
            Op::LockRenew {
                key,
                token,
                lease_ms,
            } => match lock_time_error("lease", lease_ms, LOCK_LEASE_MS_MAX) {
                Some(error) => Outcome::error(error),
                None => self.lock_renew(&key, token, lease_ms, now_ms),
            },
            Op::LockInspect { key } => self.lock_inspect(&key, now_ms),
            Op::GuardedSet {
                key,
                value,
                expiry,
                token,
            } => self.guarded_set(db, &key, value, expiry, token, now_ms),
        }
    }

    /// Runs `f` on `key` through `Keyspace::modify` and wraps the result as an `Outcome`.
    fn run(
        &mut self,
        db: u8,
        key: &[u8],
        now_ms: u64,
        f: impl FnOnce(&Shared, &mut Option<Slot>) -> (Reply, Option<Effect>),
    ) -> Outcome {
        let shared = &*self.shared;
        let (reply, mutation) = self
            .keyspace
            .modify(shared, db, key, now_ms, |slot| f(shared, slot));
        let mut mutations = Mutations::new();
        if let Some(mutation) = mutation {
            mutations.push(mutation);
        }
        Outcome { reply, mutations }
    }

    /// Turns at most `budget` expired entries into tombstones and removes old tombstones, earliest
    /// deadline first; returns how many it handled. Bounded work, O(budget · log n): the node
    /// calls it on a timer across partitions, so a million keys expiring at once never cause a
    /// long pause.
    ///
    /// Expiries are not replicated: every replica expires a key by the same deadline, into the
    /// same tombstone.
    pub fn sweep(&mut self, now_ms: u64, budget: usize) -> usize {
        let mut num_removed = 0;
        while num_removed < budget {
            let Some((deadline_ms, db, key)) = self.keyspace.expiry_index.first().cloned() else {
                break;
            };
            if deadline_ms >= now_ms {
                break;
            }
            let shared = &*self.shared;
            self.keyspace.modify(shared, db, &key, now_ms, |slot| {
                // An expired entry arrives here as its tombstone already; a tombstone past its
                // purge time is dropped.
                if let Some(Slot::Tombstone { purge_at_ms, .. }) = slot
                    && *purge_at_ms < now_ms
                {
                    *slot = None;
                }
                ((), None)
            });
            if self
                .keyspace
                .expiry_index
                .remove(&(deadline_ms, db, key.clone()))
            {
                // Unreachable while the index is kept true; dropping the item keeps a broken
                // invariant from turning into a sweep that never advances.
                debug_assert!(false, "expiry index item without a matching slot");
            }
            num_removed += 1;
        }
        num_removed
    }

    /// Whether `execute` describes its writes as `Mutation`s (the default). A primary without
    /// backups turns it off: nobody would receive them, and building them costs a copy of every
    /// written value's handle and its later release. Replies, versions, tombstones and accounting
    /// are the same either way.
    pub fn set_record_mutations(&mut self, record: bool) {
        self.keyspace.skip_mutations = !record;
    }

    /// Removes every key and tombstone of every database, without tombstones or mutations:
    /// for a node that is about to receive a fresh snapshot of this partition.
    pub fn clear(&mut self) {
        let Totals {
            memory_bytes,
            num_keys_per_db,
            num_keys_with_expiry_per_db,
            expire_at_s_sum_per_db,
            num_tombstones,
        } = std::mem::take(&mut self.keyspace.totals);
        let counters = &self.shared.counters;
        counters.add_memory_bytes(memory_bytes.wrapping_neg());
        for db_index in 0..NUM_STORED_DATABASES {
            counters.add_keys(db_index, num_keys_per_db[db_index].wrapping_neg());
            counters.add_keys_with_expiry(
                db_index,
                num_keys_with_expiry_per_db[db_index].wrapping_neg(),
            );
            counters.add_expire_at_s_sum(db_index, expire_at_s_sum_per_db[db_index].wrapping_neg());
        }
        counters.add_tombstones(num_tombstones.wrapping_neg());
        self.keyspace.dbs = Default::default();
        self.keyspace.expiry_index = BTreeSet::new();
    }

    /// Refuses a write that would take accounted memory from `before_bytes` to `after_bytes` for
    /// this key when that grows memory past `max_memory_bytes`.
    fn check_growth(
        shared: &Shared,
        before_bytes: u64,
        after_bytes: u64,
    ) -> Result<(), StoreError> {
        shared.check_growth(after_bytes.saturating_sub(before_bytes))
    }

    /// The sum of the deadlines (whole seconds) of the keys of `db` with an expiry, counted
    /// from the entries, to check the running total against.
    #[cfg(test)]
    fn recompute_expire_at_s_sum(&self, db: u8) -> u64 {
        self.keyspace.dbs[usize::from(db)]
            .values()
            .flat_map(|bucket| bucket.slots())
            .map(|key_slot| summarize(0, Some(&key_slot.slot)).expire_at_s)
            .sum()
    }

    /// Recomputes the accounted memory from scratch; tests compare it with the running total.
    #[cfg(test)]
    fn recompute_memory_bytes(&self) -> u64 {
        let slots: u64 = self
            .keyspace
            .dbs
            .iter()
            .flat_map(|db| db.values())
            .flat_map(|bucket| bucket.slots())
            .map(|key_slot| slot_cost_bytes(key_slot.key.len(), Some(&key_slot.slot)))
            .sum();
        let index_items = self.keyspace.expiry_index.len() as u64;
        let slots_with_index_item: u64 = self
            .keyspace
            .dbs
            .iter()
            .flat_map(|db| db.values())
            .flat_map(|bucket| bucket.slots())
            .filter(|key_slot| {
                summarize(0, Some(&key_slot.slot))
                    .index_deadline_ms
                    .is_some()
            })
            .count() as u64;
        assert_eq!(
            index_items, slots_with_index_item,
            "expiry index out of step"
        );
        slots
    }
}

/// The error for a lock lease or wait of `ms` beyond `max_ms`, if it is.
fn lock_time_error(what: &str, ms: u64, max_ms: u64) -> Option<StoreError> {
    (ms > max_ms).then(|| StoreError::LockTimeTooLong {
        what: what.to_string(),
        ms,
        max_ms,
    })
}

#[cfg(test)]
mod lock_tests;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
