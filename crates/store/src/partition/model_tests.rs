//! Model-based property test: random op sequences against a `BTreeMap` model with a fake clock,
//! locks and guarded writes included (the model adopts each new token the store grants, after
//! checking that it exceeds every earlier token of the key).

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;

use crate::{
    ExpireCondition, ExpireTarget, LockHolder, LockMode, Op, Reply, SetCondition, SetExpiry, Store,
    StoreConfig, StoreError, TimeUnit,
};

const TOMBSTONE_TTL_MS: u64 = 60_000;

#[derive(Debug, Clone, PartialEq)]
enum ModelValue {
    String(Vec<u8>),
    /// Insertion order, as the store keeps small hashes.
    Hash(Vec<(Vec<u8>, Vec<u8>)>),
}

#[derive(Debug, Clone)]
struct ModelEntry {
    value: ModelValue,
    /// 0 = none.
    expire_at_ms: u64,
}

#[derive(Debug, Clone)]
struct ModelLock {
    owner: Vec<u8>,
    token: u64,
    mode: LockMode,
    expire_at_ms: u64,
}

/// The reference: what Redis would hold, and the locks.
#[derive(Debug, Default)]
struct Model {
    keys: BTreeMap<Vec<u8>, ModelEntry>,
    locks: BTreeMap<Vec<u8>, ModelLock>,
    /// Every token granted per key, in grant order.
    granted: BTreeMap<Vec<u8>, Vec<u64>>,
}

/// Which token a lock step presents.
#[derive(Debug, Clone, Copy)]
enum TokenChoice {
    /// The key's latest grant.
    Latest,
    /// The grant before it (a writer whose lease ran out).
    Previous,
    /// One never granted.
    Bogus,
}

impl Model {
    /// The live entry of `key` at `now_ms`, dropping it if expired.
    fn live(&mut self, key: &[u8], now_ms: u64) -> Option<&mut ModelEntry> {
        let expired = self
            .keys
            .get(key)
            .is_some_and(|entry| entry.expire_at_ms != 0 && now_ms > entry.expire_at_ms);
        if expired {
            self.keys.remove(key);
        }
        self.keys.get_mut(key)
    }

    fn live_lock(&mut self, key: &[u8], now_ms: u64) -> Option<&mut ModelLock> {
        if self
            .locks
            .get(key)
            .is_some_and(|lock| now_ms > lock.expire_at_ms)
        {
            self.locks.remove(key);
        }
        self.locks.get_mut(key)
    }

    fn token(&self, key: &[u8], choice: TokenChoice) -> u64 {
        let granted = self.granted.get(key).map(Vec::as_slice).unwrap_or_default();
        let chosen = match choice {
            TokenChoice::Latest => granted.last(),
            TokenChoice::Previous => granted.len().checked_sub(2).map(|index| &granted[index]),
            TokenChoice::Bogus => None,
        };
        chosen.copied().unwrap_or(1)
    }

