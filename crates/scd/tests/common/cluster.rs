//! Cluster helpers for process tests: start an N-node cluster and wait until it has settled
//! (every node's `GET /cluster` shows every node alive, every partition with a live primary and
//! its backups, nothing moving), restart a killed node under its name, read metrics, find out
//! which node is a key's primary, and a continuous client that writes and reads its own keys,
//! verifies every read against what it wrote and keeps the record of acknowledged writes and the
//! longest stall it saw.
//!
//! ```ignore
//! let _one_at_a_time = cluster::one_cluster_at_a_time();
//! let cluster = cluster::start_settled(3, &[]);
//! let client = ContinuousClient::start("ha", cluster.nodes[0].client_addr, "ha", 300);
//! client.wait_for_more_operations(1000, Duration::from_secs(20));
//! cluster.nodes[2].kill9();
//! cluster::wait_until_settled(&[&cluster.nodes[0], &cluster.nodes[1]], SETTLE_TIMEOUT);
//! let report = client.stop();
//! assert!(report.problems().is_empty(), "{}", report.summary());
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::{IO_TIMEOUT, NodePorts, Scd, ScdCluster, wait_until};

/// How long a cluster may take to settle after a start, a join, a leave, a kill or a restart.
/// Generous: two shared cores; a test waits only as long as the cluster needs.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Most errors and wrong reads a [`ContinuousClient`] keeps word for word (all are counted).
const MAX_KEPT_PROBLEMS: usize = 50;
/// Gaps between two successful operations longer than this are kept with their time, so a test
/// can tell which event caused which stall.
const STALL_KEPT_MIN: Duration = Duration::from_millis(20);
/// Most stalls kept (the longest is always known).
const MAX_KEPT_STALLS: usize = 10_000;
/// How long a [`ContinuousClient`] keeps trying to reconnect before it records an error and
/// tries again on its next operation.
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Serialises the cluster tests of one test binary: cargo runs the tests of a file in
/// parallel threads, and two clusters sharing two cores would measure each other's load rather
/// than failover. Hold the guard for the whole test.
pub fn one_cluster_at_a_time() -> MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
}

// ---------------------------------------------------------------------------------------------
// The cluster as each node sees it

/// `GET /cluster` of `node`, parsed. `Err` says why (no answer, not JSON).
pub fn cluster_view(node: &Scd) -> Result<Json, String> {
    cluster_view_at(&node.name, node.admin_addr())
}

/// `GET /cluster` of the node named `name` with its admin port at `admin_addr`.
pub fn cluster_view_at(name: &str, admin_addr: SocketAddr) -> Result<Json, String> {
    let response = super::http_get(admin_addr, "/cluster")
        .map_err(|error| format!("{name}: GET /cluster: {error}"))?;
    if response.status != 200 {
        return Err(format!(
            "{name}: GET /cluster answered {}: {}",
            response.status, response.body
        ));
    }
    serde_json::from_str(&response.body)
        .map_err(|error| format!("{name}: /cluster is not JSON ({error})"))
}

/// The entries of a `/cluster` view's `nodes` array.
pub fn view_nodes(view: &Json) -> Vec<Json> {
    view["nodes"].as_array().cloned().unwrap_or_default()
}

/// The names a view shows in state `alive`.
pub fn alive_names(view: &Json) -> BTreeSet<String> {
    view_nodes(view)
        .iter()
        .filter(|entry| entry["state"] == "alive")
        .filter_map(|entry| entry["name"].as_str().map(str::to_string))
        .collect()
}

/// The node's own entry in its view.
pub fn own_entry(view: &Json) -> Option<Json> {
    view_nodes(view)
        .into_iter()
        .find(|entry| entry["self"] == true)
}

