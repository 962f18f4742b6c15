//! PHP sessions on a cluster of real `scd` processes (issues 4 and 5): two web servers (PHP's
//! built-in server, `PHP_CLI_SERVER_WORKERS`), each on its own `scd` node of one cluster, share
//! sessions through phpredis (`redis.session.locking_enabled=1`) or php-memcached at its
//! defaults (binary protocol, `memcached.sess_locking=1`, the node's `--memcached` port).
//!
//! - A session created through web server A keeps its counter through web server B after A's
//!   `scd` is killed with `kill -9`.
//! - 20 concurrent requests on each web server on the same session raise its counter by exactly
//!   40, for both handlers.
//! - The same while the `scd` that holds the session and its lock is killed with `kill -9`:
//!   the counter ends equal to the number of requests whose write succeeded, no two requests
//!   wrote the same value and none saw the counter go backwards.
//!
//! The fixture `tests/php/docroot/increment.php` answers `written N`, `unknown N` or
//! `not-written`, so increments are accounted for exactly. Without `php` and the extension the
//! tests say they are skipped, except under `CI=true`, where they fail.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::cluster::{self, SETTLE_TIMEOUT};
use common::{ChildProcess, HttpResponse, Scd, ScdCluster, free_port, http_request};

/// Concurrent requests sent to each web server.
const REQUESTS_PER_SERVER: usize = 20;
/// PHP worker processes of each built-in server.
const PHP_WORKERS: usize = 8;
/// Lock expiry given to both handlers: a lock held by a request whose `scd` was killed frees
/// itself after this long, well within how long the other requests wait for it.
const LOCK_EXPIRE_SECONDS: u32 = 5;
/// How many requests must have finished before the `scd` is killed in the middle of the rest.
const FINISHED_BEFORE_KILL: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handler {
    /// phpredis against the node's RESP port.
    Redis,
    /// php-memcached at its defaults against the node's memcached port.
    Memcached,
}

impl Handler {
    /// Whether PHP and the handler's extension are installed (see the module's doc).
    fn available(self) -> bool {
        if !common::tool_available("php", "php-cli") {
            return false;
        }
        let (check, package) = match self {
            Handler::Redis => ("exit(extension_loaded('redis') ? 0 : 1);", "php-redis"),
            Handler::Memcached => ("exit(class_exists('Memcached') ? 0 : 1);", "php-memcached"),
        };
        let present = Command::new("php")
            .args(["-r", check])
            .status()
            .is_ok_and(|status| status.success());
        if !present {
            assert!(
                !common::running_in_ci(),
                "PHP's {self:?} extension is missing; CI must have it (Debian package {package})"
            );
            eprintln!(
                "SKIPPED: PHP's {self:?} extension is not installed (Debian package {package})"
            );
        }
        present
    }

    /// The key the handler stores session `id` under (database 0, which the memcached port
    /// shares).
    fn data_key(self, id: &str) -> String {
        match self {
            Handler::Redis => format!("PHPREDIS_SESSION:{id}"),
            Handler::Memcached => format!("memc.sess.key.{id}"),
        }
    }

    /// The key of the handler's lock on session `id`.
    fn lock_key(self, id: &str) -> String {
        match self {
            Handler::Redis => format!("PHPREDIS_SESSION:{id}_LOCK"),
            Handler::Memcached => format!("memc.sess.key.lock.{id}"),
        }
    }

    /// `php -d` settings that make `node` (with its memcached port) the session store.
    fn php_settings(self, node: &Scd, memcached_port: u16) -> Vec<String> {
        let mut settings = match self {
            Handler::Redis => vec![
                "session.save_handler=redis".to_string(),
                format!("session.save_path=tcp://{}", node.client_addr),
                "redis.session.locking_enabled=1".to_string(),
                // Wait for the lock up to 2000 x 5 ms = 10 s: phpredis' defaults (10 x 2 ms)
                // give up long before 40 requests of 20 ms each are through.
                "redis.session.lock_wait_time=5000".to_string(),
                "redis.session.lock_retries=2000".to_string(),
                format!("redis.session.lock_expire={LOCK_EXPIRE_SECONDS}"),
            ],
            // php-memcached's defaults (binary protocol, locking on, 150 ms between attempts)
            // except for the number of attempts, 5 by default: 40 requests queue longer.
            Handler::Memcached => vec![
                "session.save_handler=memcached".to_string(),
                format!("session.save_path=127.0.0.1:{memcached_port}"),
                "memcached.sess_lock_retries=100".to_string(),
                format!("memcached.sess_lock_expire={LOCK_EXPIRE_SECONDS}"),
            ],
        };
        settings.push("session.gc_probability=0".to_string());
        settings.push("display_errors=stderr".to_string());
        settings
    }
}

