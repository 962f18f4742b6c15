//! Security and limits of a real `scd` process: `--requirepass` (AUTH, HELLO AUTH, small frames
//! only before AUTH), `--allow`, `--max-clients`, `--max-value-bytes` and `--max-memory`. Every
//! refusal is a Redis-style error line naming the limit, and nothing is lost or evicted.

mod common;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Readiness, Scd, read_reply, read_until_closed, request, wait_until};

/// Sends `bytes` and reads one reply, as text.
#[track_caller]
fn exchange(stream: &mut TcpStream, bytes: &[u8]) -> String {
    stream.write_all(bytes).expect("send");
    let reply = read_reply(&mut BufReader::new(stream)).expect("a reply");
    String::from_utf8_lossy(&reply).into_owned()
}

fn exchange_args(stream: &mut TcpStream, args: &[&str]) -> String {
    let args: Vec<&[u8]> = args.iter().map(|arg| arg.as_bytes()).collect();
    exchange(stream, &request(&args))
}

const NOAUTH: &str = "-NOAUTH Authentication required.\r\n";
const WRONGPASS: &str = "-WRONGPASS invalid username-password pair or user is disabled.\r\n";

#[test]
fn requirepass_refuses_commands_until_auth_gives_the_password() {
    let node = Scd::start(&["--requirepass", "s3cret"]);
    let mut stream = node.connect();
    assert_eq!(exchange_args(&mut stream, &["GET", "k"]), NOAUTH);
    assert_eq!(exchange_args(&mut stream, &["SET", "k", "v"]), NOAUTH);
    assert_eq!(exchange(&mut stream, b"FLUSHALL\r\n"), NOAUTH);
    assert_eq!(exchange_args(&mut stream, &["AUTH", "wrong"]), WRONGPASS);
    assert_eq!(
        exchange_args(&mut stream, &["AUTH", "default", "wrong"]),
        WRONGPASS
    );
    assert_eq!(
        exchange_args(&mut stream, &["AUTH", "bob", "s3cret"]),
        WRONGPASS
    );
    assert!(
        exchange_args(&mut stream, &["HELLO", "3"])
            .starts_with("-NOAUTH HELLO must be called with the client already authenticated")
    );
    assert_eq!(exchange_args(&mut stream, &["GET", "k"]), NOAUTH);
    assert_eq!(exchange_args(&mut stream, &["AUTH", "s3cret"]), "+OK\r\n");
    assert_eq!(exchange_args(&mut stream, &["SET", "k", "v"]), "+OK\r\n");
    assert_eq!(exchange_args(&mut stream, &["GET", "k"]), "$1\r\nv\r\n");
    // RESET forgets the authentication.
    assert_eq!(exchange_args(&mut stream, &["RESET"]), "+RESET\r\n");
    assert_eq!(exchange_args(&mut stream, &["GET", "k"]), NOAUTH);

    // AUTH with the default user's name.
    let mut stream = node.connect();
    assert_eq!(
        exchange_args(&mut stream, &["AUTH", "default", "s3cret"]),
        "+OK\r\n"
    );
    assert_eq!(exchange_args(&mut stream, &["GET", "k"]), "$1\r\nv\r\n");

    // HELLO 3 AUTH authenticates and switches protocol in one step; a wrong password does neither.
    let mut stream = node.connect();
    assert_eq!(
        exchange_args(&mut stream, &["HELLO", "3", "AUTH", "default", "wrong"]),
        WRONGPASS
    );
    assert_eq!(exchange_args(&mut stream, &["GET", "k"]), NOAUTH);
    assert!(
        exchange_args(&mut stream, &["HELLO", "3", "AUTH", "default", "s3cret"])
            .starts_with("%7\r\n")
    );
    assert_eq!(exchange_args(&mut stream, &["GET", "nope"]), "_\r\n");

    // QUIT is allowed before AUTH.
    let mut stream = node.connect();
    stream.write_all(b"QUIT\r\n").expect("send");
    let (said, closed) = read_until_closed(&mut stream);
    assert_eq!(String::from_utf8_lossy(&said), "+OK\r\n");
    assert!(closed);

    // The redis crate, with AUTH (RESP2) and HELLO 3 AUTH (RESP3).
    for url in [
        format!("redis://:s3cret@{}/", node.client_addr),
        format!(
            "redis://default:s3cret@{}/?protocol=resp3",
            node.client_addr
        ),
    ] {
        let mut connection = redis::Client::open(url.as_str())
            .expect("url")
            .get_connection()
            .unwrap_or_else(|error| panic!("{url}: {error}"));
        let value: String = redis::cmd("GET")
            .arg("k")
            .query(&mut connection)
            .expect("GET");
        assert_eq!(value, "v");
    }
    for url in [
        format!("redis://:wrong@{}/", node.client_addr),
        format!("redis://default:wrong@{}/?protocol=resp3", node.client_addr),
    ] {
        let error = redis::Client::open(url.as_str())
            .expect("url")
            .get_connection()
            .err()
            .unwrap_or_else(|| panic!("{url} connected with a wrong password"));
        // The crate reports AUTH's refusal as its own kind, HELLO's with the server's code.
        assert!(
            error.kind() == redis::ErrorKind::AuthenticationFailed
                || error.code() == Some("WRONGPASS"),
            "{url}: {error:?}"
        );
    }
}

