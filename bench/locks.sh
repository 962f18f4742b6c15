#!/usr/bin/env bash
# Session locks: scd's native locks against the phpredis way on redis-server, measured in the
# same run (issue 5).
#
# 1. Uncontended acquire+release round trips per second, CLIENTS connections each locking and
#    unlocking keys of its own as fast as it can: SCD.LOCK/SCD.UNLOCK on scd, and
#    SET <k> <secret> NX PX 30000 + EVALSHA <compare-and-delete> on scd and on redis-server.
# 2. The time from the release to the waiter's grant (goal: one round trip, no polling
#    interval): a waiter queued with SCD.LOCK ... WAIT on scd (one node; then two nodes, one
#    backup, write-through, with the holder and the waiter on different nodes), against a waiter
#    polling SET NX PX every 2 ms (phpredis' redis.session.lock_wait_time default) on
#    redis-server. The release's own round trip (p50) is printed beside it: "one round trip".
#
# The round trips and the one-node handovers run on a single scd node (no backup), like the
# single redis-server they are compared with.
#
#   bash bench/locks.sh                          defaults: 3 rounds of 5 s, 8 clients, 300 handovers
#   ROUNDS=5 SECONDS_PER_RUN=10 CLIENTS=16 HANDOVERS=1000 bash bench/locks.sh
#
# The load generator is Python (raw RESP over sockets, one process per client), so the absolute
# rates are the generator's as much as the servers'; the ratios compare like with like. Nothing
# is pinned to a core. SCD_BINARY=path uses that scd binary instead of building one. Not run in
# CI.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

rounds=${ROUNDS:-3}
seconds_per_run=${SECONDS_PER_RUN:-5}
clients=${CLIENTS:-8}
handovers=${HANDOVERS:-300}

require_tools redis-server redis-cli python3
build_scd
start_redis

# start_scd_node NAME [JOIN]: an scd node on free ports; sets node_port, node_peer, node_pid.
start_scd_node() {
  node_port=$(free_port)
  node_peer="127.0.0.1:$(free_port)"
  local join=()
  if [[ -n ${2:-} ]]; then join=(--join "$2"); fi
  "$scd_binary" run --name "$1" --client "127.0.0.1:$node_port" --peer "$node_peer" \
    "${join[@]}" --admin off --log-level warn >"$work_dir/scd-$1.log" 2>&1 &
  node_pid=$!
  started_pids+=("$node_pid")
  wait_for_ping "$node_port"
}
start_scd_node first
scd_port=$node_port scd_pid=$node_pid first_peer=$node_peer
say "redis-server on $redis_port, scd on $scd_port (pid $scd_pid)"

cat >"$work_dir/locks.py" <<'PYTHON'
"""Lock workloads over raw RESP: round trips per second, and release-to-grant handovers."""
import multiprocessing
import os
import socket
import sys
import threading
import time

RELEASE_SCRIPT = (
    b'if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("del",KEYS[1]) '
    b"else return 0 end"
)
RELEASE_SHA1 = b"b70c2384248f88e6b75b9f89241a180f856ad852"


class Connection:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for arg in args:
            arg = arg if isinstance(arg, bytes) else str(arg).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
        self.sock.sendall(b"".join(out))

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+",):
            return rest
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            length = int(rest)
            if length < 0:
                return None
            while len(self.buf) < length + 2:
                self.buf += self.sock.recv(65536)
            value, self.buf = self.buf[:length], self.buf[length + 2 :]
            return value
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self.reply() for _ in range(count)]
        if kind == b"_":
            return None
        raise RuntimeError("unexpected reply %r" % line)

    def call(self, *args):
        self.send(*args)
        return self.reply()


def round_trips_worker(port, kind, seconds, index, results):
    connection = Connection(port)
    secret = b"secret-%d" % index
    count = 0
    sequence = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(50):
            sequence += 1
            key = b"bench:lock:%d:%d" % (index, sequence % 1000)
            if kind == "native":
                token = connection.call(b"SCD.LOCK", key, b"30000")
                assert isinstance(token, int), token
                assert connection.call(b"SCD.UNLOCK", key, token) == 1
            else:
                assert connection.call(b"SET", key, secret, b"NX", b"PX", b"30000") == b"OK"
                assert connection.call(b"EVALSHA", RELEASE_SHA1, b"1", key, secret) == 1
            count += 1
    results.put(count / seconds)


