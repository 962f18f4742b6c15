//! `Store`: the partitions of a node, each behind its own mutex, and the store-wide counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};

use crate::{
    Hlc, LOCK_DATABASE, NUM_DATABASES, NUM_STORED_DATABASES, Partition, StoreConfig, StoreError,
    partition_of,
};

/// The store-wide counters: sums over partitions, updated by each change, read without locks.
///
/// Relaxed atomics: each counter is a statistic or a limit check, never used to order other
/// memory accesses; the partition mutexes do that.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    memory_used_bytes: AtomicU64,
    /// Per stored database: the client ones, then `LOCK_DATABASE`.
    num_keys_per_db: [AtomicU64; NUM_STORED_DATABASES],
    num_keys_with_expiry_per_db: [AtomicU64; NUM_STORED_DATABASES],
    num_tombstones: AtomicU64,
    num_expired_keys_total: AtomicU64,
}

impl Counters {
    /// Adds a two's-complement delta (a "negative" delta is `x.wrapping_neg()`).
    pub(crate) fn add_memory_bytes(&self, delta: u64) {
        self.memory_used_bytes.fetch_add(delta, Ordering::Relaxed);
    }

    pub(crate) fn add_keys(&self, db_index: usize, delta: u64) {
        self.num_keys_per_db[db_index].fetch_add(delta, Ordering::Relaxed);
    }

    pub(crate) fn add_keys_with_expiry(&self, db_index: usize, delta: u64) {
        self.num_keys_with_expiry_per_db[db_index].fetch_add(delta, Ordering::Relaxed);
    }

    pub(crate) fn add_tombstones(&self, delta: u64) {
        self.num_tombstones.fetch_add(delta, Ordering::Relaxed);
    }

    pub(crate) fn add_expired_keys(&self, count: u64) {
        self.num_expired_keys_total
            .fetch_add(count, Ordering::Relaxed);
    }
}

/// What every partition of a store shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: StoreConfig,
    pub(crate) hlc: Hlc,
    pub(crate) counters: Counters,
}

impl Shared {
    /// Refuses growth by `growth_bytes` when it would take the store past `max_memory_bytes`.
    pub(crate) fn check_growth(&self, growth_bytes: u64) -> Result<(), StoreError> {
        let max_memory_bytes = self.config.max_memory_bytes;
        if growth_bytes == 0 || max_memory_bytes == 0 {
            return Ok(());
        }
        let used = self.counters.memory_used_bytes.load(Ordering::Relaxed);
        if used.saturating_add(growth_bytes) > max_memory_bytes {
            return Err(StoreError::OutOfMemory { max_memory_bytes });
        }
        Ok(())
    }
}

/// Statistics of a store, read from atomics without taking partition locks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Live keys per client database (including expired keys not yet swept); locks are not
    /// keys of any client database and are counted in `num_locks`.
    pub num_keys_per_db: [u64; NUM_DATABASES as usize],
    /// Live keys with an expiry, per database.
    pub num_keys_with_expiry_per_db: [u64; NUM_DATABASES as usize],
    /// Keys removed because they expired (on access or by sweep), since the store was built.
    pub num_expired_keys_total: u64,
    /// Tombstones held.
    pub num_tombstones: u64,
    /// Accounted bytes of entries (locks included), tombstones and index items.
    pub memory_used_bytes: u64,
    /// Held locks (entries of `LOCK_DATABASE`), primary and backup copies.
    pub num_locks: u64,
}

/// A node's partitioned store: `num_partitions` partitions, each behind its own mutex.
#[derive(Debug)]
pub struct Store {
    shared: Arc<Shared>,
    /// One `parking_lot` mutex per partition, not one for the store: ops on different partitions
    /// never wait on each other, and nothing blocks while a guard is held.
    partitions: Box<[Mutex<Partition>]>,
}

impl Store {
    /// Builds an empty store; refuses an invalid configuration.
    pub fn new(config: StoreConfig) -> Result<Store, StoreError> {
        config.validate()?;
        let shared = Arc::new(Shared {
            hlc: Hlc::new(config.node_id),
            config,
            counters: Counters::default(),
        });
        let partitions = (0..shared.config.num_partitions)
            .map(|index| Mutex::new(Partition::new(index, shared.clone())))
            .collect();
        Ok(Store { shared, partitions })
    }

    /// The configuration the store was built with.
    pub fn config(&self) -> &StoreConfig {
        &self.shared.config
    }

    /// Number of partitions.
    pub fn num_partitions(&self) -> u32 {
        self.shared.config.num_partitions
    }

    /// The partition of `key` in this store.
    pub fn partition_of(&self, key: &[u8]) -> u32 {
        partition_of(key, self.num_partitions())
    }

