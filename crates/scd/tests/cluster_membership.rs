//! Membership of a cluster of real `scd` processes (issue 3): a node joins and another leaves by
//! SIGTERM while clients read and write continuously, and nobody sees an error or loses a key;
//! nodes with the wrong secret or another cluster name are refused, counted and never seen; a
//! node asked to listen for peers beyond loopback without a secret refuses to start.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::cluster::{self, ContinuousClient, SETTLE_TIMEOUT, call, connect, metric, peer_addrs};
use common::{ChildProcess, EXIT_TIMEOUT, NodePorts, Scd, ScdCluster, describe_exit, free_port};

/// Keys written before anything moves, checked on every node at the end.
const NUM_FIXED_KEYS: usize = 2000;
/// Keys of each continuous client.
const NUM_CLIENT_KEYS: usize = 300;
/// Operations a client must complete after each step, so every step happens under load.
const OPERATIONS_PER_STEP: u64 = 1000;
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(20);

fn write_fixed_keys(node: &Scd) {
    let mut connection = connect(node, 0);
    let mut pipeline = redis::pipe();
    for index in 0..NUM_FIXED_KEYS {
        pipeline
            .cmd("SET")
            .arg(format!("fixed:{index}"))
            .arg(format!("fixed-{index}"));
    }
    let _: Vec<redis::Value> = pipeline.query(&mut connection).expect("fixed keys written");
}

fn fixed_keys_missing_on(node: &Scd) -> Vec<String> {
    let mut connection = connect(node, 0);
    let mut pipeline = redis::pipe();
    for index in 0..NUM_FIXED_KEYS {
        pipeline.cmd("GET").arg(format!("fixed:{index}"));
    }
    let values: Vec<Option<String>> = pipeline.query(&mut connection).expect("fixed keys read");
    values
        .iter()
        .enumerate()
        .filter(|(index, value)| value.as_deref() != Some(format!("fixed-{index}").as_str()))
        .map(|(index, value)| format!("fixed:{index} is {value:?} on {}", node.name))
        .collect()
}

