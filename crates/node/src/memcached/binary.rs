//! The binary protocol: every opcode the codec decodes, with memcached's statuses and quiet rules
//! (the codec's `encode_*` functions apply those; this file picks the one for each outcome).

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use memcache::binary::{
    BinaryCommand, BinaryError, BinaryParser, BinaryRequest, Status, encode_counter, encode_error,
    encode_failure, encode_failure_saying, encode_get_hit, encode_get_miss, encode_response,
    encode_sasl_authenticated, encode_sasl_mechanisms, encode_stat, encode_stat_end,
    encode_success, encode_version, opcode,
};
use memcache::{Direction, Limits, StoreMode};
use store::{Op, StoreError};

use super::auth::{self, BEFORE_AUTH_LIMITS, SASL_MECHANISMS};
use super::conn::{Answer, FrontEnd, Next, Replies, Stat, Step};
use super::flush::flush_all;
use super::ops::{
    self, CounterCommand, CounterOutcome, DeleteOutcome, MEMCACHED_DB, StoreCommand, StoreOutcome,
};
use super::stats::{self, Command, Counters, StatsAnswer};
use super::text::{count_arithmetic, count_store};
use crate::config::NodeConfig;

/// A binary-protocol connection: its parser, and whether it has authenticated.
pub(super) struct BinaryFrontEnd {
    parser: BinaryParser,
    limits: Limits,
    authenticated: bool,
}

/// The opcodes memcached runs before SASL authentication (`authenticated()` in `proto_bin.c`).
fn allowed_before_auth(opcode: u8) -> bool {
    matches!(
        opcode,
        opcode::SASL_LIST_MECHS | opcode::SASL_AUTH | opcode::SASL_STEP | opcode::VERSION
    )
}

impl BinaryFrontEnd {
    pub(super) fn new(config: &NodeConfig) -> BinaryFrontEnd {
        BinaryFrontEnd {
            parser: BinaryParser::new(),
            limits: Limits {
                max_value_bytes: config.max_value_bytes,
                ..Limits::default()
            },
            authenticated: config.requirepass_opt.is_none(),
        }
    }
}

impl FrontEnd for BinaryFrontEnd {
    type Request = BinaryRequest;

    fn next(&mut self, input: &mut BytesMut, replies: &mut Replies<'_>) -> Next<BinaryRequest> {
        let limits = if self.authenticated {
            self.limits
        } else {
            BEFORE_AUTH_LIMITS
        };
        match self.parser.parse(input, &limits) {
            Ok(None) => Next::Incomplete,
            Ok(Some(request)) => {
                if !self.authenticated && !allowed_before_auth(request.header.opcode) {
                    // memcached answers "auth error" and closes the connection.
                    replies.refused(Some(admin::ClientErrorKind::Auth));
                    encode_failure(replies.buffer(), &request, Status::AuthError);
                    return Next::Answered(Step::Close);
                }
                Next::Request(request)
            }
            Err(error) => {
                let header = *error.header();
                if !self.authenticated && !allowed_before_auth(header.opcode) {
                    replies.refused(Some(admin::ClientErrorKind::Auth));
                    let status = Status::AuthError;
                    let message = status.message().as_bytes();
                    let out = replies.buffer();
                    encode_response(
                        out,
                        header.opcode,
                        status,
                        header.opaque,
                        0,
                        &[],
                        &[],
                        message,
                    );
                    return Next::Answered(Step::Close);
                }
                let kind = match error {
                    BinaryError::KeyTooLong { .. } | BinaryError::ValueTooLarge { .. } => {
                        admin::ClientErrorKind::Limit
                    }
                    _ => admin::ClientErrorKind::Protocol,
                };
                replies.refused(Some(kind));
                encode_error(replies.buffer(), &error);
                Next::Answered(if error.closes_connection() {
                    Step::Close
                } else {
                    Step::Ran
                })
            }
        }
    }

