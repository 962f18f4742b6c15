//! The memcached text protocol against a node started in-process: every classic and meta
//! command, errors, pipelining, CAS, expiry by memcached's rules, RESP interplay and
//! authentication, byte for byte.

mod memcached_support;

use memcached_support::{START_MS, TestNode, TextClient};

#[tokio::test]
async fn storage_commands_answer_as_memcached_does() {
    let node = TestNode::start().await;
    let mut client = node.text().await;
    client
        .conversation(&[
            ("set k 5 0 3\r\nabc\r\n", "STORED\r\n"),
            ("get k\r\n", "VALUE k 5 3\r\nabc\r\nEND\r\n"),
            ("add k 0 0 1\r\nx\r\n", "NOT_STORED\r\n"),
            ("add fresh 1 0 1\r\nx\r\n", "STORED\r\n"),
            ("replace missing 0 0 1\r\nx\r\n", "NOT_STORED\r\n"),
            ("replace k 6 0 2\r\nxy\r\n", "STORED\r\n"),
            ("append k 0 0 2\r\nzz\r\n", "STORED\r\n"),
            ("prepend k 9 9 2\r\naa\r\n", "STORED\r\n"),
            (
                "get k fresh missing\r\n",
                "VALUE k 6 6\r\naaxyzz\r\nVALUE fresh 1 1\r\nx\r\nEND\r\n",
            ),
            ("append missing 0 0 1\r\nx\r\n", "NOT_STORED\r\n"),
            ("prepend missing 0 0 1\r\nx\r\n", "NOT_STORED\r\n"),
            ("set empty 0 0 0\r\n\r\n", "STORED\r\n"),
            ("get empty\r\n", "VALUE empty 0 0\r\n\r\nEND\r\n"),
            ("delete k\r\n", "DELETED\r\n"),
            ("delete k\r\n", "NOT_FOUND\r\n"),
            ("delete fresh 0\r\n", "DELETED\r\n"),
            ("get k fresh\r\n", "END\r\n"),
        ])
        .await;
}

#[tokio::test]
async fn incr_and_decr_count_unsigned_wrapping_up_and_stopping_at_zero() {
    let node = TestNode::start().await;
    let mut client = node.text().await;
    client
        .conversation(&[
            ("set n 3 0 2\r\n10\r\n", "STORED\r\n"),
            ("incr n 5\r\n", "15\r\n"),
            ("decr n 20\r\n", "0\r\n"),
            (
                "incr n 18446744073709551615\r\n",
                "18446744073709551615\r\n",
            ),
            ("incr n 2\r\n", "1\r\n"),
            ("get n\r\n", "VALUE n 3 1\r\n1\r\nEND\r\n"),
            ("incr missing 1\r\n", "NOT_FOUND\r\n"),
            ("decr missing 1\r\n", "NOT_FOUND\r\n"),
            ("set word 0 0 3\r\nabc\r\n", "STORED\r\n"),
            (
                "incr word 1\r\n",
                "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
            ),
            (
                "incr n abc\r\n",
                "CLIENT_ERROR invalid numeric delta argument\r\n",
            ),
        ])
        .await;
}

#[tokio::test]
async fn noreply_commands_answer_nothing_even_when_they_fail() {
    let node = TestNode::start().await;
    let mut client = node.text().await;
    client
        .check(
            "set q 0 0 1 noreply\r\na\r\nadd q 0 0 1 noreply\r\nb\r\nget q\r\n",
            "VALUE q 0 1\r\na\r\nEND\r\n",
        )
        .await;
    client
        .check(
            "incr q 1 noreply\r\nappend q 0 0 1 noreply\r\nb\r\ntouch q 10 noreply\r\n\
             delete q noreply\r\ndelete q noreply\r\nincr q 1 noreply\r\nverbosity 1 noreply\r\n\
             flush_all noreply\r\nget q\r\n",
            "END\r\n",
        )
        .await;
}

