//! String ops: GET, SET (and memcached set/add/replace/cas), GETEX, GETDEL, APPEND, memcached
//! append/prepend, STRLEN, INCRBY, memcached incr/decr, and the lock-release compare-and-delete.

use bytes::Bytes;

use super::Effect;
use super::{
    Entry, Partition, Slot, delete_with_tombstone, live, live_mut, put_checked, touch_version,
};
use crate::numbers::{parse_memcached_u64, parse_redis_i64};
use crate::store::Shared;
use crate::value::Value;
use crate::{
    ConcatSide, CounterDirection, CounterInitial, ExpireTarget, Outcome, Reply, SetCondition,
    SetExpiry, StoreError,
};

/// The arguments of `Op::Set` besides the key.
pub(super) struct SetArgs {
    pub(super) value: Bytes,
    pub(super) expiry: SetExpiry,
    pub(super) condition: SetCondition,
    pub(super) return_old: bool,
    pub(super) flags: u32,
}

/// The string in `entry`, or `WrongType`.
fn string_of(entry: &Entry) -> Result<&Bytes, StoreError> {
    match &entry.value {
        Value::String(bytes) => Ok(bytes),
        Value::Hash(_) => Err(StoreError::WrongType),
    }
}

/// Refuses a string longer than `max_value_bytes`.
fn check_value_len(shared: &Shared, len: usize) -> Result<(), StoreError> {
    let max_value_bytes = shared.config.max_value_bytes;
    if len > max_value_bytes {
        return Err(StoreError::ValueTooLarge { max_value_bytes });
    }
    Ok(())
}

/// `CasMismatch` when the caller asked for a CAS and the entry has another.
fn cas_mismatch(entry: &Entry, cas_opt: Option<u64>) -> bool {
    cas_opt.is_some_and(|cas| cas != entry.version.hlc)
}

/// A reply and no change: what a read or a refused write returns from a `run` closure.
fn read(reply: Reply) -> (Reply, Option<Effect>) {
    (reply, None)
}

/// An error reply and no change.
fn refuse(error: StoreError) -> (Reply, Option<Effect>) {
    (Reply::Error(error), None)
}

/// A decimal number in an exact-size allocation.
fn decimal(number: impl std::fmt::Display) -> Bytes {
    Bytes::from(number.to_string().into_bytes())
}

impl Partition {
    pub(super) fn get(&mut self, db: u8, key: &[u8], now_ms: u64) -> Outcome {
        // Most reads find a live string: answer from a look that changes nothing, without the
        // write path's moving of the slot and accounting. An absent or expired key goes the
        // general way, which turns an expired entry into its tombstone.
        let found = self.keyspace.peek(db, key, now_ms, |entry| {
            entry.map(|entry| string_of(entry).cloned())
        });
        if let Some(result) = found {
            return Outcome {
                reply: result.map_or_else(Reply::Error, Reply::Bulk),
                mutations: crate::Mutations::new(),
            };
        }
        self.run(db, key, now_ms, |_, slot| {
            read(match live(slot).map(string_of) {
                None => Reply::Nil,
                Some(Ok(value)) => Reply::Bulk(value.clone()),
                Some(Err(error)) => Reply::Error(error),
            })
        })
    }

    pub(super) fn get_with_meta(&mut self, db: u8, key: &[u8], now_ms: u64) -> Outcome {
        // As `get`: a live string is answered from a look that changes nothing.
        let found = self.keyspace.peek(db, key, now_ms, |entry| {
            entry.map(|entry| {
                string_of(entry).map(|value| Reply::Value {
                    value: value.clone(),
                    flags: entry.flags,
                    cas: entry.version.hlc,
                })
            })
        });
        if let Some(result) = found {
            return Outcome {
                reply: result.unwrap_or_else(Reply::Error),
                mutations: crate::Mutations::new(),
            };
        }
        self.run(db, key, now_ms, |_, slot| {
            read(match live(slot) {
                None => Reply::Nil,
                Some(entry) => match string_of(entry) {
                    Ok(value) => Reply::Value {
                        value: value.clone(),
                        flags: entry.flags,
                        cas: entry.version.hlc,
                    },
                    Err(error) => Reply::Error(error),
                },
            })
        })
    }

