#!/usr/bin/env bash
# Failover time of scd against Redis Sentinel (issue 4), both measured in the same run.
#
# scd: a 3-node cluster at its defaults (--backups 1, write-through, heartbeats every 100 ms,
# phi threshold 8) holding 3 000 sessions of 1 KB spread over its partitions. Per trial: kill -9
# one node (in turn), then time from the kill until the first pass in which every session read
# through every surviving node (pipelined GETs, one connection per survivor, connected before the
# kill) answers its value; then restart the node on the same ports, wait until the cluster has
# settled (every node alive in every view, one table, nothing under-replicated, no handoff or
# snapshot in progress, every node a primary again) and every node serves every session again.
# Goal (issue 4): p99 <= 1 s.
#
# Redis Sentinel: a master and 2 replicas (redis-server, no persistence) and 3 sentinels
# (quorum 2, down-after-milliseconds 1000, failover-timeout 3000) holding the same sessions. Per
# trial: kill -9 the master, then time until a client that asks the sentinels
# (SENTINEL get-master-addr-by-name; any sentinel naming a new master will do, the reading most
# favourable to Sentinel) reads every session from the master named; then restart the old master
# as a replica of the new one and wait until the sentinels agree, see the master and both replicas
# healthy and both replicas are in sync.
#
# Prints p50, p99 and max of each (nearest rank: with 20 trials p99 is the largest) and the ratio
# Sentinel/scd. A trial that does not finish within DEADLINE_S counts as DEADLINE_S.
#
#   bash bench/failover.sh                          defaults: TRIALS=20 SENTINEL_TRIALS=20 KEYS=3000
#   TRIALS=100 SENTINEL_TRIALS=30 bash bench/failover.sh
#   KEYS=20000 VALUE_BYTES=2048 DEADLINE_S=60 bash bench/failover.sh
#   SENTINEL_TRIALS=0 bash bench/failover.sh        scd only (no ratio)
#
# Needs python3 (the probe, standard library only) and redis-sentinel (Debian: apt-get install
# redis-sentinel). SCD_BINARY=path uses that scd binary instead of building one. Not run in CI.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

trials=${TRIALS:-20}
sentinel_trials=${SENTINEL_TRIALS:-20}
num_keys=${KEYS:-3000}
value_bytes=${VALUE_BYTES:-1024}
deadline_s=${DEADLINE_S:-30}
master_name=sessions
down_after_ms=1000
failover_timeout_ms=3000

require_tools redis-server redis-cli python3 curl
if ((sentinel_trials > 0)); then require_tools redis-sentinel; fi
build_scd

probe="$work_dir/probe.py"
cat >"$probe" <<'PYTHON'
"""The failover probe of bench/failover.sh: loads sessions, checks them, and times kill -9 trials."""
import os
import signal
import socket
import sys
import threading
import time

# A read waiting longer than this counts as a failed pass; the probe then reconnects.
READ_TIMEOUT_S = 5.0
# GETs sent before their replies are read: a bound on what sits in the socket buffers.
BATCH_KEYS = 500


def key_of(index):
    return b"failover:session:%d" % index


