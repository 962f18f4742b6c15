//! Replication and failover by hand: write-through waits, promotions, claims after data loss,
//! delayed-write lag and stale marking, link resets and interrupted handoffs.

mod engine_support;

use bytes::Bytes;
use cluster::engine::{Execution, WriteMode};
use cluster::table::Member;
use cluster::wire::PeerMessage;
use engine_support::{Cluster, PARTITIONS, key_in, keys, set_op};
use store::Reply;

/// A partition whose primary is `primary` (by index) in `observer`'s table.
fn partition_with_primary(cluster: &Cluster, observer: usize, primary: usize) -> u32 {
    (0..PARTITIONS)
        .find(|&p| {
            cluster.nodes[observer].engine.record(p).map(|r| r.primary)
                == Some(cluster.nodes[primary].member)
        })
        .expect("the node is primary of some partition")
}

/// Whether `partition_backed_up_by` wants the listed backups exactly, or among others.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backups {
    Exactly,
    Include,
}

/// A partition whose primary is node `primary` and whose backups are `backups` (by index), in
/// the primary's table.
fn partition_backed_up_by(
    cluster: &Cluster,
    primary: usize,
    backups: &[usize],
    wanted: Backups,
) -> u32 {
    let members: Vec<Member> = backups
        .iter()
        .map(|&index| cluster.nodes[index].member)
        .collect();
    (0..PARTITIONS)
        .find(|&p| {
            cluster.nodes[primary].engine.record(p).is_some_and(|r| {
                r.primary == cluster.nodes[primary].member
                    && match wanted {
                        Backups::Exactly => r.backups == members,
                        Backups::Include => members.iter().all(|member| r.is_backup(*member)),
                    }
            })
        })
        .expect("some partition has that primary and those backups")
}

fn three_nodes(configure: impl Fn(&mut cluster::engine::EngineConfig) + Copy) -> Cluster {
    let mut cluster = Cluster::new();
    let a = cluster.add("a", configure);
    let b = cluster.add("b", |config| {
        configure(config);
        config.join_wait_ms = 10_000;
    });
    let c = cluster.add("c", |config| {
        configure(config);
        config.join_wait_ms = 10_000;
    });
    cluster.run(20);
    cluster.form(&[a, b, c]);
    cluster.run(1_000);
    cluster
}

/// Runs `op` on `node`'s engine and returns the one acknowledgement it waits for:
/// (the backup, its frame). `why` says why a wait is expected.
fn the_one_wait(
    cluster: &Cluster,
    node: usize,
    partition: u32,
    op: store::Op,
    why: &str,
) -> (Member, u64) {
    let execution = cluster.nodes[node]
        .engine
        .execute(partition, 0, op, cluster.now_ms);
    let Execution::AwaitAcks { waits, .. } = execution else {
        panic!("{why}: {execution:?}");
    };
    *waits.iter().next().expect("one wait")
}

#[test]
fn a_write_through_write_waits_for_every_synced_backup() {
    let mut cluster = three_nodes(|config| config.backups = 2);
    let partition = partition_with_primary(&cluster, 0, 0);
    let record = cluster.nodes[0].engine.record(partition).expect("record");
    assert_eq!(record.backups.len(), 2);
    let key = key_in(partition, "wt");
    let execution =
        cluster.nodes[0]
            .engine
            .execute(partition, 0, set_op(&key, "v"), cluster.now_ms);
    let Execution::AwaitAcks { reply, waits } = execution else {
        panic!("a write-through write with backups must wait: {execution:?}");
    };
    assert!(matches!(reply, Reply::Written { .. }));
    let waited: Vec<Member> = waits.iter().map(|(member, _)| *member).collect();
    let mut expected = record.backups.clone();
    expected.sort();
    let mut waited_sorted = waited.clone();
    waited_sorted.sort();
    assert_eq!(waited_sorted, expected);
    // Not acknowledged before the backups handled the frame; acknowledged after.
    for (member, frame) in waits.iter() {
        assert!(cluster.nodes[0].host.acked(*member) < *frame);
    }
    cluster.deliver();
    for backup in &record.backups {
        let index = cluster.index_of(*backup).expect("known");
        assert_eq!(cluster.stored(index, &key).as_deref(), Some(&b"v"[..]));
    }
}

#[test]
fn the_first_backup_is_promoted_when_the_primary_dies_and_holds_every_acknowledged_write() {
    let mut cluster = three_nodes(|_| {});
    let keys = keys(200);
    for key in &keys {
        cluster.set(1, key, &format!("{key}=1"));
    }
    // a dies: b and c remove it from their views; its links reset.
    cluster.link_down(0, 1);
    cluster.link_down(0, 2);
    cluster.set_view(&[1, 2]);
    cluster.run_only(&[1, 2], 1_000);
    assert!(
        cluster.nodes[1].engine.stats().promotions + cluster.nodes[2].engine.stats().promotions > 0
    );
    for key in &keys {
        assert_eq!(
            cluster.get(1, key),
            Reply::Bulk(Bytes::from(format!("{key}=1"))),
            "{key}"
        );
    }
    assert_eq!(cluster.nodes[1].engine.stats().lost_partitions, 0);
    assert_eq!(cluster.nodes[2].engine.stats().lost_partitions, 0);
    cluster.assert_balanced(&[1, 2], 1);
}

