#!/usr/bin/env bash
# Peak memory of startup replay: `cohort serve` rebuilding its live counts from an event
# log of SIZE_MB, once per number of distinct units. Memory should grow with the units,
# not with the size of the log. See bench/README.md.
#
#   bench/replay.sh                                  # 1 GiB, with 10 000 and 1 000 000 units
#   SIZE_MB=200 UNITS_LIST=10000 bench/replay.sh     # a quicker look
#   COHORT=/path/to/other/cohort bench/replay.sh     # another build, for a before/after
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SIZE_MB=${SIZE_MB:-1024}
UNITS_LIST=${UNITS_LIST:-"10000 1000000"}
. bench/common.sh
if [ -z "${COHORT:-}" ]; then
  cargo build --release --quiet --bin cohort
  COHORT=$ROOT/target/release/cohort
fi
make_work

for units in $UNITS_LIST; do
  dir=$work/events-$units
  python3 bench/replay_log.py "$dir" "$SIZE_MB" "$units"
  cat > "$work/replay.yaml" <<YAML
listen: 127.0.0.1:18160
admin: { listen: 127.0.0.1:18161, state_file: $work/state.json }
events: { dir: $dir }
routes: [{ name: iris, match: { path_prefix: / }, experiment: iris-model }]
experiments:
  - name: iris-model
    salt: iris-2026-11
    control: rf
    variants:
      - { name: rf, weight: 50, upstream: "http://127.0.0.1:1" }
      - { name: lr, weight: 50, upstream: "http://127.0.0.1:1" }
YAML
  start=$(date +%s.%N)
  RUST_LOG=info "$COHORT" serve --config "$work/replay.yaml" --workers 1 2> "$work/serve.log" &
  pid=$!; pids+=($pid)
  # The admin listener answers /readyz once replay is done and the listeners are bound.
  for _ in $(seq 6000); do
    curl -sf -o /dev/null 127.0.0.1:18161/readyz && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
    sleep 0.1
  done
  secs=$(echo "$(date +%s.%N) - $start" | bc)
  hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  grep -o 'event log replayed.*' "$work/serve.log" | head -1 || true
  printf 'replay of %s MiB, %s units: peak RSS %.1f MiB, RSS after %.1f MiB, ready in %.1f s\n' \
    "$SIZE_MB" "$units" "$(echo "$hwm / 1024" | bc -l)" "$(echo "$rss / 1024" | bc -l)" "$secs"
  rm -rf "$dir"
done
