//! High availability with real `scd` processes (issue 4), write-through with one backup (the
//! defaults): a client writes and reads continuously while a node is killed with `kill -9`,
//! restarted (a new incarnation that takes its share back) and another is killed, and loses no
//! acknowledged write; a primary stopped with `kill -STOP` for longer than the detection time
//! and then continued serves nothing stale and loses no write it acknowledges. Each test prints
//! the longest stall its clients saw.

mod common;

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::cluster::{
    self, ContinuousClient, SETTLE_TIMEOUT, call, cluster_view, connect, own_entry, peer_addrs,
};
use common::{IO_TIMEOUT, Scd, ScdCluster, read_reply, request};

/// Keys of each continuous client.
const NUM_CLIENT_KEYS: usize = 300;
/// Operations a client must complete after each step, so every step happens under load and
/// the client is seen to go on after it.
const OPERATIONS_PER_STEP: u64 = 1000;
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(20);

/// How long until every node in `observers` no longer shows `gone` alive.
fn wait_until_out_of_every_view(observers: &[&Scd], gone: &str) -> Duration {
    let started = Instant::now();
    let out = common::wait_until(SETTLE_TIMEOUT, || {
        observers
            .iter()
            .all(|node| {
                cluster_view(node).is_ok_and(|view| !cluster::alive_names(&view).contains(gone))
            })
            .then_some(())
    });
    assert!(
        out.is_some(),
        "{gone} stayed in a view for {SETTLE_TIMEOUT:?}"
    );
    started.elapsed()
}

/// The node's own entry in its `/cluster` view: (incarnation, partitions it primaries).
fn incarnation_and_primaries(node: &Scd) -> (u64, u64) {
    let view = cluster_view(node).unwrap_or_else(|why| panic!("{why}"));
    let entry = own_entry(&view).expect("a view lists its own node");
    (
        entry["incarnation"].as_u64().expect("an incarnation"),
        entry["primaries"].as_u64().expect("a primary count"),
    )
}

