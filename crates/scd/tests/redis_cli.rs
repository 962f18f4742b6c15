//! `redis-cli` against a real `scd` process: one-shot commands, `--pipe`, `--scan`, `--bigkeys`,
//! RESP3 with `-3`, passwords, and an interactive start in a terminal (where `redis-cli` asks
//! the server for `COMMAND DOCS` to build its hints).
//!
//! Without `redis-cli` the tests say they are skipped, except under `CI=true`, where they fail.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Scd, tool_available, wait_until};

fn have_redis_cli() -> bool {
    tool_available("redis-cli", "redis-tools")
}

/// Runs `redis-cli -h 127.0.0.1 -p PORT <args>` with `stdin` as its input; returns its output.
fn redis_cli_with_input(node: &Scd, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new("redis-cli")
        .arg("-h")
        .arg(node.client_addr.ip().to_string())
        .arg("-p")
        .arg(node.client_addr.port().to_string())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("redis-cli runs");
    let mut input = child.stdin.take().expect("stdin is piped");
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || input.write_all(&stdin));
    let output = child.wait_with_output().expect("redis-cli ends");
    writer
        .join()
        .expect("writer")
        .expect("redis-cli reads its input");
    output
}

/// Runs `redis-cli` with `args`; returns standard output, after checking it exited 0 and wrote
/// nothing to standard error.
#[track_caller]
fn redis_cli(node: &Scd, args: &[&str]) -> String {
    let output = redis_cli_with_input(node, args, b"");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.is_empty(),
        "redis-cli {args:?}: {:?}, stderr {stderr}",
        output.status
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn redis_cli_runs_commands_and_prints_their_replies() {
    if !have_redis_cli() {
        return;
    }
    let node = Scd::start(&[]);
    assert_eq!(redis_cli(&node, &["PING"]), "PONG\n");
    assert_eq!(
        redis_cli(&node, &["SET", "greeting", "hello world"]),
        "OK\n"
    );
    assert_eq!(redis_cli(&node, &["GET", "greeting"]), "hello world\n");
    assert_eq!(
        redis_cli(&node, &["HSET", "h", "f1", "v1", "f2", "v2"]),
        "2\n"
    );
    assert_eq!(
        redis_cli(&node, &["--no-raw", "HGETALL", "h"]),
        "1) \"f1\"\n2) \"v1\"\n3) \"f2\"\n4) \"v2\"\n"
    );
    assert_eq!(redis_cli(&node, &["--no-raw", "GET", "nope"]), "(nil)\n");
    assert_eq!(
        redis_cli(&node, &["--no-raw", "TTL", "greeting"]),
        "(integer) -1\n"
    );
    assert_eq!(
        redis_cli(&node, &["--no-raw", "GET"]),
        "(error) ERR wrong number of arguments for 'get' command\n"
    );
    assert_eq!(
        redis_cli(&node, &["--no-raw", "GET", "h"]),
        "(error) WRONGTYPE Operation against a key holding the wrong kind of value\n"
    );
    // -n selects a database.
    assert_eq!(
        redis_cli(&node, &["-n", "7", "SET", "k", "in seven"]),
        "OK\n"
    );
    assert_eq!(redis_cli(&node, &["-n", "7", "GET", "k"]), "in seven\n");
    assert_eq!(redis_cli(&node, &["GET", "k"]), "\n");
    let info = redis_cli(&node, &["INFO", "keyspace"]);
    assert!(info.contains("db7:keys=1,"), "{info}");
}

#[test]
fn redis_cli_speaks_resp3_with_dash_3() {
    if !have_redis_cli() {
        return;
    }
    let node = Scd::start(&[]);
    assert_eq!(redis_cli(&node, &["-3", "HSET", "h", "f", "v"]), "1\n");
    // RESP3 maps print as maps, nulls as (nil).
    assert_eq!(
        redis_cli(&node, &["-3", "--no-raw", "HGETALL", "h"]),
        "1# \"f\" => \"v\"\n"
    );
    assert_eq!(
        redis_cli(&node, &["-3", "--no-raw", "GET", "nope"]),
        "(nil)\n"
    );
    let hello = redis_cli(&node, &["-3", "--no-raw", "HELLO", "3"]);
    assert!(hello.contains("\"proto\" => (integer) 3"), "{hello}");
    let client = redis_cli(&node, &["-3", "CLIENT", "INFO"]);
    assert!(client.contains(" resp=3 "), "{client}");
}

#[test]
fn redis_cli_pipe_scan_and_bigkeys_see_every_key() {
    if !have_redis_cli() {
        return;
    }
    let node = Scd::start(&[]);
    // --pipe sends raw protocol and counts the replies (it ends with an ECHO of its own).
    let mut commands = String::new();
    for index in 0..400 {
        commands.push_str(&format!("SET session:{index} value-{index}\r\n"));
    }
    for index in 0..100 {
        commands.push_str(&format!("HSET user:{index} name n{index}\r\n"));
    }
    let output = redis_cli_with_input(&node, &["--pipe"], commands.as_bytes());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("errors: 0, replies: 500"), "{stdout}");

    let all = redis_cli(&node, &["--scan"]);
    let mut keys: Vec<&str> = all.lines().collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(
        keys.len(),
        500,
        "--scan listed {} distinct keys",
        keys.len()
    );
    let users = redis_cli(&node, &["--scan", "--pattern", "user:*"]);
    let mut users: Vec<&str> = users.lines().collect();
    users.sort_unstable();
    let mut expected: Vec<String> = (0..100).map(|index| format!("user:{index}")).collect();
    expected.sort_unstable();
    assert_eq!(users, expected);

    let bigkeys = redis_cli(&node, &["--bigkeys"]);
    assert!(bigkeys.contains("Sampled 500 keys"), "{bigkeys}");
    assert!(bigkeys.contains("100 hashs with 100 fields"), "{bigkeys}");
    assert!(bigkeys.contains("400 strings"), "{bigkeys}");
}

