//! The text protocol's meta commands: `mg`, `ms`, `md`, `ma` (`mn` needs no store and is answered
//! in `text.rs`).
//!
//! A meta command may need more than one store op: `mg ... N` creates the item it missed,
//! `ms ... MA N` creates the item an append missed, `ma ... T` touches the counter it changed,
//! and the `t` flag asks the remaining TTL. The ops run one after the other on the key's
//! partition, each after the previous one's reply (`ops::then`), so they are not one atomic
//! step: another client's write may land between them.
//!
//! Flags that need per-item state the store does not keep are refused with a `CLIENT_ERROR`
//! naming the flag: `mg R` (recache: the win token needs to be remembered per item), `ms I` and
//! `md I` (invalidate: items have no stale mark), and `E` (the CAS of an item is the version the
//! store gives it; a client cannot choose it). `md T` and `md E` apply only with `I` in memcached
//! and are ignored without it. `mg` answers `h0` and `l0`: accesses are not tracked.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use memcache::StoreMode;
use memcache::text::{
    MetaArithmetic, MetaArithmeticOutcome, MetaDelete, MetaDeleteOutcome, MetaFlag, MetaGet,
    MetaGetHit, MetaSet, MetaSetOutcome, encode_client_error, encode_meta_arithmetic,
    encode_meta_delete, encode_meta_get_hit, encode_meta_get_miss, encode_meta_set,
};
use store::{Op, Reply, SetCondition, TimeUnit};

use super::conn::{Answer, Replies, Stat};
use super::ops::{
    self, CounterCommand, CounterOutcome, DeleteOutcome, MEMCACHED_DB, StoreCommand, StoreOutcome,
};
use super::stats::{Command, Counters};
use super::text::{self, Reply as TextReply};
use crate::pending::Pending;
use crate::state::NodeState;

/// Answers a refused flag: always sent, as memcached sends meta errors even to quiet commands.
fn refuse(replies: &mut Replies<'_>, stat: Stat, message: &'static str) {
    replies.now(stat, |out, _| {
        encode_client_error(out, message);
        Answer::Error(Some(admin::ClientErrorKind::Protocol))
    });
}

/// The remaining TTL of `key`, asked after the ops before it, when the request wants `t`.
fn with_ttl<T: Send + 'static>(
    state: Arc<NodeState>,
    key: Bytes,
    wants_ttl: bool,
    pending: Pending<T>,
    is_live: fn(&T) -> bool,
) -> Pending<(T, Option<u64>)> {
    if !wants_ttl {
        return pending.map(|value| (value, None));
    }
    ops::then(pending, move |value| {
        if !is_live(&value) {
            return Pending::Ready((value, None));
        }
        let op = Op::Ttl {
            key,
            unit: TimeUnit::Seconds,
        };
        state
            .router
            .execute(MEMCACHED_DB, op)
            .map(move |reply| (value, ops::ttl_seconds(&reply).flatten()))
    })
}

/// What an `mg` found.
enum Lookup {
    Hit {
        value: Bytes,
        client_flags: u32,
        cas: u64,
        /// The item was created by this `mg` (`N`): the client won the right to fill it.
        won: bool,
    },
    Miss,
}

