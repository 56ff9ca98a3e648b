#!/usr/bin/env bash
# What shadow traffic costs: the shadow thread's CPU per copy, with every user's calls of
# bench/run.sh's experiment copied to a shadow (`shadow.sample: 1.0`, the other defaults;
# the shadow is the first backend), under wrk on loopback. Throughput and latency at 10%
# and 100% against no shadow are bench/ab.sh's, same run (see bench/README.md, "Shadow
# traffic").
#
#   bench/shadow.sh                   # DURATION=5 ROUNDS=3; COHORT=BINARY to skip the build
#
# Each round: wrk -t1 -c64 for DURATION s; the shadow thread's user + system ticks
# (/proc/PID/task/TID/stat) before and after, divided by the copies it finished in between
# (`cohort_shadow_requests_total` of agree, disagree, error and timeout), the copies
# skipped for want of a permit, and cohort's RSS after each round.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}

. bench/common.sh
need_nginx_and_wrk
[ -n "${COHORT:-}" ] || cargo build --release --quiet --bin cohort

make_work
start_backends
write_users_lua
PORT=18400
start_candidate "shadow=${COHORT:-target/release/cohort} shadow=1.0" $PORT 1
pid=$cand_pid
# The shadow thread starts with the first copy.
curl -s -o /dev/null -H 'x-user-id: warm-up' -d '{"inputs": [[5.1, 3.5, 1.4, 0.2]]}' "http://127.0.0.1:$PORT/invocations"
sleep 0.5
tid=$(thread_id "$pid" cohort-shadow)
[ -n "$tid" ] || { echo "no cohort-shadow thread in $pid" >&2; exit 1; }

ticks() { awk '{print $14 + $15}' "/proc/$pid/task/$tid/stat"; }
results() { # "done skipped_inflight": copies finished, and copies without a permit
  curl -s "http://127.0.0.1:$((PORT + 1))/metrics" |
    awk '/^cohort_shadow_requests_total\{/ {
      if ($0 ~ /result="(agree|disagree|error|timeout)"/) d += $NF
      if ($0 ~ /result="skipped_inflight"/) s += $NF
    } END {print d + 0, s + 0}'
}
hz=$(getconf CLK_TCK)

echo "shadow thread CPU per copy (wrk -t1 -c$CONNS, ${DURATION} s a round, sample 1.0, 1 worker)"
for round in $(seq "$ROUNDS"); do
  t0=$(ticks); read -r d0 s0 <<<"$(results)"
  rps=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$work/users.lua" "http://127.0.0.1:$PORT/invocations" |
    awk '/Requests\/sec/ {print $2}')
  # Let the thread finish the copies in flight before reading its count.
  sleep 1
  t1=$(ticks); read -r d1 s1 <<<"$(results)"
  rss=$(awk '$1 == "VmRSS:" {print $2}' "/proc/$pid/status")
  awk -v t=$((t1 - t0)) -v hz="$hz" -v n=$((d1 - d0)) -v s=$((s1 - s0)) -v r="$rps" -v k="$round" -v m="$rss" 'BEGIN {
    printf "round %d: %s req/s, %d copies compared, %d without a permit, %.2f µs of shadow CPU each, RSS %.1f MiB\n", k, r, n, s, (n > 0 ? t / hz * 1e6 / n : 0), m / 1024 }'
done
curl -s "http://127.0.0.1:$((PORT + 1))/metrics" | grep -E '^cohort_shadow_requests_total' | grep -v ' 0$' || true