/// A one-line summary of a view for failure messages: who is alive, what is moving.
pub fn describe_view(view: &Json) -> String {
    let nodes: Vec<String> = view_nodes(view)
        .iter()
        .map(|entry| {
            format!(
                "{}{}:{}(P{} B{})",
                entry["name"].as_str().unwrap_or("?"),
                if entry["self"] == true { "*" } else { "" },
                entry["state"].as_str().unwrap_or("?"),
                entry["primaries"],
                entry["backups"],
            )
        })
        .collect();
    format!(
        "[{}] unowned {} under-replicated {} handoffs {} snapshots {} digest {}",
        nodes.join(" "),
        view["unowned_partitions"],
        view["under_replicated_partitions"],
        view["handoffs_in_progress"],
        view["snapshots_in_progress"],
        view["table_digest"],
    )
}

/// Why the cluster made of `nodes` has not settled yet, as seen by each of them; empty when it
/// has: every node serves, sees exactly `nodes` alive (others may be listed as down), has every
/// partition primaried and fully replicated, no handoff or snapshot under way, primaries some
/// partitions itself, and all hold the same partition table.
pub fn settle_problems(nodes: &[&Scd]) -> Vec<String> {
    let nodes: Vec<(&str, SocketAddr)> = nodes
        .iter()
        .map(|node| (node.name.as_str(), node.admin_addr()))
        .collect();
    settle_problems_at(&nodes)
}

/// [`settle_problems`] for nodes given by name and admin address (nodes this helper did not
/// start, such as `scd demo`'s).
pub fn settle_problems_at(nodes: &[(&str, SocketAddr)]) -> Vec<String> {
    let views: Vec<(String, Result<Json, String>)> = nodes
        .iter()
        .map(|&(name, admin_addr)| (name.to_string(), cluster_view_at(name, admin_addr)))
        .collect();
    settle_problems_of_views(&views)
}

/// [`settle_problems`] for views already fetched, one per node of the cluster, by node name
/// (nodes in other network namespaces, whose views the test fetches from inside them).
pub fn settle_problems_of_views(views: &[(String, Result<Json, String>)]) -> Vec<String> {
    let expected: BTreeSet<String> = views.iter().map(|(name, _)| name.clone()).collect();
    let mut problems = Vec::new();
    let mut digests = BTreeSet::new();
    for (name, view) in views {
        let view = match view {
            Ok(view) => view,
            Err(why) => {
                problems.push(why.clone());
                continue;
            }
        };
        let mut node_problems = Vec::new();
        if view["serving"] != true {
            node_problems.push("not serving".to_string());
        }
        let alive = alive_names(view);
        if alive != expected {
            node_problems.push(format!("sees {alive:?} alive"));
        }
        for counter in [
            "unowned_partitions",
            "under_replicated_partitions",
            "partitions_to_move",
            "handoffs_in_progress",
            "snapshots_in_progress",
        ] {
            if view[counter].as_u64() != Some(0) {
                node_problems.push(format!("{counter} {}", view[counter]));
            }
        }
        let own_primaries = own_entry(view).and_then(|entry| entry["primaries"].as_u64());
        if own_primaries.is_none_or(|primaries| primaries == 0) {
            node_problems.push(format!("primaries {own_primaries:?}"));
        }
        digests.insert(view["table_digest"].to_string());
        if !node_problems.is_empty() {
            problems.push(format!(
                "{name}: {} — {}",
                node_problems.join(", "),
                describe_view(view)
            ));
        }
    }
    if digests.len() > 1 {
        problems.push(format!("the nodes hold different tables: {digests:?}"));
    }
    problems
}

/// Waits until [`settle_problems`] finds none, and returns how long it took. Panics with the
/// problems still seen at the deadline.
pub fn wait_until_settled(nodes: &[&Scd], timeout: Duration) -> Duration {
    let started = Instant::now();
    let mut last_problems = Vec::new();
    let settled = wait_until(timeout, || {
        last_problems = settle_problems(nodes);
        last_problems.is_empty().then_some(())
    });
    assert!(
        settled.is_some(),
        "the cluster of {:?} did not settle within {timeout:?}:\n  {}",
        nodes
            .iter()
            .map(|node| node.name.as_str())
            .collect::<Vec<_>>(),
        last_problems.join("\n  ")
    );
    started.elapsed()
}

