//! Ownership by hand: claims, joins and handoffs, relays, fencing and planned leave, with two or
//! three engines whose views, links and clock each test sets.

mod engine_support;

use bytes::Bytes;
use cluster::engine::{Execution, WaitReason};
use cluster::wire::{PeerMessage, RelayResult};
use engine_support::{Cluster, PARTITIONS, keys, set_op};
use store::{Op, Reply};

#[test]
fn a_lone_node_claims_every_partition_and_serves_locally() {
    let mut cluster = Cluster::new();
    let a = cluster.add("a", |_| {});
    cluster.run(20);
    for partition in 0..PARTITIONS {
        let record = cluster.nodes[a].engine.record(partition).expect("claimed");
        assert_eq!(record.primary, cluster.nodes[a].member);
        assert!(record.backups.is_empty());
        assert!(
            cluster.nodes[a]
                .engine
                .accepting_writes(partition, cluster.now_ms)
        );
    }
    assert!(matches!(cluster.set(a, "k", "v"), Reply::Written { .. }));
    assert_eq!(cluster.get(a, "k"), Reply::Bulk(Bytes::from_static(b"v")));
    assert_eq!(
        cluster.nodes[a].engine.stats().claims,
        u64::from(PARTITIONS)
    );
    assert_eq!(cluster.nodes[a].engine.stats().lost_partitions, 0);
}

#[test]
fn a_joining_node_claims_nothing_before_the_join_wait() {
    let mut cluster = Cluster::new();
    let a = cluster.add("a", |config| config.join_wait_ms = 500);
    cluster.run(400);
    assert_eq!(cluster.nodes[a].engine.record(0), None);
    assert_eq!(
        cluster.nodes[a]
            .engine
            .execute(0, 0, Op::DbSize, cluster.now_ms),
        Execution::Wait {
            reason: WaitReason::NoRecord
        }
    );
    cluster.run(200);
    assert!(cluster.nodes[a].engine.record(0).is_some());
}

#[test]
fn a_node_claims_nothing_while_its_view_is_not_agreed() {
    let mut cluster = Cluster::new();
    let a = cluster.add("a", |config| config.join_wait_ms = 500);
    // Some member of its view reports another view: it may not be the target primary there.
    cluster.nodes[a].engine.handle_view_agreement(false);
    cluster.run(700);
    assert_eq!(cluster.nodes[a].engine.record(0), None);
    assert_eq!(cluster.nodes[a].engine.stats().claims, 0);
    cluster.nodes[a].engine.handle_view_agreement(true);
    cluster.run(200);
    assert!(cluster.nodes[a].engine.record(0).is_some());
}

#[test]
fn a_second_node_takes_its_share_by_snapshot_and_handoff_losing_no_key() {
    let mut cluster = Cluster::new();
    let a = cluster.add("a", |_| {});
    cluster.run(20);
    let keys = keys(200);
    for key in &keys {
        cluster.set(a, key, &format!("v-{key}"));
    }
    let b = cluster.add("b", |config| config.join_wait_ms = 10_000);
    cluster.form(&[a, b]);
    cluster.run(500);
    cluster.assert_balanced(&[a, b], 1);
    let stats_a = cluster.nodes[a].engine.stats();
    let stats_b = cluster.nodes[b].engine.stats();
    assert_eq!(
        stats_b.claims, 0,
        "the joining node claimed what the cluster owns"
    );
    assert!(stats_a.handoffs_completed > 0 && stats_b.handoffs_taken > 0);
    assert_eq!(stats_a.handoffs_completed, stats_b.handoffs_taken);
    // Every completed handoff's duration is drained once, for the node's histogram, and the
    // durations add up to the engine's total.
    let durations_ms = cluster.nodes[a].engine.drain_handoff_durations_ms();
    assert_eq!(durations_ms.len() as u64, stats_a.handoffs_completed);
    assert_eq!(
        durations_ms.iter().sum::<u64>(),
        stats_a.handoff_duration_ms_total
    );
    assert_eq!(
        durations_ms.iter().max().copied(),
        Some(stats_a.handoff_duration_ms_max)
    );
    assert!(
        cluster.nodes[a]
            .engine
            .drain_handoff_durations_ms()
            .is_empty()
    );
    assert!(
        cluster.nodes[b]
            .engine
            .drain_handoff_durations_ms()
            .is_empty()
    );
    for key in &keys {
        let expected = Reply::Bulk(Bytes::from(format!("v-{key}")));
        assert_eq!(cluster.get(a, key), expected, "{key} through a");
        assert_eq!(cluster.get(b, key), expected, "{key} through b");
        // Both replicas hold it (one primary, one backup of every partition).
        assert_eq!(
            cluster.stored(a, key).as_deref(),
            Some(format!("v-{key}").as_bytes())
        );
        assert_eq!(
            cluster.stored(b, key).as_deref(),
            Some(format!("v-{key}").as_bytes())
        );
    }
}

