//! What both memcached protocols share: turning requests into store ops, and store replies into
//! the outcomes each protocol then words its own way.

use bytes::Bytes;
use memcache::{Direction, Expiry, StoreMode, exptime_to_deadline};
use store::{
    ConcatSide, CounterDirection, CounterInitial, ExpireTarget, Op, Reply, SetCondition, SetExpiry,
    StoreError,
};

use crate::pending::Pending;

/// The database memcached keys live in, so RESP clients on database 0 see them.
pub(super) const MEMCACHED_DB: u8 = 0;

/// A deadline every clock has passed: the store deletes (or does not store) a key written with
/// it, which is what memcached's negative and past exptimes amount to. Not 0, which the store
/// reads as "no expiry".
const EXPIRED_DEADLINE_MS: u64 = 1;

/// The expiry a storage command gives its item.
pub(super) fn set_expiry(exptime: i64, now_ms: u64) -> SetExpiry {
    match exptime_to_deadline(exptime, now_ms) {
        Expiry::Never => SetExpiry::Never,
        Expiry::AtMs(deadline_ms) => SetExpiry::AtMs(deadline_ms),
        Expiry::AlreadyExpired => SetExpiry::AtMs(EXPIRED_DEADLINE_MS),
    }
}

/// The expiry a touch gives its item.
pub(super) fn expire_target(exptime: i64, now_ms: u64) -> ExpireTarget {
    match exptime_to_deadline(exptime, now_ms) {
        Expiry::Never => ExpireTarget::Persist,
        Expiry::AtMs(deadline_ms) => ExpireTarget::AtMs(deadline_ms),
        Expiry::AlreadyExpired => ExpireTarget::AtMs(EXPIRED_DEADLINE_MS),
    }
}

/// A read, or a read that also touches (gat, GAT, `mg ... T`).
pub(super) fn read_op(key: Bytes, touch_opt: Option<ExpireTarget>) -> Op {
    match touch_opt {
        None => Op::GetWithMeta { key },
        Some(target) => Op::Touch {
            key,
            target,
            return_value: true,
        },
    }
}

/// A storage command as the store runs it.
///
/// A CAS turns set, add and replace alike into a compare-and-swap, as memcached does (its
/// binary SET/ADD/REPLACE with a CAS all become `NREAD_CAS`); append and prepend compare it
/// before they add their data.
pub(super) struct StoreCommand {
    pub(super) mode: StoreMode,
    pub(super) key: Bytes,
    pub(super) value: Bytes,
    pub(super) client_flags: u32,
    pub(super) exptime: i64,
    pub(super) compare_cas_opt: Option<u64>,
}

impl StoreCommand {
    pub(super) fn into_op(self, now_ms: u64) -> Op {
        let side = match self.mode {
            StoreMode::Append => Some(ConcatSide::Append),
            StoreMode::Prepend => Some(ConcatSide::Prepend),
            StoreMode::Set | StoreMode::Add | StoreMode::Replace => None,
        };
        if let Some(side) = side {
            return Op::Concat {
                key: self.key,
                value: self.value,
                side,
                cas_opt: self.compare_cas_opt,
            };
        }
        let condition = match (self.compare_cas_opt, self.mode) {
            (Some(cas), _) => SetCondition::IfCasEquals(cas),
            (None, StoreMode::Add) => SetCondition::IfAbsent,
            (None, StoreMode::Replace) => SetCondition::IfPresent,
            (None, _) => SetCondition::Always,
        };
        Op::Set {
            key: self.key,
            value: self.value,
            expiry: set_expiry(self.exptime, now_ms),
            condition,
            return_old: false,
            flags: self.client_flags,
        }
    }
}

/// How a storage command ended, before a protocol words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum StoreOutcome {
    /// Stored (or, with an exptime already past, deleted as memcached's expired item would be);
    /// the item's new CAS, 0 when nothing is left.
    Stored { cas: u64 },
    /// add found the key, replace/append/prepend did not.
    NotStored,
    /// The CAS differs.
    Exists,
    /// A CAS on a missing key.
    NotFound,
    /// The store refused the write; nothing changed.
    Failed(StoreError),
    /// A reply no storage op gives: a bug, answered as a server error rather than a panic.
    Unexpected,
}

impl StoreOutcome {
    /// The outcome of the op [`StoreCommand::into_op`] made for `mode`.
    pub(super) fn of(mode: StoreMode, reply: Reply) -> StoreOutcome {
        let concat = matches!(mode, StoreMode::Append | StoreMode::Prepend);
        match reply {
            Reply::Written { cas } => StoreOutcome::Stored { cas },
            Reply::Ok => StoreOutcome::Stored { cas: 0 },
            Reply::ConditionNotMet => StoreOutcome::NotStored,
            Reply::CasMismatch => StoreOutcome::Exists,
            // Append and prepend never create: memcached answers NOT_STORED.
            Reply::NotFound if concat => StoreOutcome::NotStored,
            Reply::NotFound => StoreOutcome::NotFound,
            Reply::Error(error) => StoreOutcome::Failed(error),
            _ => StoreOutcome::Unexpected,
        }
    }
}