#[tokio::test]
async fn cas_stores_only_over_the_version_it_read() {
    let node = TestNode::start().await;
    let mut client = node.text().await;
    client.check("set c 0 0 1\r\na\r\n", "STORED\r\n").await;
    let cas = client.cas_of("c").await;
    assert_ne!(cas, 0);
    client
        .check(format!("cas c 3 0 1 {}\r\nb\r\n", cas + 1), "EXISTS\r\n")
        .await;
    client
        .check(format!("cas c 3 0 1 {cas}\r\nb\r\n"), "STORED\r\n")
        .await;
    client
        .check(format!("cas c 3 0 1 {cas}\r\nc\r\n"), "EXISTS\r\n")
        .await;
    let new_cas = client.cas_of("c").await;
    assert!(new_cas > cas, "{new_cas} after {cas}");
    client
        .check(
            "gets c\r\n",
            format!("VALUE c 3 1 {new_cas}\r\nb\r\nEND\r\n"),
        )
        .await;
    client
        .check(format!("cas nothing 0 0 1 {cas}\r\nx\r\n"), "NOT_FOUND\r\n")
        .await;
    client
        .check(
            format!("cas c 0 0 1 {new_cas} noreply\r\nd\r\nget c\r\n"),
            "VALUE c 0 1\r\nd\r\nEND\r\n",
        )
        .await;
    // gats touches and answers the CAS the touch gave the item.
    client.send("gats 0 c\r\n").await;
    let line = client.read_line().await;
    let touched_cas: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(line, format!("VALUE c 0 1 {touched_cas}"));
    assert_eq!(client.read_line().await, "d");
    assert_eq!(client.read_line().await, "END");
    assert_eq!(client.cas_of("c").await, touched_cas);
}

#[tokio::test]
async fn expiry_follows_memcached_relative_absolute_and_negative_rules() {
    let node = TestNode::start().await;
    let mut client = node.text().await;
    let absolute_seconds = START_MS / 1000 + 200;
    client
        .conversation(&[
            ("set rel 0 100 1\r\na\r\n", "STORED\r\n"),
            (
                &format!("set abs 0 {absolute_seconds} 1\r\nb\r\n"),
                "STORED\r\n",
            ),
            ("set never 0 0 1\r\nc\r\n", "STORED\r\n"),
        ])
        .await;
    let all_three = "VALUE rel 0 1\r\na\r\nVALUE abs 0 1\r\nb\r\nVALUE never 0 1\r\nc\r\nEND\r\n";
    node.clock.advance_ms(100_000);
    client.check("get rel abs never\r\n", all_three).await;
    node.clock.advance_ms(1);
    client
        .check(
            "get rel abs never\r\n",
            "VALUE abs 0 1\r\nb\r\nVALUE never 0 1\r\nc\r\nEND\r\n",
        )
        .await;
    node.clock.advance_ms(100_000);
    client
        .check("get rel abs never\r\n", "VALUE never 0 1\r\nc\r\nEND\r\n")
        .await;

    // A negative exptime stores nothing and deletes what a set replaces; add keeps the item.
    let past_seconds = START_MS / 1000 - 10;
    client
        .conversation(&[
            ("set never 0 -1 1\r\nx\r\n", "STORED\r\n"),
            ("get never\r\n", "END\r\n"),
            ("set keep 0 0 1\r\nk\r\n", "STORED\r\n"),
            ("add keep 0 -1 1\r\nx\r\n", "NOT_STORED\r\n"),
            ("get keep\r\n", "VALUE keep 0 1\r\nk\r\nEND\r\n"),
            (
                &format!("set past 0 {past_seconds} 1\r\nx\r\n"),
                "STORED\r\n",
            ),
            ("get past\r\n", "END\r\n"),
            // Thirty days exactly still counts from now.
            ("set month 0 2592000 1\r\nm\r\n", "STORED\r\n"),
            ("mg month t v\r\n", "VA 1 t2592000\r\nm\r\n"),
            ("touch keep -1\r\n", "TOUCHED\r\n"),
            ("get keep\r\n", "END\r\n"),
            ("set t 0 10 1\r\nt\r\n", "STORED\r\n"),
            ("touch t 1000\r\n", "TOUCHED\r\n"),
        ])
        .await;
    node.clock.advance_ms(20_000);
    client
        .conversation(&[
            ("get t\r\n", "VALUE t 0 1\r\nt\r\nEND\r\n"),
            ("gat 5 t missing\r\n", "VALUE t 0 1\r\nt\r\nEND\r\n"),
        ])
        .await;
    node.clock.advance_ms(5_001);
    client.check("get t\r\n", "END\r\n").await;
}