/// A node that joined is linked to its peers before membership admits them to its view. In that
/// partial view it is the target primary of everything and its peers are targets of nothing:
/// taking a handoff then, it dropped every backup from the record and acknowledged writes on its
/// copy alone (sim seed 701771). It takes handoffs only once its view is settled.
#[test]
fn a_node_takes_no_handoff_while_its_view_is_not_settled() {
    let mut cluster = Cluster::formed_pair();
    let (a, b) = (0, 1);
    cluster.assert_balanced(&[a, b], 1);
    let c = cluster.add("c", |config| config.join_wait_ms = 10_000);
    cluster.set_view(&[a, b, c]);
    // c is linked to both, but its membership has admitted neither yet.
    cluster.set_view(&[c]);
    cluster.link_up(a, c);
    cluster.link_up(b, c);
    // Between two refused handoffs, a and b have nothing under way, yet the partitions c is to
    // take are still to move: `Summary::to_move` says so (process tests wait for it to be 0).
    let mut idle_with_moves_seen = false;
    for _ in 0..100 {
        cluster.run(10);
        for node in [a, b] {
            let summary = cluster.nodes[node].engine.summary(cluster.now_ms);
            assert!(summary.to_move > 0, "{summary:?}");
            idle_with_moves_seen |= summary.handoffs_in_progress == 0
                && summary.snapshots_in_progress == 0
                && summary.under_replicated == 0;
        }
    }
    assert!(idle_with_moves_seen, "no moment between two handoff tries");
    assert_eq!(cluster.nodes[c].engine.stats().handoffs_taken, 0);
    for partition in 0..PARTITIONS {
        let record = cluster.nodes[a]
            .engine
            .record(partition)
            .expect("every partition has a record");
        assert_eq!(
            record.backups.len(),
            1,
            "partition {partition} lost its backup: {record:?}"
        );
    }
    cluster.set_view(&[a, b, c]);
    cluster.run(1_000);
    cluster.assert_balanced(&[a, b, c], 1);
    assert!(cluster.nodes[c].engine.stats().handoffs_taken > 0);
    for node in [a, b, c] {
        assert_eq!(
            cluster.nodes[node].engine.summary(cluster.now_ms).to_move,
            0
        );
    }
}

#[test]
fn three_nodes_balance_with_two_backups() {
    let mut cluster = Cluster::new();
    let a = cluster.add("a", |config| config.backups = 2);
    let b = cluster.add("b", |config| {
        config.backups = 2;
        config.join_wait_ms = 10_000;
    });
    let c = cluster.add("c", |config| {
        config.backups = 2;
        config.join_wait_ms = 10_000;
    });
    cluster.run(20);
    cluster.form(&[a, b, c]);
    cluster.run(1_000);
    cluster.assert_balanced(&[a, b, c], 2);
}