#[test]
fn with_two_backups_losing_the_primary_and_its_first_backup_at_once_loses_nothing() {
    let mut cluster = three_nodes(|config| config.backups = 2);
    let keys = keys(200);
    for key in &keys {
        cluster.set(2, key, key);
    }
    // a and b die together; c is the last backup of everything.
    for dead in [0, 1] {
        cluster.link_down(dead, 2);
    }
    cluster.link_down(0, 1);
    cluster.set_view(&[2]);
    cluster.run_only(&[2], 500);
    for key in &keys {
        assert_eq!(
            cluster.get(2, key),
            Reply::Bulk(Bytes::from(key.clone())),
            "{key}"
        );
    }
    assert_eq!(cluster.nodes[2].engine.stats().lost_partitions, 0);
}

#[test]
fn a_partition_whose_owners_all_died_is_claimed_and_counted_as_lost() {
    let mut cluster = Cluster::new();
    let a = cluster.add("a", |config| config.backups = 0);
    let b = cluster.add("b", |config| {
        config.backups = 0;
        config.join_wait_ms = 10_000;
    });
    cluster.run(20);
    cluster.form(&[a, b]);
    cluster.run(500);
    let owned_by_a = (0..PARTITIONS)
        .filter(|&p| {
            cluster.nodes[b].engine.record(p).map(|r| r.primary) == Some(cluster.nodes[a].member)
        })
        .count() as u64;
    assert!(owned_by_a > 0);
    cluster.link_down(a, b);
    cluster.set_view(&[b]);
    cluster.run_only(&[b], 200);
    assert_eq!(cluster.nodes[b].engine.stats().lost_partitions, owned_by_a);
    for partition in 0..PARTITIONS {
        assert!(
            cluster.nodes[b]
                .engine
                .accepting_writes(partition, cluster.now_ms)
        );
    }
}

#[test]
fn delayed_write_answers_at_once_and_waits_only_when_the_lag_bound_is_exceeded() {
    let mut cluster = three_nodes(|config| {
        config.write_mode = WriteMode::Delayed;
        config.max_lag_ms = 100;
    });
    let partition = partition_with_primary(&cluster, 0, 0);
    let key = key_in(partition, "dw");
    assert!(matches!(
        cluster.nodes[0]
            .engine
            .execute(partition, 0, set_op(&key, "1"), cluster.now_ms),
        Execution::Done(Reply::Written { .. })
    ));
    // The backup does not acknowledge for 150 ms: the next write waits on that frame.
    cluster.now_ms += 150;
    cluster.nodes[0]
        .engine
        .handle_membership_alive(cluster.now_ms);
    let execution =
        cluster.nodes[0]
            .engine
            .execute(partition, 0, set_op(&key, "2"), cluster.now_ms);
    assert!(
        matches!(execution, Execution::AwaitAcks { .. }),
        "{execution:?}"
    );
    cluster.deliver();
    assert!(matches!(
        cluster.nodes[0]
            .engine
            .execute(partition, 0, set_op(&key, "3"), cluster.now_ms),
        Execution::Done(_)
    ));
    let lag = cluster.nodes[0].engine.summary(cluster.now_ms).lag_ms;
    assert!(lag.values().all(|&lag_ms| lag_ms == 0), "{lag:?}");
}

#[test]
fn a_delayed_write_promotion_marks_older_keys_possibly_stale() {
    let mut cluster = three_nodes(|config| config.write_mode = WriteMode::Delayed);
    let partition = partition_with_primary(&cluster, 0, 0);
    let key = key_in(partition, "stale");
    cluster.set(0, &key, "before");
    cluster.run(10);
    let record = cluster.nodes[1].engine.record(partition).expect("record");
    let backup = cluster.index_of(record.backups[0]).expect("known");
    let version_before = dump_version(&cluster, backup, &key);
    cluster.link_down(0, 1);
    cluster.link_down(0, 2);
    cluster.set_view(&[1, 2]);
    cluster.run_only(&[1, 2], 200);
    let engine = &cluster.nodes[backup].engine;
    assert_eq!(
        engine.record(partition).map(|r| r.primary),
        Some(cluster.nodes[backup].member)
    );
    assert!(engine.is_possibly_stale(partition, version_before));
    assert!(engine.stats().failover_marked_keys >= 1);
    // Written again, it is not stale any more.
    cluster.set(backup, &key, "after");
    let version_after = dump_version(&cluster, backup, &key);
    assert!(
        !cluster.nodes[backup]
            .engine
            .is_possibly_stale(partition, version_after)
    );
}

