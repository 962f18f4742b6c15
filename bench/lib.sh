# Shared by the benchmark scripts: tools, free ports, starting redis-server and scd side by side
# and stopping them on exit. Sourced, not run.

bench_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# SCD_BINARY=path benchmarks that binary instead of building target/release/scd.
scd_binary=${SCD_BINARY:-"$bench_root/target/release/scd"}
work_dir=$(mktemp -d "${TMPDIR:-/tmp}/scd-bench.XXXXXX")
started_pids=()
# One benchmark at a time on this machine: two at once would measure each other.
exec 9>"${TMPDIR:-/tmp}/scd-bench.lock"
if ! flock -n 9; then
  printf '==> waiting for another benchmark to finish (%s)\n' "${TMPDIR:-/tmp}/scd-bench.lock" >&2
  flock 9
fi
# Other work on the machine skews the figures; the summary shows how busy it was.
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

say() { printf '==> %s\n' "$*" >&2; }

# median: the median of the numbers on standard input, one per line.
median() {
  sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

clock_ticks_per_second=$(getconf CLK_TCK)

# cpu_ticks PID...: user + system CPU time of every thread of the processes, summed, in clock
# ticks ($clock_ticks_per_second of them per second).
cpu_ticks() {
  local pid ticks total=0
  for pid in "$@"; do
    # Fields 14 and 15 of /proc/PID/stat, counted after the command name (which may hold spaces).
    ticks=$(sed 's/^.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')
    total=$((total + ticks))
  done
  echo "$total"
}

cleanup() {
  local pid
  for pid in "${started_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${started_pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work_dir"
}
trap cleanup EXIT

require_tools() {
  local tool missing=()
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if ((${#missing[@]})); then
    echo "missing: ${missing[*]} (Debian: apt-get install redis-server redis-tools)" >&2
    exit 1
  fi
}

# A loopback TCP port nobody listens on, below the ephemeral range.
free_port() {
  local port
  for _ in $(seq 1 200); do
    port=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  echo "no free port" >&2
  exit 1
}

# Waits until the RESP server on $1 answers PING (10 s at most).
wait_for_ping() {
  local port=$1
  for _ in $(seq 1 200); do
    if [[ $(redis-cli -p "$port" PING 2>/dev/null) == PONG ]]; then
      return
    fi
    sleep 0.05
  done
  echo "nothing answers PING on port $port" >&2
  exit 1
}

build_scd() {
  if [[ -n ${SCD_BINARY:-} ]]; then
    say "using $SCD_BINARY (SCD_BINARY set: not building)"
    return
  fi
  say "cargo build --release -p scd"
  (cd "$bench_root" && cargo build --release -p scd) >&2
}

# Starts redis-server without persistence; sets redis_port and redis_pid. Its directory is the
# run's own: redis-server loads a dump.rdb from its directory at start (a replica writes one).
start_redis() {
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize no --logfile "$work_dir/redis.log" --dir "$work_dir" --dbfilename redis.rdb &
  redis_pid=$!
  started_pids+=("$redis_pid")
  wait_for_ping "$redis_port"
}

# Starts scd (release build) with its defaults and $SCD_RUN_ARGS; sets scd_port and scd_pid.
start_scd() {
  scd_port=$(free_port)
  local peer_port
  peer_port=$(free_port)
  # SCD_RUN_ARGS: extra `scd run` flags, e.g. SCD_RUN_ARGS="--client-threads 2".
  local -a extra_args
  read -r -a extra_args <<<"${SCD_RUN_ARGS:-}"
  "$scd_binary" run --client "127.0.0.1:$scd_port" --peer "127.0.0.1:$peer_port" --admin off \
    --log-level warn "${extra_args[@]}" 2>"$work_dir/scd.log" &
  scd_pid=$!
  started_pids+=("$scd_pid")
  wait_for_ping "$scd_port"
}

# Resident set size of process $1 in bytes, from /proc/PID/status.
rss_bytes() {
  awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$1/status"
}

# used_memory from INFO memory of the server on port $1.
used_memory() {
  redis-cli -p "$1" INFO memory | tr -d '\r' | awk -F: '$1 == "used_memory" { print $2 }'
}

machine_summary() {
  local cpu
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  echo "machine: $(nproc) cores ($cpu), $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(uname -sr)"
  local built_from
  if [[ -n ${SCD_BINARY:-} ]]; then
    built_from="given by SCD_BINARY"
  else
    built_from="built from commit $(git -C "$bench_root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    git -C "$bench_root" diff --quiet HEAD -- crates 2>/dev/null || built_from+=" + uncommitted changes"
  fi
  echo "redis-server $(redis-server --version | awk '{ print $3 }' | tr -d 'v='); scd $scd_binary ($built_from)"
  echo "load average before the run: $load_before"
}

# --- Cluster nodes (bench/ha.sh, bench/failover.sh) ---

# Ports handed out by node_port, so two nodes started back to back never get the same one
# (free_port only knows which ports are listened on already).
handed_out_ports=" "
# Per node name: its client, peer and admin ports and the pid of its current process.
declare -A node_client_port=() node_peer_port=() node_admin_port=() node_pid=()

# node_port VAR: sets VAR to a free loopback port that node_port has not handed out before. It
# sets a variable rather than printing, because a $(...) subshell would lose handed_out_ports.
node_port() {
  local candidate_port
  for _ in $(seq 1 50); do
    candidate_port=$(free_port)
    if [[ $handed_out_ports != *" $candidate_port "* ]]; then
      handed_out_ports+="$candidate_port "
      printf -v "$1" '%s' "$candidate_port"
      return
    fi
  done
  echo "no free port" >&2
  exit 1
}

# start_scd_node NAME [SCD RUN ARGS...]: starts a cluster node named NAME with client, peer and
# admin ports of its own (the same ports again when NAME was started before, so a restarted node
# comes back where it was), passing the extra arguments to `scd run` (e.g. --join, --backups).
# Waits until it answers PING. Its log is $work_dir/NAME.log.
start_scd_node() {
  local name=$1
  shift
  if [[ -z ${node_client_port[$name]:-} ]]; then
    node_port "node_client_port[$name]"
    node_port "node_peer_port[$name]"
    node_port "node_admin_port[$name]"
  fi
  "$scd_binary" run --name "$name" --client "127.0.0.1:${node_client_port[$name]}" \
    --peer "127.0.0.1:${node_peer_port[$name]}" --admin "127.0.0.1:${node_admin_port[$name]}" \
    --log-level warn "$@" 2>>"$work_dir/$name.log" &
  node_pid[$name]=$!
  started_pids+=("$!")
  wait_for_ping "${node_client_port[$name]}"
}

# forget_pid PID: the process is gone (stopped or killed), so cleanup must not signal its pid,
# which the system may have given to another process since.
forget_pid() {
  local pid kept=()
  for pid in "${started_pids[@]}"; do
    [[ $pid == "$1" ]] || kept+=("$pid")
  done
  started_pids=("${kept[@]}")
}

# stop_scd_node NAME: SIGTERM (a planned leave) and waits for the process to exit (30 s at most,
# then SIGKILL).
stop_scd_node() {
  local pid=${node_pid[$1]}
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  forget_pid "$pid"
}

# cluster_settled NAME...: true when every named node's /cluster shows all of them alive, the
# same partition table, every partition owned and fully replicated, no handoff or snapshot in
# progress and every node owning primaries (a restarted node has taken its share back).
cluster_settled() {
  local name json=() expect=$#
  for name in "$@"; do
    json+=("$(curl -s --max-time 2 "http://127.0.0.1:${node_admin_port[$name]}/cluster")")
  done
  printf '%s\n' "${json[@]}" | python3 -c '
import json, sys
expect = int(sys.argv[1])
views = [json.loads(line) for line in sys.stdin if line.strip()]
digests = {view["table_digest"] for view in views}
ok = len(views) == expect and len(digests) == 1
for view in views:
    alive = [node for node in view["nodes"] if node["state"] == "alive"]
    ok = ok and len(alive) == expect and view["serving"]
    ok = ok and view["unowned_partitions"] == 0 and view["under_replicated_partitions"] == 0
    ok = ok and view["handoffs_in_progress"] == 0 and view["snapshots_in_progress"] == 0
    ok = ok and all(node["primaries"] > 0 for node in alive)
sys.exit(0 if ok else 1)
' "$expect" 2>/dev/null
}

# wait_for_cluster_settled NAME...: polls cluster_settled (60 s at most).
wait_for_cluster_settled() {
  for _ in $(seq 1 600); do
    cluster_settled "$@" && return
    sleep 0.1
  done
  echo "the cluster of $* did not settle within 60 s" >&2
  exit 1
}

# node_sessions NAME: the sessions node NAME holds itself (primary and backup copies), from the
# entry for itself in its /cluster.
node_sessions() {
  curl -s --max-time 2 "http://127.0.0.1:${node_admin_port[$1]}/cluster" |
    python3 -c 'import json, sys; print(next(n["sessions"] for n in json.load(sys.stdin)["nodes"] if n["self"]))'
}

# generate_sessions COUNT FILE: COUNT sessions as raw RESP for redis-cli --pipe, the generator of
# bench/memory.sh (same seed, so the same bytes): SET PHPREDIS_SESSION:<26 digits> <1-4 KB> EX 1440.
# Prints the total payload bytes.
generate_sessions() {
  perl -e '
    srand(20261123);
    my @alphabet = ("a".."z", "A".."Z", "0".."9", "+", "/");
    my ($sessions) = @ARGV;
    my $total = 0;
    for my $index (1 .. $sessions) {
      my $key = sprintf("PHPREDIS_SESSION:%026d", $index);
      my $size = 1024 + int(rand(3 * 1024 + 1));
      my $value = join("", map { $alphabet[int(rand(64))] } 1 .. $size);
      $total += $size;
      print "*5\r\n\$3\r\nSET\r\n\$", length($key), "\r\n$key\r\n\$", $size, "\r\n$value\r\n\$2\r\nEX\r\n\$4\r\n1440\r\n";
    }
    print STDERR "$total\n";
  ' "$1" >"$2" 2>"$2.payload"
  cat "$2.payload"
}

# kill_scd_node NAME: SIGKILL and waits, for a node whose data the benchmark no longer needs: a
# planned leave (stop_scd_node) would first hand every partition off, which with a gigabyte of
# sessions only costs time.
kill_scd_node() {
  local pid=${node_pid[$1]}
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  forget_pid "$pid"
}

# --- memcached (bench/memcached.sh) ---

# wait_for_memcached PORT: waits until a memcached-protocol server on PORT answers `version`
# (10 s at most).
wait_for_memcached() {
  local port=$1 reply
  for _ in $(seq 1 200); do
    reply=$(exec 2>/dev/null 3<>"/dev/tcp/127.0.0.1/$port" &&
      printf 'version\r\n' >&3 && timeout 1 head -c 8 <&3) || true
    if [[ $reply == VERSION* ]]; then
      return
    fi
    sleep 0.05
  done
  echo "nothing answers the memcached version command on port $port" >&2
  exit 1
}

# start_memcached THREADS [MEMCACHED ARGS...]: memcached on a free loopback port, TCP only, with
# THREADS worker threads and 1 GiB of memory (the default 64 MB would evict part of a benchmark's
# key space); sets memcached_port and memcached_pid.
start_memcached() {
  local threads=$1
  shift
  node_port memcached_port
  local as_user=()
  # memcached refuses to run as root unless told which user to be.
  if ((EUID == 0)); then as_user=(-u root); fi
  memcached -p "$memcached_port" -U 0 -l 127.0.0.1 -t "$threads" -m 1024 "${as_user[@]}" "$@" \
    >"$work_dir/memcached.log" 2>&1 &
  memcached_pid=$!
  started_pids+=("$memcached_pid")
  wait_for_memcached "$memcached_port"
}

# bench_set_get TARGET PORT PIPELINE ROUND [PID...]: a `redis-benchmark -t set` run, then a
# `-t get` run, with the caller's clients, value_bytes, keyspace and requests; appends
# "target pipeline test ops_s round cpu" to the file named by $results, where cpu is the CPU time
# (user + system) the processes PID... spent during the run, in microseconds per request ("-"
# when no PID is given).
bench_set_get() {
  local target=$1 port=$2 pipeline=$3 round=$4 test line ticks_before ticks_after
  shift 4
  for test in set get; do
    ticks_before=$(cpu_ticks "$@")
    line=$(redis-benchmark -h 127.0.0.1 -p "$port" -t "$test" -c "$clients" -d "$value_bytes" \
      -r "$keyspace" -n "$requests" -P "$pipeline" --csv 2>/dev/null |
      tr -d '"' | awk -F, '$1 == "SET" || $1 == "GET" { print $1, $2 }')
    ticks_after=$(cpu_ticks "$@")
    awk -v target="$target" -v pipeline="$pipeline" -v line="$line" -v round="$round" \
      -v num_pids=$# -v ticks=$((ticks_after - ticks_before)) -v hz="$clock_ticks_per_second" \
      -v requests="$requests" 'BEGIN {
        cpu = num_pids ? sprintf("%.2f", ticks * 1000000 / hz / requests) : "-"
        print target, pipeline, line, round, cpu
      }' >>"$results"
  done
}

# set_get_median TARGET PIPELINE TEST COLUMN: the median over the rounds of a column of the rows
# bench_set_get appended to $results for that target, pipeline and test (SET or GET); COLUMN 4 is
# ops/s, 6 the CPU time per request.
set_get_median() {
  awk -v target="$1" -v pipeline="$2" -v test="$3" -v column="$4" \
    '$1 == target && $2 == pipeline && $3 == test { print $column }' "$results" | median
}
