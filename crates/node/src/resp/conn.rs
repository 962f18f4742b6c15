//! One RESP client connection: read, split into requests, run them, write the replies in order.
//!
//! Pipelining is the fast path: every complete request in the input is run before the replies are
//! written with one `write` call. A reply that is not known at once (a relayed command, a write
//! waiting for its backups) is queued, and the replies after it wait behind it so the order holds.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use resp::{Command, ProtocolError, ProtocolVersion, ReplyEncoder, RequestParser};
use store::Reply;
use tokio::net::TcpStream;

use super::dispatch::{Dispatched, dispatch};
use super::reply::{self, Shape};
use super::session::Session;
use crate::connection::{
    Footprint, InFlight, OUTPUT_FLUSH_BYTES, READ_CHUNK_BYTES, client_gone, elapsed_ns, read_more,
    shrink, write_output,
};
use crate::pending::{BoxFuture, Pending};
use crate::shards::before_pipelined_reply;
use crate::state::{ByteTally, NodeCounters, NodeState, ShutdownSignal};

/// A reply that comes after one not yet known.
enum Queued {
    /// Encoded bytes.
    Bytes(BytesMut),
    /// A store reply to encode in a shape.
    Store {
        reply: BoxFuture<Reply>,
        shape: Shape,
        protocol: ProtocolVersion,
        stat: Stat,
        /// A reply that may take minutes (`SCD.LOCK … WAIT`): while it waits, the client's
        /// leaving is watched for (`client_gone`).
        waits_long: bool,
    },
    /// A reply that encodes itself.
    Encoded {
        bytes: BoxFuture<BytesMut>,
        stat: Stat,
    },
}

/// What to record in the command statistics once a queued reply is known.
#[derive(Clone, Copy)]
struct Stat {
    command_index: usize,
    started: Instant,
}

/// Serves one RESP connection until the client leaves, sends QUIT, breaks the protocol, or the
/// node shuts down.
pub(crate) async fn serve(state: Arc<NodeState>, mut stream: TcpStream, mut session: Session) {
    let mut tally = ByteTally::new(&state.counters);
    let mut parser = RequestParser::new();
    let mut input = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut output = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut queue: VecDeque<Queued> = VecDeque::new();
    // Partitions of the commands whose replies are still pending in `queue`.
    let mut in_flight = InFlight::default();
    let mut shutdown = ShutdownSignal::new(&state.shutdown);
    let mut batch: Vec<Parsed> = Vec::with_capacity(BATCH_MAX);
    // The input's length when the parser last found no complete request in it: bytes beyond it
    // were read while a reply waited (`client_gone`), and the requests they may hold run before
    // the connection waits for the client again.
    let mut input_len_parsed = 0_usize;
    loop {
        // Run every complete request in the input, a batch at a time.
        let mut close = false;
        let mut num_requests = 0_usize;
        'input: loop {
            let parsed = parse_batch(&mut parser, &mut input, &session, &state.config, &mut batch);
            if matches!(parsed, Ok(false)) {
                input_len_parsed = input.len();
            }
            if batch.len() > 1 && session.authenticated {
                prefetch_keys(&state, session.db, &batch);
            }
            for Parsed {
                args,
                command_index_opt,
            } in batch.drain(..)
            {
                num_requests += 1;
                if let Some(prepared) = prepare(
                    &state,
                    &mut session,
                    args,
                    command_index_opt,
                    &mut output,
                    &mut queue,
                ) {
                    let footprint = footprint_of(&state, &prepared.command);
                    // A command never overtakes an earlier one of the same partition that
                    // is still pending (a relay in flight): it waits for it (PROTOCOL.md §12).
                    if in_flight.conflicts_with(&footprint) {
                        let client = (&mut tally, &mut stream, &mut input);
                        if drain_queue(&state, &mut queue, &mut output, client)
                            .await
                            .is_err()
                        {
                            return;
                        }
                        in_flight.clear();
                    }
                    if run_prepared(&state, &mut session, prepared, &mut output, &mut queue) {
                        in_flight.add(footprint);
                    }
                }
                if session.closing {
                    close = true;
                    break 'input;
                }
                if output.len() >= OUTPUT_FLUSH_BYTES
                    && queue.is_empty()
                    && write_output(&mut tally, &mut stream, &mut output)
                        .await
                        .is_err()
                {
                    return;
                }
            }
            match parsed {
                Ok(true) => {}
                Ok(false) => break,
                Err(error) => {
                    // The input is out of step with request boundaries: answer and close.
                    tracing::debug!(client = %session.peer, %error, "protocol error; closing the connection");
                    NodeCounters::add(&state.counters.error_replies, 1);
                    state
                        .metrics
                        .client_errors
                        .inc(admin::ClientErrorKind::Protocol);
                    let line = protocol_error_line(
                        &error,
                        session.authenticated,
                        state.config.max_value_bytes,
                    );
                    let target = target_buffer(&mut output, &mut queue);
                    ReplyEncoder::new(target, session.protocol).error(line);
                    close = true;
                    break;
                }
            }
        }
        in_flight.clear();
        before_pipelined_reply(num_requests, output.len()).await;
        if drain_queue(
            &state,
            &mut queue,
            &mut output,
            (&mut tally, &mut stream, &mut input),
        )
        .await
        .is_err()
            || write_output(&mut tally, &mut stream, &mut output)
                .await
                .is_err()
            || close
        {
            return;
        }
        shrink(&mut output);
        if input.len() != input_len_parsed {
            // Read while a reply waited: parse it before reading more.
            continue;
        }
        if input.is_empty() {
            shrink(&mut input);
        }
        // Read more: at least what the request being read still needs, when that is known.
        let wanted = parser.bytes_needed_hint(&input).max(READ_CHUNK_BYTES);
        if read_more(&mut shutdown, &mut tally, &mut stream, &mut input, wanted)
            .await
            .is_err()
        {
            return;
        }
    }
}

