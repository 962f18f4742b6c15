//! `flush_all` and binary FLUSH: empty the memcached keyspace (database 0) now, or when the
//! node's clock reaches a deadline.
//!
//! memcached's delayed flush invalidates, at the deadline, every item stored before it. scd does
//! the same by flushing database 0 when its clock reaches the deadline: one task per node waits
//! for the latest deadline asked for (a new `flush_all`, delayed or not, replaces a pending one,
//! as a new `flush_all` replaces memcached's `oldest_live`). The task reads the node's clock in
//! short steps rather than sleeping until the deadline, so it follows a clock that jumps (a
//! manual clock in tests, an adjusted wall clock in production).

use std::sync::Arc;
use std::time::Duration;

use memcache::{Expiry, exptime_to_deadline};
use parking_lot::Mutex;
use store::{Op, Reply, StoreError};

use super::ops::MEMCACHED_DB;
use super::stats::NodeMemcached;
use crate::pending::Pending;
use crate::state::NodeState;

/// How often the waiting task looks at the clock: how late a delayed flush may run.
const FLUSH_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// The delayed flush a node waits for.
#[derive(Debug, Default)]
pub(super) struct FlushSchedule {
    /// A `parking_lot` mutex: nothing awaits while it is held.
    inner: Mutex<Scheduled>,
}

#[derive(Debug, Default)]
struct Scheduled {
    /// When to flush, in Unix milliseconds of the node's clock; `None` when nothing is pending.
    deadline_ms_opt: Option<u64>,
    /// A task is waiting for the deadline (at most one per node).
    waiting: bool,
}

/// Flushes now when `delay_seconds` (an exptime) is not in the future, else arranges for a flush
/// at that time. Resolves once the flush is done or arranged; `Err` if a partition refused.
pub(super) fn flush_all(
    state: &Arc<NodeState>,
    node: &Arc<NodeMemcached>,
    delay_seconds: i64,
) -> Pending<Result<(), StoreError>> {
    let now_ms = state.now_ms();
    let deadline_opt = match exptime_to_deadline(delay_seconds, now_ms) {
        // memcached treats 0 and negative delays (and times already past) as "now".
        Expiry::Never | Expiry::AlreadyExpired => None,
        Expiry::AtMs(deadline_ms) => Some(deadline_ms),
    };
    let mut scheduled = node.flush.inner.lock();
    scheduled.deadline_ms_opt = deadline_opt;
    let Some(deadline_ms) = deadline_opt else {
        drop(scheduled);
        return flush_now(state);
    };
    if !scheduled.waiting {
        scheduled.waiting = true;
        tokio::spawn(wait_and_flush(Arc::clone(state), Arc::clone(node)));
    }
    tracing::debug!(deadline_ms, "memcached flush_all scheduled");
    Pending::Ready(Ok(()))
}

/// Empties database 0 on every partition, through the router.
fn flush_now(state: &NodeState) -> Pending<Result<(), StoreError>> {
    let pendings = (0..state.router.num_partitions())
        .map(|partition| {
            state
                .router
                .execute_on(partition, MEMCACHED_DB, Op::FlushDb)
        })
        .collect();
    Pending::join_all(pendings).map(|replies| {
        replies.into_iter().try_for_each(|reply| match reply {
            Reply::Error(error) => Err(error),
            _ => Ok(()),
        })
    })
}

/// The one task per node that waits for the pending deadline, until it passes, it is cancelled
/// by a flush without delay, or the node shuts down.
async fn wait_and_flush(state: Arc<NodeState>, node: Arc<NodeMemcached>) {
    loop {
        let due = {
            let mut scheduled = node.flush.inner.lock();
            match scheduled.deadline_ms_opt {
                None => {
                    scheduled.waiting = false;
                    return;
                }
                Some(deadline_ms) => {
                    let due = state.now_ms() >= deadline_ms;
                    if due {
                        scheduled.deadline_ms_opt = None;
                        scheduled.waiting = false;
                    }
                    due
                }
            }
        };
        if due {
            if let Err(error) = flush_now(&state).resolve().await {
                tracing::warn!(%error, "delayed memcached flush_all failed");
            }
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(FLUSH_CHECK_INTERVAL) => {}
            () = state.shutdown.cancelled() => return,
        }
    }
}
