//! mcload: a memcached load generator for `bench/memcached.sh`, the memcached counterpart of
//! `redis-benchmark -t set,get -d 512 -r 100000 -P N`.
//!
//! Debian's tools do not fit: `memcslap` has no value size, key space or binary get, and
//! `memaslap` cannot pipeline, mixes its warm-up sets into the get figure and draws keys from a
//! window per connection. This one sends `set` or `get` (text or binary protocol) for keys drawn
//! uniformly from `key:000000000000`..`key:{keyspace - 1}` (redis-benchmark's `-r` key names) over
//! N connections, `pipeline` requests in flight on each, checks every reply and prints one line:
//!
//! ```text
//! test=get protocol=binary pipeline=1 connections=50 requests=200000 seconds=1.234 ops_per_second=162074 hits=200000 misses=0
//! ```
//!
//! `fill` sets every key of the key space once, so that a later `get` test hits every time (a
//! session handler reads sessions that exist). Any reply other than the expected one (an error,
//! a short read, a closed connection) stops the run with exit status 1.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest key this tool writes: `key:` and twelve digits, as redis-benchmark's `-r`.
const KEY_BYTES: usize = 16;
/// Requests in flight on one connection at most, so a typo cannot ask for gigabytes of buffer.
const PIPELINE_MAX: usize = 1024;
/// Connections at most: more would only measure the scheduler.
const CONNECTIONS_MAX: usize = 10_000;
/// Values larger than memcached's default item size limit would be refused anyway.
const VALUE_BYTES_MAX: usize = 1024 * 1024;
/// Room kept free in the input buffer before each read.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// The binary protocol's fixed header (request and response).
const BINARY_HEADER_BYTES: usize = 24;
/// Binary protocol: request and response magic bytes, opcodes and statuses used here.
const BINARY_REQUEST_MAGIC: u8 = 0x80;
const BINARY_RESPONSE_MAGIC: u8 = 0x81;
const BINARY_OPCODE_GET: u8 = 0x00;
const BINARY_OPCODE_SET: u8 = 0x01;
const BINARY_STATUS_OK: u16 = 0x0000;
const BINARY_STATUS_KEY_NOT_FOUND: u16 = 0x0001;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Text,
    Binary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Test {
    /// Sets random keys.
    Set,
    /// Gets random keys.
    Get,
    /// Sets every key of the key space once, in order.
    Fill,
}

impl Test {
    fn name(self) -> &'static str {
        match self {
            Test::Set => "set",
            Test::Get => "get",
            Test::Fill => "fill",
        }
    }
}

#[derive(Debug, Clone)]
struct Options {
    server: SocketAddr,
    protocol: Protocol,
    test: Test,
    connections: usize,
    /// Requests over all connections (ignored by `fill`, which sends `keyspace`).
    requests: u64,
    pipeline: usize,
    value_bytes: usize,
    keyspace: u64,
    threads: usize,
    seed: u64,
}

const USAGE: &str = "usage: mcload --server HOST:PORT [--protocol text|binary] [--test set|get|fill] \
[--connections 50] [--requests 200000] [--pipeline 1] [--value-bytes 512] [--keyspace 100000] \
[--threads 1] [--seed 1]";

fn parse_options(arguments: &[String]) -> Result<Options, String> {
    let mut options = Options {
        server: SocketAddr::from(([127, 0, 0, 1], 11211)),
        protocol: Protocol::Text,
        test: Test::Set,
        connections: 50,
        requests: 200_000,
        pipeline: 1,
        value_bytes: 512,
        keyspace: 100_000,
        threads: 1,
        seed: 1,
    };
    let mut rest = arguments.iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || -> Result<u64, String> {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--server" => {
                options.server = value
                    .parse()
                    .map_err(|_| format!("--server: not HOST:PORT: {value}"))?
            }
            "--protocol" => {
                options.protocol = match value.as_str() {
                    "text" => Protocol::Text,
                    "binary" => Protocol::Binary,
                    _ => return Err(format!("--protocol: text or binary, not {value}")),
                }
            }
            "--test" => {
                options.test = match value.as_str() {
                    "set" => Test::Set,
                    "get" => Test::Get,
                    "fill" => Test::Fill,
                    _ => return Err(format!("--test: set, get or fill, not {value}")),
                }
            }
            "--connections" => options.connections = number()? as usize,
            "--requests" => options.requests = number()?,
            "--pipeline" => options.pipeline = number()? as usize,
            "--value-bytes" => options.value_bytes = number()? as usize,
            "--keyspace" => options.keyspace = number()?,
            "--threads" => options.threads = number()? as usize,
            "--seed" => options.seed = number()?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if !(1..=CONNECTIONS_MAX).contains(&options.connections) {
        return Err(format!("--connections: 1 to {CONNECTIONS_MAX}"));
    }
    if !(1..=PIPELINE_MAX).contains(&options.pipeline) {
        return Err(format!("--pipeline: 1 to {PIPELINE_MAX}"));
    }
    if options.value_bytes > VALUE_BYTES_MAX {
        return Err(format!("--value-bytes: {VALUE_BYTES_MAX} at most"));
    }
    // Twelve digits in a key name, as redis-benchmark's.
    if !(1..=1_000_000_000_000).contains(&options.keyspace) {
        return Err("--keyspace: 1 to 10^12".to_string());
    }
    if !(1..=64).contains(&options.threads) {
        return Err("--threads: 1 to 64".to_string());
    }
    Ok(options)
}

