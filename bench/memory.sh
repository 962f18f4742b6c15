#!/usr/bin/env bash
# Memory per session of scd against redis-server, both measured in the same run: 100 000
# sessions of random size 1-4 KB (the same bytes for both), each written with SET ... EX 1440
# through redis-cli --pipe. Reports bytes per session from INFO used_memory and from the RSS
# (/proc/PID/status VmRSS), each minus the empty server's, and the ratios scd/redis.
# Goal (issue 2): <= 1.0.
#
#   bash bench/memory.sh                 100000 sessions
#   SESSIONS=20000 bash bench/memory.sh
#
# SCD_BINARY=path uses that scd binary instead of building one. Not run in CI.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

sessions=${SESSIONS:-100000}

require_tools redis-server redis-cli perl
build_scd

# The sessions as raw RESP, generated once with a fixed seed so both servers get the same bytes.
say "generating $sessions sessions of 1-4 KB"
payload_bytes=$(generate_sessions "$sessions" "$work_dir/sessions.resp")

start_redis
start_scd
say "redis-server on $redis_port (pid $redis_pid), scd on $scd_port (pid $scd_pid)"

# measure NAME PORT PID: loads the sessions, prints "name used_per_session rss_per_session".
measure() {
  local name=$1 port=$2 pid=$3
  local used_before rss_before used_after rss_after keys
  used_before=$(used_memory "$port")
  rss_before=$(rss_bytes "$pid")
  redis-cli -p "$port" --pipe <"$work_dir/sessions.resp" >"$work_dir/$name.pipe" 2>&1
  grep -q "errors: 0, replies: $sessions" "$work_dir/$name.pipe" || {
    cat "$work_dir/$name.pipe" >&2
    exit 1
  }
  keys=$(redis-cli -p "$port" DBSIZE)
  if [[ $keys != "$sessions" ]]; then
    echo "$name holds $keys keys, expected $sessions" >&2
    exit 1
  fi
  used_after=$(used_memory "$port")
  rss_after=$(rss_bytes "$pid")
  awk -v name="$name" -v ub="$used_before" -v ua="$used_after" -v rb="$rss_before" -v ra="$rss_after" -v n="$sessions" \
    'BEGIN { printf "%s %.0f %.0f %.0f %.0f\n", name, (ua - ub) / n, (ra - rb) / n, ua, ra }'
}

say "loading into redis-server"
redis_line=$(measure redis "$redis_port" "$redis_pid")
say "loading into scd"
scd_line=$(measure scd "$scd_port" "$scd_pid")

read -r _ redis_used redis_rss redis_used_total redis_rss_total <<<"$redis_line"
read -r _ scd_used scd_rss scd_used_total scd_rss_total <<<"$scd_line"

echo
machine_summary
echo "load: $sessions x SET PHPREDIS_SESSION:<26 digits> <1-4 KB> EX 1440 via redis-cli --pipe;" \
  "mean value $((payload_bytes / sessions)) bytes"
echo
printf '%-28s %12s %12s %9s %6s\n' "bytes per session" redis scd scd/redis goal
for row in "INFO used_memory:$redis_used:$scd_used" "RSS (VmRSS):$redis_rss:$scd_rss"; do
  IFS=: read -r label redis_value scd_value <<<"$row"
  ratio=$(awk -v a="$scd_value" -v b="$redis_value" 'BEGIN { printf "%.3f", a / b }')
  verdict=$(awk -v r="$ratio" 'BEGIN { print (r <= 1.0) ? "met" : "MISSED" }')
  printf '%-28s %12s %12s %9s %6s %s\n' "$label" "$redis_value" "$scd_value" "$ratio" "<=1.0" "$verdict"
done
echo
echo "totals after loading: redis used_memory $redis_used_total, RSS $redis_rss_total; scd used_memory $scd_used_total, RSS $scd_rss_total"