#[test]
fn redis_cli_authenticates_with_a_password_in_both_protocols() {
    if !have_redis_cli() {
        return;
    }
    let node = Scd::start(&["--requirepass", "s3cret"]);
    assert_eq!(
        redis_cli(&node, &["--no-raw", "GET", "k"]),
        "(error) NOAUTH Authentication required.\n"
    );
    // -a sends AUTH in RESP2 and HELLO 3 AUTH in RESP3.
    let quiet = "--no-auth-warning";
    assert_eq!(
        redis_cli(&node, &[quiet, "-a", "s3cret", "SET", "k", "v"]),
        "OK\n"
    );
    assert_eq!(
        redis_cli(&node, &[quiet, "-3", "-a", "s3cret", "GET", "k"]),
        "v\n"
    );
    assert_eq!(
        redis_cli(
            &node,
            &[quiet, "--user", "default", "--pass", "s3cret", "GET", "k"]
        ),
        "v\n"
    );
    let wrong = redis_cli_with_input(&node, &[quiet, "-a", "wrong", "GET", "k"], b"");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&wrong.stdout),
        String::from_utf8_lossy(&wrong.stderr)
    );
    assert!(said.contains("WRONGPASS"), "{said}");
}

// ---------------------------------------------------------------------------------------------
// Interactive redis-cli in a pseudo-terminal

/// A child process whose standard input, output and error are a pseudo-terminal, so it behaves
/// as in front of a person (redis-cli then starts its line editor and fetches its hints).
struct Terminal {
    master: File,
    child: std::process::Child,
    screen: Arc<Mutex<Vec<u8>>>,
}

