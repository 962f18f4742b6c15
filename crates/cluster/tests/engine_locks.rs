//! Locks in delayed-write mode: lock operations and the compatibility locks (`SET … NX PX`,
//! memcached `add` with an expiry) still wait for the backups, so a failover cannot lose a lock
//! that was acknowledged; data writes answer at once.

mod engine_support;

use bytes::Bytes;
use cluster::engine::{Execution, WriteMode};
use engine_support::{Cluster, PARTITIONS, set_op};
use store::{LockMode, Op, Reply, SetCondition, SetExpiry};

fn two_delayed_write_nodes() -> Cluster {
    let mut cluster = Cluster::new();
    let a = cluster.add("a", |config| config.write_mode = WriteMode::Delayed);
    let b = cluster.add("b", |config| {
        config.write_mode = WriteMode::Delayed;
        config.join_wait_ms = 10_000;
    });
    cluster.run(20);
    cluster.form(&[a, b]);
    cluster.run(1_000);
    cluster
}

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

#[test]
fn lock_ops_wait_for_the_backup_in_delayed_write_and_data_writes_do_not() {
    let mut cluster = two_delayed_write_nodes();
    let (partition, primary) = (0..PARTITIONS)
        .find_map(|partition| {
            let record = cluster.nodes[0].engine.record(partition)?;
            let primary = cluster.index_of(record.primary)?;
            (!record.backups.is_empty()).then_some((partition, primary))
        })
        .expect("a partition with a synced backup");
    let key = (0..)
        .map(|index| format!("session:{index}"))
        .find(|key| store::partition_of(key.as_bytes(), PARTITIONS) == partition)
        .expect("some key maps to every partition");
    let acquire = Op::LockAcquire {
        key: b(&key),
        owner: b("worker"),
        mode: LockMode::Lease,
        lease_ms: 10_000,
        wait_ms: 0,
    };
    let compatibility_lock = |condition| Op::Set {
        // The hash tag keeps the lock key in the partition of the session key.
        key: b(&format!("{{{key}}}_LOCK")),
        value: b("secret"),
        expiry: SetExpiry::AtMs(cluster.now_ms + 10_000),
        condition,
        return_old: false,
        flags: 0,
    };
    let cases: Vec<(&str, Op, bool)> = vec![
        ("a data write", set_op(&key, "data"), false),
        ("a lock acquisition", acquire.clone(), true),
        ("a lock inspection", Op::LockInspect { key: b(&key) }, false),
        (
            "SET NX PX",
            compatibility_lock(SetCondition::IfAbsent),
            true,
        ),
        ("SET PX", compatibility_lock(SetCondition::Always), false),
    ];
    for (what, op, waits) in cases {
        // Any older frame is acknowledged first, so only this op's own frame can be waited on.
        cluster.deliver();
        let partition_of_op = store::partition_of(op.key().expect("keyed"), PARTITIONS);
        let execution =
            cluster.nodes[primary]
                .engine
                .execute(partition_of_op, 0, op, cluster.now_ms);
        let awaited = match &execution {
            Execution::AwaitAcks { waits, .. } => !waits.is_empty(),
            Execution::Done(_) => false,
            other => panic!("{what}: not executed on the primary: {other:?}"),
        };
        assert_eq!(awaited, waits, "{what}: {execution:?}");
    }
    // The acknowledged lock is on the backup.
    cluster.deliver();
    let backup = 1 - primary;
    let on_backup = cluster.nodes[backup].store.partition(partition).execute(
        0,
        Op::LockInspect { key: b(&key) },
        cluster.now_ms,
    );
    assert!(
        matches!(&on_backup.reply, Reply::LockHeld(holder) if holder.owner == b("worker")),
        "{on_backup:?}"
    );
}
