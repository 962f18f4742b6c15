#!/usr/bin/env bash
# The cluster of issue 3 (--backups 0) on this machine, three measurements in one run:
#
# 1. Throughput of a 3-node cluster against a single node (`scd run` alone) under the same
#    redis-benchmark -t set,get -c 50 -d 512 -r 100000 load, without pipelining and with -P 16,
#    all of it sent to one node of the cluster so that about 2/3 of the commands are relayed (the
#    share is read from that node's relay counter). Rounds interleaved; medians of ops/s, the
#    median of the per-round ratios cluster/single and their range.
# 2. Latency of one client's sequential GETs of a key whose primary is the node it talks to
#    (local) and of a key whose primary is another node (relayed), p50 and p99, against the
#    loopback round trip (PING p50 of redis-server with the same tool). Goal (issue 3): a relay
#    costs no more than one extra loopback round trip at p50. The keys are chosen by a port of
#    scd's placement (xxh3_64 of the hash tag, rendezvous ranking of node names) and checked
#    against scd's own answer: the relay counter moves for the relayed key and not for the local.
# 3. Time for a new node to take its share of DATA_MB of sessions: a 2-node cluster is loaded
#    with 2.5 KB sessions through redis-cli --pipe (half through each node, at the same time, as
#    two web servers would), then a 3rd node joins. Measured from its start until every node's
#    /cluster shows the placement's target owners with no handoff or snapshot in progress; the
#    bytes are the snapshot bytes the new node received. Once per value of HANDOFF_BACKUPS.
#
#   bash bench/cluster.sh                   defaults, a few minutes
#   DATA_MB=128 HANDOFF_BACKUPS=0 bash bench/cluster.sh      a quick try
#   ROUNDS=5 REQUESTS=500000 LATENCY_ROUNDS=9 LATENCY_REQUESTS=50000 bash bench/cluster.sh
#
# Knobs: ROUNDS (3) and REQUESTS (100000) for 1; LATENCY_ROUNDS (5) and LATENCY_REQUESTS (20000)
# for 2; DATA_MB (1024), HANDOFF_BACKUPS ("0 1") and HANDOFF_DEADLINE_S (300) for 3. MB here is
# 2^20 bytes, in the knob and in the printed figures.
# Nothing is pinned to a core: 3 nodes, the load generator and everything else share the machine.
# SCD_BINARY=path uses that scd binary instead of building one. Needs python3. Not run in CI.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

rounds=${ROUNDS:-3}
requests=${REQUESTS:-100000}
latency_rounds=${LATENCY_ROUNDS:-5}
latency_requests=${LATENCY_REQUESTS:-20000}
data_mb=${DATA_MB:-1024}
handoff_backups=${HANDOFF_BACKUPS:-"0 1"}
handoff_deadline_s=${HANDOFF_DEADLINE_S:-300}
clients=50
value_bytes=512
keyspace=100000
session_bytes=2560
num_partitions=1024

require_tools redis-server redis-benchmark redis-cli curl python3 perl
build_scd

# Placement as scd computes it, and the waits on /cluster that need it. xxh3_64 is ported from
# xxhash-rust 0.8 (inputs up to 240 bytes: keys and node names here are short); the script checks
# the port against scd before relying on it.
helper="$work_dir/placement.py"
cat >"$helper" <<'PYTHON'
import json, sys, time, urllib.request

MASK64 = (1 << 64) - 1
PRIME64_1, PRIME64_2, PRIME64_3 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9
SECRET = bytes.fromhex(
    "b8fe6c3923a44bbe7c01812cf721ad1cded46de9839097db7240a4a4b7b3671f"
    "cb79e64eccc0e578825ad07dccff7221b8084674f743248ee03590e6813a264c"
    "3c2852bb91c300cb88d0658b1b532ea371644897a20df94e3819ef46a9deacd8"
    "a8fa763fe39c343ff9dcbbc7c70b4f1d8a51e04bcdb45931c89f7ec9d9787364"
    "eac5ac8334d3ebc3c581a0fffa1363eb170ddd51b7f0da49d316552629d4689e"
    "2b16be587d47a1fc8ff8b8d17ad031ce45cb3a8f95160428afd7fbcabb4b407e")


def u32(data, at):
    return int.from_bytes(data[at:at + 4], "little")


