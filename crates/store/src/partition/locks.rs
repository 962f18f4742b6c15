//! Lock ops (SCD.LOCK, SCD.UNLOCK, SCD.RENEW, SCD.LOCKINFO) on entries of `LOCK_DATABASE`, and
//! the guarded write (SCD.SET) that checks a lock and writes data in one step.

use bytes::Bytes;

use super::strings::{SetArgs, set_expiry};
use super::{Entry, Partition, delete_with_tombstone, held_version, live, put_versioned};
use crate::lock::LockValue;
use crate::value::Value;
use crate::{
    LOCK_DATABASE, LOCK_OWNER_MAX_BYTES, LockMode, Outcome, Reply, SetCondition, SetExpiry,
    StoreError,
};

/// The holder a live lock entry names. Clients cannot reach `LOCK_DATABASE`, so every entry there
/// was written by `lock_acquire`; anything else would read as a free lock.
fn holder_of(entry: &Entry) -> Option<LockValue> {
    match &entry.value {
        Value::String(bytes) => LockValue::decode(bytes),
        Value::Hash(_) => None,
    }
}

/// The deadline of a lease of `lease_ms` granted at `now_ms`; a lease is at least 1 ms, so a
/// grant is never born expired.
fn lease_deadline_ms(now_ms: u64, lease_ms: u64) -> u64 {
    now_ms.saturating_add(lease_ms.max(1))
}

impl Partition {
    pub(super) fn lock_acquire(
        &mut self,
        key: &[u8],
        owner: Bytes,
        mode: LockMode,
        lease_ms: u64,
        now_ms: u64,
    ) -> Outcome {
        if owner.len() > LOCK_OWNER_MAX_BYTES {
            return Outcome::error(StoreError::LockOwnerTooLong {
                max_lock_owner_bytes: LOCK_OWNER_MAX_BYTES,
            });
        }
        let deadline_ms = lease_deadline_ms(now_ms, lease_ms);
        let key_len = key.len();
        self.run(LOCK_DATABASE, key, now_ms, |shared, slot| {
            let current = live(slot)
                .and_then(|entry| holder_of(entry).map(|held| (held, entry.expire_at_ms)));
            let kept_token_opt = match current {
                Some((held, held_deadline_ms)) if held.owner != owner => {
                    return (
                        Reply::LockHeld(Box::new(held.holder(held_deadline_ms))),
                        None,
                    );
                }
                // The holder again: the lease is refreshed and the token kept.
                Some((held, _)) => Some(held.token),
                None => None,
            };
            // Above the slot's version, entry or tombstone: a new grant's token exceeds every
            // earlier grant's of this key.
            let version = shared.hlc.now_after(now_ms, held_version(slot));
            let token = kept_token_opt.unwrap_or(version.hlc);
            let value = LockValue { mode, token, owner }.encode();
            match put_versioned(
                shared,
                key_len,
                slot,
                version,
                Value::String(value),
                deadline_ms,
                0,
            ) {
                Ok(change) => (Reply::LockGranted { token, deadline_ms }, Some(change)),
                Err(error) => (Reply::Error(error), None),
            }
        })
    }

    pub(super) fn lock_release(&mut self, key: &[u8], token: u64, now_ms: u64) -> Outcome {
        self.run(LOCK_DATABASE, key, now_ms, |shared, slot| {
            match live(slot).and_then(holder_of) {
                Some(held) if held.token == token => (
                    Reply::Integer(1),
                    // A tombstone, not a bare removal: the next grant's version (its token) must
                    // exceed this one even on a replica that only sees the delete.
                    Some(delete_with_tombstone(shared, slot, now_ms).1),
                ),
                _ => (Reply::Integer(0), None),
            }
        })
    }

    pub(super) fn lock_renew(
        &mut self,
        key: &[u8],
        token: u64,
        lease_ms: u64,
        now_ms: u64,
    ) -> Outcome {
        self.run(LOCK_DATABASE, key, now_ms, |shared, slot| {
            match live(slot).and_then(holder_of) {
                Some(held) if held.token == token => {
                    let deadline_ms = lease_deadline_ms(now_ms, lease_ms);
                    let change = set_expiry(shared, slot, now_ms, deadline_ms);
                    (Reply::Integer(i64::from(change.is_some())), change)
                }
                _ => (Reply::Integer(0), None),
            }
        })
    }

    pub(super) fn lock_inspect(&mut self, key: &[u8], now_ms: u64) -> Outcome {
        self.run(LOCK_DATABASE, key, now_ms, |_, slot| {
            let reply = live(slot)
                .and_then(|entry| {
                    holder_of(entry)
                        .map(|held| Reply::LockHeld(Box::new(held.holder(entry.expire_at_ms))))
                })
                .unwrap_or(Reply::Nil);
            (reply, None)
        })
    }

    pub(super) fn guarded_set(
        &mut self,
        db: u8,
        key: &[u8],
        value: Bytes,
        expiry: SetExpiry,
        token: u64,
        now_ms: u64,
    ) -> Outcome {
        // Checked and written under the same partition lock: no grant can slip in between.
        let held_token_opt = self.keyspace.peek(LOCK_DATABASE, key, now_ms, |entry| {
            entry.and_then(holder_of).map(|held| held.token)
        });
        if held_token_opt != Some(token) {
            return Outcome::error(StoreError::Fenced {
                token,
                held_token_opt,
            });
        }
        self.set(
            db,
            key,
            SetArgs {
                value,
                expiry,
                condition: SetCondition::Always,
                return_old: false,
                flags: 0,
            },
            now_ms,
        )
    }
}