    /// The expected reply of a lock step, given the store's `actual` reply: a new grant's token
    /// cannot be predicted, so it is checked to exceed every earlier one of the key and adopted.
    fn execute_lock(&mut self, step: &Step, now_ms: u64, actual: &Reply) -> Reply {
        match step {
            Step::LockAcquire {
                key,
                owner,
                lease_ms,
                mode,
            } => {
                let deadline_ms = now_ms + (*lease_ms).max(1);
                match self.live_lock(key, now_ms) {
                    Some(lock) if lock.owner != *owner => Reply::LockHeld(Box::new(LockHolder {
                        owner: Bytes::from(lock.owner.clone()),
                        token: lock.token,
                        deadline_ms: lock.expire_at_ms,
                        mode: lock.mode,
                        num_waiters: 0,
                    })),
                    Some(lock) => {
                        lock.expire_at_ms = deadline_ms;
                        lock.mode = *mode;
                        Reply::LockGranted {
                            token: lock.token,
                            deadline_ms,
                        }
                    }
                    None => {
                        let Reply::LockGranted { token, .. } = actual else {
                            return Reply::LockGranted {
                                token: 0,
                                deadline_ms,
                            };
                        };
                        let granted = self.granted.entry(key.clone()).or_default();
                        if granted.last().is_some_and(|last| last >= token) {
                            return Reply::Error(StoreError::Fenced {
                                token: *token,
                                held_token_opt: granted.last().copied(),
                            });
                        }
                        granted.push(*token);
                        self.locks.insert(
                            key.clone(),
                            ModelLock {
                                owner: owner.clone(),
                                token: *token,
                                mode: *mode,
                                expire_at_ms: deadline_ms,
                            },
                        );
                        Reply::LockGranted {
                            token: *token,
                            deadline_ms,
                        }
                    }
                }
            }
            Step::LockRelease { key, choice } => {
                let token = self.token(key, *choice);
                if self
                    .live_lock(key, now_ms)
                    .is_some_and(|lock| lock.token == token)
                {
                    self.locks.remove(key);
                    Reply::Integer(1)
                } else {
                    Reply::Integer(0)
                }
            }
            Step::LockRenew {
                key,
                choice,
                lease_ms,
            } => {
                let token = self.token(key, *choice);
                match self.live_lock(key, now_ms) {
                    Some(lock) if lock.token == token => {
                        lock.expire_at_ms = now_ms + (*lease_ms).max(1);
                        Reply::Integer(1)
                    }
                    _ => Reply::Integer(0),
                }
            }
            Step::LockInspect(key) => match self.live_lock(key, now_ms) {
                Some(lock) => Reply::LockHeld(Box::new(LockHolder {
                    owner: Bytes::from(lock.owner.clone()),
                    token: lock.token,
                    deadline_ms: lock.expire_at_ms,
                    mode: lock.mode,
                    num_waiters: 0,
                })),
                None => Reply::Nil,
            },
            Step::GuardedSet { key, value, choice } => {
                let token = self.token(key, *choice);
                let held_token_opt = self.live_lock(key, now_ms).map(|lock| lock.token);
                if held_token_opt != Some(token) {
                    return Reply::Error(StoreError::Fenced {
                        token,
                        held_token_opt,
                    });
                }
                self.keys.insert(
                    key.clone(),
                    ModelEntry {
                        value: ModelValue::String(value.clone()),
                        expire_at_ms: 0,
                    },
                );
                Reply::Written { cas: 0 }
            }
            _ => unreachable!("not a lock step: {step:?}"),
        }
    }