def value_of(index, value_bytes):
    pattern = b"session %d " % index
    return (pattern * (value_bytes // len(pattern) + 1))[:value_bytes]


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


class ReplyError(Exception):
    pass


class Connection:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")

    def close(self):
        try:
            self.reader.close()
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data)

    def reply(self):
        line = self.reader.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"-":
            return ReplyError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            length = int(rest)
            if length < 0:
                return None
            data = self.reader.read(length + 2)
            if len(data) != length + 2:
                raise ConnectionError("connection closed")
            return data[:-2]
        if kind == b"*":
            length = int(rest)
            if length < 0:
                return None
            return [self.reply() for _ in range(length)]
        raise ConnectionError("unexpected reply %r" % line)

    def call(self, *args):
        self.send(encode(*args))
        return self.reply()


def load(port, num_keys, value_bytes):
    conn = Connection(port)
    for start in range(0, num_keys, BATCH_KEYS):
        indexes = range(start, min(start + BATCH_KEYS, num_keys))
        conn.send(b"".join(encode("SET", key_of(i), value_of(i, value_bytes)) for i in indexes))
        for i in indexes:
            answer = conn.reply()
            if answer != b"OK":
                sys.exit("SET %s answered %r" % (key_of(i).decode(), answer))
    conn.close()


class Reader:
    """One connection to one server, reconnected after any failure."""

    def __init__(self, port):
        self.port = port
        self.conn = None
        self.last_failure = None

    def read_all(self, num_keys, value_bytes):
        """One pass: True when every key answered its value."""
        try:
            if self.conn is None:
                self.conn = Connection(self.port)
            correct = True
            for start in range(0, num_keys, BATCH_KEYS):
                indexes = range(start, min(start + BATCH_KEYS, num_keys))
                self.conn.send(b"".join(encode("GET", key_of(i)) for i in indexes))
                for i in indexes:
                    answer = self.conn.reply()
                    if answer != value_of(i, value_bytes):
                        if correct:
                            self.last_failure = "GET %s: %r" % (key_of(i).decode(), answer if not isinstance(answer, bytes) else answer[:40])
                        correct = False
            return correct
        except (OSError, ConnectionError, ValueError) as error:
            self.last_failure = "port %d: %s" % (self.port, error)
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            return False


def pass_all(readers, num_keys, value_bytes):
    """One pass over every reader at once (a thread each); True when all were correct."""
    results = [False] * len(readers)

    def run(index):
        results[index] = readers[index].read_all(num_keys, value_bytes)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(readers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return all(results)


def check(num_keys, value_bytes, ports):
    readers = [Reader(port) for port in ports]
    if not pass_all(readers, num_keys, value_bytes):
        sys.exit("check failed: " + "; ".join(r.last_failure or "" for r in readers if r.last_failure))


def scd_trial(pid, num_keys, value_bytes, deadline_s, ports):
    readers = [Reader(port) for port in ports]
    # Connected before the kill, as the web servers' clients would be.
    for reader in readers:
        reader.conn = Connection(reader.port)
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    passes = 0
    while time.monotonic() - killed_at < deadline_s:
        passes += 1
        if pass_all(readers, num_keys, value_bytes):
            print("%.1f %d" % ((time.monotonic() - killed_at) * 1000, passes))
            return
        if any(reader.conn is None for reader in readers):
            time.sleep(0.001)  # refused or reset: do not spin on connect
    print("%.1f %d deadline" % (deadline_s * 1000, passes))


def ask_sentinels(sentinel_ports, master_name):
    """The master port each sentinel reports, None where one does not answer."""
    answers = []
    for port in sentinel_ports:
        try:
            conn = Connection(port)
            conn.sock.settimeout(0.5)
            answer = conn.call("SENTINEL", "get-master-addr-by-name", master_name)
            conn.close()
            answers.append(int(answer[1]) if isinstance(answer, list) else None)
        except (OSError, ConnectionError, ValueError):
            answers.append(None)
    return answers


def sentinel_trial(pid, old_port, num_keys, value_bytes, deadline_s, master_name, sentinel_ports):
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    passes = 0
    readers = {}
    while time.monotonic() - killed_at < deadline_s:
        # Any sentinel that reports a new master will do: the most favourable reading for Sentinel.
        for port in ask_sentinels(sentinel_ports, master_name):
            if port is None or port == old_port:
                continue
            passes += 1
            reader = readers.setdefault(port, Reader(port))
            if reader.read_all(num_keys, value_bytes):
                print("%.1f %d %d" % ((time.monotonic() - killed_at) * 1000, passes, port))
                return
        time.sleep(0.005)
    print("%.1f %d 0 deadline" % (deadline_s * 1000, passes))


def fields(flat):
    return {flat[i].decode(): flat[i + 1] for i in range(0, len(flat) - 1, 2)}


def sentinel_settled(num_keys, value_bytes, master_name, sentinel_ports):
    """Exit 0 and print the master port when all sentinels agree on it, see it healthy with two
    healthy replicas and two other sentinels, and the master holds every key; else exit 1."""
    masters = set(ask_sentinels(sentinel_ports, master_name))
    if len(masters) != 1 or None in masters:
        sys.exit(1)
    master_port = masters.pop()
    try:
        for port in sentinel_ports:
            conn = Connection(port)
            master = fields(conn.call("SENTINEL", "master", master_name))
            if master["flags"] != b"master" or master["num-slaves"] != b"2" or master["num-other-sentinels"] != b"2":
                sys.exit(1)
            replicas = [fields(r) for r in conn.call("SENTINEL", "replicas", master_name)]
            conn.close()
            if len(replicas) != 2 or any(
                r["flags"] != b"slave" or r["master-link-status"] != b"ok" or int(r["master-port"]) != master_port
                for r in replicas
            ):
                sys.exit(1)
        conn = Connection(master_port)
        info = conn.call("INFO", "replication").decode()
        conn.close()
        lines = dict(line.split(":", 1) for line in info.split("\r\n") if ":" in line)
        offset = lines.get("master_repl_offset")
        online = [v for k, v in lines.items() if k.startswith("slave") and "state=online" in v and "offset=%s," % offset in v]
        if lines.get("role") != "master" or len(online) != 2:
            sys.exit(1)
    except (OSError, ConnectionError, ValueError, KeyError, AttributeError):
        sys.exit(1)
    if not Reader(master_port).read_all(num_keys, value_bytes):
        sys.exit(1)
    print(master_port)


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "load":
        load(int(args[0]), int(args[1]), int(args[2]))
    elif command == "check":
        check(int(args[0]), int(args[1]), [int(p) for p in args[2:]])
    elif command == "scd-trial":
        scd_trial(int(args[0]), int(args[1]), int(args[2]), float(args[3]), [int(p) for p in args[4:]])
    elif command == "sentinel-trial":
        sentinel_trial(int(args[0]), int(args[1]), int(args[2]), int(args[3]), float(args[4]), args[5], [int(p) for p in args[6:]])
    elif command == "sentinel-settled":
        sentinel_settled(int(args[0]), int(args[1]), args[2], [int(p) for p in args[3:]])
    else:
        sys.exit("unknown command " + command)


main()
PYTHON

# Lines "system trial ms", and "settle system trial ms" for the time back to a settled state.
results="$work_dir/results"
: >"$results"

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# --- scd ---------------------------------------------------------------------------------------

measure_scd() {
  start_scd_node n1
  start_scd_node n2 --join "127.0.0.1:${node_peer_port[n1]}"
  start_scd_node n3 --join "127.0.0.1:${node_peer_port[n1]}"
  wait_for_cluster_settled n1 n2 n3
  say "scd nodes n1, n2, n3 on ${node_client_port[n1]}, ${node_client_port[n2]}, ${node_client_port[n3]}"
  python3 "$probe" load "${node_client_port[n1]}" "$num_keys" "$value_bytes"
  wait_for_cluster_settled n1 n2 n3
  python3 "$probe" check "$num_keys" "$value_bytes" "${node_client_port[n1]}" "${node_client_port[n2]}" "${node_client_port[n3]}"

  local trial victim survivors name pid result restarted_at
  for trial in $(seq 1 "$trials"); do
    victim="n$(((trial - 1) % 3 + 1))"
    survivors=()
    for name in n1 n2 n3; do
      [[ $name == "$victim" ]] || survivors+=("$name")
    done
    pid=${node_pid[$victim]}
    result=$(python3 "$probe" scd-trial "$pid" "$num_keys" "$value_bytes" "$deadline_s" \
      "${node_client_port[${survivors[0]}]}" "${node_client_port[${survivors[1]}]}")
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
    read -r ms passes deadline <<<"$result"
    echo "scd $trial $ms" >>"$results"
    say "scd trial $trial/$trials: kill -9 $victim; every session served by ${survivors[*]} after $ms ms ($passes passes)${deadline:+ - DEADLINE}"
    restarted_at=$(now_ms)
    start_scd_node "$victim" --join "127.0.0.1:${node_peer_port[${survivors[0]}]}"
    wait_for_cluster_settled n1 n2 n3
    # Nothing lost: every node serves every session before the next kill.
    python3 "$probe" check "$num_keys" "$value_bytes" "${node_client_port[n1]}" "${node_client_port[n2]}" "${node_client_port[n3]}"
    echo "settle scd $trial $(($(now_ms) - restarted_at))" >>"$results"
  done
  for name in n1 n2 n3; do
    stop_scd_node "$name"
  done
}

# --- Redis Sentinel ------------------------------------------------------------------------------

declare -A instance_port=() instance_pid=()

# start_instance NAME [REDIS-SERVER ARGS...]: redis-server without persistence, on the same port
# as before when NAME was started before.
start_instance() {
  local name=$1
  shift
  [[ -n ${instance_port[$name]:-} ]] || node_port "instance_port[$name]"
  redis-server --port "${instance_port[$name]}" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize no --logfile "$work_dir/$name.log" --dir "$work_dir" --dbfilename "$name.rdb" "$@" &
  instance_pid[$name]=$!
  started_pids+=("$!")
  wait_for_ping "${instance_port[$name]}"
}

# wait_for_sentinel_settled: until the probe's sentinel-settled check passes (120 s at most);
# sets master_port.
wait_for_sentinel_settled() {
  for _ in $(seq 1 1200); do
    if master_port=$(python3 "$probe" sentinel-settled "$num_keys" "$value_bytes" "$master_name" "${sentinel_ports[@]}"); then
      return
    fi
    sleep 0.1
  done
  echo "redis sentinel did not settle within 120 s" >&2
  exit 1
}

measure_sentinel() {
  start_instance r1
  start_instance r2 --replicaof 127.0.0.1 "${instance_port[r1]}"
  start_instance r3 --replicaof 127.0.0.1 "${instance_port[r1]}"
  python3 "$probe" load "${instance_port[r1]}" "$num_keys" "$value_bytes"

  sentinel_ports=()
  local index port
  for index in 1 2 3; do
    node_port port
    sentinel_ports+=("$port")
    cat >"$work_dir/sentinel$index.conf" <<CONF
port $port
bind 127.0.0.1
daemonize no
dir $work_dir
logfile $work_dir/sentinel$index.log
sentinel monitor $master_name 127.0.0.1 ${instance_port[r1]} 2
sentinel down-after-milliseconds $master_name $down_after_ms
sentinel failover-timeout $master_name $failover_timeout_ms
CONF
    redis-sentinel "$work_dir/sentinel$index.conf" &
    started_pids+=("$!")
    wait_for_ping "$port"
  done
  wait_for_sentinel_settled
  say "redis r1, r2, r3 on ${instance_port[r1]}, ${instance_port[r2]}, ${instance_port[r3]}; sentinels on ${sentinel_ports[*]}"

  local trial victim name pid result new_port restarted_at
  for trial in $(seq 1 "$sentinel_trials"); do
    victim=
    for name in r1 r2 r3; do
      [[ ${instance_port[$name]} == "$master_port" ]] && victim=$name
    done
    pid=${instance_pid[$victim]}
    result=$(python3 "$probe" sentinel-trial "$pid" "$master_port" "$num_keys" "$value_bytes" "$deadline_s" \
      "$master_name" "${sentinel_ports[@]}")
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
    read -r ms passes new_port deadline <<<"$result"
    echo "sentinel $trial $ms" >>"$results"
    say "sentinel trial $trial/$sentinel_trials: kill -9 master $victim; every session read from the new master (port $new_port) after $ms ms${deadline:+ - DEADLINE}"
    if [[ -n $deadline ]]; then
      echo "no new master within ${deadline_s} s; see $work_dir/sentinel*.log" >&2
      exit 1
    fi
    restarted_at=$(now_ms)
    # Back as a replica of the new master, as an operator (or its init script) would restart it.
    start_instance "$victim" --replicaof 127.0.0.1 "$new_port"
    wait_for_sentinel_settled
    echo "settle sentinel $trial $(($(now_ms) - restarted_at))" >>"$results"
  done
}

((trials > 0)) && measure_scd
((sentinel_trials > 0)) && measure_sentinel

# stats SYSTEM: "count p50 p99 max mean" of the trial times (nearest-rank percentiles).
stats() {
  awk -v s="$1" '$1 == s { print $3 }' "$results" | sort -g | awk '
    { v[NR] = $1; sum += $1 }
    END {
      if (NR == 0) { print 0, "-", "-", "-", "-"; exit }
      p50 = int(0.50 * NR); if (p50 < 0.50 * NR) p50++
      p99 = int(0.99 * NR); if (p99 < 0.99 * NR) p99++
      printf "%d %.0f %.0f %.0f %.0f\n", NR, v[p50], v[p99], v[NR], sum / NR
    }'
}

settle_median() {
  awk -v s="$1" '$1 == "settle" && $2 == s { print $4 }' "$results" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR) printf "%.0f", v[int((NR + 1) / 2)]; else print "-" }'
}

