#!/usr/bin/env bash
# Same-run A/B of cohort builds or settings against the floor: each candidate is a cohort
# binary, optionally with environment settings, served with bench/run.sh's config (event
# log on, 1 worker by default), and saturated in alternating rounds beside the floor.
# Prints each round's req/s and each candidate's ratio to the first candidate and to the
# floor, round by round. See bench/README.md, "`bench/ab.sh`".
#
#   bench/ab.sh before=/tmp/old/target/release/cohort after=target/release/cohort
#   bench/ab.sh on=target/release/cohort 'off=target/release/cohort log=off'
#
# With RATE set (e.g. RATE=10000), each run is instead oha at that fixed rate
# (--latency-correction, 32 connections), beside direct access to a backend, and what is
# printed is the p50 and p99 each adds over direct, round by round, and each one's excess
# over the floor's.
#
# A candidate is NAME=BINARY [VAR=VALUE ...] (one shell word); `log=off` serves it with the
# event log off, `monitor=SHARE` with the experiment monitored (SHARE of its calls captured),
# `shadow=SHARE` with SHARE of its users copied to a shadow, instead of passing a variable.
# The floor is built from this tree unless FLOOR names a binary. Loopback only;
# ROUNDS × (candidates + 1, + 2 with RATE) runs of DURATION s each.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-6}
CONNS=${CONNS:-64}
WORKERS=${WORKERS:-1}
[ $# -ge 1 ] || { sed -n '2,21p' "$0"; exit 2; }

. bench/common.sh
need_nginx_and_wrk
if [ -z "${FLOOR:-}" ]; then
  cargo build --release --quiet --example floor
  FLOOR=$ROOT/target/release/examples/floor
fi

make_work
start_backends
write_users_lua

names=(); ports=()
port=18200
for spec in "$@"; do
  start_candidate "$spec" $port "$WORKERS"
  names+=("$cand_name"); ports+=($port)
  port=$((port + 10))
done
"$FLOOR" 127.0.0.1:18190 "http://127.0.0.1:$B1" "http://127.0.0.1:$B2" "$WORKERS" &
pids+=($!)
wait_http 18190 /
names+=(floor); ports+=(18190)

rps() { # port
  wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$work/users.lua" "http://127.0.0.1:$1/invocations" |
    awk '/Requests\/sec/ {print $2}'
}

# p50 and p99 in ms at $RATE req/s: "p50,p99"
latency() { # port
  oha -z "${DURATION}s" -q "$RATE" -c 32 --latency-correction --no-tui --output-format json \
    -m POST -H "x-user-id: user-$RANDOM" -d '{"inputs": [[5.1, 3.5, 1.4, 0.2]]}' \
    "http://127.0.0.1:$1/invocations" 2>/dev/null |
    python3 -c 'import json, sys; p = json.load(sys.stdin)["latencyPercentiles"]; print("%.4f,%.4f" % (p["p50"] * 1e3, p["p99"] * 1e3))'
}

if [ -n "${RATE:-}" ]; then
  command -v oha >/dev/null || { echo "RATE needs oha: cargo install oha --locked" >&2; exit 1; }
  names+=(direct); ports+=($B1)
fi

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A got
n=${#names[@]}
for round in $(seq "$ROUNDS"); do
  # Alternate the order each round, so that the machine's drift hits everyone alike.
  for k in $(seq 0 $((n - 1))); do
    i=$k; [ $((round % 2)) = 0 ] && i=$((n - 1 - k))
    if [ -n "${RATE:-}" ]; then got[$round,$i]=$(latency "${ports[$i]}"); else got[$round,$i]=$(rps "${ports[$i]}"); fi
  done
  line="round $round:"
  for i in $(seq 0 $((n - 1))); do line+=" ${names[$i]} ${got[$round,$i]}"; done
  echo "$line"
done

ratio_line() { # i j: candidate i over j, round by round, and the median
  python3 - "$@" <<'PY'
import statistics, sys
a = [float(x) for x in sys.argv[1].split()]
b = [float(x) for x in sys.argv[2].split()]
r = [x / y for x, y in zip(a, b)]
print(f"{statistics.median(r):.3f}  (" + " ".join(f"{x:.2f}" for x in r) + ")")
PY
}
series() { local s="" r; for r in $(seq "$ROUNDS"); do s+="${got[$r,$1]} "; done; echo "$s"; }
if [ -n "${RATE:-}" ]; then
  # The last two are the floor and direct: added latency over direct, and its excess over
  # the floor's.
  rows=""
  for r in $(seq "$ROUNDS"); do
    for i in $(seq 0 $((n - 1))); do rows+="$r ${names[$i]} ${got[$r,$i]}"$'\n'; done
  done
  python3 - "$RATE" <<PY
import statistics, sys
rows = [l.split() for l in """$rows""".strip().splitlines()]
by = {}
for r, name, v in rows:
    p50, p99 = map(float, v.split(","))
    by.setdefault(name, {})[int(r)] = (p50, p99)
rounds = sorted(by["direct"])
print(f"fixed rate {sys.argv[1]} req/s: ms added over direct (p50, p99), round by round")
for name in [n for n in by if n != "direct"]:
    add = [(by[name][r][0] - by["direct"][r][0], by[name][r][1] - by["direct"][r][1]) for r in rounds]
    line = f"{name:14s} p50 +{statistics.median(a[0] for a in add):.3f}  p99 +{statistics.median(a[1] for a in add):.3f}"
    line += "   (" + " ".join(f"{a[0]:+.3f}/{a[1]:+.3f}" for a in add) + ")"
    if name != "floor":
        over = [(by[name][r][0] - by["floor"][r][0], by[name][r][1] - by["floor"][r][1]) for r in rounds]
        line += f"   over the floor p50 {statistics.median(o[0] for o in over):+.3f} p99 {statistics.median(o[1] for o in over):+.3f}"
    print(line)
PY
  exit 0
fi
floor=$((n - 1))
for i in $(seq 0 $((n - 2))); do
  printf '%-14s /floor %s' "${names[$i]}" "$(ratio_line "$(series "$i")" "$(series $floor)")"
  [ "$i" -gt 0 ] && printf '   /%s %s' "${names[0]}" "$(ratio_line "$(series "$i")" "$(series 0)")"
  echo
done