def round_trips(port, kind, clients, seconds):
    if kind == "compat":
        Connection(port).call(b"SCRIPT", b"LOAD", RELEASE_SCRIPT)
    results = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(
            target=round_trips_worker, args=(port, kind, seconds, index, results)
        )
        for index in range(clients)
    ]
    for worker in workers:
        worker.start()
    total = sum(results.get() for _ in workers)
    for worker in workers:
        worker.join()
    print("%.0f" % total)


def percentile(values, fraction):
    values = sorted(values)
    return values[min(len(values) - 1, int(fraction * len(values)))]


def handovers(holder_port, waiter_port, kind, trials, poll_interval_s):
    """Release-to-grant times in microseconds: p50 p90 p99, then the p50 of the release's own
    round trip (sending the release to reading its reply), the unit "one round trip" means."""
    holder = Connection(holder_port)
    waiter = Connection(waiter_port)
    observer = Connection(waiter_port)
    times = []
    release_round_trips = []
    for trial in range(trials):
        key = b"bench:handover:%d:%d" % (os.getpid(), trial)
        granted_at = []
        if kind == "native":
            token = holder.call(b"SCD.LOCK", key, b"30000", b"OWNER", b"holder")

            def wait_native():
                reply = waiter.call(b"SCD.LOCK", key, b"30000", b"WAIT", b"10000", b"OWNER", b"waiter")
                granted_at.append(time.perf_counter())
                assert isinstance(reply, int), reply

            thread = threading.Thread(target=wait_native, daemon=True)
            thread.start()
            queued_by = time.monotonic() + 10
            while True:
                info = observer.call(b"SCD.LOCKINFO", key)
                if info is not None and info[4] == 1:
                    break
                if time.monotonic() > queued_by:
                    raise RuntimeError("the waiter was not queued within 10 s: %r" % (info,))
                time.sleep(0.0005)
            released_at = time.perf_counter()
            assert holder.call(b"SCD.UNLOCK", key, token) == 1
            release_round_trips.append((time.perf_counter() - released_at) * 1e6)
        else:
            assert holder.call(b"SET", key, b"holder", b"NX", b"PX", b"30000") == b"OK"
            started = threading.Event()

            def wait_polling():
                started.set()
                while waiter.call(b"SET", key, b"waiter", b"NX", b"PX", b"30000") is None:
                    time.sleep(poll_interval_s)
                granted_at.append(time.perf_counter())

            thread = threading.Thread(target=wait_polling, daemon=True)
            thread.start()
            started.wait()
            # Release at a random point of the waiter's polling cycle, as a real holder would.
            time.sleep(poll_interval_s * (0.5 + (trial % 7) / 7))
            released_at = time.perf_counter()
            assert holder.call(b"EVAL", RELEASE_SCRIPT, b"1", key, b"holder") == 1
            release_round_trips.append((time.perf_counter() - released_at) * 1e6)
        thread.join(timeout=15)
        if not granted_at:
            raise RuntimeError("the waiter was not granted within 15 s of the release")
        times.append((granted_at[0] - released_at) * 1e6)
    print(
        "%.0f %.0f %.0f %.0f"
        % (
            percentile(times, 0.5),
            percentile(times, 0.9),
            percentile(times, 0.99),
            percentile(release_round_trips, 0.5),
        )
    )


if __name__ == "__main__":
    if sys.argv[1] == "round-trips":
        round_trips(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
    else:
        handovers(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), float(sys.argv[6]))
PYTHON

