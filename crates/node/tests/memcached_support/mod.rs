//! What the memcached front-end tests share: a node started in-process on loopback with a manual
//! clock, and raw text, binary and RESP clients that read with a deadline.

#![allow(dead_code)] // Each test file uses a different part of this module.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use memcache::binary::{BinaryCommand, HEADER_BYTES, ResponseHeader, encode_request};
use node::clock::ManualClock;
use node::config::NodeConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// How long a test waits for a reply (or for a condition) before it fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The manual clock's start: a Unix time in milliseconds, well after the 30-day relative range.
pub const START_MS: u64 = 1_700_000_000_000;

/// A node serving RESP and memcached on loopback until dropped.
pub struct TestNode {
    pub memcached_addr: SocketAddr,
    pub client_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    /// The node's clock, unless it runs on the system clock ([`TestNode::start_on_system_clock`]).
    pub clock: ManualClock,
    shutdown_opt: Option<oneshot::Sender<()>>,
}

impl TestNode {
    /// A node with the default configuration.
    pub async fn start() -> TestNode {
        TestNode::start_with(|_| {}).await
    }

    /// A node whose configuration `adjust` changes first (a password, a smaller value limit).
    pub async fn start_with(adjust: impl FnOnce(&mut NodeConfig)) -> TestNode {
        TestNode::start_inner(adjust, false).await
    }

    /// A node on the system clock, for tests of a cluster, whose timers must run.
    pub async fn start_on_system_clock(adjust: impl FnOnce(&mut NodeConfig)) -> TestNode {
        TestNode::start_inner(adjust, true).await
    }

    async fn start_inner(adjust: impl FnOnce(&mut NodeConfig), system_clock: bool) -> TestNode {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut config = NodeConfig::with_name("memcached-test");
        config.client_addr = loopback;
        config.memcached_addr_opt = Some(loopback);
        config.peer_addr = loopback;
        config.admin_addr_opt = None;
        config.num_partitions = 16;
        adjust(&mut config);
        let listeners = node::Listeners::bind(&config).expect("loopback ports bind");
        let memcached_addr = listeners.memcached_addr().expect("memcached is configured");
        let client_addr = listeners.client_addr();
        let peer_addr = listeners.peer_addr();
        let clock = ManualClock::new(START_MS);
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let node_clock: Arc<dyn node::clock::Clock> = if system_clock {
            Arc::new(node::clock::SystemClock)
        } else {
            Arc::new(clock.clone())
        };
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = shutdown_rx.await;
            };
            node::run_with_clock(config, listeners, node_clock, shutdown)
                .await
                .expect("the node runs");
        });
        TestNode {
            memcached_addr,
            client_addr,
            peer_addr,
            clock,
            shutdown_opt: Some(shutdown_tx),
        }
    }

    pub async fn text(&self) -> TextClient {
        TextClient::connect(self.memcached_addr).await
    }

    pub async fn binary(&self) -> BinaryClient {
        BinaryClient {
            stream: connect(self.memcached_addr).await,
            input: BytesMut::new(),
            next_opaque: 1,
        }
    }

    /// Runs one RESP command on database 0 and returns the raw reply.
    pub async fn resp(&self, args: &[&[u8]]) -> Vec<u8> {
        let mut stream = connect(self.client_addr).await;
        resp_call(&mut stream, args).await
    }

    /// Runs one RESP command on database `db` and returns the raw reply.
    pub async fn resp_in(&self, db: u8, args: &[&[u8]]) -> Vec<u8> {
        let mut stream = connect(self.client_addr).await;
        let db = db.to_string();
        assert_eq!(
            resp_call(&mut stream, &[b"SELECT", db.as_bytes()]).await,
            b"+OK\r\n"
        );
        resp_call(&mut stream, args).await
    }

    /// Waits until `condition` holds, polling; fails after [`DEADLINE`].
    pub async fn wait_for<F, Fut>(&self, what: &str, mut condition: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !condition().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting until {what}"
            );
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown_opt.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Sends one RESP command on `stream` and reads its reply.
async fn resp_call(stream: &mut TcpStream, args: &[&[u8]]) -> Vec<u8> {
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg);
        request.extend_from_slice(b"\r\n");
    }
    stream.write_all(&request).await.expect("write");
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    // RESP replies of these tests are one line, or a bulk header line and one more.
    loop {
        let read = tokio::time::timeout(DEADLINE, stream.read(&mut chunk))
            .await
            .expect("a RESP reply in time")
            .expect("read");
        assert!(read > 0, "the RESP connection closed");
        reply.extend_from_slice(&chunk[..read]);
        if resp_reply_is_complete(&reply) {
            return reply;
        }
    }
}

