//! SIGTERM and SIGINT on a real `scd` process: it closes every client connection, stops
//! listening and exits 0, whatever its clients were doing.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{EXIT_TIMEOUT, Scd, describe_exit, read_reply, read_until_closed, request};

/// Opens the kinds of connection a node has when it is told to stop: one idle after a reply,
/// one halfway through a request, one in RESP3 after HELLO, and one busy writing in a loop.
fn stop_with_clients_attached(signal: fn(&Scd), signal_name: &str) {
    let mut node = Scd::start(&[]);
    let mut idle = node.connect();
    idle.write_all(b"PING\r\n").expect("send");
    assert_eq!(
        read_reply(&mut BufReader::new(&mut idle)).expect("reply"),
        b"+PONG\r\n"
    );
    let mut half_frame = node.connect();
    half_frame
        .write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\nonly part of")
        .expect("send");
    let mut resp3 = node.connect();
    resp3.write_all(&request(&[b"HELLO", b"3"])).expect("send");
    read_reply(&mut BufReader::new(&mut resp3)).expect("HELLO reply");
    // A client writing as fast as it can until the node goes away.
    let mut busy = node.connect();
    let busy_client = std::thread::spawn(move || {
        let mut reader = BufReader::new(busy.try_clone().expect("a second handle"));
        for index in 0u64.. {
            let key = format!("busy:{index}");
            if busy
                .write_all(&request(&[b"SET", key.as_bytes(), b"v"]))
                .is_err()
            {
                return index;
            }
            if read_reply(&mut reader).is_err() {
                return index;
            }
        }
        unreachable!("the node stops long before u64::MAX commands")
    });
    // Let the busy client get going, so the signal arrives mid-stream.
    let mut probe = node.connect();
    common::wait_until(Duration::from_secs(10), || {
        probe.write_all(&request(&[b"EXISTS", b"busy:100"])).ok()?;
        let reply = read_reply(&mut BufReader::new(&mut probe)).ok()?;
        (reply == b":1\r\n").then_some(())
    })
    .expect("the busy client never got to 100 commands");

    signal(&node);
    let status = node
        .wait_exit(EXIT_TIMEOUT)
        .unwrap_or_else(|| panic!("scd still runs {EXIT_TIMEOUT:?} after {signal_name}"));
    assert_eq!(
        status.code(),
        Some(0),
        "after {signal_name} scd ended with {}",
        describe_exit(status)
    );
    for (name, stream) in [
        ("idle", &mut idle),
        ("half frame", &mut half_frame),
        ("resp3", &mut resp3),
        ("probe", &mut probe),
    ] {
        let (_, closed) = read_until_closed(stream);
        assert!(
            closed,
            "the {name} connection stayed open after {signal_name}"
        );
    }
    let commands_sent = busy_client.join().expect("the busy client");
    assert!(commands_sent >= 100, "{commands_sent}");
    assert!(
        TcpStream::connect(node.client_addr).is_err(),
        "the client port still accepts connections after exit"
    );
    assert!(
        node.log().contains(signal_name),
        "the log does not say {signal_name} was received"
    );
}

#[test]
fn sigterm_closes_every_connection_and_exits_zero() {
    stop_with_clients_attached(|node| node.terminate(), "SIGTERM");
}

#[test]
fn sigint_closes_every_connection_and_exits_zero() {
    stop_with_clients_attached(|node| node.interrupt(), "SIGINT");
}

#[test]
fn a_node_without_clients_exits_zero_on_sigterm() {
    let mut node = Scd::start(&[]);
    node.terminate();
    let status = node
        .wait_exit(EXIT_TIMEOUT)
        .expect("scd exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", describe_exit(status));
    // Nothing is left listening on the admin port either.
    let mut buffer = [0u8; 1];
    let admin_closed = match TcpStream::connect(node.admin_addr()) {
        Err(_) => true,
        Ok(mut stream) => matches!(stream.read(&mut buffer), Ok(0) | Err(_)),
    };
    assert!(admin_closed, "the admin port still answers after exit");
}
