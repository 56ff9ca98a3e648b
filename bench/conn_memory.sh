#!/usr/bin/env bash
# Memory per idle keep-alive connection that has carried a request: cohort (event log on,
# one worker) against the floor (bench/floor.rs), on loopback. For each: RSS at rest, then
# with N connections open, each of which has sent one request and read its answer, held
# idle; per connection = (with − at rest) / N, for the whole RSS and for its anonymous part
# (the heap and stacks, without the binary's pages). Bounded: one hold of at most 120 s each.
#
#   bench/conn_memory.sh             # N=10000
#   N=2000 bench/conn_memory.sh
#   bench/conn_memory.sh 'off=target/release/cohort log=off' 'sys=/tmp/other/cohort'
#
# Arguments, if any, name the cohorts to measure instead of this tree's, as in bench/ab.sh:
# NAME=BINARY [VAR=VALUE ...], `log=off` serving it with the event log off.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${N:-10000}
. bench/common.sh
need_nginx_and_wrk
cargo build --release --quiet --bin cohort --example floor
make_work
start_backends

FLOOR=18240
"$ROOT/target/release/examples/floor" 127.0.0.1:$FLOOR "http://127.0.0.1:$B1" "http://127.0.0.1:$B2" 1 &
pids+=($!)
names=(floor); ports=($FLOOR); procs=($!)
wait_http $FLOOR /
[ $# -gt 0 ] || set -- "cohort=target/release/cohort"
port=18250
for spec in "$@"; do
  start_candidate "$spec" $port 1
  names+=("$cand_name"); ports+=($port); procs+=("$cand_pid")
  port=$((port + 10))
done
# cohort lets go of its start-up code pages a second after it starts serving (see
# bench/README.md, "Memory at rest"): what is at rest is measured after that.
sleep 2

status_kib() { # pid field
  awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"
}

echo "idle keep-alive connections that each carried one request: N=$N"
printf '%-12s %12s %12s %12s %12s %s\n' proxy "rest KiB" "with KiB" "B/conn" "anon B/conn" alive
for i in "${!names[@]}"; do
  t=${names[$i]}; pid=${procs[$i]}; port=${ports[$i]}
  rest=$(status_kib "$pid" VmRSS); rest_anon=$(status_kib "$pid" RssAnon)
  mkfifo "$work/hold"
  python3 "$ROOT/bench/idle.py" 127.0.0.1 "$port" "$N" "$N" < "$work/hold" > "$work/idle.out" &
  idle_pid=$!
  exec 9>"$work/hold"
  for _ in $(seq 1200); do [ -s "$work/idle.out" ] && break; sleep 0.1; done
  with=$(status_kib "$pid" VmRSS); with_anon=$(status_kib "$pid" RssAnon)
  printf '%-12s %12s %12s %12s %12s %s\n' "$t" "$rest" "$with" \
    $(( (with - rest) * 1024 / N )) $(( (with_anon - rest_anon) * 1024 / N )) "$(cat "$work/idle.out")"
  exec 9>&-
  wait "$idle_pid" 2>/dev/null || true
  rm -f "$work/hold"
done
