//! The index of a partition's keys in one database: a hash table keyed by SCAN position.
//!
//! A point lookup (every GET, SET, replicated write) is one probe of a table whose slot holds the
//! key's bucket: on a node holding more sessions than the cache, that is two or three cache misses
//! where the B-tree it replaced took five or six (two per node level, then the bucket). Measured
//! with `perf` under `redis-benchmark -P 16` GETs on 100 000 keys: the lookup was a quarter of
//! scd's CPU.
//!
//! The position order that SCAN, KEYS and snapshot export need is made when asked for. A SCAN
//! page ([`ordered_from`]) walks the partition's positions and partially sorts them: O(n) in the
//! keys of one partition per page, where keys are spread over `num_partitions`, so n is small,
//! and SCAN is rare next to point lookups; a page takes at least a sixteenth of the partition, so
//! a full scan stays linear (`Partition::scan`). A snapshot export lists and sorts a database's
//! positions once ([`positions_descending`]) and then takes them chunk by chunk.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::Bucket;

/// The buckets of one database by SCAN position.
pub(super) type Buckets = HashMap<u64, Bucket, BuildHasherDefault<PositionHasher>>;

/// Hashes a SCAN position, which is already the top 48 bits of a key's xxh3: one multiplication
/// spreads it over all 64 bits, so the table's control bytes (taken from the top bits) and its
/// slot index (taken from the low bits) both vary.
#[derive(Default, Clone, Copy)]
pub(super) struct PositionHasher(u64);

/// Fibonacci hashing's multiplier: 2^64 divided by the golden ratio, odd.
const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for PositionHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, position: u64) {
        self.0 = (self.0 ^ position).wrapping_mul(MULTIPLIER);
    }

    /// Only `u64` positions are hashed; other input is folded in eight bytes at a time, so that
    /// the hasher stays correct if it is ever given some.
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0_u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
}

/// The buckets at positions from `start` on, in position order, at most `limit` of them.
pub(super) fn ordered_from(buckets: &Buckets, start: u64, limit: usize) -> Vec<(u64, &Bucket)> {
    let mut found: Vec<(u64, &Bucket)> = buckets
        .iter()
        .filter(|(position, _)| **position >= start)
        .map(|(position, bucket)| (*position, bucket))
        .collect();
    if found.len() > limit {
        found.select_nth_unstable_by_key(limit, |(position, _)| *position);
        found.truncate(limit);
    }
    found.sort_unstable_by_key(|(position, _)| *position);
    found
}

/// Every position of `buckets`, the greatest first, so that popping from the end walks them in
/// order.
pub(super) fn positions_descending(buckets: &Buckets) -> Vec<u64> {
    let mut positions: Vec<u64> = buckets.keys().copied().collect();
    positions.sort_unstable_by(|a, b| b.cmp(a));
    positions
}

/// Gives memory back after many removals: a table holding under a quarter of its capacity is
/// shrunk to twice its length, so a burst of expiries does not keep its peak size for good, and
/// the next inserts do not at once grow it again.
pub(super) fn shrink_if_sparse(buckets: &mut Buckets) {
    const MIN_CAPACITY: usize = 64;
    if buckets.capacity() > MIN_CAPACITY && buckets.len() * 4 < buckets.capacity() {
        buckets.shrink_to(buckets.len() * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Version;
    use crate::partition::{KeySlot, Slot};

    fn bucket(position: u64) -> Bucket {
        Bucket::One(KeySlot {
            key: bytes::Bytes::from(position.to_string()),
            slot: Slot::Tombstone {
                version: Version { hlc: 1, node: 1 },
                purge_at_ms: 0,
            },
        })
    }

    fn table(positions: &[u64]) -> Buckets {
        positions
            .iter()
            .map(|&position| (position, bucket(position)))
            .collect()
    }

    fn positions(found: &[(u64, &Bucket)]) -> Vec<u64> {
        found.iter().map(|(position, _)| *position).collect()
    }

    #[test]
    fn ordered_from_returns_the_first_positions_at_or_after_start_in_order() {
        let buckets = table(&[90, 5, 40, 17, 1 << 47, 41, 0]);
        assert_eq!(
            positions(&ordered_from(&buckets, 0, usize::MAX)),
            vec![0, 5, 17, 40, 41, 90, 1 << 47]
        );
        assert_eq!(positions(&ordered_from(&buckets, 17, 3)), vec![17, 40, 41]);
        assert_eq!(positions(&ordered_from(&buckets, 18, 1)), vec![40]);
        assert_eq!(positions(&ordered_from(&buckets, 91, 10)), vec![1 << 47]);
        assert!(ordered_from(&buckets, (1 << 47) + 1, 10).is_empty());
        assert!(ordered_from(&buckets, 0, 0).is_empty());
    }

    #[test]
    fn a_sparse_table_shrinks_and_a_full_one_does_not() {
        let mut buckets = table(&(0..4096).collect::<Vec<u64>>());
        let full_capacity = buckets.capacity();
        shrink_if_sparse(&mut buckets);
        assert_eq!(buckets.capacity(), full_capacity);
        buckets.retain(|position, _| *position < 100);
        shrink_if_sparse(&mut buckets);
        assert!(
            buckets.capacity() < full_capacity / 8,
            "capacity {} after shrinking from {full_capacity}",
            buckets.capacity()
        );
        assert_eq!(buckets.len(), 100);
        assert!((0..100).all(|position| buckets.contains_key(&position)));
    }

    #[test]
    fn positions_that_differ_only_in_low_bits_hash_apart_in_the_top_bits() {
        let top_bits = |position: u64| {
            let mut hasher = PositionHasher::default();
            hasher.write_u64(position);
            hasher.finish() >> 57
        };
        let distinct: std::collections::HashSet<u64> = (0..64).map(top_bits).collect();
        assert!(
            distinct.len() > 32,
            "only {} distinct control bytes",
            distinct.len()
        );
    }
}
