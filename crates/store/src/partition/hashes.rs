//! Hash ops (Spring Session keeps sessions as hashes): HSET, HGET, HMGET, HGETALL, HDEL, HEXISTS,
//! HLEN, HKEYS, HVALS, HINCRBY.

use bytes::Bytes;

use super::Effect;
use super::{
    Entry, Partition, Slot, delete_with_tombstone, live, live_mut, slot_cost_bytes, touch_version,
};
use crate::numbers::parse_redis_i64;
use crate::store::Shared;
use crate::value::{HashValue, Value};
use crate::{Outcome, Reply, StoreError};

/// The hash in `entry`, or `WrongType`.
fn hash_of(entry: &Entry) -> Result<&HashValue, StoreError> {
    match &entry.value {
        Value::Hash(hash) => Ok(hash),
        Value::String(_) => Err(StoreError::WrongType),
    }
}

/// Runs a read on the hash at `slot`: `missing` when the key is absent, `WrongType` for a string.
fn read_hash(
    slot: &Option<Slot>,
    missing: Reply,
    f: impl FnOnce(&HashValue) -> Reply,
) -> (Reply, Option<Effect>) {
    let reply = match live(slot).map(hash_of) {
        None => missing,
        Some(Ok(hash)) => f(hash),
        Some(Err(error)) => Reply::Error(error),
    };
    (reply, None)
}

/// Sets fields of the hash at `slot` (creating it), then checks the limits; on a refusal every
/// field is put back as it was, so the op changes nothing. Returns how many fields were new.
fn set_fields(
    shared: &Shared,
    key_len: usize,
    slot: &mut Option<Slot>,
    pairs: impl IntoIterator<Item = (Bytes, Bytes)>,
) -> Result<usize, StoreError> {
    let before_bytes = slot_cost_bytes(key_len, slot.as_ref());
    let created = live(slot).is_none();
    // A tombstone (or nothing) the new hash replaces; put back if the write is refused.
    let replaced = if created { slot.take() } else { None };
    if created {
        // The caller gives the entry a fresh version (above this one) once the write is accepted.
        *slot = Some(Slot::Live(Entry {
            value: Value::Hash(HashValue::default()),
            version: super::held_version(&replaced).unwrap_or(crate::Version { hlc: 0, node: 0 }),
            expire_at_ms: 0,
            flags: 0,
        }));
    }
    let Some(Entry {
        value: Value::Hash(hash),
        ..
    }) = live_mut(slot)
    else {
        return Err(StoreError::WrongType);
    };
    let mut undo: Vec<(Bytes, Option<Bytes>)> = Vec::new();
    for (field, value) in pairs {
        let field = Bytes::copy_from_slice(&field);
        let previous = hash.insert(field.clone(), Bytes::copy_from_slice(&value));
        undo.push((field, previous));
    }
    let num_new_fields = undo
        .iter()
        .filter(|(_, previous)| previous.is_none())
        .count();
    let (max_value_bytes, max_hash_fields) =
        (shared.config.max_value_bytes, shared.config.max_hash_fields);
    let refusal = if hash.len() > max_hash_fields {
        Some(StoreError::TooManyHashFields { max_hash_fields })
    } else if hash.payload_bytes() > max_value_bytes {
        Some(StoreError::ValueTooLarge { max_value_bytes })
    } else {
        None
    };
    let refusal = refusal.or_else(|| {
        Partition::check_growth(
            shared,
            before_bytes,
            slot_cost_bytes(key_len, slot.as_ref()),
        )
        .err()
    });
    let Some(refusal) = refusal else {
        return Ok(num_new_fields);
    };
    if let Some(Entry {
        value: Value::Hash(hash),
        ..
    }) = live_mut(slot)
    {
        for (field, previous) in undo.into_iter().rev() {
            match previous {
                Some(previous) => {
                    hash.insert(field, previous);
                }
                None => {
                    hash.remove(&field);
                }
            }
        }
    }
    if created {
        *slot = replaced;
    }
    Err(refusal)
}

impl Partition {
    pub(super) fn hash_set(
        &mut self,
        db: u8,
        key: &[u8],
        pairs: Vec<(Bytes, Bytes)>,
        now_ms: u64,
    ) -> Outcome {
        let key_len = key.len();
        self.run(db, key, now_ms, |shared, slot| {
            if let Some(Err(error)) = live(slot).map(hash_of) {
                return (Reply::Error(error), None);
            }
            if pairs.is_empty() {
                return (Reply::Integer(0), None);
            }
            match set_fields(shared, key_len, slot, pairs) {
                Ok(num_new_fields) => {
                    let change = touch_version(shared, slot, now_ms).map(|(_, change)| change);
                    (Reply::Integer(num_new_fields as i64), change)
                }
                Err(error) => (Reply::Error(error), None),
            }
        })
    }