impl Terminal {
    fn spawn(mut command: Command) -> Terminal {
        let mut master_fd: libc::c_int = -1;
        let mut slave_fd: libc::c_int = -1;
        let size = libc::winsize {
            ws_row: 40,
            ws_col: 200,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty writes two descriptors into the pointed-to integers; the name and
        // termios pointers may be null.
        let result = unsafe {
            libc::openpty(
                &mut master_fd,
                &mut slave_fd,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(result, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened by openpty and are owned by nobody else.
        let (master, slave) = unsafe {
            (
                OwnedFd::from_raw_fd(master_fd),
                OwnedFd::from_raw_fd(slave_fd),
            )
        };
        let clone = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup of the terminal"));
        command
            .stdin(clone(&slave))
            .stdout(clone(&slave))
            .stderr(clone(&slave))
            .env("TERM", "xterm");
        let child = command.spawn().expect("the program runs");
        drop(slave);
        let master = File::from(master);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().expect("a second handle on the terminal");
        let screen_for_reader = Arc::clone(&screen);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            // Reading ends with EIO once the child has closed the terminal.
            while let Ok(read @ 1..) = reader.read(&mut buffer) {
                screen_for_reader
                    .lock()
                    .expect("screen lock")
                    .extend_from_slice(&buffer[..read]);
            }
        });
        Terminal {
            master,
            child,
            screen,
        }
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().expect("screen lock")).into_owned()
    }

    fn type_text(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).expect("typing");
    }

    /// Waits until the screen shows `needle` after byte `from`; returns the end of the match.
    #[track_caller]
    fn expect_after(&self, from: usize, needle: &str) -> usize {
        wait_until(Duration::from_secs(10), || {
            let screen = self.screen();
            screen
                .get(from..)
                .and_then(|rest| rest.find(needle))
                .map(|at| from + at + needle.len())
        })
        .unwrap_or_else(|| panic!("the terminal never showed {needle:?}:\n{}", self.screen()))
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `scd_commands_total{command="NAME"}` and the errors counter of that name, from `/metrics`.
fn command_counts(node: &Scd, name: &str) -> (u64, u64) {
    let metrics = node.admin_get("/metrics").body;
    let read = |metric: &str| -> u64 {
        let prefix = format!("{metric}{{command=\"{name}\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .map_or(0, |value| value.trim().parse().expect("a counter value"))
    };
    (read("scd_commands_total"), read("scd_command_errors_total"))
}

#[test]
fn interactive_redis_cli_starts_without_errors_and_gets_its_command_docs() {
    if !have_redis_cli() {
        return;
    }
    let node = Scd::start(&[]);
    let (commands_before, errors_before) = command_counts(&node, "command");
    let mut command = Command::new("redis-cli");
    command
        .arg("-h")
        .arg(node.client_addr.ip().to_string())
        .arg("-p")
        .arg(node.client_addr.port().to_string());
    let mut terminal = Terminal::spawn(command);
    let prompt = format!("{}>", node.client_addr);
    let mut at = terminal.expect_after(0, &prompt);
    let start = terminal.screen();
    assert!(
        !start.to_ascii_lowercase().contains("error"),
        "redis-cli printed an error at start: {start}"
    );
    // At start redis-cli asked for COMMAND DOCS, and got no error.
    let (commands_after, errors_after) = command_counts(&node, "command");
    assert!(
        commands_after > commands_before,
        "redis-cli sent no COMMAND at start"
    );
    assert_eq!(errors_after, errors_before, "COMMAND failed for redis-cli");

    terminal.type_text("PING\r");
    at = terminal.expect_after(at, "PONG");
    terminal.type_text("SET greeting hello\r");
    at = terminal.expect_after(at, "OK");
    terminal.type_text("GET greeting\r");
    at = terminal.expect_after(at, "\"hello\"");
    terminal.type_text("HGETALL nope\r");
    at = terminal.expect_after(at, "(empty array)");
    // Hints for a command being typed come from the command docs.
    terminal.type_text("HSET ");
    at = terminal.expect_after(at, "key field value");
    terminal.type_text("\u{15}GET\r");
    at = terminal.expect_after(
        at,
        "(error) ERR wrong number of arguments for 'get' command",
    );
    terminal.type_text("QUIT\r");
    let status = wait_until(Duration::from_secs(10), || {
        terminal.child.try_wait().ok().flatten()
    })
    .unwrap_or_else(|| panic!("redis-cli did not quit:\n{}", terminal.screen()));
    assert!(status.success(), "redis-cli exited with {status:?}");
    let _ = at;
}
