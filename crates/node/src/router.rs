//! Where an operation runs (PROTOCOL.md §12). The router asks the engine to execute an operation on
//! its partition; the engine runs it here when this node is the primary, or says where the primary
//! is, or that the partition is between owners. The router then relays it, waits for
//! write-through acknowledgements, or waits for the partition to change — with a deadline, after
//! which the client gets an error naming the partition: `TRYAGAIN`, or `UNCONFIRMED` for a write
//! that ran but whose backups did not acknowledge it.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster::engine::Execution;
use cluster::table::Member;
use cluster::wire::{self, PeerMessage, RelayResult, SmallList};
use store::{Op, Reply, StoreError};
use tokio::sync::futures::Notified;
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::cluster_io::ClusterIo;
use crate::pending::Pending;

/// How long an operation may wait in all, for a reachable primary and for the acknowledgements
/// of its backups (PROTOCOL.md §14). Failure detection takes under a second and a handoff one
/// round trip, so this leaves a wide margin.
pub(crate) const RELAY_DEADLINE: Duration = Duration::from_secs(5);
/// How long to wait before trying again when nothing announces a change.
const RETRY_INTERVAL: Duration = Duration::from_millis(50);

/// Routes store operations to the primaries of their partitions.
pub(crate) struct Router {
    io: Arc<ClusterIo>,
    clock: Arc<dyn Clock>,
    num_partitions: u32,
}

