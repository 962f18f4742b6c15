//! The admin HTTP API of a real `scd` process: `/health`, `/metrics` (Prometheus text with
//! commands by name) and `/stats` (the same as JSON).

mod common;

use std::io::{BufReader, Write};

use common::{Scd, read_reply, request};

fn run(stream: &mut std::net::TcpStream, args: &[&[u8]]) -> Vec<u8> {
    stream.write_all(&request(args)).expect("send");
    read_reply(&mut BufReader::new(stream)).expect("a reply")
}

#[test]
fn health_says_ok_and_names_the_node() {
    let node = Scd::builder().name("admin-test-node").start();
    let response = node.admin_get("/health");
    assert_eq!(response.status, 200, "{response:?}");
    let health: serde_json::Value = serde_json::from_str(&response.body).expect("JSON");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["node"], "admin-test-node", "{health}");
    assert_eq!(node.admin_get("/no-such-page").status, 404);
}

/// The value of the metric line that starts with `name_and_labels` followed by a space.
fn metric(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(name_and_labels)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[test]
fn metrics_count_commands_by_name_and_report_keys_memory_and_connections() {
    let node = Scd::start(&[]);
    let before = node.admin_get("/metrics").body;
    // A command never called may be left out.
    assert_eq!(
        metric(&before, "scd_commands_total{command=\"get\"}").unwrap_or(0.0),
        0.0
    );
    let mut stream = node.connect();
    assert_eq!(run(&mut stream, &[b"SET", b"k", b"v"]), b"+OK\r\n");
    assert_eq!(run(&mut stream, &[b"GET", b"k"]), b"$1\r\nv\r\n");
    assert_eq!(run(&mut stream, &[b"GET", b"k"]), b"$1\r\nv\r\n");
    assert!(run(&mut stream, &[b"INCR", b"k"]).starts_with(b"-ERR"));
    // Errors before any command runs: an unknown command, a wrong argument count.
    assert!(run(&mut stream, &[b"NOSUCHCOMMAND"]).starts_with(b"-ERR unknown command"));
    assert!(run(&mut stream, &[b"GET"]).starts_with(b"-ERR wrong number"));

    let response = node.admin_get("/metrics");
    assert_eq!(response.status, 200);
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain")
            || content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let metrics = response.body;
    assert_eq!(
        metric(&metrics, "scd_commands_total{command=\"get\"}"),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "scd_commands_total{command=\"set\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, "scd_command_errors_total{command=\"incr\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, "scd_command_errors_total{command=\"get\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, "scd_client_errors_total{kind=\"command\"}"),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "scd_command_duration_seconds_count{command=\"get\"}"
        ),
        Some(3.0)
    );
    assert_eq!(metric(&metrics, "scd_keys"), Some(1.0));
    assert_eq!(metric(&metrics, "scd_connections"), Some(1.0));
    assert!(metric(&metrics, "scd_memory_used_bytes").is_some_and(|bytes| bytes > 0.0));
    assert!(metric(&metrics, "scd_rss_bytes").is_some_and(|bytes| bytes > 0.0));
    assert!(metrics.trim_end().ends_with("# EOF") || metrics.contains("# TYPE"));
}

#[test]
fn stats_are_json_with_the_same_figures() {
    let node = Scd::start(&[]);
    let mut stream = node.connect();
    for index in 0..5 {
        let key = format!("k{index}");
        assert_eq!(
            run(&mut stream, &[b"SET", key.as_bytes(), b"v"]),
            b"+OK\r\n"
        );
    }
    assert_eq!(run(&mut stream, &[b"GET", b"k1"]), b"$1\r\nv\r\n");
    let response = node.admin_get("/stats");
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .is_some_and(|value| value.starts_with("application/json"))
    );
    let stats: serde_json::Value = serde_json::from_str(&response.body).expect("JSON");
    assert_eq!(stats["keys"], 5, "{stats}");
    assert_eq!(stats["connections"], 1, "{stats}");
    assert_eq!(
        stats["commands"]["by_command"]["set"]["calls"], 5,
        "{stats}"
    );
    assert_eq!(
        stats["commands"]["by_command"]["get"]["calls"], 1,
        "{stats}"
    );
    assert!(
        stats["memory_used_bytes"]
            .as_u64()
            .is_some_and(|bytes| bytes > 0),
        "{stats}"
    );
}