/// What one connection saw.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    hits: u64,
    misses: u64,
}

/// Which keys a connection sends: random ones, or its share of the key space in order.
enum Keys {
    Random { state: u64, keyspace: u64 },
    Sequence { next: u64, step: u64, end: u64 },
}

impl Keys {
    fn next(&mut self) -> Option<u64> {
        match self {
            Keys::Random { state, keyspace } => {
                // xorshift64*: fast and good enough to spread keys; seeded, so runs repeat.
                *state ^= *state >> 12;
                *state ^= *state << 25;
                *state ^= *state >> 27;
                Some(state.wrapping_mul(0x2545_f491_4f6c_dd1d) % *keyspace)
            }
            Keys::Sequence { next, step, end } => {
                if *next >= *end {
                    return None;
                }
                let key = *next;
                *next += *step;
                Some(key)
            }
        }
    }
}

fn write_key(out: &mut Vec<u8>, key_number: u64) {
    let start = out.len();
    out.extend_from_slice(b"key:");
    let mut digits = [b'0'; 12];
    let mut rest = key_number;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(&digits);
    debug_assert_eq!(out.len() - start, KEY_BYTES);
}

fn write_request(
    out: &mut Vec<u8>,
    options: &Options,
    is_set: bool,
    key_number: u64,
    value: &[u8],
) {
    match (options.protocol, is_set) {
        (Protocol::Text, true) => {
            out.extend_from_slice(b"set ");
            write_key(out, key_number);
            out.extend_from_slice(format!(" 0 0 {}\r\n", value.len()).as_bytes());
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        (Protocol::Text, false) => {
            out.extend_from_slice(b"get ");
            write_key(out, key_number);
            out.extend_from_slice(b"\r\n");
        }
        (Protocol::Binary, is_set) => {
            // Extras of a set: flags and expiry, both zero.
            let extras_bytes: usize = if is_set { 8 } else { 0 };
            let value_bytes = if is_set { value.len() } else { 0 };
            let body_bytes = extras_bytes + KEY_BYTES + value_bytes;
            out.push(BINARY_REQUEST_MAGIC);
            out.push(if is_set {
                BINARY_OPCODE_SET
            } else {
                BINARY_OPCODE_GET
            });
            out.extend_from_slice(&(KEY_BYTES as u16).to_be_bytes());
            out.push(extras_bytes as u8);
            out.push(0); // data type
            out.extend_from_slice(&0u16.to_be_bytes()); // vbucket
            out.extend_from_slice(&(body_bytes as u32).to_be_bytes());
            out.extend_from_slice(&0u32.to_be_bytes()); // opaque
            out.extend_from_slice(&0u64.to_be_bytes()); // cas
            out.extend_from_slice(&[0u8; 8][..extras_bytes]);
            write_key(out, key_number);
            if is_set {
                out.extend_from_slice(value);
            }
        }
    }
}

/// What a reply at the start of the input was.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    /// Not all of it has arrived.
    Incomplete,
    /// A hit (a get that found the key, or a set that stored), and its length in bytes.
    Hit(usize),
    /// A get that found nothing, and its length in bytes.
    Miss(usize),
}

fn find_line_end(input: &[u8]) -> Option<usize> {
    input.windows(2).position(|pair| pair == b"\r\n")
}