fn dump_version(cluster: &Cluster, node: usize, key: &str) -> u64 {
    let partition = store::partition_of(key.as_bytes(), PARTITIONS);
    let outcome = cluster.nodes[node].store.partition(partition).execute(
        0,
        store::Op::Dump {
            key: Bytes::copy_from_slice(key.as_bytes()),
        },
        cluster.now_ms,
    );
    match outcome.reply {
        Reply::Image(image) => image.version.hlc,
        other => panic!("{key} not on node {node}: {other:?}"),
    }
}

#[test]
fn a_link_reset_removes_the_backup_which_is_snapshotted_again() {
    let mut cluster = three_nodes(|_| {});
    let keys = keys(100);
    for key in &keys {
        cluster.set(0, key, "1");
    }
    let snapshots_before = cluster.nodes[0].engine.stats().snapshots_completed;
    let partition = partition_backed_up_by(&cluster, 0, &[1], Backups::Include);
    cluster.link_down(0, 1);
    // While the link is down a's partitions lose b as a backup, but b is alive and does not
    // know: they execute nothing until it does.
    assert!(
        !cluster.nodes[0]
            .engine
            .record(partition)
            .expect("record")
            .is_backup(cluster.nodes[1].member)
    );
    assert_eq!(
        cluster.nodes[0]
            .engine
            .execute(partition, 0, set_op("k", "v"), cluster.now_ms),
        Execution::Wait {
            reason: cluster::engine::WaitReason::BackupUnconfirmed
        }
    );
    cluster.link_up(0, 1);
    cluster.deliver();
    // Written through c, which reaches every primary.
    for key in &keys {
        cluster.set(2, key, "2");
    }
    cluster.run(1_000);
    cluster.assert_balanced(&[0, 1, 2], 1);
    assert!(cluster.nodes[0].engine.stats().snapshots_completed > snapshots_before);
    for node in 0..3 {
        for key in &keys {
            assert_eq!(
                cluster.get(node, key),
                Reply::Bulk(Bytes::from_static(b"2"))
            );
        }
    }
}

#[test]
fn a_backup_whose_link_reset_is_promoted_with_every_acknowledged_write_if_the_primary_dies() {
    let mut cluster = three_nodes(|_| {});
    let (a, b, c) = (0, 1, 2);
    let partition = (0..PARTITIONS)
        .find(|&p| {
            cluster.nodes[a].engine.record(p).is_some_and(|r| {
                r.primary == cluster.nodes[a].member && r.backups == [cluster.nodes[b].member]
            })
        })
        .expect("a is primary of something b backs up");
    let key = key_in(partition, "reset");
    cluster.set(a, &key, "1");
    // A write in flight when the link resets: its frame to b is lost.
    let (_, frame) = the_one_wait(
        &cluster,
        a,
        partition,
        set_op(&key, "2"),
        "the write waits for b",
    );
    cluster.link_down(a, b);
    cluster.run_only(&[a, b, c], 50);
    let b_member = cluster.nodes[b].member;
    assert!(
        cluster.nodes[a].host.acked(b_member) < frame,
        "not acknowledged: b lacks it and would promote itself"
    );
    assert!(
        cluster.nodes[b]
            .engine
            .record(partition)
            .is_some_and(|r| r.is_backup(b_member)),
        "b has not learnt it was removed"
    );
    // a dies before b reconnects: b is promoted with what was acknowledged ("1").
    cluster.link_down(a, c);
    cluster.set_view(&[b, c]);
    cluster.run_only(&[b, c], 500);
    assert_eq!(
        cluster.nodes[c].engine.record(partition).map(|r| r.primary),
        Some(b_member)
    );
    assert_eq!(cluster.get(c, &key), Reply::Bulk(Bytes::from_static(b"1")));
    assert_eq!(cluster.nodes[a].engine.stats().removals_confirmed, 0);
}

#[test]
fn in_delayed_write_a_lock_is_not_acknowledged_while_its_backup_does_not_know_it_was_removed() {
    // Locks wait for the backups in either write mode.
    let mut cluster = three_nodes(|config| config.write_mode = WriteMode::Delayed);
    let (a, b) = (0, 1);
    let b_member = cluster.nodes[b].member;
    let partition = partition_backed_up_by(&cluster, a, &[b], Backups::Exactly);
    let key = key_in(partition, "lock");
    let acquire = store::Op::LockAcquire {
        key: Bytes::copy_from_slice(key.as_bytes()),
        owner: Bytes::from_static(b"w1"),
        mode: store::LockMode::Lease,
        lease_ms: 60_000,
        wait_ms: 0,
    };
    let (_, frame) = the_one_wait(
        &cluster,
        a,
        partition,
        acquire,
        "a lock waits for its backup",
    );
    cluster.link_down(a, b);
    cluster.run(50);
    assert!(
        cluster.nodes[a].host.acked(b_member) < frame,
        "the lock is not acknowledged while b may promote itself without it"
    );
    cluster.link_up(a, b);
    cluster.run(100);
    assert!(cluster.nodes[a].host.acked(b_member) >= frame);
}

