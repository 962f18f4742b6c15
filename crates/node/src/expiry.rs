//! The active expiry sweeper: keys are expired when read, and this task expires the ones nobody
//! reads (each becomes a tombstone, which it removes `tombstone_ttl_ms` later), with bounded work
//! per tick so a million keys expiring at once cause no pause.

use std::sync::Arc;
use std::time::Duration;

use crate::state::NodeState;

/// How often the sweeper runs.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);
/// Most keys expired or tombstones removed in one partition per tick: bounds how long a
/// partition lock is held.
const BUDGET_PER_PARTITION: usize = 64;
/// Most keys expired or tombstones removed per tick over all partitions: bounds the CPU one tick
/// takes (at 10 ticks a second, 200 000 a second: in a steady state each expiring key counts
/// twice, at its deadline and when its tombstone is purged).
const BUDGET_PER_TICK: usize = 20_000;

/// Sweeps until the node shuts down.
pub(crate) async fn sweep_forever(node: Arc<NodeState>) {
    let mut interval = tokio::time::interval(SWEEP_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let num_partitions = node.store.config().num_partitions;
    let mut next_partition = 0;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = node.shutdown.cancelled() => return,
        }
        let now_ms = node.now_ms();
        let mut removed_this_tick = 0;
        for _ in 0..num_partitions {
            if removed_this_tick >= BUDGET_PER_TICK {
                break;
            }
            let budget = BUDGET_PER_PARTITION.min(BUDGET_PER_TICK - removed_this_tick);
            removed_this_tick += node.store.partition(next_partition).sweep(now_ms, budget);
            next_partition = (next_partition + 1) % num_partitions;
        }
    }
}