#[test]
fn before_auth_only_small_requests_are_read() {
    let node = Scd::start(&["--requirepass", "s3cret"]);
    // A 100 KB value before AUTH: refused at its header, and the connection is closed.
    let mut request_100k = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$102400\r\n".to_vec();
    request_100k.extend(std::iter::repeat_n(b'x', 102_400));
    request_100k.extend_from_slice(b"\r\n");
    let mut stream = node.connect();
    // The node may close before reading everything; what matters is what it answers.
    let _ = stream.write_all(&request_100k);
    let (said, closed) = read_until_closed(&mut stream);
    assert_eq!(
        String::from_utf8_lossy(&said),
        "-ERR Protocol error: unauthenticated bulk length\r\n"
    );
    assert!(closed, "the connection stayed open");

    // The same as an inline command.
    let mut stream = node.connect();
    let mut inline = b"SET k ".to_vec();
    inline.extend(std::iter::repeat_n(b'x', 102_400));
    inline.extend_from_slice(b"\r\n");
    let _ = stream.write_all(&inline);
    let (said, closed) = read_until_closed(&mut stream);
    assert_eq!(
        String::from_utf8_lossy(&said),
        "-ERR Protocol error: too big inline request\r\n"
    );
    assert!(closed, "the connection stayed open");

    // A request announcing many arguments before AUTH.
    let mut stream = node.connect();
    let _ = stream.write_all(b"*100000\r\n");
    let (said, closed) = read_until_closed(&mut stream);
    assert_eq!(
        String::from_utf8_lossy(&said),
        "-ERR Protocol error: unauthenticated multibulk length\r\n"
    );
    assert!(closed, "the connection stayed open");

    // The three refusals are counted as protocol errors.
    let metrics = node.admin_get("/metrics").body;
    assert!(
        metrics.contains("scd_client_errors_total{kind=\"protocol\"} 3\n"),
        "{metrics}"
    );

    // After AUTH the same 100 KB request is accepted.
    let mut stream = node.connect();
    assert_eq!(exchange_args(&mut stream, &["AUTH", "s3cret"]), "+OK\r\n");
    assert_eq!(exchange(&mut stream, &request_100k), "+OK\r\n");
    assert_eq!(exchange_args(&mut stream, &["STRLEN", "k"]), ":102400\r\n");
}

/// A request pipelined behind AUTH or RESET, in the same write, is read under the limits in
/// force once the commands before it have run (the node parses requests ahead in batches).
#[test]
fn a_request_pipelined_behind_auth_or_reset_gets_the_limits_they_set() {
    let node = Scd::start(&["--requirepass", "s3cret"]);
    // 100 arguments: more than the 64 read before AUTH.
    let mut mget: Vec<&[u8]> = vec![b"MGET"];
    mget.extend(std::iter::repeat_n(&b"k"[..], 100));
    let mget = request(&mget);
    let nil_array = format!("*100\r\n{}", "$-1\r\n".repeat(100));

    let mut stream = node.connect();
    let mut auth_then_mget = request(&[b"AUTH", b"s3cret"]);
    auth_then_mget.extend_from_slice(&mget);
    stream.write_all(&auth_then_mget).expect("send");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let replies: Vec<String> = (0..2)
        .map(|_| String::from_utf8_lossy(&read_reply(&mut reader).expect("a reply")).into_owned())
        .collect();
    assert_eq!(replies, ["+OK\r\n".to_string(), nil_array]);

    // Nothing else was sent, so the reader holds no bytes beyond those two replies.
    let mut reset_then_mget = request(&[b"RESET"]);
    reset_then_mget.extend_from_slice(&mget);
    stream.write_all(&reset_then_mget).expect("send");
    let (said, closed) = read_until_closed(&mut stream);
    assert_eq!(
        String::from_utf8_lossy(&said),
        "+RESET\r\n-ERR Protocol error: unauthenticated multibulk length\r\n"
    );
    assert!(closed, "the connection stayed open");
}

