#!/usr/bin/env bash
# CPU time per request of each proxy, split into user space and kernel, at saturation:
# where nginx's lead over hyper-based forwarders comes from. See bench/README.md, "Where
# the time goes".
#
#   bench/cpu.sh               # nginx, floor, cohort (log on), cohort (log off); 1 worker
#   ROUNDS=3 bench/cpu.sh      # more alternating rounds
#
# Each proxy takes its turn under wrk -t1 -c64 for $DURATION s on loopback; its user and
# system ticks (/proc/PID/stat, all threads) are read before and after, and divided by the
# requests served. The backends' CPU per request is shown too: it is not the same behind
# every proxy.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-2}

. bench/common.sh
need_nginx_and_wrk
cargo build --release --quiet --bin cohort --example floor

make_work

NGX=18170; FLOOR=18171; COH=18172; COH_OFF=18174
start_backends
start_nginx_proxy 1 $NGX

cohort_config "$work/on.yaml" $COH $((COH + 1)) "events: { dir: $work/events, fsync: interval }"
cohort_config "$work/off.yaml" $COH_OFF $((COH_OFF + 1)) "events: { enabled: false }"
"$ROOT/target/release/examples/floor" 127.0.0.1:$FLOOR "http://127.0.0.1:$B1" "http://127.0.0.1:$B2" 1 &
pids+=($!); FLOOR_PID=$!
"$ROOT/target/release/cohort" serve --config "$work/on.yaml" --workers 1 >"$work/on.log" 2>&1 &
pids+=($!); COH_PID=$!
"$ROOT/target/release/cohort" serve --config "$work/off.yaml" --workers 1 >"$work/off.log" 2>&1 &
pids+=($!); COH_OFF_PID=$!
for port in $NGX $FLOOR $COH $COH_OFF; do
  for _ in $(seq 100); do curl -sf -o /dev/null "127.0.0.1:$port/" && break; sleep 0.1; done
done
sleep 0.5
NGX_PID=$(pgrep -P "$(cat "$work/proxy.pid")" | head -1)
BACKEND_PID=$(pgrep -P "$(cat "$work/backends.pid")" | head -1)

write_users_lua

ticks() { awk '{print $14, $15}' "/proc/$1/stat"; } # utime stime, in clock ticks
hz=$(getconf CLK_TCK)
echo "CPU µs per request (wrk -t1 -c64, ${DURATION} s a turn, 1 worker, /proc/PID/stat)"
printf '%-16s %8s %8s %8s %8s %10s\n' proxy req/s user sys total backend
for round in $(seq "$ROUNDS"); do
  for spec in nginx:$NGX:$NGX_PID floor:$FLOOR:$FLOOR_PID cohort:$COH:$COH_PID cohort_log_off:$COH_OFF:$COH_OFF_PID; do
    IFS=: read -r name port pid <<<"$spec"
    read -r u0 s0 < <(ticks "$pid"); read -r bu0 bs0 < <(ticks "$BACKEND_PID")
    wrk -t1 -c64 -d"${DURATION}s" -s "$work/users.lua" "http://127.0.0.1:$port/invocations" >"$work/wrk.out"
    read -r u1 s1 < <(ticks "$pid"); read -r bu1 bs1 < <(ticks "$BACKEND_PID")
    n=$(awk '/requests in/ {print $1}' "$work/wrk.out")
    rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
    python3 - "$name" "$n" "$rps" "$hz" "$u0" "$u1" "$s0" "$s1" "$bu0" "$bu1" "$bs0" "$bs1" <<'PY'
import sys
name, n, rps, hz = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
u0, u1, s0, s1, bu0, bu1, bs0, bs1 = map(int, sys.argv[5:13])
us = lambda a, b: (b - a) * 1e6 / hz / n
user, sys_ = us(u0, u1), us(s0, s1)
print(f"{name:16s} {rps:8.0f} {user:8.2f} {sys_:8.2f} {user + sys_:8.2f} {us(bu0, bu1) + us(bs0, bs1):10.2f}")
PY
  done
done