    pub(super) fn set(&mut self, db: u8, key: &[u8], args: SetArgs, now_ms: u64) -> Outcome {
        let key_len = key.len();
        self.run(db, key, now_ms, |shared, slot| {
            if let Err(error) = check_value_len(shared, args.value.len()) {
                return refuse(error);
            }
            let current = live(slot);
            let old_reply = match (args.return_old, current.map(string_of)) {
                (false, _) | (true, None) => Reply::Nil,
                (true, Some(Ok(old))) => Reply::Bulk(old.clone()),
                (true, Some(Err(error))) => return refuse(error),
            };
            let unmet = match args.condition {
                SetCondition::Always => None,
                SetCondition::IfAbsent => current.is_some().then_some(Reply::ConditionNotMet),
                SetCondition::IfPresent => current.is_none().then_some(Reply::ConditionNotMet),
                SetCondition::IfCasEquals(cas) => match current {
                    None => Some(Reply::NotFound),
                    Some(entry) if cas_mismatch(entry, Some(cas)) => Some(Reply::CasMismatch),
                    Some(_) => None,
                },
            };
            if let Some(unmet) = unmet {
                return read(if args.return_old { old_reply } else { unmet });
            }
            let expire_at_ms = match args.expiry {
                SetExpiry::Never => 0,
                SetExpiry::Keep => current.map_or(0, |entry| entry.expire_at_ms),
                SetExpiry::AtMs(deadline_ms) if deadline_ms <= now_ms => {
                    // Redis: a deadline already past leaves the key absent.
                    let change = current
                        .is_some()
                        .then(|| delete_with_tombstone(shared, slot, now_ms).1);
                    return (
                        if args.return_old {
                            old_reply
                        } else {
                            Reply::Ok
                        },
                        change,
                    );
                }
                SetExpiry::AtMs(deadline_ms) => deadline_ms,
            };
            if let Some(Entry {
                value: Value::String(old),
                ..
            }) = current
            {
                crate::prefetch::allocation_header(old);
            }
            let value = Value::String(Bytes::copy_from_slice(&args.value));
            match put_checked(
                shared,
                key_len,
                slot,
                now_ms,
                value,
                expire_at_ms,
                args.flags,
            ) {
                Ok((version, change)) => {
                    let reply = if args.return_old {
                        old_reply
                    } else {
                        Reply::Written { cas: version.hlc }
                    };
                    (reply, Some(change))
                }
                Err(error) => refuse(error),
            }
        })
    }

    pub(super) fn get_ex(
        &mut self,
        db: u8,
        key: &[u8],
        target: ExpireTarget,
        now_ms: u64,
    ) -> Outcome {
        self.run(db, key, now_ms, |shared, slot| {
            let Some(entry) = live(slot) else {
                return read(Reply::Nil);
            };
            let value = match string_of(entry) {
                Ok(value) => value.clone(),
                Err(error) => return refuse(error),
            };
            let change = match target {
                ExpireTarget::AtMs(deadline_ms) if deadline_ms <= now_ms => {
                    Some(delete_with_tombstone(shared, slot, now_ms).1)
                }
                // TTL changes are not refused for memory: Redis does not flag EXPIRE or GETEX
                // "denyoom", and the growth is one fixed-size index item.
                ExpireTarget::AtMs(deadline_ms) => set_expiry(shared, slot, now_ms, deadline_ms),
                ExpireTarget::Persist if entry.expire_at_ms != 0 => {
                    set_expiry(shared, slot, now_ms, 0)
                }
                ExpireTarget::Persist => None,
            };
            (Reply::Bulk(value), change)
        })
    }

    pub(super) fn get_del(&mut self, db: u8, key: &[u8], now_ms: u64) -> Outcome {
        self.run(db, key, now_ms, |shared, slot| {
            let Some(entry) = live(slot) else {
                return read(Reply::Nil);
            };
            match string_of(entry) {
                Ok(value) => {
                    let reply = Reply::Bulk(value.clone());
                    (reply, Some(delete_with_tombstone(shared, slot, now_ms).1))
                }
                Err(error) => refuse(error),
            }
        })
    }

    pub(super) fn append(&mut self, db: u8, key: &[u8], suffix: &[u8], now_ms: u64) -> Outcome {
        let key_len = key.len();
        self.run(db, key, now_ms, |shared, slot| {
            let (new_value, expire_at_ms, flags) = match live(slot) {
                None => (join(b"", suffix), 0, 0),
                Some(entry) => match string_of(entry) {
                    Ok(current) => (join(current, suffix), entry.expire_at_ms, entry.flags),
                    Err(error) => return refuse(error),
                },
            };
            if let Err(error) = check_value_len(shared, new_value.len()) {
                return refuse(error);
            }
            let new_len = new_value.len() as i64;
            match put_checked(
                shared,
                key_len,
                slot,
                now_ms,
                Value::String(new_value),
                expire_at_ms,
                flags,
            ) {
                Ok((_, change)) => (Reply::Integer(new_len), Some(change)),
                Err(error) => refuse(error),
            }
        })
    }