/// Starts `size` nodes with `args` (see [`ScdCluster::start`]) and waits until they settled.
pub fn start_settled(size: usize, args: &[&str]) -> ScdCluster {
    let cluster = ScdCluster::start(size, args);
    wait_until_settled(&cluster.nodes.iter().collect::<Vec<_>>(), SETTLE_TIMEOUT);
    cluster
}

/// Starts a node again under the name and, if they are still free, the ports of `old` (which
/// must have exited), with `args`, joining `join`.
pub fn restart(old: &Scd, args: &[&str], join: Vec<SocketAddr>) -> Scd {
    Scd::builder()
        .name(old.name.clone())
        .ports(NodePorts {
            client: old.client_addr.port(),
            peer: old.peer_addr.port(),
            admin: old.admin_addr().port(),
        })
        .join(join)
        .args(args.iter().copied())
        .start()
}

/// The peer addresses of `nodes`, for `--join`.
pub fn peer_addrs(nodes: &[&Scd]) -> Vec<SocketAddr> {
    nodes.iter().map(|node| node.peer_addr).collect()
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// The sum of every series of `/metrics` whose name is `name` (any labels), or of the one series
/// when `name` carries its labels (`scd_relays_total{outcome="ok"}`). 0 when there is none.
pub fn metric(node: &Scd, name: &str) -> f64 {
    let metrics = node.admin_get("/metrics").body;
    metric_in(&metrics, name)
}

/// [`metric`] on a `/metrics` text already fetched.
pub fn metric_in(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let matches = if name.contains('{') {
                series == name
            } else {
                series == name || series.strip_prefix(name)?.starts_with('{')
            };
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// Whether `node` is the primary of `key` (database 0), found without any help from scd: a
/// `GET` through a node that is not the key's primary is relayed, which counts in its
/// `scd_relays_total`. Only meaningful while no other client uses `node`.
pub fn is_primary_of(node: &Scd, key: &str) -> bool {
    let before = metric(node, "scd_relays_total");
    let mut connection = connect(node, 0);
    let _: redis::Value = call(&mut connection, &["GET", key]);
    metric(node, "scd_relays_total") == before
}

// ---------------------------------------------------------------------------------------------
// Plain client calls

/// A `redis` crate connection to `node`'s client port, database `db`, with [`IO_TIMEOUT`].
pub fn connect(node: &Scd, db: u8) -> redis::Connection {
    connect_addr(node.client_addr, db)
        .unwrap_or_else(|error| panic!("connecting to {}: {error}", node.name))
}

/// A connection to the RESP port at `addr`, database `db`, with [`IO_TIMEOUT`] on reads and
/// writes.
pub fn connect_addr(addr: SocketAddr, db: u8) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(format!("redis://{addr}/{db}").as_str())?;
    let connection = client.get_connection_with_timeout(IO_TIMEOUT)?;
    connection.set_read_timeout(Some(IO_TIMEOUT))?;
    connection.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(connection)
}

/// The command `args` as a `redis::Cmd`.
pub fn command(args: &[&str]) -> redis::Cmd {
    let mut command = redis::Cmd::new();
    for arg in args {
        command.arg(*arg);
    }
    command
}

/// Runs `args` and converts the reply; panics naming the command on any error.
pub fn call<T: redis::FromRedisValue>(connection: &mut redis::Connection, args: &[&str]) -> T {
    command(args)
        .query(connection)
        .unwrap_or_else(|error| panic!("{args:?}: {error}"))
}

/// A reply as compact text for data-driven expectations: `nil`, `OK`, `3`, `"text"`,
/// `["a", nil]`, or `ERR message` for an error reply.
pub fn show(reply: &redis::RedisResult<redis::Value>) -> String {
    match reply {
        Ok(value) => show_value(value),
        Err(error) => match (error.code(), error.detail()) {
            (Some(code), Some(detail)) => format!("{code} {detail}"),
            _ => error.to_string(),
        },
    }
}

fn show_value(value: &redis::Value) -> String {
    use redis::Value;
    match value {
        Value::Nil => "nil".to_string(),
        Value::Int(number) => number.to_string(),
        Value::BulkString(bytes) => format!("{:?}", String::from_utf8_lossy(bytes)),
        Value::SimpleString(text) => text.clone(),
        Value::Okay => "OK".to_string(),
        Value::Array(items) | Value::Set(items) => format!(
            "[{}]",
            items.iter().map(show_value).collect::<Vec<_>>().join(", ")
        ),
        Value::ServerError(error) => {
            format!("{} {}", error.code(), error.details().unwrap_or_default())
        }
        other => format!("{other:?}"),
    }
}

/// Every key of database `db` by `SCAN` through `node` (cursor until 0, `COUNT 100`).
pub fn scan_all(node: &Scd, db: u8, pattern_opt: Option<&str>) -> BTreeSet<String> {
    /// SCAN calls before giving up: a cursor that never returns to 0 is a bug, not a wait.
    const MAX_SCAN_CALLS: usize = 100_000;
    let mut connection = connect(node, db);
    let mut keys = BTreeSet::new();
    let mut cursor = "0".to_string();
    for _ in 0..MAX_SCAN_CALLS {
        let mut args = vec!["SCAN", cursor.as_str(), "COUNT", "100"];
        if let Some(pattern) = pattern_opt {
            args.extend(["MATCH", pattern]);
        }
        let (next, batch): (String, Vec<String>) = call(&mut connection, &args);
        keys.extend(batch);
        if next == "0" {
            return keys;
        }
        cursor = next;
    }
    panic!(
        "SCAN through {} did not end in {MAX_SCAN_CALLS} calls",
        node.name
    )
}

// ---------------------------------------------------------------------------------------------
// A continuous client

/// What a [`ContinuousClient`] knows about one of its keys.
#[derive(Clone, Debug, Default)]
pub struct KeyRecord {
    /// The last value whose `SET` was acknowledged (or that a read showed, after a `SET` whose
    /// outcome was unknown), and when the client learned it.
    pub acked_opt: Option<(u64, Instant)>,
    /// Values of later `SET`s that failed: they may or may not have been applied.
    pub pending: Vec<u64>,
}

impl KeyRecord {
    /// Whether a read that returned `found` is consistent with what was written.
    pub fn allows(&self, found: Option<u64>) -> bool {
        found == self.acked_opt.map(|(value, _)| value)
            || found.is_some_and(|value| self.pending.contains(&value))
    }

    fn learn_read(&mut self, found: Option<u64>, now: Instant) {
        if let Some(value) = found
            && self.pending.contains(&value)
        {
            // The value is visible, so it was applied: from now on it is as good as acknowledged.
            self.acked_opt = Some((value, now));
            self.pending.retain(|pending| *pending > value);
        }
    }
}

/// A read that did not return what the client had written.
#[derive(Clone, Debug)]
pub struct WrongRead {
    /// The key read.
    pub key: String,
    /// What the client expected: the last acknowledged value, then possible pending ones.
    pub expected: KeyRecord,
    /// What the node returned (`None`: nil).
    pub found: Option<u64>,
    /// When the read returned.
    pub read_at: Instant,
}

impl WrongRead {
    fn describe(&self, started: Instant) -> String {
        format!(
            "{} at +{:.3}s: read {:?}, expected {:?} (acknowledged at +{:.3}s) or one of {:?}",
            self.key,
            self.read_at.duration_since(started).as_secs_f64(),
            self.found,
            self.expected.acked_opt.map(|(value, _)| value),
            self.expected
                .acked_opt
                .map_or(0.0, |(_, at)| at.duration_since(started).as_secs_f64()),
            self.expected.pending,
        )
    }
}

/// What a [`ContinuousClient`] did and saw.
#[derive(Debug)]
pub struct ClientReport {
    /// The client's label.
    pub label: String,
    /// When it started.
    pub started: Instant,
    /// Every key it wrote, with what it knows about it.
    pub keys: BTreeMap<String, KeyRecord>,
    /// `SET`s acknowledged.
    pub num_writes_acknowledged: u64,
    /// `GET`s answered and checked.
    pub num_reads_checked: u64,
    /// Error replies and I/O errors, counted.
    pub num_errors: u64,
    /// The first [`MAX_KEPT_PROBLEMS`] errors, with their time since the start.
    pub errors: Vec<String>,
    /// Reads that did not return what was written (all of them, up to [`MAX_KEPT_PROBLEMS`]).
    pub wrong_reads: Vec<WrongRead>,
    /// All wrong reads, counted.
    pub num_wrong_reads: u64,
    /// The longest time between two successful operations, and when it ended.
    pub longest_stall: Duration,
    /// When the longest stall ended (the successful operation that ended it returned).
    pub longest_stall_ended_at: Instant,
    /// Every gap longer than [`STALL_KEPT_MIN`] between two successful operations, with the
    /// time it ended (the first [`MAX_KEPT_STALLS`]).
    pub stalls: Vec<(Instant, Duration)>,
}

impl ClientReport {
    /// One paragraph for the test's output.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "client {}: {} writes acknowledged, {} reads checked, {} errors, {} wrong reads, \
             longest stall {:.0} ms (ended at +{:.3}s)",
            self.label,
            self.num_writes_acknowledged,
            self.num_reads_checked,
            self.num_errors,
            self.num_wrong_reads,
            self.longest_stall.as_secs_f64() * 1000.0,
            self.longest_stall_ended_at
                .duration_since(self.started)
                .as_secs_f64(),
        );
        for error in &self.errors {
            out.push_str(&format!("\n  error: {error}"));
        }
        for wrong in &self.wrong_reads {
            out.push_str(&format!("\n  wrong read: {}", wrong.describe(self.started)));
        }
        out
    }

    /// The longest gap between two successful operations that ended between `from` and `to`
    /// (zero if none was longer than [`STALL_KEPT_MIN`]).
    pub fn longest_stall_between(&self, from: Instant, to: Instant) -> Duration {
        self.stalls
            .iter()
            .filter(|(ended_at, _)| (from..=to).contains(ended_at))
            .map(|(_, stall)| *stall)
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// Errors and wrong reads, described; empty when the client saw none.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = self.errors.clone();
        problems.extend(
            self.wrong_reads
                .iter()
                .map(|wrong| format!("wrong read: {}", wrong.describe(self.started))),
        );
        problems
    }

    /// Reads every key through `node` and returns the keys whose value is not what was written
    /// (acknowledged, or a pending write's).
    pub fn wrong_values_on(&self, node: &Scd) -> Vec<WrongRead> {
        let names: Vec<&String> = self.keys.keys().collect();
        let mut connection = connect(node, 0);
        let mut wrong = Vec::new();
        for chunk in names.chunks(200) {
            let mut pipeline = redis::pipe();
            for key in chunk {
                pipeline.cmd("GET").arg(key.as_str());
            }
            let values: Vec<Option<String>> =
                pipeline.query(&mut connection).unwrap_or_else(|error| {
                    panic!("GET of {} keys on {}: {error}", chunk.len(), node.name)
                });
            let read_at = Instant::now();
            for (key, value) in chunk.iter().zip(values) {
                let found = value.map(|text| parse_value(&text));
                let record = &self.keys[*key];
                if !record.allows(found) {
                    wrong.push(WrongRead {
                        key: (*key).clone(),
                        expected: record.clone(),
                        found,
                        read_at,
                    });
                }
            }
        }
        wrong
    }

    /// [`ClientReport::wrong_values_on`], described; empty when every key is right.
    pub fn check_every_key_on(&self, node: &Scd) -> Vec<String> {
        self.wrong_values_on(node)
            .iter()
            .map(|wrong| format!("on {}: {}", node.name, wrong.describe(self.started)))
            .collect()
    }
}

