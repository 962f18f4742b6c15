//! Real `scd` processes for process tests: nodes on free loopback ports, started and waited for
//! with a deadline, their logs kept and printed when a test fails, signals on demand (`kill -9`,
//! `-STOP`/`-CONT`, SIGTERM, SIGINT) and a `kill -9` when they go out of scope.
//!
//! Each test file under `crates/scd/tests` says `mod common;` and uses the part it needs, hence
//! the `dead_code` allowance. Typical use:
//!
//! ```ignore
//! let node = Scd::start(&["--requirepass", "secret"]);
//! let mut connection = node.connect();
//! let cluster = ScdCluster::start(3, &["--backups", "1"]);
//! cluster.nodes[1].pause();            // kill -STOP
//! let status = cluster.nodes[0].kill9(); // kill -9, reaped
//! ```
//!
//! Children are started with `PR_SET_PDEATHSIG = SIGKILL`, so they die with the test process
//! even when it is killed itself. Linux ties that signal to the *thread* that spawned the
//! child: start a node on the thread that owns it (a test's own thread), not on a helper thread
//! that ends earlier.

#![allow(dead_code)]

pub mod cluster;

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a node may take from spawn to answering. Generous: a debug build on two shared
/// cores can be slow, and a test waits only as long as the node actually needs.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to exit after SIGTERM or SIGINT.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Read timeout of the connections handed out by [`Scd::connect`]: a reply that takes longer is
/// a failure, not a hang.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes of log kept per process; older lines are dropped first.
const MAX_LOG_BYTES: usize = 4 << 20;
/// Start attempts when a chosen port was taken between choosing and binding it.
const MAX_START_ATTEMPTS: usize = 5;
/// Ports are chosen in this range: below Linux's ephemeral range (32768 and up), so outgoing
/// connections of the tests themselves never take them.
const PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;

/// The `scd` binary cargo built for these tests (the same profile as the tests).
pub fn scd_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_scd"))
}

/// The repository's root folder (for fixtures such as `tests/php`).
pub fn repository_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether this run is CI's, where a missing tool is a failure rather than a skip.
pub fn running_in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true" || value == "1")
}

/// Returns whether `program` can be run (found on `PATH`). When it cannot: under CI a panic
/// naming the package to install; elsewhere a printed skip reason, and `false`.
pub fn tool_available(program: &str, debian_package: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        assert!(
            !running_in_ci(),
            "`{program}` is missing; CI must have it (Debian package {debian_package}; tests/run.sh installs it)"
        );
        eprintln!(
            "SKIPPED: `{program}` is not installed (Debian package {debian_package}; `bash tests/run.sh` installs it)"
        );
    }
    found
}

