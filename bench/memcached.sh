#!/usr/bin/env bash
# Throughput of scd's memcached front end against memcached 1.6 on this machine, both measured in
# the same run (issue 5): set and get of 512-byte values (a session) on keys drawn uniformly
# from 100 000, 50 connections, text and binary protocol, without pipelining and with 16
# requests in flight per connection. Several rounds with the two servers interleaved (the order
# alternates each round). Prints the median ops/s of each, the median of the per-round ratios
# scd/memcached and their range, and each server's CPU time per request. Goal: >= 1.0 everywhere.
#
#   bash bench/memcached.sh                  defaults: 3 rounds of 200000 requests per test
#   ROUNDS=5 REQUESTS=500000 bash bench/memcached.sh
#   SERVER_THREADS=1 bash bench/memcached.sh  memcached -t 1 and scd --client-threads 1
#   MCLOAD_THREADS=2 bash bench/memcached.sh  the load generator on two threads
#
# Both servers get SERVER_THREADS worker threads, by default the number of cores (2 here), given
# explicitly to each (memcached -t, scd --client-threads) so that they always run alike whatever
# their defaults (memcached's is 4, scd's half the CPUs). One worker per core: more than the cores
# only adds switches (memcached -t 4 was no faster than -t 2 here), fewer leaves a core idle while
# the generator waits (memcached -t 1 served a third fewer unpipelined requests). memcached gets
# -m 1024 so that nothing is evicted; scd is otherwise at its defaults (single node, no bound on
# memory). Before the first round every key is set once on both servers, so every get hits.
#
# The load generator is bench/mcload (Rust, tokio, built here into target/mcload): Debian's
# libmemcached-tools do not fit (memcslap has no value size or key space; memaslap cannot
# pipeline and counts its warm-up sets into the get rate). To show that mcload is not the
# bottleneck, each round also runs Debian's memaslap against memcached with the same set load
# without pipelining, and the medians of both generators are printed side by side. Nothing is
# pinned to a core: the generator shares the machine with the server, as a web server would.
# SCD_BINARY=path uses that scd binary instead of building one. Not run in CI.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

rounds=${ROUNDS:-3}
requests=${REQUESTS:-200000}
server_threads=${SERVER_THREADS:-$(nproc)}
mcload_threads=${MCLOAD_THREADS:-1}
clients=50
value_bytes=512
keyspace=100000
pipelines="1 16"

require_tools memcached redis-cli cargo
build_scd
say "cargo build --release --manifest-path bench/mcload/Cargo.toml --target-dir target/mcload"
(cd "$bench_root" && cargo build --release --manifest-path bench/mcload/Cargo.toml \
  --target-dir target/mcload) >&2
mcload="$bench_root/target/mcload/release/mcload"

start_memcached "$server_threads"
node_port scd_memcached_port
start_scd_node memcached-bench --memcached "127.0.0.1:$scd_memcached_port" \
  --client-threads "$server_threads"
scd_pid=${node_pid[memcached-bench]}
wait_for_memcached "$scd_memcached_port"
say "memcached on $memcached_port (pid $memcached_pid), scd on $scd_memcached_port (pid $scd_pid)"

results="$work_dir/results"
: >"$results"
# mcload_run PORT PROTOCOL TEST PIPELINE [REQUESTS]: one mcload run; prints its output line.
mcload_run() {
  "$mcload" --server "127.0.0.1:$1" --protocol "$2" --test "$3" --pipeline "$4" \
    --connections "$clients" --requests "${5:-$requests}" --value-bytes "$value_bytes" \
    --keyspace "$keyspace" --threads "$mcload_threads"
}

# bench TARGET PORT PID PROTOCOL TEST PIPELINE ROUND: one run, appending
# "target protocol test pipeline ops_s round server_cpu_us_per_op".
bench() {
  local target=$1 port=$2 pid=$3 protocol=$4 test=$5 pipeline=$6 round=$7 line ticks_before ticks_after
  ticks_before=$(cpu_ticks "$pid")
  line=$(mcload_run "$port" "$protocol" "$test" "$pipeline")
  ticks_after=$(cpu_ticks "$pid")
  # Every get must hit (the key space was filled): a miss would make the two servers' work differ.
  if [[ $line != *" misses=0"* ]]; then
    echo "unexpected misses against $target: $line" >&2
    exit 1
  fi
  awk -v line="$line" -v target="$target" -v round="$round" -v ticks=$((ticks_after - ticks_before)) \
    -v hz="$clock_ticks_per_second" -v requests="$requests" 'BEGIN {
      split(line, fields, " ")
      for (i in fields) { split(fields[i], pair, "="); value[pair[1]] = pair[2] }
      printf "%s %s %s %s %s %s %.2f\n", target, value["protocol"], value["test"], value["pipeline"],
        value["ops_per_second"], round, ticks * 1000000 / hz / requests
    }' >>"$results"
}

