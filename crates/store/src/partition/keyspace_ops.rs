//! Key-level ops (DEL, EXISTS, TYPE, EXPIRE family, TTL, memcached touch, RENAME, DUMP, RESTORE)
//! and whole-partition ops (SCAN, KEYS, FLUSHDB, FLUSHALL).

use bytes::Bytes;

use super::strings::set_expiry;
use super::{Partition, Slot, delete_with_tombstone, live, put_checked};
use crate::value::Value;
use crate::{
    EntryImage, ExpireCondition, ExpireTarget, Mutations, NUM_DATABASES, Outcome, Reply, ScanPage,
    StoreError, TimeUnit, ValueType, glob_match, partition_of,
};

/// Redis's rounding of milliseconds to seconds in TTL and EXPIRETIME replies.
fn to_unit(milliseconds: u64, unit: TimeUnit) -> i64 {
    let value = match unit {
        TimeUnit::Milliseconds => milliseconds,
        TimeUnit::Seconds => milliseconds.saturating_add(500) / 1000,
    };
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Whether Redis 7's EXPIRE condition holds; `None` deadlines are "no expiry", i.e. infinite.
fn expire_condition_holds(
    condition: ExpireCondition,
    current: Option<u64>,
    new: Option<u64>,
) -> bool {
    match condition {
        ExpireCondition::Always => true,
        ExpireCondition::IfNoExpiry => current.is_none(),
        ExpireCondition::IfHasExpiry => current.is_some(),
        // A key without expiry has an infinite TTL, which nothing exceeds.
        ExpireCondition::IfGreater => match (current, new) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(current), Some(new)) => new > current,
        },
        ExpireCondition::IfLess => match (current, new) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(current), Some(new)) => new < current,
        },
        ExpireCondition::IfHasExpiryAndLess => {
            current.is_some() && expire_condition_holds(ExpireCondition::IfLess, current, new)
        }
    }
}

/// A full scan of a partition takes at most about this many pages (see [`Partition::scan`]).
pub(super) const MAX_SCAN_PAGES_PER_PARTITION: usize = 16;

impl Partition {
    pub(super) fn delete(
        &mut self,
        db: u8,
        key: &[u8],
        cas_opt: Option<u64>,
        now_ms: u64,
    ) -> Outcome {
        self.run(db, key, now_ms, |shared, slot| {
            let Some(entry) = live(slot) else {
                return (Reply::Integer(0), None);
            };
            if cas_opt.is_some_and(|cas| cas != entry.version.hlc) {
                return (Reply::CasMismatch, None);
            }
            (
                Reply::Integer(1),
                Some(delete_with_tombstone(shared, slot, now_ms).1),
            )
        })
    }

    pub(super) fn exists(&mut self, db: u8, key: &[u8], now_ms: u64) -> Outcome {
        self.run(db, key, now_ms, |_, slot| {
            (Reply::Integer(i64::from(live(slot).is_some())), None)
        })
    }

    pub(super) fn type_of(&mut self, db: u8, key: &[u8], now_ms: u64) -> Outcome {
        self.run(db, key, now_ms, |_, slot| {
            (
                Reply::Type(live(slot).map(|entry| entry.value.value_type())),
                None,
            )
        })
    }

    pub(super) fn expire(
        &mut self,
        db: u8,
        key: &[u8],
        target: ExpireTarget,
        condition: ExpireCondition,
        now_ms: u64,
    ) -> Outcome {
        self.run(db, key, now_ms, |shared, slot| {
            let Some(entry) = live(slot) else {
                return (Reply::Integer(0), None);
            };
            let current = (entry.expire_at_ms != 0).then_some(entry.expire_at_ms);
            let new = match target {
                ExpireTarget::AtMs(deadline_ms) => Some(deadline_ms),
                ExpireTarget::Persist => None,
            };
            if !expire_condition_holds(condition, current, new) {
                return (Reply::Integer(0), None);
            }
            let change = match new {
                Some(deadline_ms) if deadline_ms <= now_ms => {
                    Some(delete_with_tombstone(shared, slot, now_ms).1)
                }
                Some(deadline_ms) => set_expiry(shared, slot, now_ms, deadline_ms),
                // PERSIST on a key without expiry changes nothing and answers 0.
                None if current.is_none() => None,
                None => set_expiry(shared, slot, now_ms, 0),
            };
            (Reply::Integer(i64::from(change.is_some())), change)
        })
    }

