# Shared by bench/run.sh, bench/cpu.sh and bench/instructions.sh (sourced, from the repo's
# root): the tools, a scratch directory cleaned up on exit, the two model backends, the
# nginx split_clients proxy, cohort's bench config and wrk's varied-user script.

B1=18101; B2=18102
BODY='{"predictions": [0], "model": "rf", "pad": "................................................"}'

apt_install() {
  command -v apt-get >/dev/null || { echo "no apt-get: install $* by hand" >&2; exit 1; }
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"
  $sudo apt-get install -y -q "$@" >/dev/null 2>&1 || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "$@" >/dev/null; }
}

# nginx and wrk, from Debian packages if missing.
need_nginx_and_wrk() {
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_install nginx-light
  command -v wrk >/dev/null || apt_install wrk
  export PATH="$PATH:/usr/sbin:$HOME/.cargo/bin"
}

# $work: a scratch directory, removed on exit with every process in $pids and every nginx
# whose pid file is in it.
make_work() {
  work=$(mktemp -d)
  pids=()
  trap cleanup EXIT
}

cleanup() {
  for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done
  for f in "$work"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}

wait_http() { # port path
  for _ in $(seq 100); do curl -sf -o /dev/null "127.0.0.1:$1$2" && return 0; sleep 0.1; done
  echo "nothing answers on 127.0.0.1:$1$2" >&2; exit 1
}

# Two model backends on $B1 and $B2: nginx `return 200` with ~100 bytes of JSON, 1 worker.
start_backends() {
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
  nginx -c "$work/backends.conf" -p "$work"
  wait_http $B1 /
}

# nginx split_clients 50/50 on x-user-id, upstream keepalive; room for 10 000 idle
# connections (bench/run.sh holds them open).
start_nginx_proxy() { # workers port
  cat > "$work/proxy.conf" <<NGINX
worker_processes $1;
worker_rlimit_nofile 19000;
pid $work/proxy.pid;
error_log $work/proxy.log warn;
events { worker_connections 18000; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  upstream rf { server 127.0.0.1:$B1; keepalive 64; }
  upstream lr { server 127.0.0.1:$B2; keepalive 64; }
  split_clients "\$http_x_user_id" \$variant { 50% rf; * lr; }
  server {
    listen 127.0.0.1:$2;
    location / { proxy_pass http://\$variant; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGINX
  nginx -c "$work/proxy.conf" -p "$work"
  wait_http "$2" /
}

# cohort's bench config: 50/50 sticky on x-user-id over the two backends.
cohort_config() { # file port admin events-line [route timeout ms] [experiment keys]
  cat > "$1" <<YAML
listen: 127.0.0.1:$2
admin: { listen: 127.0.0.1:$3 }
$4
limits: { max_connections: 15000, header_read_timeout_ms: 300000 }
routes:
  - { name: bench, match: { path_prefix: / }, experiment: bench, timeout_ms: ${5:-30000} }
experiments:
  - name: bench
    control: rf
    variants:
      - { name: rf, weight: 50, upstream: "http://127.0.0.1:$B1" }
      - { name: lr, weight: 50, upstream: "http://127.0.0.1:$B2" }
${6:-}
YAML
}

# Starts one cohort candidate of bench/ab.sh and bench/conn_memory.sh, given as
# NAME=BINARY [VAR=VALUE ...] (`log=off`: the event log off instead of a variable;
# `monitor=SHARE`: the experiment monitored, SHARE of its calls captured; `shadow=SHARE`:
# SHARE of its users' calls copied to a shadow, the first backend, at the defaults), with
# cohort_config's config on $port (admin $port + 1), once it is ready. Sets $cand_name and
# $cand_pid. Relative binaries are taken from the repo's root ($ROOT).
start_candidate() { # spec port workers
  local spec=$1 port=$2 workers=$3 rest binary events w keys=""
  local -a words vars=()
  cand_name=${spec%%=*}; rest=${spec#*=}
  read -r -a words <<<"$rest"
  binary=$(cd "$ROOT" && realpath "${words[0]}")
  events="events: { dir: $work/events-$cand_name, fsync: interval }"
  for w in "${words[@]:1}"; do
    case $w in
      log=off) events="events: { enabled: false }" ;;
      monitor=*) keys+="    monitor: { sample: ${w#monitor=}, max_per_s: 1000000 }"$'\n' ;;
      shadow=*) keys+="    shadow: [{ name: cand, upstream: \"http://127.0.0.1:$B1\", sample: ${w#shadow=} }]"$'\n' ;;
      *) vars+=("$w") ;;
    esac
  done
  cohort_config "$work/$cand_name.yaml" "$port" $((port + 1)) "$events" 30000 "$keys"
  (cd "$work" && RUST_LOG=warn exec env "${vars[@]}" "$binary" serve --config "$work/$cand_name.yaml" --workers "$workers") &
  cand_pid=$!
  pids+=($cand_pid)
  wait_http $((port + 1)) /readyz
}

# The id of process $1's thread named $2 (cohort's event writer: cohort-events); empty
# when it has none (the log is off).
thread_id() { # pid comm
  local t
  for t in /proc/"$1"/task/*; do
    if [ "$(cat "$t/comm")" = "$2" ]; then basename "$t"; return; fi
  done
}

# wrk's request: a model call with x-user-id varied over 100 000 users.
write_users_lua() {
  cat > "$work/users.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  wrk.headers["x-user-id"] = "user-" .. (n % 100000)
  return wrk.format("POST", "/invocations", nil, '{"inputs": [[5.1, 3.5, 1.4, 0.2]]}')
end
LUA
}