#[test]
fn a_node_that_is_not_primary_forwards_and_answers_relayed_requests_with_its_record() {
    let mut cluster = Cluster::formed_pair();
    let (a, b) = (0, 1);
    let partition = (0..PARTITIONS)
        .find(|&p| {
            cluster.nodes[a].engine.record(p).map(|r| r.primary) == Some(cluster.nodes[b].member)
        })
        .expect("b is primary of something");
    let execution = cluster.nodes[a]
        .engine
        .execute(partition, 0, Op::DbSize, cluster.now_ms);
    assert_eq!(execution, Execution::Forward(cluster.nodes[b].member));
    // A request relayed to a, which is not primary, gets a's record back.
    let b_member = cluster.nodes[b].member;
    cluster.nodes[a].engine.handle_message(
        b_member,
        PeerMessage::Request {
            id: 77,
            partition,
            db: 0,
            op: Op::DbSize,
        },
        cluster.now_ms,
    );
    match cluster.nodes[a].host.last_queued(b_member) {
        Some(PeerMessage::Response {
            id: 77,
            result: RelayResult::NotPrimary {
                record: Some(record),
            },
        }) => assert_eq!(record.primary, b_member),
        other => panic!("unexpected answer {other:?}"),
    }
    // And the primary answers a relayed request with the reply.
    cluster.deliver();
    let a_member = cluster.nodes[a].member;
    cluster.nodes[b].engine.handle_message(
        a_member,
        PeerMessage::Request {
            id: 78,
            partition,
            db: 0,
            op: Op::DbSize,
        },
        cluster.now_ms,
    );
    assert!(matches!(
        cluster.nodes[b].host.last_queued(a_member),
        Some(PeerMessage::Response {
            id: 78,
            result: RelayResult::Reply(Reply::Integer(_)),
        })
    ));
    // A response is not replication: unacknowledged (a requester acknowledges responses only
    // with its next Ack), it does not count as lag.
    let later_ms = cluster.now_ms + 5_000;
    let summary = cluster.nodes[b].engine.summary(later_ms);
    assert_eq!(summary.lag_ms.get(&a_member).copied().unwrap_or(0), 0);
}

/// Node `requester` relays a SET to the primary of a partition it is a backup of. Returns the
/// key, the primary, and the kinds of what the primary queued to the requester in answer.
fn relay_set_from_backup(
    cluster: &mut Cluster,
    requester: usize,
) -> (String, usize, Vec<&'static str>) {
    cluster.deliver();
    let requester_member = cluster.nodes[requester].member;
    let (key, partition, record) = (0..)
        .map(|index| {
            let key = format!("relayed:{index}");
            let partition = store::partition_of(key.as_bytes(), PARTITIONS);
            let record = cluster.nodes[requester].engine.record(partition);
            (
                key,
                partition,
                record.expect("every partition has a record"),
            )
        })
        .find(|(_, _, record)| record.is_backup(requester_member))
        .expect("the requester is a backup of some partition");
    let primary = cluster.index_of(record.primary).expect("a known primary");
    cluster.nodes[primary].engine.handle_message(
        requester_member,
        PeerMessage::Request {
            id: 90,
            partition,
            db: 0,
            op: set_op(&key, "relayed"),
        },
        cluster.now_ms,
    );
    let queued = cluster.nodes[primary].host.queued_kinds(requester_member);
    (key, primary, queued)
}

/// The answer to a relayed write follows the write's `Replicate` on the requester's link, so a
/// requester that is a backup has the write when it reads the answer: the primary does not wait
/// for its acknowledgement (one round trip instead of two), only for the other backups'.
#[test]
fn a_relayed_write_waits_for_every_backup_but_its_requester() {
    let mut pair = Cluster::formed_pair();
    let (_, _, queued) = relay_set_from_backup(&mut pair, 0);
    assert_eq!(queued, ["replicate", "response"]);

    let mut trio = Cluster::new();
    for name in ["a", "b", "c"] {
        trio.add(name, |config| config.backups = 2);
    }
    trio.run(20);
    trio.form(&[0, 1, 2]);
    trio.run(1_000);
    trio.assert_balanced(&[0, 1, 2], 2);
    let (key, primary, queued) = relay_set_from_backup(&mut trio, 0);
    assert_eq!(
        queued,
        ["replicate"],
        "answered before the other backup acknowledged"
    );
    trio.deliver();
    assert!(trio.log.contains(&(primary, 0, "response")));
    assert_eq!(
        trio.stored(0, &key).as_deref(),
        Some(&b"relayed"[..]),
        "the requester holds the write"
    );
}

#[test]
fn a_request_out_of_range_is_answered_unavailable() {
    let mut cluster = Cluster::new();
    let a = cluster.add("a", |_| {});
    let b = cluster.add("b", |_| {});
    cluster.form(&[a, b]);
    cluster.deliver();
    let b_member = cluster.nodes[b].member;
    cluster.nodes[a].engine.handle_message(
        b_member,
        PeerMessage::Request {
            id: 5,
            partition: PARTITIONS,
            db: 0,
            op: Op::DbSize,
        },
        cluster.now_ms,
    );
    assert_eq!(cluster.nodes[a].engine.stats().invalid_partitions, 1);
    assert_eq!(
        cluster.nodes[a]
            .engine
            .execute(PARTITIONS, 0, Op::DbSize, cluster.now_ms),
        Execution::Wait {
            reason: WaitReason::NoSuchPartition
        }
    );
}

