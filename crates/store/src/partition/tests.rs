//! Data-driven tests of every op, plus replication, export, sweep and SCAN.

use bytes::Bytes;

use crate::{
    Change, ConcatSide, CounterDirection, CounterInitial, EntryImage, ExpireCondition,
    ExpireTarget, ExportCursor, Mutation, Op, Outcome, Reply, SetCondition, SetExpiry, Store,
    StoreConfig, StoreError, TimeUnit, ValueImage, ValueType, Version,
};

/// The wall clock of every scripted step unless a step says otherwise.
const NOW_MS: u64 = 1_000_000;

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn store_with(change: impl FnOnce(&mut StoreConfig)) -> Store {
    let mut config = StoreConfig {
        num_partitions: 1,
        ..StoreConfig::default()
    };
    change(&mut config);
    Store::new(config).expect("valid config")
}

fn store() -> Store {
    store_with(|_| {})
}

/// Zeroes what varies from run to run (CAS values, versions) so replies compare as data.
fn normalize(reply: Reply) -> Reply {
    match reply {
        Reply::Written { .. } => Reply::Written { cas: 0 },
        Reply::Counter { value, .. } => Reply::Counter { value, cas: 0 },
        Reply::Value { value, flags, .. } => Reply::Value {
            value,
            flags,
            cas: 0,
        },
        Reply::Image(mut image) => {
            image.version = Version { hlc: 0, node: 0 };
            Reply::Image(image)
        }
        Reply::Array(items) => Reply::Array(items.into_iter().map(normalize).collect()),
        other => other,
    }
}

/// Runs `steps` on db 0 of a one-partition store at `NOW_MS`, checking each reply.
fn check(store: &Store, steps: Vec<(Op, Reply)>) {
    check_at(
        store,
        steps
            .into_iter()
            .map(|(op, reply)| (NOW_MS, op, reply))
            .collect(),
    );
}

/// Runs `(now_ms, op, expected reply)` steps on db 0, checking each reply and that the running
/// memory total matches a recomputation after every step.
fn check_at(store: &Store, steps: Vec<(u64, Op, Reply)>) {
    for (index, (now_ms, op, expect)) in steps.into_iter().enumerate() {
        let description = format!("step {index}: {op:?}");
        let mut partition = store.partition(0);
        let outcome = partition.execute(0, op, now_ms);
        assert_eq!(normalize(outcome.reply), expect, "{description}");
        assert_eq!(
            partition.memory_bytes(),
            partition.recompute_memory_bytes(),
            "{description}"
        );
    }
}

fn run(store: &Store, op: Op) -> Outcome {
    store.partition(0).execute(0, op, NOW_MS)
}

fn get(key: &str) -> Op {
    Op::Get { key: b(key) }
}

fn get_meta(key: &str) -> Op {
    Op::GetWithMeta { key: b(key) }
}

fn set(key: &str, value: &str) -> Op {
    set_with(key, value, SetExpiry::Never, SetCondition::Always, false)
}

fn set_with(
    key: &str,
    value: &str,
    expiry: SetExpiry,
    condition: SetCondition,
    return_old: bool,
) -> Op {
    Op::Set {
        key: b(key),
        value: b(value),
        expiry,
        condition,
        return_old,
        flags: 0,
    }
}

fn set_flags(key: &str, value: &str, flags: u32) -> Op {
    Op::Set {
        key: b(key),
        value: b(value),
        expiry: SetExpiry::Never,
        condition: SetCondition::Always,
        return_old: false,
        flags,
    }
}

fn pttl(key: &str) -> Op {
    Op::Ttl {
        key: b(key),
        unit: TimeUnit::Milliseconds,
    }
}

fn expire(key: &str, deadline_ms: u64, condition: ExpireCondition) -> Op {
    Op::Expire {
        key: b(key),
        target: ExpireTarget::AtMs(deadline_ms),
        condition,
    }
}

fn persist(key: &str) -> Op {
    Op::Expire {
        key: b(key),
        target: ExpireTarget::Persist,
        condition: ExpireCondition::Always,
    }
}

fn hset(key: &str, pairs: &[(&str, &str)]) -> Op {
    Op::HashSet {
        key: b(key),
        pairs: pairs.iter().map(|(f, v)| (b(f), b(v))).collect(),
    }
}

fn del(key: &str) -> Op {
    Op::Delete {
        key: b(key),
        cas_opt: None,
    }
}

fn bulk(text: &str) -> Reply {
    Reply::Bulk(b(text))
}

fn int(value: i64) -> Reply {
    Reply::Integer(value)
}

fn written() -> Reply {
    Reply::Written { cas: 0 }
}

fn error(error: StoreError) -> Reply {
    Reply::Error(error)
}

fn cas_of(store: &Store, key: &str) -> u64 {
    match run(store, get_meta(key)).reply {
        Reply::Value { cas, .. } => cas,
        other => panic!("no value for {key}: {other:?}"),
    }
}

fn pairs(items: &[(&str, &str)]) -> Reply {
    Reply::Pairs(items.iter().map(|(f, v)| (b(f), b(v))).collect())
}

fn bulks(items: &[&str]) -> Reply {
    Reply::Array(items.iter().map(|item| bulk(item)).collect())
}

// ---------------------------------------------------------------------------------------------
// Strings

#[test]
fn set_then_get_returns_the_value_and_a_missing_key_is_nil() {
    check(
        &store(),
        vec![
            (get("a"), Reply::Nil),
            (set("a", "1"), written()),
            (get("a"), bulk("1")),
            (set("a", "2"), written()),
            (get("a"), bulk("2")),
            (Op::Strlen { key: b("a") }, int(1)),
            (Op::Strlen { key: b("zz") }, int(0)),
        ],
    );
}

#[test]
fn set_conditions_follow_nx_xx_and_get() {
    let nx = |value| set_with("a", value, SetExpiry::Never, SetCondition::IfAbsent, false);
    let xx = |value| set_with("a", value, SetExpiry::Never, SetCondition::IfPresent, false);
    check(
        &store(),
        vec![
            (xx("0"), Reply::ConditionNotMet),
            (get("a"), Reply::Nil),
            (nx("1"), written()),
            (nx("2"), Reply::ConditionNotMet),
            (get("a"), bulk("1")),
            (xx("3"), written()),
            (get("a"), bulk("3")),
            // SET ... GET replies the old value whether or not NX let the write happen.
            (
                set_with("a", "4", SetExpiry::Never, SetCondition::IfAbsent, true),
                bulk("3"),
            ),
            (get("a"), bulk("3")),
            (
                set_with("a", "5", SetExpiry::Never, SetCondition::Always, true),
                bulk("3"),
            ),
            (
                set_with("new", "x", SetExpiry::Never, SetCondition::Always, true),
                Reply::Nil,
            ),
            (get("a"), bulk("5")),
        ],
    );
}

#[test]
fn set_get_on_a_hash_is_wrongtype_and_leaves_the_hash() {
    check(
        &store(),
        vec![
            (hset("h", &[("f", "v")]), int(1)),
            (
                set_with("h", "x", SetExpiry::Never, SetCondition::Always, true),
                error(StoreError::WrongType),
            ),
            (Op::Type { key: b("h") }, Reply::Type(Some(ValueType::Hash))),
            (get("h"), error(StoreError::WrongType)),
            // A plain SET overwrites whatever type was there, as in Redis.
            (set("h", "x"), written()),
            (
                Op::Type { key: b("h") },
                Reply::Type(Some(ValueType::String)),
            ),
            (Op::Type { key: b("nope") }, Reply::Type(None)),
        ],
    );
}