#[test]
fn a_promoted_backup_does_not_acknowledge_writes_while_an_unlinked_backup_may_promote() {
    let mut cluster = three_nodes(|config| config.backups = 2);
    let (a, b, c) = (0, 1, 2);
    let b_member = cluster.nodes[b].member;
    let partition = partition_backed_up_by(&cluster, a, &[b, c], Backups::Exactly);
    let key = key_in(partition, "promoted");
    cluster.set(a, &key, "1");
    // The b–c link resets, then a dies: b promotes itself without c, which it cannot tell.
    cluster.link_down(b, c);
    cluster.link_down(a, b);
    cluster.link_down(a, c);
    cluster.set_view(&[b, c]);
    cluster.run_only(&[b, c], 100);
    assert_eq!(
        cluster.nodes[b].engine.record(partition).map(|r| r.primary),
        Some(b_member)
    );
    assert_eq!(
        cluster.nodes[b]
            .engine
            .execute(partition, 0, set_op(&key, "2"), cluster.now_ms),
        Execution::Wait {
            reason: cluster::engine::WaitReason::BackupUnconfirmed
        },
        "c still holds a record that lists it: were b to die now, c would promote itself"
    );
    // b dies: c is promoted with everything acknowledged.
    cluster.set_view(&[c]);
    cluster.run_only(&[c], 1_000);
    assert_eq!(cluster.stored(c, &key).as_deref(), Some(&b"1"[..]));
}

#[test]
fn a_backup_removed_by_a_link_reset_keeps_its_copy_until_snapshotted_again() {
    // Two nodes: after the reset b confirms it was removed, and a's new snapshot of it is held
    // back on the link; a dies before it ends.
    let mut cluster = Cluster::formed_pair();
    let (a, b) = (0, 1);
    let b_member = cluster.nodes[b].member;
    let partition = partition_backed_up_by(&cluster, a, &[b], Backups::Exactly);
    let keys: Vec<String> = (0..20)
        .map(|index| key_in(partition, &format!("kept{index}")))
        .collect();
    for key in &keys {
        cluster.set(a, key, "1");
    }
    cluster.link_down(a, b);
    cluster.hold_kinds.insert("snapshot_end");
    cluster.link_up(a, b);
    cluster.run(200);
    assert!(
        !cluster.nodes[b]
            .engine
            .record(partition)
            .is_some_and(|r| r.is_backup(b_member)),
        "b learnt it was removed"
    );
    for key in &keys {
        assert_eq!(
            cluster.stored(b, key).as_deref(),
            Some(&b"1"[..]),
            "b kept its copy through the new snapshot"
        );
    }
    // a dies: b, the target primary, claims the partition with its copy.
    cluster.hold_kinds.clear();
    cluster.link_down(a, b);
    cluster.set_view(&[b]);
    cluster.run_only(&[b], 3_000);
    assert_eq!(
        cluster.nodes[b].engine.record(partition).map(|r| r.primary),
        Some(b_member)
    );
    for key in &keys {
        assert_eq!(cluster.get(b, key), Reply::Bulk(Bytes::from_static(b"1")));
    }
}

#[test]
fn a_write_whose_frame_a_link_reset_lost_is_acknowledged_only_once_the_backup_holds_it() {
    let mut cluster = Cluster::formed_pair();
    let (a, b) = (0, 1);
    let b_member = cluster.nodes[b].member;
    let partition = partition_backed_up_by(&cluster, a, &[b], Backups::Exactly);
    let key = key_in(partition, "lost-frame");
    cluster.set(a, &key, "1");
    // The write's frame is on its way to b when the link resets: it is lost.
    cluster.hold_links.insert((a, b));
    let why = "a write-through write waits for its backup";
    let (member, frame) = the_one_wait(&cluster, a, partition, set_op(&key, "2"), why);
    assert_eq!(member, b_member);
    cluster.hold_links.clear();
    cluster.link_down(a, b);
    // b confirms over the next link, but a's snapshot of it is held back on the link.
    cluster.hold_kinds.insert("snapshot_begin");
    cluster.link_up(a, b);
    cluster.run(200);
    assert_eq!(cluster.nodes[a].engine.stats().removals_confirmed, 1);
    assert_eq!(cluster.stored(b, &key).as_deref(), Some(&b"1"[..]));
    assert!(
        cluster.nodes[a].host.acked(b_member) < frame,
        "not acknowledged while only a holds it"
    );
    cluster.hold_kinds.clear();
    cluster.run(200);
    assert_eq!(cluster.stored(b, &key).as_deref(), Some(&b"2"[..]));
    assert!(cluster.nodes[a].host.acked(b_member) >= frame);
    cluster.assert_balanced(&[a, b], 1);
}

