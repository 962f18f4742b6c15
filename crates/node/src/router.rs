//! Where an operation runs: the router finds a key's partition and executes the operation on the
//! partition's primary. On a single node every partition is local.

use std::sync::Arc;

use store::{Op, Reply, Store};

use crate::clock::Clock;
use crate::pending::Pending;

/// Routes store operations to the partitions that hold their keys.
pub(crate) struct Router {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    num_partitions: u32,
}

impl Router {
    pub(crate) fn new(store: Arc<Store>, clock: Arc<dyn Clock>) -> Router {
        let num_partitions = store.config().num_partitions;
        Router {
            store,
            clock,
            num_partitions,
        }
    }

    /// The number of partitions, for commands that visit them all.
    pub(crate) fn num_partitions(&self) -> u32 {
        self.num_partitions
    }

    /// The partition of `key`.
    pub(crate) fn partition_of(&self, key: &[u8]) -> u32 {
        store::partition_of(key, self.num_partitions)
    }

    /// Runs `op` (which names a key) on the key's partition.
    pub(crate) fn execute(&self, db: u8, op: Op) -> Pending<Reply> {
        let partition = op.key().map(|key| self.partition_of(key)).unwrap_or(0);
        self.execute_on(partition, db, op)
    }

    /// Runs `op` on `partition` (whole-partition operations such as SCAN pages name it directly).
    pub(crate) fn execute_on(&self, partition: u32, db: u8, op: Op) -> Pending<Reply> {
        let now_ms = self.clock.now_ms();
        let outcome = self.store.partition(partition).execute(db, op, now_ms);
        Pending::Ready(outcome.reply)
    }
}