#[test]
fn set_keepttl_keeps_the_ttl_and_a_plain_set_clears_it() {
    let deadline = NOW_MS + 5_000;
    check(
        &store(),
        vec![
            (
                set_with(
                    "a",
                    "1",
                    SetExpiry::AtMs(deadline),
                    SetCondition::Always,
                    false,
                ),
                written(),
            ),
            (pttl("a"), int(5_000)),
            (
                set_with("a", "2", SetExpiry::Keep, SetCondition::Always, false),
                written(),
            ),
            (pttl("a"), int(5_000)),
            (set("a", "3"), written()),
            (pttl("a"), int(-1)),
            (pttl("missing"), int(-2)),
        ],
    );
}

#[test]
fn set_with_a_deadline_in_the_past_leaves_the_key_absent() {
    let past = SetExpiry::AtMs(NOW_MS - 1);
    check(
        &store(),
        vec![
            (set("a", "1"), written()),
            (
                set_with("a", "2", past, SetCondition::Always, false),
                Reply::Ok,
            ),
            (get("a"), Reply::Nil),
            (
                set_with("b", "2", past, SetCondition::Always, false),
                Reply::Ok,
            ),
            (get("b"), Reply::Nil),
        ],
    );
}

#[test]
fn a_key_expires_after_its_deadline_and_not_at_it() {
    let deadline = NOW_MS + 100;
    let store = store();
    check_at(
        &store,
        vec![
            (
                NOW_MS,
                set_with(
                    "a",
                    "1",
                    SetExpiry::AtMs(deadline),
                    SetCondition::Always,
                    false,
                ),
                written(),
            ),
            (deadline, get("a"), bulk("1")),
            (deadline, pttl("a"), int(0)),
            (deadline + 1, get("a"), Reply::Nil),
            (deadline + 1, Op::Exists { key: b("a") }, int(0)),
        ],
    );
    assert_eq!(store.stats().num_expired_keys_total, 1);
    assert_eq!(store.num_keys(), 0);
}

#[test]
fn memcached_cas_distinguishes_missing_keys_from_mismatches() {
    let store = store();
    check(&store, vec![(set_flags("a", "1", 7), written())]);
    let cas = cas_of(&store, "a");
    assert_ne!(cas, 0);
    let cas_set = |key: &str, value: &str, cas| {
        set_with(
            key,
            value,
            SetExpiry::Never,
            SetCondition::IfCasEquals(cas),
            false,
        )
    };
    check(
        &store,
        vec![
            (cas_set("missing", "x", cas), Reply::NotFound),
            (cas_set("a", "x", cas + 1), Reply::CasMismatch),
            (
                get_meta("a"),
                Reply::Value {
                    value: b("1"),
                    flags: 7,
                    cas: 0,
                },
            ),
            (cas_set("a", "2", cas), written()),
            // The CAS changed with the write, so the old one no longer matches.
            (cas_set("a", "3", cas), Reply::CasMismatch),
            (get("a"), bulk("2")),
        ],
    );
    assert_ne!(cas_of(&store, "a"), cas);
}

#[test]
fn getex_changes_the_expiry_and_a_past_deadline_deletes_after_reading() {
    let getex = |target| Op::GetEx {
        key: b("a"),
        expiry: target,
    };
    check(
        &store(),
        vec![
            (getex(ExpireTarget::Persist), Reply::Nil),
            (set("a", "1"), written()),
            (getex(ExpireTarget::AtMs(NOW_MS + 2_000)), bulk("1")),
            (pttl("a"), int(2_000)),
            (getex(ExpireTarget::Persist), bulk("1")),
            (pttl("a"), int(-1)),
            (getex(ExpireTarget::AtMs(NOW_MS)), bulk("1")),
            (get("a"), Reply::Nil),
            (hset("h", &[("f", "v")]), int(1)),
            (
                Op::GetEx {
                    key: b("h"),
                    expiry: ExpireTarget::Persist,
                },
                error(StoreError::WrongType),
            ),
        ],
    );
}

#[test]
fn getdel_returns_the_value_and_deletes_the_key() {
    check(
        &store(),
        vec![
            (Op::GetDel { key: b("a") }, Reply::Nil),
            (set("a", "1"), written()),
            (Op::GetDel { key: b("a") }, bulk("1")),
            (get("a"), Reply::Nil),
        ],
    );
}

#[test]
fn append_creates_the_key_and_grows_it_within_the_value_limit() {
    let store = store_with(|config| config.max_value_bytes = 4);
    let append = |value: &str| Op::Append {
        key: b("a"),
        value: b(value),
    };
    check(
        &store,
        vec![
            (append("ab"), int(2)),
            (append("cd"), int(4)),
            (
                append("e"),
                error(StoreError::ValueTooLarge { max_value_bytes: 4 }),
            ),
            (get("a"), bulk("abcd")),
            (hset("h", &[("f", "v")]), int(1)),
            (
                Op::Append {
                    key: b("h"),
                    value: b("x"),
                },
                error(StoreError::WrongType),
            ),
            (
                set("big", "12345"),
                error(StoreError::ValueTooLarge { max_value_bytes: 4 }),
            ),
            (get("big"), Reply::Nil),
        ],
    );
}

#[test]
fn memcached_append_and_prepend_need_the_key_and_keep_its_flags() {
    let concat = |side, value: &str, cas_opt| Op::Concat {
        key: b("a"),
        value: b(value),
        side,
        cas_opt,
    };
    let store = store();
    check(
        &store,
        vec![
            (concat(ConcatSide::Append, "x", None), Reply::NotFound),
            (get("a"), Reply::Nil),
            (set_flags("a", "mid", 3), written()),
            (concat(ConcatSide::Append, ">", None), written()),
            (concat(ConcatSide::Prepend, "<", None), written()),
            (
                get_meta("a"),
                Reply::Value {
                    value: b("<mid>"),
                    flags: 3,
                    cas: 0,
                },
            ),
            (concat(ConcatSide::Append, "!", Some(1)), Reply::CasMismatch),
        ],
    );
    let cas = cas_of(&store, "a");
    check(
        &store,
        vec![
            (concat(ConcatSide::Append, "!", Some(cas)), written()),
            (get("a"), bulk("<mid>!")),
        ],
    );
}

#[test]
fn incrby_follows_redis_integer_rules_and_keeps_the_ttl() {
    let incr = |key: &str, delta| Op::IncrBy { key: b(key), delta };
    check(
        &store(),
        vec![
            (incr("n", 5), int(5)),
            (incr("n", -7), int(-2)),
            (get("n"), bulk("-2")),
            (set("text", "abc"), written()),
            (incr("text", 1), error(StoreError::NotAnInteger)),
            (set("spaced", " 1"), written()),
            (incr("spaced", 1), error(StoreError::NotAnInteger)),
            (set("max", &i64::MAX.to_string()), written()),
            (incr("max", 1), error(StoreError::IncrementOverflow)),
            (get("max"), bulk(&i64::MAX.to_string())),
            (
                set_with(
                    "ttl",
                    "1",
                    SetExpiry::AtMs(NOW_MS + 9_000),
                    SetCondition::Always,
                    false,
                ),
                written(),
            ),
            (incr("ttl", 1), int(2)),
            (pttl("ttl"), int(9_000)),
            (hset("h", &[("f", "1")]), int(1)),
            (incr("h", 1), error(StoreError::WrongType)),
        ],
    );
}

