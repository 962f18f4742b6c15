//! The memcached front end of the real `scd` binary with real clients: libmemcached's tools
//! (`memcstat`, `memccp`, `memccat`), PHP's `Memcached` class on the binary protocol, and PHP's
//! memcached session handler at its defaults under concurrent requests.
//!
//! A missing tool skips its test with a message, except under `CI=true`, where it fails: CI must
//! run every interop test (`tests/run.sh` installs the tools).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a test waits for a process to listen or a reply to come.
const DEADLINE: Duration = Duration::from_secs(20);

/// Whether the tool `name` can run (checked by running `probe`). When it cannot, the test is
/// skipped with a message, or fails under `CI=true`.
fn require(name: &str, probe: &mut Command) -> bool {
    let works = probe
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if works {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{name} is required under CI=true (bash tests/run.sh installs it)");
    }
    eprintln!("skipped: {name} is not installed (bash tests/run.sh installs it)");
    false
}

fn require_memcached_tools() -> bool {
    ["memcstat", "memccp", "memccat"]
        .iter()
        .all(|tool| require(tool, Command::new(tool).arg("--version")))
}

fn require_php_memcached() -> bool {
    require(
        "php with the memcached extension (php-memcached)",
        Command::new("php").args(["-r", "exit(class_exists('Memcached') ? 0 : 1);"]),
    )
}

/// A port nobody listens on right now (the OS picks it; the small race with other programs is
/// acceptable on loopback in tests).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("an ephemeral loopback port")
}

/// A fresh directory for one test's files, removed when the test ends.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(label: &str) -> ScratchDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "scd-interop-memcached-{}-{label}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        ScratchDir(dir)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits until something accepts connections on `port`, or fails after [`DEADLINE`], naming what
/// it waited for and showing its log.
fn wait_until_listening(port: u16, child: &mut Child, what: &str, log: &Path) {
    let started = Instant::now();
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
            return;
        }
        let log_text = || std::fs::read_to_string(log).unwrap_or_default();
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited with {status} before listening:\n{}",
                log_text()
            );
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{what} does not listen on port {port}:\n{}",
            log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed when the test ends, however it ends.
struct Running {
    child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // PHP's server workers outlive a killed server: its group goes too.
        let pid = i32::try_from(self.child.id()).unwrap_or(i32::MAX);
        // SAFETY: kill(2) on the group of a child this test started in a group of its own.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

/// An `scd run` with a memcached listener on loopback.
struct Scd {
    memcached_port: u16,
    /// Declared before the directory holding its log, so it is stopped first.
    _process: Running,
    _dir: ScratchDir,
}

impl Scd {
    fn start(extra_args: &[&str]) -> Scd {
        let dir = ScratchDir::new("scd");
        let log = dir.join("scd.log");
        let memcached_port = free_port();
        let address = |port: u16| format!("127.0.0.1:{port}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_scd"))
            .args(["run", "--name", "interop-memcached"])
            .args(["--client", &address(free_port())])
            .args(["--memcached", &address(memcached_port)])
            .args(["--peer", &address(free_port())])
            .args(["--admin", "off"])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("a log file"))
            .spawn()
            .expect("scd starts");
        wait_until_listening(memcached_port, &mut child, "scd", &log);
        Scd {
            memcached_port,
            _process: Running { child },
            _dir: dir,
        }
    }

    fn servers(&self) -> String {
        format!("--servers=127.0.0.1:{}", self.memcached_port)
    }
}

