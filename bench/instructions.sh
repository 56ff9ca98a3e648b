#!/usr/bin/env bash
# User-space instructions per request of cohort (event log on and off) and of the floor,
# counted by valgrind's callgrind: on a shared, noisy machine the one measure of
# per-request work that does not move from run to run. See bench/README.md, "Where the
# time goes".
#
#   bench/instructions.sh            # cohort on, cohort off, floor; 1 worker each
#   TOP=25 bench/instructions.sh     # and each one's 25 costliest functions (self cost)
#   KEEP=/tmp/cg bench/instructions.sh  # keep the callgrind files there (callgrind_annotate)
#
# Loopback only; each measured load run lasts $DURATION s (callgrind slows the proxy
# ~50×, so a few thousand requests). Kernel time is not counted: see bench/run.sh for
# throughput, and `perf stat` for CPU time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10}
TOP=${TOP:-0}
KEEP=${KEEP:-}

. bench/common.sh
need_nginx_and_wrk
command -v valgrind >/dev/null || apt_install valgrind
cargo build --release --quiet --bin cohort --example floor

make_work

PORT=18160
start_backends
write_users_lua

cohort_config "$work/on.yaml" $PORT $((PORT + 1)) "events: { dir: $work/events, fsync: interval }"
cohort_config "$work/off.yaml" $PORT $((PORT + 1)) "events: { enabled: false }"

measure() { # name command...
  local name=$1; shift
  valgrind --tool=callgrind --callgrind-out-file="$work/$name.out" "$@" >"$work/$name.log" 2>&1 &
  local vg=$!
  pids+=($vg)
  for _ in $(seq 300); do curl -sf -o /dev/null "127.0.0.1:$PORT/" && break; sleep 0.1; done
  wrk -t1 -c64 -d3s -s "$work/users.lua" "http://127.0.0.1:$PORT/invocations" >/dev/null # warm up
  callgrind_control -z $vg >/dev/null 2>&1 # count from here
  wrk -t1 -c64 -d"${DURATION}s" -s "$work/users.lua" "http://127.0.0.1:$PORT/invocations" >"$work/$name.wrk"
  callgrind_control -d $vg >/dev/null 2>&1 # dump what was counted: $name.out.1
  kill $vg; wait $vg 2>/dev/null || true
  local requests file=$work/$name.out.1 total
  requests=$(awk '/requests in/ {print $1}' "$work/$name.wrk")
  total=$(callgrind_annotate "$file" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  printf '%-12s %8d requests  %8d instructions/request\n' "$name" "$requests" $((total / requests))
  if [ -n "$KEEP" ]; then
    mkdir -p "$KEEP"
    cp "$file" "$KEEP/$name.callgrind"
    echo "$requests" >"$KEEP/$name.requests"
  fi
  if [ "$TOP" -gt 0 ]; then
    callgrind_annotate --inclusive=no --threshold=100 "$file" 2>/dev/null |
      awk -v n="$requests" -v total="$total" -v top="$TOP" '/^ *[0-9,]+ \( *[0-9.]+%\)/ && !/PROGRAM TOTALS/ {
          # callgrind_annotate also lists thread and runtime entry frames with their
          # callees counted in: not one function'"'"'s own cost, so left out.
          c = $1; gsub(",", "", c); sub(/^ *[0-9,]+ \( *[0-9.]+%\) +/, "");
          if (c > total / 20 && $0 ~ /main|backtrace|clone|start_thread|thread_start|call_once|block_on|run_task|::run /) next;
          if (shown < top) { printf "    %7.0f %s\n", c / n, substr($0, 1, 110); shown++ } }'
  fi
}

echo "user-space instructions per request (callgrind, wrk -t1 -c64, ${DURATION} s, 1 worker)"
measure cohort "$ROOT/target/release/cohort" serve --config "$work/on.yaml" --workers 1
measure cohort_off "$ROOT/target/release/cohort" serve --config "$work/off.yaml" --workers 1
measure floor "$ROOT/target/release/examples/floor" 127.0.0.1:$PORT "http://127.0.0.1:$B1" "http://127.0.0.1:$B2" 1