/// `mg <key> <flags>*`.
pub(super) fn meta_get(request: MetaGet, started: Instant, replies: &mut Replies<'_>) {
    let stat = Stat::new(Command::MetaGet, started);
    if request.recache_threshold_opt.is_some() {
        return refuse(replies, stat, "mg R (recache) is not supported by scd");
    }
    if request.new_cas_opt.is_some() {
        return refuse(replies, stat, "mg E (explicit CAS) is not supported by scd");
    }
    let state = Arc::clone(replies.state);
    let now_ms = state.now_ms();
    let touch_opt = request
        .touch_exptime_opt
        .map(|exptime| ops::expire_target(exptime, now_ms));
    let first = state
        .router
        .execute(MEMCACHED_DB, ops::read_op(request.key.clone(), touch_opt));
    let vivify_exptime_opt = request.vivify_exptime_opt;
    let key = request.key.clone();
    let vivify_state = Arc::clone(&state);
    let lookup = ops::then(first, move |reply| {
        match (ops::found(reply), vivify_exptime_opt) {
            (Some((value, client_flags, cas)), _) => Pending::Ready(Lookup::Hit {
                value,
                client_flags,
                cas,
                won: false,
            }),
            (None, Some(exptime)) => {
                let op = Op::Set {
                    key,
                    value: Bytes::new(),
                    expiry: ops::set_expiry(exptime, now_ms),
                    condition: SetCondition::IfAbsent,
                    return_old: false,
                    flags: 0,
                };
                // A client that loses the race to create the item is answered with a miss.
                vivify_state
                    .router
                    .execute(MEMCACHED_DB, op)
                    .map(|reply| match reply {
                        Reply::Written { cas } => Lookup::Hit {
                            value: Bytes::new(),
                            client_flags: 0,
                            cas,
                            won: true,
                        },
                        _ => Lookup::Miss,
                    })
            }
            (None, None) => Pending::Ready(Lookup::Miss),
        }
    });
    let wants_ttl = request.return_flags.contains(&MetaFlag::Ttl);
    let pending = with_ttl(state, request.key.clone(), wants_ttl, lookup, |lookup| {
        matches!(lookup, Lookup::Hit { .. })
    });
    let touched = touch_opt.is_some();
    replies.send(stat, pending, move |(lookup, ttl_opt), out, counters| {
        let is_hit = matches!(lookup, Lookup::Hit { .. });
        counters.count_reads(false, u64::from(is_hit), u64::from(!is_hit));
        if touched {
            counters.count_reads(true, u64::from(is_hit), u64::from(!is_hit));
        }
        match lookup {
            Lookup::Hit {
                value,
                client_flags,
                cas,
                won,
            } => encode_meta_get_hit(
                out,
                &request,
                &MetaGetHit {
                    value: &value,
                    client_flags,
                    cas,
                    ttl_remaining_seconds_opt: ttl_opt,
                    seconds_since_last_access: 0,
                    fetched_before: false,
                    won,
                    stale: false,
                    win_already_sent: false,
                },
            ),
            Lookup::Miss => encode_meta_get_miss(out, &request),
        }
        Answer::Normal
    });
}

/// `ms <key> <datalen> <flags>*` and its data block.
pub(super) fn meta_set(request: MetaSet, started: Instant, replies: &mut Replies<'_>) {
    let stat = Stat::new(Command::MetaSet, started);
    if request.invalidate {
        return refuse(replies, stat, "ms I (invalidate) is not supported by scd");
    }
    if request.new_cas_opt.is_some() {
        return refuse(replies, stat, "ms E (explicit CAS) is not supported by scd");
    }
    let state = Arc::clone(replies.state);
    let now_ms = state.now_ms();
    let mode = request.mode;
    let op = StoreCommand {
        mode,
        key: request.key.clone(),
        value: request.value.clone(),
        client_flags: request.client_flags,
        exptime: request.exptime,
        compare_cas_opt: request.compare_cas_opt,
    }
    .into_op(now_ms);
    let first = state.router.execute(MEMCACHED_DB, op);
    let vivify_opt = match mode {
        StoreMode::Append | StoreMode::Prepend => request.vivify_exptime_opt,
        StoreMode::Set | StoreMode::Add | StoreMode::Replace => None,
    };
    let pending = match vivify_opt {
        None => first,
        Some(exptime) => {
            // Append or prepend to a missing item: create it with the data instead.
            let op = Op::Set {
                key: request.key.clone(),
                value: request.value.clone(),
                expiry: ops::set_expiry(exptime, now_ms),
                condition: SetCondition::IfAbsent,
                return_old: false,
                flags: request.client_flags,
            };
            ops::then(first, move |reply| match reply {
                Reply::NotFound => state.router.execute(MEMCACHED_DB, op),
                other => Pending::Ready(other),
            })
        }
    };
    let is_cas = request.compare_cas_opt.is_some();
    replies.send(stat, pending, move |reply, out, counters| {
        let outcome = StoreOutcome::of(mode, reply);
        text::count_store(counters, is_cas, &outcome);
        let meta_outcome = match outcome {
            StoreOutcome::Stored { cas } => MetaSetOutcome::Stored { cas },
            StoreOutcome::NotStored => MetaSetOutcome::NotStored,
            StoreOutcome::Exists => MetaSetOutcome::Exists,
            StoreOutcome::NotFound => MetaSetOutcome::NotFound,
            StoreOutcome::Failed(error) => return TextReply::new(out, false).store_error(&error),
            StoreOutcome::Unexpected => return TextReply::new(out, false).unexpected(),
        };
        encode_meta_set(out, &request, meta_outcome);
        Answer::Normal
    });
}

