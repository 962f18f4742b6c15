//! `scd demo --base-port PORT` (issue 3): its three nodes form one cluster (`scd status` through
//! the first node's admin port shows three alive), a key written through node 1 is read through
//! node 3, and SIGINT (Ctrl-C) makes every node leave and the demo exit 0.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::cluster::{self, SETTLE_TIMEOUT, call, connect_addr};
use common::{ChildProcess, EXIT_TIMEOUT, READY_TIMEOUT, describe_exit, free_port};

/// Nodes the demo starts by default.
const DEMO_NODES: u16 = 3;
/// Offsets of the demo's ports from `--base-port` (see `crates/scd/src/demo.rs`): client,
/// memcached, peer (TCP and UDP), admin; node `i` adds `i`.
const CLIENT_OFFSET: u16 = 0;
const MEMCACHED_OFFSET: u16 = 10;
const PEER_OFFSET: u16 = 100;
const ADMIN_OFFSET: u16 = 200;

/// A base port whose whole block of demo ports is free now.
fn free_base_port() -> u16 {
    let free = |port: u16, with_udp: bool| {
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
            && (!with_udp || UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok())
    };
    for _attempt in 0..200 {
        let base = free_port(false);
        if base > 31_000 {
            continue;
        }
        let all_free = (0..DEMO_NODES).all(|index| {
            (index == 0 || free(base + CLIENT_OFFSET + index, false))
                && free(base + MEMCACHED_OFFSET + index, false)
                && free(base + PEER_OFFSET + index, true)
                && free(base + ADMIN_OFFSET + index, false)
        });
        if all_free {
            return base;
        }
    }
    panic!("no free block of demo ports")
}

/// The demo's nodes, by process id: killed (`kill -9`) if still running when the test ends, so
/// a failing test leaves no orphans behind (they are the demo's children, not the test's).
struct DemoNodes(Vec<i32>);

impl Drop for DemoNodes {
    fn drop(&mut self) {
        for &pid in &self.0 {
            // Only a process that still is one of this demo's nodes (the pid may be reused).
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("demo-") {
                // SAFETY: kill(2) on a pid that is one of this test's demo nodes.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

fn scd_status(admin_port: u16) -> String {
    let output = Command::new(common::scd_binary())
        .args(["status", "--admin", &format!("127.0.0.1:{admin_port}")])
        .output()
        .expect("scd status runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_demo_forms_one_cluster_of_three_and_stops_all_of_them_on_ctrl_c() {
    let base = free_base_port();
    let mut command = Command::new(common::scd_binary());
    command.args(["demo", "--base-port", &base.to_string()]);
    let mut demo = ChildProcess::spawn(format!("scd demo --base-port {base}"), command)
        .expect("scd demo runs");
    assert!(
        demo.wait_for_log("Ctrl-C stops all nodes", READY_TIMEOUT),
        "the demo did not print its welcome: {}",
        demo.log()
    );
    // "  demo-1  pid 1234  redis 127.0.0.1:7001 ..." for each node.
    let pids: Vec<i32> = demo
        .log()
        .lines()
        .filter(|line| line.trim_start().starts_with("demo-"))
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|word| *word == "pid")?;
            words.next()?.parse().ok()
        })
        .collect();
    let _nodes = DemoNodes(pids.clone());
    assert_eq!(pids.len(), usize::from(DEMO_NODES), "{}", demo.log());

    let admin_port = base + ADMIN_OFFSET;
    let mut status = String::new();
    let formed = common::wait_until(READY_TIMEOUT, || {
        status = scd_status(admin_port);
        (status.contains("3 of 3 nodes alive")
            && status.contains("partitions without a live primary: 0")
            && status.contains("under-replicated partitions: 0"))
        .then_some(())
    });
    assert!(formed.is_some(), "scd status says:\n{status}");
    // And every node holds its share, as /cluster shows it on each of them.
    let names: Vec<String> = (1..=DEMO_NODES)
        .map(|index| format!("demo-{index}"))
        .collect();
    let admins: Vec<(&str, SocketAddr)> = (0..DEMO_NODES)
        .map(|index| {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, admin_port + index));
            (names[usize::from(index)].as_str(), addr)
        })
        .collect();
    let mut problems = Vec::new();
    let settled = common::wait_until(SETTLE_TIMEOUT, || {
        problems = cluster::settle_problems_at(&admins);
        problems.is_empty().then_some(())
    });
    assert!(
        settled.is_some(),
        "the demo's cluster did not settle:\n  {}",
        problems.join("\n  ")
    );
    eprintln!("{}", scd_status(admin_port));

    let client = |index: u16| {
        connect_addr(
            (Ipv4Addr::LOCALHOST, base + CLIENT_OFFSET + index).into(),
            0,
        )
        .unwrap_or_else(|error| panic!("connecting to demo node {}: {error}", index + 1))
    };
    let _: () = call(&mut client(0), &["SET", "greeting", "hello from node 1"]);
    let read: Option<String> = call(&mut client(2), &["GET", "greeting"]);
    assert_eq!(read.as_deref(), Some("hello from node 1"));

    demo.interrupt();
    let exit = demo
        .wait_exit(EXIT_TIMEOUT)
        .unwrap_or_else(|| panic!("the demo still runs {EXIT_TIMEOUT:?} after SIGINT"));
    assert_eq!(
        exit.code(),
        Some(0),
        "the demo ended with {}",
        describe_exit(exit)
    );
    let log = demo.log();
    for index in 1..=DEMO_NODES {
        assert!(
            log.contains(&format!("scd demo: demo-{index} left")),
            "demo-{index} did not leave cleanly: {log}"
        );
    }
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "demo node {pid} outlived the demo"
        );
    }
    for index in 0..DEMO_NODES {
        let port = base + CLIENT_OFFSET + index;
        assert!(
            TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(1))
                .is_err(),
            "port {port} still accepts connections after the demo stopped"
        );
    }
}

#[test]
fn a_demo_whose_ports_are_taken_refuses_to_start() {
    let base = free_base_port();
    // Something (another demo, another server) already listens on the second node's admin port.
    let taken = base + ADMIN_OFFSET + 1;
    let _listener = TcpListener::bind((Ipv4Addr::LOCALHOST, taken)).expect("the port is free");
    let mut command = Command::new(common::scd_binary());
    command.args(["demo", "--base-port", &base.to_string()]);
    let mut demo = ChildProcess::spawn("scd demo", command).expect("scd demo starts");
    let status = demo
        .wait_exit(EXIT_TIMEOUT)
        .unwrap_or_else(|| panic!("the demo ran with a port taken:\n{}", demo.log()));
    assert!(!status.success(), "{}", describe_exit(status));
    let log = demo.log();
    assert!(
        log.contains(&format!("127.0.0.1:{taken}")) && log.contains("in use"),
        "the error names the port: {log}"
    );
    assert!(!log.contains("Try it"), "no welcome printed: {log}");
}