#[test]
fn a_backup_that_confirmed_and_lost_its_link_again_still_holds_back_the_writes_it_lacks() {
    let mut cluster = Cluster::formed_pair();
    let (a, b) = (0, 1);
    let b_member = cluster.nodes[b].member;
    let partition = partition_backed_up_by(&cluster, a, &[b], Backups::Exactly);
    let key = key_in(partition, "twice");
    cluster.set(a, &key, "1");
    cluster.hold_links.insert((a, b));
    let why = "a write-through write waits for its backup";
    let (_, frame) = the_one_wait(&cluster, a, partition, set_op(&key, "2"), why);
    cluster.hold_links.clear();
    cluster.link_down(a, b);
    // b confirms; the snapshot that would bring it the write never ends.
    cluster.hold_kinds.insert("snapshot_end");
    cluster.link_up(a, b);
    let confirm_timeout_ms = cluster.nodes[a].engine.config().confirm_timeout_ms;
    cluster.run(confirm_timeout_ms + 500);
    assert_eq!(cluster.nodes[a].engine.stats().removals_confirmed, 1);
    assert!(cluster.nodes[a].host.acked(b_member) < frame);
    // The link ends again, long after the first drop: b gets its own time to come back.
    cluster.link_down(a, b);
    cluster.run(100);
    assert!(
        cluster.nodes[a].host.acked(b_member) < frame,
        "not given up on at once for a drop that is long past"
    );
    assert_eq!(cluster.nodes[a].engine.stats().removals_unconfirmed, 0);
    cluster.hold_kinds.clear();
    cluster.link_up(a, b);
    cluster.run(500);
    assert!(cluster.nodes[a].host.acked(b_member) >= frame);
    assert_eq!(cluster.stored(b, &key).as_deref(), Some(&b"2"[..]));
}

#[test]
fn writes_after_a_link_reset_wait_for_the_backup_being_brought_up_to_date_in_place() {
    let mut cluster = Cluster::formed_pair();
    let (a, b) = (0, 1);
    let b_member = cluster.nodes[b].member;
    let partition = partition_backed_up_by(&cluster, a, &[b], Backups::Exactly);
    let key = key_in(partition, "resync");
    cluster.set(a, &key, "1");
    cluster.link_down(a, b);
    // b confirms over the next link, but its table does not reach a: a cannot snapshot it yet.
    cluster.hold_links.insert((b, a));
    cluster.link_up(a, b);
    cluster.run(200);
    assert_eq!(cluster.nodes[a].engine.stats().removals_confirmed, 1);
    assert_eq!(
        cluster.nodes[a]
            .engine
            .execute(partition, 0, set_op(&key, "2"), cluster.now_ms),
        Execution::Wait {
            reason: cluster::engine::WaitReason::BackupUnconfirmed
        },
        "a write acknowledged now would have one copy, b's kept one lacking it"
    );
    // a snapshots b in place; until that is done (b's answer is lost), writes wait for b.
    cluster.hold_links.clear();
    cluster.drop_kinds.insert("snapshot_done");
    cluster.run(200);
    assert!(
        !cluster.nodes[a]
            .engine
            .record(partition)
            .is_some_and(|r| r.is_backup(b_member)),
        "b is not a backup in the record before its snapshot is done"
    );
    let why = "a write waits for the backup that keeps its copy";
    let (member, frame) = the_one_wait(&cluster, a, partition, set_op(&key, "2"), why);
    assert_eq!(member, b_member);
    cluster.run(50);
    assert!(cluster.nodes[a].host.acked(b_member) >= frame);
    assert_eq!(cluster.stored(b, &key).as_deref(), Some(&b"2"[..]));
    // The snapshots whose answer was lost start again after their timeout.
    cluster.drop_kinds.clear();
    let timeout_ms = cluster.nodes[a].engine.config().snapshot_done_timeout_ms;
    cluster.run(timeout_ms + 500);
    cluster.assert_balanced(&[a, b], 1);
}