def u64(data, at):
    return int.from_bytes(data[at:at + 8], "little")


def fold(left, right):
    product = left * right
    return (product ^ (product >> 64)) & MASK64


def avalanche(value):
    value ^= value >> 37
    value = (value * 0x165667919E3779F9) & MASK64
    return value ^ (value >> 32)


def avalanche_xxh64(value):
    value ^= value >> 33
    value = (value * PRIME64_2) & MASK64
    value ^= value >> 29
    value = (value * PRIME64_3) & MASK64
    return value ^ (value >> 32)


def rotl(value, bits):
    return ((value << bits) | (value >> (64 - bits))) & MASK64


def mix16(data, at, secret_at, seed):
    low = u64(data, at) ^ ((u64(SECRET, secret_at) + seed) & MASK64)
    high = u64(data, at + 8) ^ ((u64(SECRET, secret_at + 8) - seed) & MASK64)
    return fold(low, high)


def xxh3_64(data, seed=0):
    """xxh3_64_with_seed of xxhash-rust, for inputs of at most 240 bytes."""
    n = len(data)
    if n > 240:
        raise ValueError("inputs longer than 240 bytes are not ported")
    if n == 0:
        return avalanche_xxh64(seed ^ u64(SECRET, 56) ^ u64(SECRET, 64))
    if n <= 3:
        combo = (data[0] << 16) | (data[n >> 1] << 24) | data[n - 1] | (n << 8)
        return avalanche_xxh64(combo ^ (((u32(SECRET, 0) ^ u32(SECRET, 4)) + seed) & MASK64))
    if n <= 8:
        seed ^= int.from_bytes((seed & 0xFFFFFFFF).to_bytes(4, "little"), "big") << 32
        keyed = ((u32(data, n - 4) + (u32(data, 0) << 32)) & MASK64) ^ (
            ((u64(SECRET, 8) ^ u64(SECRET, 16)) - seed) & MASK64)
        keyed ^= rotl(keyed, 49) ^ rotl(keyed, 24)
        keyed = (keyed * 0x9FB21C651E98DF25) & MASK64
        keyed ^= (keyed >> 35) + n
        keyed = (keyed * 0x9FB21C651E98DF25) & MASK64
        return keyed ^ (keyed >> 28)
    if n <= 16:
        low = u64(data, 0) ^ (((u64(SECRET, 24) ^ u64(SECRET, 32)) + seed) & MASK64)
        high = u64(data, n - 8) ^ (((u64(SECRET, 40) ^ u64(SECRET, 48)) - seed) & MASK64)
        swapped = int.from_bytes(low.to_bytes(8, "little"), "big")
        return avalanche((n + swapped + high + fold(low, high)) & MASK64)
    acc = (n * PRIME64_1) & MASK64
    if n <= 128:
        for lane in range((n - 1) // 32, -1, -1):
            acc += mix16(data, 16 * lane, 32 * lane, seed)
            acc += mix16(data, n - 16 * (lane + 1), 32 * lane + 16, seed)
        return avalanche(acc & MASK64)
    for lane in range(8):
        acc += mix16(data, 16 * lane, 16 * lane, seed)
    acc = avalanche(acc & MASK64)
    for lane in range(8, n // 16):
        acc += mix16(data, 16 * lane, 16 * (lane - 8) + 3, seed)
    acc += mix16(data, n - 16, 136 - 17, seed)
    return avalanche(acc & MASK64)


def hash_tag(key):
    """Redis's hash tag rule, as crates/store/src/placement.rs applies it."""
    start = key.find(b"{")
    if start < 0:
        return key
    end = key.find(b"}", start + 1)
    return key[start + 1:end] if end > start + 1 else key


def partition_of(key, num_partitions):
    return xxh3_64(hash_tag(key)) & (num_partitions - 1)


def owners_of(partition, names, backups):
    """Target owners, primary first: highest rendezvous score, equal scores by ascending name
    (crates/cluster/src/table.rs target_owners)."""
    ranked = sorted(names, key=lambda name: (-xxh3_64(name.encode(), partition), name))
    return ranked[:1 + backups]


def fetch(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
        return json.load(response)


def settled_as_placed(ports, backups, num_partitions, expected):
    """Every node sees all of them alive, the same table, nothing moving, and each node owns
    exactly the partitions the placement gives it."""
    views = [fetch(port, "/cluster") for port in ports]
    if len({view["table_digest"] for view in views}) != 1:
        return False
    for view in views:
        if not view["serving"] or view["unowned_partitions"] or view["under_replicated_partitions"]:
            return False
        if view["handoffs_in_progress"] or view["snapshots_in_progress"]:
            return False
        owned = {node["name"]: (node["primaries"], node["backups"])
                 for node in view["nodes"] if node["state"] == "alive"}
        if owned != expected:
            return False
    return True


def main(command, *args):
    if command == "owner":
        # owner KEY NUM_PARTITIONS NAME...: "partition primary"
        key, num_partitions, names = args[0].encode(), int(args[1]), list(args[2:])
        partition = partition_of(key, num_partitions)
        print(partition, owners_of(partition, names, 0)[0])
    elif command == "pick":
        # pick PREFIX NUM_PARTITIONS SELF NAME...: a key whose primary is SELF, one whose is not.
        prefix, num_partitions, self_name, names = args[0], int(args[1]), args[2], list(args[3:])
        local = relayed = None
        for index in range(10000):
            key = f"{prefix}{index}"
            primary = owners_of(partition_of(key.encode(), num_partitions), names, 0)[0]
            if primary == self_name and local is None:
                local = key
            if primary != self_name and relayed is None:
                relayed = key
            if local and relayed:
                print(local, relayed)
                return
        sys.exit("no key found")
    elif command == "stat":
        # stat PORT PATH.IN.STATS: one value of /stats
        value = fetch(int(args[0]), "/stats")
        for part in args[1].split("."):
            value = value[part]
        print(value)
    elif command == "wait-snapshots":
        # wait-snapshots PORT COUNT: waits until the node's published metrics count COUNT
        # snapshots received (counters are published once a second, so they lag the /cluster
        # view by up to that); prints the snapshot bytes received.
        port, count, deadline = int(args[0]), int(args[1]), time.time() + 10
        while True:
            metrics = fetch(port, "/stats")["metrics"]
            if metrics["snapshots_received_total"] >= count:
                print(metrics["snapshot_received_bytes_total"])
                return
            if time.time() > deadline:
                sys.exit(f"{metrics['snapshots_received_total']} snapshots received, expected {count}")
            time.sleep(0.1)
    elif command == "wait-placed":
        # wait-placed START_EPOCH_S DEADLINE_S BACKUPS NUM_PARTITIONS NAME=PORT...: waits until
        # settled_as_placed, polling every 20 ms; prints the seconds since START_EPOCH_S and the
        # number of partitions the last NAME owns (primary or backup).
        start, deadline_s = float(args[0]), float(args[1])
        backups, num_partitions = int(args[2]), int(args[3])
        nodes = dict(arg.split("=") for arg in args[4:])
        expected = {name: [0, 0] for name in nodes}
        for partition in range(num_partitions):
            for rank, name in enumerate(owners_of(partition, list(nodes), backups)):
                expected[name][min(rank, 1)] += 1
        expected = {name: tuple(counts) for name, counts in expected.items()}
        while True:
            try:
                if settled_as_placed(list(nodes.values()), backups, num_partitions, expected):
                    print(f"{time.time() - start:.3f}", sum(expected[list(nodes)[-1]]))
                    return
            except (OSError, ValueError, KeyError):
                pass  # a node not answering yet, or a view being rebuilt: look again
            if time.time() - start > deadline_s:
                sys.exit(f"not placed as {expected} within {deadline_s} s")
            time.sleep(0.02)
    else:
        sys.exit(f"unknown command {command}")


main(*sys.argv[1:])
PYTHON
placement() { python3 "$helper" "$@"; }
node_stat() { placement stat "${node_admin_port[$1]}" "$2"; }

# --- The nodes: a single one and a cluster of three, all with --backups 0 ---

start_redis
start_scd_node single --cluster bench-single --backups 0
start_scd_node n1 --cluster bench-three --backups 0
start_scd_node n2 --cluster bench-three --backups 0 --join "127.0.0.1:${node_peer_port[n1]}"
start_scd_node n3 --cluster bench-three --backups 0 --join "127.0.0.1:${node_peer_port[n1]}"
wait_for_cluster_settled single
wait_for_cluster_settled n1 n2 n3
say "single node on ${node_client_port[single]}, cluster n1/n2/n3 on ${node_client_port[n1]}/${node_client_port[n2]}/${node_client_port[n3]} (load sent to n1)"

# --- 2. Latency of a relayed GET against a local GET (run before 1, see relay_p50_us) ---

read -r local_key relayed_key < <(placement pick "bench:latency:" "$num_partitions" n1 n1 n2 n3)
read -r local_partition local_primary < <(placement owner "$local_key" "$num_partitions" n1 n2 n3)
read -r relayed_partition relayed_primary < <(placement owner "$relayed_key" "$num_partitions" n1 n2 n3)
value=$(head -c "$value_bytes" /dev/zero | tr '\0' x)
# The check of the port against scd: writing the relayed key through n1 must be relayed, the
# local one must not.
for key in "$local_key" "$relayed_key"; do
  relays_before=$(node_stat n1 metrics.relays_total.ok)
  [[ $(redis-cli -p "${node_client_port[n1]}" SET "$key" "$value") == OK ]] || {
    echo "SET $key through n1 failed" >&2
    exit 1
  }
  relayed_by_scd=$(($(node_stat n1 metrics.relays_total.ok) - relays_before))
  if [[ $key == "$local_key" ]]; then expect=0; else expect=1; fi
  if ((relayed_by_scd != expect)); then
    echo "placement port disagrees with scd: SET $key through n1 was relayed $relayed_by_scd times, expected $expect" >&2
    exit 1
  fi
done
say "local key $local_key (partition $local_partition, primary $local_primary), relayed key $relayed_key (partition $relayed_partition, primary $relayed_primary): checked against n1's relay counter"

latencies="$work_dir/latencies"
: >"$latencies"

# latency NAME PORT ROUND COMMAND...: one client, sequential requests; appends "name p50 p99 round".
latency() {
  local name=$1 port=$2 round=$3
  shift 3
  redis-benchmark -h 127.0.0.1 -p "$port" -c 1 -n "$latency_requests" --csv "$@" 2>/dev/null |
    tr -d '"' | awk -F, -v name="$name" -v round="$round" \
      'NR > 1 { print name, $5, $7, round }' >>"$latencies"
}

for round in $(seq 1 "$latency_rounds"); do
  # The order rotates, so no kind always runs first or last in a round.
  case $((round % 3)) in
    1) order="local relayed ping" ;;
    2) order="relayed ping local" ;;
    0) order="ping local relayed" ;;
  esac
  for kind in $order; do
    say "latency round $round/$latency_rounds: $kind"
    case $kind in
      local) latency local "${node_client_port[n1]}" "$round" GET "$local_key" ;;
      relayed) latency relayed "${node_client_port[n1]}" "$round" GET "$relayed_key" ;;
      ping) latency ping "$redis_port" "$round" PING ;;
    esac
  done