#[tokio::test]
async fn malformed_and_oversized_requests_get_memcached_errors_and_the_connection_goes_on() {
    let node = TestNode::start_with(|config| config.max_value_bytes = 1024).await;
    let mut client = node.text().await;
    let too_large = format!("set big 0 0 1025\r\n{}\r\n", "x".repeat(1025));
    let long_key = format!("get {}\r\n", "k".repeat(251));
    client
        .conversation(&[
            ("bogus\r\n", "ERROR\r\n"),
            ("\r\n", "ERROR\r\n"),
            ("get\r\n", "ERROR\r\n"),
            ("GET k\r\n", "ERROR\r\n"),
            (
                "set k 0 0 notanumber\r\n",
                "CLIENT_ERROR bad command line format\r\n",
            ),
            (&long_key, "CLIENT_ERROR bad command line format\r\n"),
            (
                "touch k abc\r\n",
                "CLIENT_ERROR invalid exptime argument\r\n",
            ),
            (
                "delete k 5\r\n",
                "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n",
            ),
            (
                "set k 0 0 1\r\nabc\r\n",
                "CLIENT_ERROR bad data chunk\r\nERROR\r\n",
            ),
            (&too_large, "SERVER_ERROR object too large for cache\r\n"),
            ("get big\r\n", "END\r\n"),
            ("set k 0 0 1024\r\n", ""),
        ])
        .await;
    // The largest value allowed is stored; appending past the limit is refused by the store.
    client
        .conversation(&[
            (&format!("{}\r\n", "y".repeat(1024)), "STORED\r\n"),
            (
                "append k 0 0 1\r\nz\r\n",
                "SERVER_ERROR object too large for cache\r\n",
            ),
            ("stats bogus\r\n", "ERROR\r\n"),
            ("version\r\n", "VERSION 1.6.21 scd 0.0.0\r\n"),
        ])
        .await;
}

#[tokio::test]
async fn garbage_input_is_answered_with_errors_and_version_still_works() {
    let node = TestNode::start().await;
    let mut client = node.text().await;
    let mut garbage: Vec<u8> = (0u8..=255).rev().filter(|byte| *byte != b'\n').collect();
    garbage.insert(0, b'#');
    garbage.extend_from_slice(b"\r\n\x80\x01\x02 \xff\xfe junk\r\nversion\r\n");
    client.send(&garbage).await;
    client
        .expect("ERROR\r\nERROR\r\nVERSION 1.6.21 scd 0.0.0\r\n")
        .await;
}

#[tokio::test]
async fn a_line_without_end_is_refused_and_the_connection_closed() {
    let node = TestNode::start().await;
    let mut client = node.text().await;
    client.send("g".repeat(70_000)).await;
    client.expect("CLIENT_ERROR line too long\r\n").await;
    client.expect_closed().await;
}