/// Waits until `condition` returns `Some`, checking every few milliseconds, for at most
/// `timeout`. This is waiting on a condition with a deadline, not sleeping for a guess.
pub fn wait_until<T>(timeout: Duration, mut condition: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = condition() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------------
// Ports

/// Ports handed out by this test process, never handed out twice.
fn ports_handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A loopback port that is free now for TCP, and for UDP too when `with_udp` (a peer port
/// carries both). Another process may still take it before the node binds it; [`ScdBuilder`]
/// retries with fresh ports when that happens.
pub fn free_port(with_udp: bool) -> u16 {
    let random_state = std::collections::hash_map::RandomState::new();
    let mut ports = ports_handed_out()
        .lock()
        .unwrap_or_else(|poison| poison.into_inner());
    for attempt in 0u64.. {
        assert!(attempt < 10_000, "no free loopback port in {PORT_RANGE:?}");
        let mut hasher = random_state.build_hasher();
        hasher.write_u64(attempt);
        hasher.write_u32(std::process::id());
        let span = u64::from(PORT_RANGE.end - PORT_RANGE.start);
        let port = PORT_RANGE.start + (hasher.finish() % span) as u16;
        if ports.contains(&port) {
            continue;
        }
        let tcp_free = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok();
        let udp_free = !with_udp || UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok();
        if tcp_free && udp_free {
            ports.insert(port);
            return port;
        }
    }
    unreachable!("the loop above returns or panics")
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

// ---------------------------------------------------------------------------------------------
// Any child process

/// Everything a child printed, shared with the threads that read its output.
#[derive(Default)]
struct LogBuffer {
    text: Mutex<String>,
    /// Notified on every appended line and when a reader ends.
    appended: Condvar,
    /// Output streams still being read (stdout, stderr).
    num_open_readers: AtomicUsize,
}

impl LogBuffer {
    /// Waits (at most `timeout`) until every output stream reached its end, so a log printed
    /// after the process died holds its last lines.
    fn wait_for_end(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut text = self
            .text
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        while self.num_open_readers.load(Ordering::SeqCst) > 0 {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            text = self
                .appended
                .wait_timeout(text, deadline - now)
                .unwrap_or_else(|poison| poison.into_inner())
                .0;
        }
    }

    fn append_line(&self, line: &str) {
        let mut text = self
            .text
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        text.push_str(line);
        if !line.ends_with('\n') {
            text.push('\n');
        }
        if text.len() > MAX_LOG_BYTES {
            let cut = text.len() - MAX_LOG_BYTES / 2;
            let cut = (cut..text.len())
                .find(|&index| text.is_char_boundary(index))
                .unwrap_or(text.len());
            text.replace_range(..cut, "[... older lines dropped ...]\n");
        }
        self.appended.notify_all();
    }
}

/// Removes terminal colour sequences (`ESC [ ... letter`) so logs can be searched as text.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn spawn_log_reader(stream: impl Read + Send + 'static, log: Arc<LogBuffer>) {
    log.num_open_readers.fetch_add(1, Ordering::SeqCst);
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => log.append_line(&strip_ansi(&String::from_utf8_lossy(&line))),
            }
        }
        // Decrement under the lock, so a waiter cannot miss the notification.
        let _text = log.text.lock().unwrap_or_else(|poison| poison.into_inner());
        log.num_open_readers.fetch_sub(1, Ordering::SeqCst);
        log.appended.notify_all();
    });
}

/// A child process whose standard output and error are kept as its log, killed (`kill -9`) and
/// reaped when dropped. When the test is failing (panicking) at that moment, the log is printed
/// so the test's output shows what the process said.
pub struct ChildProcess {
    label: String,
    child: Child,
    log: Arc<LogBuffer>,
    exit_status_opt: Option<ExitStatus>,
}

impl ChildProcess {
    /// Starts `command` with its output captured. `label` names it in printed logs.
    pub fn spawn(label: impl Into<String>, mut command: Command) -> std::io::Result<ChildProcess> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A group of its own, so that what it starts (PHP's server workers, the demo's
            // nodes) is killed with it.
            .process_group(0);
        // SAFETY: prctl is async-signal-safe and touches nothing of the parent's state.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        let log = Arc::new(LogBuffer::default());
        if let Some(stdout) = child.stdout.take() {
            spawn_log_reader(stdout, Arc::clone(&log));
        }
        if let Some(stderr) = child.stderr.take() {
            spawn_log_reader(stderr, Arc::clone(&log));
        }
        Ok(ChildProcess {
            label: label.into(),
            child,
            log,
            exit_status_opt: None,
        })
    }