fn parse_text_reply(input: &[u8], is_set: bool, value_bytes: usize) -> Result<Reply, String> {
    let Some(line_end) = find_line_end(input) else {
        return Ok(Reply::Incomplete);
    };
    let line = &input[..line_end];
    if is_set {
        return match line {
            b"STORED" => Ok(Reply::Hit(line_end + 2)),
            _ => Err(format!(
                "set: unexpected reply {:?}",
                String::from_utf8_lossy(line)
            )),
        };
    }
    if line == b"END" {
        return Ok(Reply::Miss(line_end + 2));
    }
    if !line.starts_with(b"VALUE ") {
        return Err(format!(
            "get: unexpected reply {:?}",
            String::from_utf8_lossy(line)
        ));
    }
    let data_bytes = line
        .rsplit(|byte| *byte == b' ')
        .next()
        .and_then(|field| std::str::from_utf8(field).ok())
        .and_then(|field| field.parse::<usize>().ok())
        .ok_or_else(|| format!("get: bad VALUE line {:?}", String::from_utf8_lossy(line)))?;
    if data_bytes != value_bytes {
        return Err(format!("get: {data_bytes} bytes, expected {value_bytes}"));
    }
    let data_end = line_end + 2 + data_bytes;
    let reply_bytes = data_end + b"\r\nEND\r\n".len();
    if input.len() < reply_bytes {
        return Ok(Reply::Incomplete);
    }
    if &input[data_end..reply_bytes] != b"\r\nEND\r\n" {
        return Err("get: value not followed by \\r\\nEND\\r\\n".to_string());
    }
    Ok(Reply::Hit(reply_bytes))
}

fn parse_binary_reply(input: &[u8], is_set: bool, value_bytes: usize) -> Result<Reply, String> {
    if input.len() < BINARY_HEADER_BYTES {
        return Ok(Reply::Incomplete);
    }
    if input[0] != BINARY_RESPONSE_MAGIC {
        return Err(format!("binary: bad magic 0x{:02x}", input[0]));
    }
    let status = u16::from_be_bytes([input[6], input[7]]);
    let body_bytes = u32::from_be_bytes([input[8], input[9], input[10], input[11]]) as usize;
    if body_bytes > VALUE_BYTES_MAX + 1024 {
        return Err(format!("binary: body of {body_bytes} bytes"));
    }
    let reply_bytes = BINARY_HEADER_BYTES + body_bytes;
    if input.len() < reply_bytes {
        return Ok(Reply::Incomplete);
    }
    let extras_bytes = input[4] as usize;
    let key_bytes = u16::from_be_bytes([input[2], input[3]]) as usize;
    match status {
        BINARY_STATUS_OK if is_set => Ok(Reply::Hit(reply_bytes)),
        BINARY_STATUS_OK if body_bytes == extras_bytes + key_bytes + value_bytes => {
            Ok(Reply::Hit(reply_bytes))
        }
        BINARY_STATUS_OK => Err(format!(
            "get: body of {body_bytes} bytes, value of {value_bytes} expected"
        )),
        BINARY_STATUS_KEY_NOT_FOUND if !is_set => Ok(Reply::Miss(reply_bytes)),
        _ => Err(format!(
            "{}: status 0x{status:04x} {:?}",
            if is_set { "set" } else { "get" },
            String::from_utf8_lossy(&input[BINARY_HEADER_BYTES..reply_bytes])
        )),
    }
}

/// Runs one connection's share: batches of `pipeline` requests, each batch written at once and
/// its replies read before the next, as redis-benchmark's `-P`.
async fn run_connection(
    mut stream: TcpStream,
    options: Options,
    mut keys: Keys,
    mut requests: u64,
) -> Result<Tally, String> {
    let is_set = options.test != Test::Get;
    let value = vec![b'x'; options.value_bytes];
    let mut output = Vec::with_capacity(options.pipeline * (options.value_bytes + 64));
    // `input[parsed_bytes..filled_bytes]` is read and not parsed yet. The buffer keeps its
    // length, so reads do not zero it again.
    let mut input = vec![0u8; READ_CHUNK_BYTES * 2];
    let mut filled_bytes = 0;
    let mut tally = Tally::default();
    loop {
        output.clear();
        let mut in_flight = 0;
        while in_flight < options.pipeline && requests > 0 {
            let Some(key_number) = keys.next() else { break };
            write_request(&mut output, &options, is_set, key_number, &value);
            in_flight += 1;
            requests -= 1;
        }
        if in_flight == 0 {
            return Ok(tally);
        }
        stream
            .write_all(&output)
            .await
            .map_err(|error| format!("write: {error}"))?;
        let mut parsed_bytes = 0;
        while in_flight > 0 {
            let unparsed = &input[parsed_bytes..filled_bytes];
            let reply = match options.protocol {
                Protocol::Text => parse_text_reply(unparsed, is_set, options.value_bytes)?,
                Protocol::Binary => parse_binary_reply(unparsed, is_set, options.value_bytes)?,
            };
            match reply {
                Reply::Hit(bytes) => {
                    tally.hits += 1;
                    parsed_bytes += bytes;
                    in_flight -= 1;
                }
                Reply::Miss(bytes) => {
                    tally.misses += 1;
                    parsed_bytes += bytes;
                    in_flight -= 1;
                }
                Reply::Incomplete => {
                    if input.len() - filled_bytes < READ_CHUNK_BYTES {
                        input.copy_within(parsed_bytes..filled_bytes, 0);
                        filled_bytes -= parsed_bytes;
                        parsed_bytes = 0;
                        // Only a reply larger than the whole buffer makes it grow.
                        if input.len() - filled_bytes < READ_CHUNK_BYTES {
                            input.resize(filled_bytes + READ_CHUNK_BYTES, 0);
                        }
                    }
                    let read = stream
                        .read(&mut input[filled_bytes..])
                        .await
                        .map_err(|error| format!("read: {error}"))?;
                    if read == 0 {
                        return Err("the server closed the connection".to_string());
                    }
                    filled_bytes += read;
                }
            }
        }
        // Nothing is sent before the replies of a batch are in, so nothing may follow them.
        if parsed_bytes != filled_bytes {
            return Err(format!(
                "{} bytes after the last reply",
                filled_bytes - parsed_bytes
            ));
        }
        filled_bytes = 0;
    }
}

