//! Garbage on many connections at once against a real `scd` process: random bytes, oversized
//! lengths, half frames left hanging, invalid inline quoting and frames sent a byte at a time.
//! Throughout and after, another connection's `PING` is answered promptly, the memory the node
//! holds stays bounded, and nothing panics (DESIGN.md invariant 7).

mod common;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Scd, read_reply, read_until_closed};

/// Connections sending garbage at the same time.
const NUM_GARBAGE_CONNECTIONS: usize = 50;
/// How long the garbage goes on: long enough for the PING probe to take many samples.
const BARRAGE_DURATION: Duration = Duration::from_secs(3);
/// Most rounds of garbage per connection (each round is one kind of abuse).
const MAX_ROUNDS_PER_CONNECTION: usize = 100_000;
/// Half frames each garbage thread leaves hanging until the end.
const MAX_HANGING_PER_THREAD: usize = 5;
/// A PING taking longer than this while the node is under garbage is not prompt. Generous for
/// a debug build sharing two cores with 50 abusive clients.
const PROMPT_PING: Duration = Duration::from_secs(2);
/// How much more the node's RSS may grow than the hanging half frames themselves explain.
const RSS_GROWTH_LIMIT_BYTES: u64 = 128 << 20;

/// xorshift64*: seeded, so a failure names the seed that reproduces its garbage.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn bytes(&mut self, length: usize) -> Vec<u8> {
        (0..length).map(|_| self.next() as u8).collect()
    }
}

/// Sends `bytes`, expects one error line starting with `expect_prefix`, then the close.
fn expect_refusal(node: &Scd, bytes: &[u8], expect_prefix: &str) -> Result<(), String> {
    let mut stream = node.connect();
    // The node may close before taking every byte; its answer is what counts.
    let _ = stream.write_all(bytes);
    let (said, closed) = read_until_closed(&mut stream);
    let said = String::from_utf8_lossy(&said);
    if !said.starts_with(expect_prefix) || !said.ends_with("\r\n") || !closed {
        return Err(format!(
            "{:?} was answered {said:?} (closed: {closed}), expected {expect_prefix:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
        ));
    }
    Ok(())
}

/// One garbage connection's rounds. Returns its hanging half frames (kept open by the caller)
/// or what went wrong.
fn abuse(node: &Scd, seed: u64, deadline: Instant) -> Result<Vec<TcpStream>, String> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut hanging = Vec::new();
    for round in 0..MAX_ROUNDS_PER_CONNECTION {
        if Instant::now() >= deadline {
            break;
        }
        let context = |error: String| format!("seed {seed}, round {round}: {error}");
        match rng.below(6) {
            0 => {
                // Random bytes, whatever the node makes of them; replies are read and dropped.
                let mut stream = node.connect();
                let length = 1 + rng.below(64 * 1024) as usize;
                let _ = stream.write_all(&rng.bytes(length));
                stream
                    .set_read_timeout(Some(Duration::from_millis(20)))
                    .map_err(|error| context(error.to_string()))?;
                let mut sink = [0u8; 16 * 1024];
                while let Ok(1..) = stream.read(&mut sink) {}
            }
            1 => {
                let (bytes, expect): (&[u8], &str) = match rng.below(6) {
                    0 => (
                        b"*99999999999\r\n",
                        "-ERR Protocol error: request has more than 1000000 arguments (max-args)",
                    ),
                    1 => (
                        b"*1\r\n$99999999999\r\n",
                        "-ERR value is larger than max-value-bytes (1048576)",
                    ),
                    2 => (
                        b"*1\r\n$99999999999999999999999\r\n",
                        "-ERR Protocol error: invalid bulk length",
                    ),
                    3 => (
                        b"*2\r\n$3\r\nGET\r\n$-7\r\n",
                        "-ERR Protocol error: invalid bulk length",
                    ),
                    4 => (
                        b"*1\r\n$2000000\r\n",
                        "-ERR value is larger than max-value-bytes (1048576)",
                    ),
                    _ => (
                        b"*99999999999999999999999\r\n",
                        "-ERR Protocol error: invalid multibulk length",
                    ),
                };
                expect_refusal(node, bytes, expect).map_err(context)?;
            }
            2 if rng.below(4) == 0 => {
                // A bulk header outside an array is an inline command named by it, as in Redis:
                // answered, and the connection goes on.
                let mut stream = node.connect();
                stream
                    .write_all(b"$99999999999\r\nPING\r\n")
                    .map_err(|error| context(error.to_string()))?;
                let mut reader = BufReader::new(&mut stream);
                let first = read_reply(&mut reader).map_err(|error| context(error.to_string()))?;
                let second = read_reply(&mut reader).map_err(|error| context(error.to_string()))?;
                if !first.starts_with(b"-ERR unknown command '$99999999999'")
                    || second != b"+PONG\r\n"
                {
                    return Err(context(format!(
                        "a bare bulk header was answered {:?} then {:?}",
                        String::from_utf8_lossy(&first),
                        String::from_utf8_lossy(&second)
                    )));
                }
            }
            2 if hanging.len() < MAX_HANGING_PER_THREAD => {
                // A frame that announces more than it sends, left open until the end.
                let mut stream = node.connect();
                let announced = 1 + rng.below(1 << 20);
                let sent = rng.below(4096).min(announced) as usize;
                let mut frame =
                    format!("*3\r\n$3\r\nSET\r\n$4\r\nhang\r\n${announced}\r\n").into_bytes();
                frame.extend(std::iter::repeat_n(b'h', sent));
                stream
                    .write_all(&frame)
                    .map_err(|error| context(error.to_string()))?;
                hanging.push(stream);
            }
            3 => {
                let lines: [&[u8]; 4] = [
                    b"SET \"abc def\r\n",
                    b"GET \"a\"b\r\n",
                    b"ECHO 'unfinished\r\n",
                    b"SET k \"\\x4\r\n",
                ];
                let line = lines[rng.below(lines.len() as u64) as usize];
                expect_refusal(
                    node,
                    line,
                    "-ERR Protocol error: unbalanced quotes in request",
                )
                .map_err(context)?;
            }
            4 => {
                // A valid frame a byte at a time, with a pause the node must wait through.
                let mut stream = node.connect();
                for byte in b"*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n" {
                    stream
                        .write_all(&[*byte])
                        .map_err(|error| context(error.to_string()))?;
                }
                let reply = read_reply(&mut BufReader::new(&mut stream))
                    .map_err(|error| context(error.to_string()))?;
                if reply != b"$5\r\nhello\r\n" {
                    return Err(context(format!("ECHO answered {reply:?}")));
                }
            }
            _ => {
                // Garbage after a valid command: the valid one is answered first.
                let mut stream = node.connect();
                let mut bytes = b"PING\r\n".to_vec();
                bytes.push(b'*');
                bytes.extend(rng.bytes(64));
                bytes.extend_from_slice(b"\r\n");
                let _ = stream.write_all(&bytes);
                let (said, _) = read_until_closed(&mut stream);
                if !said.starts_with(b"+PONG\r\n") {
                    return Err(context(format!(
                        "PING before garbage answered {:?}",
                        String::from_utf8_lossy(&said)
                    )));
                }
            }
        }
    }
    Ok(hanging)
}

