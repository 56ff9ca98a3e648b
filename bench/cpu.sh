#!/usr/bin/env bash
# CPU time per request of each proxy, split into user space and kernel, at saturation:
# where nginx's lead over hyper-based forwarders comes from. See bench/README.md, "Where
# the time goes".
#
#   bench/cpu.sh               # nginx, floor, cohort (log on disk, on tmpfs, off); 1 worker
#   ROUNDS=3 bench/cpu.sh      # more alternating rounds
#
# Each proxy takes its turn under wrk -t1 -c64 for $DURATION s on loopback; its user and
# system ticks (/proc/PID/stat, all threads) are read before and after, and divided by the
# requests served. Beside them: the event writer thread's share of cohort's (its
# /proc/PID/task/TID/stat), the backends' CPU per request (it is not the same behind every
# proxy), and the whole machine's (/proc/stat: every process and kernel thread — wrk, the
# kernel's writeback of the event log — minus idle, iowait and steal). The machine's CPU
# per request is what a proxy costs on a machine it shares with its load.
#
# cohort_log_tmpfs writes its event log to /dev/shm: the same writer, without a disk
# under it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-2}

. bench/common.sh
need_nginx_and_wrk
cargo build --release --quiet --bin cohort --example floor

make_work

NGX=18170; FLOOR=18171; COH=18172; COH_OFF=18174; COH_SHM=18176
start_backends
start_nginx_proxy 1 $NGX

cohort_config "$work/on.yaml" $COH $((COH + 1)) "events: { dir: $work/events, fsync: interval }"
cohort_config "$work/off.yaml" $COH_OFF $((COH_OFF + 1)) "events: { enabled: false }"
shm=$(mktemp -d /dev/shm/cohort-bench.XXXXXX)
trap 'cleanup; rm -rf "$shm"' EXIT
cohort_config "$work/shm.yaml" $COH_SHM $((COH_SHM + 1)) "events: { dir: $shm, fsync: interval }"
"$ROOT/target/release/examples/floor" 127.0.0.1:$FLOOR "http://127.0.0.1:$B1" "http://127.0.0.1:$B2" 1 &
pids+=($!); FLOOR_PID=$!
"$ROOT/target/release/cohort" serve --config "$work/on.yaml" --workers 1 >"$work/on.log" 2>&1 &
pids+=($!); COH_PID=$!
"$ROOT/target/release/cohort" serve --config "$work/off.yaml" --workers 1 >"$work/off.log" 2>&1 &
pids+=($!); COH_OFF_PID=$!
"$ROOT/target/release/cohort" serve --config "$work/shm.yaml" --workers 1 >"$work/shm.log" 2>&1 &
pids+=($!); COH_SHM_PID=$!
for port in $NGX $FLOOR $COH $COH_OFF $COH_SHM; do
  for _ in $(seq 100); do curl -sf -o /dev/null "127.0.0.1:$port/" && break; sleep 0.1; done
done
sleep 0.5
NGX_PID=$(pgrep -P "$(cat "$work/proxy.pid")" | head -1)
BACKEND_PID=$(pgrep -P "$(cat "$work/backends.pid")" | head -1)

write_users_lua

# utime + stime of a process or thread, in clock ticks
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# user and system ticks, as ticks() does per process: user space, kernel
split_ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
# the machine's busy ticks: user nice system irq softirq (not idle, iowait, steal)
machine() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
hz=$(getconf CLK_TCK)
echo "CPU µs per request (wrk -t1 -c64, ${DURATION} s a turn, 1 worker, /proc/PID/stat, /proc/stat)"
printf '%-16s %8s %8s %8s %8s %8s %9s %9s\n' proxy req/s user sys total writer backend machine
for round in $(seq "$ROUNDS"); do
  specs="nginx:$NGX:$NGX_PID floor:$FLOOR:$FLOOR_PID cohort:$COH:$COH_PID"
  specs+=" cohort_log_tmpfs:$COH_SHM:$COH_SHM_PID cohort_log_off:$COH_OFF:$COH_OFF_PID"
  # Alternate the order between rounds, so that no proxy always follows the same one.
  [ $((round % 2)) = 0 ] && specs=$(tr ' ' '\n' <<<"$specs" | tac | tr '\n' ' ')
  for spec in $specs; do
    IFS=: read -r name port pid <<<"$spec"
    tid=$(thread_id "$pid" cohort-events) # none for nginx, the floor, the log off
    wt() { if [ -z "$tid" ]; then echo 0; else ticks "$pid/task/$tid"; fi; }
    read -r u0 s0 < <(split_ticks "$pid")
    b0=$(ticks "$BACKEND_PID"); w0=$(wt); m0=$(machine)
    wrk -t1 -c64 -d"${DURATION}s" -s "$work/users.lua" "http://127.0.0.1:$port/invocations" >"$work/wrk.out"
    read -r u1 s1 < <(split_ticks "$pid")
    b1=$(ticks "$BACKEND_PID"); w1=$(wt); m1=$(machine)
    n=$(awk '/requests in/ {print $1}' "$work/wrk.out")
    rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
    python3 - "$name" "$n" "$rps" "$hz" "$u0" "$u1" "$s0" "$s1" "$w0" "$w1" "$b0" "$b1" "$m0" "$m1" <<'PY'
import sys
name, n, rps, hz = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
u0, u1, s0, s1, w0, w1, b0, b1, m0, m1 = map(int, sys.argv[5:15])
us = lambda a, b: (b - a) * 1e6 / hz / n
user, sys_ = us(u0, u1), us(s0, s1)
print(f"{name:16s} {rps:8.0f} {user:8.2f} {sys_:8.2f} {user + sys_:8.2f} {us(w0, w1):8.2f}"
      f" {us(b0, b1):9.2f} {us(m0, m1):9.2f}")
PY
  done
done
