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

# Starts redis-server without persistence; sets redis_port and redis_pid.
start_redis() {
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize no --logfile "$work_dir/redis.log" &
  redis_pid=$!
  started_pids+=("$redis_pid")
  wait_for_ping "$redis_port"
}

# Starts scd (release build) with its defaults; sets scd_port and scd_pid.
start_scd() {
  scd_port=$(free_port)
  local peer_port
  peer_port=$(free_port)
  "$scd_binary" run --client "127.0.0.1:$scd_port" --peer "127.0.0.1:$peer_port" --admin off \
    --log-level warn 2>"$work_dir/scd.log" &
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