#[test]
fn write_through_loses_no_acknowledged_write_through_two_kills_and_a_restart() {
    let _one_at_a_time = cluster::one_cluster_at_a_time();
    let ScdCluster { mut nodes } = cluster::start_settled(3, &[]);
    let client = ContinuousClient::start("on node-1", nodes[0].client_addr, "ha", NUM_CLIENT_KEYS);
    client.wait_for_more_operations(OPERATIONS_PER_STEP, PROGRESS_TIMEOUT);
    let (incarnation_before, primaries_before) = incarnation_and_primaries(&nodes[2]);
    let mut phases: Vec<(&str, Instant)> = Vec::new();

    // kill -9 node-3.
    let killed_at = Instant::now();
    phases.push(("kill -9 node-3", killed_at));
    nodes[2].kill9();
    let detection = wait_until_out_of_every_view(&[&nodes[0], &nodes[1]], "node-3");
    cluster::wait_until_settled(&[&nodes[0], &nodes[1]], SETTLE_TIMEOUT);
    let recovery = killed_at.elapsed();
    client.wait_for_more_operations(OPERATIONS_PER_STEP, PROGRESS_TIMEOUT);
    eprintln!(
        "kill -9 node-3: out of every view after {detection:?}, partitions promoted and \
         replicated again after {recovery:?}"
    );

    // node-3 comes back: a new incarnation that receives data and takes its partitions back.
    let restarted_at = Instant::now();
    phases.push(("restart of node-3", restarted_at));
    let restarted = cluster::restart(&nodes[2], &[], peer_addrs(&[&nodes[0], &nodes[1]]));
    nodes[2] = restarted;
    cluster::wait_until_settled(&nodes.iter().collect::<Vec<_>>(), SETTLE_TIMEOUT);
    let mut last_seen = (0, 0);
    let took_share_back = common::wait_until(SETTLE_TIMEOUT, || {
        last_seen = incarnation_and_primaries(&nodes[2]);
        (last_seen.1 == primaries_before).then_some(())
    });
    assert!(
        took_share_back.is_some(),
        "the restarted node-3 primaries {} partitions, {primaries_before} before the kill",
        last_seen.1
    );
    assert_ne!(
        last_seen.0, incarnation_before,
        "a restart is a new incarnation"
    );
    eprintln!(
        "node-3 restarted and primaried its {primaries_before} partitions again after {:?}",
        restarted_at.elapsed()
    );
    client.wait_for_more_operations(OPERATIONS_PER_STEP, PROGRESS_TIMEOUT);

    // kill -9 node-2: node-3 must now hold everything node-2 primaried or backed up.
    let killed_at = Instant::now();
    phases.push(("kill -9 node-2", killed_at));
    nodes[1].kill9();
    let detection = wait_until_out_of_every_view(&[&nodes[0], &nodes[2]], "node-2");
    cluster::wait_until_settled(&[&nodes[0], &nodes[2]], SETTLE_TIMEOUT);
    eprintln!(
        "kill -9 node-2: out of every view after {detection:?}, settled after {:?}",
        killed_at.elapsed()
    );
    client.wait_for_more_operations(OPERATIONS_PER_STEP, PROGRESS_TIMEOUT);

    let report = client.stop();
    let stopped_at = Instant::now();
    eprintln!("{}", report.summary());
    for (index, (phase, started)) in phases.iter().enumerate() {
        let ended = phases.get(index + 1).map_or(stopped_at, |(_, next)| *next);
        eprintln!(
            "LONGEST STALL after the {phase}: {:?}",
            report.longest_stall_between(*started, ended)
        );
    }
    let mut problems = report.problems();
    problems.extend(report.check_every_key_on(&nodes[0]));
    problems.extend(report.check_every_key_on(&nodes[2]));
    assert!(
        problems.is_empty(),
        "{} problems:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

/// Counters incremented through the first node before and during the pause, then once more
/// through the paused node while it is stopped.
const NUM_COUNTERS: usize = 60;
/// Keys written through the paused node while it is stopped.
const NUM_QUEUED_WRITES: usize = 100;
/// How long the primary stays stopped: well beyond the detection time (under 1 s).
const PAUSE: Duration = Duration::from_secs(3);

fn counter_key(index: usize) -> String {
    format!("pause-counter:{index}")
}

fn increment_every_counter(node: &Scd, expected: i64) {
    let mut connection = connect(node, 0);
    for index in 0..NUM_COUNTERS {
        let value: i64 = call(&mut connection, &["INCR", &counter_key(index)]);
        assert_eq!(
            value,
            expected,
            "INCR {} through {}",
            counter_key(index),
            node.name
        );
    }
}

#[test]
fn a_paused_primary_that_continues_serves_nothing_stale_and_loses_no_acknowledged_write() {
    let _one_at_a_time = cluster::one_cluster_at_a_time();
    let ScdCluster { nodes } = cluster::start_settled(3, &[]);
    let (first, paused) = (&nodes[0], &nodes[2]);
    increment_every_counter(first, 1);
    let client_on_first =
        ContinuousClient::start("on node-1", first.client_addr, "pause-a", NUM_CLIENT_KEYS);
    let client_on_paused =
        ContinuousClient::start("on node-3", paused.client_addr, "pause-b", NUM_CLIENT_KEYS);
    client_on_first.wait_for_more_operations(OPERATIONS_PER_STEP, PROGRESS_TIMEOUT);
    client_on_paused.wait_for_more_operations(OPERATIONS_PER_STEP, PROGRESS_TIMEOUT);

    let paused_at = Instant::now();
    paused.pause();
    let detection = wait_until_out_of_every_view(&[&nodes[0], &nodes[1]], "node-3");
    cluster::wait_until_settled(&[&nodes[0], &nodes[1]], SETTLE_TIMEOUT);
    eprintln!("kill -STOP node-3: out of every view after {detection:?}");
    // Writes acknowledged by the promoted primaries while node-3 sleeps.
    client_on_first.wait_for_more_operations(OPERATIONS_PER_STEP, PROGRESS_TIMEOUT);
    increment_every_counter(first, 2);

    // Requests queued on the stopped node (the kernel accepts the connection and keeps the
    // bytes): reads of keys just written elsewhere, increments, and new writes. It answers
    // them when it continues, and must answer as the cluster is then.
    let acknowledged: BTreeMap<String, u64> = client_on_first
        .records()
        .into_iter()
        .filter_map(|(key, record)| record.acked_opt.map(|(value, _)| (key, value)))
        .collect();
    let mut queued =
        TcpStream::connect(paused.client_addr).expect("the kernel accepts for a stopped node");
    queued
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("a read timeout");
    let mut requests = Vec::new();
    for key in acknowledged.keys() {
        requests.extend(request(&[b"GET", key.as_bytes()]));
    }
    for index in 0..NUM_COUNTERS {
        requests.extend(request(&[b"INCR", counter_key(index).as_bytes()]));
    }
    for index in 0..NUM_QUEUED_WRITES {
        let key = format!("pause-queued:{index}");
        requests.extend(request(&[b"SET", key.as_bytes(), b"written-while-stopped"]));
    }
    queued
        .write_all(&requests)
        .expect("queued requests are sent");

    // The pause length is the scenario itself, not a wait for a condition.
    std::thread::sleep(PAUSE.saturating_sub(paused_at.elapsed()));
    let continued_at = Instant::now();
    paused.resume();
    eprintln!(
        "kill -CONT node-3 after a pause of {:?}",
        paused_at.elapsed()
    );

    let mut problems = Vec::new();
    let mut reader = BufReader::new(&mut queued);
    for (key, value) in &acknowledged {
        let reply = read_reply(&mut reader).expect("a reply to a queued GET");
        let text = String::from_utf8_lossy(&reply).into_owned();
        let found: Option<u64> = text.lines().nth(1).and_then(|line| line.parse().ok());
        if found.is_none_or(|found| found < *value) {
            problems.push(format!(
                "stale read through the continued node: {key} is {text:?}, {value} was acknowledged before the GET was sent"
            ));
        }
    }
    for index in 0..NUM_COUNTERS {
        let reply = read_reply(&mut reader).expect("a reply to a queued INCR");
        if reply != b":3\r\n" {
            problems.push(format!(
                "INCR {} through the continued node answered {:?}, expected 3",
                counter_key(index),
                String::from_utf8_lossy(&reply)
            ));
        }
    }
    for index in 0..NUM_QUEUED_WRITES {
        let reply = read_reply(&mut reader).expect("a reply to a queued SET");
        if reply != b"+OK\r\n" {
            problems.push(format!(
                "SET pause-queued:{index} answered {:?}",
                String::from_utf8_lossy(&reply)
            ));
        }
    }
    eprintln!(
        "the continued node answered its {} queued requests within {:?}",
        acknowledged.len() + NUM_COUNTERS + NUM_QUEUED_WRITES,
        continued_at.elapsed()
    );

    cluster::wait_until_settled(&nodes.iter().collect::<Vec<_>>(), SETTLE_TIMEOUT);
    client_on_first.wait_for_more_operations(OPERATIONS_PER_STEP, PROGRESS_TIMEOUT);
    client_on_paused.wait_for_more_operations(OPERATIONS_PER_STEP, PROGRESS_TIMEOUT);
    let reports = [client_on_first.stop(), client_on_paused.stop()];
    let stopped_at = Instant::now();
    for report in &reports {
        eprintln!("{}", report.summary());
        problems.extend(report.problems());
    }
    eprintln!(
        "LONGEST STALL from the pause on: {:?} for the client of a surviving node, {:?} for the \
         client of the paused one",
        reports[0].longest_stall_between(paused_at, stopped_at),
        reports[1].longest_stall_between(paused_at, stopped_at)
    );
    for node in &nodes {
        for report in &reports {
            problems.extend(report.check_every_key_on(node));
        }
        let mut connection = connect(node, 0);
        for index in 0..NUM_COUNTERS {
            let value: Option<i64> = call(&mut connection, &["GET", &counter_key(index)]);
            if value != Some(3) {
                problems.push(format!(
                    "{} is {value:?} through {}, expected 3",
                    counter_key(index),
                    node.name
                ));
            }
        }
        for index in 0..NUM_QUEUED_WRITES {
            let key = format!("pause-queued:{index}");
            let value: Option<String> = call(&mut connection, &["GET", &key]);
            if value.as_deref() != Some("written-while-stopped") {
                problems.push(format!("{key} is {value:?} through {}", node.name));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}