#[test]
fn allow_list_closes_connections_from_other_hosts_and_logs_why() {
    // 127.0.0.1 is outside 10.0.0.0/8: the node answers nobody here, so readiness is its log.
    let node = Scd::builder()
        .args(["--allow", "10.0.0.0/8"])
        .ready_when(Readiness::LogContains("serving".to_string()))
        .start();
    for _ in 0..3 {
        let mut stream = node.connect();
        let _ = stream.write_all(b"PING\r\n");
        let (said, closed) = read_until_closed(&mut stream);
        assert!(said.is_empty(), "a refused host was answered: {said:?}");
        assert!(closed, "the connection from 127.0.0.1 stayed open");
    }
    assert!(
        node.wait_for_log("outside --allow", Duration::from_secs(10)),
        "no log line says why the connection was refused"
    );
    let log = node.log();
    let line = log
        .lines()
        .find(|line| line.contains("outside --allow"))
        .expect("the line");
    assert!(
        line.contains("127.0.0.1"),
        "the line does not name the host: {line}"
    );

    // With loopback in the list, the same client is served.
    let allowed = Scd::start(&["--allow", "10.0.0.0/8,127.0.0.0/8"]);
    let mut stream = allowed.connect();
    assert_eq!(exchange(&mut stream, b"PING\r\n"), "+PONG\r\n");
}

/// The node's count of open client connections, from `/stats`.
fn open_connections(node: &Scd) -> u64 {
    let stats: serde_json::Value =
        serde_json::from_str(&node.admin_get("/stats").body).expect("/stats is JSON");
    stats["connections"].as_u64().expect("a connections count")
}

#[test]
fn max_clients_refuses_the_connection_over_the_limit_with_redis_error() {
    let node = Scd::start(&["--max-clients", "5"]);
    let mut open: Vec<TcpStream> = (0..5)
        .map(|_| {
            let mut stream = node.connect();
            assert_eq!(exchange(&mut stream, b"PING\r\n"), "+PONG\r\n");
            stream
        })
        .collect();
    assert_eq!(open_connections(&node), 5);
    let mut sixth = node.connect();
    let (said, closed) = read_until_closed(&mut sixth);
    assert_eq!(
        String::from_utf8_lossy(&said),
        "-ERR max number of clients reached\r\n"
    );
    assert!(closed, "the sixth connection stayed open");
    // The five are still served.
    for stream in &mut open {
        assert_eq!(exchange(stream, b"PING\r\n"), "+PONG\r\n");
    }
    // Once one leaves, a new client gets its place.
    drop(open.pop());
    wait_until(Duration::from_secs(10), || {
        (open_connections(&node) == 4).then_some(())
    })
    .expect("the node never counted the closed connection out");
    let mut replacement = node.connect();
    assert_eq!(exchange(&mut replacement, b"PING\r\n"), "+PONG\r\n");
    let metrics = node.admin_get("/metrics").body;
    assert!(
        metrics.contains("scd_client_connections_rejected_total{reason=\"max_clients\"} 1"),
        "{metrics}"
    );
}

#[test]
fn max_value_bytes_refuses_larger_values_with_an_error_naming_the_limit() {
    let node = Scd::start(&["--max-value-bytes", "1kb"]);
    let limit_error = "-ERR value is larger than max-value-bytes (1024)\r\n";
    let mut stream = node.connect();
    let at_limit = "v".repeat(1024);
    let over_limit = "v".repeat(1025);
    assert_eq!(
        exchange_args(&mut stream, &["SET", "k", &at_limit]),
        "+OK\r\n"
    );
    // APPEND past the limit: refused, the connection goes on, the value is unchanged.
    assert_eq!(
        exchange_args(&mut stream, &["APPEND", "k", "x"]),
        limit_error
    );
    assert_eq!(exchange_args(&mut stream, &["STRLEN", "k"]), ":1024\r\n");
    // An inline command with a larger value: refused, the connection goes on.
    let inline = format!("SET k2 {over_limit}\r\n");
    assert_eq!(exchange(&mut stream, inline.as_bytes()), limit_error);
    assert_eq!(exchange_args(&mut stream, &["EXISTS", "k2"]), ":0\r\n");
    assert_eq!(exchange(&mut stream, b"PING\r\n"), "+PONG\r\n");
    // A key is limited by the key limit (64 KiB), not by a smaller value limit: a 2 000-byte
    // key is read, stored and found, and a bulk value between the two limits is read and then
    // refused by the store, on a connection that goes on.
    let long_key = "k".repeat(2000);
    assert_eq!(
        exchange_args(&mut stream, &["SET", &long_key, "v"]),
        "+OK\r\n"
    );
    assert_eq!(
        exchange_args(&mut stream, &["GET", &long_key]),
        "$1\r\nv\r\n"
    );
    assert_eq!(
        exchange_args(&mut stream, &["SET", "k3", &over_limit]),
        limit_error
    );
    assert_eq!(exchange(&mut stream, b"PING\r\n"), "+PONG\r\n");
    // A bulk string over both is refused at its header (nothing of it is buffered); the stream
    // cannot be trusted after that, so the connection closes, as Redis does for
    // proto-max-bulk-len.
    let huge = "v".repeat(65_537);
    let _ = stream.write_all(&request(&[b"SET", b"k4", huge.as_bytes()]));
    let (said, closed) = read_until_closed(&mut stream);
    assert_eq!(
        String::from_utf8_lossy(&said),
        "-ERR argument is larger than max-key-bytes (65536), the most any argument may be \
         (values: max-value-bytes, 1024)\r\n"
    );
    assert!(closed);
    // Nothing was stored.
    let mut stream = node.connect();
    assert_eq!(
        exchange_args(&mut stream, &["EXISTS", "k2", "k3", "k4"]),
        ":0\r\n"
    );
    assert_eq!(exchange_args(&mut stream, &["STRLEN", "k"]), ":1024\r\n");
}

