//! Replication support: applying a primary's mutations, and exporting a snapshot in chunks.

use super::{Entry, Partition, Slot, held_version};
use crate::value::Value;
use crate::{Change, Mutation, NUM_STORED_DATABASES};

/// Where a chunked snapshot export stands: the database being exported and the SCAN positions of
/// it still to export.
///
/// Holds no borrow, so the caller can drop the partition lock between chunks. The positions of a
/// database are listed, in order, when the export reaches it (8 bytes per position of one
/// partition), so each chunk costs its own keys, not a walk of the whole partition. Keys written
/// after the cursor was created are the caller's to stream (it registers the new backup under the
/// same lock it creates the cursor with); those among them that the export still meets are
/// exported too, which is harmless because applying is idempotent and version-ordered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExportCursor {
    db: u8,
    /// The positions of `db` not yet exported, the next one last; `None` until `db` is listed.
    pending: Option<Vec<u64>>,
    finished: bool,
}

impl ExportCursor {
    /// A cursor at the start of the partition (database 0, position 0).
    pub fn new() -> ExportCursor {
        ExportCursor::default()
    }

    /// Whether every database (locks included) has been exported.
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

impl Partition {
    /// Applies a replicated or merged mutation if its version is greater than what this partition
    /// holds for the key (entry or tombstone), so a replica never goes backwards (invariant 5).
    /// Returns whether it was applied. Observes the version in the node's clock so that later local
    /// writes exceed it.
    ///
    /// Never refused for memory or size: a backup mirrors its primary. A Delete leaves a tombstone
    /// (kept `tombstone_ttl_ms` from `now_ms`). An expired entry counts as the tombstone of its
    /// version, like everywhere.
    ///
    /// The mutation's value is stored as it is, not copied: its strings must own their
    /// allocations exactly, as those decoded from a peer frame do (`Value::from_owned_image`).
    pub fn apply(&mut self, mutation: Mutation, now_ms: u64) -> bool {
        let Mutation { db, key, change } = mutation;
        if usize::from(db) >= NUM_STORED_DATABASES {
            return false;
        }
        let version = change.version();
        self.shared.hlc.observe(version.hlc);
        let tombstone_ttl_ms = self.shared.config.tombstone_ttl_ms;
        let shared = &*self.shared;
        let (applied, _) = self.keyspace.modify(shared, db, &key, now_ms, |slot| {
            if held_version(slot).is_some_and(|held| version <= held) {
                return (false, None);
            }
            *slot = Some(match change {
                Change::Put(image) => Slot::Live(Entry {
                    value: Value::from_owned_image(image.value),
                    version,
                    expire_at_ms: image.expire_at_ms,
                    flags: image.flags,
                }),
                Change::Delete { version } => Slot::Tombstone {
                    version,
                    purge_at_ms: now_ms.saturating_add(tombstone_ttl_ms),
                },
            });
            (true, None)
        });
        applied
    }

    /// Removes every key and tombstone for which `keep(db, key)` is false, leaving no
    /// tombstone and describing no mutation: for a replica brought up to date in place by a
    /// snapshot, the keys its primary no longer has (their tombstones purged while the replica
    /// was out of step). Returns how many it removed.
    pub fn retain_keys(&mut self, mut keep: impl FnMut(u8, &[u8]) -> bool, now_ms: u64) -> usize {
        let mut doomed: Vec<(u8, bytes::Bytes)> = Vec::new();
        for (db, buckets) in self.keyspace.dbs.iter().enumerate() {
            let db = db as u8;
            for bucket in buckets.values() {
                for key_slot in bucket.slots() {
                    if !keep(db, &key_slot.key) {
                        doomed.push((db, key_slot.key.clone()));
                    }
                }
            }
        }
        let shared = &*self.shared;
        for (db, key) in &doomed {
            self.keyspace.modify(shared, *db, key, now_ms, |slot| {
                *slot = None;
                ((), None)
            });
        }
        doomed.len()
    }

    /// The current state of the next keys after `cursor`, about `max_items` of them (more when keys
    /// share a SCAN position): a Put per live key and a Delete per tombstone, so a backup also
    /// learns of recent deletes. Advances `cursor`; an empty result means the export is finished.
    pub fn export_chunk(&self, cursor: &mut ExportCursor, max_items: usize) -> Vec<Mutation> {
        let max_items = max_items.max(1);
        let mut chunk = Vec::new();
        while !cursor.finished {
            let buckets = &self.keyspace.dbs[usize::from(cursor.db)];
            let pending = cursor
                .pending
                .get_or_insert_with(|| super::buckets::positions_descending(buckets));
            while chunk.len() < max_items {
                let Some(position) = pending.pop() else {
                    break;
                };
                // A position emptied since the listing has nothing left to export.
                let Some(bucket) = buckets.get(&position) else {
                    continue;
                };
                chunk.extend(bucket.slots().iter().map(|key_slot| Mutation {
                    db: cursor.db,
                    key: key_slot.key.clone(),
                    change: match &key_slot.slot {
                        Slot::Live(entry) => Change::Put(entry.image()),
                        Slot::Tombstone { version, .. } => Change::Delete { version: *version },
                    },
                }));
            }
            if !pending.is_empty() {
                return chunk;
            }
            cursor.pending = None;
            if usize::from(cursor.db) + 1 < NUM_STORED_DATABASES {
                cursor.db += 1;
            } else {
                cursor.finished = true;
            }
        }
        chunk
    }
}