/// Runs the connections numbered `first_index, first_index + threads, ...` on this thread's
/// own single-threaded runtime, as redis-benchmark's `--threads`: no task moves between threads,
/// so a reply wakes its connection without a cross-thread hand-off. Waits at `start` once its
/// connections are open (or failed to open), so the clock starts when every thread is ready.
fn run_thread(options: Options, first_index: usize, start: Arc<Barrier>) -> Result<Tally, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|error| format!("tokio runtime: {error}"));
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(message) => {
            start.wait();
            return Err(message);
        }
    };
    runtime.block_on(async move {
        let connections = options.connections as u64;
        let total_requests = if options.test == Test::Fill {
            options.keyspace
        } else {
            options.requests
        };
        // Every connection is open before the clock starts: connecting is not what is measured.
        let mut streams = Vec::new();
        let mut connect_error = None;
        for index in (first_index..options.connections).step_by(options.threads) {
            match TcpStream::connect(options.server).await {
                Ok(stream) => {
                    if let Err(error) = stream.set_nodelay(true) {
                        connect_error = Some(format!("TCP_NODELAY: {error}"));
                    }
                    streams.push((index as u64, stream));
                }
                Err(error) => connect_error = Some(format!("connect {}: {error}", options.server)),
            }
        }
        start.wait();
        if let Some(message) = connect_error {
            return Err(message);
        }
        let mut tasks = Vec::with_capacity(streams.len());
        for (index, stream) in streams {
            let keys = if options.test == Test::Fill {
                Keys::Sequence {
                    next: index,
                    step: connections,
                    end: options.keyspace,
                }
            } else {
                // Never zero (xorshift would stay at zero), different on every connection.
                let state =
                    (options.seed.wrapping_add(index + 1)).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                Keys::Random {
                    state,
                    keyspace: options.keyspace,
                }
            };
            let share =
                total_requests / connections + u64::from(index < total_requests % connections);
            tasks.push(tokio::spawn(run_connection(
                stream,
                options.clone(),
                keys,
                share,
            )));
        }
        let mut tally = Tally::default();
        for task in tasks {
            let connection_tally = task
                .await
                .map_err(|error| format!("a connection task failed: {error}"))??;
            tally.hits += connection_tally.hits;
            tally.misses += connection_tally.misses;
        }
        Ok(tally)
    })
}