#[tokio::test]
async fn quit_closes_without_a_reply() {
    let node = TestNode::start().await;
    let mut client = node.text().await;
    client
        .check("version\r\n", "VERSION 1.6.21 scd 0.0.0\r\n")
        .await;
    client.send("quit\r\nversion\r\nbogus\r\n").await;
    client.expect_closed().await;
    // What came after the quit was not read: the malformed line was neither answered nor
    // counted as an error.
    let info = String::from_utf8(node.resp(&[b"INFO", b"stats"]).await).expect("text");
    assert!(info.contains("total_error_replies:0\r\n"), "{info}");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_even_past_the_flush_threshold() {
    let node = TestNode::start().await;
    let mut client = node.text().await;
    let mut requests = String::new();
    let mut expect = String::new();
    for index in 0..200 {
        requests.push_str(&format!(
            "set key{index} {index} 0 {}\r\n{index}\r\n",
            index.to_string().len()
        ));
        expect.push_str("STORED\r\n");
        requests.push_str(&format!("get key{index} key{}\r\n", index + 1000));
        expect.push_str(&format!(
            "VALUE key{index} {index} {}\r\n{index}\r\nEND\r\n",
            index.to_string().len()
        ));
    }
    client.check(requests, expect).await;

    // 400 gets of a 1000-byte value answer 400 kB: written in several writes, in order.
    let value = "v".repeat(1000);
    client
        .check(format!("set big 0 0 1000\r\n{value}\r\n"), "STORED\r\n")
        .await;
    let gets = "get big\r\n".repeat(400);
    let answer = format!("VALUE big 0 1000\r\n{value}\r\nEND\r\n").repeat(400);
    client.check(gets, answer).await;
}

/// Requests arrive in one read, are taken off it in batches, and errors the front end answers
/// while taking them keep their place among the replies.
#[tokio::test]
async fn errors_in_a_pipeline_are_answered_in_their_place() {
    let node = TestNode::start().await;
    let mut client = node.text().await;
    let mut requests = String::new();
    let mut expect = String::new();
    for index in 0..40 {
        requests.push_str(&format!("set k{index} 0 0 1\r\n{}\r\n", index % 10));
        expect.push_str("STORED\r\n");
        if index % 3 == 0 {
            requests.push_str("bogus\r\n");
            expect.push_str("ERROR\r\n");
        }
        requests.push_str(&format!("get k{index}\r\n"));
        expect.push_str(&format!("VALUE k{index} 0 1\r\n{}\r\nEND\r\n", index % 10));
        if index % 7 == 0 {
            requests.push_str("touch k abc\r\n");
            expect.push_str("CLIENT_ERROR invalid exptime argument\r\n");
        }
    }
    client.check(requests, expect).await;
}

#[tokio::test]
async fn keys_written_with_memcached_are_read_with_resp_on_database_0_and_back() {
    let node = TestNode::start().await;
    let mut client = node.text().await;
    client
        .check("set shared 42 0 5\r\nhello\r\n", "STORED\r\n")
        .await;
    assert_eq!(node.resp(&[b"GET", b"shared"]).await, b"$5\r\nhello\r\n");
    assert_eq!(node.resp_in(1, &[b"GET", b"shared"]).await, b"$-1\r\n");
    assert_eq!(
        node.resp(&[b"SET", b"fromresp", b"world"]).await,
        b"+OK\r\n"
    );
    assert_eq!(node.resp(&[b"SET", b"counter", b"41"]).await, b"+OK\r\n");
    assert_eq!(node.resp(&[b"HSET", b"hash", b"f", b"v"]).await, b":1\r\n");
    client
        .conversation(&[
            (
                "get fromresp shared\r\n",
                "VALUE fromresp 0 5\r\nworld\r\nVALUE shared 42 5\r\nhello\r\nEND\r\n",
            ),
            ("incr counter 1\r\n", "42\r\n"),
            // A RESP hash is not a memcached item.
            ("get hash\r\n", "END\r\n"),
            (
                "incr hash 1\r\n",
                "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
            ),
            (
                "append hash 0 0 1\r\nx\r\n",
                "CLIENT_ERROR operation against a key holding the wrong kind of value\r\n",
            ),
        ])
        .await;
    assert_eq!(node.resp(&[b"GET", b"counter"]).await, b"$2\r\n42\r\n");
    // RESP APPEND keeps the memcached flags.
    assert_eq!(node.resp(&[b"APPEND", b"shared", b"!"]).await, b":6\r\n");
    client
        .check("get shared\r\n", "VALUE shared 42 6\r\nhello!\r\nEND\r\n")
        .await;
}

#[tokio::test]
async fn meta_commands_answer_with_the_flags_asked_for() {
    let node = TestNode::start().await;
    let mut client = node.text().await;
    client
        .conversation(&[
            ("ms m 2 F5 T0\r\nhi\r\n", "HD\r\n"),
            ("mg m v f s k\r\n", "VA 2 f5 s2 km\r\nhi\r\n"),
            ("mg m\r\n", "HD\r\n"),
            ("mg m t h l\r\n", "HD t-1 h0 l0\r\n"),
            ("mg m v q Oabc\r\n", "VA 2 Oabc\r\nhi\r\n"),
            ("mg missing v\r\n", "EN\r\n"),
            ("mg missing v k Ox\r\n", "EN kmissing Ox\r\n"),
            ("mg missing v q\r\nmn\r\n", "MN\r\n"),
            ("ms m 1 MA\r\n!\r\n", "HD\r\n"),
            ("ms m 1 MP\r\n<\r\n", "HD\r\n"),
            ("mg m v f\r\n", "VA 4 f5\r\n<hi!\r\n"),
            ("ms nope 1 MA\r\nx\r\n", "NS\r\n"),
            ("ms nope 1 MA N0 F7\r\nx\r\n", "HD\r\n"),
            ("mg nope v f\r\n", "VA 1 f7\r\nx\r\n"),
            ("ms m 1 ME\r\nx\r\n", "NS\r\n"),
            ("ms added 1 ME q\r\nx\r\nmn\r\n", "MN\r\n"),
            ("ms m 1 MR k\r\ny\r\n", "HD km\r\n"),
            ("ms missing 1 MR\r\ny\r\n", "NS\r\n"),
            (
                "ms m 1 MZ\r\ny\r\n",
                "CLIENT_ERROR invalid mode for ms M token\r\n",
            ),
            ("ms short 1 T-1\r\nx\r\n", "HD\r\n"),
            ("mg short v\r\n", "EN\r\n"),
            ("md m q\r\nmn\r\n", "MN\r\n"),
            ("md m\r\n", "NF\r\n"),
            ("md m k Ox\r\n", "NF km Ox\r\n"),
            ("ma cnt\r\n", "NF\r\n"),
            ("ma cnt N0 J10 v\r\n", "VA 2\r\n10\r\n"),
            ("ma cnt v D5\r\n", "VA 2\r\n15\r\n"),
            ("ma cnt v MD D20\r\n", "VA 1\r\n0\r\n"),
            ("ma cnt q\r\nmn\r\n", "MN\r\n"),
            ("ma cnt\r\n", "HD\r\n"),
            ("ma cnt v t\r\n", "VA 1 t-1\r\n3\r\n"),
            ("ma cnt v T100 t\r\n", "VA 1 t100\r\n4\r\n"),
            ("mg cnt t v\r\n", "VA 1 t100\r\n4\r\n"),
            ("mg cnt v T0 t\r\n", "VA 1 t-1\r\n4\r\n"),
            ("ms word 3\r\nabc\r\n", "HD\r\n"),
            (
                "ma word\r\n",
                "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
            ),
            ("mg vivified v N30 t\r\n", "VA 0 t30 W\r\n\r\n"),
            ("mg vivified v s\r\n", "VA 0 s0\r\n\r\n"),
            ("mn\r\n", "MN\r\n"),
        ])
        .await;
}

#[tokio::test]
async fn meta_commands_compare_cas_values() {
    let node = TestNode::start().await;
    let mut client = node.text().await;
    client.check("ms m 1 c\r\na\r\n", "").await;
    let line = client.read_line().await;
    let cas: u64 = line
        .strip_prefix("HD c")
        .expect("HD with a CAS")
        .parse()
        .unwrap();
    client
        .check("mg m c v\r\n", format!("VA 1 c{cas}\r\na\r\n"))
        .await;
    client
        .conversation(&[
            (&format!("ms m 1 C{}\r\nb\r\n", cas + 1), "EX\r\n"),
            (&format!("ms missing 1 C{cas}\r\nb\r\n"), "NF\r\n"),
            (&format!("md m C{}\r\n", cas + 1), "EX\r\n"),
            (&format!("ma m C{}\r\n", cas + 1), "EX\r\n"),
            (&format!("ms m 1 C{cas}\r\nb\r\n"), "HD\r\n"),
            (&format!("md m C{cas}\r\n"), "EX\r\n"),
        ])
        .await;
    client.send("mg m c\r\n").await;
    let line = client.read_line().await;
    let new_cas: u64 = line.strip_prefix("HD c").unwrap().parse().unwrap();
    client.check(format!("md m C{new_cas}\r\n"), "HD\r\n").await;
}

#[tokio::test]
async fn meta_flags_that_need_per_item_state_are_refused_by_name() {
    let node = TestNode::start().await;
    let mut client = node.text().await;
    client
        .conversation(&[
            ("ms m 1\r\na\r\n", "HD\r\n"),
            (
                "mg m R30 v\r\n",
                "CLIENT_ERROR mg R (recache) is not supported by scd\r\n",
            ),
            (
                "mg m E5\r\n",
                "CLIENT_ERROR mg E (explicit CAS) is not supported by scd\r\n",
            ),
            (
                "ms m 1 I\r\nx\r\n",
                "CLIENT_ERROR ms I (invalidate) is not supported by scd\r\n",
            ),
            (
                "ms m 1 E5 q\r\nx\r\n",
                "CLIENT_ERROR ms E (explicit CAS) is not supported by scd\r\n",
            ),
            (
                "md m I q\r\n",
                "CLIENT_ERROR md I (invalidate) is not supported by scd\r\n",
            ),
            (
                "ma m E5\r\n",
                "CLIENT_ERROR ma E (explicit CAS) is not supported by scd\r\n",
            ),
            (
                "mg m b\r\n",
                "CLIENT_ERROR base64 keys (b flag) are not supported\r\n",
            ),
            ("mg m v\r\n", "VA 1\r\na\r\n"),
        ])
        .await;
}

fn stat<'a>(stats: &'a [(String, String)], name: &str) -> &'a str {
    stats
        .iter()
        .find(|(stat_name, _)| stat_name == name)
        .map(|(_, value)| value.as_str())
        .unwrap_or_else(|| panic!("no stat {name} in {stats:?}"))
}