fn a_node_joins_and_another_leaves_under_load(args: &[&str]) {
    let _one_at_a_time = cluster::one_cluster_at_a_time();
    let ScdCluster { mut nodes } = cluster::start_settled(3, args);
    write_fixed_keys(&nodes[0]);
    let client_on_first =
        ContinuousClient::start("on node-1", nodes[0].client_addr, "first", NUM_CLIENT_KEYS);
    client_on_first.wait_for_more_operations(OPERATIONS_PER_STEP, PROGRESS_TIMEOUT);

    // A 4th node joins; a second client uses it from the moment it answers, while it is still
    // receiving its share.
    let joiner = Scd::builder()
        .name("node-4")
        .join(peer_addrs(&nodes.iter().collect::<Vec<_>>()))
        .args(args.iter().copied())
        .start();
    let client_on_joiner =
        ContinuousClient::start("on node-4", joiner.client_addr, "joiner", NUM_CLIENT_KEYS);
    nodes.push(joiner);
    let took = cluster::wait_until_settled(&nodes.iter().collect::<Vec<_>>(), SETTLE_TIMEOUT);
    eprintln!("node-4 joined and took its share in {took:?}");
    client_on_first.wait_for_more_operations(OPERATIONS_PER_STEP, PROGRESS_TIMEOUT);
    client_on_joiner.wait_for_more_operations(OPERATIONS_PER_STEP, PROGRESS_TIMEOUT);

    // node-2 leaves: SIGTERM hands its partitions off, then it exits 0.
    let mut leaver = nodes.remove(1);
    leaver.terminate();
    let status = leaver
        .wait_exit(EXIT_TIMEOUT)
        .unwrap_or_else(|| panic!("node-2 still runs {EXIT_TIMEOUT:?} after SIGTERM"));
    assert_eq!(
        status.code(),
        Some(0),
        "node-2 left with {}",
        describe_exit(status)
    );
    let took = cluster::wait_until_settled(&nodes.iter().collect::<Vec<_>>(), SETTLE_TIMEOUT);
    eprintln!("after node-2 left the others settled in {took:?}");
    client_on_first.wait_for_more_operations(OPERATIONS_PER_STEP, PROGRESS_TIMEOUT);
    client_on_joiner.wait_for_more_operations(OPERATIONS_PER_STEP, PROGRESS_TIMEOUT);

    let reports = [client_on_first.stop(), client_on_joiner.stop()];
    for report in &reports {
        eprintln!("{}", report.summary());
    }
    let mut problems: Vec<String> = reports
        .iter()
        .flat_map(|report| report.problems())
        .collect();
    for node in &nodes {
        for report in &reports {
            problems.extend(report.check_every_key_on(node));
        }
        problems.extend(fixed_keys_missing_on(node));
        let size: usize = call(&mut connect(node, 0), &["DBSIZE"]);
        let expected = NUM_FIXED_KEYS
            + reports
                .iter()
                .map(|report| report.keys.len())
                .sum::<usize>();
        if size != expected {
            problems.push(format!(
                "DBSIZE through {} is {size}, expected {expected}",
                node.name
            ));
        }
    }
    if !problems.is_empty() {
        leaver.print_log();
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

#[test]
fn without_backups_a_join_and_a_sigterm_leave_lose_no_key_and_show_no_client_an_error() {
    a_node_joins_and_another_leaves_under_load(&["--backups", "0"]);
}

#[test]
fn with_a_backup_a_join_and_a_sigterm_leave_lose_no_key_and_show_no_client_an_error() {
    a_node_joins_and_another_leaves_under_load(&[]);
}

/// A folder under the system's temporary folder, removed when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(what: &str) -> ScratchDir {
        let path = std::env::temp_dir().join(format!("scd-test-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("a scratch folder");
        ScratchDir(path)
    }

    fn file(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("a scratch file");
        path.to_string_lossy().into_owned()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every heartbeat rejection reason of `node`, summed.
fn rejected(node: &Scd, reason: &str) -> f64 {
    metric(
        node,
        &format!("scd_heartbeats_rejected_total{{reason=\"{reason}\"}}"),
    )
}

#[test]
fn nodes_with_a_wrong_secret_or_another_cluster_name_are_refused_and_never_seen() {
    /// Rejected heartbeats each cluster node must have counted from each intruder: with the
    /// default interval of 100 ms, about two seconds of trying.
    const MIN_REJECTED: f64 = 20.0;
    let _one_at_a_time = cluster::one_cluster_at_a_time();
    let secrets = ScratchDir::new("secrets");
    let cluster_secret = secrets.file("cluster", "the-cluster-secret-0123456789abcdef\n");
    let wrong_secret = secrets.file("wrong", "not-the-cluster-secret-0123456789\n");
    // The intruders' ports are chosen first, so the first cluster node heartbeats them too and
    // the refusal is tested in both directions.
    let wrong_secret_ports = NodePorts::choose();
    let other_cluster_ports = NodePorts::choose();
    let intruder_peers: Vec<SocketAddr> = [wrong_secret_ports, other_cluster_ports]
        .iter()
        .map(|ports| SocketAddr::from(([127, 0, 0, 1], ports.peer)))
        .collect();
    let cluster = ScdCluster::start_with(3, |index, builder| {
        let builder = builder.args(["--secret-file", cluster_secret.as_str()]);
        if index == 0 {
            builder.join(intruder_peers.clone())
        } else {
            builder
        }
    });
    let members: Vec<&Scd> = cluster.nodes.iter().collect();
    cluster::wait_until_settled(&members, SETTLE_TIMEOUT);
    let links_before: Vec<f64> = members
        .iter()
        .map(|node| metric(node, "scd_peer_connections_opened_total"))
        .collect();
    // The metric counts links: each member has one to each other member, so the check below
    // that no new one appears is not a check of a counter stuck at zero.
    for (index, node) in members.iter().enumerate() {
        assert!(
            links_before[index] >= 2.0,
            "{} counts {} peer links opened in a cluster of three",
            node.name,
            links_before[index]
        );
    }
    let bad_mac_before: Vec<f64> = members
        .iter()
        .map(|node| rejected(node, "bad_mac"))
        .collect();
    let other_cluster_before: Vec<f64> = members
        .iter()
        .map(|node| rejected(node, "other_cluster"))
        .collect();

    let join = peer_addrs(&members);
    let wrong_secret_node = Scd::builder()
        .name("wrong-secret")
        .ports(wrong_secret_ports)
        .join(join.clone())
        .args(["--secret-file", wrong_secret.as_str()])
        .start();
    let other_cluster_node = Scd::builder()
        .name("other-cluster")
        .ports(other_cluster_ports)
        .join(join)
        .args([
            "--secret-file",
            cluster_secret.as_str(),
            "--cluster",
            "another",
        ])
        .start();
    let intruders = [&wrong_secret_node, &other_cluster_node];
    let member_names: BTreeSet<String> = members.iter().map(|node| node.name.clone()).collect();

    // Until every member has refused plenty of heartbeats of both intruders, no view anywhere
    // may show a node of the other side.
    let mut seen = Vec::new();
    let refused_enough = common::wait_until(SETTLE_TIMEOUT, || {
        for node in &members {
            let view = cluster::cluster_view(node).ok()?;
            let listed: BTreeSet<String> = cluster::view_nodes(&view)
                .iter()
                .filter_map(|entry| entry["name"].as_str().map(str::to_string))
                .collect();
            if !listed.is_subset(&member_names) {
                seen.push(format!("{} lists {listed:?}", node.name));
            }
        }
        for node in intruders {
            let view = cluster::cluster_view(node).ok()?;
            let listed = cluster::view_nodes(&view).len();
            if listed != 1 {
                seen.push(format!(
                    "{} lists {}",
                    node.name,
                    cluster::describe_view(&view)
                ));
            }
        }
        members
            .iter()
            .enumerate()
            .all(|(index, node)| {
                rejected(node, "bad_mac") - bad_mac_before[index] >= MIN_REJECTED
                    && rejected(node, "other_cluster") - other_cluster_before[index] >= MIN_REJECTED
            })
            .then_some(())
    });
    assert!(
        seen.is_empty(),
        "views showed the other side:\n  {}",
        seen.join("\n  ")
    );
    assert!(
        refused_enough.is_some(),
        "rejected heartbeats (bad_mac, other_cluster) per member: {:?}",
        members
            .iter()
            .map(|node| (rejected(node, "bad_mac"), rejected(node, "other_cluster")))
            .collect::<Vec<_>>()
    );
    // The first member heartbeats the intruders at the addresses it was given, and they refuse
    // it in turn (unless an intruder had to start on other ports than the ones chosen).
    for (node, ports, reason) in [
        (&wrong_secret_node, wrong_secret_ports, "bad_mac"),
        (&other_cluster_node, other_cluster_ports, "other_cluster"),
    ] {
        if node.peer_addr.port() == ports.peer {
            assert!(
                rejected(node, reason) > 0.0,
                "{} never refused the cluster's heartbeats",
                node.name
            );
        }
    }
    // No peer link was made with an intruder: the members opened none since, the intruders
    // none at all.
    for (index, node) in members.iter().enumerate() {
        assert_eq!(
            metric(node, "scd_peer_connections_opened_total"),
            links_before[index],
            "{} opened a peer link while only intruders were new",
            node.name
        );
    }
    for node in intruders {
        assert_eq!(
            metric(node, "scd_peer_connections_opened_total"),
            0.0,
            "{} linked",
            node.name
        );
        assert_eq!(
            metric(node, "scd_heartbeats_received_total"),
            0.0,
            "{} heard someone",
            node.name
        );
    }
    cluster::wait_until_settled(&members, SETTLE_TIMEOUT);
}

#[test]
fn a_node_refuses_to_listen_for_peers_beyond_loopback_without_a_secret_and_says_how_to_fix_it() {
    let mut command = Command::new(common::scd_binary());
    command.args([
        "run",
        "--name",
        "exposed",
        "--client",
        &format!("127.0.0.1:{}", free_port(false)),
        "--peer",
        &format!("0.0.0.0:{}", free_port(true)),
        "--admin",
        "off",
    ]);
    let mut process = ChildProcess::spawn("scd run --peer 0.0.0.0:...", command).expect("scd runs");
    let status = process
        .wait_exit(EXIT_TIMEOUT)
        .expect("scd refuses to start instead of running");
    let log = process.log();
    assert_ne!(
        status.code(),
        Some(0),
        "scd exited 0 with an unauthenticated public peer port: {log}"
    );
    for needle in [
        "without a cluster secret",
        "Fix:",
        "--secret-file",
        "--insecure-peers",
    ] {
        assert!(
            log.contains(needle),
            "the refusal does not say {needle:?}: {log}"
        );
    }
}

#[test]
fn a_node_whose_join_addresses_never_answer_says_so() {
    // A typo in --join: nothing listens there, so the node runs alone; the log says it.
    let nowhere = format!("127.0.0.1:{}", common::free_port(true));
    let node = Scd::builder().args(["--join", nowhere.as_str()]).start();
    assert!(
        node.wait_for_log("no --join address has answered", Duration::from_secs(20)),
        "no warning about the unanswered --join:\n{}",
        node.log()
    );
    let log = node.log();
    let line = log
        .lines()
        .find(|line| line.contains("no --join address has answered"))
        .expect("the line");
    assert!(
        line.contains(&nowhere),
        "the line names the address: {line}"
    );
}
