#!/usr/bin/env bash
# What model monitoring costs: the monitor thread's CPU per captured call, with every call
# of bench/run.sh's experiment captured (`monitor.sample: 1.0`), under wrk on loopback.
# Throughput and latency at 5% and 100% against monitoring off are bench/ab.sh's, same
# run (see bench/README.md, "Model monitoring").
#
#   bench/monitor.sh                  # DURATION=5 ROUNDS=3
#
# Each round: wrk -t1 -c64 for DURATION s; the monitor thread's user + system ticks
# (/proc/PID/task/TID/stat) before and after, divided by the calls it read in between
# (`cohort_monitor_captured_total` plus the unreadable ones, from /metrics), and cohort's
# RSS after each round: under sustained capture it must stay flat (the windows keep bin
# counts and bounded reservoirs, not rows). The body is bench/run.sh's: one row of four
# features, and one prediction back.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}

. bench/common.sh
need_nginx_and_wrk
cargo build --release --quiet --bin cohort

make_work
start_backends
write_users_lua
PORT=18300
start_candidate "mon=target/release/cohort monitor=1.0" $PORT 1
pid=$cand_pid
tid=$(thread_id "$pid" cohort-monitor)
[ -n "$tid" ] || { echo "no cohort-monitor thread in $pid" >&2; exit 1; }

ticks() { awk '{print $14 + $15}' "/proc/$pid/task/$tid/stat"; }
read_calls() { # captured + unreadable requests, summed over the series
  curl -s "http://127.0.0.1:$((PORT + 1))/metrics" |
    awk '/^cohort_monitor_captured_total\{/ || /^cohort_monitor_unreadable_total\{.*side="request"/ {s += $NF} END {print s + 0}'
}
hz=$(getconf CLK_TCK)

echo "monitor thread CPU per captured call (wrk -t1 -c$CONNS, ${DURATION} s a round, sample 1.0, 1 worker)"
for round in $(seq "$ROUNDS"); do
  t0=$(ticks); c0=$(read_calls)
  rps=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$work/users.lua" "http://127.0.0.1:$PORT/invocations" |
    awk '/Requests\/sec/ {print $2}')
  # Let the thread drain what is queued before reading its count.
  sleep 1
  t1=$(ticks); c1=$(read_calls)
  calls=$((c1 - c0))
  rss=$(awk '$1 == "VmRSS:" {print $2}' "/proc/$pid/status")
  awk -v t=$((t1 - t0)) -v hz="$hz" -v n="$calls" -v r="$rps" -v k="$round" -v m="$rss" 'BEGIN {
    printf "round %d: %s req/s, %d calls read, %.2f µs of monitor CPU each, RSS %.1f MiB\n", k, r, n, (n > 0 ? t / hz * 1e6 / n : 0), m / 1024 }'
done
curl -s "http://127.0.0.1:$((PORT + 1))/metrics" | grep -E '^cohort_monitor_(skipped|unreadable)' || true
