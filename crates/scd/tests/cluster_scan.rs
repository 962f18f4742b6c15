//! A cluster-wide SCAN through real `scd` processes survives rebalancing (issue 3): a client
//! SCANs slowly (a small `COUNT`) through one node while a 4th node joins and then another leaves
//! by SIGTERM, and every key present throughout is returned.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::cluster::{self, SETTLE_TIMEOUT, call, connect, peer_addrs};
use common::{EXIT_TIMEOUT, Scd, ScdCluster, describe_exit};

/// Keys written before the scan starts and never touched again.
const NUM_FIXED_KEYS: usize = 3000;
/// `COUNT` of every SCAN call: small, so the scan takes hundreds of calls.
const SCAN_COUNT: &str = "5";
/// The partition count of `scd run`'s default, which the cursor's high bits name.
const NUM_PARTITIONS: u64 = 1024;
/// Bits of a SCAN cursor below the partition index (PROTOCOL.md §12).
const SCAN_POSITION_BITS: u32 = 48;

/// A SCAN in progress, one call at a time.
struct SlowScan {
    connection: redis::Connection,
    cursor: u64,
    keys: BTreeSet<String>,
    calls: usize,
    done: bool,
}

impl SlowScan {
    fn start(node: &Scd) -> SlowScan {
        SlowScan {
            connection: connect(node, 0),
            cursor: 0,
            keys: BTreeSet::new(),
            calls: 0,
            done: false,
        }
    }

    /// The partition the cursor points into.
    fn partition(&self) -> u64 {
        self.cursor >> SCAN_POSITION_BITS
    }

    /// One SCAN call; false once the cursor came back to 0.
    fn step(&mut self) -> bool {
        /// A cursor that never returns to 0 is a bug, not a wait.
        const MAX_SCAN_CALLS: usize = 100_000;
        if self.done {
            return false;
        }
        assert!(self.calls < MAX_SCAN_CALLS, "SCAN did not end");
        let cursor = self.cursor.to_string();
        let (next, batch): (String, Vec<String>) = call(
            &mut self.connection,
            &["SCAN", &cursor, "COUNT", SCAN_COUNT],
        );
        self.calls += 1;
        self.keys.extend(batch);
        self.cursor = next.parse().expect("a numeric cursor");
        self.done = self.cursor == 0;
        !self.done
    }

    /// Calls SCAN while the cursor is below partition `partition`.
    fn step_until(&mut self, partition: u64) {
        while self.partition() < partition && self.step() {}
    }

    /// One SCAN call if the cursor is below partition `partition`; whether it made one.
    fn step_below(&mut self, partition: u64) -> bool {
        self.partition() < partition && !self.done && {
            self.step();
            true
        }
    }
}

fn write_fixed_keys(node: &Scd) -> BTreeSet<String> {
    let keys: BTreeSet<String> = (0..NUM_FIXED_KEYS)
        .map(|index| format!("fixed:{index}"))
        .collect();
    let mut connection = connect(node, 0);
    let mut pipeline = redis::pipe();
    for key in &keys {
        pipeline.cmd("SET").arg(key).arg("v");
    }
    let _: Vec<redis::Value> = pipeline.query(&mut connection).expect("fixed keys written");
    keys
}

/// SCANs through node-1 from the start of the scan to its end while node-4 joins and node-2
/// leaves, calling SCAN while each of them moves partitions.
fn a_scan_misses_no_key_while_a_node_joins_and_another_leaves(args: &[&str]) {
    let _one_at_a_time = cluster::one_cluster_at_a_time();
    let ScdCluster { mut nodes } = cluster::start_settled(3, args);
    let fixed_keys = write_fixed_keys(&nodes[0]);
    let mut scan = SlowScan::start(&nodes[0]);
    scan.step_until(NUM_PARTITIONS / 4);
    assert!(!scan.done, "the scan ended before anything moved");

    // node-4 joins; SCAN calls go on while it takes its share (up to half of the partitions, so
    // that some are left for the leave).
    let joined_at_partition = scan.partition();
    let joiner = Scd::builder()
        .name("node-4")
        .join(peer_addrs(&nodes.iter().collect::<Vec<_>>()))
        .args(args.iter().copied())
        .start();
    nodes.push(joiner);
    let joining_since = Instant::now();
    let mut calls_while_joining = 0;
    loop {
        let settled = cluster::settle_problems(&nodes.iter().collect::<Vec<_>>()).is_empty();
        if settled {
            break;
        }
        assert!(
            joining_since.elapsed() < SETTLE_TIMEOUT,
            "node-4 did not take its share in {SETTLE_TIMEOUT:?}"
        );
        calls_while_joining += usize::from(scan.step_below(NUM_PARTITIONS / 2));
    }
    eprintln!(
        "node-4 joined at partition {joined_at_partition} of the cursor, settled after \
         {:?}; {calls_while_joining} SCAN calls meanwhile",
        joining_since.elapsed()
    );
    scan.step_until(NUM_PARTITIONS / 2);
    assert!(!scan.done, "the scan ended before node-2 left");

    // node-2 leaves by SIGTERM; SCAN calls go on while it hands its partitions off.
    let left_at_partition = scan.partition();
    let mut leaver = nodes.remove(1);
    leaver.terminate();
    let leaving_since = Instant::now();
    let mut calls_while_leaving = 0;
    let status = loop {
        if let Some(status) = leaver.try_exit_status() {
            break status;
        }
        assert!(
            leaving_since.elapsed() < EXIT_TIMEOUT,
            "node-2 still runs {EXIT_TIMEOUT:?} after SIGTERM"
        );
        if scan.step_below(NUM_PARTITIONS * 3 / 4) {
            calls_while_leaving += 1;
        } else {
            leaver.wait_exit(Duration::from_millis(20));
        }
    };
    assert_eq!(
        status.code(),
        Some(0),
        "node-2 left with {}",
        describe_exit(status)
    );
    cluster::wait_until_settled(&nodes.iter().collect::<Vec<_>>(), SETTLE_TIMEOUT);
    eprintln!(
        "node-2 left at partition {left_at_partition} of the cursor, after {:?}; \
         {calls_while_leaving} SCAN calls meanwhile",
        leaving_since.elapsed()
    );
    while scan.step() {}

    // Otherwise the rebalancing happened between calls only and proved nothing.
    assert!(calls_while_joining > 0, "no SCAN call while node-4 joined");
    assert!(calls_while_leaving > 0, "no SCAN call while node-2 left");
    let missed: Vec<&String> = fixed_keys.difference(&scan.keys).collect();
    let unknown: Vec<&String> = scan.keys.difference(&fixed_keys).collect();
    eprintln!(
        "{} SCAN calls returned {} keys",
        scan.calls,
        scan.keys.len()
    );
    if !missed.is_empty() {
        leaver.print_log();
    }
    assert!(
        missed.is_empty() && unknown.is_empty(),
        "the scan missed {} keys ({:?}...) and returned {} never written ({:?}...)",
        missed.len(),
        missed.iter().take(10).collect::<Vec<_>>(),
        unknown.len(),
        unknown.iter().take(10).collect::<Vec<_>>()
    );
}

#[test]
fn without_backups_a_slow_scan_returns_every_key_while_a_node_joins_and_another_leaves() {
    a_scan_misses_no_key_while_a_node_joins_and_another_leaves(&["--backups", "0"]);
}

#[test]
fn with_a_backup_a_slow_scan_returns_every_key_while_a_node_joins_and_another_leaves() {
    a_scan_misses_no_key_while_a_node_joins_and_another_leaves(&[]);
}