echo
machine_summary
echo "redis-sentinel $(redis-sentinel --version | awk '{ print $3 }' | tr -d 'v=')"
echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "sessions: $num_keys keys of $value_bytes bytes; a trial ends at the first pass in which every key answers its value"
echo "scd: 3 nodes at the defaults (--backups 1, write-through, heartbeat 100 ms, phi 8); probe reads all keys through both survivors"
echo "sentinel: master + 2 replicas, 3 sentinels, quorum 2, down-after-milliseconds $down_after_ms, failover-timeout $failover_timeout_ms"
echo
printf '%-16s %6s %8s %8s %8s %8s %14s %-10s %s\n' system trials p50_ms p99_ms max_ms mean_ms settle_p50_ms goal verdict
read -r scd_count scd_p50 scd_p99 scd_max scd_mean <<<"$(stats scd)"
read -r sentinel_count sentinel_p50 sentinel_p99 sentinel_max sentinel_mean <<<"$(stats sentinel)"
if ((scd_count > 0)); then
  verdict=$(awk -v p="$scd_p99" 'BEGIN { print (p <= 1000) ? "met" : "MISSED" }')
  printf '%-16s %6s %8s %8s %8s %8s %14s %-10s %s\n' "scd" "$scd_count" "$scd_p50" "$scd_p99" "$scd_max" \
    "$scd_mean" "$(settle_median scd)" "p99<=1000" "$verdict"
fi
if ((sentinel_count > 0)); then
  printf '%-16s %6s %8s %8s %8s %8s %14s %-10s %s\n' "redis-sentinel" "$sentinel_count" "$sentinel_p50" \
    "$sentinel_p99" "$sentinel_max" "$sentinel_mean" "$(settle_median sentinel)" "-" "-"
fi
if ((scd_count > 0 && sentinel_count > 0)); then
  awk -v a50="$sentinel_p50" -v b50="$scd_p50" -v a99="$sentinel_p99" -v b99="$scd_p99" \
    'BEGIN { printf "sentinel/scd: p50 %.1fx, p99 %.1fx (how many times longer Sentinel takes)\n", a50 / b50, a99 / b99 }'
fi
echo "settle_p50_ms: median time from restarting the killed process to the next trial's starting state (not part of the goal)"
