//! The text protocol: classic commands here, meta commands in `meta.rs`.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use memcache::text::{
    ArithmeticRequest, GetRequest, ReplyKind, StoreRequest, TextError, TextParser, TextRequest,
    TextStatus, encode_client_error, encode_error, encode_number, encode_server_error, encode_stat,
    encode_status, encode_value, encode_version,
};
use memcache::{Direction, Limits, StoreMode};
use store::{Op, StoreError};

use super::auth::{self, BEFORE_AUTH_LIMITS};
use super::conn::{Answer, FrontEnd, Next, Replies, Stat, Step};
use super::flush::flush_all;
use super::meta;
use super::ops::{
    self, CounterCommand, CounterOutcome, DeleteOutcome, MEMCACHED_DB, StoreCommand, StoreOutcome,
};
use super::stats::{self, Command, Counters, StatsAnswer};
use crate::config::NodeConfig;

/// A text-protocol connection: its parser, and whether it has authenticated.
pub(super) struct TextFrontEnd {
    parser: TextParser,
    limits: Limits,
    authenticated: bool,
}

impl TextFrontEnd {
    pub(super) fn new(config: &NodeConfig) -> TextFrontEnd {
        TextFrontEnd {
            parser: TextParser::new(),
            limits: Limits {
                max_value_bytes: config.max_value_bytes,
                ..Limits::default()
            },
            authenticated: config.requirepass_opt.is_none(),
        }
    }
}

impl FrontEnd for TextFrontEnd {
    type Request = TextRequest;

    fn next(&mut self, input: &mut BytesMut, replies: &mut Replies<'_>) -> Next<TextRequest> {
        let limits = if self.authenticated {
            self.limits
        } else {
            BEFORE_AUTH_LIMITS
        };
        match self.parser.parse(input, &limits) {
            Ok(None) => Next::Incomplete,
            Ok(Some(request)) => {
                if self.authenticated {
                    Next::Request(request)
                } else {
                    Next::Answered(self.before_auth(request, replies))
                }
            }
            Err(error) => {
                let kind = match error {
                    TextError::LineTooLong
                    | TextError::ObjectTooLarge { .. }
                    | TextError::TooManyKeys { .. }
                    | TextError::TooManyFlags => admin::ClientErrorKind::Limit,
                    _ => admin::ClientErrorKind::Protocol,
                };
                replies.refused(Some(kind));
                if self.authenticated {
                    encode_error(replies.buffer(), &error);
                } else {
                    encode_client_error(replies.buffer(), unauthenticated_message(&error));
                }
                Next::Answered(if error.closes_connection() {
                    Step::Close
                } else {
                    Step::Ran
                })
            }
        }
    }

    fn keys<'r>(&self, request: &'r TextRequest) -> &'r [Bytes] {
        let one = std::slice::from_ref;
        match request {
            TextRequest::Get(get) => &get.keys,
            TextRequest::Store(store) => one(&store.key),
            TextRequest::Delete { key, .. } | TextRequest::Touch { key, .. } => one(key),
            TextRequest::Arithmetic(arithmetic) => one(&arithmetic.key),
            TextRequest::MetaGet(meta) => one(&meta.key),
            TextRequest::MetaSet(meta) => one(&meta.key),
            TextRequest::MetaDelete(meta) => one(&meta.key),
            TextRequest::MetaArithmetic(meta) => one(&meta.key),
            TextRequest::FlushAll { .. }
            | TextRequest::Version
            | TextRequest::Stats { .. }
            | TextRequest::Verbosity { .. }
            | TextRequest::Quit
            | TextRequest::MetaNoop => &[],
        }
    }

    fn touches_all(&self, request: &TextRequest) -> bool {
        matches!(request, TextRequest::FlushAll { .. })
    }

    fn parses_ahead(&self) -> bool {
        self.authenticated
    }

    fn closes(&self, request: &TextRequest) -> bool {
        matches!(request, TextRequest::Quit)
    }

    fn run(&mut self, request: TextRequest, replies: &mut Replies<'_>) -> Step {
        run(request, replies)
    }
}

/// What an unauthenticated client is told about a request it got wrong, in memcached's words.
fn unauthenticated_message(error: &TextError) -> &'static str {
    match error {
        TextError::BadDataChunk { .. } => "bad command line termination",
        _ => "unauthenticated",
    }
}

