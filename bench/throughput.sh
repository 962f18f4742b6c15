#!/usr/bin/env bash
# Throughput of scd against redis-server on this machine, both measured in the same run:
# redis-benchmark -t set,get -c 50 -d 512 -r 100000, without pipelining and with -P 16, several
# rounds with the two servers interleaved (the order alternates each round). Prints the median
# ops/s of each, the median of the per-round ratios scd/redis and their range, and the median CPU
# time (user + system, from /proc/PID/stat) each server spent per request, which varies less
# than ops/s on a shared machine. Goals (issue 2): >= 1.0 without pipelining, >= 0.9 with -P 16.
#
#   bash bench/throughput.sh                 defaults: 3 rounds of 200000 requests per test
#   ROUNDS=5 REQUESTS=500000 bash bench/throughput.sh
#
# Nothing is pinned to a core: the load generator shares the machine with the server under test,
# as it would on a web server running scd beside PHP. SCD_BINARY=path uses that scd binary
# instead of building one. Not run in CI.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

rounds=${ROUNDS:-3}
requests=${REQUESTS:-200000}
clients=50
value_bytes=512
keyspace=100000

require_tools redis-server redis-benchmark redis-cli
build_scd
start_redis
start_scd
say "redis-server on $redis_port (pid $redis_pid), scd on $scd_port (pid $scd_pid)"

results="$work_dir/results"
: >"$results"

for round in $(seq 1 "$rounds"); do
  for pipeline in 1 16; do
    if ((round % 2)); then order="redis scd"; else order="scd redis"; fi
    for target in $order; do
      if [[ $target == redis ]]; then port=$redis_port pid=$redis_pid; else port=$scd_port pid=$scd_pid; fi
      say "round $round/$rounds: $target, -P $pipeline"
      bench_set_get "$target" "$port" "$pipeline" "$round" "$pid"
    done
  done
done

echo
machine_summary
echo "command: redis-benchmark -t set,get -c $clients -d $value_bytes -r $keyspace -n $requests -P {1,16} --csv (median of $rounds rounds, interleaved)"
echo
printf '%-6s %-10s %14s %14s %9s %13s %6s %-7s %s\n' test pipeline redis_ops_s scd_ops_s scd/redis \
  "round range" goal verdict "cpu_us/op redis/scd"
for pipeline in 1 16; do
  for test in SET GET; do
    redis_rps=$(set_get_median redis "$pipeline" "$test" 4)
    scd_rps=$(set_get_median scd "$pipeline" "$test" 4)
    if ((pipeline == 1)); then goal=1.0; label="none"; else goal=0.9; label="-P 16"; fi
    # The median of the per-round ratios: each round's two runs are next to each other in time,
    # so background load drifting over the run skews this less than a ratio of medians.
    ratio=$(awk -v pipeline="$pipeline" -v test="$test" '
      $2 == pipeline && $3 == test { rps[$1, $5] = $4; rounds[$5] = 1 }
      END { for (round in rounds) print rps["scd", round] / rps["redis", round] }' "$results" |
      median | awk '{ printf "%.3f", $1 }')
    verdict=$(awk -v r="$ratio" -v g="$goal" 'BEGIN { print (r >= g) ? "met" : "MISSED" }')
    # The lowest and highest scd/redis of a single round, to show the noise.
    range=$(awk -v pipeline="$pipeline" -v test="$test" '
      $2 == pipeline && $3 == test { rps[$1, $5] = $4; rounds[$5] = 1 }
      END {
        for (round in rounds) {
          ratio = rps["scd", round] / rps["redis", round]
          if (low == "" || ratio < low) low = ratio
          if (high == "" || ratio > high) high = ratio
        }
        printf "%.2f-%.2f", low, high
      }' "$results")
    printf '%-6s %-10s %14.0f %14.0f %9s %13s %6s %-7s %.2f/%.2f\n' "$test" "$label" "$redis_rps" \
      "$scd_rps" "$ratio" "$range" ">=$goal" "$verdict" "$(set_get_median redis "$pipeline" "$test" 6)" \
      "$(set_get_median scd "$pipeline" "$test" 6)"
  done
done