#[tokio::test]
async fn stats_report_memcached_counters_from_the_node_and_its_store() {
    let node = TestNode::start_with(|config| config.max_value_bytes = 4096).await;
    let mut client = node.text().await;
    client
        .conversation(&[
            ("set a 0 0 1\r\n1\r\n", "STORED\r\n"),
            ("get a b\r\n", "VALUE a 0 1\r\n1\r\nEND\r\n"),
            ("incr a 1\r\n", "2\r\n"),
            ("delete nothing\r\n", "NOT_FOUND\r\n"),
        ])
        .await;
    let stats = client.stats("").await;
    for name in [
        "pid",
        "uptime",
        "time",
        "version",
        "pointer_size",
        "rusage_user",
        "rusage_system",
        "curr_connections",
        "total_connections",
        "connection_structures",
        "bytes_read",
        "bytes_written",
        "limit_maxbytes",
        "threads",
        "evictions",
    ] {
        stat(&stats, name);
    }
    assert_eq!(stat(&stats, "pid"), std::process::id().to_string());
    assert_eq!(stat(&stats, "time"), (START_MS / 1000).to_string());
    assert_eq!(stat(&stats, "version"), "1.6.21 scd 0.0.0");
    assert_eq!(stat(&stats, "cmd_get"), "2");
    assert_eq!(stat(&stats, "get_hits"), "1");
    assert_eq!(stat(&stats, "get_misses"), "1");
    assert_eq!(stat(&stats, "cmd_set"), "1");
    assert_eq!(stat(&stats, "incr_hits"), "1");
    assert_eq!(stat(&stats, "delete_misses"), "1");
    assert_eq!(stat(&stats, "curr_items"), "1");
    assert_eq!(stat(&stats, "curr_connections"), "1");
    assert_ne!(stat(&stats, "bytes"), "0");

    let settings = client.stats("settings").await;
    assert_eq!(stat(&settings, "item_size_max"), "4096");
    assert_eq!(stat(&settings, "auth_enabled_sasl"), "no");
    assert_eq!(
        stat(&settings, "tcpport"),
        node.memcached_addr.port().to_string()
    );
    assert!(client.stats("items").await.is_empty());
    assert!(client.stats("slabs").await.is_empty());
    client.check("stats reset\r\n", "RESET\r\n").await;
    assert_eq!(stat(&client.stats("").await, "cmd_get"), "0");
}