impl TextFrontEnd {
    /// Before authentication only the authenticating `set` and `quit` run.
    fn before_auth(&mut self, request: TextRequest, replies: &mut Replies<'_>) -> Step {
        let started = Instant::now();
        match request {
            TextRequest::Quit => {
                replies.now(Stat::new(Command::Quit, started), |_, _| Answer::Normal);
                Step::Close
            }
            TextRequest::Store(StoreRequest {
                mode: StoreMode::Set,
                compare_cas_opt: None,
                value,
                ..
            }) => {
                let result = auth::text_token_authenticates(&replies.state.config, &value);
                self.authenticated = result.is_ok();
                replies.now(Stat::new(Command::Auth, started), |out, counters| {
                    Counters::add(&counters.auth_cmds, 1);
                    match result {
                        Ok(()) => {
                            encode_status(out, TextStatus::Stored);
                            Answer::Normal
                        }
                        Err(error) => {
                            Counters::add(&counters.auth_errors, 1);
                            encode_client_error(out, error.message());
                            Answer::Error(Some(admin::ClientErrorKind::Auth))
                        }
                    }
                });
                Step::Ran
            }
            _ => {
                replies.refused(Some(admin::ClientErrorKind::Auth));
                encode_client_error(replies.buffer(), "unauthenticated");
                Step::Ran
            }
        }
    }
}

/// Runs one request of an authenticated connection.
fn run(request: TextRequest, replies: &mut Replies<'_>) -> Step {
    let started = Instant::now();
    match request {
        TextRequest::Get(request) => get(request, started, replies),
        TextRequest::Store(request) => store(request, started, replies),
        TextRequest::Delete { key, noreply } => {
            let pending = replies
                .state
                .router
                .execute(MEMCACHED_DB, Op::Delete { key, cas_opt: None });
            let stat = Stat::new(Command::Delete, started);
            replies.send(stat, pending, move |reply, out, counters| {
                let outcome = DeleteOutcome::of(reply);
                let (hits, misses) = (&counters.delete_hits, &counters.delete_misses);
                match outcome {
                    DeleteOutcome::Deleted => Counters::add(hits, 1),
                    DeleteOutcome::NotFound => Counters::add(misses, 1),
                    _ => {}
                }
                let mut reply = Reply::new(out, noreply);
                match outcome {
                    DeleteOutcome::Deleted => reply.status(TextStatus::Deleted),
                    DeleteOutcome::NotFound => reply.status(TextStatus::NotFound),
                    DeleteOutcome::Exists => reply.status(TextStatus::Exists),
                    DeleteOutcome::Failed(error) => reply.store_error(&error),
                    DeleteOutcome::Unexpected => reply.unexpected(),
                }
            });
        }
        TextRequest::Arithmetic(request) => arithmetic(request, started, replies),
        TextRequest::Touch {
            key,
            exptime,
            noreply,
        } => {
            let target = ops::expire_target(exptime, replies.state.now_ms());
            let op = Op::Touch {
                key,
                target,
                return_value: false,
            };
            let pending = replies.state.router.execute(MEMCACHED_DB, op);
            let stat = Stat::new(Command::Touch, started);
            replies.send(stat, pending, move |reply, out, counters| {
                let touched = matches!(reply, store::Reply::Written { .. });
                counters.count_reads(true, u64::from(touched), u64::from(!touched));
                let mut text_reply = Reply::new(out, noreply);
                match reply {
                    store::Reply::Written { .. } => text_reply.status(TextStatus::Touched),
                    store::Reply::NotFound => text_reply.status(TextStatus::NotFound),
                    store::Reply::Error(error) => text_reply.store_error(&error),
                    _ => text_reply.unexpected(),
                }
            });
        }
        TextRequest::FlushAll {
            delay_seconds,
            noreply,
        } => {
            let pending = flush_all(replies.state, replies.node, delay_seconds);
            let stat = Stat::new(Command::FlushAll, started);
            replies.send(stat, pending, move |result, out, counters| {
                Counters::add(&counters.cmd_flush, 1);
                let mut reply = Reply::new(out, noreply);
                match result {
                    Ok(()) => reply.status(TextStatus::Ok),
                    Err(error) => reply.store_error(&error),
                }
            });
        }
        TextRequest::Version => {
            replies.now(Stat::new(Command::Version, started), |out, _| {
                encode_version(out, super::VERSION);
                Answer::Normal
            });
        }
        TextRequest::Stats { arguments } => {
            let answer = stats::answer(
                replies.state,
                replies.node,
                arguments.first().map(|group| &group[..]),
            );
            replies.now(Stat::new(Command::Stats, started), |out, _| match answer {
                StatsAnswer::Lines(lines) => {
                    for (name, value) in lines {
                        encode_stat(out, name, &value);
                    }
                    encode_status(out, TextStatus::End);
                    Answer::Normal
                }
                StatsAnswer::Reset => {
                    encode_status(out, TextStatus::Reset);
                    Answer::Normal
                }
                StatsAnswer::UnknownGroup => {
                    encode_error(out, &TextError::UnknownCommand);
                    Answer::Error(Some(admin::ClientErrorKind::Protocol))
                }
            });
        }
        TextRequest::Verbosity { noreply, .. } => {
            // scd's log level is set with --log-level; the command is accepted, as memcached
            // accepts any level.
            replies.now(Stat::new(Command::Verbosity, started), |out, _| {
                Reply::new(out, noreply).status(TextStatus::Ok)
            });
        }
        TextRequest::Quit => {
            replies.now(Stat::new(Command::Quit, started), |_, _| Answer::Normal);
            return Step::Close;
        }
        TextRequest::MetaGet(request) => meta::meta_get(request, started, replies),
        TextRequest::MetaSet(request) => meta::meta_set(request, started, replies),
        TextRequest::MetaDelete(request) => meta::meta_delete(request, started, replies),
        TextRequest::MetaArithmetic(request) => meta::meta_arithmetic(request, started, replies),
        TextRequest::MetaNoop => {
            replies.now(Stat::new(Command::MetaNoop, started), |out, _| {
                memcache::text::encode_meta_noop(out);
                Answer::Normal
            });
        }
    }
    Step::Ran
}