fn resp_reply_is_complete(reply: &[u8]) -> bool {
    let Some(line_end) = reply.windows(2).position(|pair| pair == b"\r\n") else {
        return false;
    };
    if reply[0] != b'$' {
        return true;
    }
    let length: i64 = std::str::from_utf8(&reply[1..line_end])
        .expect("ascii length")
        .parse()
        .expect("a bulk length");
    length < 0 || reply.len() >= line_end + 2 + length as usize + 2
}

async fn connect(addr: SocketAddr) -> TcpStream {
    tokio::time::timeout(DEADLINE, TcpStream::connect(addr))
        .await
        .expect("connects in time")
        .expect("connects")
}

/// A text-protocol client that checks replies byte for byte.
pub struct TextClient {
    stream: TcpStream,
    input: BytesMut,
}

impl TextClient {
    pub async fn connect(address: SocketAddr) -> TextClient {
        TextClient {
            stream: connect(address).await,
            input: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, request: impl AsRef<[u8]>) {
        self.stream
            .write_all(request.as_ref())
            .await
            .expect("write");
    }

    /// Reads exactly `expect.len()` bytes and checks they are `expect`.
    pub async fn expect(&mut self, expect: impl AsRef<[u8]>) {
        let expect = expect.as_ref();
        let got = self.read_exactly(expect.len()).await;
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expect),
        );
    }

    /// Sends `request` and checks the whole reply is `expect`.
    pub async fn check(&mut self, request: impl AsRef<[u8]>, expect: impl AsRef<[u8]>) {
        let request = request.as_ref();
        self.send(request).await;
        let expect = expect.as_ref();
        let got = self.read_exactly(expect.len()).await;
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expect),
            "reply to {:?}",
            String::from_utf8_lossy(request)
        );
    }

    /// Sends each request and checks its reply, in order.
    pub async fn conversation(&mut self, steps: &[(&str, &str)]) {
        for (request, expect) in steps {
            self.check(request, expect).await;
        }
    }

    /// The next line, without its `\r\n`.
    pub async fn read_line(&mut self) -> String {
        loop {
            if let Some(end) = self.input.windows(2).position(|pair| pair == b"\r\n") {
                let line = self.input.split_to(end + 2);
                return String::from_utf8_lossy(&line[..end]).into_owned();
            }
            self.fill().await;
        }
    }

    pub async fn read_exactly(&mut self, length: usize) -> Vec<u8> {
        while self.input.len() < length {
            self.fill().await;
        }
        self.input.split_to(length).to_vec()
    }

    /// The CAS value `gets` reports for `key`.
    pub async fn cas_of(&mut self, key: &str) -> u64 {
        self.send(format!("gets {key}\r\n")).await;
        let line = self.read_line().await;
        let cas = line
            .split(' ')
            .nth(4)
            .unwrap_or_else(|| panic!("no CAS in {line:?}"))
            .parse()
            .expect("a numeric CAS");
        let _value = self.read_line().await;
        assert_eq!(self.read_line().await, "END");
        cas
    }

    /// `STAT` lines of `stats <arguments>` as name/value pairs, up to `END`.
    pub async fn stats(&mut self, arguments: &str) -> Vec<(String, String)> {
        self.send(format!("stats {arguments}\r\n")).await;
        let mut stats = Vec::new();
        loop {
            let line = self.read_line().await;
            if line == "END" {
                return stats;
            }
            let mut words = line.splitn(3, ' ');
            assert_eq!(words.next(), Some("STAT"), "{line}");
            let name = words.next().expect("a name").to_string();
            let value = words.next().unwrap_or_default().to_string();
            stats.push((name, value));
        }
    }

    /// Whether the server closed the connection (reads until EOF, failing on more data).
    pub async fn expect_closed(&mut self) {
        let mut chunk = [0u8; 1024];
        let read = tokio::time::timeout(DEADLINE, self.stream.read(&mut chunk))
            .await
            .expect("the server closes in time");
        match read {
            Ok(0) | Err(_) => {}
            Ok(length) => panic!(
                "expected the connection closed, got {:?}",
                String::from_utf8_lossy(&chunk[..length])
            ),
        }
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 16 * 1024];
        let read = tokio::time::timeout(DEADLINE, self.stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no reply in time; have {:?}",
                    String::from_utf8_lossy(&self.input)
                )
            })
            .expect("read");
        assert!(
            read > 0,
            "the server closed the connection; have {:?}",
            String::from_utf8_lossy(&self.input)
        );
        self.input.extend_from_slice(&chunk[..read]);
    }
}