#[test]
fn an_in_place_snapshot_removes_what_the_primary_no_longer_has() {
    let mut cluster = Cluster::formed_pair();
    let (a, b) = (0, 1);
    let partition = partition_backed_up_by(&cluster, a, &[b], Backups::Exactly);
    let kept = key_in(partition, "kept");
    let deleted = key_in(partition, "deleted");
    cluster.set(a, &kept, "1");
    cluster.set(a, &deleted, "1");
    // a deletes `deleted`, and the link resets before b has the deletion: its frame is lost.
    cluster.hold_links.insert((a, b));
    let delete = store::Op::Delete {
        key: Bytes::from(deleted.clone()),
        cas_opt: None,
    };
    let execution = cluster.nodes[a]
        .engine
        .execute(partition, 0, delete, cluster.now_ms);
    assert!(
        matches!(execution, Execution::AwaitAcks { .. }),
        "{execution:?}"
    );
    cluster.hold_links.clear();
    cluster.link_down(a, b);
    // The deletion's tombstone ages out and is swept: a holds nothing of the key, and no
    // image of it will reach b.
    let tombstone_ttl_ms = cluster.nodes[a].store.config().tombstone_ttl_ms;
    cluster.nodes[a]
        .store
        .partition(partition)
        .sweep(cluster.now_ms + tombstone_ttl_ms + 1, 1_000);
    assert_eq!(
        cluster.nodes[a].store.partition(partition).num_tombstones(),
        0
    );
    assert_eq!(cluster.stored(b, &deleted).as_deref(), Some(&b"1"[..]));
    cluster.link_up(a, b);
    cluster.run(500);
    cluster.assert_balanced(&[a, b], 1);
    assert_eq!(cluster.stored(b, &kept).as_deref(), Some(&b"1"[..]));
    assert_eq!(
        cluster.stored(b, &deleted),
        None,
        "the kept copy's value of a key the primary no longer has is gone"
    );
}

#[test]
fn a_write_whose_send_to_a_backup_failed_waits_for_that_backup_to_confirm() {
    let mut cluster = three_nodes(|_| {});
    let (a, b) = (0, 1);
    let b_member = cluster.nodes[b].member;
    let partition = partition_backed_up_by(&cluster, a, &[b], Backups::Exactly);
    let key = key_in(partition, "failed-send");
    cluster.set(a, &key, "1");
    // The link is closing: a's send to b fails before the engine hears of the end.
    cluster.sever(a, b);
    let why = "the write waits although its send failed";
    let (member, frame) = the_one_wait(&cluster, a, partition, set_op(&key, "2"), why);
    assert_eq!(member, b_member);
    assert_eq!(
        cluster.nodes[a]
            .engine
            .execute(partition, 0, set_op(&key, "3"), cluster.now_ms),
        Execution::Wait {
            reason: cluster::engine::WaitReason::BackupUnconfirmed
        }
    );
    cluster.link_down(a, b);
    cluster.run(100);
    assert!(
        cluster.nodes[a].host.acked(b_member) < frame,
        "not acknowledged while b may promote itself without it"
    );
    cluster.link_up(a, b);
    cluster.run(500);
    assert!(cluster.nodes[a].host.acked(b_member) >= frame);
    assert_eq!(cluster.stored(b, &key).as_deref(), Some(&b"2"[..]));
}

#[test]
fn a_backup_that_stays_in_the_view_without_a_link_is_given_up_on_after_the_timeout() {
    let mut cluster = three_nodes(|_| {});
    let (a, b) = (0, 1);
    let partition = partition_backed_up_by(&cluster, a, &[b], Backups::Include);
    cluster.link_down(a, b);
    assert!(
        !cluster.nodes[a]
            .engine
            .accepting_writes(partition, cluster.now_ms)
    );
    let timeout_ms = cluster.nodes[a].engine.config().confirm_timeout_ms;
    cluster.run(timeout_ms + 100);
    assert!(
        cluster.nodes[a]
            .engine
            .accepting_writes(partition, cluster.now_ms)
    );
    assert_eq!(cluster.nodes[a].engine.stats().removals_unconfirmed, 1);
    let key = key_in(partition, "late");
    cluster.set(2, &key, "v");
}

#[test]
fn a_handoff_to_a_node_that_leaves_before_taking_over_resumes_on_the_old_primary() {
    let mut cluster = Cluster::new();
    let a = cluster.add("a", |_| {});
    let b = cluster.add("b", |config| config.join_wait_ms = 10_000);
    cluster.run(20);
    // Handoff frames to b are stuck on a slow link (b never takes over).
    cluster.hold_kinds.insert("handoff");
    cluster.form(&[a, b]);
    cluster.run(300);
    let stats = cluster.nodes[a].engine.stats();
    assert!(stats.handoffs_started > 0);
    assert_eq!(stats.handoffs_completed, 0);
    let waiting = cluster.nodes[a]
        .engine
        .summary(cluster.now_ms)
        .handoffs_in_progress;
    assert!(waiting > 0);
    // b leaves: a resumes every partition it was handing off.
    cluster.link_down(a, b);
    cluster.set_view(&[a]);
    cluster.run_only(&[a], 50);
    assert_eq!(
        cluster.nodes[a]
            .engine
            .summary(cluster.now_ms)
            .handoffs_in_progress,
        0
    );
    for partition in 0..PARTITIONS {
        assert!(
            cluster.nodes[a]
                .engine
                .accepting_writes(partition, cluster.now_ms)
        );
    }
}