/// The line sent before closing a connection for `error`. Before AUTH the limits in force are
/// the small pre-authentication ones, not `--max-value-bytes`: naming that flag would mislead,
/// so the refusal is worded as Redis words it (`Protocol error: unauthenticated bulk length`).
/// After it, an argument may be as long as a key when `--max-value-bytes` is below the key
/// limit (`session::full_limits`): one longer than both is refused naming both.
fn protocol_error_line(
    error: &ProtocolError,
    authenticated: bool,
    max_value_bytes: usize,
) -> String {
    match error {
        ProtocolError::ValueTooLarge { .. } if !authenticated => {
            "ERR Protocol error: unauthenticated bulk length".to_string()
        }
        ProtocolError::ValueTooLarge { max_bulk_bytes } if *max_bulk_bytes > max_value_bytes => {
            format!(
                "ERR argument is larger than max-key-bytes ({max_bulk_bytes}), the most any \
                 argument may be (values: max-value-bytes, {max_value_bytes})"
            )
        }
        ProtocolError::TooManyArguments { .. } if !authenticated => {
            "ERR Protocol error: unauthenticated multibulk length".to_string()
        }
        _ => error.reply_line(),
    }
}

/// Requests parsed ahead and run as one batch (`parse_batch`).
const BATCH_MAX: usize = 16;

/// A request parsed, with its row of the command table when the name is known.
struct Parsed {
    args: Vec<bytes::Bytes>,
    command_index_opt: Option<usize>,
}

/// Parses up to `BATCH_MAX` complete requests from `input` into `batch`, so that their keys can
/// be prefetched together before any of them runs (`prefetch_keys`). Returns whether more
/// complete requests may follow, or the protocol error met after the requests in `batch`.
///
/// Every request is parsed under the limits the session has when it is read, as if the batch's
/// earlier requests had run: the limits change only with authentication, and a request that can
/// change it (AUTH, HELLO, RESET: flagged `NO_AUTH`, with QUIT) ends the batch.
fn parse_batch(
    parser: &mut RequestParser,
    input: &mut BytesMut,
    session: &Session,
    config: &crate::config::NodeConfig,
    batch: &mut Vec<Parsed>,
) -> Result<bool, ProtocolError> {
    let limits = session.limits(config);
    while batch.len() < BATCH_MAX {
        let Some(request) = parser.parse(input, &limits)? else {
            return Ok(false);
        };
        let args = request.into_args();
        // The name's row of the command table: the statistics index, and what the parser needs.
        let command_index_opt = args
            .first()
            .and_then(|name| resp::table::lookup_index(name));
        let ends_batch = command_index_opt.is_some_and(|index| {
            resp::table::COMMAND_TABLE[index]
                .flags
                .contains(resp::table::CommandFlags::NO_AUTH)
        });
        batch.push(Parsed {
            args,
            command_index_opt,
        });
        if ends_batch {
            break;
        }
    }
    Ok(true)
}