    pub(super) fn hash_incr_by(
        &mut self,
        db: u8,
        key: &[u8],
        field: Bytes,
        delta: i64,
        now_ms: u64,
    ) -> Outcome {
        let key_len = key.len();
        self.run(db, key, now_ms, |shared, slot| {
            let current = match live(slot).map(hash_of) {
                None => 0,
                Some(Err(error)) => return (Reply::Error(error), None),
                Some(Ok(hash)) => match hash.get(&field) {
                    None => 0,
                    Some(value) => match parse_redis_i64(value) {
                        Some(current) => current,
                        None => return (Reply::Error(StoreError::HashValueNotAnInteger), None),
                    },
                },
            };
            let Some(new_value) = current.checked_add(delta) else {
                return (Reply::Error(StoreError::IncrementOverflow), None);
            };
            let new_bytes = Bytes::from(new_value.to_string().into_bytes());
            match set_fields(shared, key_len, slot, [(field, new_bytes)]) {
                Ok(_) => {
                    let change = touch_version(shared, slot, now_ms).map(|(_, change)| change);
                    (Reply::Integer(new_value), change)
                }
                Err(error) => (Reply::Error(error), None),
            }
        })
    }

    pub(super) fn hash_delete(
        &mut self,
        db: u8,
        key: &[u8],
        fields: &[Bytes],
        now_ms: u64,
    ) -> Outcome {
        self.run(db, key, now_ms, |shared, slot| {
            let Some(entry) = live_mut(slot) else {
                return (Reply::Integer(0), None);
            };
            let Value::Hash(hash) = &mut entry.value else {
                return (Reply::Error(StoreError::WrongType), None);
            };
            let num_removed = fields
                .iter()
                .filter(|field| hash.remove(field).is_some())
                .count();
            let change = if num_removed == 0 {
                None
            } else if hash.len() == 0 {
                // Redis deletes a hash with its last field.
                Some(delete_with_tombstone(shared, slot, now_ms).1)
            } else {
                touch_version(shared, slot, now_ms).map(|(_, change)| change)
            };
            (Reply::Integer(num_removed as i64), change)
        })
    }

    pub(super) fn hash_get(&mut self, db: u8, key: &[u8], field: &[u8], now_ms: u64) -> Outcome {
        self.run(db, key, now_ms, |_, slot| {
            read_hash(slot, Reply::Nil, |hash| {
                hash.get(field)
                    .map_or(Reply::Nil, |value| Reply::Bulk(value.clone()))
            })
        })
    }

    pub(super) fn hash_multi_get(
        &mut self,
        db: u8,
        key: &[u8],
        fields: &[Bytes],
        now_ms: u64,
    ) -> Outcome {
        let missing = Reply::Array(vec![Reply::Nil; fields.len()]);
        self.run(db, key, now_ms, |_, slot| {
            read_hash(slot, missing, |hash| {
                Reply::Array(
                    fields
                        .iter()
                        .map(|field| {
                            hash.get(field)
                                .map_or(Reply::Nil, |value| Reply::Bulk(value.clone()))
                        })
                        .collect(),
                )
            })
        })
    }

    pub(super) fn hash_get_all(&mut self, db: u8, key: &[u8], now_ms: u64) -> Outcome {
        self.run(db, key, now_ms, |_, slot| {
            read_hash(slot, Reply::Pairs(Vec::new()), |hash| {
                Reply::Pairs(
                    hash.iter()
                        .map(|(field, value)| (field.clone(), value.clone()))
                        .collect(),
                )
            })
        })
    }

    pub(super) fn hash_exists(&mut self, db: u8, key: &[u8], field: &[u8], now_ms: u64) -> Outcome {
        self.run(db, key, now_ms, |_, slot| {
            read_hash(slot, Reply::Integer(0), |hash| {
                Reply::Integer(i64::from(hash.get(field).is_some()))
            })
        })
    }

    pub(super) fn hash_len(&mut self, db: u8, key: &[u8], now_ms: u64) -> Outcome {
        self.run(db, key, now_ms, |_, slot| {
            read_hash(slot, Reply::Integer(0), |hash| {
                Reply::Integer(hash.len() as i64)
            })
        })
    }

    pub(super) fn hash_keys_or_values(
        &mut self,
        db: u8,
        key: &[u8],
        keys: bool,
        now_ms: u64,
    ) -> Outcome {
        self.run(db, key, now_ms, |_, slot| {
            read_hash(slot, Reply::Array(Vec::new()), |hash| {
                Reply::Array(
                    hash.iter()
                        .map(|(field, value)| Reply::Bulk(if keys { field } else { value }.clone()))
                        .collect(),
                )
            })
        })
    }
}
