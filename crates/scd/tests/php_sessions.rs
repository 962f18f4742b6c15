//! PHP sessions through phpredis against a real `scd` process: PHP's built-in web server
//! (`PHP_CLI_SERVER_WORKERS=8 php -S ...`, fixtures in `tests/php/docroot`) with
//! `session.save_handler=redis`. Thirty concurrent requests of one session each increment a
//! counter: with `redis.session.locking_enabled=1` it ends exactly 30 higher; with locking off
//! updates are lost, which shows the test can tell (so the locked run proves something).
//!
//! Without `php` and its redis extension the tests say they are skipped, except under
//! `CI=true`, where they fail.

mod common;

use std::io::{BufReader, Write};
use std::net::SocketAddr;
use std::process::Command;

use common::{ChildProcess, HttpResponse, Scd, http_request, read_reply, request};

/// Concurrent requests of one session.
const NUM_CONCURRENT_REQUESTS: usize = 30;
/// PHP worker processes of the built-in server: up to this many requests run at once.
const PHP_WORKERS: usize = 8;

fn have_php_with_redis() -> bool {
    if !common::tool_available("php", "php-cli") {
        return false;
    }
    let has_redis = Command::new("php")
        .args(["-r", "exit(extension_loaded('redis') ? 0 : 1);"])
        .status()
        .is_ok_and(|status| status.success());
    if !has_redis {
        assert!(
            !common::running_in_ci(),
            "PHP's redis extension is missing; CI must have it (Debian package php-redis)"
        );
        eprintln!("SKIPPED: PHP's redis extension is not installed (Debian package php-redis)");
    }
    has_redis
}

/// PHP's built-in web server serving `tests/php/docroot`, with phpredis sessions in `scd`.
struct PhpServer {
    process: ChildProcess,
    addr: SocketAddr,
}

impl PhpServer {
    fn start(scd: &Scd, locking: bool) -> PhpServer {
        let settings = [
            "session.save_handler=redis".to_string(),
            format!("session.save_path=tcp://{}", scd.client_addr),
            format!(
                "redis.session.locking_enabled={}",
                if locking { 1 } else { 0 }
            ),
            // Wait for the lock up to 2000 x 5 ms = 10 s: phpredis' defaults (10 x 2 ms)
            // give up long before 30 requests of 20 ms each are through.
            "redis.session.lock_wait_time=5000".to_string(),
            "redis.session.lock_retries=2000".to_string(),
            "redis.session.lock_expire=60".to_string(),
            "session.gc_probability=0".to_string(),
            "display_errors=stderr".to_string(),
        ];
        let label = format!("locking {}", if locking { "on" } else { "off" });
        let (process, addr) = common::start_php_server(&label, PHP_WORKERS, &settings);
        PhpServer { process, addr }
    }

    fn get(&self, path: &str, session_id_opt: Option<&str>) -> HttpResponse {
        let headers: Vec<String> = session_id_opt
            .map(|id| vec![format!("Cookie: PHPSESSID={id}")])
            .unwrap_or_default();
        http_request(self.addr, path, &headers).unwrap_or_else(|error| {
            self.process.print_log();
            panic!("GET {path}: {error}")
        })
    }
}

