#!/usr/bin/env bash
# A first, quick throughput comparison on loopback: direct vs cohort vs nginx split_clients.
# The full benchmark (fixed rates, latency percentiles, RSS, reloads) is issue #14's
# bench/run.sh; this one gives the saturation ratio only. Bounded: 3 runs of $DURATION s.
#
#   bench/quick-ratio.sh            # needs nginx and wrk (apt-get install nginx-light wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
WORKERS=${WORKERS:-1}
work=$(mktemp -d)
trap 'kill -KILL $(jobs -p) 2>/dev/null; wait 2>/dev/null; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; rm -rf "$work"' EXIT

cargo build --release --quiet
B1=18101; B2=18102; NGX=18110; COH=18120; ADM=18121; COH_OFF=18130; ADM_OFF=18131

cat > "$work/nginx.conf" <<NGINX
worker_processes $WORKERS;
pid $work/nginx.pid;
error_log $work/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$B1; location / { default_type application/json; return 200 '{"predictions": [0], "model": "rf", "pad": "................................................"}'; } }
  server { listen 127.0.0.1:$B2; location / { default_type application/json; return 200 '{"predictions": [1], "model": "lr", "pad": "................................................"}'; } }
  upstream rf { server 127.0.0.1:$B1; keepalive 64; }
  upstream lr { server 127.0.0.1:$B2; keepalive 64; }
  split_clients "\$http_x_user_id" \$variant { 50% rf; * lr; }
  server {
    listen 127.0.0.1:$NGX;
    location / { proxy_pass http://\$variant; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGINX
nginx -c "$work/nginx.conf" -p "$work"

cat > "$work/routes.yaml" <<YAML
listen: 127.0.0.1:$COH
admin: { listen: 127.0.0.1:$ADM }
events: { dir: $work/events }
routes:
  - { name: bench, match: { path_prefix: / }, experiment: bench }
experiments:
  - name: bench
    control: rf
    variants:
      - { name: rf, weight: 50, upstream: "http://127.0.0.1:$B1" }
      - { name: lr, weight: 50, upstream: "http://127.0.0.1:$B2" }
YAML
sed -e "s/127.0.0.1:$COH/127.0.0.1:$COH_OFF/; s/127.0.0.1:$ADM/127.0.0.1:$ADM_OFF/" \
    -e "s|events: { dir: $work/events }|events: { enabled: false }|" "$work/routes.yaml" > "$work/routes-off.yaml"
(cd "$work" && RUST_LOG=warn exec "$OLDPWD/target/release/cohort" serve --config "$work/routes.yaml" --workers "$WORKERS") &
(cd "$work" && RUST_LOG=error exec "$OLDPWD/target/release/cohort" serve --config "$work/routes-off.yaml" --workers "$WORKERS") &
for port in $ADM $ADM_OFF; do
  for _ in $(seq 50); do curl -sf "127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
done

cat > "$work/users.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  wrk.headers["x-user-id"] = "user-" .. (n % 100000)
  return wrk.format("POST", "/invocations", nil, '{"inputs": [[5.1, 3.5, 1.4, 0.2]]}')
end
LUA

rps() { wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$work/users.lua" "http://127.0.0.1:$1/invocations" | awk '/Requests\/sec/ {print $2}'; }
direct=$(rps $B1); cohort=$(rps $COH); cohort_off=$(rps $COH_OFF); nginx=$(rps $NGX)
printf '%-22s %12s\n' target req/s direct "$direct" "cohort (event log on)" "$cohort" "cohort (event log off)" "$cohort_off" "nginx split_clients" "$nginx"
awk -v c="$cohort" -v o="$cohort_off" -v n="$nginx" -v d="$direct" \
  'BEGIN { printf "cohort/nginx %.2f   cohort/direct %.2f   log on/off %.2f\n", c/n, c/d, c/o }'
dropped=$(curl -s "127.0.0.1:$ADM/metrics" | awk '/^cohort_events_dropped_total / {print $2}')
written=$(curl -s "127.0.0.1:$ADM/metrics" | awk '/^cohort_events_written_total / {print $2}')
echo "event log during the run: $written written, $dropped dropped"