    fn execute(&mut self, step: &Step, now_ms: u64) -> Reply {
        let wrong_type = Reply::Error(StoreError::WrongType);
        match step {
            Step::Get(key) => match self.live(key, now_ms).map(|entry| &entry.value) {
                None => Reply::Nil,
                Some(ModelValue::String(value)) => Reply::Bulk(Bytes::from(value.clone())),
                Some(ModelValue::Hash(_)) => wrong_type,
            },
            Step::Set {
                key,
                value,
                ttl_ms,
                condition,
                return_old,
            } => {
                let current = self.live(key, now_ms).cloned();
                let old_reply = match (&current, return_old) {
                    (Some(entry), true) => match &entry.value {
                        ModelValue::String(old) => Reply::Bulk(Bytes::from(old.clone())),
                        ModelValue::Hash(_) => return wrong_type,
                    },
                    _ => Reply::Nil,
                };
                let unmet = match condition {
                    0 => false,
                    1 => current.is_some(),
                    _ => current.is_none(),
                };
                if unmet {
                    return if *return_old {
                        old_reply
                    } else {
                        Reply::ConditionNotMet
                    };
                }
                let expire_at_ms = match ttl_ms {
                    None => 0,
                    Some(0) => current.map_or(0, |entry| entry.expire_at_ms),
                    Some(ttl_ms) => now_ms + ttl_ms,
                };
                self.keys.insert(
                    key.clone(),
                    ModelEntry {
                        value: ModelValue::String(value.clone()),
                        expire_at_ms,
                    },
                );
                if *return_old {
                    old_reply
                } else {
                    Reply::Written { cas: 0 }
                }
            }
            Step::Delete(key) => {
                let existed = self.live(key, now_ms).is_some();
                self.keys.remove(key);
                Reply::Integer(i64::from(existed))
            }
            Step::Append(key, suffix) => match self.live(key, now_ms) {
                None => {
                    self.keys.insert(
                        key.clone(),
                        ModelEntry {
                            value: ModelValue::String(suffix.clone()),
                            expire_at_ms: 0,
                        },
                    );
                    Reply::Integer(suffix.len() as i64)
                }
                Some(entry) => match &mut entry.value {
                    ModelValue::String(value) => {
                        value.extend_from_slice(suffix);
                        Reply::Integer(value.len() as i64)
                    }
                    ModelValue::Hash(_) => wrong_type,
                },
            },
            Step::IncrBy(key, delta) => {
                let entry = self.live(key, now_ms);
                let (current, expire_at_ms) =
                    match entry.map(|entry| (&entry.value, entry.expire_at_ms)) {
                        None => (0, 0),
                        Some((ModelValue::Hash(_), _)) => return wrong_type,
                        Some((ModelValue::String(value), expire_at_ms)) => {
                            let parsed = std::str::from_utf8(value)
                                .ok()
                                .filter(|text| !text.starts_with('+') && !text.starts_with("-0"))
                                .filter(|text| !(text.len() > 1 && text.starts_with('0')))
                                .and_then(|text| text.parse::<i64>().ok());
                            match parsed {
                                Some(current) => (current, expire_at_ms),
                                None => return Reply::Error(StoreError::NotAnInteger),
                            }
                        }
                    };
                let Some(new_value) = current.checked_add(*delta) else {
                    return Reply::Error(StoreError::IncrementOverflow);
                };
                self.keys.insert(
                    key.clone(),
                    ModelEntry {
                        value: ModelValue::String(new_value.to_string().into_bytes()),
                        expire_at_ms,
                    },
                );
                Reply::Integer(new_value)
            }
            Step::Expire {
                key,
                ttl_ms,
                condition,
            } => {
                let Some(entry) = self.live(key, now_ms) else {
                    return Reply::Integer(0);
                };
                let current = entry.expire_at_ms;
                let new = now_ms + ttl_ms;
                let holds = match condition {
                    ExpireCondition::Always => true,
                    ExpireCondition::IfNoExpiry => current == 0,
                    ExpireCondition::IfHasExpiry => current != 0,
                    ExpireCondition::IfGreater => current != 0 && new > current,
                    ExpireCondition::IfLess => current == 0 || new < current,
                    ExpireCondition::IfHasExpiryAndLess => current != 0 && new < current,
                };
                if !holds {
                    return Reply::Integer(0);
                }
                if new <= now_ms {
                    self.keys.remove(key);
                } else {
                    entry.expire_at_ms = new;
                }
                Reply::Integer(1)
            }
            Step::Persist(key) => match self.live(key, now_ms) {
                Some(entry) if entry.expire_at_ms != 0 => {
                    entry.expire_at_ms = 0;
                    Reply::Integer(1)
                }
                _ => Reply::Integer(0),
            },
            Step::Pttl(key) => match self.live(key, now_ms) {
                None => Reply::Integer(-2),
                Some(entry) if entry.expire_at_ms == 0 => Reply::Integer(-1),
                Some(entry) => Reply::Integer((entry.expire_at_ms - now_ms) as i64),
            },
            Step::HashSet(key, field, value) => match self.live(key, now_ms) {
                None => {
                    self.keys.insert(
                        key.clone(),
                        ModelEntry {
                            value: ModelValue::Hash(vec![(field.clone(), value.clone())]),
                            expire_at_ms: 0,
                        },
                    );
                    Reply::Integer(1)
                }
                Some(entry) => match &mut entry.value {
                    ModelValue::String(_) => wrong_type,
                    ModelValue::Hash(pairs) => {
                        match pairs.iter_mut().find(|(existing, _)| existing == field) {
                            Some((_, existing)) => {
                                *existing = value.clone();
                                Reply::Integer(0)
                            }
                            None => {
                                pairs.push((field.clone(), value.clone()));
                                Reply::Integer(1)
                            }
                        }
                    }
                },
            },
            Step::HashDelete(key, field) => {
                let Some(entry) = self.live(key, now_ms) else {
                    return Reply::Integer(0);
                };
                let ModelValue::Hash(pairs) = &mut entry.value else {
                    return wrong_type;
                };
                let before = pairs.len();
                pairs.retain(|(existing, _)| existing != field);
                let removed = before - pairs.len();
                if pairs.is_empty() {
                    self.keys.remove(key);
                }
                Reply::Integer(removed as i64)
            }
            Step::HashGetAll(key) => match self.live(key, now_ms).map(|entry| &entry.value) {
                None => Reply::Pairs(Vec::new()),
                Some(ModelValue::String(_)) => wrong_type,
                Some(ModelValue::Hash(pairs)) => Reply::Pairs(
                    pairs
                        .iter()
                        .map(|(field, value)| {
                            (Bytes::from(field.clone()), Bytes::from(value.clone()))
                        })
                        .collect(),
                ),
            },
            Step::Rename(from, to) => {
                let Some(entry) = self.live(from, now_ms).cloned() else {
                    return Reply::Error(StoreError::NoSuchKey);
                };
                self.keys.remove(from);
                self.keys.insert(to.clone(), entry);
                Reply::Ok
            }
            Step::Advance(_) | Step::Sweep(_) => Reply::Ok,
            Step::LockAcquire { .. }
            | Step::LockRelease { .. }
            | Step::LockRenew { .. }
            | Step::LockInspect(_)
            | Step::GuardedSet { .. } => unreachable!("lock steps go through execute_lock"),
        }
    }
}