/// The node's `used_memory` from INFO (what its counting allocator holds).
fn used_memory(stream: &mut TcpStream) -> u64 {
    stream.write_all(b"INFO memory\r\n").expect("send");
    let info = read_reply(&mut BufReader::new(stream)).expect("INFO");
    let info = String::from_utf8_lossy(&info);
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|value| value.trim().parse().ok())
        .expect("used_memory in INFO memory")
}

#[test]
fn garbage_on_many_connections_never_stops_ping_or_grows_memory_unbounded() {
    let node = Scd::start(&[]);
    let mut monitor = node.connect();
    let rss_before = node.rss_bytes().expect("RSS");
    let used_before = used_memory(&mut monitor);

    // One connection PINGs all along and records how long each answer took.
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let pinger = {
        let stop = Arc::clone(&stop);
        let latencies = Arc::clone(&latencies);
        let mut stream = node.connect();
        std::thread::spawn(move || -> Result<(), String> {
            let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                stream.write_all(b"PING\r\n").map_err(|e| e.to_string())?;
                let reply = read_reply(&mut reader).map_err(|e| format!("PING: {e}"))?;
                if reply != b"+PONG\r\n" {
                    return Err(format!("PING answered {reply:?}"));
                }
                latencies.lock().expect("lock").push(started.elapsed());
                // Pacing between probes, not a wait for a condition.
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        })
    };

    let deadline = Instant::now() + BARRAGE_DURATION;
    let mut max_rss = rss_before;
    let results: Vec<Result<Vec<TcpStream>, String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..NUM_GARBAGE_CONNECTIONS)
            .map(|seed| {
                let node = &node;
                scope.spawn(move || abuse(node, seed as u64, deadline))
            })
            .collect();
        // Sample RSS while the barrage runs.
        while !workers.iter().all(|worker| worker.is_finished()) {
            max_rss = max_rss.max(node.rss_bytes().unwrap_or(0));
            std::thread::sleep(Duration::from_millis(20));
        }
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|_| Err("a worker panicked".into()))
            })
            .collect()
    });
    let mut hanging = Vec::new();
    for result in results {
        match result {
            Ok(streams) => hanging.extend(streams),
            Err(error) => panic!("{error}"),
        }
    }
    assert!(!hanging.is_empty(), "no half frame was left hanging");
    max_rss = max_rss.max(node.rss_bytes().unwrap_or(0));

    // With the half frames still hanging, the node answers at once.
    let started = Instant::now();
    monitor.write_all(b"PING\r\n").expect("send");
    assert_eq!(
        read_reply(&mut BufReader::new(&mut monitor)).expect("reply"),
        b"+PONG\r\n"
    );
    assert!(started.elapsed() < PROMPT_PING);
    stop.store(true, Ordering::SeqCst);
    pinger
        .join()
        .expect("the pinger")
        .expect("PING kept working");
    let latencies = latencies.lock().expect("lock").clone();
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    assert!(
        latencies.len() >= 100,
        "only {} PINGs were answered",
        latencies.len()
    );
    assert!(
        slowest < PROMPT_PING,
        "a PING took {slowest:?} under garbage ({} PINGs)",
        latencies.len()
    );
    assert!(
        max_rss < rss_before + RSS_GROWTH_LIMIT_BYTES,
        "RSS grew from {rss_before} to {max_rss} bytes"
    );

    // Once the garbage connections are gone, the node gives their memory back.
    drop(hanging);
    let settled = common::wait_until(Duration::from_secs(10), || {
        let used = used_memory(&mut monitor);
        (used < used_before + (8 << 20)).then_some(used)
    });
    assert!(
        settled.is_some(),
        "used_memory stayed above {used_before} + 8 MiB after the garbage connections closed"
    );
    let log = node.log();
    assert!(!log.contains("panicked"), "the node panicked:\n{log}");
    eprintln!(
        "garbage: {} PINGs, slowest {slowest:?}; RSS {rss_before} -> max {max_rss} bytes",
        latencies.len()
    );
}