fn run(command: &mut Command) -> Output {
    let output = command.output().expect("the tool runs");
    assert!(
        output.status.success(),
        "{command:?} failed with {}:\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn memcstat_prints_the_general_statistics_over_both_protocols() {
    if !require_memcached_tools() {
        return;
    }
    let scd = Scd::start(&[]);
    for protocol_args in [&[][..], &["--binary"][..]] {
        let output = run(Command::new("memcstat")
            .arg(scd.servers())
            .args(protocol_args));
        let text = String::from_utf8_lossy(&output.stdout);
        for expected in [
            format!("Server: 127.0.0.1 ({})", scd.memcached_port),
            "\tpid: ".to_string(),
            "\tversion: 1.6.21".to_string(),
            "\tcurr_items: 0".to_string(),
            "\tcurr_connections: 1".to_string(),
            "\tthreads: ".to_string(),
        ] {
            assert!(text.contains(&expected), "no {expected:?} in:\n{text}");
        }
    }
}

#[test]
fn memccp_and_memccat_round_trip_a_file_over_both_protocols() {
    if !require_memcached_tools() {
        return;
    }
    let scd = Scd::start(&[]);
    let dir = ScratchDir::new("files");
    for (protocol_args, name) in [(&[][..], "text.txt"), (&["--binary"][..], "binary.txt")] {
        let file = dir.join(name);
        let content = format!("session data for {name}\nwith two lines and bytes \u{e9}\n");
        std::fs::write(&file, &content).expect("the file is written");
        run(Command::new("memccp")
            .arg(scd.servers())
            .args(protocol_args)
            .arg(&file));
        let output = run(Command::new("memccat")
            .arg(scd.servers())
            .args(protocol_args)
            .arg(name));
        // memccat ends what it prints with a newline of its own.
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            format!("{content}\n")
        );
    }
}

#[test]
fn memcstat_authenticates_with_sasl_when_a_password_is_set() {
    if !require_memcached_tools() {
        return;
    }
    let scd = Scd::start(&["--requirepass", "s3cret"]);
    let with_password = run(Command::new("memcstat").args([
        &scd.servers(),
        "--binary",
        "--username=web",
        "--password=s3cret",
    ]));
    assert!(String::from_utf8_lossy(&with_password.stdout).contains("\tpid: "));
    let wrong = Command::new("memcstat")
        .args([
            &scd.servers(),
            "--binary",
            "--username=web",
            "--password=wrong",
        ])
        .output()
        .expect("memcstat runs");
    let text = String::from_utf8_lossy(&wrong.stdout) + String::from_utf8_lossy(&wrong.stderr);
    assert!(!text.contains("\tpid: "), "{text}");
    assert!(text.contains("AUTHENTICATION FAILURE"), "{text}");
}

/// PHP that checks every call it makes and prints `ok` at the end.
const PHP_MEMCACHED_CLIENT: &str = r#"<?php
function check($what, $got, $expected) {
    if ($got !== $expected) {
        fwrite(STDERR, "$what: got " . var_export($got, true) . ", expected "
            . var_export($expected, true) . "\n");
        exit(1);
    }
}
$m = new Memcached();
$m->setOption(Memcached::OPT_BINARY_PROTOCOL, true);
$m->addServer('127.0.0.1', (int) $argv[1]);
if (isset($argv[2])) {
    $m->setSaslAuthData('web', $argv[2]);
}
check('set', $m->set('user:1', ['name' => 'Ada', 'visits' => 3], 100), true);
check('get', $m->get('user:1'), ['name' => 'Ada', 'visits' => 3]);
check('add of a present key', $m->add('user:1', 'x'), false);
// memcached's binary ADD answers "exists" for a present key.
check('add result', $m->getResultCode(), Memcached::RES_DATA_EXISTS);
check('add of a new key', $m->add('lock.abc', '1', 30), true);
$extended = $m->get('lock.abc', null, Memcached::GET_EXTENDED);
check('cas is reported', $extended['cas'] > 0, true);
check('cas with the value read', $m->cas($extended['cas'], 'lock.abc', '2'), true);
check('cas with a stale value', $m->cas($extended['cas'], 'lock.abc', '3'), false);
check('stale cas result', $m->getResultCode(), Memcached::RES_DATA_EXISTS);
check('value after cas', $m->get('lock.abc'), '2');
check('set a counter', $m->set('hits', 5), true);
check('increment', $m->increment('hits', 3), 8);
check('decrement floors at 0', $m->decrement('hits', 100), 0);
check('increment of a missing key', $m->increment('missing', 1), false);
check('increment with an initial value', $m->increment('fresh', 1, 10, 0), 10);
check('touch', $m->touch('user:1', 200), true);
check('touch of a missing key', $m->touch('missing', 200), false);
check('delete', $m->delete('lock.abc'), true);
check('delete again', $m->delete('lock.abc'), false);
check('delete result', $m->getResultCode(), Memcached::RES_NOTFOUND);
check('get after delete', $m->get('lock.abc'), false);
check('get multi', $m->getMulti(['user:1', 'hits', 'missing']), ['user:1' => ['name' => 'Ada', 'visits' => 3], 'hits' => 0]);
$version = $m->getVersion();
check('version', str_starts_with(array_values($version)[0], '1.6.'), true);
echo "ok";
"#;