    /// The name used in printed logs.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("process ids fit in pid_t")
    }

    /// Everything the process printed so far (colours removed).
    pub fn log(&self) -> String {
        self.log
            .text
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    /// Waits until the log contains `needle`, for at most `timeout`. Returns whether it did.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut text = self
            .log
            .text
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        loop {
            if text.contains(needle) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            text = self
                .log
                .appended
                .wait_timeout(text, deadline - now)
                .unwrap_or_else(|poison| poison.into_inner())
                .0;
        }
    }

    /// Sends `signal` (a `libc::SIG*` number) to the process. Does nothing once it was reaped.
    pub fn signal(&self, signal: i32) {
        if self.exit_status_opt.is_some() {
            return;
        }
        // SAFETY: kill(2) with our own child's pid; the child is not reaped yet, so the pid is
        // still ours.
        let result = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(
            result,
            0,
            "kill -{signal} {} ({}): {}",
            self.pid(),
            self.label,
            std::io::Error::last_os_error()
        );
    }

    /// `kill -STOP`: the process freezes, its sockets stay open but nothing answers. Returns
    /// once every thread of the process is stopped (the kernel stops them asynchronously).
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
        let stopped = wait_until(Duration::from_secs(10), || {
            self.thread_states()
                .iter()
                .all(|state| *state == 'T')
                .then_some(())
        });
        assert!(
            stopped.is_some(),
            "{} did not stop after SIGSTOP",
            self.label
        );
    }

    /// `kill -CONT`: a paused process goes on. Returns once no thread is stopped any more.
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
        let resumed = wait_until(Duration::from_secs(10), || {
            (!self.thread_states().contains(&'T')).then_some(())
        });
        assert!(
            resumed.is_some(),
            "{} did not go on after SIGCONT",
            self.label
        );
    }

    /// The state letter (`R`, `S`, `T`, ...) of every thread, from `/proc/PID/task/*/stat`.
    fn thread_states(&self) -> Vec<char> {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return Vec::new();
        };
        tasks
            .filter_map(|task| {
                let stat = std::fs::read_to_string(task.ok()?.path().join("stat")).ok()?;
                // The state follows the command name, which is in parentheses and may hold
                // spaces: take the first letter after the last ')'.
                stat.rsplit_once(')')?.1.trim_start().chars().next()
            })
            .collect()
    }

    /// SIGTERM: a planned stop. Use [`ChildProcess::wait_exit`] for the outcome.
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    /// SIGINT, as Ctrl-C in a terminal.
    pub fn interrupt(&self) {
        self.signal(libc::SIGINT);
    }

    /// `kill -9` and reap: the process is gone when this returns.
    pub fn kill9(&mut self) -> ExitStatus {
        if let Some(status) = self.exit_status_opt {
            return status;
        }
        self.signal(libc::SIGKILL);
        kill_group(self.pid());
        let status = self.child.wait().expect("a killed child can be reaped");
        self.exit_status_opt = Some(status);
        status
    }

    /// The exit status if the process has exited (reaping it), without waiting.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit_status_opt.is_none() {
            self.exit_status_opt = self.child.try_wait().ok().flatten();
        }
        self.exit_status_opt
    }

    /// Waits at most `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = wait_until(timeout, || self.try_exit_status())?;
        // The process is gone but its last lines may still be in the pipes: read them, so a
        // test that checks what it said before exiting sees all of it.
        self.log.wait_for_end(Duration::from_secs(5));
        Some(status)
    }

    /// Resident set size from `/proc/PID/status` (`VmRSS`), in bytes; `None` once exited.
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
        let kilobytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kilobytes * 1024)
    }

    /// Prints the log to the test's output, framed by the label.
    pub fn print_log(&self) {
        if self.exit_status_opt.is_some() {
            // The process is gone: its last lines are still on their way through the pipes.
            self.log.wait_for_end(Duration::from_secs(2));
        }
        eprintln!(
            "----- log of {} (pid {}) -----\n{}----- end of log of {} -----",
            self.label,
            self.pid(),
            self.log(),
            self.label
        );
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if self.exit_status_opt.is_none() {
            // SIGKILL also ends a stopped process; errors mean it is already gone.
            let _ = self.child.kill();
            self.exit_status_opt = self.child.wait().ok();
        }
        // Whatever it started and left behind (PHP's workers outlive a killed server).
        kill_group(self.pid());
        if std::thread::panicking() {
            self.print_log();
        }
    }
}