#[test]
fn memcached_counters_wrap_floor_and_refuse_non_numbers() {
    let counter = |key: &str, delta, direction| Op::Counter {
        key: b(key),
        delta,
        direction,
        cas_opt: None,
        initial_opt: None,
    };
    let up = CounterDirection::Increment;
    let down = CounterDirection::Decrement;
    let value = |value| Reply::Counter { value, cas: 0 };
    check(
        &store(),
        vec![
            (counter("c", 1, up), Reply::NotFound),
            (set_flags("c", "10", 9), written()),
            (counter("c", 5, up), value(15)),
            (counter("c", 6, down), value(9)),
            // The stored length changes with the number of digits (no memcached space padding).
            (get("c"), bulk("9")),
            (counter("c", 100, down), value(0)),
            (set("max", &u64::MAX.to_string()), written()),
            (counter("max", 2, up), value(1)),
            (set("text", "ten"), written()),
            (counter("text", 1, up), error(StoreError::NonNumericValue)),
            (set("neg", "-1"), written()),
            (counter("neg", 1, up), error(StoreError::NonNumericValue)),
            (
                Op::Counter {
                    key: b("fresh"),
                    delta: 5,
                    direction: up,
                    cas_opt: None,
                    initial_opt: Some(CounterInitial {
                        value: 42,
                        expire_at_ms: 0,
                    }),
                },
                value(42),
            ),
            (get("fresh"), bulk("42")),
            (
                get_meta("c"),
                Reply::Value {
                    value: b("0"),
                    flags: 9,
                    cas: 0,
                },
            ),
        ],
    );
}

#[test]
fn delete_exists_and_delete_with_cas() {
    let store = store();
    check(
        &store,
        vec![
            (del("a"), int(0)),
            (set("a", "1"), written()),
            (Op::Exists { key: b("a") }, int(1)),
            (del("a"), int(1)),
            (Op::Exists { key: b("a") }, int(0)),
            (del("a"), int(0)),
            (set("b", "1"), written()),
            (
                Op::Delete {
                    key: b("b"),
                    cas_opt: Some(1),
                },
                Reply::CasMismatch,
            ),
        ],
    );
    let cas = cas_of(&store, "b");
    check(
        &store,
        vec![(
            Op::Delete {
                key: b("b"),
                cas_opt: Some(cas),
            },
            int(1),
        )],
    );
}

#[test]
fn the_lock_release_script_deletes_only_when_the_value_matches() {
    let release = |value: &str| Op::DeleteIfEquals {
        key: b("sess_LOCK"),
        value: b(value),
    };
    check(
        &store(),
        vec![
            (release("secret"), int(0)),
            (
                set_with(
                    "sess_LOCK",
                    "secret",
                    SetExpiry::AtMs(NOW_MS + 30_000),
                    SetCondition::IfAbsent,
                    false,
                ),
                written(),
            ),
            (release("other"), int(0)),
            (get("sess_LOCK"), bulk("secret")),
            (release("secret"), int(1)),
            (get("sess_LOCK"), Reply::Nil),
            (hset("h", &[("f", "v")]), int(1)),
            (
                Op::DeleteIfEquals {
                    key: b("h"),
                    value: b("v"),
                },
                error(StoreError::WrongType),
            ),
        ],
    );
}

#[test]
fn expire_conditions_follow_redis_7() {
    let later = NOW_MS + 10_000;
    let sooner = NOW_MS + 5_000;
    check(
        &store(),
        vec![
            (expire("missing", later, ExpireCondition::Always), int(0)),
            (set("a", "1"), written()),
            // No TTL counts as infinite: GT never holds, LT always does.
            (expire("a", later, ExpireCondition::IfGreater), int(0)),
            (expire("a", later, ExpireCondition::IfHasExpiry), int(0)),
            (pttl("a"), int(-1)),
            (expire("a", later, ExpireCondition::IfNoExpiry), int(1)),
            (expire("a", sooner, ExpireCondition::IfNoExpiry), int(0)),
            (expire("a", sooner, ExpireCondition::IfGreater), int(0)),
            (expire("a", sooner, ExpireCondition::IfLess), int(1)),
            (pttl("a"), int(5_000)),
            (expire("a", later, ExpireCondition::IfLess), int(0)),
            (expire("a", later, ExpireCondition::IfGreater), int(1)),
            (expire("a", later, ExpireCondition::IfHasExpiry), int(1)),
            (pttl("a"), int(10_000)),
            (persist("a"), int(1)),
            (persist("a"), int(0)),
            (pttl("a"), int(-1)),
            (set("b", "1"), written()),
            (expire("b", later, ExpireCondition::IfLess), int(1)),
            // A deadline already past deletes the key (and counts as a change).
            (expire("b", NOW_MS, ExpireCondition::Always), int(1)),
            (get("b"), Reply::Nil),
            (set("c", "1"), written()),
            (expire("c", NOW_MS - 1, ExpireCondition::IfGreater), int(0)),
            (get("c"), bulk("1")),
            // XX LT: a key without expiry is refused (LT alone would accept it).
            (
                expire("c", later, ExpireCondition::IfHasExpiryAndLess),
                int(0),
            ),
            (expire("c", later, ExpireCondition::Always), int(1)),
            (
                expire("c", sooner, ExpireCondition::IfHasExpiryAndLess),
                int(1),
            ),
            (pttl("c"), int(5_000)),
            (
                expire("c", later, ExpireCondition::IfHasExpiryAndLess),
                int(0),
            ),
        ],
    );
}

#[test]
fn ttl_rounds_to_the_nearest_second_like_redis() {
    let ttl = |key: &str, unit| Op::Ttl { key: b(key), unit };
    let expire_time = |key: &str, unit| Op::ExpireTime { key: b(key), unit };
    check(
        &store(),
        vec![
            (
                set_with(
                    "a",
                    "1",
                    SetExpiry::AtMs(NOW_MS + 1_499),
                    SetCondition::Always,
                    false,
                ),
                written(),
            ),
            (ttl("a", TimeUnit::Seconds), int(1)),
            (ttl("a", TimeUnit::Milliseconds), int(1_499)),
            (expire("a", NOW_MS + 1_500, ExpireCondition::Always), int(1)),
            (ttl("a", TimeUnit::Seconds), int(2)),
            (
                expire_time("a", TimeUnit::Milliseconds),
                int((NOW_MS + 1_500) as i64),
            ),
            (expire_time("a", TimeUnit::Seconds), int(1_002)),
            (set("b", "1"), written()),
            (ttl("b", TimeUnit::Seconds), int(-1)),
            (expire_time("b", TimeUnit::Seconds), int(-1)),
            (expire_time("c", TimeUnit::Seconds), int(-2)),
        ],
    );
}