/// Delivers to `to` a `Replicate` from `from` whose sequence number skips ahead, as if frames
/// had been lost. The receiver resets the link (frames still queued on it are lost).
fn inject_gap(cluster: &mut Cluster, from: usize, to: usize, partition: u32) {
    let epoch = cluster.nodes[to]
        .engine
        .record(partition)
        .expect("record")
        .epoch;
    let from_member = cluster.nodes[from].member;
    cluster.nodes[to].engine.handle_message(
        from_member,
        cluster::wire::PeerMessage::Replicate {
            partition,
            epoch,
            seq: 1_000_000,
            mutations: cluster::wire::SmallList::new(),
        },
        cluster.now_ms,
    );
    let resets = cluster.nodes[to].host.take_resets();
    assert_eq!(resets, [from_member], "the receiver resets the link");
    cluster.link_down(from, to);
}

#[test]
fn a_backup_that_finds_a_gap_in_the_stream_resets_the_link_and_acknowledges_nothing_it_skipped() {
    let mut cluster = three_nodes(|_| {});
    let partition = partition_with_primary(&cluster, 0, 0);
    let record = cluster.nodes[0].engine.record(partition).expect("record");
    let backup = cluster.index_of(record.backups[0]).expect("known");
    let backup_member = cluster.nodes[backup].member;
    let key = key_in(partition, "gap");
    cluster.set(0, &key, "1");
    // A write whose frame is still queued when the backup finds the gap.
    let why = "the write waits for its backup";
    let (_, frame) = the_one_wait(&cluster, 0, partition, set_op(&key, "2"), why);
    inject_gap(&mut cluster, 0, backup, partition);
    cluster.deliver();
    assert!(
        !cluster.nodes[0]
            .engine
            .record(partition)
            .expect("record")
            .is_backup(backup_member),
        "a backup out of step is not a backup"
    );
    assert!(
        cluster.nodes[0].host.acked(backup_member) < frame,
        "the write is not acknowledged while the backup that lacks it may still promote itself"
    );
    cluster.run(100);
    assert!(cluster.nodes[0].host.acked(backup_member) < frame);
    cluster.link_up(0, backup);
    cluster.run(500);
    assert!(cluster.nodes[0].host.acked(backup_member) >= frame);
    assert_eq!(cluster.nodes[0].engine.stats().removals_confirmed, 1);
    cluster.assert_balanced(&[0, 1, 2], 1);
    assert_eq!(cluster.stored(backup, &key).as_deref(), Some(&b"2"[..]));
}

#[test]
fn a_handoff_refused_by_a_target_out_of_step_is_aborted_and_retried() {
    let mut cluster = Cluster::new();
    let a = cluster.add("a", |_| {});
    let b = cluster.add("b", |config| config.join_wait_ms = 10_000);
    cluster.run(20);
    // Handoffs are held back on a slow link, so they wait in the `Sent` phase.
    cluster.hold_kinds.insert("handoff");
    cluster.form(&[a, b]);
    cluster.run(300);
    let partition = (0..PARTITIONS)
        .find(|&p| {
            cluster::table::target_owners(p, &cluster.nodes[b].engine.view(), 1)[0]
                == cluster.nodes[b].member
        })
        .expect("b is the target primary of something");
    // b loses step with a for that partition: it resets the link, which ends the handoffs
    // under way, and is snapshotted again before any handoff to it.
    let completed = cluster.nodes[a].engine.stats().handoffs_completed;
    inject_gap(&mut cluster, a, b, partition);
    cluster.hold_kinds.clear();
    cluster.link_up(a, b);
    cluster.run(1_000);
    cluster.assert_balanced(&[a, b], 1);
    assert!(cluster.nodes[a].engine.stats().handoffs_completed > completed);
}

#[test]
fn a_promoted_backup_serves_only_after_its_peers_acknowledged_its_record() {
    let mut cluster = three_nodes(|_| {});
    let partition = partition_with_primary(&cluster, 1, 0);
    let record = cluster.nodes[1].engine.record(partition).expect("record");
    let backup = cluster.index_of(record.backups[0]).expect("known");
    let other = 3 - backup;
    cluster.link_down(0, 1);
    cluster.link_down(0, 2);
    // Only the backup learns of the death for now; the third node's frames are held.
    cluster.hold_kinds.insert("record");
    let view: Vec<cluster::table::ViewMember> = [backup, other]
        .iter()
        .map(|&index| cluster::table::ViewMember {
            member: cluster.nodes[index].member,
            name: cluster.nodes[index].name.clone(),
            leaving: false,
        })
        .collect();
    cluster.nodes[backup]
        .engine
        .handle_view(view, cluster.now_ms);
    assert_eq!(
        cluster.nodes[backup]
            .engine
            .record(partition)
            .map(|r| r.primary),
        Some(cluster.nodes[backup].member),
        "promoted"
    );
    assert!(
        !cluster.nodes[backup]
            .engine
            .accepting_writes(partition, cluster.now_ms)
    );
    assert_eq!(
        cluster.nodes[backup]
            .engine
            .execute(partition, 0, store::Op::DbSize, cluster.now_ms),
        Execution::Wait {
            reason: cluster::engine::WaitReason::Announcing
        }
    );
    cluster.hold_kinds.clear();
    cluster.deliver();
    assert!(
        cluster.nodes[backup]
            .engine
            .accepting_writes(partition, cluster.now_ms)
    );
}