done
# scd's own view of these relays: n1's histogram of relayed commands (send to answer), read
# before the throughput runs add theirs.
relay_mean_us=$(node_stat n1 metrics.relay_duration_seconds.mean_us)
relay_p50_us=$(node_stat n1 metrics.relay_duration_seconds.p50_us)
relay_p99_us=$(node_stat n1 metrics.relay_duration_seconds.p99_us)

# --- 1. Throughput: a 3-node cluster against a single node ---

results="$work_dir/results"
: >"$results"
relays_total=0
commands_total=0

for round in $(seq 1 "$rounds"); do
  for pipeline in 1 16; do
    if ((round % 2)); then order="single cluster"; else order="cluster single"; fi
    for target in $order; do
      say "round $round/$rounds: $target, -P $pipeline"
      if [[ $target == single ]]; then
        bench_set_get single "${node_client_port[single]}" "$pipeline" "$round"
      else
        relays_before=$(node_stat n1 metrics.relays_total.ok)
        commands_before=$(node_stat n1 commands_processed)
        bench_set_get cluster "${node_client_port[n1]}" "$pipeline" "$round"
        relays_total=$((relays_total + $(node_stat n1 metrics.relays_total.ok) - relays_before))
        commands_total=$((commands_total + $(node_stat n1 commands_processed) - commands_before))
      fi
    done
  done