#[test]
fn a_node_does_not_act_as_primary_until_it_exchanged_tables_with_a_new_member() {
    let mut cluster = Cluster::new();
    let a = cluster.add("a", |_| {});
    let b = cluster.add("b", |config| config.join_wait_ms = 10_000);
    cluster.run(20);
    // b enters a's view; the link is not up yet.
    cluster.set_view(&[a, b]);
    let execution = cluster.nodes[a]
        .engine
        .execute(0, 0, set_op("k", "v"), cluster.now_ms);
    assert_eq!(
        execution,
        Execution::Wait {
            reason: WaitReason::TableExchange
        }
    );
    assert!(!cluster.nodes[a].engine.accepting_writes(0, cluster.now_ms));
    cluster.link_up(a, b);
    assert!(
        !cluster.nodes[a]
            .engine
            .table_synced_with(cluster.nodes[b].member)
    );
    cluster.deliver();
    assert!(
        cluster.nodes[a]
            .engine
            .table_synced_with(cluster.nodes[b].member)
    );
    assert!(cluster.nodes[a].engine.accepting_writes(0, cluster.now_ms));
}

#[test]
fn a_stalled_node_fences_itself_until_tables_are_exchanged_again() {
    let mut cluster = Cluster::formed_pair();
    let a = 0;
    let partition = (0..PARTITIONS)
        .find(|&p| cluster.nodes[a].engine.accepting_writes(p, cluster.now_ms))
        .expect("a is primary of something");
    // a's membership loop does not run for a second (SIGSTOP): its operations wait at once.
    cluster.now_ms += 1_000;
    assert_eq!(
        cluster.nodes[a]
            .engine
            .execute(partition, 0, Op::DbSize, cluster.now_ms),
        Execution::Wait {
            reason: WaitReason::Fenced
        }
    );
    // The loop runs again: it fences itself and asks b for its table.
    cluster.nodes[a]
        .engine
        .handle_membership_alive(cluster.now_ms);
    assert!(
        !cluster.nodes[a]
            .engine
            .accepting_writes(partition, cluster.now_ms)
    );
    assert!(cluster.nodes[a].engine.stats().fences >= 1);
    cluster.deliver();
    assert!(
        cluster.nodes[a]
            .engine
            .accepting_writes(partition, cluster.now_ms)
    );
}

#[test]
fn a_fenced_node_alone_unfences_at_once() {
    let mut cluster = Cluster::new();
    let a = cluster.add("a", |_| {});
    cluster.run(20);
    cluster.nodes[a]
        .engine
        .fence_self(cluster::engine::FenceReason::DeclaredDead);
    assert!(cluster.nodes[a].engine.accepting_writes(0, cluster.now_ms));
}

#[test]
fn planned_leave_hands_everything_off_and_loses_nothing() {
    let mut cluster = Cluster::new();
    let a = cluster.add("a", |_| {});
    let b = cluster.add("b", |config| config.join_wait_ms = 10_000);
    let c = cluster.add("c", |config| config.join_wait_ms = 10_000);
    cluster.run(20);
    cluster.form(&[a, b, c]);
    cluster.run(500);
    let keys = keys(300);
    for key in &keys {
        cluster.set(b, key, key);
    }
    cluster.nodes[a].engine.leave(cluster.now_ms);
    // The others learn a is leaving through membership (its heartbeat flag).
    let view: Vec<cluster::table::ViewMember> = [a, b, c]
        .iter()
        .map(|&index| cluster::table::ViewMember {
            member: cluster.nodes[index].member,
            name: cluster.nodes[index].name.clone(),
            leaving: index == a,
        })
        .collect();
    for &index in &[b, c] {
        cluster.nodes[index]
            .engine
            .handle_view(view.clone(), cluster.now_ms);
    }
    cluster.run(1_000);
    assert!(cluster.nodes[a].engine.owns_nothing());
    cluster.assert_balanced(&[b, c], 1);
    for key in &keys {
        assert_eq!(cluster.get(b, key), Reply::Bulk(Bytes::from(key.clone())));
    }
}
