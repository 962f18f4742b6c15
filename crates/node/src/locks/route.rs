//! The requesting side of a lock operation: follow the first attempt until the operation ran,
//! on this node's manager or, relayed, on the primary's (PROTOCOL.md §12, §13).
//!
//! Like the router, with two differences: a waiting acquisition may take as long as its `WAIT`
//! (the deadline is the wait plus the relay deadline, and every retry carries the wait that is
//! left), and a relayed lock operation is not counted in the relay latency metrics, whose
//! buckets are for operations that do not wait on purpose.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use cluster::wire::RelayResult;
use store::{Op, Reply, StoreError};
use tokio::sync::futures::Notified;
use tokio::time::Instant;

use super::{Attempt, LockManager, WaiterOutcome};
use crate::router::{RELAY_DEADLINE, relay, wait_for_change};

/// The wait an operation asks for, in ms (only acquisitions wait).
pub(super) fn wait_ms_of(op: &Op) -> u64 {
    match op {
        Op::LockAcquire { wait_ms, .. } => *wait_ms,
        _ => 0,
    }
}

/// `op` with what is left of its wait.
pub(super) fn with_wait_ms(op: &Op, remaining_ms: u64) -> Op {
    match op {
        Op::LockAcquire {
            key,
            owner,
            mode,
            lease_ms,
            ..
        } => Op::LockAcquire {
            key: key.clone(),
            owner: owner.clone(),
            mode: *mode,
            lease_ms: *lease_ms,
            wait_ms: remaining_ms,
        },
        other => other.clone(),
    }
}

/// Follows `first` (this node's attempt of `op`, made at `started`) until the operation ran
/// somewhere, its wait ran out (`Nil`), or no primary could be reached in time (`TRYAGAIN`).
///
/// A waiting acquisition also ends when the node stops (with `TRYAGAIN`): a connection waiting
/// for minutes would hold up the shutdown. Other operations are short and run to their end, so
/// that the `SESSION` locks of connections closed by the shutdown are still released.
///
/// `gone` resolves when nobody waits for the reply any more (the client's connection closed):
/// a request queued on this node then leaves its queue (with `Nil`, unless it was granted in the
/// meantime). A relayed one runs to its end, since its grant has to be given back.
pub(super) async fn finish(
    manager: &Arc<LockManager>,
    partition: u32,
    db: u8,
    op: Op,
    first: Attempt,
    started: Instant,
    gone: impl Future<Output = ()>,
) -> Reply {
    if wait_ms_of(&op) == 0 {
        return follow(manager, partition, db, op, first, started, gone).await;
    }
    tokio::select! {
        reply = follow(manager, partition, db, op, first, started, gone) => reply,
        () = manager.stopped() => Reply::Error(StoreError::PartitionUnavailable {
            partition,
            reason: "this node is shutting down".to_string(),
        }),
    }
}

