//! The admin HTTP server on a real loopback listener, driven by a tiny HTTP/1.1 client.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use admin::{
    AdminLimits, AdminRejectReason, AdminSource, AdminState, CommandStats, GaugeSample, Health,
    Metrics,
};
use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any step of a test may take before it counts as hung.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

static COMMAND_NAMES: &[&str] = &["get", "set", "del"];

struct TestSource {
    is_serving: AtomicBool,
    is_allowed: AtomicBool,
    last_peer_ip: Mutex<Option<IpAddr>>,
}

impl AdminSource for TestSource {
    fn health(&self) -> Health {
        if self.is_serving.load(Ordering::Relaxed) {
            Health::serving().with_detail("node", "node-a")
        } else {
            Health::not_serving("joining the cluster").with_detail("node", "node-a")
        }
    }

    fn stats(&self) -> Value {
        json!({ "node": "node-a", "uptime_seconds": 42, "commands": "overridden" })
    }

    fn cluster(&self) -> Value {
        json!({
            "node": "node-a",
            "nodes": [
                { "name": "node-a", "state": "alive", "sessions": 10 },
                { "name": "node-b", "state": "suspect", "sessions": 7 },
            ],
            "partitions": [
                { "partition": 0, "epoch": 2, "primary": "node-a", "backups": ["node-b"] },
                { "partition": 1, "epoch": 5, "primary": "node-b", "backups": ["node-a"] },
            ],
        })
    }

    fn peer_allowed(&self, ip: IpAddr) -> bool {
        *self.last_peer_ip.lock().expect("test mutex") = Some(ip);
        self.is_allowed.load(Ordering::Relaxed)
    }
}

struct TestServer {
    addr: SocketAddr,
    source: Arc<TestSource>,
    metrics: Arc<Metrics>,
    shutdown_tx: Option<oneshot::Sender<()>>,
    serve_task: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    async fn start() -> TestServer {
        TestServer::start_with(AdminLimits::default(), Router::new()).await
    }

    async fn start_with(limits: AdminLimits, extra_routes: Router) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let source = Arc::new(TestSource {
            is_serving: AtomicBool::new(true),
            is_allowed: AtomicBool::new(true),
            last_peer_ip: Mutex::new(None),
        });
        let metrics = Arc::new(Metrics::new(Arc::new(CommandStats::new(COMMAND_NAMES))));
        metrics.set_on_demand_gauges(Box::new(|| {
            vec![
                GaugeSample {
                    name: "keys",
                    help: "Keys stored.",
                    value: 12.0,
                },
                GaugeSample {
                    name: "memory_used_bytes",
                    help: "Memory used by values.",
                    value: 4096.0,
                },
            ]
        }));
        let state =
            AdminState::new(Arc::clone(&metrics), Arc::clone(&source) as _).with_limits(limits);
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let serve_task = tokio::spawn(admin::serve_with_routes(
            listener,
            state,
            extra_routes,
            async move {
                let _ = shutdown_rx.await;
            },
        ));
        TestServer {
            addr,
            source,
            metrics,
            shutdown_tx: Some(shutdown_tx),
            serve_task,
        }
    }

    async fn get(&self, path: &str) -> HttpResponse {
        self.request(&format!(
            "GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n"
        ))
        .await
    }

    async fn request(&self, raw_request: &str) -> HttpResponse {
        let mut stream = connect(self.addr).await;
        within(stream.write_all(raw_request.as_bytes()))
            .await
            .expect("write request");
        read_response(&mut stream)
            .await
            .expect("a complete response")
    }
}

#[derive(Debug)]
struct HttpResponse {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

impl HttpResponse {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    fn json(&self) -> Value {
        assert_eq!(self.header("content-type"), "application/json", "{self:?}");
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP_TIMEOUT, future)
        .await
        .expect("step did not finish in time")
}

async fn connect(addr: SocketAddr) -> TcpStream {
    within(TcpStream::connect(addr)).await.expect("connect")
}

/// Reads one response: the head up to the blank line, then `content-length` bytes. `None`
/// if the connection ends first.
async fn read_response(stream: &mut TcpStream) -> Option<HttpResponse> {
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(position) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break position;
        }
        let mut chunk = [0u8; 4096];
        let num_bytes = within(stream.read(&mut chunk)).await.ok()?;
        if num_bytes == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..num_bytes]);
    };
    let head = String::from_utf8(buffer[..head_end].to_vec()).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())?;
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let content_length: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < content_length {
        let mut chunk = [0u8; 4096];
        let num_bytes = within(stream.read(&mut chunk)).await.ok()?;
        if num_bytes == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..num_bytes]);
    }
    body.truncate(content_length);
    Some(HttpResponse {
        status,
        headers,
        body: String::from_utf8(body).expect("UTF-8 body"),
    })
}