/// Values are the decimal write sequence number; anything else is recorded as `u64::MAX`, which
/// no record allows.
fn parse_value(text: &str) -> u64 {
    text.parse().unwrap_or(u64::MAX)
}

/// State shared between a [`ContinuousClient`]'s thread and the test.
struct SharedState {
    keys: Mutex<BTreeMap<String, KeyRecord>>,
    stop: AtomicBool,
    num_operations: AtomicU64,
}

/// A client thread that, until stopped, `SET`s its keys in turn to ever larger values and
/// `GET`s another of its keys after every write, checking it against the record. It never
/// stops on an error: it counts it, reconnects when the connection broke, and goes on.
pub struct ContinuousClient {
    label: String,
    shared: Arc<SharedState>,
    thread_opt: Option<JoinHandle<ClientReport>>,
}

impl ContinuousClient {
    /// Starts the client against the RESP port at `addr` with keys `{key_prefix}:0` to
    /// `{key_prefix}:{num_keys - 1}` (database 0).
    pub fn start(
        label: &str,
        addr: SocketAddr,
        key_prefix: &str,
        num_keys: usize,
    ) -> ContinuousClient {
        assert!(num_keys >= 2, "a continuous client needs two keys or more");
        let shared = Arc::new(SharedState {
            keys: Mutex::new(BTreeMap::new()),
            stop: AtomicBool::new(false),
            num_operations: AtomicU64::new(0),
        });
        let keys: Vec<String> = (0..num_keys)
            .map(|index| format!("{key_prefix}:{index}"))
            .collect();
        let thread_shared = Arc::clone(&shared);
        let thread_label = label.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("client {label}"))
            .spawn(move || run_client(thread_label, addr, keys, thread_shared))
            .expect("a client thread starts");
        ContinuousClient {
            label: label.to_string(),
            shared,
            thread_opt: Some(thread),
        }
    }

    /// Operations (writes and reads) that succeeded so far.
    pub fn num_operations(&self) -> u64 {
        self.shared.num_operations.load(Ordering::SeqCst)
    }

    /// Waits until `more` operations have succeeded after this call; panics after `timeout`.
    pub fn wait_for_more_operations(&self, more: u64, timeout: Duration) {
        let target = self.num_operations() + more;
        let reached = wait_until(timeout, || (self.num_operations() >= target).then_some(()));
        assert!(
            reached.is_some(),
            "client {} made only {} of {more} operations in {timeout:?}",
            self.label,
            more - target.saturating_sub(self.num_operations()),
        );
    }

    /// The records of the keys written so far (a copy; the client goes on).
    pub fn records(&self) -> BTreeMap<String, KeyRecord> {
        self.shared
            .keys
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    /// Stops the client and returns its report.
    pub fn stop(mut self) -> ClientReport {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.thread_opt
            .take()
            .expect("a client is stopped once")
            .join()
            .expect("the client thread does not panic")
    }
}