/// Starts loading the data the batch's single-key commands will read (`Router::prefetch`):
/// with several requests in one read, their cache misses (table slot, key, value) are then taken
/// together instead of stalling each request in turn. A hint: a key of another database (a
/// SELECT in the batch) costs a lookup and nothing else, and a key whose primary is another
/// node is not looked up.
fn prefetch_keys(state: &NodeState, db: u8, batch: &[Parsed]) {
    for parsed in batch {
        let Some(index) = parsed.command_index_opt else {
            continue;
        };
        if let resp::table::KeySpec::Range { first: 1, .. } =
            resp::table::COMMAND_TABLE[index].key_spec
            && let Some(key) = parsed.args.get(1)
        {
            state.router.prefetch(db, key);
        }
    }
}

/// Where a reply known now goes: straight to the output, or behind the queued replies.
fn target_buffer<'a>(
    output: &'a mut BytesMut,
    queue: &'a mut VecDeque<Queued>,
) -> &'a mut BytesMut {
    if queue.is_empty() {
        return output;
    }
    if !matches!(queue.back(), Some(Queued::Bytes(_))) {
        queue.push_back(Queued::Bytes(BytesMut::new()));
    }
    match queue.back_mut() {
        Some(Queued::Bytes(bytes)) => bytes,
        _ => unreachable!("a Bytes entry was pushed just above"),
    }
}

/// A request that passed authentication and parsing, ready to run.
struct Prepared {
    command: Command,
    command_index: usize,
    started: Instant,
}

/// Checks authentication and parses; errors are answered here and yield `None`.
fn prepare(
    state: &Arc<NodeState>,
    session: &mut Session,
    args: Vec<bytes::Bytes>,
    command_index_opt: Option<usize>,
    output: &mut BytesMut,
    queue: &mut VecDeque<Queued>,
) -> Option<Prepared> {
    let started = Instant::now();
    session.last_command_at = started;
    if let Some(index) = command_index_opt {
        session.last_command = resp::table::COMMAND_TABLE[index].name;
    }
    let protocol = session.protocol;

    // An HTTP request sent to this port (a browser made to POST here by a web page: cross
    // protocol scripting) is not run line by line: the connection is closed unanswered, as
    // Redis closes it. Neither name is a command, so only unknown names are compared.
    if command_index_opt.is_none()
        && args.first().is_some_and(|name| {
            name.eq_ignore_ascii_case(b"post") || name.eq_ignore_ascii_case(b"host:")
        })
    {
        tracing::warn!(
            client = %session.peer,
            "possible security attack: a POST or Host: line on the Redis port (cross protocol \
             scripting); connection closed"
        );
        NodeCounters::add(&state.counters.error_replies, 1);
        state
            .metrics
            .client_errors
            .inc(admin::ClientErrorKind::Protocol);
        session.closing = true;
        return None;
    }

    // Before AUTH only the commands flagged no-auth run (AUTH, HELLO, QUIT, RESET).
    if !session.authenticated {
        let allowed = command_index_opt.is_some_and(|index| {
            resp::table::COMMAND_TABLE[index]
                .flags
                .contains(resp::table::CommandFlags::NO_AUTH)
        });
        if !allowed {
            NodeCounters::add(&state.counters.error_replies, 1);
            state
                .metrics
                .client_errors
                .inc(admin::ClientErrorKind::Auth);
            ReplyEncoder::new(target_buffer(output, queue), protocol)
                .error("NOAUTH Authentication required.");
            return None;
        }
    }

    match Command::parse_looked_up(args, command_index_opt) {
        // Unknown commands were refused by the parser, so the index is known here.
        Ok(command) => Some(Prepared {
            command,
            command_index: command_index_opt.unwrap_or(0),
            started,
        }),
        Err(error) => {
            NodeCounters::add(&state.counters.error_replies, 1);
            state
                .metrics
                .client_errors
                .inc(admin::ClientErrorKind::Command);
            ReplyEncoder::new(target_buffer(output, queue), protocol).error(error.reply_line());
            if let Some(index) = command_index_opt {
                state.command_stats.record(index, elapsed_ns(started), true);
            }
            None
        }
    }
}