    pub(super) fn concat(
        &mut self,
        db: u8,
        key: &[u8],
        addition: &[u8],
        side: ConcatSide,
        cas_opt: Option<u64>,
        now_ms: u64,
    ) -> Outcome {
        let key_len = key.len();
        self.run(db, key, now_ms, |shared, slot| {
            let Some(entry) = live(slot) else {
                return read(Reply::NotFound);
            };
            if cas_mismatch(entry, cas_opt) {
                return read(Reply::CasMismatch);
            }
            let current = match string_of(entry) {
                Ok(current) => current,
                Err(error) => return refuse(error),
            };
            let new_value = match side {
                ConcatSide::Append => join(current, addition),
                ConcatSide::Prepend => join(addition, current),
            };
            if let Err(error) = check_value_len(shared, new_value.len()) {
                return refuse(error);
            }
            let (expire_at_ms, flags) = (entry.expire_at_ms, entry.flags);
            match put_checked(
                shared,
                key_len,
                slot,
                now_ms,
                Value::String(new_value),
                expire_at_ms,
                flags,
            ) {
                Ok((version, change)) => (Reply::Written { cas: version.hlc }, Some(change)),
                Err(error) => refuse(error),
            }
        })
    }

    pub(super) fn strlen(&mut self, db: u8, key: &[u8], now_ms: u64) -> Outcome {
        self.run(db, key, now_ms, |_, slot| {
            read(match live(slot).map(string_of) {
                None => Reply::Integer(0),
                Some(Ok(value)) => Reply::Integer(value.len() as i64),
                Some(Err(error)) => Reply::Error(error),
            })
        })
    }

    pub(super) fn incr_by(&mut self, db: u8, key: &[u8], delta: i64, now_ms: u64) -> Outcome {
        let key_len = key.len();
        self.run(db, key, now_ms, |shared, slot| {
            let (current, expire_at_ms, flags) = match live(slot) {
                None => (0, 0, 0),
                Some(entry) => match string_of(entry).map(|value| parse_redis_i64(value)) {
                    Ok(Some(current)) => (current, entry.expire_at_ms, entry.flags),
                    Ok(None) => return refuse(StoreError::NotAnInteger),
                    Err(error) => return refuse(error),
                },
            };
            let Some(new_value) = current.checked_add(delta) else {
                return refuse(StoreError::IncrementOverflow);
            };
            let value = Value::String(decimal(new_value));
            match put_checked(shared, key_len, slot, now_ms, value, expire_at_ms, flags) {
                Ok((_, change)) => (Reply::Integer(new_value), Some(change)),
                Err(error) => refuse(error),
            }
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn counter(
        &mut self,
        db: u8,
        key: &[u8],
        delta: u64,
        direction: CounterDirection,
        cas_opt: Option<u64>,
        initial_opt: Option<CounterInitial>,
        now_ms: u64,
    ) -> Outcome {
        let key_len = key.len();
        self.run(db, key, now_ms, |shared, slot| {
            let (new_value, expire_at_ms, flags) = match live(slot) {
                None => match initial_opt {
                    None => return read(Reply::NotFound),
                    Some(initial) => (initial.value, initial.expire_at_ms, 0),
                },
                Some(entry) => {
                    if cas_mismatch(entry, cas_opt) {
                        return read(Reply::CasMismatch);
                    }
                    let current = match string_of(entry).map(|value| parse_memcached_u64(value)) {
                        Ok(Some(current)) => current,
                        Ok(None) => return refuse(StoreError::NonNumericValue),
                        Err(error) => return refuse(error),
                    };
                    let new_value = match direction {
                        CounterDirection::Increment => current.wrapping_add(delta),
                        CounterDirection::Decrement => current.saturating_sub(delta),
                    };
                    (new_value, entry.expire_at_ms, entry.flags)
                }
            };
            let value = Value::String(decimal(new_value));
            match put_checked(shared, key_len, slot, now_ms, value, expire_at_ms, flags) {
                Ok((version, change)) => (
                    Reply::Counter {
                        value: new_value,
                        cas: version.hlc,
                    },
                    Some(change),
                ),
                Err(error) => refuse(error),
            }
        })
    }

    pub(super) fn delete_if_equals(
        &mut self,
        db: u8,
        key: &[u8],
        expected: &[u8],
        now_ms: u64,
    ) -> Outcome {
        self.run(db, key, now_ms, |shared, slot| {
            let Some(entry) = live(slot) else {
                return read(Reply::Integer(0));
            };
            match string_of(entry) {
                Ok(value) if value.as_ref() == expected => (
                    Reply::Integer(1),
                    Some(delete_with_tombstone(shared, slot, now_ms).1),
                ),
                Ok(_) => read(Reply::Integer(0)),
                Err(error) => refuse(error),
            }
        })
    }
}

/// `first` then `second` in one exact-size allocation.
fn join(first: &[u8], second: &[u8]) -> Bytes {
    let mut joined = Vec::with_capacity(first.len() + second.len());
    joined.extend_from_slice(first);
    joined.extend_from_slice(second);
    Bytes::from(joined)
}

/// Sets the live entry's deadline (0 = none) under a fresh version; the change to replicate.
pub(super) fn set_expiry(
    shared: &Shared,
    slot: &mut Option<Slot>,
    now_ms: u64,
    expire_at_ms: u64,
) -> Option<Effect> {
    live_mut(slot)?.expire_at_ms = expire_at_ms;
    touch_version(shared, slot, now_ms).map(|(_, change)| change)
}
