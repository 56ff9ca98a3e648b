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

apt_install() {
  command -v apt-get >/dev/null || { echo "no apt-get: install $* by hand" >&2; exit 1; }
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"
  $sudo apt-get install -y -q "$@" >/dev/null 2>&1 || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "$@" >/dev/null; }
}
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_install nginx-light
command -v wrk >/dev/null || apt_install wrk
export PATH="$PATH:/usr/sbin"
cargo build --release --quiet --bin cohort --example floor

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done
  for f in "$work"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

B1=18101; B2=18102; NGX=18170; FLOOR=18171; COH=18172; COH_OFF=18174
BODY='{"predictions": [0], "model": "rf", "pad": "................................................"}'
cat > "$work/backends.conf" <<NGINX
worker_processes 1;
pid $work/backends.pid;
error_log $work/backends.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$B1; location / { default_type application/json; return 200 '$BODY'; } }
  server { listen 127.0.0.1:$B2; location / { default_type application/json; return 200 '$BODY'; } }
}
NGINX
cat > "$work/proxy.conf" <<NGINX
worker_processes 1;
pid $work/proxy.pid;
error_log $work/proxy.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream rf { server 127.0.0.1:$B1; keepalive 64; }
  upstream lr { server 127.0.0.1:$B2; keepalive 64; }
  split_clients "\$http_x_user_id" \$variant { 50% rf; * lr; }
  server {
    listen 127.0.0.1:$NGX;
    location / { proxy_pass http://\$variant; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGINX
nginx -c "$work/backends.conf" -p "$work"
nginx -c "$work/proxy.conf" -p "$work"

config() { # file port events-line
  cat > "$1" <<YAML
listen: 127.0.0.1:$2
admin: { listen: 127.0.0.1:$(($2 + 1)) }
$3
limits: { max_connections: 15000, header_read_timeout_ms: 300000 }
routes:
  - { name: bench, match: { path_prefix: / }, experiment: bench }
experiments:
  - name: bench
    control: rf
    variants:
      - { name: rf, weight: 50, upstream: "http://127.0.0.1:$B1" }
      - { name: lr, weight: 50, upstream: "http://127.0.0.1:$B2" }
YAML
}
config "$work/on.yaml" $COH "events: { dir: $work/events, fsync: interval }"
config "$work/off.yaml" $COH_OFF "events: { enabled: false }"
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

cat > "$work/users.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  wrk.headers["x-user-id"] = "user-" .. (n % 100000)
  return wrk.format("POST", "/invocations", nil, '{"inputs": [[5.1, 3.5, 1.4, 0.2]]}')
end
LUA

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
