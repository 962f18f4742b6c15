//! A network split of a cluster of real `scd` processes (issue 4, DESIGN.md invariant 5), with
//! Linux network namespaces: three nodes, each in its own namespace with a veth pair to a bridge
//! in a fourth ("switch") namespace, on 10.77.0.0/24 with a cluster secret (peers on a real
//! network need one). Cutting the third node's port splits the cluster two against one; both
//! sides keep serving and are written, each side later than the other for half of the keys;
//! after the link comes back every node serves the later write of every key, and `/metrics`
//! counts the merged keys.
//!
//! Needs root (`ip netns`); otherwise the test says it is skipped. Nothing is created in the
//! test's own network namespace, and every namespace is deleted when the test ends, failed or not.

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use common::cluster::{self, SETTLE_TIMEOUT, connect_addr};
use common::{ChildProcess, READY_TIMEOUT};

/// Inside each node's namespace every node uses the same loopback ports: namespaces do not share
/// them.
const CLIENT_PORT: u16 = 6379;
const ADMIN_PORT: u16 = 34580;
const PEER_PORT: u16 = 34567;
const NODE_NAMES: [&str; 3] = ["split-a", "split-b", "split-c"];
/// Keys written by the two-node side first and the lone node later, then the other way round,
/// then keys written before the split only.
const NUM_KEYS_PER_SET: usize = 100;

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|error| format!("ip {}: {error}", args.join(" ")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The namespaces and links of the test, deleted on drop (deleting a namespace removes its
/// interfaces, and a veth pair goes with either end).
struct Topology {
    switch: String,
    /// One namespace per node, in `NODE_NAMES` order.
    nodes: Vec<String>,
    created: Vec<String>,
}

impl Topology {
    fn node_addr(index: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, 1 + index as u8)
    }

    /// The bridge port (in the switch namespace) of node `index`.
    fn switch_port(index: usize) -> String {
        format!("port{index}")
    }

    fn create() -> Result<Topology, String> {
        let tag = std::process::id();
        let mut topology = Topology {
            switch: format!("scdsplit{tag}sw"),
            nodes: (0..NODE_NAMES.len())
                .map(|index| format!("scdsplit{tag}n{index}"))
                .collect(),
            created: Vec::new(),
        };
        for namespace in std::iter::once(&topology.switch).chain(&topology.nodes) {
            let _ = ip(&["netns", "del", namespace]);
            ip(&["netns", "add", namespace])?;
            topology.created.push(namespace.clone());
            ip(&["-n", namespace, "link", "set", "lo", "up"])?;
        }
        let switch = topology.switch.clone();
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &switch, "link", "set", "br0", "up"])?;
        for (index, namespace) in topology.nodes.iter().enumerate() {
            // Both ends are created directly in their namespaces, never in the test's own.
            let port = Topology::switch_port(index);
            ip(&[
                "link", "add", "eth0", "netns", namespace, "type", "veth", "peer", "name", &port,
                "netns", &switch,
            ])?;
            ip(&["-n", &switch, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &switch, "link", "set", &port, "up"])?;
            let addr = format!("{}/24", Topology::node_addr(index));
            ip(&["-n", namespace, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", namespace, "link", "set", "eth0", "up"])?;
        }
        Ok(topology)
    }

    /// Cuts (`up = false`) or restores node `index`'s link to the others.
    fn set_link(&self, index: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&[
            "-n",
            &self.switch,
            "link",
            "set",
            &Topology::switch_port(index),
            state,
        ])
        .unwrap_or_else(|error| panic!("{error}"));
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for namespace in &self.created {
            if let Err(error) = ip(&["netns", "del", namespace]) {
                eprintln!("cleanup: {error}");
            }
        }
    }
}

/// An open handle on a named network namespace.
struct Namespace(std::fs::File);

impl Namespace {
    fn open(name: &str) -> Namespace {
        Namespace(
            std::fs::File::open(format!("/var/run/netns/{name}"))
                .unwrap_or_else(|error| panic!("opening namespace {name}: {error}")),
        )
    }

    fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Runs `work` on a thread that has entered this namespace: every socket it opens is there.
    fn run<T: Send>(&self, work: impl FnOnce() -> T + Send) -> T {
        let fd = self.fd();
        std::thread::scope(|scope| {
            let thread = scope.spawn(move || {
                // SAFETY: setns(2) on a namespace file descriptor this process holds open; it
                // changes only the calling thread, which ends with the scope.
                let result = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
                assert_eq!(result, 0, "setns: {}", std::io::Error::last_os_error());
                work()
            });
            match thread.join() {
                Ok(value) => value,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Starts node `index` inside its namespace.
fn start_node(index: usize, namespace: &Namespace, secret_file: &str) -> ChildProcess {
    let peer = |index: usize| format!("{}:{PEER_PORT}", Topology::node_addr(index));
    let join: Vec<String> = (0..NODE_NAMES.len())
        .filter(|&other| other != index)
        .map(peer)
        .collect();
    let mut command = Command::new(common::scd_binary());
    command
        .args(["run", "--name", NODE_NAMES[index]])
        .args(["--client", &loopback(CLIENT_PORT).to_string()])
        .args(["--admin", &loopback(ADMIN_PORT).to_string()])
        .args(["--peer", &peer(index)])
        .args(["--join", &join.join(",")])
        .args(["--secret-file", secret_file])
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG");
    let fd = namespace.fd();
    // SAFETY: setns(2) is async-signal-safe; the descriptor is open in the parent, hence in the
    // child until exec.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut process = ChildProcess::spawn(
        format!("scd {} in its namespace", NODE_NAMES[index]),
        command,
    )
    .expect("scd runs");
    let ready = common::wait_until(READY_TIMEOUT, || {
        if process.try_exit_status().is_some() {
            return Some(false);
        }
        namespace
            .run(|| common::http_get(loopback(ADMIN_PORT), "/health").is_ok())
            .then_some(true)
    });
    if ready != Some(true) {
        process.print_log();
        panic!("{} did not start", NODE_NAMES[index]);
    }
    process
}

fn views(namespaces: &[Namespace]) -> Vec<(String, Result<serde_json::Value, String>)> {
    namespaces
        .iter()
        .zip(NODE_NAMES)
        .map(|(namespace, name)| {
            let view = namespace.run(|| cluster::cluster_view_at(name, loopback(ADMIN_PORT)));
            (name.to_string(), view)
        })
        .collect()
}

fn wait_until_settled(namespaces: &[Namespace]) {
    let mut problems = Vec::new();
    let settled = common::wait_until(SETTLE_TIMEOUT, || {
        problems = cluster::settle_problems_of_views(&views(namespaces));
        problems.is_empty().then_some(())
    });
    assert!(
        settled.is_some(),
        "the cluster did not settle:\n  {}",
        problems.join("\n  ")
    );
}

/// Waits until node `index` sees exactly `alive` alive.
fn wait_until_sees(namespaces: &[Namespace], index: usize, alive: &[&str]) {
    let expected: std::collections::BTreeSet<String> =
        alive.iter().map(|name| name.to_string()).collect();
    let mut seen = Default::default();
    let reached = common::wait_until(SETTLE_TIMEOUT, || {
        let view = namespaces[index]
            .run(|| cluster::cluster_view_at(NODE_NAMES[index], loopback(ADMIN_PORT)))
            .ok()?;
        seen = cluster::alive_names(&view);
        (seen == expected).then_some(())
    });
    assert!(
        reached.is_some(),
        "{} sees {seen:?} alive, not {expected:?}",
        NODE_NAMES[index]
    );
}

/// Writes `values` through the node in `namespace` (pipelined `SET`s, all acknowledged).
fn write(namespace: &Namespace, values: &BTreeMap<String, String>) {
    namespace.run(|| {
        let mut connection = connect_addr(loopback(CLIENT_PORT), 0).expect("a connection");
        let mut pipeline = redis::pipe();
        for (key, value) in values {
            pipeline.cmd("SET").arg(key).arg(value);
        }
        let replies: Vec<redis::Value> = pipeline
            .query(&mut connection)
            .expect("writes acknowledged");
        assert!(
            replies.iter().all(|reply| *reply == redis::Value::Okay),
            "{replies:?}"
        );
    });
}

/// The values of `keys` through the node in `namespace`.
fn read(namespace: &Namespace, keys: &[String]) -> BTreeMap<String, Option<String>> {
    namespace.run(|| {
        let mut connection = connect_addr(loopback(CLIENT_PORT), 0).expect("a connection");
        let mut pipeline = redis::pipe();
        for key in keys {
            pipeline.cmd("GET").arg(key);
        }
        let values: Vec<Option<String>> = pipeline.query(&mut connection).expect("reads answered");
        keys.iter().cloned().zip(values).collect()
    })
}

/// Waits until the wall clock has moved on by `gap`, so that writes made after this on one
/// node carry later versions (hybrid logical clocks in milliseconds) than writes made before
/// it on another.
fn let_the_clock_move_on(gap: Duration) {
    let until = SystemTime::now() + gap;
    common::wait_until(gap * 10, || (SystemTime::now() >= until).then_some(()));
}

fn values(keys: &[String], value: &str) -> BTreeMap<String, String> {
    keys.iter()
        .map(|key| (key.clone(), value.to_string()))
        .collect()
}

fn merged_keys(namespaces: &[Namespace]) -> f64 {
    namespaces
        .iter()
        .map(|namespace| {
            namespace.run(|| {
                let metrics = common::http_get(loopback(ADMIN_PORT), "/metrics")
                    .expect("metrics")
                    .body;
                cluster::metric_in(&metrics, "scd_split_merged_keys_total")
            })
        })
        .sum()
}

#[test]
fn after_a_split_heals_both_sides_converge_to_the_later_write_of_every_key() {
    // SAFETY: geteuid(2) has no preconditions.
    let is_root = unsafe { libc::geteuid() } == 0;
    if !is_root {
        eprintln!("SKIPPED: the network split test needs root for `ip netns` (optional test)");
        return;
    }
    if !common::tool_available("ip", "iproute2") {
        return;
    }
    let _one_at_a_time = cluster::one_cluster_at_a_time();
    let topology = match Topology::create() {
        Ok(topology) => topology,
        Err(error) => {
            eprintln!("SKIPPED: network namespaces are not available here: {error}");
            return;
        }
    };
    let secret_file = std::env::temp_dir().join(format!("scd-split-secret-{}", std::process::id()));
    std::fs::write(&secret_file, "split-test-secret-0123456789abcdef\n").expect("a secret file");
    let secret_path = secret_file.to_string_lossy().into_owned();
    let namespaces: Vec<Namespace> = topology
        .nodes
        .iter()
        .map(|name| Namespace::open(name))
        .collect();
    let nodes: Vec<ChildProcess> = (0..NODE_NAMES.len())
        .map(|index| start_node(index, &namespaces[index], &secret_path))
        .collect();
    let _ = std::fs::remove_file(&secret_file);
    wait_until_settled(&namespaces);

    let key_set = |name: &str| -> Vec<String> {
        (0..NUM_KEYS_PER_SET)
            .map(|index| format!("{name}:{index}"))
            .collect()
    };
    let lone_later = key_set("lone-later");
    let pair_later = key_set("pair-later");
    let untouched = key_set("untouched");
    let all_keys: Vec<String> = [&lone_later, &pair_later, &untouched]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let (pair, lone) = (&namespaces[0], &namespaces[2]);
    write(pair, &values(&all_keys, "before the split"));

    // Split: node c alone, a and b together.
    let split_at = Instant::now();
    topology.set_link(2, false);
    wait_until_sees(&namespaces, 0, &["split-a", "split-b"]);
    wait_until_sees(&namespaces, 1, &["split-a", "split-b"]);
    wait_until_sees(&namespaces, 2, &["split-c"]);
    eprintln!("split seen by every node after {:?}", split_at.elapsed());

    // Both sides serve and accept writes; each writes one set before the other does.
    write(pair, &values(&lone_later, "pair, earlier"));
    write(lone, &values(&pair_later, "lone, earlier"));
    let_the_clock_move_on(Duration::from_millis(20));
    write(lone, &values(&lone_later, "lone, later"));
    write(pair, &values(&pair_later, "pair, later"));
    for (namespace, set, value) in [
        (pair, &lone_later, "pair, earlier"),
        (lone, &lone_later, "lone, later"),
        (pair, &pair_later, "pair, later"),
        (lone, &pair_later, "lone, earlier"),
    ] {
        let found = read(namespace, set);
        assert!(
            found.values().all(|found| found.as_deref() == Some(value)),
            "during the split a side reads its own writes: expected {value:?}, found {found:?}"
        );
    }
    let merged_before = merged_keys(&namespaces);

    // Heal.
    let healed_at = Instant::now();
    topology.set_link(2, true);
    wait_until_settled(&namespaces);
    eprintln!("the healed cluster settled after {:?}", healed_at.elapsed());
    let mut expected: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (set, value) in [
        (&lone_later, "lone, later"),
        (&pair_later, "pair, later"),
        (&untouched, "before the split"),
    ] {
        expected.extend(set.iter().map(|key| (key.clone(), Some(value.to_string()))));
    }
    for (index, namespace) in namespaces.iter().enumerate() {
        let mut wrong = Vec::new();
        let converged = common::wait_until(SETTLE_TIMEOUT, || {
            let found = read(namespace, &all_keys);
            wrong = found
                .iter()
                .filter(|(key, value)| expected.get(*key) != Some(value))
                .map(|(key, value)| format!("{key} = {value:?}"))
                .collect();
            wrong.is_empty().then_some(())
        });
        assert!(
            converged.is_some(),
            "{} serves {} keys that are not their later write, e.g. {:?}",
            NODE_NAMES[index],
            wrong.len(),
            &wrong[..wrong.len().min(5)]
        );
    }
    // Metrics are published on an interval: wait for the count rather than read it once.
    let mut merged = 0.0;
    let counted = common::wait_until(SETTLE_TIMEOUT, || {
        merged = merged_keys(&namespaces) - merged_before;
        (merged > 0.0).then_some(())
    });
    eprintln!("scd_split_merged_keys_total rose by {merged} after the heal");
    assert!(
        counted.is_some(),
        "no merged key was counted after the split healed"
    );
    drop(nodes);
}