/// Reads until the server closes the connection; returns what it sent.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        match within(stream.read(&mut chunk)).await {
            Ok(0) | Err(_) => break,
            Ok(num_bytes) => received.extend_from_slice(&chunk[..num_bytes]),
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn health_is_ok_while_serving_and_503_with_the_reason_otherwise() {
    let server = TestServer::start().await;
    let response = server.get("/health").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json(), json!({ "status": "ok", "node": "node-a" }));

    server.source.is_serving.store(false, Ordering::Relaxed);
    let response = server.get("/health").await;
    assert_eq!(response.status, 503);
    assert_eq!(
        response.json(),
        json!({ "status": "unavailable", "reason": "joining the cluster", "node": "node-a" })
    );
}

/// Checks the OpenMetrics text line by line: descriptors before samples, each family typed
/// once, sample names belonging to their family, label syntax, numeric values, histogram
/// buckets cumulative with `+Inf` equal to `_count`, and `# EOF` last.
fn check_openmetrics(text: &str) {
    let mut families: HashMap<String, String> = HashMap::new();
    let mut current_family = String::new();
    let mut bucket_counts: HashMap<String, Vec<f64>> = HashMap::new();
    let mut counts: HashMap<String, f64> = HashMap::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.last(),
        Some(&"# EOF"),
        "exposition must end with # EOF"
    );
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let keyword = parts.next().unwrap_or_default();
            let name = parts.next().unwrap_or_default();
            let argument = parts.next().unwrap_or_default();
            assert!(is_metric_name(name), "bad family name in {line:?}");
            match keyword {
                "TYPE" => {
                    assert!(
                        ["counter", "gauge", "histogram", "info", "unknown"].contains(&argument),
                        "bad type in {line:?}"
                    );
                    let previous = families.insert(name.to_owned(), argument.to_owned());
                    assert!(previous.is_none(), "family {name} typed twice");
                    current_family = name.to_owned();
                }
                "HELP" => assert!(!argument.is_empty(), "empty help in {line:?}"),
                "UNIT" => assert!(name.ends_with(&format!("_{argument}")), "{line:?}"),
                _ => panic!("unknown descriptor {line:?}"),
            }
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "bad line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => other
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (sample_name, labels) = match series.split_once('{') {
            Some((name, labels)) => (
                name,
                labels
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("{line:?}")),
            ),
            None => (series, ""),
        };
        let family_type = families
            .get(&current_family)
            .unwrap_or_else(|| panic!("sample before any TYPE: {line:?}"));
        let suffix = sample_name
            .strip_prefix(current_family.as_str())
            .unwrap_or_else(|| panic!("{sample_name} is not in family {current_family}"));
        let allowed_suffixes: &[&str] = match family_type.as_str() {
            "counter" => &["_total", "_created"],
            "gauge" => &[""],
            "histogram" => &["_bucket", "_count", "_sum", "_created"],
            _ => &["", "_info"],
        };
        assert!(
            allowed_suffixes.contains(&suffix),
            "{line:?} in a {family_type}"
        );
        let mut le = None;
        let mut other_labels = Vec::new();
        for pair in split_labels(labels) {
            let (key, quoted) = pair.split_once('=').unwrap_or_else(|| panic!("{line:?}"));
            assert!(
                is_metric_name(key) && !key.contains(':'),
                "bad label name in {line:?}"
            );
            assert!(
                quoted.len() >= 2 && quoted.starts_with('"') && quoted.ends_with('"'),
                "unquoted label value in {line:?}"
            );
            if key == "le" {
                le = Some(quoted.trim_matches('"').to_owned());
            } else {
                other_labels.push(pair);
            }
        }
        let series_key = format!("{current_family}{{{}}}", other_labels.join(","));
        match suffix {
            "_bucket" => {
                let le = le.unwrap_or_else(|| panic!("bucket without le: {line:?}"));
                let buckets = bucket_counts.entry(series_key).or_default();
                if let Some(previous) = buckets.last() {
                    assert!(value >= *previous, "buckets not cumulative at {line:?}");
                }
                buckets.push(value);
                if le == "+Inf" {
                    assert!(buckets.len() > 1, "{line:?}");
                }
            }
            "_count" => {
                counts.insert(series_key, value);
            }
            _ => {}
        }
    }
    for (series, buckets) in &bucket_counts {
        assert_eq!(
            buckets.last(),
            counts.get(series),
            "+Inf bucket != _count for {series}"
        );
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Splits `a="x",b="y,z"` at the commas outside quotes.
fn split_labels(labels: &str) -> Vec<&str> {
    let mut pairs = Vec::new();
    let (mut start, mut in_quotes, mut escaped) = (0, false, false);
    for (index, c) in labels.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => {
                pairs.push(&labels[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    if start < labels.len() {
        pairs.push(&labels[start..]);
    }
    pairs
}

#[test]
fn the_exposition_checker_rejects_broken_text() {
    let valid = "# TYPE a counter\na_total 1\n# EOF\n";
    check_openmetrics(valid);
    for broken in [
        "# TYPE a counter\na_total 1\n",
        "a_total 1\n# EOF\n",
        "# TYPE a counter\nb_total 1\n# EOF\n",
        "# TYPE a gauge\na_total 1\n# EOF\n",
        "# TYPE a counter\na_total one\n# EOF\n",
        "# TYPE a counter\na_total{x=1} 1\n# EOF\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n# EOF\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_count 2\n# EOF\n",
    ] {
        let result = std::panic::catch_unwind(|| check_openmetrics(broken));
        assert!(result.is_err(), "accepted {broken:?}");
    }
}

#[tokio::test]
async fn metrics_are_served_as_valid_openmetrics_text() {
    let server = TestServer::start().await;
    let command_stats = server.metrics.command_stats();
    command_stats.record(0, 15_000, false);
    command_stats.record(0, 3_000_000, true);
    server.metrics.heartbeats_sent.inc();
    server.metrics.replication_lag_gauge("node \"b\"").set(0.5);

    let response = server.get("/metrics").await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    check_openmetrics(&response.body);
    for line in [
        "scd_commands_total{command=\"get\"} 2",
        "scd_command_errors_total{command=\"get\"} 1",
        "scd_command_duration_seconds_count{command=\"get\"} 2",
        "scd_heartbeats_sent_total 1",
        "scd_keys 12.0",
        "scd_replication_lag_seconds{peer=\"node \\\"b\\\"\"} 0.5",
    ] {
        assert!(
            response.body.lines().any(|l| l == line),
            "missing {line:?}:\n{}",
            response.body
        );
    }
    assert!(
        !response.body.contains("command=\"set\""),
        "uncalled commands are skipped"
    );
}

#[tokio::test]
async fn stats_merge_the_node_numbers_with_command_counts_and_percentiles() {
    let server = TestServer::start().await;
    let command_stats = server.metrics.command_stats();
    for _ in 0..99 {
        command_stats.record(1, 8_000, false);
    }
    command_stats.record(1, 40_000, true);

    let response = server.get("/stats").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("cache-control"), "no-store");
    let stats = response.json();
    assert_eq!(stats["node"], "node-a");
    assert_eq!(stats["uptime_seconds"], 42);
    let commands = &stats["commands"];
    assert_eq!(
        commands["calls"], 100,
        "the crate's keys win over the node's: {stats}"
    );
    assert_eq!(commands["errors"], 1);
    let set = &commands["by_command"]["set"];
    assert_eq!(set["calls"], 100);
    assert_eq!(set["errors"], 1);
    // 99 calls in (0, 10 µs], one in (25 µs, 50 µs]: p50 interpolates in the first bucket.
    assert_eq!(set["p50_us"], 5.1);
    assert_eq!(set["p90_us"], 9.1);
    assert_eq!(set["p99_us"], 10.0);
    assert!(commands["by_command"].get("get").is_none());
    assert_eq!(
        stats["gauges"],
        json!({ "keys": 12.0, "memory_used_bytes": 4096.0 })
    );
    assert_eq!(
        stats["metrics"]["client_connections_rejected_total"]["max_clients"],
        0
    );
}

#[tokio::test]
async fn cluster_is_served_as_the_node_builds_it() {
    let server = TestServer::start().await;
    let response = server.get("/cluster").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json(), server.source.cluster());
}

#[tokio::test]
async fn the_dashboard_is_one_self_contained_page_polling_stats_and_cluster() {
    let server = TestServer::start().await;
    let response = server.get("/").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), "text/html; charset=utf-8");
    assert!(
        response
            .header("content-security-policy")
            .contains("default-src 'none'")
    );
    let page = &response.body;
    assert!(page.starts_with("<!doctype html>"));
    assert!(page.contains("fetchJson(\"/stats\")") && page.contains("fetchJson(\"/cluster\")"));
    assert!(page.contains("POLL_INTERVAL_MS = 1000"));
    for external in [
        "src=\"http",
        "href=\"http",
        "@import",
        "<link",
        "src=\"//",
        "url(",
    ] {
        assert!(
            !page.contains(external),
            "dashboard loads an external asset: {external}"
        );
    }
    assert!(
        !page.contains("innerHTML"),
        "node strings must be inserted as text"
    );
}

