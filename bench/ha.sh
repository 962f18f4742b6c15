#!/usr/bin/env bash
# The cost of high availability (issue 4), measured in one run:
#
# 1. Throughput: three 2-node scd clusters side by side, --backups 0, --backups 1 --write-mode
#    through, --backups 1 --write-mode delayed, under the same redis-benchmark load sent to the first
#    node of each (redis-benchmark -t set,get -c 50 -d 512 -r 100000, without pipelining and with
#    -P 16), several rounds with the order of the three rotating each round. Prints the median ops/s
#    of each and the median and range of the per-round ratios through/0 (goal >= 0.90) and
#    delayed/0 (goal >= 0.95). SET and GET run as separate redis-benchmark invocations, so that
#    each also gets the CPU time both nodes of its cluster spent on it (user + system, from
#    /proc/PID/stat) per request: the median is printed beside the ratio, showing how much of
#    the two shared cores a copy on the backup takes.
#    The same rounds also load redis-server alone and redis-server with one replica (--replicaof,
#    on the same machine) and print the ratio replica/alone: no goal, a reference for what keeping
#    a second copy on the same two cores costs Redis (its replication is asynchronous, like
#    --write-mode delayed).
# 2. Memory of primary + backup per session: 100 000 sessions of 1-4 KB with EX 1440 (the generator
#    of bench/memory.sh) loaded with redis-cli --pipe into redis-server with one replica
#    (--replicaof) and into a 2-node scd cluster with --backups 1 (write-through), each measured once
#    the copy has caught up (redis: INFO replication offsets equal; scd: /cluster shows no
#    under-replicated partition and both nodes hold every session). Bytes per session = the sum over
#    both processes of (after - before) / sessions, from INFO used_memory and from RSS. Prints the
#    ratio scd/redis (goal <= 1.0, the single-node goal of issue 2).
#
#   bash bench/ha.sh                                   defaults: 3 rounds of 200000 requests, 100000 sessions
#   ROUNDS=5 REQUESTS=500000 SESSIONS=200000 bash bench/ha.sh
#   PARTS=throughput bash bench/ha.sh                  only part 1 (PARTS=memory: only part 2)
#
# Nothing is pinned to a core: redis-benchmark and both nodes of a cluster share the machine.
# SCD_BINARY=path uses that scd binary instead of building one. Not run in CI.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

rounds=${ROUNDS:-3}
requests=${REQUESTS:-200000}
sessions=${SESSIONS:-100000}
parts=${PARTS:-throughput,memory}
clients=50
value_bytes=512
keyspace=100000
modes="zero through delayed"

require_tools redis-server redis-cli redis-benchmark perl python3 curl
build_scd

# --- 1. Throughput ---------------------------------------------------------------------------

# mode_args MODE: the scd run flags of a mode.
mode_args() {
  case $1 in
  zero) echo "--backups 0" ;;
  through) echo "--backups 1 --write-mode through" ;;
  delayed) echo "--backups 1 --write-mode delayed" ;;
  esac
}

# Appended to by bench_set_get (lib.sh): target pipeline test ops_s round cpu_us_per_request.
results="$work_dir/throughput"
: >"$results"

# wait_for_redis_replica PRIMARY_PORT REPLICA_PORT: until the replica's link is up and its offset
# equals the primary's (120 s at most).
wait_for_redis_replica() {
  local primary_offset replica_info
  for _ in $(seq 1 1200); do
    primary_offset=$(redis-cli -p "$1" INFO replication | tr -d '\r' | awk -F: '$1 == "master_repl_offset" { print $2 }')
    replica_info=$(redis-cli -p "$2" INFO replication | tr -d '\r')
    if grep -q '^master_link_status:up$' <<<"$replica_info" &&
      grep -qx "slave_repl_offset:$primary_offset" <<<"$replica_info"; then
      return
    fi
    sleep 0.1
  done
  echo "the redis replica did not catch up within 120 s" >&2
  exit 1
}

