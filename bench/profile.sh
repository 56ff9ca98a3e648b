#!/usr/bin/env bash
# Where cohort's threads spend their time at saturation: a perf profile of each thread
# (the serving worker and the event writer), sampled while wrk loads cohort on loopback.
# See bench/README.md, "Where the time goes".
#
#   bench/profile.sh              # cohort, event log on, 1 worker; top 25 symbols a thread
#   TOP=40 EVENTS=off bench/profile.sh
#   FLAME=bench/results bench/profile.sh   # and a flamegraph per thread, as SVG, there
#   SHADOW=1.0 bench/profile.sh   # every user's calls copied to a shadow; its thread too
#
# Sampling is by the cpu-clock software event (these VMs expose no hardware counters), at
# $FREQ Hz for $DURATION s, one `perf record -t TID` per thread, both at once. Percentages
# are of that thread's own samples, self cost ([k] kernel, [.] user space). With FLAME,
# stacks are unwound from DWARF (the release build has no frame pointers) and drawn by
# inferno (`cargo install inferno --locked`, about 2 minutes, done here if missing):
# <FLAME>/flame-<thread>.svg, with the folded stacks beside it (<thread>.folded: one line a
# stack, frames joined by `;`, then its samples) for grep and inferno-diff-folded.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-5}
FREQ=${FREQ:-4999}
TOP=${TOP:-25}
EVENTS=${EVENTS:-on}
FLAME=${FLAME:-}
SHADOW=${SHADOW:-}

. bench/common.sh
need_nginx_and_wrk
command -v perf >/dev/null || apt_install linux-perf
if [ -n "$FLAME" ] && ! command -v inferno-flamegraph >/dev/null; then
  cargo install inferno --locked
fi
cargo build --release --quiet --bin cohort

make_work
PORT=18180
start_backends
write_users_lua
case $EVENTS in
  on) events="events: { dir: $work/events, fsync: interval }" ;;
  off) events="events: { enabled: false }" ;;
  *) echo "EVENTS is on or off" >&2; exit 2 ;;
esac
keys=""
[ -n "$SHADOW" ] && keys="    shadow: [{ name: cand, upstream: \"http://127.0.0.1:$B1\", sample: $SHADOW }]"
cohort_config "$work/cohort.yaml" $PORT $((PORT + 1)) "$events" 30000 "$keys"
"$ROOT/target/release/cohort" serve --config "$work/cohort.yaml" --workers 1 >"$work/cohort.log" 2>&1 &
pids+=($!); COH_PID=$!
wait_http $PORT /

# Threads: worker 0 (the main thread, which serves connections with --workers 1) and the
# event writer, found by its name.
threads=("serving:$COH_PID")
writer=$(thread_id $COH_PID cohort-events)
[ -n "$writer" ] && threads+=("writer:$writer")

wrk -t1 -c64 -d3s -s "$work/users.lua" "http://127.0.0.1:$PORT/invocations" >/dev/null # warm up
# The shadow thread starts with the first copy: found after the warm-up.
shadow=$(thread_id $COH_PID cohort-shadow)
[ -n "$shadow" ] && threads+=("shadow:$shadow")
wrk -t1 -c64 -d"$((DURATION + 2))s" -s "$work/users.lua" "http://127.0.0.1:$PORT/invocations" >"$work/wrk.out" &
load=$!
sleep 1
rec=()
stacks=()
[ -n "$FLAME" ] && stacks=(--call-graph dwarf,16384)
for spec in "${threads[@]}"; do
  name=${spec%%:*}; tid=${spec#*:}
  perf record -q -F "$FREQ" -e cpu-clock "${stacks[@]}" -t "$tid" -o "$work/$name.perf" -- sleep "$DURATION" >/dev/null 2>&1 &
  rec+=($!)
done
wait "${rec[@]}"
wait $load
echo "cohort, event log $EVENTS, 1 worker, wrk -t1 -c64: $(awk '/Requests\/sec/ {print $2}' "$work/wrk.out") req/s"
for spec in "${threads[@]}"; do
  name=${spec%%:*}
  echo
  echo "$name thread: top $TOP symbols, self, % of the thread's samples"
  perf report -i "$work/$name.perf" --no-children --sort sym --stdio 2>/dev/null |
    awk -v top="$TOP" '/^ +[0-9.]+%/ && shown++ < top' | cut -c1-120
  if [ -n "$FLAME" ]; then
    mkdir -p "$FLAME"
    perf script -i "$work/$name.perf" 2>/dev/null | inferno-collapse-perf |
      tee "$FLAME/$name.folded" | inferno-flamegraph --title "cohort $name thread, event log $EVENTS" >"$FLAME/flame-$name.svg"
    echo "flamegraph: $FLAME/flame-$name.svg"
  fi
done
