//! One memcached client connection: tell the protocol from the first byte, then read, split into
//! requests, run them, and write the replies in order.
//!
//! The same loop as the RESP front end's: every complete request in the input runs before the
//! replies go out in one `write`; a reply not known at once (a relayed op, a write waiting for
//! its backups) is queued, and the replies after it wait behind it so the order holds. A request
//! never overtakes a pending one of the same partition (PROTOCOL.md §12): it waits until the
//! replies before it are known, so a write relayed to an old primary cannot land after a later
//! write that ran on the new one.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use memcache::Protocol;
use tokio::net::TcpStream;

use super::binary::BinaryFrontEnd;
use super::ops::MEMCACHED_DB;
use super::stats::{Command, Counters, NodeMemcached, node_memcached};
use super::text::TextFrontEnd;
use crate::connection::{
    Footprint, InFlight, OUTPUT_FLUSH_BYTES, READ_CHUNK_BYTES, elapsed_ns, read_more, shrink,
    write_output,
};
use crate::pending::{BoxFuture, Pending};
use crate::shards::before_pipelined_reply;
use crate::state::{ByteTally, NodeCounters, NodeState, ShutdownSignal};

/// How a request was answered, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    /// Answered (a miss or a condition not met is a normal answer).
    Normal,
    /// Answered with an error (or would have been, without `noreply`), of this kind when it
    /// is one the metrics break errors down by.
    Error(Option<admin::ClientErrorKind>),
}

/// Writes a reply once its value is known. Gets memcached's counters to count hits and misses.
pub(super) type Encoder = Box<dyn FnOnce(&mut BytesMut, &Counters) -> Answer + Send>;

/// A reply that comes after one not yet known.
enum Queued {
    /// Encoded bytes.
    Bytes(BytesMut),
    /// A reply that is written when its value is known.
    Later {
        encoder: BoxFuture<Encoder>,
        stat: Stat,
    },
}

/// What to record in the command statistics once a reply is written.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stat {
    pub(super) command: Command,
    pub(super) started: Instant,
}

impl Stat {
    pub(super) fn new(command: Command, started: Instant) -> Stat {
        Stat { command, started }
    }
}

/// What to do after a request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Go on with the next request.
    Ran,
    /// Close the connection once the replies so far are written.
    Close,
}

/// What a front end took off the input.
pub(super) enum Next<R> {
    /// A request to run.
    Request(R),
    /// A request the front end answered itself: refused, or run before authentication.
    Answered(Step),
    /// The input holds no complete request.
    Incomplete,
}

/// One protocol's way of taking requests off the input and answering them.
pub(super) trait FrontEnd {
    type Request;

    /// Takes the next request off `input`, answering refusals through `replies`.
    fn next(&mut self, input: &mut BytesMut, replies: &mut Replies<'_>) -> Next<Self::Request>;

    /// The keys `request` names: none for connection and server requests.
    fn keys<'r>(&self, request: &'r Self::Request) -> &'r [Bytes];

    /// Whether `request` touches every partition (`flush_all`, FLUSH).
    fn touches_all(&self, request: &Self::Request) -> bool;

    /// Whether requests may be taken off the input before the ones before them have run: not
    /// while the client may still authenticate, which changes the limits a request is read
    /// under and what it may do.
    fn parses_ahead(&self) -> bool;

    /// Whether `request` closes the connection (`quit`): nothing after it is taken off the
    /// input, as nothing after it is answered.
    fn closes(&self, request: &Self::Request) -> bool;

    /// Runs `request`, answering through `replies`.
    fn run(&mut self, request: Self::Request, replies: &mut Replies<'_>) -> Step;
}

/// Requests taken off the input ahead and run as one batch, after their keys were prefetched
/// together (`Router::prefetch`): with several requests in one read, their cache misses
/// then overlap instead of stalling each request in turn.
const BATCH_MAX: usize = 16;

/// What was taken off the input for a batch.
enum Taken<R> {
    /// A request to run.
    Request(R),
    /// A request the front end answered itself, into the batch's own reply buffer: the answer
    /// goes out after the replies of the requests before it.
    Answered(Step),
}

/// The partitions `request` touches, for the ordering rule.
fn footprint<F: FrontEnd>(state: &NodeState, front_end: &F, request: &F::Request) -> Footprint {
    if front_end.touches_all(request) {
        Footprint::All
    } else {
        Footprint::of_keys(state, front_end.keys(request))
    }
}

/// A connection's replies in request order: the bytes ready to write, and behind the first reply
/// not known yet, everything after it.
#[derive(Default)]
struct ReplyQueue {
    output: BytesMut,
    /// Empty unless a reply waits for its value; a reply known now goes here, not to `output`,
    /// while one before it waits.
    queue: VecDeque<Queued>,
    /// Replies ever queued to wait for their value: tells whether a request left one pending.
    num_later_pushed: u64,
}

impl ReplyQueue {
    fn with_capacity(capacity_bytes: usize) -> ReplyQueue {
        ReplyQueue {
            output: BytesMut::with_capacity(capacity_bytes),
            ..ReplyQueue::default()
        }
    }