    fn keys<'r>(&self, request: &'r BinaryRequest) -> &'r [Bytes] {
        match &request.command {
            BinaryCommand::Get { key, .. }
            | BinaryCommand::GetAndTouch { key, .. }
            | BinaryCommand::Touch { key, .. }
            | BinaryCommand::Store { key, .. }
            | BinaryCommand::Delete { key, .. }
            | BinaryCommand::Arithmetic { key, .. } => std::slice::from_ref(key),
            BinaryCommand::Flush { .. }
            | BinaryCommand::Noop
            | BinaryCommand::Verbosity { .. }
            | BinaryCommand::Version
            | BinaryCommand::Quit { .. }
            | BinaryCommand::Stat { .. }
            | BinaryCommand::SaslListMechanisms
            | BinaryCommand::SaslAuth { .. }
            | BinaryCommand::SaslStep { .. } => &[],
        }
    }

    fn touches_all(&self, request: &BinaryRequest) -> bool {
        matches!(request.command, BinaryCommand::Flush { .. })
    }

    fn parses_ahead(&self) -> bool {
        // SASL authentication runs as a request and changes the limits the next one is read
        // under; once authenticated, nothing changes them.
        self.authenticated
    }

    fn closes(&self, request: &BinaryRequest) -> bool {
        matches!(request.command, BinaryCommand::Quit { .. })
    }

    fn run(&mut self, request: BinaryRequest, replies: &mut Replies<'_>) -> Step {
        let started = Instant::now();
        let state = replies.state;
        let router = &state.router;
        match &request.command {
            BinaryCommand::Get { key, .. } => {
                let pending = router.execute(MEMCACHED_DB, ops::read_op(key.clone(), None));
                let stat = Stat::new(Command::Get, started);
                replies.send(stat, pending, move |reply, out, counters| {
                    read_answer(&request, reply, false, out, counters)
                });
            }
            BinaryCommand::GetAndTouch { key, exptime, .. } => {
                let target = ops::expire_target(*exptime, state.now_ms());
                let op = ops::read_op(key.clone(), Some(target));
                let pending = router.execute(MEMCACHED_DB, op);
                let stat = Stat::new(Command::Gat, started);
                replies.send(stat, pending, move |reply, out, counters| {
                    read_answer(&request, reply, true, out, counters)
                });
            }
            BinaryCommand::Touch { key, exptime } => {
                // The answer carries the item's flags, so the touch reads the item too; the
                // codec leaves its value out of the answer.
                let target = ops::expire_target(*exptime, state.now_ms());
                let op = ops::read_op(key.clone(), Some(target));
                let pending = router.execute(MEMCACHED_DB, op);
                let stat = Stat::new(Command::Touch, started);
                replies.send(stat, pending, move |reply, out, counters| {
                    read_answer(&request, reply, true, out, counters)
                });
            }
            BinaryCommand::Store {
                mode,
                key,
                client_flags,
                exptime,
                value,
                compare_cas_opt,
                ..
            } => {
                let mode = *mode;
                let is_cas = compare_cas_opt.is_some();
                let command = match (mode, is_cas) {
                    (_, true) => Command::Cas,
                    (StoreMode::Set, false) => Command::Set,
                    (StoreMode::Add, false) => Command::Add,
                    (StoreMode::Replace, false) => Command::Replace,
                    (StoreMode::Append, false) => Command::Append,
                    (StoreMode::Prepend, false) => Command::Prepend,
                };
                let op = StoreCommand {
                    mode,
                    key: key.clone(),
                    value: value.clone(),
                    client_flags: *client_flags,
                    exptime: *exptime,
                    compare_cas_opt: *compare_cas_opt,
                }
                .into_op(state.now_ms());
                let pending = router.execute(MEMCACHED_DB, op);
                replies.send(
                    Stat::new(command, started),
                    pending,
                    move |reply, out, counters| {
                        let outcome = StoreOutcome::of(mode, reply);
                        count_store(counters, is_cas, &outcome);
                        let status = match outcome {
                            StoreOutcome::Stored { cas } => {
                                encode_success(out, &request, cas);
                                return Answer::Normal;
                            }
                            // memcached: ADD of a present key "exists", REPLACE of a missing
                            // one "not found", APPEND/PREPEND to a missing one "not stored".
                            StoreOutcome::NotStored => match mode {
                                StoreMode::Add => Status::KeyExists,
                                StoreMode::Replace => Status::KeyNotFound,
                                _ => Status::ItemNotStored,
                            },
                            StoreOutcome::Exists => Status::KeyExists,
                            StoreOutcome::NotFound => Status::KeyNotFound,
                            StoreOutcome::Failed(error) => {
                                return failure_for(&request, &error, out);
                            }
                            StoreOutcome::Unexpected => return unexpected(&request, out),
                        };
                        encode_failure(out, &request, status);
                        Answer::Normal
                    },
                );
            }
            BinaryCommand::Delete {
                key,
                compare_cas_opt,
                ..
            } => {
                let op = Op::Delete {
                    key: key.clone(),
                    cas_opt: *compare_cas_opt,
                };
                let pending = router.execute(MEMCACHED_DB, op);
                let stat = Stat::new(Command::Delete, started);
                replies.send(stat, pending, move |reply, out, counters| {
                    let status = match DeleteOutcome::of(reply) {
                        DeleteOutcome::Deleted => {
                            Counters::add(&counters.delete_hits, 1);
                            encode_success(out, &request, 0);
                            return Answer::Normal;
                        }
                        DeleteOutcome::NotFound => {
                            Counters::add(&counters.delete_misses, 1);
                            Status::KeyNotFound
                        }
                        DeleteOutcome::Exists => Status::KeyExists,
                        DeleteOutcome::Failed(error) => return failure_for(&request, &error, out),
                        DeleteOutcome::Unexpected => return unexpected(&request, out),
                    };
                    encode_failure(out, &request, status);
                    Answer::Normal
                });
            }
            BinaryCommand::Arithmetic {
                key,
                direction,
                delta,
                create_opt,
                compare_cas_opt,
                ..
            } => {
                let direction = *direction;
                let counter_op = CounterCommand {
                    key: key.clone(),
                    direction,
                    delta: *delta,
                    compare_cas_opt: *compare_cas_opt,
                    create_opt: create_opt.map(|create| (create.initial, create.exptime)),
                }
                .into_op(state.now_ms());
                let expired_initial_opt = counter_op.expired_initial_opt;
                let pending = router.execute(MEMCACHED_DB, counter_op.op);
                let command = match direction {
                    Direction::Increment => Command::Incr,
                    Direction::Decrement => Command::Decr,
                };
                replies.send(
                    Stat::new(command, started),
                    pending,
                    move |reply, out, counters| {
                        let outcome = CounterOutcome::of(reply, expired_initial_opt);
                        count_arithmetic(counters, direction, &outcome);
                        let status = match outcome {
                            CounterOutcome::Done { value, cas } => {
                                encode_counter(out, &request, value, cas);
                                return Answer::Normal;
                            }
                            CounterOutcome::NotFound => Status::KeyNotFound,
                            CounterOutcome::Exists => Status::KeyExists,
                            CounterOutcome::NonNumeric => {
                                encode_failure(out, &request, Status::NonNumericValue);
                                return Answer::Error(None);
                            }
                            CounterOutcome::Failed(error) => {
                                return failure_for(&request, &error, out);
                            }
                            CounterOutcome::Unexpected => return unexpected(&request, out),
                        };
                        encode_failure(out, &request, status);
                        Answer::Normal
                    },
                );
            }
            BinaryCommand::Flush { delay_seconds, .. } => {
                let pending = flush_all(state, replies.node, *delay_seconds);
                let stat = Stat::new(Command::FlushAll, started);
                replies.send(stat, pending, move |result, out, counters| {
                    Counters::add(&counters.cmd_flush, 1);
                    match result {
                        Ok(()) => {
                            encode_success(out, &request, 0);
                            Answer::Normal
                        }
                        Err(error) => failure_for(&request, &error, out),
                    }
                });
            }
            BinaryCommand::Noop => {
                replies.now(Stat::new(Command::Noop, started), |out, _| {
                    encode_success(out, &request, 0);
                    Answer::Normal
                });
            }
            BinaryCommand::Verbosity { .. } => {
                replies.now(Stat::new(Command::Verbosity, started), |out, _| {
                    encode_success(out, &request, 0);
                    Answer::Normal
                });
            }
            BinaryCommand::Version => {
                replies.now(Stat::new(Command::Version, started), |out, _| {
                    encode_version(out, &request, super::VERSION);
                    Answer::Normal
                });
            }
            BinaryCommand::Quit { .. } => {
                replies.now(Stat::new(Command::Quit, started), |out, _| {
                    encode_success(out, &request, 0);
                    Answer::Normal
                });
                return Step::Close;
            }
            BinaryCommand::Stat { group_opt } => {
                let answer = stats::answer(state, replies.node, group_opt.as_deref());
                replies.now(Stat::new(Command::Stats, started), |out, _| match answer {
                    StatsAnswer::Lines(lines) => {
                        for (name, value) in lines {
                            encode_stat(out, &request, name, &value);
                        }
                        encode_stat_end(out, &request);
                        Answer::Normal
                    }
                    StatsAnswer::Reset => {
                        encode_stat_end(out, &request);
                        Answer::Normal
                    }
                    StatsAnswer::UnknownGroup => {
                        encode_failure(out, &request, Status::KeyNotFound);
                        Answer::Error(Some(admin::ClientErrorKind::Protocol))
                    }
                });
            }
            BinaryCommand::SaslListMechanisms => {
                let stat = Stat::new(Command::SaslListMechanisms, started);
                replies.now(stat, |out, _| {
                    encode_sasl_mechanisms(out, &request, SASL_MECHANISMS);
                    Answer::Normal
                });
            }
            BinaryCommand::SaslAuth { mechanism, data } => {
                let authenticated = auth::sasl_authenticates(&state.config, mechanism, data);
                self.authenticated |= authenticated;
                replies.now(Stat::new(Command::Auth, started), |out, counters| {
                    Counters::add(&counters.auth_cmds, 1);
                    if authenticated {
                        encode_sasl_authenticated(out, &request);
                        Answer::Normal
                    } else {
                        Counters::add(&counters.auth_errors, 1);
                        encode_failure(out, &request, Status::AuthError);
                        Answer::Error(Some(admin::ClientErrorKind::Auth))
                    }
                });
            }
            BinaryCommand::SaslStep { .. } => {
                // PLAIN is done in one step: there is nothing to continue.
                replies.now(Stat::new(Command::SaslStep, started), |out, counters| {
                    Counters::add(&counters.auth_cmds, 1);
                    Counters::add(&counters.auth_errors, 1);
                    encode_failure(out, &request, Status::AuthError);
                    Answer::Error(Some(admin::ClientErrorKind::Auth))
                });
            }
        }
        Step::Ran
    }
}