#[test]
fn max_memory_refuses_writes_with_oom_and_evicts_nothing() {
    let node = Scd::start(&["--max-memory", "2mb"]);
    let mut stream = node.connect();
    let value = "m".repeat(1000);
    // Pipelined batches of SETs until one is refused.
    let mut stored = 0usize;
    let mut oom_line_opt = None;
    'filling: for batch in 0..100 {
        let mut requests = Vec::new();
        for index in 0..100 {
            let key = format!("key:{}", batch * 100 + index);
            requests.extend(request(&[b"SET", key.as_bytes(), value.as_bytes()]));
        }
        stream.write_all(&requests).expect("send");
        let mut reader = BufReader::new(&mut stream);
        for _ in 0..100 {
            let reply =
                String::from_utf8_lossy(&read_reply(&mut reader).expect("reply")).into_owned();
            match reply.as_str() {
                "+OK\r\n" if oom_line_opt.is_none() => stored += 1,
                line if line.starts_with("-OOM ") => {
                    oom_line_opt.get_or_insert(line.to_string());
                }
                other => panic!("SET #{stored} answered {other:?}"),
            }
        }
        if oom_line_opt.is_some() {
            break 'filling;
        }
    }
    let oom_line = oom_line_opt.expect("2 MB filled up without -OOM");
    assert!(
        oom_line.contains("max-memory") && oom_line.contains("2097152"),
        "the OOM error does not name the limit: {oom_line}"
    );
    assert!(
        stored > 500,
        "only {stored} values of 1000 bytes fit in 2 MB"
    );
    // Nothing was evicted: every value stored before the refusal is there.
    assert_eq!(
        exchange_args(&mut stream, &["DBSIZE"]),
        format!(":{stored}\r\n")
    );
    let mut pipeline = Vec::new();
    for index in 0..stored {
        pipeline.extend(request(&[b"EXISTS", format!("key:{index}").as_bytes()]));
    }
    stream.write_all(&pipeline).expect("send");
    let mut reader = BufReader::new(&mut stream);
    for index in 0..stored {
        let reply = read_reply(&mut reader).expect("reply");
        assert_eq!(reply, b":1\r\n", "key:{index} is gone");
    }
    drop(reader);
    // Other writes are refused too; reads and deletes still work.
    assert!(exchange_args(&mut stream, &["HSET", "h", "f", &value]).starts_with("-OOM "));
    assert!(exchange_args(&mut stream, &["SET", "new", &value]).starts_with("-OOM "));
    assert_eq!(
        exchange_args(&mut stream, &["GET", "key:0"]),
        format!("$1000\r\n{value}\r\n")
    );
    assert_eq!(exchange_args(&mut stream, &["DEL", "key:0"]), ":1\r\n");
    assert_eq!(exchange_args(&mut stream, &["EXISTS", "key:0"]), ":0\r\n");
    let info = exchange_args(&mut stream, &["INFO", "memory"]);
    assert!(info.contains("maxmemory:2097152"), "{info}");
    let metrics = node.admin_get("/metrics").body;
    assert!(
        !metrics.contains("scd_client_errors_total{kind=\"oom\"} 0\n"),
        "OOM refusals are not counted"
    );
    // Deleting frees room: after half the keys are gone, new writes fit again.
    let mut deletes = Vec::new();
    for index in 1..stored / 2 {
        deletes.extend(request(&[b"DEL", format!("key:{index}").as_bytes()]));
    }
    stream.write_all(&deletes).expect("send");
    let mut reader = BufReader::new(&mut stream);
    for _ in 1..stored / 2 {
        assert_eq!(read_reply(&mut reader).expect("reply"), b":1\r\n");
    }
    drop(reader);
    assert_eq!(
        exchange_args(&mut stream, &["SET", "new", &value]),
        "+OK\r\n"
    );
}