/// An arithmetic command as the store runs it.
pub(super) struct CounterCommand {
    pub(super) key: Bytes,
    pub(super) direction: Direction,
    pub(super) delta: u64,
    pub(super) compare_cas_opt: Option<u64>,
    /// Create a missing counter with this value and exptime (binary INCREMENT, `ma ... N`).
    pub(super) create_opt: Option<(u64, i64)>,
}

/// An arithmetic op, and what to answer if it finds no counter.
pub(super) struct CounterOp {
    pub(super) op: Op,
    /// Set when the counter would be created already expired: the store is asked not to create
    /// it, and a miss is answered with this initial value (CAS 0), as memcached answers for the
    /// item it creates and nobody can read.
    pub(super) expired_initial_opt: Option<u64>,
}

impl CounterCommand {
    pub(super) fn into_op(self, now_ms: u64) -> CounterOp {
        let (initial_opt, expired_initial_opt) = match self.create_opt {
            None => (None, None),
            Some((initial, exptime)) => match exptime_to_deadline(exptime, now_ms) {
                Expiry::Never => (
                    Some(CounterInitial {
                        value: initial,
                        expire_at_ms: 0,
                    }),
                    None,
                ),
                Expiry::AtMs(deadline_ms) => (
                    Some(CounterInitial {
                        value: initial,
                        expire_at_ms: deadline_ms,
                    }),
                    None,
                ),
                Expiry::AlreadyExpired => (None, Some(initial)),
            },
        };
        CounterOp {
            op: Op::Counter {
                key: self.key,
                delta: self.delta,
                direction: match self.direction {
                    Direction::Increment => CounterDirection::Increment,
                    Direction::Decrement => CounterDirection::Decrement,
                },
                cas_opt: self.compare_cas_opt,
                initial_opt,
            },
            expired_initial_opt,
        }
    }
}

/// How an arithmetic command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CounterOutcome {
    /// The counter's new value and CAS.
    Done { value: u64, cas: u64 },
    /// No such counter (and no creation asked for).
    NotFound,
    /// The CAS differs.
    Exists,
    /// The stored value is not a decimal number (or is a RESP hash).
    NonNumeric,
    /// The store refused the write; nothing changed.
    Failed(StoreError),
    /// A reply no counter op gives: a bug, answered as a server error.
    Unexpected,
}

impl CounterOutcome {
    pub(super) fn of(reply: Reply, expired_initial_opt: Option<u64>) -> CounterOutcome {
        match (reply, expired_initial_opt) {
            (Reply::Counter { value, cas }, _) => CounterOutcome::Done { value, cas },
            (Reply::NotFound, Some(initial)) => CounterOutcome::Done {
                value: initial,
                cas: 0,
            },
            (Reply::NotFound, None) => CounterOutcome::NotFound,
            (Reply::CasMismatch, _) => CounterOutcome::Exists,
            (Reply::Error(StoreError::NonNumericValue | StoreError::WrongType), _) => {
                CounterOutcome::NonNumeric
            }
            (Reply::Error(error), _) => CounterOutcome::Failed(error),
            _ => CounterOutcome::Unexpected,
        }
    }
}

/// How a delete ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DeleteOutcome {
    Deleted,
    NotFound,
    Exists,
    Failed(StoreError),
    Unexpected,
}

impl DeleteOutcome {
    pub(super) fn of(reply: Reply) -> DeleteOutcome {
        match reply {
            Reply::Integer(1) => DeleteOutcome::Deleted,
            Reply::Integer(0) => DeleteOutcome::NotFound,
            Reply::CasMismatch => DeleteOutcome::Exists,
            Reply::Error(error) => DeleteOutcome::Failed(error),
            _ => DeleteOutcome::Unexpected,
        }
    }
}

/// A value found by a read op: the value, its client flags and CAS; `None` for a miss (a RESP
/// hash under the key counts as a miss, as a memcached client cannot read it).
pub(super) fn found(reply: Reply) -> Option<(Bytes, u32, u64)> {
    match reply {
        Reply::Value { value, flags, cas } => Some((value, flags, cas)),
        _ => None,
    }
}

/// Seconds until a key expires from a TTL reply: `Some(None)` for never, `None` when the key is
/// gone or the reply is not a TTL.
pub(super) fn ttl_seconds(reply: &Reply) -> Option<Option<u64>> {
    match reply {
        Reply::Integer(-1) => Some(None),
        Reply::Integer(seconds) => u64::try_from(*seconds).ok().map(Some),
        _ => None,
    }
}