/// Answers a get, get-and-touch or touch: the item, or a miss (silent for quiet gets).
fn read_answer(
    request: &BinaryRequest,
    reply: store::Reply,
    touched: bool,
    out: &mut BytesMut,
    counters: &Counters,
) -> Answer {
    match ops::found(reply) {
        Some((value, client_flags, cas)) => {
            counters.count_reads(touched, 1, 0);
            encode_get_hit(out, request, client_flags, cas, &value);
        }
        None => {
            counters.count_reads(touched, 0, 1);
            encode_get_miss(out, request);
        }
    }
    Answer::Normal
}

/// Answers a refusal of the store with memcached's status for it; a limit's refusal names the
/// limit and its value in the body (an APPEND whose result would be too large, say).
fn failure_for(request: &BinaryRequest, error: &StoreError, out: &mut BytesMut) -> Answer {
    let (status, kind_opt) = match error {
        StoreError::ValueTooLarge { .. } => {
            (Status::ValueTooLarge, Some(admin::ClientErrorKind::Limit))
        }
        StoreError::OutOfMemory { .. } => (Status::OutOfMemory, Some(admin::ClientErrorKind::Oom)),
        StoreError::NonNumericValue => (Status::NonNumericValue, None),
        // A RESP hash under the key: the item cannot be changed the memcached way.
        StoreError::WrongType => (Status::ItemNotStored, None),
        // No reachable primary, and whatever else the store may add: a failure of the server,
        // not of the request, told in the error's own words.
        other => return server_failure(request, &other.to_string(), out),
    };
    if kind_opt.is_some() {
        encode_failure_saying(out, request, status, &error.to_string());
    } else {
        encode_failure(out, request, status);
    }
    Answer::Error(kind_opt)
}

/// Answers a failure of the server with `message` as the body, under memcached's status 0x0086
/// "temporary failure": the request was fine and may be retried (a partition between owners, or
/// a write its backups did not acknowledge in time, which the message says).
fn server_failure(request: &BinaryRequest, message: &str, out: &mut BytesMut) -> Answer {
    encode_failure_saying(out, request, Status::TemporaryFailure, message);
    Answer::Error(None)
}

/// Answers a reply no op of this command gives (a bug) without panicking.
fn unexpected(request: &BinaryRequest, out: &mut BytesMut) -> Answer {
    server_failure(request, "unexpected reply from the store", out)
}