/// PHP's built-in web server serving `tests/php/docroot` with sessions in one `scd` node.
struct WebServer {
    process: ChildProcess,
    addr: SocketAddr,
}

impl WebServer {
    fn start(label: &str, handler: Handler, node: &Scd, memcached_port: u16) -> WebServer {
        let (process, addr) = common::start_php_server(
            &format!("web server {label}, {handler:?} on {}", node.name),
            PHP_WORKERS,
            &handler.php_settings(node, memcached_port),
        );
        WebServer { process, addr }
    }

    fn get(&self, path: &str, session_id: &str) -> std::io::Result<HttpResponse> {
        http_request(
            self.addr,
            path,
            &[format!("Cookie: PHPSESSID={session_id}")],
        )
    }

    /// The session's counter, read without changing it.
    fn read_counter(&self, session_id: &str) -> u64 {
        let response = self
            .get("/read.php", session_id)
            .unwrap_or_else(|error| panic!("GET /read.php: {error}"));
        assert_eq!(response.status, 200, "{response:?}");
        response
            .body
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("not a counter: {response:?}"))
    }
}

/// How far one `increment.php` request got (see the fixture).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    /// The write of this value succeeded.
    Written(u64),
    /// The write of this value failed: it may have landed.
    Unknown(u64),
    /// Nothing was written (or the web server could not be reached).
    NotWritten(String),
}

#[derive(Clone, Debug)]
struct Increment {
    server: &'static str,
    sent_at: Instant,
    answered_at: Instant,
    outcome: Outcome,
    /// The answer's body when it was not a plain success (warnings, errors), for the report.
    detail: Option<String>,
}

fn outcome_of(response: &std::io::Result<HttpResponse>) -> Outcome {
    let response = match response {
        Ok(response) => response,
        Err(error) => return Outcome::NotWritten(format!("HTTP: {error}")),
    };
    let body = response.body.trim();
    let value_after = |prefix: &str| {
        body.strip_prefix(prefix)
            .and_then(|rest| rest.split(':').next())
            .and_then(|value| value.trim().parse::<u64>().ok())
    };
    if let Some(value) = value_after("written ") {
        Outcome::Written(value)
    } else if let Some(value) = value_after("unknown ") {
        Outcome::Unknown(value)
    } else {
        Outcome::NotWritten(format!("HTTP {}: {body}", response.status))
    }
}

fn increment(server: &WebServer, label: &'static str, session_id: &str) -> Increment {
    let sent_at = Instant::now();
    let response = server.get("/increment.php", session_id);
    let outcome = outcome_of(&response);
    let detail = match &response {
        Ok(response) if response.status == 200 => None,
        Ok(response) => Some(response.body.trim().to_string()),
        Err(error) => Some(error.to_string()),
    };
    Increment {
        server: label,
        sent_at,
        answered_at: Instant::now(),
        outcome,
        detail,
    }
}