#[test]
fn the_summary_lists_the_partitions_left_without_a_live_backup_until_new_backups_are_made() {
    let mut cluster = three_nodes(|_| {});
    let (b, c) = (cluster.nodes[1].member, cluster.nodes[2].member);
    // a dies: the partitions whose only backup it was, and those b or c took over by promotion
    // (at once, on the new view), have no live backup.
    cluster.link_down(0, 1);
    cluster.link_down(0, 2);
    cluster.set_view(&[1, 2]);
    let expected: Vec<u32> = (0..PARTITIONS)
        .filter(|&partition| {
            let record = cluster.nodes[1].engine.record(partition).expect("record");
            !record
                .backups
                .iter()
                .any(|backup| *backup == b || *backup == c)
        })
        .collect();
    assert!(!expected.is_empty(), "nothing is under-replicated");
    let summary = cluster.nodes[1].engine.summary(cluster.now_ms);
    assert_eq!(summary.under_replicated as usize, expected.len());
    let shown = expected
        .len()
        .min(cluster::engine::UNDER_REPLICATED_PARTITIONS_SHOWN);
    assert_eq!(summary.under_replicated_partitions, expected[..shown]);
    // b and c make new backups of each other.
    cluster.run_only(&[1, 2], 1_000);
    let summary = cluster.nodes[1].engine.summary(cluster.now_ms);
    assert_eq!(summary.under_replicated, 0);
    assert!(summary.under_replicated_partitions.is_empty());
}

#[test]
fn a_backup_that_is_no_longer_a_target_stays_until_the_new_one_holds_every_acknowledged_write() {
    // a primary and c its backup; d joins and becomes the partition's target backup. A write
    // made while d's snapshot was ending waited for c only. c may leave the record only once d
    // acknowledged that write: c leaving first, then a crashing, would promote d without it.
    let (partition, d_name) = ["d", "e", "f", "g", "h"]
        .into_iter()
        .find_map(|d| {
            (0..PARTITIONS)
                .find(|&p| {
                    let score = |name| cluster::table::rendezvous_score(name, p);
                    score("a") > score(d) && score(d) > score("c")
                })
                .map(|p| (p, d))
        })
        .expect("some partition ranks a, then the newcomer, then c");
    let mut cluster = Cluster::new();
    let a = cluster.add("a", |_| {});
    let c = cluster.add("c", |config| config.join_wait_ms = 10_000);
    cluster.run(20);
    cluster.form(&[a, c]);
    cluster.run(500);
    let record = cluster.nodes[a].engine.record(partition).expect("record");
    assert_eq!(record.primary, cluster.nodes[a].member);
    assert_eq!(record.backups, vec![cluster.nodes[c].member]);

    let d = cluster.add(d_name, |config| config.join_wait_ms = 10_000);
    cluster.hold_kinds.insert("snapshot_done");
    cluster.set_view(&[a, c, d]);
    cluster.link_up(a, d);
    cluster.link_up(c, d);
    let d_member = cluster.nodes[d].member;
    let a_member = cluster.nodes[a].member;
    let done_is_held = |cluster: &Cluster| {
        cluster.nodes[d].host.queued(a_member).iter().any(|message| {
            matches!(message, PeerMessage::SnapshotDone { partition: p, .. } if *p == partition)
        })
    };
    for _ in 0..100 {
        if done_is_held(&cluster) {
            break;
        }
        cluster.run(10);
    }
    assert!(
        done_is_held(&cluster),
        "d finished the snapshot of the partition"
    );

    // The write waits for c only (d is not synced yet); its frame to d stays queued.
    cluster.hold_links.insert((a, d));
    let key = key_in(partition, "late");
    assert!(matches!(
        cluster.set(a, &key, "w"),
        Reply::Written { .. } | Reply::Ok
    ));
    cluster.hold_kinds.remove("snapshot_done");
    cluster.deliver();
    let record = cluster.nodes[a].engine.record(partition).expect("record");
    assert!(
        record.is_backup(cluster.nodes[c].member),
        "c left before d held the write: {record:?}"
    );
    assert_eq!(cluster.stored(d, &key), None);

    cluster.hold_links.remove(&(a, d));
    cluster.run(1_000);
    let record = cluster.nodes[a].engine.record(partition).expect("record");
    assert_eq!(record.backups, vec![d_member]);
    assert_eq!(cluster.stored(d, &key).as_deref(), Some(&b"w"[..]));
}
