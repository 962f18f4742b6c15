//! `scd status`: asks a node's admin port for `GET /cluster` and prints the cluster as it sees it.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::cli::StatusArgs;

pub(crate) fn status(args: &StatusArgs) -> anyhow::Result<()> {
    let body = http_get(&args.admin, "/cluster")?;
    let cluster: Value =
        serde_json::from_str(&body).context("the admin port did not answer JSON")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&cluster)?);
    } else {
        print!("{}", render(&cluster));
    }
    Ok(())
}

/// A plain HTTP/1.0 GET: enough for our own admin port, and no client library to build.
/// The answer is bounded (16 MiB) and the exchange times out after 5 s.
pub(crate) fn http_get(admin: &str, path: &str) -> anyhow::Result<String> {
    let address = admin
        .to_socket_addrs()
        .with_context(|| format!("--admin '{admin}' is not a host:port address"))?
        .next()
        .with_context(|| format!("--admin '{admin}' resolves to no address"))?;
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&address, timeout).with_context(|| {
        format!("cannot reach the admin port at {address}: is scd running there?")
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {address}\r\nAccept: application/json\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream
        .take(16 << 20)
        .read_to_end(&mut response)
        .context("reading the admin answer")?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("malformed HTTP answer")?;
    let status_line = head.lines().next().unwrap_or_default();
    if status_line.split_whitespace().nth(1) != Some("200") {
        bail!("{address}{path} answered '{status_line}': {body}");
    }
    Ok(body.to_string())
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(text) => text.clone(),
        Value::Number(number) => match number.as_f64() {
            Some(float) if !number.is_i64() && !number.is_u64() => format!("{float:.1}"),
            _ => number.to_string(),
        },
        other => other.to_string(),
    }
}