    pub(super) fn ttl(
        &mut self,
        db: u8,
        key: &[u8],
        unit: TimeUnit,
        absolute: bool,
        now_ms: u64,
    ) -> Outcome {
        self.run(db, key, now_ms, |_, slot| {
            let reply = match live(slot) {
                None => -2,
                Some(entry) if entry.expire_at_ms == 0 => -1,
                Some(entry) if absolute => to_unit(entry.expire_at_ms, unit),
                Some(entry) => to_unit(entry.expire_at_ms.saturating_sub(now_ms), unit),
            };
            (Reply::Integer(reply), None)
        })
    }

    pub(super) fn touch(
        &mut self,
        db: u8,
        key: &[u8],
        target: ExpireTarget,
        return_value: bool,
        now_ms: u64,
    ) -> Outcome {
        self.run(db, key, now_ms, |shared, slot| {
            let Some(entry) = live(slot) else {
                return (Reply::NotFound, None);
            };
            let value = match (&entry.value, return_value) {
                (Value::String(value), true) => Some(value.clone()),
                (Value::Hash(_), true) => return (Reply::Error(StoreError::WrongType), None),
                (_, false) => None,
            };
            let flags = entry.flags;
            let (cas, change) = match target {
                ExpireTarget::AtMs(deadline_ms) if deadline_ms <= now_ms => {
                    let (version, change) = delete_with_tombstone(shared, slot, now_ms);
                    (version.hlc, Some(change))
                }
                ExpireTarget::AtMs(deadline_ms) => {
                    let change = set_expiry(shared, slot, now_ms, deadline_ms);
                    (
                        // The new version is the one the slot holds after the change.
                        change.map_or(0, |_| {
                            super::held_version(slot).map_or(0, |version| version.hlc)
                        }),
                        change,
                    )
                }
                ExpireTarget::Persist => {
                    let change = set_expiry(shared, slot, now_ms, 0);
                    (
                        // The new version is the one the slot holds after the change.
                        change.map_or(0, |_| {
                            super::held_version(slot).map_or(0, |version| version.hlc)
                        }),
                        change,
                    )
                }
            };
            let reply = match value {
                Some(value) => Reply::Value { value, flags, cas },
                None => Reply::Written { cas },
            };
            (reply, change)
        })
    }

    pub(super) fn rename(
        &mut self,
        db: u8,
        from: &[u8],
        to: &[u8],
        only_if_target_absent: bool,
        now_ms: u64,
    ) -> Outcome {
        let num_partitions = self.shared.config.num_partitions;
        if partition_of(from, num_partitions) != self.index
            || partition_of(to, num_partitions) != self.index
        {
            return Outcome::error(StoreError::KeysInDifferentPartitions);
        }
        // The source's state, read without changing anything yet.
        let Some(source) = self.keyspace.peek(db, from, now_ms, |entry| entry.cloned()) else {
            return Outcome::error(StoreError::NoSuchKey);
        };
        let done = || {
            Outcome::reply(if only_if_target_absent {
                Reply::Integer(1)
            } else {
                Reply::Ok
            })
        };
        if from == to {
            return if only_if_target_absent {
                Outcome::reply(Reply::Integer(0))
            } else {
                done()
            };
        }
        if only_if_target_absent && self.keyspace.peek(db, to, now_ms, |entry| entry.is_some()) {
            return Outcome::reply(Reply::Integer(0));
        }
        // The target takes the value, expiry and flags; the source becomes a tombstone. The Put
        // comes first so that a backup that received only the first mutation has lost nothing.
        let target_outcome = self.run(db, to, now_ms, |shared, slot| {
            match put_checked(
                shared,
                to.len(),
                slot,
                now_ms,
                source.value,
                source.expire_at_ms,
                source.flags,
            ) {
                Ok((_, change)) => (Reply::Ok, Some(change)),
                Err(error) => (Reply::Error(error), None),
            }
        });
        if let Reply::Error(_) = target_outcome.reply {
            return target_outcome;
        }
        let source_outcome = self.run(db, from, now_ms, |shared, slot| {
            (
                Reply::Ok,
                Some(delete_with_tombstone(shared, slot, now_ms).1),
            )
        });
        let mut outcome = done();
        outcome.mutations = target_outcome
            .mutations
            .into_iter()
            .chain(source_outcome.mutations)
            .collect();
        outcome
    }