fn run_php_client(dir: &ScratchDir, scd: &Scd, password_opt: Option<&str>) -> Output {
    let script = dir.join("client.php");
    std::fs::write(&script, PHP_MEMCACHED_CLIENT).expect("the script is written");
    let mut command = Command::new("php");
    command
        .arg("-d")
        .arg("memcached.use_sasl=1")
        .arg(&script)
        .arg(scd.memcached_port.to_string());
    if let Some(password) = password_opt {
        command.arg(password);
    }
    command.output().expect("php runs")
}

#[test]
fn php_memcached_works_over_the_binary_protocol() {
    if !require_php_memcached() {
        return;
    }
    let scd = Scd::start(&[]);
    let output = run_php_client(&ScratchDir::new("php"), &scd, None);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "ok",
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn php_memcached_authenticates_with_sasl_when_a_password_is_set() {
    if !require_php_memcached() {
        return;
    }
    let scd = Scd::start(&["--requirepass", "s3cret"]);
    let dir = ScratchDir::new("php-sasl");
    let output = run_php_client(&dir, &scd, Some("s3cret"));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "ok",
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let refused = run_php_client(&dir, &scd, Some("wrong"));
    assert_ne!(String::from_utf8_lossy(&refused.stdout), "ok");
}

/// One HTTP/1.0 GET on loopback: the response's `Set-Cookie` session id (if any) and its body.
fn http_get(port: u16, cookie_opt: Option<&str>) -> (Option<String>, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("the web server accepts");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("a read timeout");
    let cookie = cookie_opt
        .map(|cookie| format!("Cookie: PHPSESSID={cookie}\r\n"))
        .unwrap_or_default();
    write!(stream, "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n{cookie}\r\n").expect("request sent");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("a whole response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {response:?}"));
    assert!(head.starts_with("HTTP/1."), "{head}");
    assert!(head.contains(" 200 "), "{response}");
    let session_id_opt = head
        .lines()
        .find_map(|line| line.strip_prefix("Set-Cookie: PHPSESSID="))
        .map(|rest| rest.split(';').next().unwrap_or_default().to_string());
    (session_id_opt, body.to_string())
}

#[test]
fn php_sessions_in_memcached_count_every_one_of_20_concurrent_requests() {
    if !require_php_memcached() {
        return;
    }
    let scd = Scd::start(&[]);
    let dir = ScratchDir::new("php-session");
    std::fs::write(
        dir.join("index.php"),
        "<?php\nsession_start();\n$_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;\necho $_SESSION['n'];\n",
    )
    .expect("the page is written");
    let web_port = free_port();
    let log = dir.join("php.log");
    // The session handler at php-memcached's defaults: binary protocol, locking on.
    let mut child = Command::new("php")
        .process_group(0)
        .env("PHP_CLI_SERVER_WORKERS", "4")
        .args(["-d", "session.save_handler=memcached"])
        .arg("-d")
        .arg(format!(
            "session.save_path=127.0.0.1:{}",
            scd.memcached_port
        ))
        .arg("-S")
        .arg(format!("127.0.0.1:{web_port}"))
        .arg("-t")
        .arg(&dir.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("a log file"))
        .spawn()
        .expect("php -S starts");
    wait_until_listening(web_port, &mut child, "php -S", &log);
    let _web_server = Running { child };

    let (session_id_opt, first) = http_get(web_port, None);
    assert_eq!(first, "1");
    let session_id = session_id_opt.expect("the first response sets the session cookie");
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let session_id = session_id.clone();
            std::thread::spawn(move || http_get(web_port, Some(&session_id)).1)
        })
        .collect();
    let mut counts: Vec<u32> = requests
        .into_iter()
        .map(|request| {
            let body = request.join().expect("the request thread ends");
            body.parse()
                .unwrap_or_else(|_| panic!("a count, not {body:?}"))
        })
        .collect();
    counts.sort_unstable();
    // Each request saw the session locked for it alone: every count from 2 to 21 once.
    assert_eq!(counts, (2..=21).collect::<Vec<u32>>());
    let (_, last) = http_get(web_port, Some(&session_id));
    assert_eq!(last, "22");
}