/// PHP's built-in web server serving `tests/php/docroot` with `PHP_CLI_SERVER_WORKERS=workers`
/// and each of `settings` given as `-d`, on a free loopback port (another one when the port was
/// taken meanwhile). `label` names it in logs; the address is appended.
pub fn start_php_server(
    label: &str,
    workers: usize,
    settings: &[String],
) -> (ChildProcess, SocketAddr) {
    let docroot = repository_root().join("tests/php/docroot");
    for _attempt in 0..5 {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port(false)));
        let mut command = Command::new("php");
        command.env("PHP_CLI_SERVER_WORKERS", workers.to_string());
        for setting in settings {
            command.arg("-d").arg(setting);
        }
        command
            .arg("-S")
            .arg(addr.to_string())
            .arg("-t")
            .arg(&docroot);
        let mut process =
            ChildProcess::spawn(format!("php -S {addr} ({label})"), command).expect("php runs");
        let ready = wait_until(READY_TIMEOUT, || {
            if process.try_exit_status().is_some() {
                return Some(false);
            }
            std::net::TcpStream::connect(addr).ok().map(|_| true)
        });
        match ready {
            Some(true) => return (process, addr),
            Some(false) if process.log().contains("Failed to listen") => continue,
            _ => {
                process.print_log();
                panic!("php -S did not start");
            }
        }
    }
    panic!("php -S found no free port");
}

/// Sends SIGKILL to the process group `leader_pid` leads (its own, see `ChildProcess::spawn`);
/// nothing happens when the group is gone.
pub fn kill_group(leader_pid: i32) {
    // SAFETY: kill(2) on the group of a child this test started in a group of its own.
    unsafe {
        libc::kill(-leader_pid, libc::SIGKILL);
    }
}