done

for name in single n1 n2 n3; do
  kill_scd_node "$name"
done

# --- 3. A new node takes its share of DATA_MB of sessions ---

num_sessions=$((data_mb * 1048576 / session_bytes))
handoffs="$work_dir/handoffs"
: >"$handoffs"

# generate_half FIRST: sessions FIRST, FIRST+2, ... of num_sessions as raw RESP (SET key
# <2.5 KB> EX 1440): values are slices of one random buffer, so generating 1 GB takes seconds.
generate_half() {
  perl -e '
    my ($first, $sessions, $size) = @ARGV;
    srand(20261123 + $first);
    my @alphabet = ("a".."z", "A".."Z", "0".."9", "+", "/");
    my $buffer = join("", map { $alphabet[int(rand(64))] } 1 .. 1048576);
    for (my $index = $first; $index <= $sessions; $index += 2) {
      my $key = sprintf("PHPREDIS_SESSION:%026d", $index);
      my $value = substr($buffer, int(rand(1048576 - $size)), $size);
      print "*5\r\n\$3\r\nSET\r\n\$", length($key), "\r\n$key\r\n\$", $size, "\r\n$value\r\n\$2\r\nEX\r\n\$4\r\n1440\r\n";
    }
  ' "$1" "$num_sessions" "$session_bytes"
}

