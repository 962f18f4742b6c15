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
    /// Sums of the deadlines (whole seconds) of the keys with an expiry: seconds, not ms, so
    /// that a u64 holds billions of keys' deadlines.
    expire_at_s_sum_per_db: [AtomicU64; NUM_STORED_DATABASES],
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

    pub(crate) fn add_expire_at_s_sum(&self, db_index: usize, delta: u64) {
        self.expire_at_s_sum_per_db[db_index].fetch_add(delta, Ordering::Relaxed);
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
    /// The sum of the deadlines of the keys with an expiry, in whole Unix seconds, per database
    /// (see [`StoreStats::average_ttl_ms`]).
    pub expire_at_s_sum_per_db: [u64; NUM_DATABASES as usize],
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

impl StoreStats {
    /// `INFO keyspace`'s `avg_ttl` of database `db`: the mean time to live in ms of its keys with
    /// an expiry at `now_ms`; 0 when it has none. Exact to a second (deadlines are summed in
    /// seconds), where Redis estimates it from samples; keys past their deadline but not yet
    /// swept pull it down, and it never goes below 0.
    pub fn average_ttl_ms(&self, db: u8, now_ms: u64) -> u64 {
        let db_index = usize::from(db);
        let (Some(&num_keys), Some(&deadline_s_sum)) = (
            self.num_keys_with_expiry_per_db.get(db_index),
            self.expire_at_s_sum_per_db.get(db_index),
        ) else {
            return 0;
        };
        if num_keys == 0 {
            return 0;
        }
        // The two counters are read apart, so a concurrent write may pair a sum with a count
        // one key off: a momentary error of one key's deadline, never a crash.
        let mean_deadline_ms = u128::from(deadline_s_sum) * 1000 / u128::from(num_keys);
        u64::try_from(mean_deadline_ms.saturating_sub(u128::from(now_ms))).unwrap_or(u64::MAX)
    }
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

    /// Starts loading into the cache what an op on `key` in `db` will read (`Partition::prefetch`),
    /// unless `partition` (the key's) is locked by someone else or out of range: a hint, never
    /// a wait. Called for each request of a pipelined batch before the batch runs, so that the
    /// batch's cache misses are taken together instead of stalling one request after the other.
    pub fn prefetch(&self, partition: u32, db: u8, key: &[u8]) {
        debug_assert!(
            partition >= self.num_partitions() || partition == self.partition_of(key),
            "the partition of the key"
        );
        if let Some(partition) = self
            .partitions
            .get(partition as usize)
            .and_then(Mutex::try_lock)
        {
            partition.prefetch(db, key);
        }
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
            expire_at_s_sum_per_db: client_dbs(&counters.expire_at_s_sum_per_db),
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

    /// Runs `op` on `key` in database 0 of `store` at `now_ms`.
    fn execute(store: &Store, key: &str, op: impl FnOnce(Bytes) -> Op, now_ms: u64) -> Reply {
        let key = Bytes::from(key.to_owned());
        let partition = store.partition_of(&key);
        store.partition(partition).execute(0, op(key), now_ms).reply
    }

    fn set(key: Bytes, expiry: SetExpiry) -> Op {
        Op::Set {
            key,
            value: Bytes::from_static(b"v"),
            expiry,
            condition: SetCondition::Always,
            return_old: false,
            flags: 0,
        }
    }

    fn expire(key: Bytes, target: crate::ExpireTarget) -> Op {
        Op::Expire {
            key,
            target,
            condition: crate::ExpireCondition::Always,
        }
    }

    #[test]
    fn average_ttl_follows_every_change_of_an_expiry() {
        use crate::ExpireTarget::{AtMs, Persist};
        const NOW_MS: u64 = 1_700_000_000_000;
        let store = Store::new(StoreConfig {
            num_partitions: 8,
            ..StoreConfig::default()
        })
        .expect("valid config");
        // (step, what it does, expected avg_ttl of database 0 in ms at NOW_MS).
        type Step = Box<dyn Fn(&Store)>;
        let steps: Vec<(&str, Step, u64)> = vec![
            ("an empty database", Box::new(|_| {}), 0),
            (
                "a key without expiry",
                Box::new(|store| {
                    execute(store, "plain", |key| set(key, SetExpiry::Never), NOW_MS);
                }),
                0,
            ),
            (
                "keys expiring in 10 s and 30 s",
                Box::new(|store| {
                    execute(
                        store,
                        "a",
                        |key| set(key, SetExpiry::AtMs(NOW_MS + 10_000)),
                        NOW_MS,
                    );
                    execute(
                        store,
                        "b",
                        |key| set(key, SetExpiry::AtMs(NOW_MS + 30_000)),
                        NOW_MS,
                    );
                }),
                20_000,
            ),
            (
                "EXPIRE moves a to 50 s",
                Box::new(|store| {
                    execute(store, "a", |key| expire(key, AtMs(NOW_MS + 50_000)), NOW_MS);
                }),
                40_000,
            ),
            (
                "PERSIST b",
                Box::new(|store| {
                    execute(store, "b", |key| expire(key, Persist), NOW_MS);
                }),
                50_000,
            ),
            (
                "a plain SET of a clears its expiry",
                Box::new(|store| {
                    execute(store, "a", |key| set(key, SetExpiry::Never), NOW_MS);
                }),
                0,
            ),
            (
                "c expiring in 4 s, then deleted",
                Box::new(|store| {
                    execute(
                        store,
                        "c",
                        |key| set(key, SetExpiry::AtMs(NOW_MS + 4_000)),
                        NOW_MS,
                    );
                    execute(
                        store,
                        "d",
                        |key| set(key, SetExpiry::AtMs(NOW_MS + 8_000)),
                        NOW_MS,
                    );
                    execute(store, "c", |key| Op::Delete { key, cas_opt: None }, NOW_MS);
                }),
                8_000,
            ),
        ];
        for (what, step, expected_ms) in steps {
            step(&store);
            assert_eq!(
                store.stats().average_ttl_ms(0, NOW_MS),
                expected_ms,
                "after {what}"
            );
        }
        // Later, and past the deadline, before and after the sweep: never below 0.
        assert_eq!(store.stats().average_ttl_ms(0, NOW_MS + 6_000), 2_000);
        assert_eq!(store.stats().average_ttl_ms(0, NOW_MS + 9_000), 0);
        for partition in 0..8 {
            store.partition(partition).sweep(NOW_MS + 9_000, usize::MAX);
        }
        let stats = store.stats();
        assert_eq!(stats.num_keys_with_expiry_per_db[0], 0);
        assert_eq!(stats.expire_at_s_sum_per_db[0], 0);
        assert_eq!(stats.average_ttl_ms(0, NOW_MS), 0);
        assert_eq!(
            stats.average_ttl_ms(200, NOW_MS),
            0,
            "a database out of range"
        );
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