results="$work_dir/results"
: >"$results"
for round in $(seq 1 "$rounds"); do
  if ((round % 2)); then order="redis-compat scd-compat scd-native"; else order="scd-native scd-compat redis-compat"; fi
  for target in $order; do
    case $target in
      redis-compat) port=$redis_port kind=compat ;;
      scd-compat) port=$scd_port kind=compat ;;
      scd-native) port=$scd_port kind=native ;;
    esac
    say "round $round/$rounds: $target, $clients clients for ${seconds_per_run}s"
    rate=$(python3 "$work_dir/locks.py" round-trips "$port" "$kind" "$clients" "$seconds_per_run")
    echo "$target $rate $round" >>"$results"
  done
done

say "handovers: $handovers per case"
poll_s=0.002
redis_handover=$(python3 "$work_dir/locks.py" handovers "$redis_port" "$redis_port" poll "$handovers" "$poll_s")
scd_poll_handover=$(python3 "$work_dir/locks.py" handovers "$scd_port" "$scd_port" poll "$handovers" "$poll_s")
scd_handover=$(python3 "$work_dir/locks.py" handovers "$scd_port" "$scd_port" native "$handovers" 0)

# A second node joins the first (one backup, write-through: every grant and release waits for
# the other node); the holder locks through the first node, the waiter through the second.
start_scd_node second "$first_peer"
second_port=$node_port
redis-cli -p "$scd_port" SET bench:probe x >/dev/null
for _ in $(seq 1 600); do
  if redis-cli -p "$second_port" INFO keyspace | grep -q '^db0:keys='; then break; fi
  sleep 0.05
done
redis-cli -p "$second_port" INFO keyspace | grep -q '^db0:keys=' || {
  echo "the second scd node did not join in time" >&2
  exit 1
}
say "scd node 2 on $second_port joined"
cross_handover=$(python3 "$work_dir/locks.py" handovers "$scd_port" "$second_port" native "$handovers" 0)

# rate_median TARGET: the median over the rounds of TARGET's rate.
rate_median() {
  awk -v target="$1" '$1 == target { print $2 }' "$results" | median
}
redis_rate=$(rate_median redis-compat)
scd_compat_rate=$(rate_median scd-compat)
scd_native_rate=$(rate_median scd-native)

echo
machine_summary
echo "round trips: python3 locks.py round-trips (raw RESP, $clients processes, ${seconds_per_run}s, median of $rounds interleaved rounds)"
echo
printf '%-44s %12s %10s\n' "acquire+release, uncontended" "pairs/s" "vs redis"
printf '%-44s %12.0f %10s\n' "redis-server: SET NX PX + EVALSHA" "$redis_rate" "1.000"
printf '%-44s %12.0f %10.3f\n' "scd: SET NX PX + EVALSHA" "$scd_compat_rate" "$(awk -v a="$scd_compat_rate" -v b="$redis_rate" 'BEGIN { print a / b }')"
printf '%-44s %12.0f %10.3f\n' "scd: SCD.LOCK + SCD.UNLOCK" "$scd_native_rate" "$(awk -v a="$scd_native_rate" -v b="$redis_rate" 'BEGIN { print a / b }')"
echo
printf '%-52s %8s %8s %8s %12s %11s\n' "release -> waiter's grant, $handovers handovers (us)" p50 p90 p99 "release rtt" "p50/rtt"
row() {
  read -r p50 p90 p99 rtt <<<"$2"
  printf '%-52s %8s %8s %8s %12s %11.2f\n' "$1" "$p50" "$p90" "$p99" "$rtt" "$(awk -v a="$p50" -v b="$rtt" 'BEGIN { print a / b }')"
}
row "redis-server: waiter polls SET NX PX every 2 ms" "$redis_handover"
row "scd: waiter polls SET NX PX every 2 ms" "$scd_poll_handover"
row "scd: SCD.LOCK ... WAIT, one node" "$scd_handover"
row "scd: SCD.LOCK ... WAIT, holder and waiter on 2 nodes" "$cross_handover"
read -r redis_p50 _ <<<"$redis_handover"
read -r scd_p50 _ <<<"$scd_handover"
echo "scd native handover p50 / redis polling handover p50: $(awk -v a="$scd_p50" -v b="$redis_p50" 'BEGIN { printf "%.3f", a / b }') (goal: about one round trip, no polling interval)"