for backups in $handoff_backups; do
  a="b${backups}n1" b="b${backups}n2" c="b${backups}n3"
  start_scd_node "$a" --cluster "bench-handoff-$backups" --backups "$backups"
  start_scd_node "$b" --cluster "bench-handoff-$backups" --backups "$backups" --join "127.0.0.1:${node_peer_port[$a]}"
  wait_for_cluster_settled "$a" "$b"
  say "--backups $backups: loading $num_sessions sessions of $session_bytes bytes, half through each of 2 nodes"
  load_start=$(date +%s.%N)
  generate_half 1 | redis-cli -p "${node_client_port[$a]}" --pipe >"$work_dir/$a.pipe" 2>&1 &
  load_a=$!
  generate_half 2 | redis-cli -p "${node_client_port[$b]}" --pipe >"$work_dir/$b.pipe" 2>&1 &
  load_b=$!
  wait "$load_a" "$load_b"
  load_seconds=$(awk -v start="$load_start" -v end="$(date +%s.%N)" 'BEGIN { printf "%.2f", end - start }')
  # Node a was sent the odd-numbered sessions, node b the even-numbered ones.
  for name in "$a" "$b"; do
    if [[ $name == "$a" ]]; then replies=$(((num_sessions + 1) / 2)); else replies=$((num_sessions / 2)); fi
    grep -q "errors: 0, replies: $replies" "$work_dir/$name.pipe" || {
      cat "$work_dir/$name.pipe" >&2
      exit 1
    }
  done
  keys=$(redis-cli -p "${node_client_port[$a]}" DBSIZE)
  if [[ $keys != "$num_sessions" ]]; then
    echo "the cluster holds $keys keys after loading, expected $num_sessions" >&2
    exit 1
  fi
  wait_for_cluster_settled "$a" "$b"
  say "--backups $backups: loaded in $load_seconds s; $c joins"
  join_start=$(date +%s.%N)
  start_scd_node "$c" --cluster "bench-handoff-$backups" --backups "$backups" --join "127.0.0.1:${node_peer_port[$a]}"
  read -r join_seconds joined_partitions < <(placement wait-placed "$join_start" "$handoff_deadline_s" \
    "$backups" "$num_partitions" "$a=${node_admin_port[$a]}" "$b=${node_admin_port[$b]}" "$c=${node_admin_port[$c]}")
  [[ -n $join_seconds ]] || exit 1
  received_bytes=$(placement wait-snapshots "${node_admin_port[$c]}" "$joined_partitions")
  received_keys=$(node_stat "$c" keys)
  keys=$(redis-cli -p "${node_client_port[$c]}" DBSIZE)
  if [[ $keys != "$num_sessions" ]]; then
    echo "the cluster holds $keys keys after the join, expected $num_sessions" >&2
    exit 1
  fi
  echo "$backups $num_sessions $load_seconds $join_seconds $received_bytes $received_keys" >>"$handoffs"
  for name in "$a" "$b" "$c"; do
    kill_scd_node "$name"
  done
done

# --- Report ---

