//! Data-driven tests of the lock ops and the guarded write, and of locks through replication,
//! snapshots, expiry and the client-visible keyspace.

use std::collections::HashMap;

use bytes::Bytes;

use crate::{
    ExportCursor, LOCK_DATABASE, LOCK_LEASE_MS_MAX, LOCK_OWNER_MAX_BYTES, LOCK_WAIT_MS_MAX,
    LockHolder, LockMode, Op, Reply, SetCondition, SetExpiry, Store, StoreConfig, StoreError,
};

const NOW_MS: u64 = 1_000_000;

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn store_for_node(node_id: u32) -> Store {
    Store::new(StoreConfig {
        num_partitions: 1,
        node_id,
        ..StoreConfig::default()
    })
    .expect("valid config")
}

/// What a scripted step does; tokens are named by labels, bound by the first grant that
/// returns them (their values come from the clock and are not predicted).
#[derive(Debug, Clone, Copy)]
enum Do {
    Acquire {
        key: &'static str,
        owner: &'static str,
        lease_ms: u64,
    },
    AcquireSession {
        key: &'static str,
        owner: &'static str,
        lease_ms: u64,
    },
    Release {
        key: &'static str,
        token: &'static str,
    },
    Renew {
        key: &'static str,
        token: &'static str,
        lease_ms: u64,
    },
    Inspect {
        key: &'static str,
    },
    GuardedSet {
        key: &'static str,
        value: &'static str,
        token: &'static str,
    },
    Get {
        key: &'static str,
    },
}

/// What the step must answer.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Granted with the token of this label (bound now if new, else the same token) and this
    /// deadline.
    Granted {
        token: &'static str,
        deadline_ms: u64,
    },
    /// Held by `owner` with the token of `token` until `deadline_ms`.
    Held {
        owner: &'static str,
        token: &'static str,
        deadline_ms: u64,
        mode: LockMode,
    },
    Integer(i64),
    Nil,
    Written,
    Bulk(&'static str),
    /// Fenced: the token of `token` was refused while the lock was held with `held` (or free).
    Fenced {
        token: &'static str,
        held_opt: Option<&'static str>,
    },
}

/// A token label that was never granted: a client guessing.
const BOGUS: &str = "bogus";
const BOGUS_TOKEN: u64 = 1;

struct Script<'a> {
    store: &'a Store,
    tokens: HashMap<&'static str, u64>,
    /// The largest token granted so far per key: every new grant must exceed it.
    largest_per_key: HashMap<&'static str, u64>,
}