/// One step of a generated sequence.
#[derive(Debug, Clone)]
enum Step {
    Get(Vec<u8>),
    Set {
        key: Vec<u8>,
        value: Vec<u8>,
        /// None = no expiry, Some(0) = KEEPTTL, Some(ms) = relative TTL.
        ttl_ms: Option<u64>,
        /// 0 always, 1 NX, 2 XX.
        condition: u8,
        return_old: bool,
    },
    Delete(Vec<u8>),
    Append(Vec<u8>, Vec<u8>),
    IncrBy(Vec<u8>, i64),
    Expire {
        key: Vec<u8>,
        ttl_ms: u64,
        condition: ExpireCondition,
    },
    Persist(Vec<u8>),
    Pttl(Vec<u8>),
    HashSet(Vec<u8>, Vec<u8>, Vec<u8>),
    HashDelete(Vec<u8>, Vec<u8>),
    HashGetAll(Vec<u8>),
    /// Rename between two distinct keys.
    Rename(Vec<u8>, Vec<u8>),
    Advance(u64),
    Sweep(usize),
    LockAcquire {
        key: Vec<u8>,
        owner: Vec<u8>,
        lease_ms: u64,
        mode: LockMode,
    },
    LockRelease {
        key: Vec<u8>,
        choice: TokenChoice,
    },
    LockRenew {
        key: Vec<u8>,
        choice: TokenChoice,
        lease_ms: u64,
    },
    LockInspect(Vec<u8>),
    GuardedSet {
        key: Vec<u8>,
        value: Vec<u8>,
        choice: TokenChoice,
    },
}

impl Step {
    fn is_lock_step(&self) -> bool {
        matches!(
            self,
            Step::LockAcquire { .. }
                | Step::LockRelease { .. }
                | Step::LockRenew { .. }
                | Step::LockInspect(_)
                | Step::GuardedSet { .. }
        )
    }