/// Sends [`REQUESTS_PER_SERVER`] concurrent increments to each server; `on_progress` is called
/// (on the test's thread) once `FINISHED_BEFORE_KILL` of them have been answered.
fn increment_concurrently(
    servers: [(&WebServer, &'static str); 2],
    session_id: &str,
    on_progress: impl FnOnce(),
) -> Vec<Increment> {
    let answered = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|scope| {
        let requests: Vec<_> = servers
            .iter()
            .flat_map(|&(server, label)| (0..REQUESTS_PER_SERVER).map(move |_| (server, label)))
            .map(|(server, label)| {
                let answered = Arc::clone(&answered);
                scope.spawn(move || {
                    let result = increment(server, label, session_id);
                    answered.fetch_add(1, Ordering::SeqCst);
                    result
                })
            })
            .collect();
        let progressed = common::wait_until(Duration::from_secs(60), || {
            (answered.load(Ordering::SeqCst) >= FINISHED_BEFORE_KILL).then_some(())
        });
        assert!(
            progressed.is_some(),
            "no {FINISHED_BEFORE_KILL} requests were answered in 60 s"
        );
        on_progress();
        requests
            .into_iter()
            .map(|request| request.join().expect("a request thread"))
            .collect()
    })
}

/// Checks the increments of one session whose counter was `before` and is `after`, and returns
/// the problems: every value from `before + 1` to `after` was written by exactly one request
/// (one whose write succeeded, or, only where `allow_unknown`, one whose write failed but
/// landed); no two requests wrote the same value; a request sent after another's write
/// succeeded wrote a higher value (nobody saw the counter go backwards).
fn account(increments: &[Increment], before: u64, after: u64, allow_unknown: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let mut writers: BTreeMap<u64, Vec<&Increment>> = BTreeMap::new();
    for increment in increments {
        if let Outcome::Written(value) = increment.outcome {
            writers.entry(value).or_default().push(increment);
        }
    }
    for (value, by) in &writers {
        if by.len() > 1 {
            problems.push(format!(
                "{} requests wrote {value}: an update was lost",
                by.len()
            ));
        }
        if *value <= before || *value > after {
            problems.push(format!(
                "a request wrote {value}, outside {}..={after}",
                before + 1
            ));
        }
    }
    let unknown: BTreeSet<u64> = increments
        .iter()
        .filter_map(|increment| match increment.outcome {
            Outcome::Unknown(value) => Some(value),
            _ => None,
        })
        .collect();
    for value in before + 1..=after {
        if writers.contains_key(&value) {
            continue;
        }
        if allow_unknown && unknown.contains(&value) {
            eprintln!(
                "value {value} was written by a request whose write failed when its scd was \
                 killed, yet landed: it counts, although the request did not succeed"
            );
            continue;
        }
        problems.push(format!(
            "no request wrote {value}, yet the counter is {after}"
        ));
    }
    for first in increments {
        let Outcome::Written(first_value) = first.outcome else {
            continue;
        };
        for later in increments {
            if let Outcome::Written(later_value) = later.outcome
                && later.sent_at > first.answered_at
                && later_value <= first_value
            {
                problems.push(format!(
                    "a request to {} sent after one to {} wrote {first_value} wrote {later_value}: \
                     it saw the counter go backwards",
                    later.server, first.server
                ));
            }
        }
    }
    problems
}

/// A two-node cluster (one backup, the default) whose nodes also listen for memcached.
fn start_cluster() -> (ScdCluster, Vec<u16>) {
    let memcached_ports: Vec<u16> = (0..2).map(|_| free_port(false)).collect();
    let cluster = ScdCluster::start_with(2, |index, builder| {
        builder
            .arg("--memcached")
            .arg(format!("127.0.0.1:{}", memcached_ports[index]))
    });
    cluster::wait_until_settled(&cluster.nodes.iter().collect::<Vec<_>>(), SETTLE_TIMEOUT);
    (cluster, memcached_ports)
}

/// A session id whose data and lock keys both have `node` as their primary, so killing `node`
/// takes the session and its lock with it. PHP takes the id from the cookie
/// (`session.use_strict_mode` is off by default).
fn session_id_primaried_by(node: &Scd, handler: Handler) -> String {
    for attempt in 0..400 {
        let id = format!("scdcluster{}x{attempt}", std::process::id());
        if cluster::is_primary_of(node, &handler.data_key(&id))
            && cluster::is_primary_of(node, &handler.lock_key(&id))
        {
            return id;
        }
    }
    panic!(
        "no session id of 400 has both its keys primaried by {}",
        node.name
    )
}

fn print_increments(increments: &[Increment]) {
    for increment in increments {
        match (&increment.outcome, &increment.detail) {
            // A failure's outcome already carries its answer.
            (Outcome::NotWritten(_), _) | (_, None) => {
                eprintln!("  {} -> {:?}", increment.server, increment.outcome);
            }
            (outcome, Some(detail)) => {
                eprintln!("  {} -> {outcome:?}, answered {detail:?}", increment.server);
            }
        }
    }
}

/// A session counted through web server A, whose `scd` is then killed, goes on through B.
fn session_survives_the_kill_of_its_scd(handler: Handler) {
    if !handler.available() {
        return;
    }
    let _one_at_a_time = cluster::one_cluster_at_a_time();
    let (ScdCluster { mut nodes }, memcached_ports) = start_cluster();
    let id = session_id_primaried_by(&nodes[0], handler);
    let server_a = WebServer::start("A", handler, &nodes[0], memcached_ports[0]);
    let server_b = WebServer::start("B", handler, &nodes[1], memcached_ports[1]);
    for expected in 1..=5 {
        assert_eq!(
            increment(&server_a, "A", &id).outcome,
            Outcome::Written(expected)
        );
    }
    nodes[0].kill9();
    let killed_at = Instant::now();
    for expected in 6..=8 {
        assert_eq!(
            increment(&server_b, "B", &id).outcome,
            Outcome::Written(expected),
            "the session's counter goes on through web server B"
        );
        if expected == 6 {
            eprintln!(
                "first request through B after the kill answered in {:?}",
                killed_at.elapsed()
            );
        }
    }
    assert_eq!(server_b.read_counter(&id), 8);
}

#[test]
fn a_phpredis_session_keeps_its_counter_when_the_scd_of_its_web_server_is_killed() {
    session_survives_the_kill_of_its_scd(Handler::Redis);
}

#[test]
fn a_php_memcached_session_keeps_its_counter_when_the_scd_of_its_web_server_is_killed() {
    session_survives_the_kill_of_its_scd(Handler::Memcached);
}

/// 20 concurrent requests on each of two web servers, each on its own node, on one session.
fn forty_concurrent_requests_count_exactly(handler: Handler) {
    if !handler.available() {
        return;
    }
    let _one_at_a_time = cluster::one_cluster_at_a_time();
    let (ScdCluster { nodes }, memcached_ports) = start_cluster();
    let server_a = WebServer::start("A", handler, &nodes[0], memcached_ports[0]);
    let server_b = WebServer::start("B", handler, &nodes[1], memcached_ports[1]);
    let id = format!("scdconcurrent{}", std::process::id());
    assert_eq!(increment(&server_a, "A", &id).outcome, Outcome::Written(1));
    let started = Instant::now();
    let increments = increment_concurrently([(&server_a, "A"), (&server_b, "B")], &id, || {});
    eprintln!(
        "{} concurrent requests took {:?}",
        increments.len(),
        started.elapsed()
    );
    let after = server_b.read_counter(&id);
    let mut problems = account(&increments, 1, after, false);
    if after != 1 + 2 * REQUESTS_PER_SERVER as u64 {
        problems.push(format!("the counter went from 1 to {after}, not 41"));
    }
    for increment in &increments {
        if !matches!(increment.outcome, Outcome::Written(_)) {
            problems.push(format!(
                "a request to {} failed: {:?}",
                increment.server, increment.outcome
            ));
        }
    }
    if !problems.is_empty() {
        print_increments(&increments);
        server_a.process.print_log();
        server_b.process.print_log();
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

#[test]
fn forty_concurrent_phpredis_requests_through_two_nodes_raise_the_counter_by_exactly_40() {
    forty_concurrent_requests_count_exactly(Handler::Redis);
}

#[test]
fn forty_concurrent_php_memcached_requests_through_two_nodes_raise_the_counter_by_exactly_40() {
    forty_concurrent_requests_count_exactly(Handler::Memcached);
}

/// The same 40 requests, while the node holding the session and its lock is killed.
fn concurrent_requests_survive_the_kill_of_the_session_holder(handler: Handler) {
    if !handler.available() {
        return;
    }
    let _one_at_a_time = cluster::one_cluster_at_a_time();
    let (ScdCluster { mut nodes }, memcached_ports) = start_cluster();
    let id = session_id_primaried_by(&nodes[0], handler);
    let server_a = WebServer::start("A", handler, &nodes[0], memcached_ports[0]);
    let server_b = WebServer::start("B", handler, &nodes[1], memcached_ports[1]);
    assert_eq!(increment(&server_a, "A", &id).outcome, Outcome::Written(1));
    let mut killed_at_opt = None;
    let increments = increment_concurrently([(&server_a, "A"), (&server_b, "B")], &id, || {
        // The session's data and lock live on node-1 as primary; a request holds the lock now
        // or is about to.
        nodes[0].kill9();
        killed_at_opt = Some(Instant::now());
    });
    let killed_at = killed_at_opt.expect("the node was killed");
    let last_answer = increments
        .iter()
        .map(|increment| increment.answered_at)
        .max()
        .expect("requests were sent");
    let after = server_b.read_counter(&id);
    let num_written = increments
        .iter()
        .filter(|increment| matches!(increment.outcome, Outcome::Written(_)))
        .count();
    eprintln!(
        "{handler:?}: after the kill of node-1, {num_written} of {} requests wrote the counter, which \
         is now {after}; the last request was answered {:?} after the kill",
        increments.len(),
        last_answer.saturating_duration_since(killed_at)
    );
    let mut problems = account(&increments, 1, after, true);
    for increment in &increments {
        if increment.server == "B" && !matches!(increment.outcome, Outcome::Written(_)) {
            problems.push(format!(
                "a request to web server B failed: {:?}",
                increment.outcome
            ));
        }
    }
    if !problems.is_empty() {
        print_increments(&increments);
        server_b.process.print_log();
        nodes[1].print_log();
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

#[test]
fn phpredis_requests_count_exactly_when_the_scd_holding_the_session_and_its_lock_is_killed() {
    concurrent_requests_survive_the_kill_of_the_session_holder(Handler::Redis);
}

#[test]
fn php_memcached_requests_count_exactly_when_the_scd_holding_the_session_and_its_lock_is_killed() {
    concurrent_requests_survive_the_kill_of_the_session_holder(Handler::Memcached);
}