/// `get`, `gets`, `gat`, `gats`: one op per key, `VALUE` blocks for the hits in key order, `END`.
fn get(request: GetRequest, started: Instant, replies: &mut Replies<'_>) {
    let GetRequest {
        keys,
        return_cas,
        touch_exptime_opt,
    } = request;
    let command = match (return_cas, touch_exptime_opt.is_some()) {
        (false, false) => Command::Get,
        (true, false) => Command::Gets,
        (false, true) => Command::Gat,
        (true, true) => Command::Gats,
    };
    let state = replies.state;
    let touch_opt = touch_exptime_opt.map(|exptime| ops::expire_target(exptime, state.now_ms()));
    let pendings = keys
        .iter()
        .map(|key| {
            state
                .router
                .execute(MEMCACHED_DB, ops::read_op(key.clone(), touch_opt))
        })
        .collect();
    let pending = crate::pending::Pending::join_all(pendings);
    replies.send(
        Stat::new(command, started),
        pending,
        move |values, out, counters| {
            let mut num_hits = 0;
            for (key, reply) in keys.iter().zip(values) {
                if let Some((value, client_flags, cas)) = ops::found(reply) {
                    encode_value(out, key, client_flags, &value, return_cas.then_some(cas));
                    num_hits += 1;
                }
            }
            encode_status(out, TextStatus::End);
            counters.count_reads(touch_opt.is_some(), num_hits, keys.len() as u64 - num_hits);
            Answer::Normal
        },
    );
}

/// `set`, `add`, `replace`, `append`, `prepend`, `cas`.
fn store(request: StoreRequest, started: Instant, replies: &mut Replies<'_>) {
    let StoreRequest {
        mode,
        key,
        client_flags,
        exptime,
        value,
        compare_cas_opt,
        noreply,
    } = request;
    let command = match (mode, compare_cas_opt) {
        (_, Some(_)) => Command::Cas,
        (StoreMode::Set, None) => Command::Set,
        (StoreMode::Add, None) => Command::Add,
        (StoreMode::Replace, None) => Command::Replace,
        (StoreMode::Append, None) => Command::Append,
        (StoreMode::Prepend, None) => Command::Prepend,
    };
    let op = StoreCommand {
        mode,
        key,
        value,
        client_flags,
        exptime,
        compare_cas_opt,
    }
    .into_op(replies.state.now_ms());
    let pending = replies.state.router.execute(MEMCACHED_DB, op);
    let is_cas = compare_cas_opt.is_some();
    replies.send(
        Stat::new(command, started),
        pending,
        move |reply, out, counters| {
            let outcome = StoreOutcome::of(mode, reply);
            count_store(counters, is_cas, &outcome);
            let mut reply = Reply::new(out, noreply);
            match outcome {
                StoreOutcome::Stored { .. } => reply.status(TextStatus::Stored),
                StoreOutcome::NotStored => reply.status(TextStatus::NotStored),
                StoreOutcome::Exists => reply.status(TextStatus::Exists),
                StoreOutcome::NotFound => reply.status(TextStatus::NotFound),
                StoreOutcome::Failed(error) => reply.store_error(&error),
                StoreOutcome::Unexpected => reply.unexpected(),
            }
        },
    );
}