#[test]
fn memcached_touch_and_gat_set_the_expiry() {
    let touch = |target, return_value| Op::Touch {
        key: b("a"),
        target,
        return_value,
    };
    check(
        &store(),
        vec![
            (
                touch(ExpireTarget::AtMs(NOW_MS + 1_000), false),
                Reply::NotFound,
            ),
            (set_flags("a", "v", 5), written()),
            (touch(ExpireTarget::AtMs(NOW_MS + 1_000), false), written()),
            (pttl("a"), int(1_000)),
            (
                touch(ExpireTarget::Persist, true),
                Reply::Value {
                    value: b("v"),
                    flags: 5,
                    cas: 0,
                },
            ),
            (pttl("a"), int(-1)),
            (
                touch(ExpireTarget::AtMs(NOW_MS), true),
                Reply::Value {
                    value: b("v"),
                    flags: 5,
                    cas: 0,
                },
            ),
            (get("a"), Reply::Nil),
        ],
    );
}

#[test]
fn rename_moves_value_and_ttl_and_renamenx_respects_the_target() {
    let rename = |from: &str, to: &str, nx| Op::Rename {
        from: b(from),
        to: b(to),
        only_if_target_absent: nx,
    };
    let store = store();
    check(
        &store,
        vec![
            (rename("a", "b", false), error(StoreError::NoSuchKey)),
            (
                set_with(
                    "a",
                    "1",
                    SetExpiry::AtMs(NOW_MS + 3_000),
                    SetCondition::Always,
                    false,
                ),
                written(),
            ),
            (rename("a", "a", false), Reply::Ok),
            (rename("a", "a", true), int(0)),
            (rename("a", "b", false), Reply::Ok),
            (get("a"), Reply::Nil),
            (get("b"), bulk("1")),
            (pttl("b"), int(3_000)),
            (set("c", "2"), written()),
            (rename("b", "c", true), int(0)),
            (rename("b", "d", true), int(1)),
            (get("d"), bulk("1")),
            (rename("d", "c", false), Reply::Ok),
            (get("c"), bulk("1")),
        ],
    );
    let outcome = run(&store, rename("c", "e", false));
    let changes: Vec<_> = outcome
        .mutations
        .iter()
        .map(|mutation| {
            (
                mutation.key.clone(),
                matches!(mutation.change, Change::Put(_)),
            )
        })
        .collect();
    assert_eq!(changes, vec![(b("e"), true), (b("c"), false)]);
}

#[test]
fn rename_refuses_keys_of_another_partition() {
    let store = store_with(|config| config.num_partitions = 64);
    let from = b("{x}a");
    let partition = store.partition_of(&from);
    let to = (0..)
        .map(|index| b(&format!("other{index}")))
        .find(|key| store.partition_of(key) != partition)
        .expect("some key elsewhere");
    let outcome = store.partition(partition).execute(
        0,
        Op::Rename {
            from,
            to,
            only_if_target_absent: false,
        },
        NOW_MS,
    );
    assert_eq!(
        outcome.reply,
        Reply::Error(StoreError::KeysInDifferentPartitions)
    );
}