/// One binary response packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub header: ResponseHeader,
    pub extras: Vec<u8>,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

impl Response {
    pub fn status(&self) -> u16 {
        self.header.status
    }

    /// The client flags a get answer carries as its extras.
    pub fn client_flags(&self) -> u32 {
        let extras: [u8; 4] = self.extras[..].try_into().expect("4 bytes of flags");
        u32::from_be_bytes(extras)
    }

    /// The counter an INCREMENT/DECREMENT answer carries.
    pub fn counter(&self) -> u64 {
        let value: [u8; 8] = self.value[..].try_into().expect("8 bytes of counter");
        u64::from_be_bytes(value)
    }
}

/// A binary-protocol client.
pub struct BinaryClient {
    stream: TcpStream,
    input: BytesMut,
    next_opaque: u32,
}

impl BinaryClient {
    /// Sends `command`; returns the opaque it carries.
    pub async fn send(&mut self, command: &BinaryCommand) -> u32 {
        let opaque = self.next_opaque;
        self.next_opaque += 1;
        let mut request = BytesMut::new();
        encode_request(&mut request, opaque, command);
        self.send_raw(&request).await;
        opaque
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Sends `command` and reads one response, checking it answers this request.
    pub async fn call(&mut self, command: &BinaryCommand) -> Response {
        let opaque = self.send(command).await;
        let response = self.read().await;
        assert_eq!(response.header.opaque, opaque, "{response:?}");
        response
    }

    pub async fn read(&mut self) -> Response {
        while self.input.len() < HEADER_BYTES {
            self.fill().await;
        }
        let header_bytes: [u8; HEADER_BYTES] = self.input[..HEADER_BYTES]
            .try_into()
            .expect("a whole header");
        let header = ResponseHeader::parse(&header_bytes);
        assert_eq!(header.magic, 0x81, "{header:?}");
        let total = HEADER_BYTES + header.total_body_length as usize;
        while self.input.len() < total {
            self.fill().await;
        }
        self.input.advance(HEADER_BYTES);
        let extras = self
            .input
            .split_to(usize::from(header.extras_length))
            .to_vec();
        let key = self.input.split_to(usize::from(header.key_length)).to_vec();
        let value_length = header.total_body_length as usize - extras.len() - key.len();
        let value = self.input.split_to(value_length).to_vec();
        Response {
            header,
            extras,
            key,
            value,
        }
    }

    /// Reads responses up to and including the one with `opaque` (a NOOP ending a pipeline).
    pub async fn read_until(&mut self, opaque: u32) -> Vec<Response> {
        let mut responses = Vec::new();
        loop {
            let response = self.read().await;
            let done = response.header.opaque == opaque;
            responses.push(response);
            if done {
                return responses;
            }
        }
    }

    /// The statistics a STAT with `group_opt` answers, as name/value pairs.
    pub async fn stats(&mut self, group_opt: Option<&str>) -> Vec<(String, String)> {
        let command = BinaryCommand::Stat {
            group_opt: group_opt.map(|group| bytes::Bytes::copy_from_slice(group.as_bytes())),
        };
        let opaque = self.send(&command).await;
        let mut stats = Vec::new();
        loop {
            let response = self.read().await;
            assert_eq!(response.header.opaque, opaque);
            assert_eq!(response.status(), 0, "{response:?}");
            if response.key.is_empty() && response.value.is_empty() {
                return stats;
            }
            stats.push((
                String::from_utf8_lossy(&response.key).into_owned(),
                String::from_utf8_lossy(&response.value).into_owned(),
            ));
        }
    }

    pub async fn expect_closed(&mut self) {
        let mut chunk = [0u8; 1024];
        let read = tokio::time::timeout(DEADLINE, self.stream.read(&mut chunk))
            .await
            .expect("the server closes in time");
        match read {
            Ok(0) | Err(_) => {}
            Ok(length) => panic!("expected the connection closed, got {:?}", &chunk[..length]),
        }
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 16 * 1024];
        let read = tokio::time::timeout(DEADLINE, self.stream.read(&mut chunk))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(read > 0, "the server closed the connection");
        self.input.extend_from_slice(&chunk[..read]);
    }
}