    /// The buffer for a reply known now: the output, or behind the queued replies.
    fn buffer(&mut self) -> &mut BytesMut {
        if self.queue.is_empty() {
            return &mut self.output;
        }
        if !matches!(self.queue.back(), Some(Queued::Bytes(_))) {
            self.queue.push_back(Queued::Bytes(BytesMut::new()));
        }
        match self.queue.back_mut() {
            Some(Queued::Bytes(bytes)) => bytes,
            _ => unreachable!("a Bytes entry was pushed just above"),
        }
    }

    fn push_later(&mut self, encoder: BoxFuture<Encoder>, stat: Stat) {
        self.queue.push_back(Queued::Later { encoder, stat });
        self.num_later_pushed += 1;
    }

    /// Whether a reply waits for its value.
    fn is_waiting(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Waits for the queued replies in order and appends them to the output, reporting how each
    /// was answered.
    async fn settle(&mut self, counters: &Counters, mut on_answer: impl FnMut(Stat, Answer)) {
        while let Some(queued) = self.queue.pop_front() {
            match queued {
                Queued::Bytes(bytes) => self.output.extend_from_slice(&bytes),
                Queued::Later { encoder, stat } => {
                    let encode = encoder.await;
                    let answer = encode(&mut self.output, counters);
                    on_answer(stat, answer);
                }
            }
        }
    }
}

/// Where a front end writes its answers, in request order.
pub(super) struct Replies<'a> {
    pub(super) state: &'a Arc<NodeState>,
    pub(super) node: &'a Arc<NodeMemcached>,
    queue: &'a mut ReplyQueue,
}

impl Replies<'_> {
    /// The buffer for a reply known now: the output, or behind the queued replies.
    pub(super) fn buffer(&mut self) -> &mut BytesMut {
        self.queue.buffer()
    }

    /// Writes a reply known now with `encode`, and records it.
    pub(super) fn now(
        &mut self,
        stat: Stat,
        encode: impl FnOnce(&mut BytesMut, &Counters) -> Answer,
    ) {
        let node = self.node;
        let answer = encode(self.buffer(), &node.counters);
        record(self.state, stat, answer);
    }

    /// Writes the reply to `pending` with `encode` once its value is known: at once when it is
    /// known now, else in order after the replies before it.
    pub(super) fn send<T: Send + 'static>(
        &mut self,
        stat: Stat,
        pending: Pending<T>,
        encode: impl FnOnce(T, &mut BytesMut, &Counters) -> Answer + Send + 'static,
    ) {
        match pending {
            Pending::Ready(value) => self.now(stat, |out, counters| encode(value, out, counters)),
            Pending::Later(future) => {
                let encoder = Box::pin(async move {
                    let value = future.await;
                    Box::new(move |out: &mut BytesMut, counters: &Counters| {
                        encode(value, out, counters)
                    }) as Encoder
                });
                self.queue.push_later(encoder, stat);
            }
        }
    }

    /// Counts a refused request that names no command (the parser could not tell which).
    pub(super) fn refused(&self, kind_opt: Option<admin::ClientErrorKind>) {
        count_error(self.state, kind_opt);
    }
}

/// Serves one memcached connection until the client leaves, quits, breaks the protocol, or the
/// node shuts down.
pub(crate) async fn serve(state: Arc<NodeState>, mut stream: TcpStream, peer: SocketAddr) {
    let node = node_memcached(&state);
    let mut tally = ByteTally::new(&state.counters);
    let mut input = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut shutdown = ShutdownSignal::new(&state.shutdown);
    while input.is_empty() {
        if read_more(
            &mut shutdown,
            &mut tally,
            &mut stream,
            &mut input,
            READ_CHUNK_BYTES,
        )
        .await
        .is_err()
        {
            return;
        }
    }
    match memcache::detect_protocol(input[0]) {
        Protocol::Text => {
            let front_end = TextFrontEnd::new(&state.config);
            serve_with(&state, &mut tally, node, stream, peer, input, front_end).await
        }
        Protocol::Binary => {
            let front_end = BinaryFrontEnd::new(&state.config);
            serve_with(&state, &mut tally, node, stream, peer, input, front_end).await
        }
    }
}