impl Drop for ContinuousClient {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread_opt.take() {
            let _ = thread.join();
        }
    }
}

fn run_client(
    label: String,
    addr: SocketAddr,
    keys: Vec<String>,
    shared: Arc<SharedState>,
) -> ClientReport {
    let started = Instant::now();
    let mut report = ClientReport {
        label,
        started,
        keys: BTreeMap::new(),
        num_writes_acknowledged: 0,
        num_reads_checked: 0,
        num_errors: 0,
        errors: Vec::new(),
        wrong_reads: Vec::new(),
        num_wrong_reads: 0,
        longest_stall: Duration::ZERO,
        longest_stall_ended_at: started,
        stalls: Vec::new(),
    };
    let mut connection_opt: Option<redis::Connection> = None;
    let mut last_success = started;
    let mut next_value: u64 = 1;
    let record_error = |report: &mut ClientReport, what: String| {
        report.num_errors += 1;
        if report.errors.len() < MAX_KEPT_PROBLEMS {
            report
                .errors
                .push(format!("+{:.3}s {what}", started.elapsed().as_secs_f64()));
        }
    };
    let mut succeeded = |report: &mut ClientReport, shared: &SharedState| {
        let now = Instant::now();
        let stall = now.duration_since(last_success);
        if stall > report.longest_stall {
            report.longest_stall = stall;
            report.longest_stall_ended_at = now;
        }
        if stall > STALL_KEPT_MIN && report.stalls.len() < MAX_KEPT_STALLS {
            report.stalls.push((now, stall));
        }
        last_success = now;
        shared.num_operations.fetch_add(1, Ordering::SeqCst);
    };
    for iteration in 0usize.. {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        if connection_opt.is_none() {
            let connected = wait_until(RECONNECT_TIMEOUT, || connect_addr(addr, 0).ok());
            match connected {
                Some(connection) => connection_opt = Some(connection),
                None => {
                    record_error(&mut report, format!("cannot connect to {addr}"));
                    continue;
                }
            }
        }
        let Some(connection) = connection_opt.as_mut() else {
            continue;
        };
        // Write one key...
        let key = &keys[iteration % keys.len()];
        let value = next_value;
        next_value += 1;
        let reply: redis::RedisResult<redis::Value> =
            command(&["SET", key, &value.to_string()]).query(connection);
        {
            let mut records = shared
                .keys
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let record = records.entry(key.clone()).or_default();
            match &reply {
                Ok(redis::Value::Okay) => {
                    record.acked_opt = Some((value, Instant::now()));
                    record.pending.clear();
                }
                _ => record.pending.push(value),
            }
        }
        match reply {
            Ok(redis::Value::Okay) => {
                report.num_writes_acknowledged += 1;
                succeeded(&mut report, &shared);
            }
            other => {
                if other
                    .as_ref()
                    .is_err_and(|error| error.is_io_error() || error.is_unrecoverable_error())
                {
                    connection_opt = None;
                }
                record_error(&mut report, format!("SET {key} {value}: {}", show(&other)));
                continue;
            }
        }
        // ... and read another, half a round of keys later.
        let Some(connection) = connection_opt.as_mut() else {
            continue;
        };
        let read_key = &keys[(iteration + keys.len() / 2) % keys.len()];
        let reply: redis::RedisResult<Option<String>> =
            command(&["GET", read_key]).query(connection);
        match reply {
            Ok(text_opt) => {
                let found = text_opt.map(|text| parse_value(&text));
                let now = Instant::now();
                let mut records = shared
                    .keys
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner());
                let record = records.entry(read_key.clone()).or_default();
                if record.allows(found) {
                    record.learn_read(found, now);
                } else {
                    report.num_wrong_reads += 1;
                    if report.wrong_reads.len() < MAX_KEPT_PROBLEMS {
                        report.wrong_reads.push(WrongRead {
                            key: read_key.clone(),
                            expected: record.clone(),
                            found,
                            read_at: now,
                        });
                    }
                    // Go on from what the cluster holds now, so one lost write is reported
                    // once, not at every later read of the key.
                    record.acked_opt = found.map(|value| (value, now));
                    record.pending.clear();
                }
                drop(records);
                report.num_reads_checked += 1;
                succeeded(&mut report, &shared);
            }
            Err(error) => {
                if error.is_io_error() || error.is_unrecoverable_error() {
                    connection_opt = None;
                }
                record_error(&mut report, format!("GET {read_key}: {error}"));
            }
        }
    }
    report.keys = shared
        .keys
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .clone();
    report
}