fn run(options: Options) -> Result<(), String> {
    let start = Arc::new(Barrier::new(options.threads + 1));
    let threads: Vec<_> = (0..options.threads)
        .map(|first_index| {
            let options = options.clone();
            let start = Arc::clone(&start);
            std::thread::spawn(move || run_thread(options, first_index, start))
        })
        .collect();
    start.wait();
    let started = Instant::now();
    let mut tally = Tally::default();
    for thread in threads {
        let thread_tally = thread
            .join()
            .map_err(|_| "a load thread panicked".to_string())??;
        tally.hits += thread_tally.hits;
        tally.misses += thread_tally.misses;
    }
    let seconds = started.elapsed().as_secs_f64();
    let done = tally.hits + tally.misses;
    println!(
        "test={} protocol={} pipeline={} connections={} threads={} requests={done} seconds={seconds:.3} ops_per_second={:.0} hits={} misses={}",
        options.test.name(),
        if options.protocol == Protocol::Text {
            "text"
        } else {
            "binary"
        },
        options.pipeline,
        options.connections,
        options.threads,
        done as f64 / seconds,
        tally.hits,
        tally.misses,
    );
    Ok(())
}

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse_options(&arguments) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("mcload: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("mcload: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_text(input: &[u8], is_set: bool, expect: Result<Reply, &str>) {
        let got = parse_text_reply(input, is_set, 3);
        assert_eq!(
            got,
            expect.map_err(str::to_string),
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }

    fn check_binary(input: &[u8], is_set: bool, expect: Result<Reply, &str>) {
        let got = parse_binary_reply(input, is_set, 3);
        assert_eq!(got, expect.map_err(str::to_string), "input {input:?}");
    }

    fn binary_header(status: u16, extras_bytes: u8, body_bytes: u32) -> Vec<u8> {
        let mut header = vec![BINARY_RESPONSE_MAGIC, 0, 0, 0, extras_bytes, 0];
        header.extend_from_slice(&status.to_be_bytes());
        header.extend_from_slice(&body_bytes.to_be_bytes());
        header.extend_from_slice(&[0; 12]);
        header
    }

    #[test]
    fn text_replies_are_counted_and_errors_stop_the_run() {
        check_text(b"STORED\r\n", true, Ok(Reply::Hit(8)));
        check_text(b"STORED\r", true, Ok(Reply::Incomplete));
        check_text(
            b"SERVER_ERROR out of memory\r\n",
            true,
            Err("set: unexpected reply \"SERVER_ERROR out of memory\""),
        );
        check_text(b"END\r\n", false, Ok(Reply::Miss(5)));
        check_text(
            b"VALUE key:1 0 3\r\nxxx\r\nEND\r\n",
            false,
            Ok(Reply::Hit(27)),
        );
        check_text(
            b"VALUE key:1 0 3\r\nxxx\r\nEN",
            false,
            Ok(Reply::Incomplete),
        );
        check_text(
            b"VALUE key:1 0 4\r\n",
            false,
            Err("get: 4 bytes, expected 3"),
        );
        check_text(
            b"VALUE key:1 0 3\r\nxxxx\r\nEND\r\n",
            false,
            Err("get: value not followed by \\r\\nEND\\r\\n"),
        );
        check_text(b"ERROR\r\n", false, Err("get: unexpected reply \"ERROR\""));
    }

    #[test]
    fn binary_replies_are_counted_and_errors_stop_the_run() {
        check_binary(&binary_header(0, 0, 0), true, Ok(Reply::Hit(24)));
        check_binary(&binary_header(0, 0, 0)[..23], true, Ok(Reply::Incomplete));
        let mut hit = binary_header(0, 4, 7);
        hit.extend_from_slice(b"\0\0\0\0xxx");
        check_binary(&hit, false, Ok(Reply::Hit(31)));
        check_binary(&hit[..30], false, Ok(Reply::Incomplete));
        let mut miss = binary_header(1, 0, 9);
        miss.extend_from_slice(b"Not found");
        check_binary(&miss, false, Ok(Reply::Miss(33)));
        check_binary(&miss, true, Err("set: status 0x0001 \"Not found\""));
        let mut bad_magic = binary_header(0, 0, 0);
        bad_magic[0] = 0x80;
        check_binary(&bad_magic, true, Err("binary: bad magic 0x80"));
    }

    #[test]
    fn requests_have_the_key_names_of_redis_benchmark() {
        let options =
            parse_options(&["--value-bytes".to_string(), "3".to_string()]).expect("options");
        let mut text = Vec::new();
        write_request(&mut text, &options, true, 42, b"xxx");
        assert_eq!(text, b"set key:000000000042 0 0 3\r\nxxx\r\n");
        let binary_options = Options {
            protocol: Protocol::Binary,
            ..options
        };
        let mut binary = Vec::new();
        write_request(&mut binary, &binary_options, false, 7, b"");
        assert_eq!(binary.len(), BINARY_HEADER_BYTES + KEY_BYTES);
        assert_eq!(&binary[BINARY_HEADER_BYTES..], b"key:000000000007");
    }

    #[test]
    fn fill_sends_every_key_once_over_all_connections() {
        let mut seen = Vec::new();
        for index in 0..3 {
            let mut keys = Keys::Sequence {
                next: index,
                step: 3,
                end: 10,
            };
            while let Some(key) = keys.next() {
                seen.push(key);
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<u64>>());
    }
}