impl<'a> Script<'a> {
    fn new(store: &'a Store) -> Script<'a> {
        Script {
            store,
            tokens: HashMap::from([(BOGUS, BOGUS_TOKEN)]),
            largest_per_key: HashMap::new(),
        }
    }

    fn token(&self, label: &str) -> u64 {
        *self
            .tokens
            .get(label)
            .unwrap_or_else(|| panic!("token {label} used before it was granted"))
    }

    fn op(&self, step: Do) -> Op {
        match step {
            Do::Acquire {
                key,
                owner,
                lease_ms,
            } => Op::LockAcquire {
                key: b(key),
                owner: b(owner),
                mode: LockMode::Lease,
                lease_ms,
                wait_ms: 0,
            },
            Do::AcquireSession {
                key,
                owner,
                lease_ms,
            } => Op::LockAcquire {
                key: b(key),
                owner: b(owner),
                mode: LockMode::Session,
                lease_ms,
                wait_ms: 0,
            },
            Do::Release { key, token } => Op::LockRelease {
                key: b(key),
                token: self.token(token),
            },
            Do::Renew {
                key,
                token,
                lease_ms,
            } => Op::LockRenew {
                key: b(key),
                token: self.token(token),
                lease_ms,
            },
            Do::Inspect { key } => Op::LockInspect { key: b(key) },
            Do::GuardedSet { key, value, token } => Op::GuardedSet {
                key: b(key),
                value: b(value),
                expiry: SetExpiry::Never,
                token: self.token(token),
            },
            Do::Get { key } => Op::Get { key: b(key) },
        }
    }

    /// Binds or checks a granted token, and checks that a new one exceeds every earlier grant.
    fn granted(&mut self, key: &'static str, label: &'static str, token: u64) {
        match self.tokens.get(label) {
            Some(bound) => assert_eq!(*bound, token, "token {label} changed"),
            None => {
                let largest = self.largest_per_key.get(key).copied().unwrap_or(0);
                assert!(
                    token > largest,
                    "new token {label} = {token} does not exceed {largest}"
                );
                self.tokens.insert(label, token);
                self.largest_per_key.insert(key, token);
            }
        }
    }

    fn expected(&mut self, step: Do, expect: Expect, actual: &Reply) -> Reply {
        match expect {
            Expect::Granted { token, deadline_ms } => {
                if let (Reply::LockGranted { token: actual, .. }, Do::Acquire { key, .. })
                | (Reply::LockGranted { token: actual, .. }, Do::AcquireSession { key, .. }) =
                    (actual, step)
                {
                    self.granted(key, token, *actual);
                }
                Reply::LockGranted {
                    token: self.tokens.get(token).copied().unwrap_or(0),
                    deadline_ms,
                }
            }
            Expect::Held {
                owner,
                token,
                deadline_ms,
                mode,
            } => Reply::LockHeld(Box::new(LockHolder {
                owner: b(owner),
                token: self.token(token),
                deadline_ms,
                mode,
                num_waiters: 0,
            })),
            Expect::Integer(value) => Reply::Integer(value),
            Expect::Nil => Reply::Nil,
            Expect::Written => Reply::Written { cas: 0 },
            Expect::Bulk(text) => Reply::Bulk(b(text)),
            Expect::Fenced { token, held_opt } => Reply::Error(StoreError::Fenced {
                token: self.token(token),
                held_token_opt: held_opt.map(|label| self.token(label)),
            }),
        }
    }

    /// Runs `(now_ms, step, expected)` on db 0, checking each reply and the memory accounting.
    fn check(&mut self, steps: &[(u64, Do, Expect)]) {
        for (index, (now_ms, step, expect)) in steps.iter().enumerate() {
            let op = self.op(*step);
            let mut partition = self.store.partition(0);
            let outcome = partition.execute(0, op, *now_ms);
            let reply = match outcome.reply {
                Reply::Written { .. } => Reply::Written { cas: 0 },
                other => other,
            };
            let expected = self.expected(*step, *expect, &reply);
            assert_eq!(reply, expected, "step {index}: {step:?} at {now_ms}");
            assert_eq!(
                partition.memory_bytes(),
                partition.recompute_memory_bytes(),
                "step {index}"
            );
        }
    }
}

#[test]
fn a_lock_is_granted_when_free_refused_to_others_and_released_only_with_its_token() {
    let store = store_for_node(1);
    let lease = |owner| Do::Acquire {
        key: "s1",
        owner,
        lease_ms: 1_000,
    };
    Script::new(&store).check(&[
        (NOW_MS, Do::Inspect { key: "s1" }, Expect::Nil),
        (
            NOW_MS,
            lease("w1"),
            Expect::Granted {
                token: "t1",
                deadline_ms: NOW_MS + 1_000,
            },
        ),
        (
            NOW_MS + 10,
            lease("w2"),
            Expect::Held {
                owner: "w1",
                token: "t1",
                deadline_ms: NOW_MS + 1_000,
                mode: LockMode::Lease,
            },
        ),
        (
            NOW_MS + 20,
            Do::Inspect { key: "s1" },
            Expect::Held {
                owner: "w1",
                token: "t1",
                deadline_ms: NOW_MS + 1_000,
                mode: LockMode::Lease,
            },
        ),
        // A wrong token releases nothing.
        (
            NOW_MS + 30,
            Do::Release {
                key: "s1",
                token: BOGUS,
            },
            Expect::Integer(0),
        ),
        (
            NOW_MS + 40,
            Do::Release {
                key: "s1",
                token: "t1",
            },
            Expect::Integer(1),
        ),
        // Released once is released: a second release answers 0.
        (
            NOW_MS + 50,
            Do::Release {
                key: "s1",
                token: "t1",
            },
            Expect::Integer(0),
        ),
        (NOW_MS + 60, Do::Inspect { key: "s1" }, Expect::Nil),
        (
            NOW_MS + 70,
            lease("w2"),
            Expect::Granted {
                token: "t2",
                deadline_ms: NOW_MS + 1_070,
            },
        ),
    ]);
}

#[test]
fn the_holder_reacquiring_refreshes_its_lease_and_keeps_its_token() {
    let store = store_for_node(1);
    Script::new(&store).check(&[
        (
            NOW_MS,
            Do::Acquire {
                key: "s1",
                owner: "w1",
                lease_ms: 100,
            },
            Expect::Granted {
                token: "t1",
                deadline_ms: NOW_MS + 100,
            },
        ),
        (
            NOW_MS + 90,
            Do::AcquireSession {
                key: "s1",
                owner: "w1",
                lease_ms: 500,
            },
            Expect::Granted {
                token: "t1",
                deadline_ms: NOW_MS + 590,
            },
        ),
        // Past the first lease, within the refreshed one, with the new mode.
        (
            NOW_MS + 300,
            Do::Inspect { key: "s1" },
            Expect::Held {
                owner: "w1",
                token: "t1",
                deadline_ms: NOW_MS + 590,
                mode: LockMode::Session,
            },
        ),
    ]);
}

#[test]
fn renew_moves_the_deadline_only_for_the_holder_and_an_expired_lock_is_free() {
    let store = store_for_node(1);
    Script::new(&store).check(&[
        (
            NOW_MS,
            Do::Acquire {
                key: "s1",
                owner: "w1",
                lease_ms: 100,
            },
            Expect::Granted {
                token: "t1",
                deadline_ms: NOW_MS + 100,
            },
        ),
        (
            NOW_MS + 50,
            Do::Renew {
                key: "s1",
                token: BOGUS,
                lease_ms: 1_000,
            },
            Expect::Integer(0),
        ),
        (
            NOW_MS + 50,
            Do::Renew {
                key: "s1",
                token: "t1",
                lease_ms: 200,
            },
            Expect::Integer(1),
        ),
        // Alive at its deadline, gone after it (Redis's rule for every key).
        (
            NOW_MS + 250,
            Do::Inspect { key: "s1" },
            Expect::Held {
                owner: "w1",
                token: "t1",
                deadline_ms: NOW_MS + 250,
                mode: LockMode::Lease,
            },
        ),
        (NOW_MS + 251, Do::Inspect { key: "s1" }, Expect::Nil),
        (
            NOW_MS + 251,
            Do::Renew {
                key: "s1",
                token: "t1",
                lease_ms: 200,
            },
            Expect::Integer(0),
        ),
        (
            NOW_MS + 251,
            Do::Release {
                key: "s1",
                token: "t1",
            },
            Expect::Integer(0),
        ),
        // Expiry frees the lock for someone else, under a larger token.
        (
            NOW_MS + 260,
            Do::Acquire {
                key: "s1",
                owner: "w2",
                lease_ms: 100,
            },
            Expect::Granted {
                token: "t2",
                deadline_ms: NOW_MS + 360,
            },
        ),
    ]);
}

#[test]
fn guarded_writes_land_only_with_the_token_that_holds_the_lock() {
    let store = store_for_node(1);
    let guarded = |token| Do::GuardedSet {
        key: "s1",
        value: "data",
        token,
    };
    Script::new(&store).check(&[
        // Nobody holds the lock yet.
        (
            NOW_MS,
            guarded(BOGUS),
            Expect::Fenced {
                token: BOGUS,
                held_opt: None,
            },
        ),
        (
            NOW_MS,
            Do::Acquire {
                key: "s1",
                owner: "w1",
                lease_ms: 100,
            },
            Expect::Granted {
                token: "t1",
                deadline_ms: NOW_MS + 100,
            },
        ),
        (NOW_MS + 1, guarded("t1"), Expect::Written),
        (NOW_MS + 2, Do::Get { key: "s1" }, Expect::Bulk("data")),
        // A token the lock was never granted with.
        (
            NOW_MS + 3,
            guarded(BOGUS),
            Expect::Fenced {
                token: BOGUS,
                held_opt: Some("t1"),
            },
        ),
        // w1's lease runs out, w2 takes the lock: w1's late write is refused and names t2.
        (
            NOW_MS + 200,
            Do::Acquire {
                key: "s1",
                owner: "w2",
                lease_ms: 100,
            },
            Expect::Granted {
                token: "t2",
                deadline_ms: NOW_MS + 300,
            },
        ),
        (
            NOW_MS + 201,
            guarded("t1"),
            Expect::Fenced {
                token: "t1",
                held_opt: Some("t2"),
            },
        ),
        (NOW_MS + 202, Do::Get { key: "s1" }, Expect::Bulk("data")),
        (
            NOW_MS + 203,
            Do::Release {
                key: "s1",
                token: "t2",
            },
            Expect::Integer(1),
        ),
        (
            NOW_MS + 204,
            guarded("t2"),
            Expect::Fenced {
                token: "t2",
                held_opt: None,
            },
        ),
    ]);
}

#[test]
fn an_owner_id_longer_than_the_limit_is_refused_and_nothing_is_stored() {
    let store = store_for_node(1);
    let owner = Bytes::from(vec![b'o'; LOCK_OWNER_MAX_BYTES + 1]);
    let outcome = store.partition(0).execute(
        0,
        Op::LockAcquire {
            key: b("s1"),
            owner,
            mode: LockMode::Lease,
            lease_ms: 100,
            wait_ms: 0,
        },
        NOW_MS,
    );
    assert_eq!(
        outcome.reply,
        Reply::Error(StoreError::LockOwnerTooLong {
            max_lock_owner_bytes: LOCK_OWNER_MAX_BYTES
        })
    );
    assert!(outcome.mutations.is_empty());
    assert_eq!(store.partition(0).num_locks(), 0);
    // At the limit it is fine.
    let owner = Bytes::from(vec![b'o'; LOCK_OWNER_MAX_BYTES]);
    let outcome = store.partition(0).execute(
        0,
        Op::LockAcquire {
            key: b("s1"),
            owner,
            mode: LockMode::Lease,
            lease_ms: 100,
            wait_ms: 0,
        },
        NOW_MS,
    );
    assert!(matches!(outcome.reply, Reply::LockGranted { .. }));
}

#[test]
fn a_lease_or_wait_beyond_its_bound_is_refused_and_nothing_is_stored() {
    // Only a peer can send these (SCD.LOCK's parser bounds both): a clear error, not an
    // overflowing deadline.
    let store = store_for_node(1);
    let acquire_with = |lease_ms, wait_ms| Op::LockAcquire {
        key: b("s1"),
        owner: b("w"),
        mode: LockMode::Lease,
        lease_ms,
        wait_ms,
    };
    let too_long = |what: &str, ms, max_ms| {
        Reply::Error(StoreError::LockTimeTooLong {
            what: what.to_string(),
            ms,
            max_ms,
        })
    };
    for (op, expected) in [
        (
            acquire_with(u64::MAX, 0),
            too_long("lease", u64::MAX, LOCK_LEASE_MS_MAX),
        ),
        (
            acquire_with(100, LOCK_WAIT_MS_MAX + 1),
            too_long("wait", LOCK_WAIT_MS_MAX + 1, LOCK_WAIT_MS_MAX),
        ),
        (
            Op::LockRenew {
                key: b("s1"),
                token: 1,
                lease_ms: LOCK_LEASE_MS_MAX + 1,
            },
            too_long("lease", LOCK_LEASE_MS_MAX + 1, LOCK_LEASE_MS_MAX),
        ),
    ] {
        let outcome = store.partition(0).execute(0, op, NOW_MS);
        assert_eq!(outcome.reply, expected);
        assert!(outcome.mutations.is_empty());
    }
    assert_eq!(store.partition(0).num_locks(), 0);
    let outcome =
        store
            .partition(0)
            .execute(0, acquire_with(LOCK_LEASE_MS_MAX, LOCK_WAIT_MS_MAX), NOW_MS);
    assert!(matches!(outcome.reply, Reply::LockGranted { .. }));
}

fn acquire(owner: &str, lease_ms: u64) -> Op {
    Op::LockAcquire {
        key: b("s1"),
        owner: b(owner),
        mode: LockMode::Lease,
        lease_ms,
        wait_ms: 0,
    }
}

fn token_of(reply: &Reply) -> u64 {
    match reply {
        Reply::LockGranted { token, .. } => *token,
        other => panic!("not granted: {other:?}"),
    }
}

#[test]
fn a_lock_is_the_same_from_every_client_database_and_lives_in_the_lock_database() {
    let store = store_for_node(1);
    let first = store.partition(0).execute(3, acquire("w1", 1_000), NOW_MS);
    let mutation = first
        .mutations
        .iter()
        .next()
        .expect("a grant is replicated");
    assert_eq!(mutation.db, LOCK_DATABASE);
    let from_db_9 = store.partition(0).execute(9, acquire("w2", 1_000), NOW_MS);
    assert!(
        matches!(&from_db_9.reply, Reply::LockHeld(holder) if holder.token == token_of(&first.reply))
    );
}

#[test]
fn locks_are_invisible_to_scan_keys_dbsize_flush_and_the_keyspace_counts() {
    let store = store_for_node(1);
    let granted = store.partition(0).execute(0, acquire("w1", 10_000), NOW_MS);
    let token = token_of(&granted.reply);
    let run = |db: u8, op: Op| store.partition(0).execute(db, op, NOW_MS).reply;
    for db in 0..crate::NUM_DATABASES {
        assert_eq!(run(db, Op::DbSize), Reply::Integer(0), "db {db}");
        assert_eq!(run(db, Op::Keys { pattern: b("*") }), Reply::Array(vec![]));
        assert_eq!(
            run(
                db,
                Op::Scan {
                    start_position: 0,
                    count: 100,
                    pattern: None,
                    type_filter: None,
                }
            ),
            Reply::Scan(crate::ScanPage {
                keys: vec![],
                next_position: None,
            })
        );
        assert_eq!(run(db, Op::Exists { key: b("s1") }), Reply::Integer(0));
    }
    // SELECT cannot reach it: the store refuses the lock database for data ops.
    assert_eq!(
        run(LOCK_DATABASE, Op::Get { key: b("s1") }),
        Reply::Error(StoreError::DatabaseOutOfRange)
    );
    assert_eq!(run(0, Op::FlushAll), Reply::Ok);
    assert_eq!(run(0, Op::FlushDb), Reply::Ok);
    assert!(
        matches!(run(0, Op::LockInspect { key: b("s1") }), Reply::LockHeld(holder) if holder.token == token)
    );
    let stats = store.stats();
    assert_eq!(stats.num_keys_per_db, [0; crate::NUM_DATABASES as usize]);
    assert_eq!(stats.num_locks, 1);
    assert_eq!(store.num_keys(), 1);
    assert!(stats.memory_used_bytes > 0, "locks count toward memory");
}

#[test]
fn tokens_grow_across_grants_releases_expiries_and_a_failover_to_a_backup() {
    let primary = store_for_node(1);
    let backup = store_for_node(2);
    let mut tokens = Vec::new();
    // Grants on the primary, streamed to the backup as the engine streams mutations.
    let run_on_primary = |op: Op, now_ms: u64| {
        let outcome = primary.partition(0).execute(0, op, now_ms);
        for mutation in outcome.mutations {
            assert!(backup.partition(0).apply(mutation, now_ms));
        }
        outcome.reply
    };
    let first = token_of(&run_on_primary(acquire("w1", 100), NOW_MS));
    tokens.push(first);
    assert_eq!(
        run_on_primary(
            Op::LockRelease {
                key: b("s1"),
                token: first
            },
            NOW_MS + 1
        ),
        Reply::Integer(1)
    );
    tokens.push(token_of(&run_on_primary(acquire("w2", 100), NOW_MS + 1)));
    // Expired and swept on both: the tombstone of the lease's version is left.
    let later_ms = NOW_MS + 200;
    primary.partition(0).sweep(later_ms, 100);
    backup.partition(0).sweep(later_ms, 100);
    tokens.push(token_of(&run_on_primary(acquire("w3", 100), later_ms)));
    assert_eq!(
        run_on_primary(
            Op::LockRelease {
                key: b("s1"),
                token: tokens[2]
            },
            later_ms
        ),
        Reply::Integer(1)
    );
    // The primary fails; the backup, whose wall clock runs a whole second behind, is promoted
    // and grants the lock: it observed the primary's versions, so its token is still larger.
    let behind_ms = NOW_MS - 1_000;
    let on_backup = backup
        .partition(0)
        .execute(0, acquire("w4", 100), behind_ms)
        .reply;
    tokens.push(token_of(&on_backup));
    assert!(
        tokens.windows(2).all(|pair| pair[0] < pair[1]),
        "tokens do not grow: {tokens:?}"
    );
}

#[test]
fn a_held_lock_survives_replication_and_a_snapshot_with_its_token_and_deadline() {
    let primary = store_for_node(1);
    let replica = store_for_node(2);
    let snapshot_target = store_for_node(3);
    let outcome = primary
        .partition(0)
        .execute(0, acquire("w1", 5_000), NOW_MS);
    let token = token_of(&outcome.reply);
    for mutation in outcome.mutations {
        assert!(replica.partition(0).apply(mutation, NOW_MS));
    }
    // Some data too, so the snapshot crosses databases.
    primary.partition(0).execute(
        0,
        Op::Set {
            key: b("data"),
            value: b("v"),
            expiry: SetExpiry::Never,
            condition: SetCondition::Always,
            return_old: false,
            flags: 0,
        },
        NOW_MS,
    );
    let mut cursor = ExportCursor::new();
    loop {
        let chunk = primary.partition(0).export_chunk(&mut cursor, 1);
        if chunk.is_empty() {
            break;
        }
        for mutation in chunk {
            snapshot_target.partition(0).apply(mutation, NOW_MS);
        }
    }
    let expected = Reply::LockHeld(Box::new(LockHolder {
        owner: b("w1"),
        token,
        deadline_ms: NOW_MS + 5_000,
        mode: LockMode::Lease,
        num_waiters: 0,
    }));
    for store in [&primary, &replica, &snapshot_target] {
        let reply = store
            .partition(0)
            .execute(0, Op::LockInspect { key: b("s1") }, NOW_MS + 1)
            .reply;
        assert_eq!(reply, expected);
        // The copy refuses other owners and guards writes exactly like the original.
        let refused = store
            .partition(0)
            .execute(0, acquire("w2", 100), NOW_MS + 1)
            .reply;
        assert!(matches!(refused, Reply::LockHeld(_)));
        assert_eq!(store.stats().num_locks, 1);
    }
    assert_eq!(snapshot_target.partition(0).num_keys_in_db(0), 1);
}

#[test]
fn released_and_expired_locks_give_their_memory_back() {
    let store = store_for_node(1);
    let baseline = store.memory_used_bytes();
    let token = token_of(
        &store
            .partition(0)
            .execute(0, acquire("w1", 100), NOW_MS)
            .reply,
    );
    assert!(store.memory_used_bytes() > baseline);
    store.partition(0).execute(
        0,
        Op::LockRelease {
            key: b("s1"),
            token,
        },
        NOW_MS,
    );
    store.partition(0).execute(
        0,
        Op::LockAcquire {
            key: b("s2"),
            owner: b("w1"),
            mode: LockMode::Session,
            lease_ms: 10,
            wait_ms: 0,
        },
        NOW_MS,
    );
    // Past the lease and the tombstone's life: the sweeper removes both.
    let much_later_ms = NOW_MS + StoreConfig::default().tombstone_ttl_ms + 1_000;
    while store.partition(0).sweep(much_later_ms, 10) > 0 {}
    assert_eq!(store.memory_used_bytes(), baseline);
    assert_eq!(store.stats().num_locks, 0);
}

#[test]
fn lock_ops_and_compatibility_locks_require_write_through() {
    let cases: Vec<(Op, bool)> = vec![
        (acquire("w1", 100), true),
        (
            Op::LockRelease {
                key: b("s1"),
                token: 1,
            },
            true,
        ),
        (
            Op::LockRenew {
                key: b("s1"),
                token: 1,
                lease_ms: 1,
            },
            true,
        ),
        (Op::LockInspect { key: b("s1") }, false),
        (
            Op::GuardedSet {
                key: b("s1"),
                value: b("v"),
                expiry: SetExpiry::Never,
                token: 1,
            },
            false,
        ),
        // phpredis: SET <sid>_LOCK <secret> NX PX <ms>; php-memcached: add with an expiry.
        (set_op(SetCondition::IfAbsent, SetExpiry::AtMs(5)), true),
        (set_op(SetCondition::IfAbsent, SetExpiry::Never), false),
        (set_op(SetCondition::Always, SetExpiry::AtMs(5)), false),
        (set_op(SetCondition::IfPresent, SetExpiry::AtMs(5)), false),
        // phpredis' release script.
        (
            Op::DeleteIfEquals {
                key: b("s1"),
                value: b("secret"),
            },
            true,
        ),
        (
            Op::Delete {
                key: b("s1"),
                cas_opt: None,
            },
            false,
        ),
        (Op::Get { key: b("s1") }, false),
    ];
    for (op, expect) in cases {
        assert_eq!(op.requires_write_through(), expect, "{op:?}");
        assert_eq!(
            op.is_lock_op(),
            matches!(
                op,
                Op::LockAcquire { .. }
                    | Op::LockRelease { .. }
                    | Op::LockRenew { .. }
                    | Op::LockInspect { .. }
            ),
            "{op:?}"
        );
    }
}

fn set_op(condition: SetCondition, expiry: SetExpiry) -> Op {
    Op::Set {
        key: b("s1_LOCK"),
        value: b("secret"),
        expiry,
        condition,
        return_old: false,
        flags: 0,
    }
}
