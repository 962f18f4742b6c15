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
    out.push_str(&format!(
        "\n(* = this node)  under-replicated partitions: {}  handoffs in progress: {}  partitions without a live primary: {}\n",
        text(&cluster["under_replicated_partitions"]),
        text(&cluster["handoffs_in_progress"]),
        text(&cluster["unowned_partitions"]),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table_lists_every_node_and_marks_this_one() {
        let cluster = serde_json::json!({
            "cluster": "scd", "node": "a", "partitions": 1024, "backups": 1, "write_mode": "through",
            "under_replicated_partitions": 3, "handoffs_in_progress": 1, "unowned_partitions": 0,
            "nodes": [
                {"name": "a", "self": true, "state": "alive", "incarnation": 7, "peer": "127.0.0.1:1",
                 "client": "127.0.0.1:2", "sessions": 10, "connections": 1, "primaries": 512,
                 "backups": 512, "replication_lag_ms": 0, "phi": 0.0},
                {"name": "b", "state": "down", "incarnation": 9, "peer": "127.0.0.1:3",
                 "client": "127.0.0.1:4", "sessions": 0, "connections": 0, "primaries": 0,
                 "backups": 0, "replication_lag_ms": null, "phi": 12.5},
            ]
        });
        let table = render(&cluster);
        assert!(table.contains("1 of 2 nodes alive"), "{table}");
        assert!(
            table
                .lines()
                .any(|line| line.starts_with("a*") && line.contains("alive")),
            "{table}"
        );
        assert!(
            table
                .lines()
                .any(|line| line.starts_with("b ") && line.contains("down")),
            "{table}"
        );
        assert!(table.contains("under-replicated partitions: 3"), "{table}");
    }
}