/// `md <key> <flags>*`.
pub(super) fn meta_delete(request: MetaDelete, started: Instant, replies: &mut Replies<'_>) {
    let stat = Stat::new(Command::MetaDelete, started);
    if request.invalidate {
        return refuse(replies, stat, "md I (invalidate) is not supported by scd");
    }
    let op = Op::Delete {
        key: request.key.clone(),
        cas_opt: request.compare_cas_opt,
    };
    let pending = replies.state.router.execute(MEMCACHED_DB, op);
    replies.send(stat, pending, move |reply, out, counters| {
        let meta_outcome = match DeleteOutcome::of(reply) {
            DeleteOutcome::Deleted => {
                Counters::add(&counters.delete_hits, 1);
                MetaDeleteOutcome::Deleted
            }
            DeleteOutcome::NotFound => {
                Counters::add(&counters.delete_misses, 1);
                MetaDeleteOutcome::NotFound
            }
            DeleteOutcome::Exists => MetaDeleteOutcome::Exists,
            DeleteOutcome::Failed(error) => return TextReply::new(out, false).store_error(&error),
            DeleteOutcome::Unexpected => return TextReply::new(out, false).unexpected(),
        };
        encode_meta_delete(out, &request, meta_outcome);
        Answer::Normal
    });
}

/// `ma <key> <flags>*`.
pub(super) fn meta_arithmetic(
    request: MetaArithmetic,
    started: Instant,
    replies: &mut Replies<'_>,
) {
    let stat = Stat::new(Command::MetaArithmetic, started);
    if request.new_cas_opt.is_some() {
        return refuse(replies, stat, "ma E (explicit CAS) is not supported by scd");
    }
    let state = Arc::clone(replies.state);
    let now_ms = state.now_ms();
    let counter_op = CounterCommand {
        key: request.key.clone(),
        direction: request.direction,
        delta: request.delta,
        compare_cas_opt: request.compare_cas_opt,
        create_opt: request
            .vivify_exptime_opt
            .map(|exptime| (request.initial, exptime)),
    }
    .into_op(now_ms);
    let expired_initial_opt = counter_op.expired_initial_opt;
    let pending = state
        .router
        .execute(MEMCACHED_DB, counter_op.op)
        .map(move |reply| CounterOutcome::of(reply, expired_initial_opt));
    let pending = match request.touch_exptime_opt {
        None => pending,
        Some(exptime) => {
            let touch = Op::Touch {
                key: request.key.clone(),
                target: ops::expire_target(exptime, now_ms),
                return_value: false,
            };
            let touch_state = Arc::clone(&state);
            ops::then(pending, move |outcome| match outcome {
                CounterOutcome::Done { value, cas } => touch_state
                    .router
                    .execute(MEMCACHED_DB, touch)
                    .map(move |reply| {
                        // A counter gone between the two ops keeps the CAS its change gave it.
                        let cas = match reply {
                            Reply::Written { cas: touched_cas } => touched_cas,
                            _ => cas,
                        };
                        CounterOutcome::Done { value, cas }
                    }),
                other => Pending::Ready(other),
            })
        }
    };
    let wants_ttl = request.return_flags.contains(&MetaFlag::Ttl);
    let pending = with_ttl(state, request.key.clone(), wants_ttl, pending, |outcome| {
        matches!(outcome, CounterOutcome::Done { .. })
    });
    let direction = request.direction;
    replies.send(stat, pending, move |(outcome, ttl_opt), out, counters| {
        text::count_arithmetic(counters, direction, &outcome);
        let meta_outcome = match outcome {
            CounterOutcome::Done { value, cas } => MetaArithmeticOutcome::Done {
                value,
                cas,
                ttl_remaining_seconds_opt: ttl_opt,
            },
            CounterOutcome::NotFound => MetaArithmeticOutcome::NotFound,
            CounterOutcome::Exists => MetaArithmeticOutcome::Exists,
            CounterOutcome::NonNumeric => return TextReply::new(out, false).non_numeric(),
            CounterOutcome::Failed(error) => return TextReply::new(out, false).store_error(&error),
            CounterOutcome::Unexpected => return TextReply::new(out, false).unexpected(),
        };
        encode_meta_arithmetic(out, &request, meta_outcome);
        Answer::Normal
    });
}