/// The table `scd status` prints: one row per node this node knows, alive or not.
pub(crate) fn render(cluster: &Value) -> String {
    let mut out = String::new();
    let nodes = cluster["nodes"].as_array().cloned().unwrap_or_default();
    let alive = nodes.iter().filter(|node| node["state"] == "alive").count();
    out.push_str(&format!(
        "cluster '{}' as seen by {} — {} of {} nodes alive, {} partitions, {} backup(s), write-{}\n\n",
        text(&cluster["cluster"]),
        text(&cluster["node"]),
        alive,
        nodes.len(),
        text(&cluster["partitions"]),
        text(&cluster["backups"]),
        text(&cluster["write_mode"]),
    ));
    let columns = [
        ("NAME", "name"),
        ("STATE", "state"),
        ("INCARNATION", "incarnation"),
        ("PEER", "peer"),
        ("CLIENT", "client"),
        ("SESSIONS", "sessions"),
        ("CONNS", "connections"),
        ("PRIMARY", "primaries"),
        ("BACKUP", "backups"),
        ("LAG_MS", "replication_lag_ms"),
        ("PHI", "phi"),
    ];
    let mut rows: Vec<Vec<String>> =
        vec![columns.iter().map(|(title, _)| title.to_string()).collect()];
    for node in &nodes {
        let mut row: Vec<String> = columns.iter().map(|(_, key)| text(&node[*key])).collect();
        if node["self"] == true {
            row[0].push('*');
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..columns.len())
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(
        "\n* = this node; LAG_MS = age of the oldest write the peer has not acknowledged\n",
    );
    // Too few live nodes to hold every backup is not "under-replicated" (nothing is left to
    // copy), but a failure now would lose what only one node holds: said when it is so.
    let short = cluster["partitions_short_of_backups"].as_u64().unwrap_or(0);
    let short_text = if short > cluster["under_replicated_partitions"].as_u64().unwrap_or(0) {
        format!("  short of --backups (too few nodes): {short}")
    } else {
        String::new()
    };
    out.push_str(&format!(
        "partitions without a live primary: {}  under-replicated partitions: {}{}{short_text}  still to move: {}\n",
        text(&cluster["unowned_partitions"]),
        text(&cluster["under_replicated_partitions"]),
        partition_list(
            &cluster["under_replicated_partitions_shown"],
            &cluster["under_replicated_partitions"]
        ),
        text(&cluster["partitions_to_move"]),
    ));
    out.push_str(&format!(
        "in progress: {} handoffs, {} snapshots sending, {} receiving, {} merges, {} requests waiting{}  serving: {}\n",
        text(&cluster["handoffs_in_progress"]),
        text(&cluster["snapshots_in_progress"]),
        text(&cluster["snapshots_receiving"]),
        text(&cluster["merges_in_progress"]),
        text(&cluster["deferred_requests"]),
        partition_list(&cluster["busy_partitions_shown"], &Value::Null),
        match cluster["serving"].as_bool() {
            Some(true) => "yes",
            Some(false) => "no (fenced or exchanging tables)",
            None => "-",
        },
    ));
    let since_start = &cluster["since_start"];
    if since_start.is_object() {
        out.push_str(&format!(
            "since start: {} promotions ({} unsynced), {} partitions lost, {} handoffs ({} aborted, longest {} ms), \
             {} snapshots sent ({} abandoned), {} received, {} keys merged after splits\n",
            text(&since_start["promotions"]),
            text(&since_start["promotions_unsynced"]),
            text(&since_start["lost_partitions"]),
            text(&since_start["handoffs_completed"]),
            text(&since_start["handoffs_aborted"]),
            text(&since_start["handoff_duration_ms_max"]),
            text(&since_start["snapshots_sent"]),
            text(&since_start["snapshots_abandoned"]),
            text(&since_start["snapshots_received"]),
            text(&since_start["merged_keys"]),
        ));
    }
    out
}

/// ` (partitions 3, 17, …)` for a non-empty list of partition numbers, with `…` when `total` says
/// there are more than listed; empty for an empty or absent list.
fn partition_list(shown: &Value, total: &Value) -> String {
    let shown: Vec<String> = shown
        .as_array()
        .map(|partitions| partitions.iter().map(text).collect())
        .unwrap_or_default();
    if shown.is_empty() {
        return String::new();
    }
    let more = total
        .as_u64()
        .is_some_and(|total| total > shown.len() as u64);
    format!(
        " (partitions {}{})",
        shown.join(", "),
        if more { ", …" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_nodes() -> Value {
        serde_json::json!({
            "cluster": "scd", "node": "a", "partitions": 1024, "backups": 1, "write_mode": "through",
            "under_replicated_partitions": 3, "under_replicated_partitions_shown": [5, 17, 200],
            "partitions_to_move": 9,
            "handoffs_in_progress": 1, "snapshots_in_progress": 2, "snapshots_receiving": 0,
            "merges_in_progress": 0, "deferred_requests": 4, "busy_partitions_shown": [17],
            "unowned_partitions": 0, "serving": true,
            "since_start": {"promotions": 6, "promotions_unsynced": 1, "lost_partitions": 0,
                "handoffs_completed": 10, "handoffs_aborted": 2, "handoff_duration_ms_max": 35,
                "snapshots_sent": 12, "snapshots_abandoned": 1, "snapshots_received": 4,
                "merged_keys": 0},
            "nodes": [
                {"name": "a", "self": true, "state": "alive", "incarnation": 7, "peer": "127.0.0.1:1",
                 "client": "127.0.0.1:2", "sessions": 10, "connections": 1, "primaries": 512,
                 "backups": 509, "replication_lag_ms": null, "phi": 0.0},
                {"name": "b", "state": "down", "incarnation": 9, "peer": "127.0.0.1:3",
                 "client": "127.0.0.1:4", "sessions": 0, "connections": 0, "primaries": 0,
                 "backups": 0, "replication_lag_ms": null, "phi": 12.5},
                {"name": "c", "state": "alive", "incarnation": 11, "peer": "127.0.0.1:5",
                 "client": "127.0.0.1:6", "sessions": 8, "connections": 2, "primaries": 512,
                 "backups": 512, "replication_lag_ms": 42, "phi": 0.5},
            ]
        })
    }

    /// Checks that the line of `render(cluster)` starting with `start` is `expect`, spaces
    /// collapsed.
    fn check(cluster: &Value, start: &str, expect: &str) {
        let table = render(cluster);
        let line = table
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .find(|line| line.starts_with(start))
            .unwrap_or_else(|| panic!("no line starts with {start:?}:\n{table}"));
        assert_eq!(line, expect, "in\n{table}");
    }

    #[test]
    fn status_shows_ownership_lag_and_replication_health_per_node_and_for_the_cluster() {
        let cluster = two_nodes();
        for (start, expect) in [
            (
                "cluster",
                "cluster 'scd' as seen by a — 2 of 3 nodes alive, 1024 partitions, 1 backup(s), \
                 write-through",
            ),
            (
                "NAME",
                "NAME STATE INCARNATION PEER CLIENT SESSIONS CONNS PRIMARY BACKUP LAG_MS PHI",
            ),
            (
                "a*",
                "a* alive 7 127.0.0.1:1 127.0.0.1:2 10 1 512 509 - 0.0",
            ),
            ("b ", "b down 9 127.0.0.1:3 127.0.0.1:4 0 0 0 0 - 12.5"),
            (
                "c ",
                "c alive 11 127.0.0.1:5 127.0.0.1:6 8 2 512 512 42 0.5",
            ),
            (
                "partitions",
                "partitions without a live primary: 0 under-replicated partitions: 3 \
                 (partitions 5, 17, 200) still to move: 9",
            ),
            (
                "in progress",
                "in progress: 1 handoffs, 2 snapshots sending, 0 receiving, 0 merges, \
                 4 requests waiting (partitions 17) serving: yes",
            ),
            (
                "since start",
                "since start: 6 promotions (1 unsynced), 0 partitions lost, 10 handoffs \
                 (2 aborted, longest 35 ms), 12 snapshots sent (1 abandoned), 4 received, \
                 0 keys merged after splits",
            ),
        ] {
            check(&cluster, start, expect);
        }
    }

    #[test]
    fn status_marks_a_list_of_partitions_cut_short_and_leaves_out_empty_ones() {
        let mut cluster = two_nodes();
        cluster["under_replicated_partitions"] = serde_json::json!(40);
        cluster["busy_partitions_shown"] = serde_json::json!([]);
        cluster["serving"] = serde_json::json!(false);
        check(
            &cluster,
            "partitions",
            "partitions without a live primary: 0 under-replicated partitions: 40 \
             (partitions 5, 17, 200, …) still to move: 9",
        );
        check(
            &cluster,
            "in progress",
            "in progress: 1 handoffs, 2 snapshots sending, 0 receiving, 0 merges, \
             4 requests waiting serving: no (fenced or exchanging tables)",
        );
    }

    #[test]
    fn status_says_when_too_few_nodes_hold_the_backups() {
        let mut cluster = two_nodes();
        cluster["under_replicated_partitions"] = serde_json::json!(0);
        cluster["under_replicated_partitions_shown"] = serde_json::json!([]);
        cluster["partitions_short_of_backups"] = serde_json::json!(1024);
        check(
            &cluster,
            "partitions",
            "partitions without a live primary: 0 under-replicated partitions: 0 \
             short of --backups (too few nodes): 1024 still to move: 9",
        );
    }

    #[test]
    fn status_of_a_node_without_the_newer_fields_shows_dashes() {
        let mut cluster = two_nodes();
        let object = cluster.as_object_mut().expect("an object");
        for field in [
            "under_replicated_partitions_shown",
            "snapshots_receiving",
            "since_start",
            "serving",
            "partitions_to_move",
        ] {
            object.remove(field);
        }
        check(
            &cluster,
            "partitions",
            "partitions without a live primary: 0 under-replicated partitions: 3 still to move: -",
        );
        assert!(!render(&cluster).contains("since start"));
    }
}
