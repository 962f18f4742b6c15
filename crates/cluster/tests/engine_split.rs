//! Network splits by hand: both sides keep serving, and after the heal the higher epoch wins,
//! deposed primaries merge, and every replica holds the larger version of every key.

mod engine_support;

use bytes::Bytes;
use engine_support::{Cluster, PARTITIONS, expiring_set_op, key_in, keys};
use store::Reply;

/// Splits the pair: each side loses the other and takes over what it lost.
fn split(cluster: &mut Cluster) {
    cluster.link_down(0, 1);
    cluster.set_view(&[0]);
    cluster.set_view(&[1]);
    cluster.run(200);
}

/// Heals the split and waits until the pair is balanced again.
fn heal(cluster: &mut Cluster) {
    cluster.set_view(&[0, 1]);
    cluster.link_up(0, 1);
    cluster.run(1_000);
    cluster.assert_balanced(&[0, 1], 1);
}

#[test]
fn after_a_split_heals_both_sides_converge_to_the_larger_version_of_every_key() {
    let mut cluster = Cluster::formed_pair();
    let keys = keys(120);
    for key in &keys {
        cluster.set(0, key, "before");
    }
    split(&mut cluster);
    for partition in 0..PARTITIONS {
        assert!(
            cluster.nodes[0]
                .engine
                .accepting_writes(partition, cluster.now_ms)
        );
        assert!(
            cluster.nodes[1]
                .engine
                .accepting_writes(partition, cluster.now_ms)
        );
    }
    // Writes on both sides; for each key the later one must win.
    let mut expected = Vec::new();
    for (index, key) in keys.iter().enumerate() {
        let (first, second) = if index % 2 == 0 { (0, 1) } else { (1, 0) };
        cluster.set(first, key, &format!("side-{first}"));
        cluster.now_ms += 1;
        cluster.set(second, key, &format!("side-{second}"));
        cluster.now_ms += 1;
        expected.push(format!("side-{second}"));
    }
    heal(&mut cluster);
    let merged =
        cluster.nodes[0].engine.stats().merged_keys + cluster.nodes[1].engine.stats().merged_keys;
    assert!(merged > 0, "a heal with writes on both sides merges keys");
    let depositions =
        cluster.nodes[0].engine.stats().depositions + cluster.nodes[1].engine.stats().depositions;
    assert!(depositions > 0);
    for (key, value) in keys.iter().zip(&expected) {
        let expected = Reply::Bulk(Bytes::from(value.clone()));
        assert_eq!(cluster.get(0, key), expected, "{key}");
        // Both replicas hold the winner.
        assert_eq!(
            cluster.stored(0, key).as_deref(),
            Some(value.as_bytes()),
            "{key} on a"
        );
        assert_eq!(
            cluster.stored(1, key).as_deref(),
            Some(value.as_bytes()),
            "{key} on b"
        );
    }
}

#[test]
fn a_deletion_on_one_side_of_a_split_is_not_undone_by_the_heal() {
    let mut cluster = Cluster::formed_pair();
    let keys = keys(40);
    for key in &keys {
        cluster.set(0, key, "v");
    }
    split(&mut cluster);
    for key in &keys {
        let partition = store::partition_of(key.as_bytes(), PARTITIONS);
        cluster.op(
            1,
            partition,
            store::Op::Delete {
                key: Bytes::from(key.clone()),
                cas_opt: None,
            },
        );
    }
    heal(&mut cluster);
    for key in &keys {
        assert_eq!(cluster.get(0, key), Reply::Nil, "{key} came back");
        assert_eq!(cluster.stored(0, key), None);
        assert_eq!(cluster.stored(1, key), None);
    }
}

#[test]
fn an_expiry_on_one_side_of_a_split_is_not_undone_by_the_heal() {
    let mut cluster = Cluster::formed_pair();
    // One key per partition: the sweep below works on whole partitions.
    let keys: Vec<String> = (0..PARTITIONS)
        .map(|partition| key_in(partition, "session"))
        .collect();
    for key in &keys {
        cluster.set(0, key, "old");
    }
    split(&mut cluster);
    // Side 1 writes every key again with a short life; the writes run out there. The keys of
    // even partitions are swept into tombstones; nothing touches the others before the heal.
    for (partition, key) in (0..PARTITIONS).zip(&keys) {
        cluster.op(
            1,
            partition,
            expiring_set_op(key, "short", store::SetExpiry::AtMs(cluster.now_ms + 20)),
        );
    }
    cluster.run(50);
    for partition in 0..PARTITIONS {
        let mut data = cluster.nodes[1].store.partition(partition);
        if partition % 2 == 0 {
            assert_eq!(data.sweep(cluster.now_ms, 1_000), 1);
        }
        let expected_tombstones = u64::from(partition % 2 == 0);
        assert_eq!(
            data.num_tombstones(),
            expected_tombstones,
            "partition {partition}"
        );
    }
    heal(&mut cluster);
    for key in &keys {
        assert_eq!(cluster.get(0, key), Reply::Nil, "{key} came back");
        assert_eq!(cluster.stored(0, key), None, "{key} on a");
        assert_eq!(cluster.stored(1, key), None, "{key} on b");
    }
}

#[test]
fn a_node_that_learns_a_higher_epoch_stops_accepting_writes_at_once() {
    let cluster = Cluster::formed_pair();
    let partition = (0..PARTITIONS)
        .find(|&p| cluster.nodes[0].engine.accepting_writes(p, cluster.now_ms))
        .expect("a is primary of something");
    let mut record = cluster.nodes[0].engine.record(partition).expect("record");
    record.epoch.term += 10;
    record.epoch.node = cluster.nodes[1].member.id;
    record.primary = cluster.nodes[1].member;
    record.backups = vec![];
    let from = cluster.nodes[1].member;
    cluster.nodes[0].engine.handle_message(
        from,
        cluster::wire::PeerMessage::Record { partition, record },
        cluster.now_ms,
    );
    assert!(
        !cluster.nodes[0]
            .engine
            .accepting_writes(partition, cluster.now_ms)
    );
    assert_eq!(cluster.nodes[0].engine.stats().depositions, 1);
    assert_eq!(
        cluster.nodes[0]
            .engine
            .execute(partition, 0, store::Op::DbSize, cluster.now_ms),
        cluster::engine::Execution::Forward(from)
    );
}