# start_redis_replica PRIMARY_PORT NAME: starts a replica of the redis-server on PRIMARY_PORT and
# waits until it has caught up; sets replica_port and replica_pid.
start_redis_replica() {
  node_port replica_port
  redis-server --port "$replica_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
    --replicaof 127.0.0.1 "$1" --logfile "$work_dir/$2.log" --dir "$work_dir" --dbfilename "$2.rdb" &
  replica_pid=$!
  started_pids+=("$replica_pid")
  wait_for_ping "$replica_port"
  wait_for_redis_replica "$1" "$replica_port"
}

measure_throughput() {
  local mode
  # All three clusters run for the whole part, so every round measures each under the same
  # background; an idle cluster costs only its heartbeats.
  for mode in $modes; do
    # shellcheck disable=SC2046 # the mode's flags are separate words
    start_scd_node "${mode}1" --cluster "ha-$mode" $(mode_args "$mode")
    # shellcheck disable=SC2046
    start_scd_node "${mode}2" --cluster "ha-$mode" $(mode_args "$mode") \
      --join "127.0.0.1:${node_peer_port[${mode}1]}"
  done
  for mode in $modes; do
    wait_for_cluster_settled "${mode}1" "${mode}2"
    say "cluster $mode: $(mode_args "$mode"), load on port ${node_client_port[${mode}1]}"
  done
  # The reference: redis-server alone, and another with one replica.
  local -A port=() pids=()
  local mode
  for mode in $modes; do
    port[$mode]=${node_client_port[${mode}1]}
    pids[$mode]="${node_pid[${mode}1]} ${node_pid[${mode}2]}"
  done
  start_redis
  port[redis]=$redis_port pids[redis]=$redis_pid
  start_redis
  start_redis_replica "$redis_port" throughput-replica
  port[replica]=$redis_port pids[replica]="$redis_pid $replica_pid"
  say "redis-server alone on ${port[redis]}, with a replica on ${port[replica]}"

  local round pipeline target shift
  local -a targets=(zero through delayed redis replica) order
  for round in $(seq 1 "$rounds"); do
    for pipeline in 1 16; do
      # Each target goes first in turn.
      shift=$(((round - 1) % ${#targets[@]}))
      order=("${targets[@]:shift}" "${targets[@]:0:shift}")
      for target in "${order[@]}"; do
        say "round $round/$rounds: $target, -P $pipeline"
        # shellcheck disable=SC2086 # the pids are separate words
        bench_set_get "$target" "${port[$target]}" "$pipeline" "$round" ${pids[$target]}
      done
    done
  done

  for mode in $modes; do
    stop_scd_node "${mode}1"
    stop_scd_node "${mode}2"
  done
  # shellcheck disable=SC2086
  kill ${pids[redis]} ${pids[replica]}
  # shellcheck disable=SC2086
  wait ${pids[redis]} ${pids[replica]} 2>/dev/null || true
  for target in redis replica; do
    for pid in ${pids[$target]}; do forget_pid "$pid"; done
  done
}

# round_ratios TARGET BASE PIPELINE TEST: prints "median low-high" of the per-round ratios
# TARGET/BASE of ops/s. The runs of one round are next to each other in time, so load drifting
# over the run skews them less than a ratio of medians would.
round_ratios() {
  awk -v m="$1" -v b="$2" -v p="$3" -v t="$4" '
    $2 == p && $3 == t { rps[$1, $5] = $4; rounds[$5] = 1 }
    END { for (r in rounds) print rps[m, r] / rps[b, r] }' "$results" >"$work_dir/ratios"
  printf '%s %s\n' "$(median <"$work_dir/ratios" | awk '{ printf "%.3f", $1 }')" \
    "$(sort -g "$work_dir/ratios" | awk 'NR == 1 { low = $1 } { high = $1 } END { printf "%.2f-%.2f", low, high }')"
}

report_throughput() {
  echo "command: redis-benchmark -t set,get -c $clients -d $value_bytes -r $keyspace -n $requests -P {1,16} --csv" \
    "against the first node of each 2-node cluster (median of $rounds rounds, order rotating)"
  echo
  printf '%-6s %-9s %11s %11s %11s %-9s %9s %11s %6s %-7s %s\n' \
    test pipeline "0_ops_s" through_ops delayed_ops ratio median "round range" goal verdict \
    "cpu_us/op 0/mode"
  local pipeline test label mode goal ratio range verdict
  for pipeline in 1 16; do
    for test in SET GET; do
      if ((pipeline == 1)); then label="none"; else label="-P 16"; fi
      declare -A rps=() cpu=()
      for mode in $modes; do
        rps[$mode]=$(set_get_median "$mode" "$pipeline" "$test" 4)
        cpu[$mode]=$(set_get_median "$mode" "$pipeline" "$test" 6)
      done
      for mode in through delayed; do
        if [[ $mode == through ]]; then goal=0.90; else goal=0.95; fi
        read -r ratio range <<<"$(round_ratios "$mode" zero "$pipeline" "$test")"
        verdict=$(awk -v r="$ratio" -v g="$goal" 'BEGIN { print (r >= g) ? "met" : "MISSED" }')
        printf '%-6s %-9s %11.0f %11.0f %11.0f %-9s %9s %11s %6s %-7s %.2f/%.2f\n' "$test" "$label" \
          "${rps[zero]}" "${rps[through]}" "${rps[delayed]}" "$mode/0" "$ratio" "$range" ">=$goal" \
          "$verdict" "${cpu[zero]}" "${cpu[$mode]}"
      done
    done
  done
  echo
  echo "reference, no goal: redis-server with one replica against redis-server alone, the same load" \
    "and rounds (cpu: both redis processes)"
  echo
  printf '%-6s %-9s %11s %11s %-9s %9s %11s %s\n' \
    test pipeline alone_ops replica_ops ratio median "round range" "cpu_us/op alone/replica"
  for pipeline in 1 16; do
    for test in SET GET; do
      if ((pipeline == 1)); then label="none"; else label="-P 16"; fi
      read -r ratio range <<<"$(round_ratios replica redis "$pipeline" "$test")"
      printf '%-6s %-9s %11.0f %11.0f %-9s %9s %11s %.2f/%.2f\n' "$test" "$label" \
        "$(set_get_median redis "$pipeline" "$test" 4)" "$(set_get_median replica "$pipeline" "$test" 4)" \
        replica/alone "$ratio" "$range" \
        "$(set_get_median redis "$pipeline" "$test" 6)" "$(set_get_median replica "$pipeline" "$test" 6)"
    done
  done
}

# --- 2. Memory of primary + backup -------------------------------------------------------------

# wait_for_scd_copies NAME1 NAME2: until the cluster is settled and both nodes hold every session
# (with 2 nodes and --backups 1 each node has all of them, as primary or backup; 120 s at most).
wait_for_scd_copies() {
  for _ in $(seq 1 1200); do
    if cluster_settled "$1" "$2" && [[ $(node_sessions "$1") == "$sessions" && $(node_sessions "$2") == "$sessions" ]]; then
      return
    fi
    sleep 0.1
  done
  echo "scd nodes $1 and $2 did not both hold $sessions sessions within 120 s" >&2
  exit 1
}

# load_sessions PORT NAME: pipes the sessions into the server on PORT and checks every reply.
load_sessions() {
  redis-cli -p "$1" --pipe <"$work_dir/sessions.resp" >"$work_dir/$2.pipe" 2>&1
  grep -q "errors: 0, replies: $sessions" "$work_dir/$2.pipe" || {
    cat "$work_dir/$2.pipe" >&2
    exit 1
  }
}

measure_memory() {
  say "generating $sessions sessions of 1-4 KB"
  payload_bytes=$(generate_sessions "$sessions" "$work_dir/sessions.resp")

  # redis-server with one replica. start_redis gives the primary; the replica is started here.
  start_redis
  start_redis_replica "$redis_port" redis-replica
  say "redis primary on $redis_port (pid $redis_pid), replica on $replica_port (pid $replica_pid)"
  local before_used before_rss after_used after_rss
  before_used=$(($(used_memory "$redis_port") + $(used_memory "$replica_port")))
  before_rss=$(($(rss_bytes "$redis_pid") + $(rss_bytes "$replica_pid")))
  say "loading into the redis primary"
  load_sessions "$redis_port" redis
  wait_for_redis_replica "$redis_port" "$replica_port"
  if [[ $(redis-cli -p "$replica_port" DBSIZE) != "$sessions" ]]; then
    echo "the redis replica does not hold $sessions keys" >&2
    exit 1
  fi
  after_used=$(($(used_memory "$redis_port") + $(used_memory "$replica_port")))
  after_rss=$(($(rss_bytes "$redis_pid") + $(rss_bytes "$replica_pid")))
  redis_memory="$(((after_used - before_used) / sessions)) $(((after_rss - before_rss) / sessions)) $after_used $after_rss"
  # Both stopped before scd starts, so the machine's memory is not shared between the two.
  kill "$redis_pid" "$replica_pid"
  wait "$redis_pid" "$replica_pid" 2>/dev/null || true
  forget_pid "$redis_pid"
  forget_pid "$replica_pid"

  # scd: 2 nodes at the defaults (--backups 1, write-through).
  start_scd_node memory1 --cluster ha-memory
  start_scd_node memory2 --cluster ha-memory --join "127.0.0.1:${node_peer_port[memory1]}"
  wait_for_cluster_settled memory1 memory2
  local port1=${node_client_port[memory1]} port2=${node_client_port[memory2]}
  local pid1=${node_pid[memory1]} pid2=${node_pid[memory2]}
  say "scd nodes on $port1 (pid $pid1) and $port2 (pid $pid2)"
  before_used=$(($(used_memory "$port1") + $(used_memory "$port2")))
  before_rss=$(($(rss_bytes "$pid1") + $(rss_bytes "$pid2")))
  say "loading into scd node memory1"
  load_sessions "$port1" scd
  wait_for_scd_copies memory1 memory2
  after_used=$(($(used_memory "$port1") + $(used_memory "$port2")))
  after_rss=$(($(rss_bytes "$pid1") + $(rss_bytes "$pid2")))
  scd_memory="$(((after_used - before_used) / sessions)) $(((after_rss - before_rss) / sessions)) $after_used $after_rss"
  stop_scd_node memory1
  stop_scd_node memory2
}

report_memory() {
  local redis_used redis_rss redis_used_total redis_rss_total scd_used scd_rss scd_used_total scd_rss_total
  read -r redis_used redis_rss redis_used_total redis_rss_total <<<"$redis_memory"
  read -r scd_used scd_rss scd_used_total scd_rss_total <<<"$scd_memory"
  echo "load: $sessions x SET PHPREDIS_SESSION:<26 digits> <1-4 KB> EX 1440 via redis-cli --pipe;" \
    "mean value $((payload_bytes / sessions)) bytes; redis-server + 1 replica vs 2 scd nodes --backups 1"
  echo
  printf '%-36s %12s %12s %9s %6s\n' "bytes per session, both processes" redis+replica scd-2-nodes scd/redis goal
  local row label redis_value scd_value ratio verdict
  for row in "INFO used_memory:$redis_used:$scd_used" "RSS (VmRSS):$redis_rss:$scd_rss"; do
    IFS=: read -r label redis_value scd_value <<<"$row"
    ratio=$(awk -v a="$scd_value" -v b="$redis_value" 'BEGIN { printf "%.3f", a / b }')
    verdict=$(awk -v r="$ratio" 'BEGIN { print (r <= 1.0) ? "met" : "MISSED" }')
    printf '%-36s %12s %12s %9s %6s %s\n' "$label" "$redis_value" "$scd_value" "$ratio" "<=1.0" "$verdict"
  done
  echo
  echo "totals after loading (both processes): redis used_memory $redis_used_total, RSS $redis_rss_total;" \
    "scd used_memory $scd_used_total, RSS $scd_rss_total"
}

if [[ ,$parts, == *,throughput,* ]]; then measure_throughput; fi
if [[ ,$parts, == *,memory,* ]]; then measure_memory; fi

echo
machine_summary
echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ ,$parts, == *,throughput,* ]]; then
  echo
  echo "== HA overhead: throughput with backups against --backups 0 =="
  report_throughput
fi
if [[ ,$parts, == *,memory,* ]]; then
  echo
  echo "== memory of primary + backup per session =="
  report_memory
fi