async fn serve_with<F: FrontEnd>(
    state: &Arc<NodeState>,
    tally: &mut ByteTally<'_>,
    node: Arc<NodeMemcached>,
    mut stream: TcpStream,
    peer: SocketAddr,
    mut input: BytesMut,
    mut front_end: F,
) {
    let mut replies = ReplyQueue::with_capacity(READ_CHUNK_BYTES);
    let mut batch: Vec<Taken<F::Request>> = Vec::with_capacity(BATCH_MAX);
    // Where the front end answers a request it takes off the input while a batch is filled.
    let mut answered_ahead = ReplyQueue::default();
    let mut in_flight = InFlight::default();
    let mut shutdown = ShutdownSignal::new(&state.shutdown);
    loop {
        // Run every complete request in the input, a batch at a time.
        let mut close = false;
        let mut num_requests = 0_usize;
        'input: loop {
            answered_ahead.output.clear();
            let batch_max = if front_end.parses_ahead() {
                BATCH_MAX
            } else {
                1
            };
            let mut incomplete = false;
            while batch.len() < batch_max {
                let mut answer_to = Replies {
                    state,
                    node: &node,
                    queue: &mut answered_ahead,
                };
                match front_end.next(&mut input, &mut answer_to) {
                    Next::Incomplete => incomplete = true,
                    Next::Request(request) => {
                        let closes = front_end.closes(&request);
                        batch.push(Taken::Request(request));
                        if !closes {
                            continue;
                        }
                    }
                    Next::Answered(step) => batch.push(Taken::Answered(step)),
                }
                break;
            }
            if batch.len() > 1 {
                for taken in &batch {
                    if let Taken::Request(request) = taken {
                        for key in front_end.keys(request) {
                            state.router.prefetch(MEMCACHED_DB, key);
                        }
                    }
                }
            }
            for taken in batch.drain(..) {
                num_requests += 1;
                let step = match taken {
                    Taken::Answered(step) => {
                        replies.buffer().extend_from_slice(&answered_ahead.output);
                        step
                    }
                    Taken::Request(request) => {
                        let footprint = footprint(state, &front_end, &request);
                        if in_flight.conflicts_with(&footprint) {
                            replies
                                .settle(&node.counters, |stat, answer| record(state, stat, answer))
                                .await;
                            in_flight.clear();
                        }
                        let num_later_before = replies.num_later_pushed;
                        let step = front_end.run(
                            request,
                            &mut Replies {
                                state,
                                node: &node,
                                queue: &mut replies,
                            },
                        );
                        if replies.num_later_pushed != num_later_before {
                            in_flight.add(footprint);
                        }
                        step
                    }
                };
                match step {
                    Step::Ran => {
                        if replies.output.len() >= OUTPUT_FLUSH_BYTES
                            && !replies.is_waiting()
                            && write_output(tally, &mut stream, &mut replies.output)
                                .await
                                .is_err()
                        {
                            return;
                        }
                    }
                    Step::Close => {
                        tracing::debug!(client = %peer, "closing the memcached connection");
                        close = true;
                        break 'input;
                    }
                }
            }
            if incomplete {
                break;
            }
        }
        replies
            .settle(&node.counters, |stat, answer| record(state, stat, answer))
            .await;
        in_flight.clear();
        before_pipelined_reply(num_requests, replies.output.len()).await;
        if write_output(tally, &mut stream, &mut replies.output)
            .await
            .is_err()
            || close
        {
            return;
        }
        shrink(&mut replies.output);
        if input.is_empty() {
            shrink(&mut input);
        }
        if read_more(
            &mut shutdown,
            tally,
            &mut stream,
            &mut input,
            READ_CHUNK_BYTES,
        )
        .await
        .is_err()
        {
            return;
        }
    }
}

fn record(state: &NodeState, stat: Stat, answer: Answer) {
    let is_error = matches!(answer, Answer::Error(_));
    if let Answer::Error(kind_opt) = answer {
        count_error(state, kind_opt);
    }
    state.command_stats.record(
        stat.command.stat_index(),
        elapsed_ns(stat.started),
        is_error,
    );
}

fn count_error(state: &NodeState, kind_opt: Option<admin::ClientErrorKind>) {
    NodeCounters::add(&state.counters.error_replies, 1);
    if let Some(kind) = kind_opt {
        state.metrics.client_errors.inc(kind);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply that is known only after the task yields once, like a relayed one.
    fn later(text: &'static str, answer: Answer) -> BoxFuture<Encoder> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            Box::new(move |out: &mut BytesMut, _: &Counters| {
                out.extend_from_slice(text.as_bytes());
                answer
            }) as Encoder
        })
    }

    #[tokio::test]
    async fn replies_known_now_wait_behind_a_reply_not_known_yet() {
        let mut replies = ReplyQueue::default();
        replies.buffer().extend_from_slice(b"1 ");
        replies.push_later(
            later("2 ", Answer::Normal),
            Stat::new(Command::Get, Instant::now()),
        );
        replies.buffer().extend_from_slice(b"3 ");
        replies.buffer().extend_from_slice(b"4 ");
        replies.push_later(
            later("5 ", Answer::Error(None)),
            Stat::new(Command::Set, Instant::now()),
        );
        replies.buffer().extend_from_slice(b"6");
        assert_eq!(&replies.output[..], b"1 ");
        assert!(replies.is_waiting());

        let mut answers = Vec::new();
        replies
            .settle(&Counters::default(), |stat, answer| {
                answers.push((stat.command, answer))
            })
            .await;
        assert_eq!(&replies.output[..], b"1 2 3 4 5 6");
        assert!(!replies.is_waiting());
        assert_eq!(
            answers,
            vec![
                (Command::Get, Answer::Normal),
                (Command::Set, Answer::Error(None))
            ]
        );
        // With nothing waiting, a reply known now goes straight to the output again.
        replies.buffer().extend_from_slice(b"!");
        assert_eq!(&replies.output[..], b"1 2 3 4 5 6!");
    }
}
