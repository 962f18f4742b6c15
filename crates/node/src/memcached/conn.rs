//! One memcached client connection: tell the protocol from the first byte, then read, split into
//! requests, run them, and write the replies in order.
//!
//! The same loop as the RESP front end's: every complete request in the input runs before the
//! replies go out in one `write`; a reply not known at once (a relayed op, a write waiting for
//! its backups) is queued, and the replies after it wait behind it so the order holds.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use memcache::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::binary::BinaryFrontEnd;
use super::stats::{Command, Counters, NodeMemcached, node_memcached};
use super::text::TextFrontEnd;
use crate::pending::{BoxFuture, Pending};
use crate::state::{NodeCounters, NodeState};

/// Room kept free in the input buffer before each read.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Replies are written once this many bytes are waiting, even mid-pipeline, so a long pipeline
/// of large values does not pile up in memory.
const OUTPUT_FLUSH_BYTES: usize = 256 * 1024;
/// A buffer that grew past this for one large request is replaced by a small one when empty, so
/// idle connections do not each keep megabytes.
const BUFFER_KEEP_BYTES: usize = 64 * 1024;

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

/// What one step of a front end did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// A request (or a refused one) was taken off the input; there may be more.
    Ran,
    /// The input holds no complete request.
    Incomplete,
    /// Close the connection once the replies so far are written.
    Close,
}

/// One protocol's way of taking requests off the input and answering them.
pub(super) trait FrontEnd {
    /// Takes the next request off `input` and runs it, answering through `replies`.
    fn step(&mut self, input: &mut BytesMut, replies: &mut Replies<'_>) -> Step;
}

/// Where a front end writes its answers, in request order.
pub(super) struct Replies<'a> {
    pub(super) state: &'a Arc<NodeState>,
    pub(super) node: &'a Arc<NodeMemcached>,
    output: &'a mut BytesMut,
    queue: &'a mut VecDeque<Queued>,
}

impl Replies<'_> {
    /// The buffer for a reply known now: the output, or behind the queued replies.
    pub(super) fn buffer(&mut self) -> &mut BytesMut {
        if self.queue.is_empty() {
            return self.output;
        }
        if !matches!(self.queue.back(), Some(Queued::Bytes(_))) {
            self.queue.push_back(Queued::Bytes(BytesMut::new()));
        }
        match self.queue.back_mut() {
            Some(Queued::Bytes(bytes)) => bytes,
            _ => unreachable!("a Bytes entry was pushed just above"),
        }
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
            Pending::Later(future) => self.queue.push_back(Queued::Later {
                encoder: Box::pin(async move {
                    let value = future.await;
                    Box::new(move |out: &mut BytesMut, counters: &Counters| {
                        encode(value, out, counters)
                    }) as Encoder
                }),
                stat,
            }),
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
    let mut input = BytesMut::with_capacity(READ_CHUNK_BYTES);
    while input.is_empty() {
        if read_more(&state, &mut stream, &mut input).await.is_err() {
            return;
        }
    }
    match memcache::detect_protocol(input[0]) {
        Protocol::Text => {
            let front_end = TextFrontEnd::new(&state.config);
            serve_with(state, node, stream, peer, input, front_end).await
        }
        Protocol::Binary => {
            let front_end = BinaryFrontEnd::new(&state.config);
            serve_with(state, node, stream, peer, input, front_end).await
        }
    }
}

async fn serve_with(
    state: Arc<NodeState>,
    node: Arc<NodeMemcached>,
    mut stream: TcpStream,
    peer: SocketAddr,
    mut input: BytesMut,
    mut front_end: impl FrontEnd,
) {
    let mut output = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut queue: VecDeque<Queued> = VecDeque::new();
    loop {
        // Run every complete request in the input.
        let mut close = false;
        loop {
            let mut replies = Replies {
                state: &state,
                node: &node,
                output: &mut output,
                queue: &mut queue,
            };
            match front_end.step(&mut input, &mut replies) {
                Step::Ran => {
                    if output.len() >= OUTPUT_FLUSH_BYTES
                        && queue.is_empty()
                        && write_output(&state, &mut stream, &mut output)
                            .await
                            .is_err()
                    {
                        return;
                    }
                }
                Step::Incomplete => break,
                Step::Close => {
                    tracing::debug!(client = %peer, "closing the memcached connection");
                    close = true;
                    break;
                }
            }
        }
        drain_queue(&state, &node, &mut queue, &mut output).await;
        if write_output(&state, &mut stream, &mut output)
            .await
            .is_err()
            || close
        {
            return;
        }
        shrink(&mut output);
        if input.is_empty() {
            shrink(&mut input);
        }
        if read_more(&state, &mut stream, &mut input).await.is_err() {
            return;
        }
    }
}

/// Reads what the client sent next. `Err` when the client left, the read failed, or the node is
/// shutting down.
async fn read_more(
    state: &NodeState,
    stream: &mut TcpStream,
    input: &mut BytesMut,
) -> Result<(), ()> {
    if input.capacity() - input.len() < READ_CHUNK_BYTES / 2 {
        input.reserve(READ_CHUNK_BYTES);
    }
    let read = tokio::select! {
        read = stream.read_buf(input) => read,
        () = state.shutdown.cancelled() => return Err(()),
    };
    match read {
        Ok(0) | Err(_) => Err(()),
        Ok(bytes) => {
            NodeCounters::add(&state.counters.net_input_bytes, bytes as u64);
            Ok(())
        }
    }
}

/// Waits for the queued replies in order and appends them to the output.
async fn drain_queue(
    state: &NodeState,
    node: &NodeMemcached,
    queue: &mut VecDeque<Queued>,
    output: &mut BytesMut,
) {
    while let Some(queued) = queue.pop_front() {
        match queued {
            Queued::Bytes(bytes) => output.extend_from_slice(&bytes),
            Queued::Later { encoder, stat } => {
                let encode = encoder.await;
                let answer = encode(output, &node.counters);
                record(state, stat, answer);
            }
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

fn elapsed_ns(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

async fn write_output(
    state: &NodeState,
    stream: &mut TcpStream,
    output: &mut BytesMut,
) -> std::io::Result<()> {
    if output.is_empty() {
        return Ok(());
    }
    stream.write_all(output).await?;
    NodeCounters::add(&state.counters.net_output_bytes, output.len() as u64);
    output.clear();
    Ok(())
}

/// Gives back the memory of a buffer that grew for one large request.
fn shrink(buffer: &mut BytesMut) {
    if buffer.is_empty() && buffer.capacity() > BUFFER_KEEP_BYTES {
        *buffer = BytesMut::with_capacity(READ_CHUNK_BYTES);
    }
}