/// Describes how a process ended, for assertion messages: `exit code 0` or `signal 9`.
pub fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => format!("{status:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// scd nodes

/// How a started node is known to be ready.
#[derive(Clone, Debug)]
pub enum Readiness {
    /// The admin port answers `GET /health` with any HTTP response (the node serves; whether
    /// it is healthy is for the test to check). The default when the admin port is on.
    AdminAnswers,
    /// The client port answers `PING` with any reply line (`+PONG`, `-NOAUTH ...`). The
    /// default with `--admin off`.
    PingAnswers,
    /// The log contains this text (for nodes that answer nobody on loopback, e.g. `--allow`
    /// without 127.0.0.1).
    LogContains(String),
}

/// Options of one node before it starts. Ports are chosen by the builder; do not pass
/// `--client`, `--peer` or `--admin`.
#[derive(Clone, Debug)]
pub struct ScdBuilder {
    name_opt: Option<String>,
    args: Vec<String>,
    admin: bool,
    readiness_opt: Option<Readiness>,
    /// Extra `--join` targets, fixed before the start (cluster tests).
    join: Vec<SocketAddr>,
    /// Ports to use on the first attempt (cluster tests choose them ahead to tell every node
    /// the others' addresses).
    ports_opt: Option<NodePorts>,
}

/// The ports of one node.
#[derive(Clone, Copy, Debug)]
pub struct NodePorts {
    /// RESP client port.
    pub client: u16,
    /// Peer TCP port, and UDP for heartbeats.
    pub peer: u16,
    /// Admin HTTP port.
    pub admin: u16,
}

impl NodePorts {
    /// Three fresh free ports.
    pub fn choose() -> NodePorts {
        NodePorts {
            client: free_port(false),
            peer: free_port(true),
            admin: free_port(false),
        }
    }
}

impl Default for ScdBuilder {
    fn default() -> ScdBuilder {
        ScdBuilder {
            name_opt: None,
            args: Vec::new(),
            admin: true,
            readiness_opt: None,
            join: Vec::new(),
            ports_opt: None,
        }
    }
}

impl ScdBuilder {
    /// `--name NAME` (the default is `node-<peer port>`).
    pub fn name(mut self, name: impl Into<String>) -> ScdBuilder {
        self.name_opt = Some(name.into());
        self
    }

    /// One more command-line argument for `scd run`.
    pub fn arg(mut self, arg: impl Into<String>) -> ScdBuilder {
        self.args.push(arg.into());
        self
    }

    /// More command-line arguments for `scd run`.
    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> ScdBuilder {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// `--admin off`: no admin port (readiness is then checked with PING).
    pub fn without_admin(mut self) -> ScdBuilder {
        self.admin = false;
        self
    }

    /// How to know the node is ready (see [`Readiness`] for the defaults).
    pub fn ready_when(mut self, readiness: Readiness) -> ScdBuilder {
        self.readiness_opt = Some(readiness);
        self
    }

    /// Adds `--join ADDR` for each address.
    pub fn join(mut self, peers: impl IntoIterator<Item = SocketAddr>) -> ScdBuilder {
        self.join.extend(peers);
        self
    }

    /// Uses these ports (if they are still free when the node binds them; otherwise fresh ones).
    pub fn ports(mut self, ports: NodePorts) -> ScdBuilder {
        self.ports_opt = Some(ports);
        self
    }

    /// Starts the node and waits until it is ready. Panics, printing the node's log, if it
    /// exits or is not ready within [`READY_TIMEOUT`]. When a port was taken by someone else
    /// between choosing and binding it, starts again on fresh ports.
    pub fn start(self) -> Scd {
        let mut ports = self.ports_opt.unwrap_or_else(NodePorts::choose);
        for attempt in 1..=MAX_START_ATTEMPTS {
            match self.try_start(ports) {
                Ok(node) => return node,
                Err(StartFailure::PortTaken(process)) if attempt < MAX_START_ATTEMPTS => {
                    drop(process);
                    ports = NodePorts::choose();
                }
                Err(StartFailure::PortTaken(process)) => {
                    process.print_log();
                    panic!("{}: ports kept being taken", process.label());
                }
                Err(StartFailure::Failed(process, why)) => {
                    process.print_log();
                    panic!("{} did not start: {why}", process.label());
                }
            }
        }
        unreachable!("the loop returns or panics")
    }

    fn try_start(&self, ports: NodePorts) -> Result<Scd, StartFailure> {
        let client_addr = loopback(ports.client);
        let peer_addr = loopback(ports.peer);
        let admin_addr_opt = self.admin.then(|| loopback(ports.admin));
        let name = self
            .name_opt
            .clone()
            .unwrap_or_else(|| format!("node-{}", ports.peer));
        let mut command = Command::new(scd_binary());
        command
            .arg("run")
            .arg("--name")
            .arg(&name)
            .arg("--client")
            .arg(client_addr.to_string())
            .arg("--peer")
            .arg(peer_addr.to_string())
            .arg("--admin")
            .arg(admin_addr_opt.map_or_else(|| "off".to_string(), |addr| addr.to_string()))
            .args(&self.args)
            // Plain log lines: tests search them.
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG");
        if !self.join.is_empty() {
            let join: Vec<String> = self.join.iter().map(ToString::to_string).collect();
            command.arg("--join").arg(join.join(","));
        }
        let label = format!("scd {name} (client {client_addr})");
        let mut process = ChildProcess::spawn(label, command)
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", scd_binary().display()));
        let readiness = self.readiness_opt.clone().unwrap_or(if self.admin {
            Readiness::AdminAnswers
        } else {
            Readiness::PingAnswers
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = process.try_exit_status() {
                // Its last lines (why it stopped) may still be in the pipes.
                process.log.wait_for_end(Duration::from_secs(5));
                let log = process.log();
                if log.contains("Address already in use") || log.contains("already listens there") {
                    return Err(StartFailure::PortTaken(process));
                }
                let why = format!("exited at start with {}", describe_exit(status));
                return Err(StartFailure::Failed(process, why));
            }
            let ready = match &readiness {
                Readiness::AdminAnswers => {
                    admin_addr_opt.is_some_and(|addr| http_get(addr, "/health").is_ok())
                }
                Readiness::PingAnswers => ping_answers(client_addr),
                Readiness::LogContains(needle) => process.log().contains(needle.as_str()),
            };
            if ready {
                return Ok(Scd {
                    process,
                    name,
                    client_addr,
                    peer_addr,
                    admin_addr_opt,
                });
            }
            if Instant::now() >= deadline {
                let why = format!("not ready ({readiness:?}) within {READY_TIMEOUT:?}");
                return Err(StartFailure::Failed(process, why));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

enum StartFailure {
    PortTaken(ChildProcess),
    Failed(ChildProcess, String),
}

/// Whether a RESP server at `addr` answers an inline `PING` with a reply line.
fn ping_answers(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(1) if byte[0] == b'+' || byte[0] == b'-')
}

/// A running `scd run` process and its addresses. Dereferences to its [`ChildProcess`] for
/// logs and signals.
pub struct Scd {
    process: ChildProcess,
    /// The node's `--name`.
    pub name: String,
    /// RESP listener.
    pub client_addr: SocketAddr,
    /// Peer listener (TCP) and heartbeat socket (UDP).
    pub peer_addr: SocketAddr,
    /// Admin HTTP listener, unless started without.
    pub admin_addr_opt: Option<SocketAddr>,
}

impl std::ops::Deref for Scd {
    type Target = ChildProcess;
    fn deref(&self) -> &ChildProcess {
        &self.process
    }
}

impl std::ops::DerefMut for Scd {
    fn deref_mut(&mut self) -> &mut ChildProcess {
        &mut self.process
    }
}

impl Scd {
    /// A node with these extra `scd run` arguments, started and ready.
    pub fn start(args: &[&str]) -> Scd {
        Scd::builder().args(args.iter().copied()).start()
    }

    /// A builder for more control (name, readiness, admin off, ports, join).
    pub fn builder() -> ScdBuilder {
        ScdBuilder::default()
    }

    /// `redis://127.0.0.1:PORT/` for client libraries.
    pub fn redis_url(&self) -> String {
        format!("redis://{}/", self.client_addr)
    }

    /// The admin address; panics for a node started without one.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr_opt
            .expect("this node was started with --admin off")
    }

    /// A plain TCP connection to the client port, with [`IO_TIMEOUT`] on reads and writes.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.client_addr)
            .unwrap_or_else(|error| panic!("cannot connect to {}: {error}", self.label()));
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("a read timeout can be set");
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("a write timeout can be set");
        stream
    }

    /// `GET path` on the admin port.
    pub fn admin_get(&self, path: &str) -> HttpResponse {
        http_get(self.admin_addr(), path)
            .unwrap_or_else(|error| panic!("GET {path} on {}: {error}", self.label()))
    }
}

/// Several nodes that join each other, named `node-1`, `node-2`, ... on free loopback ports.
pub struct ScdCluster {
    /// The nodes, in start order.
    pub nodes: Vec<Scd>,
}

impl ScdCluster {
    /// Starts `size` nodes, each with `args` and `--join` listing every other node's peer
    /// address, and waits until each is ready (see [`Readiness`]; whether they see each other
    /// is for the test to wait for).
    pub fn start(size: usize, args: &[&str]) -> ScdCluster {
        ScdCluster::start_with(size, |_, builder| builder.args(args.iter().copied()))
    }

    /// Like [`ScdCluster::start`], with `configure(index, builder)` deciding each node's options
    /// (index from 0).
    pub fn start_with(
        size: usize,
        mut configure: impl FnMut(usize, ScdBuilder) -> ScdBuilder,
    ) -> ScdCluster {
        let ports: Vec<NodePorts> = (0..size).map(|_| NodePorts::choose()).collect();
        let mut nodes: Vec<Scd> = Vec::with_capacity(size);
        for (index, own_ports) in ports.iter().enumerate() {
            // Nodes started earlier are joined at the address they really got (a retry may
            // have moved them); later ones at the address chosen for them.
            let peers = (0..size).filter(|&other| other != index).map(|other| {
                nodes
                    .get(other)
                    .map_or_else(|| loopback(ports[other].peer), |node| node.peer_addr)
            });
            let builder = Scd::builder()
                .name(format!("node-{}", index + 1))
                .ports(*own_ports)
                .join(peers.collect::<Vec<_>>());
            nodes.push(configure(index, builder).start());
        }
        ScdCluster { nodes }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// A response read by [`http_get`].
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: String,
}

impl HttpResponse {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.as_str())
    }
}

/// `GET path` with HTTP/1.1 and `Connection: close`, over a plain std `TcpStream`.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<HttpResponse> {
    http_request(addr, path, &[])
}

/// `GET path` with extra header lines (`"Cookie: a=b"`).
pub fn http_request(
    addr: SocketAddr,
    path: &str,
    extra_headers: &[String],
) -> std::io::Result<HttpResponse> {
    /// Bound on a response: the tests' pages are small.
    const MAX_RESPONSE_BYTES: u64 = 16 << 20;
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for header in extra_headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.take(MAX_RESPONSE_BYTES).read_to_end(&mut raw)?;
    parse_http_response(&raw)
}

fn parse_http_response(raw: &[u8]) -> std::io::Result<HttpResponse> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let head_end = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| invalid("no end of the HTTP head"))?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| invalid("no status line"))?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let mut body = raw[head_end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
    if chunked {
        body = dechunk(&body).ok_or_else(|| invalid("bad chunked body"))?;
    }
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = input.windows(2).position(|window| window == b"\r\n")?;
        let size_text = std::str::from_utf8(&input[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        input = &input[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(input.get(..size)?);
        input = input.get(size + 2..)?;
    }
}

// ---------------------------------------------------------------------------------------------
// RESP by hand

/// Reads one complete RESP reply from `stream` and returns its bytes (nested aggregates
/// included). For tests that check exact reply bytes.
pub fn read_reply(stream: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    read_reply_into(stream, &mut out, 0)?;
    Ok(out)
}

fn read_reply_into(
    stream: &mut impl BufRead,
    out: &mut Vec<u8>,
    depth: usize,
) -> std::io::Result<()> {
    let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    if depth > 32 {
        return Err(invalid("reply nested too deep".to_string()));
    }
    let start = out.len();
    let read = stream.read_until(b'\n', out)?;
    if read == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let line = String::from_utf8_lossy(&out[start..])
        .trim_end()
        .to_string();
    let (kind, rest) = line.split_at(1.min(line.len()));
    let count = || -> std::io::Result<i64> {
        rest.parse()
            .map_err(|_| invalid(format!("bad length in {line:?}")))
    };
    match kind {
        "+" | "-" | ":" | "_" | "," | "#" | "(" => Ok(()),
        "$" | "=" | "!" => {
            let length = count()?;
            if length >= 0 {
                let mut data = vec![0u8; usize::try_from(length).unwrap_or(0) + 2];
                stream.read_exact(&mut data)?;
                out.extend_from_slice(&data);
            }
            Ok(())
        }
        "*" | "~" | ">" => {
            for _ in 0..count()?.max(0) {
                read_reply_into(stream, out, depth + 1)?;
            }
            Ok(())
        }
        "%" | "|" => {
            for _ in 0..count()?.max(0) * 2 {
                read_reply_into(stream, out, depth + 1)?;
            }
            Ok(())
        }
        _ => Err(invalid(format!("unknown reply type in {line:?}"))),
    }
}

/// Encodes `args` as a RESP request (an array of bulk strings).
pub fn request(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads until the peer closes the connection, for at most [`IO_TIMEOUT`]. Returns what was
/// read and whether the connection was closed (end of stream or reset), as opposed to timing
/// out with the connection still open.
pub fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return (out, false);
        }
        let _ = stream.set_read_timeout(Some(remaining));
        match stream.read(&mut buffer) {
            Ok(0) => return (out, true),
            Ok(read) => out.extend_from_slice(&buffer[..read]),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                ) =>
            {
                return (out, true);
            }
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return (out, false);
            }
            Err(error) => panic!("reading until the connection closes: {error}"),
        }
    }
}