/// Runs `next` on `pending`'s value once known: at once when it is known now, so a local op
/// chains without a future or an allocation.
pub(super) fn then<T: Send + 'static, U: Send + 'static>(
    pending: Pending<T>,
    next: impl FnOnce(T) -> Pending<U> + Send + 'static,
) -> Pending<U> {
    match pending {
        Pending::Ready(value) => next(value),
        Pending::Later(future) => {
            Pending::Later(Box::pin(async move { next(future.await).resolve().await }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_700_000_000_000;

    fn store_command(mode: StoreMode, exptime: i64, compare_cas_opt: Option<u64>) -> Op {
        StoreCommand {
            mode,
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
            client_flags: 7,
            exptime,
            compare_cas_opt,
        }
        .into_op(NOW_MS)
    }

    fn check_set(op: Op, expect_expiry: SetExpiry, expect_condition: SetCondition) {
        match op {
            Op::Set {
                expiry,
                condition,
                flags,
                return_old,
                ..
            } => {
                assert_eq!(expiry, expect_expiry);
                assert_eq!(condition, expect_condition);
                assert_eq!(flags, 7);
                assert!(!return_old);
            }
            other => panic!("not a set: {other:?}"),
        }
    }

    #[test]
    fn storage_modes_become_set_conditions_and_a_cas_wins_over_the_mode() {
        check_set(
            store_command(StoreMode::Set, 0, None),
            SetExpiry::Never,
            SetCondition::Always,
        );
        check_set(
            store_command(StoreMode::Add, 10, None),
            SetExpiry::AtMs(NOW_MS + 10_000),
            SetCondition::IfAbsent,
        );
        check_set(
            store_command(StoreMode::Replace, -1, None),
            SetExpiry::AtMs(EXPIRED_DEADLINE_MS),
            SetCondition::IfPresent,
        );
        check_set(
            store_command(StoreMode::Add, 0, Some(9)),
            SetExpiry::Never,
            SetCondition::IfCasEquals(9),
        );
    }

    #[test]
    fn append_and_prepend_become_concat_with_their_cas() {
        assert_eq!(
            store_command(StoreMode::Prepend, 0, Some(3)),
            Op::Concat {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"v"),
                side: ConcatSide::Prepend,
                cas_opt: Some(3),
            }
        );
    }

    #[test]
    fn store_replies_become_outcomes_by_mode() {
        let check = |mode, reply, expect| assert_eq!(StoreOutcome::of(mode, reply), expect);
        check(
            StoreMode::Set,
            Reply::Written { cas: 5 },
            StoreOutcome::Stored { cas: 5 },
        );
        check(StoreMode::Set, Reply::Ok, StoreOutcome::Stored { cas: 0 });
        check(
            StoreMode::Add,
            Reply::ConditionNotMet,
            StoreOutcome::NotStored,
        );
        check(StoreMode::Set, Reply::CasMismatch, StoreOutcome::Exists);
        check(StoreMode::Set, Reply::NotFound, StoreOutcome::NotFound);
        check(StoreMode::Append, Reply::NotFound, StoreOutcome::NotStored);
        check(StoreMode::Set, Reply::Nil, StoreOutcome::Unexpected);
    }

    #[test]
    fn a_counter_created_already_expired_is_not_stored_and_answers_its_initial_value() {
        let command = |exptime| CounterCommand {
            key: Bytes::from_static(b"n"),
            direction: Direction::Increment,
            delta: 1,
            compare_cas_opt: None,
            create_opt: Some((40, exptime)),
        };
        let expired = command(-1).into_op(NOW_MS);
        assert_eq!(expired.expired_initial_opt, Some(40));
        assert!(matches!(
            expired.op,
            Op::Counter {
                initial_opt: None,
                ..
            }
        ));
        assert_eq!(
            CounterOutcome::of(Reply::NotFound, expired.expired_initial_opt),
            CounterOutcome::Done { value: 40, cas: 0 }
        );
        let live = command(60).into_op(NOW_MS);
        assert!(matches!(
            live.op,
            Op::Counter {
                initial_opt: Some(CounterInitial {
                    value: 40,
                    expire_at_ms
                }),
                ..
            } if expire_at_ms == NOW_MS + 60_000
        ));
        assert_eq!(
            CounterOutcome::of(Reply::NotFound, None),
            CounterOutcome::NotFound
        );
        assert_eq!(
            CounterOutcome::of(Reply::Error(StoreError::WrongType), None),
            CounterOutcome::NonNumeric
        );
    }

    #[tokio::test]
    async fn then_chains_at_once_when_ready_and_after_the_wait_when_later() {
        let ready = then(Pending::Ready(1), |value| Pending::Ready(value + 1));
        assert!(matches!(ready, Pending::Ready(2)));
        let later = then(
            Pending::Later(Box::pin(async {
                tokio::task::yield_now().await;
                10
            })),
            |value| Pending::Ready(value + 1),
        );
        assert!(matches!(later, Pending::Later(_)));
        assert_eq!(later.resolve().await, 11);
    }

    #[test]
    fn ttl_replies_become_seconds_or_never() {
        assert_eq!(ttl_seconds(&Reply::Integer(-1)), Some(None));
        assert_eq!(ttl_seconds(&Reply::Integer(30)), Some(Some(30)));
        assert_eq!(ttl_seconds(&Reply::Integer(-2)), None);
        assert_eq!(ttl_seconds(&Reply::Nil), None);
    }
}