#[tokio::test]
async fn flush_all_empties_database_0_now_or_when_the_clock_reaches_the_delay() {
    let node = TestNode::start().await;
    let mut client = node.text().await;
    assert_eq!(
        node.resp_in(1, &[b"SET", b"other", b"db"]).await,
        b"+OK\r\n"
    );
    client
        .conversation(&[
            ("set a 0 0 1\r\na\r\n", "STORED\r\n"),
            ("flush_all\r\n", "OK\r\n"),
            ("get a\r\n", "END\r\n"),
            ("set b 0 0 1\r\nb\r\n", "STORED\r\n"),
            // A later flush_all replaces a pending one: this flush runs after 10 s, not 100 s.
            ("flush_all 100\r\n", "OK\r\n"),
            ("flush_all 10\r\n", "OK\r\n"),
            ("get b\r\n", "VALUE b 0 1\r\nb\r\nEND\r\n"),
        ])
        .await;
    assert_eq!(node.resp_in(1, &[b"GET", b"other"]).await, b"$2\r\ndb\r\n");
    node.clock.advance_ms(10_000);
    let address = node.memcached_addr;
    node.wait_for("the delayed flush_all ran", move || async move {
        let mut probe = TextClient::connect(address).await;
        probe.send("get b\r\n").await;
        probe.read_line().await == "END"
    })
    .await;
    assert_eq!(node.resp_in(1, &[b"GET", b"other"]).await, b"$2\r\ndb\r\n");
}