    /// Locks partition `index` (below `num_partitions`).
    ///
    /// # Panics
    /// If `index >= num_partitions`: partition indexes come from `partition_of` or the partition
    /// table, never from a client.
    pub fn partition(&self, index: u32) -> MutexGuard<'_, Partition> {
        self.partitions[index as usize].lock()
    }

    /// The node's hybrid logical clock, shared by all partitions.
    pub fn hlc(&self) -> &Hlc {
        &self.shared.hlc
    }

    /// Accounted memory of the whole store.
    pub fn memory_used_bytes(&self) -> u64 {
        self.shared
            .counters
            .memory_used_bytes
            .load(Ordering::Relaxed)
    }

    /// Live keys of all databases of the whole store, held locks included.
    pub fn num_keys(&self) -> u64 {
        self.shared
            .counters
            .num_keys_per_db
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .sum()
    }

    /// A snapshot of the counters; cheap, takes no partition lock.
    pub fn stats(&self) -> StoreStats {
        let counters = &self.shared.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let client_dbs = |per_db: &[AtomicU64; NUM_STORED_DATABASES]| {
            std::array::from_fn(|db_index| load(&per_db[db_index]))
        };
        StoreStats {
            num_keys_per_db: client_dbs(&counters.num_keys_per_db),
            num_keys_with_expiry_per_db: client_dbs(&counters.num_keys_with_expiry_per_db),
            num_expired_keys_total: load(&counters.num_expired_keys_total),
            num_tombstones: load(&counters.num_tombstones),
            memory_used_bytes: load(&counters.memory_used_bytes),
            num_locks: load(&counters.num_keys_per_db[usize::from(LOCK_DATABASE)]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Op, Reply, SetCondition, SetExpiry};
    use bytes::Bytes;

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}

    #[test]
    fn the_store_is_send_and_sync_and_a_partition_is_send() {
        assert_send_sync::<Store>();
        assert_send::<Partition>();
    }

    #[test]
    fn an_invalid_configuration_builds_no_store() {
        let config = StoreConfig {
            num_partitions: 3,
            ..StoreConfig::default()
        };
        assert!(matches!(
            Store::new(config),
            Err(StoreError::InvalidConfig { .. })
        ));
    }

    #[test]
    fn stats_sum_over_partitions_and_return_to_zero_when_partitions_are_cleared() {
        let store = Store::new(StoreConfig {
            num_partitions: 8,
            ..StoreConfig::default()
        })
        .expect("valid config");
        for index in 0..100u32 {
            let key = Bytes::from(format!("key:{index}"));
            let partition = store.partition_of(&key);
            let expiry = if index % 2 == 0 {
                SetExpiry::AtMs(10_000)
            } else {
                SetExpiry::Never
            };
            let outcome = store.partition(partition).execute(
                (index % 3) as u8,
                Op::Set {
                    key,
                    value: Bytes::from_static(b"v"),
                    expiry,
                    condition: SetCondition::Always,
                    return_old: false,
                    flags: 0,
                },
                1_000,
            );
            assert!(matches!(outcome.reply, Reply::Written { .. }));
        }
        let stats = store.stats();
        assert_eq!(store.num_keys(), 100);
        assert_eq!(stats.num_keys_per_db[..3], [34, 33, 33]);
        assert_eq!(stats.num_keys_with_expiry_per_db.iter().sum::<u64>(), 50);
        let sum_of_partitions: u64 = (0..8).map(|p| store.partition(p).memory_bytes()).sum();
        assert_eq!(store.memory_used_bytes(), sum_of_partitions);
        assert!(sum_of_partitions > 0);
        for index in 0..8 {
            store.partition(index).clear();
        }
        assert_eq!(store.stats(), StoreStats::default());
    }

    #[test]
    fn threads_writing_to_different_partitions_keep_the_counters_exact() {
        let store = std::sync::Arc::new(
            Store::new(StoreConfig {
                num_partitions: 16,
                ..StoreConfig::default()
            })
            .expect("valid config"),
        );
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for index in 0..1_000 {
                        let key = Bytes::from(format!("t{thread}:k{index}"));
                        let partition = store.partition_of(&key);
                        let op = Op::Set {
                            key,
                            value: Bytes::from_static(b"value"),
                            expiry: SetExpiry::Never,
                            condition: SetCondition::Always,
                            return_old: false,
                            flags: 0,
                        };
                        store.partition(partition).execute(0, op, 1_000);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("writer thread panicked");
        }
        assert_eq!(store.num_keys(), 4_000);
        let sum_of_partitions: u64 = (0..16).map(|p| store.partition(p).memory_bytes()).sum();
        assert_eq!(store.memory_used_bytes(), sum_of_partitions);
        // Statistics never take a partition lock, so they can be read while one is held.
        let _guard = store.partition(3);
        assert_eq!(store.stats().num_keys_per_db[0], 4_000);
    }
}