/// Counts a storage command the way memcached's `cmd_set`, `cas_*` and `total_items` do.
pub(super) fn count_store(counters: &Counters, is_cas: bool, outcome: &StoreOutcome) {
    Counters::add(&counters.cmd_set, 1);
    if let StoreOutcome::Stored { .. } = outcome {
        Counters::add(&counters.total_items, 1);
    }
    if is_cas {
        match outcome {
            StoreOutcome::Stored { .. } => Counters::add(&counters.cas_hits, 1),
            StoreOutcome::Exists => Counters::add(&counters.cas_badval, 1),
            StoreOutcome::NotFound => Counters::add(&counters.cas_misses, 1),
            _ => {}
        }
    }
}

/// Counts an `incr`/`decr` hit or miss.
pub(super) fn count_arithmetic(
    counters: &Counters,
    direction: Direction,
    outcome: &CounterOutcome,
) {
    let (hits, misses) = match direction {
        Direction::Increment => (&counters.incr_hits, &counters.incr_misses),
        Direction::Decrement => (&counters.decr_hits, &counters.decr_misses),
    };
    match outcome {
        CounterOutcome::Done { .. } => Counters::add(hits, 1),
        CounterOutcome::NotFound => Counters::add(misses, 1),
        _ => {}
    }
}

/// `incr`, `decr`.
fn arithmetic(request: ArithmeticRequest, started: Instant, replies: &mut Replies<'_>) {
    let ArithmeticRequest {
        key,
        direction,
        delta,
        noreply,
    } = request;
    let command = match direction {
        Direction::Increment => Command::Incr,
        Direction::Decrement => Command::Decr,
    };
    let counter_op = CounterCommand {
        key,
        direction,
        delta,
        compare_cas_opt: None,
        create_opt: None,
    }
    .into_op(replies.state.now_ms());
    let pending = replies.state.router.execute(MEMCACHED_DB, counter_op.op);
    replies.send(
        Stat::new(command, started),
        pending,
        move |reply, out, counters| {
            let outcome = CounterOutcome::of(reply, counter_op.expired_initial_opt);
            count_arithmetic(counters, direction, &outcome);
            let mut reply = Reply::new(out, noreply);
            match outcome {
                CounterOutcome::Done { value, .. } => reply.number(value),
                CounterOutcome::NotFound => reply.status(TextStatus::NotFound),
                // memcached answers EXISTS only to meta commands; classic ones carry no CAS.
                CounterOutcome::Exists => reply.status(TextStatus::Exists),
                CounterOutcome::NonNumeric => reply.non_numeric(),
                CounterOutcome::Failed(error) => reply.store_error(&error),
                CounterOutcome::Unexpected => reply.unexpected(),
            }
        },
    );
}

/// A classic reply line, dropped when the client asked for `noreply` (memcached drops errors
/// too then).
pub(super) struct Reply<'a> {
    out: &'a mut BytesMut,
    noreply: bool,
}

impl<'a> Reply<'a> {
    pub(super) fn new(out: &'a mut BytesMut, noreply: bool) -> Reply<'a> {
        Reply { out, noreply }
    }

    fn status(&mut self, status: TextStatus) -> Answer {
        if !self.noreply {
            encode_status(self.out, status);
        }
        Answer::Normal
    }

    fn number(&mut self, value: u64) -> Answer {
        if !self.noreply {
            encode_number(self.out, value);
        }
        Answer::Normal
    }

    pub(super) fn non_numeric(&mut self) -> Answer {
        if !self.noreply {
            encode_client_error(self.out, memcache::text::NON_NUMERIC_VALUE_MESSAGE);
        }
        Answer::Error(None)
    }

    /// A refusal of the store in memcached's words where memcached has them (libmemcached
    /// recognises `object too large for cache` and `out of memory`).
    pub(super) fn store_error(&mut self, error: &StoreError) -> Answer {
        let (kind, message, kind_opt) = match error {
            StoreError::ValueTooLarge { .. } => (
                ReplyKind::ServerError,
                "object too large for cache".to_string(),
                Some(admin::ClientErrorKind::Limit),
            ),
            StoreError::OutOfMemory { .. } => (
                ReplyKind::ServerError,
                "out of memory storing object".to_string(),
                Some(admin::ClientErrorKind::Oom),
            ),
            StoreError::NonNumericValue => (
                ReplyKind::ClientError,
                memcache::text::NON_NUMERIC_VALUE_MESSAGE.to_string(),
                None,
            ),
            StoreError::WrongType => (ReplyKind::ClientError, error.to_string(), None),
            other => (ReplyKind::ServerError, other.to_string(), None),
        };
        if !self.noreply {
            match kind {
                ReplyKind::ClientError => encode_client_error(self.out, &message),
                _ => encode_server_error(self.out, &message),
            }
        }
        Answer::Error(kind_opt)
    }

    pub(super) fn unexpected(&mut self) -> Answer {
        if !self.noreply {
            encode_server_error(self.out, "unexpected reply from the store");
        }
        Answer::Error(None)
    }
}
