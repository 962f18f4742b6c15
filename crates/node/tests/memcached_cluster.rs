//! The memcached front end of a node that is not the primary of every partition: its commands
//! are relayed, their replies known later, and a pipeline is still answered in order.

mod memcached_support;

use bytes::Bytes;
use memcache::StoreMode;
use memcache::binary::BinaryCommand;
use memcached_support::{DEADLINE, TestNode};

/// Two nodes on the system clock, the second joining the first, once the first node's writes
/// have reached the second's store (the cluster has formed and replicates).
async fn two_node_cluster() -> (TestNode, TestNode) {
    let first = TestNode::start_on_system_clock(|config| config.name = "first".into()).await;
    let join = first.peer_addr;
    let second = TestNode::start_on_system_clock(|config| {
        config.name = "second".into();
        config.join = vec![join];
    })
    .await;
    let mut writer = first.text().await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    for index in 0.. {
        writer
            .check(format!("set probe{index} 0 0 1\r\nx\r\n"), "STORED\r\n")
            .await;
        let info = second.resp(&[b"INFO", b"keyspace"]).await;
        if String::from_utf8_lossy(&info).contains("db0:keys=") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the two nodes did not form a cluster in time"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    (first, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_through_a_node_that_relays_are_answered_in_order() {
    let (first, second) = two_node_cluster().await;
    let mut client = second.text().await;
    let mut requests = String::new();
    let mut expect = String::new();
    for index in 0..200 {
        let value = format!("value{index}");
        requests.push_str(&format!(
            "set key{index} {index} 0 {}\r\n{value}\r\n",
            value.len()
        ));
        expect.push_str("STORED\r\n");
        requests.push_str(&format!("incr count{} 1\r\n", index % 7));
        expect.push_str("NOT_FOUND\r\n");
        requests.push_str(&format!("get key{index}\r\n"));
        expect.push_str(&format!(
            "VALUE key{index} {index} {}\r\n{value}\r\nEND\r\n",
            value.len()
        ));
    }
    client.check(requests, expect).await;

    // The same keys through the other node, and over the binary protocol with quiet sets.
    let mut reader = first.text().await;
    reader
        .check(
            "get key0 key199\r\n",
            "VALUE key0 0 6\r\nvalue0\r\nVALUE key199 199 8\r\nvalue199\r\nEND\r\n",
        )
        .await;
    let mut binary = second.binary().await;
    for index in 0..100 {
        binary
            .send(&BinaryCommand::Store {
                mode: StoreMode::Set,
                key: Bytes::from(format!("quiet{index}")),
                client_flags: 0,
                exptime: 0,
                value: Bytes::from(format!("{index}")),
                compare_cas_opt: None,
                quiet: true,
            })
            .await;
    }
    let last_get = binary
        .send(&BinaryCommand::Get {
            key: Bytes::from_static(b"quiet99"),
            return_key: true,
            quiet: false,
        })
        .await;
    let noop = binary.send(&BinaryCommand::Noop).await;
    let responses = binary.read_until(noop).await;
    assert_eq!(responses.len(), 2, "{responses:?}");
    assert_eq!(responses[0].header.opaque, last_get);
    assert_eq!(&responses[0].value[..], b"99");
    reader
        .check("get quiet0\r\n", "VALUE quiet0 0 1\r\n0\r\nEND\r\n")
        .await;
}