#[test]
fn dump_and_restore_carry_a_whole_entry() {
    let store = store();
    check(
        &store,
        vec![
            (Op::Dump { key: b("h") }, Reply::Nil),
            (hset("h", &[("f", "v"), ("g", "w")]), int(2)),
            (expire("h", NOW_MS + 7_000, ExpireCondition::Always), int(1)),
        ],
    );
    let Reply::Image(image) = run(&store, Op::Dump { key: b("h") }).reply else {
        panic!("dump of an existing key is an image");
    };
    assert_eq!(image.expire_at_ms, NOW_MS + 7_000);
    let restore = |key: &str, image: &EntryImage, replace| Op::Restore {
        key: b(key),
        image: image.clone(),
        replace,
    };
    let past = EntryImage {
        expire_at_ms: NOW_MS - 1,
        ..(*image).clone()
    };
    check(
        &store,
        vec![
            (restore("copy", &image, false), Reply::Ok),
            (
                restore("copy", &image, false),
                error(StoreError::TargetKeyExists),
            ),
            (restore("copy", &image, true), Reply::Ok),
            (
                Op::HashGetAll { key: b("copy") },
                pairs(&[("f", "v"), ("g", "w")]),
            ),
            (pttl("copy"), int(7_000)),
            (restore("gone", &past, false), Reply::Ok),
            (Op::Exists { key: b("gone") }, int(0)),
            (restore("copy", &past, true), Reply::Ok),
            (Op::Exists { key: b("copy") }, int(0)),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Hashes

#[test]
fn hash_ops_follow_redis() {
    let fields = |items: &[&str]| items.iter().map(|item| b(item)).collect::<Vec<_>>();
    check(
        &store(),
        vec![
            (Op::HashGetAll { key: b("h") }, pairs(&[])),
            (Op::HashLen { key: b("h") }, int(0)),
            (hset("h", &[("a", "1"), ("b", "2"), ("a", "3")]), int(2)),
            (hset("h", &[("b", "4"), ("c", "5")]), int(1)),
            (
                Op::HashGet {
                    key: b("h"),
                    field: b("a"),
                },
                bulk("3"),
            ),
            (
                Op::HashGet {
                    key: b("h"),
                    field: b("z"),
                },
                Reply::Nil,
            ),
            (
                Op::HashMultiGet {
                    key: b("h"),
                    fields: fields(&["c", "z", "a"]),
                },
                Reply::Array(vec![bulk("5"), Reply::Nil, bulk("3")]),
            ),
            (
                Op::HashMultiGet {
                    key: b("missing"),
                    fields: fields(&["a", "b"]),
                },
                Reply::Array(vec![Reply::Nil, Reply::Nil]),
            ),
            (
                Op::HashGetAll { key: b("h") },
                pairs(&[("a", "3"), ("b", "4"), ("c", "5")]),
            ),
            (Op::HashKeys { key: b("h") }, bulks(&["a", "b", "c"])),
            (Op::HashValues { key: b("h") }, bulks(&["3", "4", "5"])),
            (Op::HashLen { key: b("h") }, int(3)),
            (
                Op::HashExists {
                    key: b("h"),
                    field: b("b"),
                },
                int(1),
            ),
            (
                Op::HashDelete {
                    key: b("h"),
                    fields: fields(&["b", "b", "z"]),
                },
                int(1),
            ),
            (
                Op::HashExists {
                    key: b("h"),
                    field: b("b"),
                },
                int(0),
            ),
            (
                Op::HashDelete {
                    key: b("h"),
                    fields: fields(&["a", "c"]),
                },
                int(2),
            ),
            // The last field took the key with it.
            (Op::Exists { key: b("h") }, int(0)),
            (set("s", "x"), written()),
            (hset("s", &[("a", "1")]), error(StoreError::WrongType)),
            (Op::HashLen { key: b("s") }, error(StoreError::WrongType)),
            (Op::HashGetAll { key: b("s") }, error(StoreError::WrongType)),
        ],
    );
}

#[test]
fn hincrby_creates_fields_and_refuses_non_integers_and_overflow() {
    let hincr = |field: &str, delta| Op::HashIncrBy {
        key: b("h"),
        field: b(field),
        delta,
    };
    check(
        &store(),
        vec![
            (hincr("n", 3), int(3)),
            (hincr("n", -5), int(-2)),
            (
                hset("h", &[("t", "abc"), ("m", &i64::MIN.to_string())]),
                int(2),
            ),
            (hincr("t", 1), error(StoreError::HashValueNotAnInteger)),
            (hincr("m", -1), error(StoreError::IncrementOverflow)),
            (
                Op::HashGet {
                    key: b("h"),
                    field: b("n"),
                },
                bulk("-2"),
            ),
            (set("s", "1"), written()),
            (
                Op::HashIncrBy {
                    key: b("s"),
                    field: b("f"),
                    delta: 1,
                },
                error(StoreError::WrongType),
            ),
        ],
    );
}

#[test]
fn hash_limits_refuse_the_whole_write_and_change_nothing() {
    let store = store_with(|config| {
        config.max_hash_fields = 3;
        config.max_value_bytes = 10;
    });
    check(
        &store,
        vec![
            (hset("h", &[("a", "1"), ("b", "2")]), int(2)),
            (
                hset("h", &[("a", "9"), ("c", "3"), ("d", "4")]),
                error(StoreError::TooManyHashFields { max_hash_fields: 3 }),
            ),
            (
                Op::HashGetAll { key: b("h") },
                pairs(&[("a", "1"), ("b", "2")]),
            ),
            (
                hset("h", &[("c", "0123456")]),
                error(StoreError::ValueTooLarge {
                    max_value_bytes: 10,
                }),
            ),
            (hset("h", &[("c", "3")]), int(1)),
            (
                hset("new", &[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]),
                error(StoreError::TooManyHashFields { max_hash_fields: 3 }),
            ),
            (Op::Exists { key: b("new") }, int(0)),
        ],
    );
}

#[test]
fn a_hash_keeps_every_field_when_it_outgrows_the_compact_form() {
    let store = store();
    let num_fields = crate::SMALL_HASH_MAX_FIELDS * 3;
    for index in 0..num_fields {
        let field = format!("f{index}");
        check(
            &store,
            vec![(hset("h", &[(&field, &index.to_string())]), int(1))],
        );
    }
    check(
        &store,
        vec![(Op::HashLen { key: b("h") }, int(num_fields as i64))],
    );
    for index in 0..num_fields {
        check(
            &store,
            vec![(
                Op::HashGet {
                    key: b("h"),
                    field: b(&format!("f{index}")),
                },
                bulk(&index.to_string()),
            )],
        );
    }
    let Reply::Pairs(all) = run(&store, Op::HashGetAll { key: b("h") }).reply else {
        panic!("hgetall replies pairs");
    };
    assert_eq!(all.len(), num_fields);
}

// ---------------------------------------------------------------------------------------------
// Keyspace, limits, mutations

#[test]
fn keys_dbsize_and_flush_work_per_database() {
    let store = store();
    for (db, key) in [(0, "sess:1"), (0, "sess:2"), (0, "user:1"), (1, "sess:3")] {
        store.partition(0).execute(db, set(key, "v"), NOW_MS);
    }
    let mut partition = store.partition(0);
    let Reply::Array(mut keys) = partition
        .execute(
            0,
            Op::Keys {
                pattern: b("sess:*"),
            },
            NOW_MS,
        )
        .reply
    else {
        panic!("keys replies an array");
    };
    keys.sort_by_key(|reply| format!("{reply:?}"));
    assert_eq!(keys, vec![bulk("sess:1"), bulk("sess:2")]);
    assert_eq!(partition.execute(0, Op::DbSize, NOW_MS).reply, int(3));
    assert_eq!(partition.execute(1, Op::DbSize, NOW_MS).reply, int(1));
    let flushed = partition.execute(0, Op::FlushDb, NOW_MS);
    assert_eq!(flushed.reply, Reply::Ok);
    assert_eq!(flushed.mutations.len(), 3);
    assert!(
        flushed
            .mutations
            .iter()
            .all(|mutation| matches!(mutation.change, Change::Delete { .. }))
    );
    assert_eq!(partition.execute(0, Op::DbSize, NOW_MS).reply, int(0));
    assert_eq!(partition.execute(1, Op::DbSize, NOW_MS).reply, int(1));
    let flushed_all = partition.execute(5, Op::FlushAll, NOW_MS);
    assert_eq!(flushed_all.mutations.len(), 1);
    assert_eq!(partition.num_keys(), 0);
    assert_eq!(partition.num_tombstones(), 4);
}

#[test]
fn a_lone_star_lists_the_empty_key_as_redis_does() {
    let store = store();
    let mut partition = store.partition(0);
    for key in ["", "k"] {
        partition.execute(0, set(key, "v"), NOW_MS);
    }
    let keys_of = |partition: &mut super::Partition, pattern: &str| {
        let Reply::Array(mut keys) = partition
            .execute(
                0,
                Op::Keys {
                    pattern: b(pattern),
                },
                NOW_MS,
            )
            .reply
        else {
            panic!("keys replies an array");
        };
        keys.sort_by_key(|reply| format!("{reply:?}"));
        keys
    };
    assert_eq!(keys_of(&mut partition, "*"), vec![bulk(""), bulk("k")]);
    // Any other pattern follows `stringmatchlen`, where `*` needs a byte to start on.
    assert_eq!(keys_of(&mut partition, "**"), vec![bulk("k")]);
}

#[test]
fn writes_that_grow_memory_past_the_limit_are_refused_but_deletes_and_shrinks_work() {
    let store = store_with(|config| config.max_memory_bytes = 4_000);
    let value = "x".repeat(1_000);
    let oom = error(StoreError::OutOfMemory {
        max_memory_bytes: 4_000,
    });
    let mut steps = Vec::new();
    let mut index = 0;
    // Fill until refused.
    loop {
        let key = format!("k{index}");
        let reply = normalize(run(&store, set(&key, &value)).reply);
        if reply == oom {
            break;
        }
        assert_eq!(reply, written());
        index += 1;
        assert!(index < 10, "the limit never refused a write");
    }
    assert!(store.memory_used_bytes() <= 4_000);
    let last = format!("k{}", index - 1);
    steps.push((set(&format!("k{index}"), &value), oom.clone()));
    steps.push((hset("h", &[("f", &value)]), oom.clone()));
    steps.push((
        Op::Append {
            key: b(&last),
            value: b(&value),
        },
        oom.clone(),
    ));
    // Overwriting with a smaller value and deleting always work.
    steps.push((set(&last, "small"), written()));
    steps.push((del("k0"), int(1)));
    steps.push((set("k0", &value), written()));
    check(&store, steps);
}

#[test]
fn oversized_keys_and_bad_databases_are_refused() {
    let store = store_with(|config| config.max_key_bytes = 3);
    check(
        &store,
        vec![
            (
                set("long", "v"),
                error(StoreError::KeyTooLarge { max_key_bytes: 3 }),
            ),
            (set("abc", "v"), written()),
        ],
    );
    let outcome = store.partition(0).execute(16, get("abc"), NOW_MS);
    assert_eq!(outcome.reply, error(StoreError::DatabaseOutOfRange));
}

#[test]
fn a_set_has_one_put_mutation_with_the_full_new_state_and_a_get_has_none() {
    let store = store();
    let outcome = run(
        &store,
        Op::Set {
            key: b("a"),
            value: b("v"),
            expiry: SetExpiry::AtMs(NOW_MS + 50),
            condition: SetCondition::Always,
            return_old: false,
            flags: 4,
        },
    );
    let Reply::Written { cas } = outcome.reply else {
        panic!("set replies written");
    };
    let mutations: Vec<Mutation> = outcome.mutations.into_iter().collect();
    assert_eq!(
        mutations,
        vec![Mutation {
            db: 0,
            key: b("a"),
            change: Change::Put(EntryImage {
                value: ValueImage::String(b("v")),
                version: Version { hlc: cas, node: 0 },
                expire_at_ms: NOW_MS + 50,
                flags: 4,
            }),
        }]
    );
    assert!(run(&store, get("a")).mutations.is_empty());
    assert!(
        run(
            &store,
            set_with("a", "w", SetExpiry::Never, SetCondition::IfAbsent, false)
        )
        .mutations
        .is_empty()
    );
}

#[test]
fn every_write_gets_a_version_greater_than_the_one_it_replaces() {
    let store = store();
    let mut last = 0;
    for op in [
        set("a", "1"),
        Op::Append {
            key: b("a"),
            value: b("2"),
        },
        Op::IncrBy {
            key: b("a"),
            delta: 1,
        },
        expire("a", NOW_MS + 10, ExpireCondition::Always),
        persist("a"),
        del("a"),
        set("a", "1"),
    ] {
        let outcome = run(&store, op);
        let version = outcome
            .mutations
            .iter()
            .next()
            .expect("a write")
            .change
            .version();
        assert!(version.hlc > last);
        last = version.hlc;
    }
    // A version from a node whose clock runs far ahead is still exceeded.
    let ahead = Version {
        hlc: last + (1 << 40),
        node: 9,
    };
    assert!(store.partition(0).apply(
        Mutation {
            db: 0,
            key: b("a"),
            change: Change::Put(EntryImage {
                value: ValueImage::String(b("remote")),
                version: ahead,
                expire_at_ms: 0,
                flags: 0,
            }),
        },
        NOW_MS,
    ));
    let outcome = run(&store, set("a", "local"));
    assert!(
        outcome
            .mutations
            .iter()
            .next()
            .expect("a write")
            .change
            .version()
            > ahead
    );
}

// ---------------------------------------------------------------------------------------------
// Replication

/// Every key and tombstone of `partition`, sorted: what two replicas must agree on.
fn contents(partition: &crate::Partition) -> Vec<Mutation> {
    let mut cursor = ExportCursor::new();
    let mut all = partition.export_chunk(&mut cursor, usize::MAX);
    assert!(cursor.is_finished());
    all.sort_by(|left, right| (left.db, &left.key).cmp(&(right.db, &right.key)));
    all
}

/// A deterministic stream of writes over a few keys in two databases.
fn write_workload(store: &Store, seed: u64, num_ops: usize) -> Vec<Mutation> {
    let mut state = seed;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut mutations = Vec::new();
    for step in 0..num_ops {
        let key = b(&format!("k{}", next() % 12));
        let db = (next() % 2) as u8;
        let op = match next() % 6 {
            0 => Op::Delete { key, cas_opt: None },
            1 => Op::HashSet {
                key,
                pairs: vec![(b("f"), b(&step.to_string()))],
            },
            2 => Op::Expire {
                key,
                target: ExpireTarget::AtMs(NOW_MS + 1_000_000),
                condition: ExpireCondition::Always,
            },
            3 => Op::Append { key, value: b("+") },
            _ => Op::Set {
                key,
                value: b(&format!("v{step}")),
                expiry: SetExpiry::Never,
                condition: SetCondition::Always,
                return_old: false,
                flags: step as u32,
            },
        };
        mutations.extend(
            store
                .partition(0)
                .execute(db, op, NOW_MS + step as u64)
                .mutations,
        );
    }
    mutations
}

#[test]
fn applying_the_primary_stream_in_order_reproduces_its_contents() {
    let primary = store();
    let mutations = write_workload(&primary, 7, 500);
    let backup = store();
    for mutation in mutations {
        assert!(backup.partition(0).apply(mutation, NOW_MS));
    }
    assert_eq!(
        contents(&backup.partition(0)),
        contents(&primary.partition(0))
    );
    assert_eq!(backup.memory_used_bytes(), primary.memory_used_bytes());
}

#[test]
fn applying_the_stream_shuffled_with_duplicates_converges_to_the_same_contents() {
    let primary = store();
    let mutations = write_workload(&primary, 11, 500);
    let backup = store();
    let mut shuffled: Vec<Mutation> = mutations
        .iter()
        .chain(mutations.iter().step_by(3))
        .cloned()
        .collect();
    // A fixed permutation: reverse, then interleave halves.
    shuffled.reverse();
    let (left, right) = shuffled.split_at(shuffled.len() / 2);
    let interleaved: Vec<Mutation> = left
        .iter()
        .zip(right.iter())
        .flat_map(|(l, r)| [r.clone(), l.clone()])
        .chain(right.iter().skip(left.len()).cloned())
        .collect();
    for mutation in interleaved {
        backup.partition(0).apply(mutation, NOW_MS);
    }
    assert_eq!(
        contents(&backup.partition(0)),
        contents(&primary.partition(0))
    );
}

#[test]
fn an_applied_value_is_stored_without_a_copy() {
    let primary = store();
    let mut mutation = run(&primary, set("a", "1"))
        .mutations
        .into_iter()
        .next()
        .expect("put");
    // As a frame decodes it: the value in an exact allocation of its own.
    let value = Bytes::from(vec![b'v'; 512]);
    let stored_at = value.as_ptr();
    let Change::Put(image) = &mut mutation.change else {
        panic!("a SET streams a put");
    };
    image.value = ValueImage::String(value);
    let backup = store();
    assert!(backup.partition(0).apply(mutation, NOW_MS));
    let Reply::Bulk(read) = run(&backup, get("a")).reply else {
        panic!("the applied key reads back");
    };
    assert_eq!(read.as_ptr(), stored_at);
    assert_eq!(read.len(), 512);
}

#[test]
fn a_stale_put_after_a_delete_does_not_resurrect_the_key() {
    let primary = store();
    let put = run(&primary, set("a", "1"))
        .mutations
        .into_iter()
        .next()
        .expect("put");
    let delete = run(&primary, del("a"))
        .mutations
        .into_iter()
        .next()
        .expect("delete");
    let backup = store();
    assert!(backup.partition(0).apply(delete.clone(), NOW_MS));
    assert!(!backup.partition(0).apply(put, NOW_MS));
    assert!(!backup.partition(0).apply(delete, NOW_MS));
    check(&backup, vec![(get("a"), Reply::Nil)]);
    assert_eq!(backup.partition(0).num_tombstones(), 1);
}

#[test]
fn an_expired_version_is_not_undone_by_an_older_write_arriving_later() {
    // The primary writes `a` and `b`, then writes them again with a deadline; the other side of a
    // network split still holds the first writes. Once the second writes have expired, the first
    // must not come back: the expiry is the newer state of each key.
    let ttl_ms = StoreConfig::default().tombstone_ttl_ms;
    let deadline = NOW_MS + 1_000;
    let after = deadline + 1;
    let primary = store_with(|config| config.node_id = 1);
    let other_side = store_with(|config| config.node_id = 2);
    let mut older = Vec::new();
    for key in ["a", "b"] {
        let put = run(&primary, set(key, "old")).mutations.into_iter().next();
        older.push(put.expect("a put"));
        let expiring = SetExpiry::AtMs(deadline);
        run(
            &primary,
            set_with(key, "new", expiring, SetCondition::Always, false),
        );
    }
    for mutation in &older {
        assert!(other_side.partition(0).apply(mutation.clone(), NOW_MS));
    }

    // `a` is swept into the tombstone of its version; `b` has expired but nothing touched it.
    assert_eq!(primary.partition(0).sweep(after, 1), 1);
    assert_eq!(primary.stats().num_tombstones, 1);
    // The merge toward the other side: `a` travels as a delete, `b` as its expired image. Both
    // end the old values there.
    let exported = contents(&primary.partition(0));
    assert!(matches!(exported[0].change, Change::Delete { .. }));
    assert!(matches!(exported[1].change, Change::Put(_)));
    for mutation in exported {
        assert!(other_side.partition(0).apply(mutation, after));
    }
    check_at(
        &other_side,
        vec![(after, get("a"), Reply::Nil), (after, get("b"), Reply::Nil)],
    );
    // The merge toward the primary: the old values are refused, for the swept key and for the
    // untouched one alike.
    for mutation in older {
        assert!(!primary.partition(0).apply(mutation, after));
    }
    check_at(
        &primary,
        vec![(after, get("a"), Reply::Nil), (after, get("b"), Reply::Nil)],
    );
    assert_eq!(primary.stats().num_tombstones, 2);
    assert_eq!(other_side.stats().num_tombstones, 2);
    assert_eq!(
        contents(&primary.partition(0)),
        contents(&other_side.partition(0))
    );

    // Both purge the tombstones once their time to live has passed.
    for store in [&primary, &other_side] {
        assert_eq!(store.partition(0).sweep(deadline + ttl_ms, 10), 0);
        assert_eq!(store.partition(0).sweep(after + ttl_ms + 1, 10), 2);
        assert_eq!(store.stats().num_tombstones, 0);
        assert_eq!(store.memory_used_bytes(), 0);
    }
}

#[test]
fn merging_two_diverged_partitions_converges_to_the_larger_version_of_every_key() {
    let left = store_with(|config| config.node_id = 1);
    let right = store_with(|config| config.node_id = 2);
    let common = write_workload(&left, 3, 100);
    for mutation in &common {
        right.partition(0).apply(mutation.clone(), NOW_MS);
    }
    // A network split: both sides take writes to the same keys.
    write_workload(&left, 5, 200);
    write_workload(&right, 9, 200);
    assert_ne!(contents(&left.partition(0)), contents(&right.partition(0)));
    let left_contents = contents(&left.partition(0));
    let right_contents = contents(&right.partition(0));
    for mutation in right_contents.clone() {
        left.partition(0).apply(mutation, NOW_MS);
    }
    for mutation in left_contents.clone() {
        right.partition(0).apply(mutation, NOW_MS);
    }
    let merged = contents(&left.partition(0));
    assert_eq!(merged, contents(&right.partition(0)));
    // Every key holds the larger of the two versions it had.
    for mutation in &merged {
        let find = |side: &[Mutation]| {
            side.iter()
                .find(|other| other.db == mutation.db && other.key == mutation.key)
                .map(|other| other.change.version())
        };
        let larger = find(&left_contents).max(find(&right_contents));
        assert_eq!(Some(mutation.change.version()), larger);
    }
}

#[test]
fn a_snapshot_taken_while_writes_continue_plus_those_writes_equals_the_source() {
    let source = store();
    write_workload(&source, 13, 300);
    let backup = store();
    let mut cursor = ExportCursor::new();
    let mut streamed = Vec::new();
    let mut step = 0;
    while !cursor.is_finished() {
        let chunk = source.partition(0).export_chunk(&mut cursor, 4);
        for mutation in chunk {
            backup.partition(0).apply(mutation, NOW_MS);
        }
        // Writes between chunks, streamed to the backup after the snapshot.
        streamed.extend(write_workload(&source, 100 + step, 5));
        step += 1;
    }
    assert!(step > 3, "the export took several chunks");
    for mutation in streamed {
        backup.partition(0).apply(mutation, NOW_MS);
    }
    assert_eq!(
        contents(&backup.partition(0)),
        contents(&source.partition(0))
    );
}

#[test]
fn clear_empties_a_partition_before_a_fresh_snapshot() {
    let store = store();
    write_workload(&store, 1, 50);
    assert!(store.memory_used_bytes() > 0);
    store.partition(0).clear();
    assert_eq!(store.memory_used_bytes(), 0);
    assert_eq!(store.num_keys(), 0);
    assert!(contents(&store.partition(0)).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Sweep

#[test]
fn a_hundred_thousand_keys_expiring_at_once_are_swept_in_bounded_steps() {
    let store = store();
    let deadline = NOW_MS + 10;
    {
        let mut partition = store.partition(0);
        for index in 0..100_000 {
            partition.execute(
                0,
                set_with(
                    &format!("k{index}"),
                    "v",
                    SetExpiry::AtMs(deadline),
                    SetCondition::Always,
                    false,
                ),
                NOW_MS,
            );
        }
        partition.execute(0, set("keeper", "v"), NOW_MS);
    }
    assert_eq!(
        store.partition(0).sweep(deadline, 1_000),
        0,
        "not expired yet"
    );
    let budget = 4_096;
    let mut num_calls = 0;
    let mut num_removed_total = 0;
    loop {
        let num_removed = store.partition(0).sweep(deadline + 1, budget);
        assert!(num_removed <= budget);
        num_removed_total += num_removed;
        num_calls += 1;
        if num_removed == 0 {
            break;
        }
    }
    assert_eq!(num_removed_total, 100_000);
    assert!(num_calls > 20);
    assert_eq!(store.num_keys(), 1);
    assert_eq!(store.stats().num_expired_keys_total, 100_000);
    assert_eq!(store.stats().num_keys_with_expiry_per_db[0], 0);
    let partition = store.partition(0);
    assert_eq!(partition.memory_bytes(), partition.recompute_memory_bytes());
}

#[test]
fn tombstones_are_swept_after_their_time_to_live() {
    let store = store_with(|config| config.tombstone_ttl_ms = 1_000);
    check(&store, vec![(set("a", "1"), written()), (del("a"), int(1))]);
    assert_eq!(store.stats().num_tombstones, 1);
    assert_eq!(store.partition(0).sweep(NOW_MS + 1_000, 10), 0);
    assert_eq!(store.partition(0).sweep(NOW_MS + 1_001, 10), 1);
    assert_eq!(store.stats().num_tombstones, 0);
    assert_eq!(store.memory_used_bytes(), 0);
}

// ---------------------------------------------------------------------------------------------
// SCAN

fn scan_all(store: &Store, count: usize, mut between_pages: impl FnMut(usize)) -> Vec<Bytes> {
    let mut keys = Vec::new();
    let mut position = 0;
    let mut page_index = 0;
    loop {
        let page = store
            .partition(0)
            .scan(0, position, count, None, None, NOW_MS);
        keys.extend(page.keys);
        between_pages(page_index);
        page_index += 1;
        match page.next_position {
            Some(next) => {
                assert!(next > position);
                position = next;
            }
            None => return keys,
        }
    }
}

#[test]
fn scan_returns_every_key_present_throughout_despite_concurrent_inserts_and_deletes() {
    let store = store();
    for index in 0..1_000 {
        run(&store, set(&format!("stable{index}"), "v"));
        run(&store, set(&format!("churn{index}"), "v"));
    }
    let seen = scan_all(&store, 10, |page_index| {
        for offset in 0..5 {
            let index = page_index * 5 + offset;
            run(&store, del(&format!("churn{index}")));
            run(&store, set(&format!("new{index}"), "v"));
        }
    });
    let seen: std::collections::HashSet<Bytes> = seen.into_iter().collect();
    for index in 0..1_000 {
        assert!(
            seen.contains(&b(&format!("stable{index}"))),
            "stable{index}"
        );
    }
}

#[test]
fn a_full_scan_with_a_small_count_takes_a_bounded_number_of_pages() {
    let store = store();
    for index in 0..10_000 {
        run(&store, set(&format!("k{index}"), "v"));
    }
    let mut num_pages = 0;
    let keys = scan_all(&store, 1, |_| num_pages += 1);
    // Each page walks the whole partition, so a page takes a sixteenth of it at least; a page
    // ends at a position boundary, so the last one may be a little one.
    assert_eq!(super::keyspace_ops::MAX_SCAN_PAGES_PER_PARTITION, 16);
    assert!(num_pages <= 17, "{num_pages} pages");
    let distinct: std::collections::HashSet<Bytes> = keys.iter().cloned().collect();
    assert_eq!(keys.len(), 10_000);
    assert_eq!(distinct.len(), 10_000);
}

#[test]
fn scan_pages_come_in_position_order_and_honour_match_and_type() {
    let store = store();
    for index in 0..200 {
        run(&store, set(&format!("s{index}"), "v"));
        run(&store, hset(&format!("h{index}"), &[("f", "v")]));
    }
    let keys = scan_all(&store, 7, |_| {});
    assert_eq!(keys.len(), 400);
    let positions: Vec<u64> = keys
        .iter()
        .map(|key| crate::scan_position_of(key))
        .collect();
    assert!(positions.windows(2).all(|pair| pair[0] <= pair[1]));
    let partition = store.partition(0);
    let page = partition.scan(
        0,
        0,
        usize::MAX,
        Some(b"h1*"),
        Some(ValueType::Hash),
        NOW_MS,
    );
    assert_eq!(page.keys.len(), 111);
    assert_eq!(page.next_position, None);
    let none = partition.scan(
        0,
        0,
        usize::MAX,
        Some(b"h1*"),
        Some(ValueType::String),
        NOW_MS,
    );
    assert!(none.keys.is_empty());
}

#[test]
fn a_bucket_holds_keys_sharing_a_scan_position_and_shrinks_back() {
    use super::{Bucket, KeySlot, Slot};
    let key_slot = |key: &str| KeySlot {
        key: b(key),
        slot: Slot::Tombstone {
            version: Version { hlc: 1, node: 0 },
            purge_at_ms: 0,
        },
    };
    let mut bucket = Bucket::One(key_slot("a"));
    bucket.push(key_slot("b"));
    bucket.push(key_slot("c"));
    assert_eq!(bucket.find(b"b"), Some(1));
    assert_eq!(bucket.find(b"z"), None);
    assert_eq!(bucket.remove(1).key, b("b"));
    assert_eq!(bucket.remove(0).key, b("a"));
    assert!(matches!(&bucket, Bucket::One(only) if only.key == b("c")));
    assert_eq!(bucket.remove(0).key, b("c"));
    assert!(bucket.is_empty());
}

#[test]
fn a_partition_that_records_no_mutations_answers_and_accounts_the_same() {
    let recording = store();
    let silent = store();
    silent.partition(0).set_record_mutations(false);
    let ops = vec![
        set("a", "1"),
        expire("a", NOW_MS + 5_000, ExpireCondition::Always),
        Op::Append {
            key: b("a"),
            value: b("23"),
        },
        Op::IncrBy {
            key: b("n"),
            delta: 5,
        },
        Op::HashSet {
            key: b("h"),
            pairs: vec![(b("f"), b("v"))],
        },
        del("a"),
        get("a"),
    ];
    let mut recorded = 0;
    for op in ops {
        let expected = run(&recording, op.clone());
        let outcome = run(&silent, op.clone());
        assert_eq!(
            normalize(outcome.reply),
            normalize(expected.reply),
            "{op:?}"
        );
        assert!(outcome.mutations.is_empty(), "{op:?} recorded a mutation");
        recorded += expected.mutations.len();
    }
    assert_eq!(recorded, 6, "the recording store describes every write");
    assert_eq!(silent.memory_used_bytes(), recording.memory_used_bytes());
    assert_eq!(silent.num_keys(), recording.num_keys());
    assert_eq!(
        silent.stats().num_tombstones,
        recording.stats().num_tombstones
    );
    // Recording again describes writes again.
    silent.partition(0).set_record_mutations(true);
    assert_eq!(run(&silent, set("b", "2")).mutations.len(), 1);
}

/// A prefetch is a hint: whatever the key holds (a string, a hash, an expired entry, nothing),
/// and whatever the database or partition number, it changes nothing; and it never waits for a
/// partition someone holds.
#[test]
fn a_prefetch_changes_nothing_and_never_waits() {
    let store = store();
    let long_value = "v".repeat(3_000);
    check(
        &store,
        vec![
            (set("s", &long_value), written()),
            (hset("h", &[("f", "1")]), int(1)),
            (
                set_with(
                    "e",
                    "x",
                    SetExpiry::AtMs(NOW_MS + 10),
                    SetCondition::Always,
                    false,
                ),
                written(),
            ),
        ],
    );
    let before = store.stats();
    let memory_before = store.partition(0).memory_bytes();
    for db in [0, 1, crate::NUM_STORED_DATABASES as u8 - 1, u8::MAX] {
        for key in ["s", "h", "e", "absent"] {
            store.prefetch(0, db, key.as_bytes());
        }
    }
    // With the partition held by another thread, the prefetch returns at once (a prefetch that
    // waited for the lock would make this fail at the deadline, not hang).
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let holder_store = &store;
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let held = holder_store.partition(0);
            held_tx.send(()).expect("the test waits");
            // Held until the prefetches are done, or for at most 10 s.
            let _ = done_rx.recv_timeout(std::time::Duration::from_secs(10));
            drop(held);
        });
        held_rx.recv().expect("the partition is held");
        let started = std::time::Instant::now();
        store.prefetch(0, 0, b"s");
        store.prefetch(7, 0, b"s");
        let took = started.elapsed();
        done_tx.send(()).expect("the holder waits");
        assert!(
            took < std::time::Duration::from_secs(5),
            "the prefetch waited {took:?}"
        );
    });
    assert_eq!(store.stats(), before);
    assert_eq!(store.partition(0).memory_bytes(), memory_before);
    check_at(
        &store,
        vec![
            (NOW_MS, get("s"), bulk(&long_value)),
            (NOW_MS + 11, get("e"), Reply::Nil),
        ],
    );
}