/// Runs a prepared command. Returns whether its reply is pending (queued, not yet known).
fn run_prepared(
    state: &Arc<NodeState>,
    session: &mut Session,
    prepared: Prepared,
    output: &mut BytesMut,
    queue: &mut VecDeque<Queued>,
) -> bool {
    let Prepared {
        command,
        command_index,
        started,
    } = prepared;
    let protocol = session.protocol;
    let stat = Stat {
        command_index,
        started,
    };
    let waits_long = matches!(
        &command,
        Command::Scd(resp::ScdCommand::Lock { wait_ms, .. }) if *wait_ms > 0
    );
    let dispatched = dispatch(state, session, command, target_buffer(output, queue));
    match dispatched {
        Dispatched::Written => {
            state
                .command_stats
                .record(command_index, elapsed_ns(started), false);
            false
        }
        Dispatched::Store(Pending::Ready(reply), shape) => {
            let is_error = matches!(reply, Reply::Error(_));
            if is_error {
                note_store_error(state, &reply);
            }
            reply::encode(
                &reply,
                shape,
                &mut ReplyEncoder::new(target_buffer(output, queue), protocol),
            );
            state
                .command_stats
                .record(command_index, elapsed_ns(started), is_error);
            false
        }
        Dispatched::Store(Pending::Later(reply), shape) => {
            queue.push_back(Queued::Store {
                reply,
                shape,
                protocol,
                stat,
                waits_long,
            });
            true
        }
        Dispatched::Encoded(bytes) => {
            queue.push_back(Queued::Encoded { bytes, stat });
            true
        }
    }
}

/// The partitions `command` touches, for the ordering rule.
fn footprint_of(state: &NodeState, command: &Command) -> Footprint {
    use resp::{KeyCommand, ServerCommand};
    match command {
        Command::Key(KeyCommand::Scan(_) | KeyCommand::Keys { .. })
        | Command::Server(
            ServerCommand::DbSize | ServerCommand::FlushDb { .. } | ServerCommand::FlushAll { .. },
        ) => Footprint::All,
        _ => Footprint::of_keys(state, command.keys()),
    }
}

fn note_store_error(state: &NodeState, reply: &Reply) {
    NodeCounters::add(&state.counters.error_replies, 1);
    if let Reply::Error(error) = reply {
        match error {
            store::StoreError::OutOfMemory { .. } => {
                state.metrics.client_errors.inc(admin::ClientErrorKind::Oom)
            }
            store::StoreError::ValueTooLarge { .. }
            | store::StoreError::KeyTooLarge { .. }
            | store::StoreError::TooManyHashFields { .. } => state
                .metrics
                .client_errors
                .inc(admin::ClientErrorKind::Limit),
            _ => {}
        }
    }
}

/// Waits for the queued replies in order and appends them to the output. Fails when the client
/// went away while a reply that waits long was pending (`client_gone`).
async fn drain_queue(
    state: &NodeState,
    queue: &mut VecDeque<Queued>,
    output: &mut BytesMut,
    client: (&mut ByteTally<'_>, &mut TcpStream, &mut BytesMut),
) -> Result<(), ()> {
    let (tally, stream, input) = client;
    while let Some(queued) = queue.pop_front() {
        match queued {
            Queued::Bytes(bytes) => output.extend_from_slice(&bytes),
            Queued::Store {
                mut reply,
                shape,
                protocol,
                stat,
                waits_long,
            } => {
                let reply = if waits_long {
                    tokio::select! {
                        biased;
                        reply = &mut reply => reply,
                        () = client_gone(tally, stream, input) => return Err(()),
                    }
                } else {
                    reply.await
                };
                let is_error = matches!(reply, Reply::Error(_));
                if is_error {
                    note_store_error(state, &reply);
                }
                reply::encode(&reply, shape, &mut ReplyEncoder::new(output, protocol));
                state
                    .command_stats
                    .record(stat.command_index, elapsed_ns(stat.started), is_error);
            }
            Queued::Encoded { bytes, stat } => {
                let bytes = bytes.await;
                let is_error = bytes.first() == Some(&b'-');
                output.extend_from_slice(&bytes);
                state
                    .command_stats
                    .record(stat.command_index, elapsed_ns(stat.started), is_error);
            }
        }
    }
    Ok(())
}