# memaslap_set PROTOCOL_FLAG: Debian's memaslap against memcached, sets of the same size over 50
# connections and about the same number of keys (a window of 2048 per connection), no pipelining;
# prints its ops/s.
memaslap_config="$work_dir/memaslap.cfg"
printf 'key\n16 16 1\nvalue\n%s %s 1\ncmd\n0 1\n' "$value_bytes" "$value_bytes" >"$memaslap_config"
memaslap_set() {
  memcaslap -s "127.0.0.1:$memcached_port" -T "$mcload_threads" -c "$clients" -X "$value_bytes" \
    -F "$memaslap_config" -x "$requests" -w 2k "$@" 2>&1 | awk '/TPS:/ { print $7 }'
}

say "filling the key space ($keyspace keys of $value_bytes bytes) on both servers"
mcload_run "$memcached_port" text fill 16 >/dev/null
mcload_run "$scd_memcached_port" text fill 16 >/dev/null

for round in $(seq 1 "$rounds"); do
  for pipeline in $pipelines; do
    for protocol in text binary; do
      for test in set get; do
        if ((round % 2)); then order="memcached scd"; else order="scd memcached"; fi
        for target in $order; do
          if [[ $target == memcached ]]; then
            port=$memcached_port pid=$memcached_pid
          else
            port=$scd_memcached_port pid=$scd_pid
          fi
          say "round $round/$rounds: $target, $protocol $test, pipeline $pipeline"
          bench "$target" "$port" "$pid" "$protocol" "$test" "$pipeline" "$round"
        done
      done
    done
  done
  if command -v memcaslap >/dev/null 2>&1; then
    say "round $round/$rounds: generator check, memaslap against memcached"
    echo "memaslap text $(memaslap_set) $round" >>"$work_dir/generator"
    echo "memaslap binary $(memaslap_set -B) $round" >>"$work_dir/generator"
  fi
done

echo
machine_summary
echo "memcached $(memcached -V | awk '{ print $2 }') -t $server_threads -m 1024; scd --client-threads $server_threads --memcached"
echo "command: $mcload --server 127.0.0.1:PORT --protocol {text,binary} --test {set,get} --pipeline {${pipelines// /,}} --connections $clients --requests $requests --value-bytes $value_bytes --keyspace $keyspace --threads $mcload_threads (after --test fill; median of $rounds rounds, interleaved)"
echo
printf '%-7s %-4s %-8s %14s %12s %10s %12s %5s %-6s %13s\n' protocol test pipeline memcached_ops_s scd_ops_s scd/mc "round range" goal "" "cpu_us/op mc/scd"
goal=1.0
for pipeline in $pipelines; do
  for protocol in text binary; do
    for test in set get; do
      select_rows() {
        awk -v protocol="$protocol" -v test="$test" -v pipeline="$pipeline" \
          '$2 == protocol && $3 == test && $4 == pipeline' "$results"
      }
      memcached_rps=$(select_rows | awk '$1 == "memcached" { print $5 }' | median)
      scd_rps=$(select_rows | awk '$1 == "scd" { print $5 }' | median)
      memcached_cpu=$(select_rows | awk '$1 == "memcached" { print $7 }' | median)
      scd_cpu=$(select_rows | awk '$1 == "scd" { print $7 }' | median)
      # The median of the per-round ratios: each round's two runs are next to each other in time,
      # so background load drifting over the run skews this less than a ratio of medians.
      ratios=$(select_rows | awk '{ rps[$1, $6] = $5; rounds[$6] = 1 }
        END { for (round in rounds) print rps["scd", round] / rps["memcached", round] }')
      ratio=$(echo "$ratios" | median | awk '{ printf "%.3f", $1 }')
      range=$(echo "$ratios" | sort -g | awk 'NR == 1 { low = $1 } { high = $1 } END { printf "%.2f-%.2f", low, high }')
      verdict=$(awk -v r="$ratio" -v g="$goal" 'BEGIN { print (r >= g) ? "met" : "MISSED" }')
      if ((pipeline == 1)); then label=none; else label="$pipeline"; fi
      printf '%-7s %-4s %-8s %14.0f %12.0f %10s %12s %5s %-6s %13s\n' "$protocol" "$test" "$label" \
        "$memcached_rps" "$scd_rps" "$ratio" "$range" ">=$goal" "$verdict" "$memcached_cpu/$scd_cpu"
    done
  done
done
if [[ -s $work_dir/generator ]]; then
  echo
  echo "generator check (memcached, set, no pipelining, median ops/s): the generator of this table"
  echo "should reach at least what Debian's memaslap reaches against the same memcached:"
  for protocol in text binary; do
    mcload_rps=$(awk -v protocol="$protocol" '$1 == "memcached" && $2 == protocol && $3 == "set" && $4 == 1 { print $5 }' "$results" | median)
    memaslap_rps=$(awk -v protocol="$protocol" '$2 == protocol { print $3 }' "$work_dir/generator" | median)
    printf '  %-6s mcload %8.0f   memaslap %8.0f   (memcaslap -T %s -c %s -X %s -w 2k -x %s%s)\n' \
      "$protocol" "$mcload_rps" "$memaslap_rps" "$mcload_threads" "$clients" "$value_bytes" "$requests" \
      "$([[ $protocol == binary ]] && echo ' -B')"
  done
fi
echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
