//! The process helper of `tests/common` itself: ports, readiness, signals, logs and cleanup work,
//! so the cluster tests that build on it can trust it.

mod common;

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::{NodePorts, Scd, ScdCluster, read_reply};

fn ping(stream: &mut TcpStream) -> Vec<u8> {
    stream.write_all(b"PING\r\n").expect("send");
    read_reply(&mut BufReader::new(stream)).expect("a reply")
}

fn process_exists(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn a_started_node_answers_and_is_gone_after_drop() {
    let node = Scd::start(&[]);
    let pid = node.pid();
    assert_eq!(ping(&mut node.connect()), b"+PONG\r\n");
    assert!(node.rss_bytes().is_some_and(|bytes| bytes > 0));
    assert!(
        node.log().contains(&node.name),
        "the log is kept: {}",
        node.log()
    );
    drop(node);
    assert!(!process_exists(pid), "scd {pid} outlived its handle");
}

#[test]
fn kill9_ends_the_process_at_once() {
    let mut node = Scd::start(&[]);
    let status = node.kill9();
    assert_eq!(common::describe_exit(status), "signal 9");
    assert!(TcpStream::connect(node.client_addr).is_err());
}

#[test]
fn a_paused_node_answers_nothing_until_resumed() {
    let node = Scd::start(&[]);
    let mut stream = node.connect();
    assert_eq!(ping(&mut stream), b"+PONG\r\n");
    node.pause();
    stream
        .write_all(b"PING\r\n")
        .expect("the kernel still takes the bytes");
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    let error = stream.read(&mut byte).expect_err("a stopped node answered");
    assert!(
        matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{error}"
    );
    node.resume();
    stream
        .set_read_timeout(Some(common::IO_TIMEOUT))
        .expect("timeout");
    assert_eq!(
        read_reply(&mut BufReader::new(&mut stream)).expect("the reply after SIGCONT"),
        b"+PONG\r\n"
    );
}

#[test]
fn a_taken_port_makes_the_builder_start_on_fresh_ports() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("a port");
    let taken_port = taken.local_addr().expect("address").port();
    let mut ports = NodePorts::choose();
    ports.client = taken_port;
    let node = Scd::builder().ports(ports).start();
    assert_ne!(node.client_addr.port(), taken_port);
    assert_eq!(ping(&mut node.connect()), b"+PONG\r\n");
}

#[test]
#[should_panic(expected = "did not start")]
fn a_node_that_refuses_its_arguments_fails_the_test() {
    Scd::start(&["--partitions", "1000"]);
}

#[test]
fn a_cluster_starts_every_node_on_its_own_ports_with_its_name() {
    let cluster = ScdCluster::start(3, &[]);
    let mut ports = std::collections::HashSet::new();
    for (index, node) in cluster.nodes.iter().enumerate() {
        assert_eq!(node.name, format!("node-{}", index + 1));
        for port in [
            node.client_addr.port(),
            node.peer_addr.port(),
            node.admin_addr().port(),
        ] {
            assert!(ports.insert(port), "port {port} used twice");
        }
        let mut stream = node.connect();
        stream.write_all(b"INFO server\r\n").expect("send");
        let info = read_reply(&mut BufReader::new(&mut stream)).expect("INFO");
        let info = String::from_utf8_lossy(&info);
        assert!(
            info.contains(&format!("scd_node_name:{}", node.name)),
            "{info}"
        );
    }
}