    pub(super) fn dump(&mut self, db: u8, key: &[u8], now_ms: u64) -> Outcome {
        self.run(db, key, now_ms, |_, slot| {
            let reply =
                live(slot).map_or(Reply::Nil, |entry| Reply::Image(Box::new(entry.image())));
            (reply, None)
        })
    }

    pub(super) fn restore(
        &mut self,
        db: u8,
        key: &[u8],
        image: EntryImage,
        replace: bool,
        now_ms: u64,
    ) -> Outcome {
        let key_len = key.len();
        self.run(db, key, now_ms, |shared, slot| {
            let exists = live(slot).is_some();
            if exists && !replace {
                return (Reply::Error(StoreError::TargetKeyExists), None);
            }
            if image.expire_at_ms != 0 && image.expire_at_ms <= now_ms {
                // Redis RESTORE ABSTTL with a past deadline: nothing is stored, and a replaced key
                // is deleted.
                let change = exists.then(|| delete_with_tombstone(shared, slot, now_ms).1);
                return (Reply::Ok, change);
            }
            let (max_value_bytes, max_hash_fields) =
                (shared.config.max_value_bytes, shared.config.max_hash_fields);
            let refusal = match &image.value {
                crate::ValueImage::String(value) if value.len() > max_value_bytes => {
                    Some(StoreError::ValueTooLarge { max_value_bytes })
                }
                crate::ValueImage::Hash(pairs) if pairs.len() > max_hash_fields => {
                    Some(StoreError::TooManyHashFields { max_hash_fields })
                }
                crate::ValueImage::Hash(pairs)
                    if pairs
                        .iter()
                        .map(|(field, value)| field.len() + value.len())
                        .sum::<usize>()
                        > max_value_bytes =>
                {
                    Some(StoreError::ValueTooLarge { max_value_bytes })
                }
                _ => None,
            };
            if let Some(refusal) = refusal {
                return (Reply::Error(refusal), None);
            }
            let value = Value::from_image(&image.value);
            if matches!(&value, Value::Hash(hash) if hash.len() == 0) {
                // An empty hash is no key in Redis; restoring one stores nothing.
                let change = exists.then(|| delete_with_tombstone(shared, slot, now_ms).1);
                return (Reply::Ok, change);
            }
            match put_checked(
                shared,
                key_len,
                slot,
                now_ms,
                value,
                image.expire_at_ms,
                image.flags,
            ) {
                Ok((_, change)) => (Reply::Ok, Some(change)),
                Err(error) => (Reply::Error(error), None),
            }
        })
    }