    /// The op of the step; lock steps take their tokens from `model`.
    fn op(&self, model: &Model, now_ms: u64) -> Option<Op> {
        let key = |key: &Vec<u8>| Bytes::from(key.clone());
        Some(match self {
            Step::Get(k) => Op::Get { key: key(k) },
            Step::Set {
                key: k,
                value,
                ttl_ms,
                condition,
                return_old,
            } => Op::Set {
                key: key(k),
                value: Bytes::from(value.clone()),
                expiry: match ttl_ms {
                    None => SetExpiry::Never,
                    Some(0) => SetExpiry::Keep,
                    Some(ttl_ms) => SetExpiry::AtMs(now_ms + ttl_ms),
                },
                condition: match condition {
                    0 => SetCondition::Always,
                    1 => SetCondition::IfAbsent,
                    _ => SetCondition::IfPresent,
                },
                return_old: *return_old,
                flags: 0,
            },
            Step::Delete(k) => Op::Delete {
                key: key(k),
                cas_opt: None,
            },
            Step::Append(k, suffix) => Op::Append {
                key: key(k),
                value: Bytes::from(suffix.clone()),
            },
            Step::IncrBy(k, delta) => Op::IncrBy {
                key: key(k),
                delta: *delta,
            },
            Step::Expire {
                key: k,
                ttl_ms,
                condition,
            } => Op::Expire {
                key: key(k),
                target: ExpireTarget::AtMs(now_ms + ttl_ms),
                condition: *condition,
            },
            Step::Persist(k) => Op::Expire {
                key: key(k),
                target: ExpireTarget::Persist,
                condition: ExpireCondition::Always,
            },
            Step::Pttl(k) => Op::Ttl {
                key: key(k),
                unit: TimeUnit::Milliseconds,
            },
            Step::HashSet(k, field, value) => Op::HashSet {
                key: key(k),
                pairs: vec![(Bytes::from(field.clone()), Bytes::from(value.clone()))],
            },
            Step::HashDelete(k, field) => Op::HashDelete {
                key: key(k),
                fields: vec![Bytes::from(field.clone())],
            },
            Step::HashGetAll(k) => Op::HashGetAll { key: key(k) },
            Step::Rename(from, to) => Op::Rename {
                from: key(from),
                to: key(to),
                only_if_target_absent: false,
            },
            Step::Advance(_) | Step::Sweep(_) => return None,
            Step::LockAcquire {
                key: k,
                owner,
                lease_ms,
                mode,
            } => Op::LockAcquire {
                key: key(k),
                owner: Bytes::from(owner.clone()),
                mode: *mode,
                lease_ms: *lease_ms,
                wait_ms: 0,
            },
            Step::LockRelease { key: k, choice } => Op::LockRelease {
                key: key(k),
                token: model.token(k, *choice),
            },
            Step::LockRenew {
                key: k,
                choice,
                lease_ms,
            } => Op::LockRenew {
                key: key(k),
                token: model.token(k, *choice),
                lease_ms: *lease_ms,
            },
            Step::LockInspect(k) => Op::LockInspect { key: key(k) },
            Step::GuardedSet {
                key: k,
                value,
                choice,
            } => Op::GuardedSet {
                key: key(k),
                value: Bytes::from(value.clone()),
                expiry: SetExpiry::Never,
                token: model.token(k, *choice),
            },
        })
    }
}

fn token_choice_strategy() -> impl Strategy<Value = TokenChoice> {
    prop_oneof![
        3 => Just(TokenChoice::Latest),
        1 => Just(TokenChoice::Previous),
        1 => Just(TokenChoice::Bogus),
    ]
}

fn lock_step_strategy() -> impl Strategy<Value = Step> {
    let owner = (0..3u8).prop_map(|index| format!("w{index}").into_bytes());
    let mode = prop_oneof![Just(LockMode::Lease), Just(LockMode::Session)];
    prop_oneof![
        (key_strategy(), owner, 0..400u64, mode).prop_map(|(key, owner, lease_ms, mode)| {
            Step::LockAcquire {
                key,
                owner,
                lease_ms,
                mode,
            }
        }),
        (key_strategy(), token_choice_strategy())
            .prop_map(|(key, choice)| Step::LockRelease { key, choice }),
        (key_strategy(), token_choice_strategy(), 0..400u64).prop_map(|(key, choice, lease_ms)| {
            Step::LockRenew {
                key,
                choice,
                lease_ms,
            }
        }),
        key_strategy().prop_map(Step::LockInspect),
        (key_strategy(), small_bytes(), token_choice_strategy())
            .prop_map(|(key, value, choice)| Step::GuardedSet { key, value, choice }),
    ]
}

fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
    (0..5u8).prop_map(|index| format!("k{index}").into_bytes())
}

fn small_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"1".to_vec()),
        Just(b"-7".to_vec()),
        Just(b"abc".to_vec()),
        Just(b"007".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ]
}

fn condition_strategy() -> impl Strategy<Value = ExpireCondition> {
    prop_oneof![
        Just(ExpireCondition::Always),
        Just(ExpireCondition::IfNoExpiry),
        Just(ExpireCondition::IfHasExpiry),
        Just(ExpireCondition::IfGreater),
        Just(ExpireCondition::IfLess),
        Just(ExpireCondition::IfHasExpiryAndLess),
    ]
}