echo
machine_summary
echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "1. throughput, 3-node cluster (load sent to n1) against a single node, both --backups 0"
echo "command: redis-benchmark -t set,get -c $clients -d $value_bytes -r $keyspace -n $requests -P {1,16} --csv (median of $rounds rounds, interleaved)"
printf '%-6s %-10s %14s %14s %15s %13s\n' test pipeline single_ops_s cluster_ops_s cluster/single "round range"
for pipeline in 1 16; do
  for test in SET GET; do
    single_rps=$(set_get_median single "$pipeline" "$test" 4)
    cluster_rps=$(set_get_median cluster "$pipeline" "$test" 4)
    # Per-round ratios: the two runs of a round are next to each other in time.
    ratios=$(awk -v p="$pipeline" -v t="$test" '
      $2 == p && $3 == t { rps[$1, $5] = $4; rounds[$5] = 1 }
      END { for (round in rounds) print rps["cluster", round] / rps["single", round] }' "$results")
    ratio=$(median <<<"$ratios")
    range=$(sort -g <<<"$ratios" | awk 'NR == 1 { low = $1 } { high = $1 } END { printf "%.2f-%.2f", low, high }')
    if ((pipeline == 1)); then label="none"; else label="-P 16"; fi
    printf '%-6s %-10s %14.0f %14.0f %15.3f %13s\n' "$test" "$label" "$single_rps" "$cluster_rps" "$ratio" "$range"
  done
done
awk -v r="$relays_total" -v c="$commands_total" 'BEGIN {
  printf "relayed by n1: %d of %d commands (%.1f%%; 2/3 expected with 3 nodes)\n", r, c, c ? 100 * r / c : 0 }'

echo
echo "2. latency of one client's sequential GETs through n1 ($value_bytes-byte value), median of $latency_rounds rounds"
echo "command: redis-benchmark -c 1 -n $latency_requests --csv GET <key> (scd n1); redis-benchmark -c 1 -n $latency_requests --csv PING (redis-server)"
printf '%-8s %-28s %9s %-8s %8s %8s\n' kind key partition primary p50_ms p99_ms
declare -A p50_of=()
for kind in local relayed ping; do
  p50=$(awk -v k="$kind" '$1 == k { print $2 }' "$latencies" | median)
  p99=$(awk -v k="$kind" '$1 == k { print $3 }' "$latencies" | median)
  p50_of[$kind]=$p50
  case $kind in
    local) printf '%-8s %-28s %9s %-8s %8.3f %8.3f\n' local "$local_key" "$local_partition" "$local_primary" "$p50" "$p99" ;;
    relayed) printf '%-8s %-28s %9s %-8s %8.3f %8.3f\n' relayed "$relayed_key" "$relayed_partition" "$relayed_primary" "$p50" "$p99" ;;
    ping) printf '%-8s %-28s %9s %-8s %8.3f %8.3f\n' ping "(redis-server PING)" - - "$p50" "$p99" ;;
  esac
done
awk -v l="${p50_of[local]}" -v r="${p50_of[relayed]}" -v p="${p50_of[ping]}" 'BEGIN {
  cost = r - l
  printf "relay cost at p50: %.3f ms (relayed - local); goal <= one loopback round trip (%.3f ms): %s\n", cost, p, (cost <= p) ? "met" : "MISSED" }'
echo "n1's relay_duration histogram over these GETs (relay sent to answer received): mean ${relay_mean_us} us, p50 ${relay_p50_us} us, p99 ${relay_p99_us} us"

echo
echo "3. a 3rd node joins a 2-node cluster holding $data_mb MB of sessions ($num_sessions x $session_bytes B, SET ... EX 1440 via redis-cli --pipe)"
echo "timed from its start until every /cluster shows the placement's owners, no handoff or snapshot in progress"
printf '%-8s %10s %10s %10s %13s %10s %12s\n' backups sessions load_s join_s received_MB MB/s new_node_keys
while read -r backups sessions load_s join_s received_bytes received_keys; do
  awk -v b="$backups" -v n="$sessions" -v l="$load_s" -v j="$join_s" -v rb="$received_bytes" -v rk="$received_keys" 'BEGIN {
    printf "%-8s %10d %10.2f %10.2f %13.1f %10.1f %12d\n", b, n, l, j, rb / 1048576, rb / 1048576 / j, rk }'
done <"$handoffs"