/// The session id PHP set in a `Set-Cookie` header.
fn session_id(response: &HttpResponse) -> String {
    response
        .headers
        .iter()
        .filter(|(name, _)| name == "set-cookie")
        .find_map(|(_, value)| value.strip_prefix("PHPSESSID="))
        .and_then(|rest| rest.split(';').next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no session cookie in {response:?}"))
}

fn counter_of(response: &HttpResponse) -> u64 {
    assert_eq!(response.status, 200, "{response:?}");
    response
        .body
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a counter: {response:?}"))
}

/// Starts a session, then sends [`NUM_CONCURRENT_REQUESTS`] concurrent increments with its
/// cookie. Returns (counter before, counter after, statuses of the concurrent requests).
fn count_concurrently(php: &PhpServer) -> (String, u64, u64, Vec<HttpResponse>) {
    let first = php.get("/counter.php", None);
    let before = counter_of(&first);
    assert_eq!(before, 1);
    let id = session_id(&first);
    let responses: Vec<HttpResponse> = std::thread::scope(|scope| {
        let requests: Vec<_> = (0..NUM_CONCURRENT_REQUESTS)
            .map(|_| scope.spawn(|| php.get("/counter.php", Some(&id))))
            .collect();
        requests
            .into_iter()
            .map(|request| request.join().expect("a request thread"))
            .collect()
    });
    let after = counter_of(&php.get("/read.php", Some(&id)));
    (id, before, after, responses)
}

/// A RESP command on a fresh connection to `scd`, raw reply as text.
fn scd_call(scd: &Scd, args: &[&str]) -> String {
    let mut stream = scd.connect();
    let args: Vec<&[u8]> = args.iter().map(|arg| arg.as_bytes()).collect();
    stream.write_all(&request(&args)).expect("send");
    String::from_utf8_lossy(&read_reply(&mut BufReader::new(&mut stream)).expect("reply"))
        .into_owned()
}

#[test]
fn php_sessions_with_locking_count_every_concurrent_request_exactly() {
    if !have_php_with_redis() {
        return;
    }
    let scd = Scd::start(&[]);
    let php = PhpServer::start(&scd, true);
    let (id, before, after, responses) = count_concurrently(&php);
    let failures: Vec<&HttpResponse> = responses
        .iter()
        .filter(|response| response.status != 200)
        .collect();
    if !failures.is_empty() {
        php.process.print_log();
    }
    assert!(failures.is_empty(), "requests failed: {failures:?}");
    assert_eq!(
        after,
        before + NUM_CONCURRENT_REQUESTS as u64,
        "with locking, every request's increment must survive"
    );
    // Each request saw a different value: the requests really ran one after the other.
    let mut seen: Vec<u64> = responses.iter().map(counter_of).collect();
    seen.sort_unstable();
    let expected: Vec<u64> = (before + 1..=after).collect();
    assert_eq!(seen, expected);

    // The session is in scd under phpredis' key, and the lock was released (by phpredis'
    // compare-and-delete script, which scd runs natively).
    let stored = scd_call(&scd, &["GET", &format!("PHPREDIS_SESSION:{id}")]);
    assert!(stored.contains(&format!("counter|i:{after};")), "{stored}");
    assert_eq!(
        scd_call(&scd, &["EXISTS", &format!("PHPREDIS_SESSION:{id}_LOCK")]),
        ":0\r\n"
    );
    let metrics = scd.admin_get("/metrics").body;
    let script_calls: u64 = ["evalsha", "eval"]
        .iter()
        .filter_map(|name| {
            let prefix = format!("scd_commands_total{{command=\"{name}\"}} ");
            metrics
                .lines()
                .find_map(|line| line.strip_prefix(prefix.as_str()))
                .and_then(|value| value.trim().parse::<u64>().ok())
        })
        .sum();
    assert!(
        script_calls > NUM_CONCURRENT_REQUESTS as u64,
        "phpredis released its locks {script_calls} times through EVAL/EVALSHA"
    );
}

#[test]
fn php_sessions_without_locking_lose_updates_so_the_locked_test_can_fail() {
    if !have_php_with_redis() {
        return;
    }
    let scd = Scd::start(&[]);
    let php = PhpServer::start(&scd, false);
    let (_, before, after, responses) = count_concurrently(&php);
    for response in &responses {
        assert_eq!(response.status, 200, "{response:?}");
    }
    assert!(
        after < before + NUM_CONCURRENT_REQUESTS as u64,
        "without locking {NUM_CONCURRENT_REQUESTS} overlapping requests should lose updates, \
         but the counter went from {before} to {after}"
    );
    eprintln!(
        "without locking: {} of {NUM_CONCURRENT_REQUESTS} increments survived",
        after - before
    );
}

#[test]
fn php_sessions_survive_in_another_database_with_a_password() {
    if !have_php_with_redis() {
        return;
    }
    // phpredis' save_path parameters: auth and database, as a deployment would set them.
    let scd = Scd::start(&["--requirepass", "php-secret"]);
    let docroot = common::repository_root().join("tests/php/docroot");
    let script = format!(
        "ini_set('session.save_handler', 'redis');\
         ini_set('session.save_path', 'tcp://{}?auth=php-secret&database=3');\
         session_id('fixed-session-id-1234');\
         session_start(); $_SESSION['user'] = 'alice'; session_write_close();\
         $_SESSION = []; session_start(); echo $_SESSION['user'];",
        scd.client_addr
    );
    let output = Command::new("php")
        .current_dir(&docroot)
        .args(["-r", &script])
        .output()
        .expect("php runs");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && said == "alice",
        "php said {said:?}, {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut stream = scd.connect();
    for (args, expect) in [
        (&["AUTH", "php-secret"][..], "+OK\r\n"),
        (&["SELECT", "3"], "+OK\r\n"),
        (
            &["EXISTS", "PHPREDIS_SESSION:fixed-session-id-1234"],
            ":1\r\n",
        ),
        // session.gc_maxlifetime (1440 s by default) becomes the key's TTL.
        (
            &["TTL", "PHPREDIS_SESSION:fixed-session-id-1234"],
            ":1440\r\n",
        ),
        (&["SELECT", "0"], "+OK\r\n"),
        (
            &["EXISTS", "PHPREDIS_SESSION:fixed-session-id-1234"],
            ":0\r\n",
        ),
    ] {
        let args: Vec<&[u8]> = args.iter().map(|arg| arg.as_bytes()).collect();
        stream.write_all(&request(&args)).expect("send");
        let reply = read_reply(&mut BufReader::new(&mut stream)).expect("reply");
        assert_eq!(String::from_utf8_lossy(&reply), expect);
    }
}