fn step_strategy() -> impl Strategy<Value = Step> {
    let field = (0..3u8).prop_map(|index| format!("f{index}").into_bytes());
    prop_oneof![
        key_strategy().prop_map(Step::Get),
        (
            key_strategy(),
            small_bytes(),
            prop_oneof![Just(None), Just(Some(0)), (1..500u64).prop_map(Some)],
            0..3u8,
            any::<bool>()
        )
            .prop_map(|(key, value, ttl_ms, condition, return_old)| Step::Set {
                key,
                value,
                ttl_ms,
                condition,
                return_old,
            }),
        key_strategy().prop_map(Step::Delete),
        (key_strategy(), small_bytes()).prop_map(|(key, suffix)| Step::Append(key, suffix)),
        (
            key_strategy(),
            prop_oneof![-3..3i64, Just(i64::MAX), Just(i64::MIN)]
        )
            .prop_map(|(key, delta)| Step::IncrBy(key, delta)),
        (key_strategy(), 0..500u64, condition_strategy()).prop_map(|(key, ttl_ms, condition)| {
            Step::Expire {
                key,
                ttl_ms,
                condition,
            }
        }),
        key_strategy().prop_map(Step::Persist),
        key_strategy().prop_map(Step::Pttl),
        (key_strategy(), field.clone(), small_bytes())
            .prop_map(|(key, field, value)| Step::HashSet(key, field, value)),
        (key_strategy(), field).prop_map(|(key, field)| Step::HashDelete(key, field)),
        key_strategy().prop_map(Step::HashGetAll),
        (key_strategy(), key_strategy())
            .prop_filter("distinct keys", |(from, to)| from != to)
            .prop_map(|(from, to)| Step::Rename(from, to)),
        (1..300u64).prop_map(Step::Advance),
        (0..4usize).prop_map(Step::Sweep),
        lock_step_strategy(),
        lock_step_strategy(),
    ]
}

/// Zeroes CAS values, which the model does not predict.
fn normalize(reply: Reply) -> Reply {
    match reply {
        Reply::Written { .. } => Reply::Written { cas: 0 },
        other => other,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_op_sequences_match_the_model_and_memory_returns_to_its_baseline(
        steps in proptest::collection::vec(step_strategy(), 1..120)
    ) {
        let store = Store::new(StoreConfig {
            num_partitions: 1,
            tombstone_ttl_ms: TOMBSTONE_TTL_MS,
            ..StoreConfig::default()
        })
        .expect("valid config");
        let baseline_bytes = store.memory_used_bytes();
        let mut model = Model::default();
        let mut now_ms = 1_000_000;
        for step in &steps {
            match step {
                Step::Advance(ms) => now_ms += ms,
                Step::Sweep(budget) => {
                    let removed = store.partition(0).sweep(now_ms, *budget);
                    prop_assert!(removed <= *budget);
                }
                _ => {}
            }
            let op_opt = step.op(&model, now_ms);
            if step.is_lock_step() {
                let Some(op) = op_opt else { continue };
                let mut partition = store.partition(0);
                let reply = normalize(partition.execute(0, op, now_ms).reply);
                let expected = model.execute_lock(step, now_ms, &reply);
                prop_assert_eq!(reply, expected, "step {:?} at {}", step, now_ms);
                prop_assert_eq!(partition.memory_bytes(), partition.recompute_memory_bytes());
                continue;
            }
            let expected = model.execute(step, now_ms);
            if let Some(op) = op_opt {
                let mut partition = store.partition(0);
                let reply = normalize(partition.execute(0, op, now_ms).reply);
                prop_assert_eq!(reply, expected, "step {:?} at {}", step, now_ms);
                prop_assert_eq!(partition.memory_bytes(), partition.recompute_memory_bytes());
                prop_assert_eq!(
                    store.stats().expire_at_s_sum_per_db[0],
                    partition.recompute_expire_at_s_sum(0),
                    "deadline sum after step {:?}", step
                );
            }
        }
        // Delete everything, let the leases and deadlines (under 500 ms) pass and the tombstones
        // (of deletes and of expiries) age out, sweep: memory is back where it started.
        for index in 0..5u8 {
            let key = Bytes::from(format!("k{index}"));
            store.partition(0).execute(0, Op::Delete { key, cas_opt: None }, now_ms);
        }
        now_ms += 500 + TOMBSTONE_TTL_MS + 1;
        while store.partition(0).sweep(now_ms, 3) > 0 {}
        prop_assert_eq!(store.num_keys(), 0);
        prop_assert_eq!(store.stats().num_locks, 0);
        prop_assert_eq!(store.stats().num_tombstones, 0);
        prop_assert_eq!(store.memory_used_bytes(), baseline_bytes);
    }
}