#[tokio::test]
async fn unknown_paths_get_404_and_wrong_methods_405_as_json() {
    let server = TestServer::start().await;
    let response = server.get("/nope").await;
    assert_eq!(response.status, 404);
    assert_eq!(response.json(), json!({ "error": "not found" }));

    let response = server
        .request(
            "POST /health HTTP/1.1\r\nhost: test\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )
        .await;
    assert_eq!(response.status, 405);
    assert_eq!(response.json(), json!({ "error": "method not allowed" }));
}

#[tokio::test]
async fn a_peer_outside_the_allow_list_is_refused_before_its_request_is_read() {
    let server = TestServer::start().await;
    server.source.is_allowed.store(false, Ordering::Relaxed);
    let mut stream = connect(server.addr).await;
    let received = read_until_closed(&mut stream).await;
    assert!(
        received.starts_with("HTTP/1.1 403 Forbidden\r\n"),
        "{received:?}"
    );
    assert!(
        received.ends_with("{\"error\":\"address not allowed\"}"),
        "{received:?}"
    );
    assert_eq!(
        *server.source.last_peer_ip.lock().expect("test mutex"),
        Some(IpAddr::from([127, 0, 0, 1]))
    );
    assert_eq!(
        server
            .metrics
            .admin_connections_rejected
            .get(AdminRejectReason::NotAllowed)
            .get(),
        1
    );

    server.source.is_allowed.store(true, Ordering::Relaxed);
    assert_eq!(server.get("/health").await.status, 200);
}

#[tokio::test]
async fn an_oversized_head_gets_431_and_an_oversized_body_413() {
    let limits = AdminLimits {
        header_bytes_max: 1024,
        body_bytes_max: 100,
        ..AdminLimits::default()
    };
    let server = TestServer::start_with(limits, Router::new()).await;

    let big_header = "x".repeat(2000);
    let response = server
        .request(&format!(
            "GET /health HTTP/1.1\r\nhost: test\r\nx-big: {big_header}\r\nconnection: close\r\n\r\n"
        ))
        .await;
    assert_eq!(response.status, 431);
    assert_eq!(
        response.json()["error"],
        "request head is larger than header-bytes-max (1024)"
    );

    let long_path = format!("/health?{}", "q".repeat(2000));
    assert_eq!(server.get(&long_path).await.status, 431);

    let response = server
        .request("GET /health HTTP/1.1\r\nhost: test\r\ncontent-length: 101\r\nconnection: close\r\n\r\n")
        .await;
    assert_eq!(response.status, 413);

    let response = server
        .request("GET /health HTTP/1.1\r\nhost: test\r\ncontent-length: 100\r\nconnection: close\r\n\r\n")
        .await;
    // Not sent yet, but allowed: the body is never read for GET /health.
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn connections_beyond_the_maximum_get_503_until_one_closes() {
    let limits = AdminLimits {
        connections_max: 1,
        ..AdminLimits::default()
    };
    let server = TestServer::start_with(limits, Router::new()).await;

    // A keep-alive connection that has been served holds the only permit.
    let mut first = connect(server.addr).await;
    within(first.write_all(b"GET /health HTTP/1.1\r\nhost: test\r\n\r\n"))
        .await
        .expect("write");
    assert_eq!(
        read_response(&mut first).await.expect("response").status,
        200
    );

    let mut second = connect(server.addr).await;
    let received = read_until_closed(&mut second).await;
    assert!(
        received.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{received:?}"
    );
    assert_eq!(
        server
            .metrics
            .admin_connections_rejected
            .get(AdminRejectReason::TooManyConnections)
            .get(),
        1
    );

    drop(first);
    // The server releases the permit once it sees the close; wait for that, bounded.
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        let mut stream = connect(server.addr).await;
        within(stream.write_all(b"GET /health HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"))
            .await
            .ok();
        if let Some(response) = read_response(&mut stream).await
            && response.status == 200
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "permit never released"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_handler_slower_than_the_request_timeout_gets_503() {
    let limits = AdminLimits {
        request_timeout_ms: 100,
        ..AdminLimits::default()
    };
    let extra_routes = Router::new().route("/stuck", get(std::future::pending::<&'static str>));
    let server = TestServer::start_with(limits, extra_routes).await;
    let response = server.get("/stuck").await;
    assert_eq!(response.status, 503);
    assert_eq!(
        response.json()["error"],
        "request took longer than request-timeout-ms (100)"
    );
}

#[tokio::test]
async fn extra_routes_are_served_but_never_shadow_the_built_in_ones() {
    let extra_routes = Router::new()
        .route("/lb/haproxy", get(|| async { "backend scd\n" }))
        .route("/health", get(|| async { "shadowed" }));
    let server = TestServer::start_with(AdminLimits::default(), extra_routes).await;
    let response = server.get("/lb/haproxy").await;
    assert_eq!(
        (response.status, response.body.as_str()),
        (200, "backend scd\n")
    );
    assert_eq!(server.get("/health").await.json()["status"], "ok");
    assert_eq!(server.get("/lb/nginx").await.status, 404);
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let limits = AdminLimits {
        idle_timeout_ms: 100,
        ..AdminLimits::default()
    };
    let server = TestServer::start_with(limits, Router::new()).await;
    let mut stream = connect(server.addr).await;
    let started = std::time::Instant::now();
    assert_eq!(read_until_closed(&mut stream).await, "");
    assert!(started.elapsed() < STEP_TIMEOUT);
}

#[tokio::test]
async fn a_connection_that_trickles_its_request_is_closed_at_its_lifetime() {
    let limits = AdminLimits {
        idle_timeout_ms: 60_000,
        connection_lifetime_ms: 200,
        ..AdminLimits::default()
    };
    let server = TestServer::start_with(limits, Router::new()).await;
    let mut stream = connect(server.addr).await;
    within(stream.write_all(b"GET /health HTTP/1.1\r\nhost: te"))
        .await
        .expect("write");
    let started = std::time::Instant::now();
    let received = read_until_closed(&mut stream).await;
    assert!(!received.contains("200 OK"), "{received:?}");
    assert!(
        started.elapsed() < STEP_TIMEOUT,
        "closed by the lifetime, not the idle timeout"
    );
}

#[tokio::test]
async fn the_shutdown_future_stops_the_server() {
    let mut server = TestServer::start().await;
    // An idle keep-alive connection must not hold the shutdown up.
    let mut idle = connect(server.addr).await;
    within(idle.write_all(b"GET /health HTTP/1.1\r\nhost: test\r\n\r\n"))
        .await
        .expect("write");
    assert_eq!(
        read_response(&mut idle).await.expect("response").status,
        200
    );

    server
        .shutdown_tx
        .take()
        .expect("not yet shut down")
        .send(())
        .expect("server running");
    let result = within(&mut server.serve_task)
        .await
        .expect("serve task did not panic");
    assert!(result.is_ok(), "{result:?}");
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "listener still accepting"
    );
    assert_eq!(read_until_closed(&mut idle).await, "");
}

#[tokio::test]
async fn limits_configured_as_practically_never_do_not_panic() {
    let limits = AdminLimits {
        connections_max: usize::MAX,
        header_bytes_max: usize::MAX,
        body_bytes_max: usize::MAX,
        request_timeout_ms: u64::MAX,
        idle_timeout_ms: u64::MAX,
        connection_lifetime_ms: u64::MAX,
    };
    let server = TestServer::start_with(limits, Router::new()).await;
    assert_eq!(server.get("/health").await.status, 200);
}