#[tokio::test]
async fn with_a_password_text_clients_authenticate_with_memcacheds_set_convention() {
    let node = TestNode::start_with(|config| config.requirepass_opt = Some("s3cret".into())).await;
    let mut client = node.text().await;
    client
        .conversation(&[
            ("get a\r\n", "CLIENT_ERROR unauthenticated\r\n"),
            ("version\r\n", "CLIENT_ERROR unauthenticated\r\n"),
            ("bogus\r\n", "CLIENT_ERROR unauthenticated\r\n"),
            (
                "add auth 0 0 11\r\nuser s3cret\r\n",
                "CLIENT_ERROR unauthenticated\r\n",
            ),
            (
                "set auth 0 0 6\r\ns3cret\r\n",
                "CLIENT_ERROR bad authentication token format\r\n",
            ),
            (
                "set auth 0 0 10\r\nuser wrong\r\n",
                "CLIENT_ERROR authentication failure\r\n",
            ),
            (
                "set auth 0 0 11\r\nuser s3cretXX\r\n",
                "CLIENT_ERROR bad command line termination\r\nCLIENT_ERROR unauthenticated\r\n",
            ),
            ("set auth 0 0 11\r\nuser s3cret\r\n", "STORED\r\n"),
            ("get auth\r\n", "END\r\n"),
            ("set a 0 0 1\r\na\r\n", "STORED\r\n"),
            ("get a\r\n", "VALUE a 0 1\r\na\r\nEND\r\n"),
        ])
        .await;
    let stats = client.stats("").await;
    assert_eq!(stat(&stats, "auth_cmds"), "3");
    assert_eq!(stat(&stats, "auth_errors"), "2");

    // Before authenticating a client cannot make the node buffer much: a long line closes.
    let mut unauthenticated = node.text().await;
    unauthenticated.send("x".repeat(3000)).await;
    unauthenticated
        .expect("CLIENT_ERROR unauthenticated\r\n")
        .await;
    unauthenticated.expect_closed().await;
    let mut quitter = node.text().await;
    quitter.send("quit\r\n").await;
    quitter.expect_closed().await;
}

#[tokio::test]
async fn connections_beyond_max_clients_are_refused_with_a_server_error() {
    let node = TestNode::start_with(|config| config.max_clients = 1).await;
    let mut first = node.text().await;
    first
        .check("version\r\n", "VERSION 1.6.21 scd 0.0.0\r\n")
        .await;
    let mut second = node.text().await;
    second
        .expect("SERVER_ERROR max number of clients reached\r\n")
        .await;
    second.expect_closed().await;
}