    /// One SCAN page of database `db`: keys whose position (`scan_position_of`) is at least
    /// `start_position`, in ascending position order, visiting about `count` slots.
    ///
    /// A page ends at a position boundary (it may exceed `count` so that keys of equal position are
    /// never split across pages), so every key present from the first call to the last is
    /// returned at least once, whichever node holds the partition: positions depend on the key
    /// alone. Like Redis, `count` bounds the work (tombstones and filtered keys count as
    /// visited), so a page may hold fewer keys, even none, before the end. Whatever `count`, a
    /// page visits at least a sixteenth (`MAX_SCAN_PAGES_PER_PARTITION`) of the partition's
    /// positions: each page walks all of them (the index is a hash table), so without that floor
    /// a full scan with a small `count` would cost time quadratic in the partition's size.
    /// `next_position` is `None` when the database is done.
    pub fn scan(
        &self,
        db: u8,
        start_position: u64,
        count: usize,
        pattern: Option<&[u8]>,
        type_filter: Option<ValueType>,
        now_ms: u64,
    ) -> ScanPage {
        // Redis treats a lone `*` as no pattern at all, so it lists the empty key too, which
        // `*` alone does not match (`glob_match`).
        let pattern = pattern.filter(|pattern| *pattern != b"*");
        let mut keys = Vec::new();
        let Some(buckets) = self.keyspace.dbs.get(usize::from(db)) else {
            return ScanPage {
                keys,
                next_position: None,
            };
        };
        let count = count
            .max(1)
            .max(buckets.len() / MAX_SCAN_PAGES_PER_PARTITION);
        let mut num_visited = 0;
        for (position, bucket) in
            super::buckets::ordered_from(buckets, start_position, count.saturating_add(1))
        {
            if num_visited >= count {
                return ScanPage {
                    keys,
                    next_position: Some(position),
                };
            }
            let mut bucket_keys: Vec<&Bytes> = Vec::new();
            for key_slot in bucket.slots() {
                num_visited += 1;
                let Slot::Live(entry) = &key_slot.slot else {
                    continue;
                };
                if entry.is_expired(now_ms)
                    || type_filter.is_some_and(|wanted| wanted != entry.value.value_type())
                    || pattern.is_some_and(|pattern| !glob_match(pattern, &key_slot.key))
                {
                    continue;
                }
                bucket_keys.push(&key_slot.key);
            }
            // Keys of one position in key order, so a page is independent of insertion history.
            bucket_keys.sort_unstable();
            keys.extend(bucket_keys.into_iter().cloned());
        }
        ScanPage {
            keys,
            next_position: None,
        }
    }

    pub(super) fn keys(&mut self, db: u8, pattern: &[u8], now_ms: u64) -> Outcome {
        let mut keys = Vec::new();
        let mut start_position = 0;
        loop {
            let page = self.scan(db, start_position, usize::MAX, Some(pattern), None, now_ms);
            keys.extend(page.keys.into_iter().map(Reply::Bulk));
            match page.next_position {
                Some(next_position) => start_position = next_position,
                None => break,
            }
        }
        Outcome::reply(Reply::Array(keys))
    }

    /// Deletes every live key of `db` (or of every database), leaving tombstones and one Delete
    /// mutation per key, so that backups and merges see the flush like any other delete.
    pub(super) fn flush(&mut self, db_opt: Option<u8>, now_ms: u64) -> Outcome {
        let dbs = match db_opt {
            Some(db) => db..db + 1,
            None => 0..NUM_DATABASES,
        };
        let mut mutations = Mutations::new();
        for db in dbs {
            let keys: Vec<Bytes> = self.keyspace.dbs[usize::from(db)]
                .values()
                .flat_map(|bucket| bucket.slots())
                .filter(|key_slot| matches!(key_slot.slot, Slot::Live(_)))
                .map(|key_slot| key_slot.key.clone())
                .collect();
            for key in keys {
                let outcome = self.run(db, &key, now_ms, |shared, slot| {
                    let change = live(slot)
                        .is_some()
                        .then(|| delete_with_tombstone(shared, slot, now_ms).1);
                    (Reply::Ok, change)
                });
                for mutation in outcome.mutations {
                    mutations.push(mutation);
                }
            }
        }
        Outcome {
            reply: Reply::Ok,
            mutations,
        }
    }
}