impl Router {
    pub(crate) fn new(io: Arc<ClusterIo>, clock: Arc<dyn Clock>, num_partitions: u32) -> Router {
        Router {
            io,
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

    /// Starts loading into the cache what an op on `key` will read, when this node is its
    /// partition's primary (`cluster::engine::Engine::prefetch`).
    pub(crate) fn prefetch(&self, db: u8, key: &[u8]) {
        self.io.engine.prefetch(self.partition_of(key), db, key);
    }

    /// Runs `op` (which names a key) on the key's partition.
    pub(crate) fn execute(&self, db: u8, op: Op) -> Pending<Reply> {
        let partition = op.key().map(|key| self.partition_of(key)).unwrap_or(0);
        self.execute_on(partition, db, op)
    }

    /// Runs `op` on `partition`: at once when this node is its primary and no backup must
    /// acknowledge first, else later.
    pub(crate) fn execute_on(&self, partition: u32, db: u8, op: Op) -> Pending<Reply> {
        // The operation is kept for a retry elsewhere; cloning it only copies reference counts.
        match self
            .io
            .engine
            .execute(partition, db, op.clone(), self.clock.now_ms())
        {
            Execution::Done(reply) => Pending::Ready(reply),
            Execution::AwaitAcks { reply, waits } => {
                let io = Arc::clone(&self.io);
                let deadline = Instant::now() + RELAY_DEADLINE;
                Pending::Later(Box::pin(async move {
                    acknowledged(&io, partition, reply, &waits, deadline).await
                }))
            }
            Execution::Forward(primary) => {
                // The request leaves now, with the other requests of the client's batch, and
                // not when its reply is awaited: a pipeline of relayed commands is answered
                // in one round trip, not one each.
                let sent = send_relay(&self.io, primary, partition, db, op.clone());
                self.route_later(partition, db, op, Step::Sent(sent))
            }
            wait @ Execution::Wait { .. } => self.route_later(partition, db, op, Step::Look(wait)),
        }
    }

    fn route_later(&self, partition: u32, db: u8, op: Op, first: Step) -> Pending<Reply> {
        let io = Arc::clone(&self.io);
        let clock = Arc::clone(&self.clock);
        let deadline = Instant::now() + RELAY_DEADLINE;
        Pending::Later(Box::pin(async move {
            route(&io, clock.as_ref(), partition, db, op, first, deadline).await
        }))
    }
}

/// Where `route` goes on from.
enum Step {
    /// What the engine answered.
    Look(Execution),
    /// A relay already sent (or that could not be).
    Sent(Result<SentRelay, &'static str>),
}

/// `reply` once the backups acknowledged what a write must wait for, or an `UNCONFIRMED`
/// error at `deadline`: the write ran, but it is not acknowledged.
pub(crate) async fn acknowledged(
    io: &ClusterIo,
    partition: u32,
    reply: Reply,
    waits: &SmallList<(Member, u64)>,
    deadline: Instant,
) -> Reply {
    if io.host().wait_all_acknowledged(waits, deadline).await {
        reply
    } else {
        Reply::Error(StoreError::Unconfirmed {
            partition,
            deadline_ms: u64::try_from(RELAY_DEADLINE.as_millis()).unwrap_or(u64::MAX),
        })
    }
}

/// Follows the engine's answers until the operation ran somewhere or `deadline` passed.
///
/// `first` was looked up when the command was parsed (a relay it called for was sent then), and
/// a pipelined command is only polled
/// once the commands before it have been answered: by then its partition may have changed, and
/// that change was signalled before anything here listened. So a failure on `first` is followed
/// by a fresh look at once; only a look taken after registering for changes is followed by a
/// wait. (Waiting on a stale look cost each queued command of a failed-over partition up to
/// `RETRY_INTERVAL`, one after another: over a second for a pipeline queued during a failover.)
async fn route(
    io: &ClusterIo,
    clock: &dyn Clock,
    partition: u32,
    db: u8,
    op: Op,
    first: Step,
    deadline: Instant,
) -> Reply {
    let notify = io.host().partition_notify(partition);
    let mut step = first;
    // Registered before the look that produced `step`, or `None` when that look came first.
    let mut changed_opt: Option<Pin<Box<Notified<'_>>>> = None;
    loop {
        // A relay to await, or why there is none: the partition is between owners.
        let sent = match step {
            Step::Look(Execution::Done(reply)) => return reply,
            Step::Look(Execution::AwaitAcks { reply, waits }) => {
                return acknowledged(io, partition, reply, &waits, deadline).await;
            }
            Step::Look(Execution::Forward(primary)) => {
                Ok(send_relay(io, primary, partition, db, op.clone()))
            }
            Step::Look(Execution::Wait { reason }) => Err(wait_reason_text(reason)),
            Step::Sent(sent) => Ok(sent),
        };
        // Whether to wait for a change before the next look, and what went wrong.
        let (wait, problem) = match sent {
            Err(reason) => (true, reason),
            Ok(sent) => {
                let started = sent
                    .as_ref()
                    .map_or_else(|_| Instant::now(), |sent| sent.started);
                let outcome = match sent {
                    Ok(sent) => {
                        let remaining = deadline.saturating_duration_since(Instant::now());
                        await_relay(io, sent, remaining).await
                    }
                    Err(problem) => Err(problem),
                };
                count_relay(io, started, &outcome);
                match outcome {
                    Ok(RelayResult::Reply(reply)) => return reply,
                    // A newer record: retry at once where it points.
                    Ok(RelayResult::NotPrimary {
                        record: Some(record),
                    }) => {
                        io.engine.learn_record(partition, record, clock.now_ms());
                        (false, "the primary moved")
                    }
                    Ok(RelayResult::NotPrimary { record: None }) => (true, "the primary moved"),
                    Ok(RelayResult::Unavailable { .. }) => {
                        (true, "the primary could not take the request")
                    }
                    Err(problem) => (true, problem),
                }
            }
        };
        if wait && let Some(changed) = changed_opt.take() {
            wait_for_change(changed, deadline).await;
        }
        if Instant::now() >= deadline {
            return Reply::Error(StoreError::PartitionUnavailable {
                partition,
                reason: problem.to_string(),
            });
        }
        // Registered before the next look at the engine, so a change in between is not missed.
        let mut changed = Box::pin(notify.notified());
        changed.as_mut().enable();
        changed_opt = Some(changed);
        step = Step::Look(io.engine.execute(partition, db, op.clone(), clock.now_ms()));
    }
}

fn wait_reason_text(reason: cluster::engine::WaitReason) -> &'static str {
    use cluster::engine::WaitReason;
    match reason {
        WaitReason::NoSuchPartition => "no such partition",
        WaitReason::NoRecord => "the cluster is forming",
        WaitReason::NoLivePrimary => "its primary failed and a backup is being promoted",
        WaitReason::Handoff => "it is being handed to another node",
        WaitReason::Announcing => "its new primary is announcing itself to the other nodes",
        WaitReason::BackupUnconfirmed => {
            "a backup lost its link and has not yet learnt it was replaced"
        }
        WaitReason::Fenced => "this node is re-synchronising after a pause",
        WaitReason::TableExchange => "a node joined and tables are being exchanged",
    }
}

/// Waits until `changed` fires, `deadline`, or `RETRY_INTERVAL` from now, whichever comes first.
pub(crate) async fn wait_for_change(changed: Pin<Box<Notified<'_>>>, deadline: Instant) {
    let until = deadline.min(Instant::now() + RETRY_INTERVAL);
    tokio::select! {
        () = changed => {}
        () = tokio::time::sleep_until(until.into()) => {}
    }
}

/// Adds a relay that started at `started` and ended with `outcome` to the relay metrics.
fn count_relay(io: &ClusterIo, started: Instant, outcome: &Result<RelayResult, &'static str>) {
    io.metrics.relay_duration.observe(started.elapsed());
    io.metrics.relays.inc(match outcome {
        Ok(RelayResult::Reply(_)) => admin::RelayOutcome::Ok,
        Ok(_) => admin::RelayOutcome::Unavailable,
        Err(RELAY_TIMED_OUT) => admin::RelayOutcome::Timeout,
        Err(_) => admin::RelayOutcome::Error,
    });
}

/// Why a relay that got no answer in time failed.
const RELAY_TIMED_OUT: &str = "the primary did not answer in time";

/// A `Request` queued on the link to its primary, whose `Response` is awaited.
struct SentRelay {
    id: u64,
    answer: oneshot::Receiver<RelayResult>,
    started: Instant,
}

/// Queues one `Request` to `primary` (nothing waits here).
fn send_relay(
    io: &ClusterIo,
    primary: Member,
    partition: u32,
    db: u8,
    op: Op,
) -> Result<SentRelay, &'static str> {
    let started = Instant::now();
    let link = io
        .peers
        .link_to(primary)
        .ok_or("no link to the primary yet")?;
    let (id, answer) = io.relays.register(primary);
    let message = PeerMessage::Request {
        id,
        partition,
        db,
        op,
    };
    if link
        .queue(true, |out| wire::encode_frame(&message, out))
        .is_none()
    {
        io.relays.forget(id);
        return Err("the link to the primary closed");
    }
    Ok(SentRelay {
        id,
        answer,
        started,
    })
}

/// Waits at most `timeout` for the `Response` to `sent`.
async fn await_relay(
    io: &ClusterIo,
    sent: SentRelay,
    timeout: Duration,
) -> Result<RelayResult, &'static str> {
    match tokio::time::timeout(timeout, sent.answer).await {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(_)) => Err("the link to the primary closed"),
        Err(_) => {
            io.relays.forget(sent.id);
            Err(RELAY_TIMED_OUT)
        }
    }
}

/// Sends one `Request` to `primary` and waits at most `timeout` for its `Response`. The lock
/// manager relays through this too; its relays wait as long as a lock waiter may, so they are
/// not counted in the relay metrics.
pub(crate) async fn relay(
    io: &ClusterIo,
    primary: Member,
    partition: u32,
    db: u8,
    op: Op,
    timeout: Duration,
) -> Result<RelayResult, &'static str> {
    let sent = send_relay(io, primary, partition, db, op)?;
    await_relay(io, sent, timeout).await
}