async fn follow(
    manager: &Arc<LockManager>,
    partition: u32,
    db: u8,
    op: Op,
    first: Attempt,
    started: Instant,
    gone: impl Future<Output = ()>,
) -> Reply {
    let mut gone = std::pin::pin!(gone);
    let io = manager.io();
    let wait_deadline = started + Duration::from_millis(wait_ms_of(&op));
    let deadline = wait_deadline + RELAY_DEADLINE;
    let notify = io.host().partition_notify(partition);
    let key = op.key().cloned().unwrap_or_default();
    let mut attempt = first;
    // Registered before the look that produced `attempt`, or `None` when that look came first:
    // a failure of the first look is followed by a fresh look at once, as in the router.
    let mut changed_opt: Option<Pin<Box<Notified<'_>>>> = None;
    let mut last_problem;
    loop {
        let remaining_wait_ms = || {
            u64::try_from(
                wait_deadline
                    .saturating_duration_since(Instant::now())
                    .as_millis(),
            )
            .unwrap_or(u64::MAX)
        };
        // Until when to wait for the partition to change before the next look, if at all.
        let wait_until_opt = match attempt {
            Attempt::Executed(executed) => return manager.confirm(&key, executed).await,
            Attempt::Queued(receiver_opt) => {
                let outcome = match receiver_opt {
                    Some(mut receiver) => tokio::select! {
                        outcome = &mut receiver => outcome.ok(),
                        () = &mut gone => {
                            // The queue skips a closed receiver; an outcome sent before the
                            // close is still taken, so a grant is not lost but given back.
                            receiver.close();
                            match receiver.try_recv() {
                                Ok(outcome) => Some(outcome),
                                Err(_) => return Reply::Nil,
                            }
                        }
                    },
                    None => None,
                };
                match outcome {
                    Some(WaiterOutcome::Executed(executed)) => {
                        return manager.confirm(&key, executed).await;
                    }
                    Some(WaiterOutcome::TimedOut) => return Reply::Nil,
                    // Moved, or the manager dropped the queue: try again where it lives now.
                    Some(WaiterOutcome::Reroute) | None => {
                        last_problem = "the primary moved";
                        None
                    }
                }
            }
            Attempt::Forward(primary) => {
                let waited_ms = remaining_wait_ms();
                let relayed = with_wait_ms(&op, waited_ms);
                let timeout = deadline.saturating_duration_since(Instant::now());
                match relay(io, primary, partition, db, relayed, timeout).await {
                    // A waiting acquisition that reached the primary with no wait left (the
                    // primary retried it through a handoff or a fence) comes back refused:
                    // wait for the change and queue again while the wait lasts.
                    Ok(RelayResult::Reply(Reply::LockHeld(_)))
                        if waited_ms > 0 && remaining_wait_ms() > 0 =>
                    {
                        last_problem = "the primary could not queue the request";
                        Some(wait_deadline)
                    }
                    Ok(RelayResult::Reply(reply)) => return reply,
                    Ok(RelayResult::NotPrimary { record }) => {
                        last_problem = "the primary moved";
                        match record {
                            // A newer record: retry at once where it points.
                            Some(record) => {
                                io.engine.learn_record(partition, record, io.clock.now_ms());
                                None
                            }
                            None => Some(deadline),
                        }
                    }
                    Ok(RelayResult::Unavailable { .. }) => {
                        last_problem = "the primary could not take the request";
                        Some(deadline)
                    }
                    Err(problem) => {
                        last_problem = problem;
                        Some(deadline)
                    }
                }
            }
            Attempt::Wait(_) => {
                last_problem = "its primary is changing";
                Some(deadline)
            }
        };
        if let Some(until) = wait_until_opt
            && let Some(changed) = changed_opt.take()
        {
            wait_for_change(changed, until.into_std()).await;
        }
        if Instant::now() >= deadline {
            return Reply::Error(StoreError::PartitionUnavailable {
                partition,
                reason: last_problem.to_string(),
            });
        }
        // Registered before the next look at the engine, so a change in between is not missed.
        let mut changed = Box::pin(notify.notified());
        changed.as_mut().enable();
        changed_opt = Some(changed);
        let retry = with_wait_ms(&op, remaining_wait_ms());
        attempt = manager.attempt(partition, db, retry, None);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use store::LockMode;

    use super::*;

    #[test]
    fn only_acquisitions_carry_a_wait_and_retries_carry_what_is_left() {
        let acquire = Op::LockAcquire {
            key: Bytes::from_static(b"k"),
            owner: Bytes::from_static(b"w"),
            mode: LockMode::Session,
            lease_ms: 9,
            wait_ms: 500,
        };
        assert_eq!(wait_ms_of(&acquire), 500);
        assert_eq!(
            with_wait_ms(&acquire, 120),
            Op::LockAcquire {
                key: Bytes::from_static(b"k"),
                owner: Bytes::from_static(b"w"),
                mode: LockMode::Session,
                lease_ms: 9,
                wait_ms: 120,
            }
        );
        let release = Op::LockRelease {
            key: Bytes::from_static(b"k"),
            token: 3,
        };
        assert_eq!(wait_ms_of(&release), 0);
        assert_eq!(with_wait_ms(&release, 120), release);
    }
}
