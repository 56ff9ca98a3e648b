#!/usr/bin/env bash
# cohort beside direct access, a minimal forwarder ("floor") and nginx split_clients, on
# loopback, in one run. See bench/README.md. Bounded: every load run lasts $DURATION s.
#
#   bench/run.sh                         # installs nginx, wrk (apt) and oha (cargo) if missing
#   DURATION=5 ROUNDS=1 SKIP_OHA=1 bench/run.sh   # a quicker look
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
WORKERS_LIST=${WORKERS_LIST:-"1 2"}
RATES=${RATES:-"1000 10000"}
IDLE=${IDLE:-10000}

# --- tools -----------------------------------------------------------------------------
. bench/common.sh
need_nginx_and_wrk
if [ -z "${SKIP_OHA:-}" ] && ! command -v oha >/dev/null; then
  echo "installing oha (cargo install oha --locked, about 5 minutes) …" >&2
  cargo install oha --locked --quiet
fi
HAVE_OHA=""; command -v oha >/dev/null && [ -z "${SKIP_OHA:-}" ] && HAVE_OHA=1
cargo build --release --quiet --bin cohort --example floor

make_work

FLOOR=18140; NGX=18110; COH=18120; ADM=18121; COH_OFF=18130; ADM_OFF=18131
# --- backends: nginx returning ~100 bytes of JSON ----------------------------------------
start_backends

# --- the proxies -------------------------------------------------------------------------
start_proxies() { # workers
  local w=$1
  "$ROOT/target/release/examples/floor" 127.0.0.1:$FLOOR "http://127.0.0.1:$B1" "http://127.0.0.1:$B2" "$w" &
  pids+=($!); FLOOR_PID=$!
  cohort_config "$work/on.yaml" $COH $ADM "events: { dir: $work/events-$w, fsync: interval }"
  cohort_config "$work/off.yaml" $COH_OFF $ADM_OFF "events: { enabled: false }"
  (cd "$work" && RUST_LOG=warn exec "$ROOT/target/release/cohort" serve --config "$work/on.yaml" --workers "$w") &
  pids+=($!); COH_PID=$!
  (cd "$work" && RUST_LOG=error exec "$ROOT/target/release/cohort" serve --config "$work/off.yaml" --workers "$w") &
  pids+=($!); COH_OFF_PID=$!
  start_nginx_proxy "$w" $NGX
  NGX_PID=$(cat "$work/proxy.pid")
  wait_http $ADM /readyz; wait_http $ADM_OFF /readyz; wait_http $FLOOR /
}

stop_proxies() {
  kill "$FLOOR_PID" "$COH_PID" "$COH_OFF_PID" 2>/dev/null || true
  wait "$FLOOR_PID" "$COH_PID" "$COH_OFF_PID" 2>/dev/null || true
  kill "$(cat "$work/proxy.pid")" 2>/dev/null || true
  for _ in $(seq 50); do [ -f "$work/proxy.pid" ] || break; sleep 0.1; done
  pids=()
}

# Memory of nginx: the master and its workers, summed.
rss_kib() { # pid field
  local total=0 p
  for p in $1 $(pgrep -P "$1" 2>/dev/null || true); do
    total=$(( total + $(awk -v f="$2:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null || echo 0) ))
  done
  echo $total
}

write_users_lua

# wrk at saturation: "rps non2xx socket_errors"
saturate() { # port
  wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$work/users.lua" "http://127.0.0.1:$1/invocations" > "$work/wrk.out"
  awk '/Requests\/sec/ {r=$2} /Non-2xx/ {n=$NF} /Socket errors/ {gsub(",", ""); e=$4+$6+$8+$10} END {printf "%s %d %d\n", r, n, e}' "$work/wrk.out"
}

results="$work/results.txt"; : > "$results"
record() { echo "$*" >> "$results"; }

port_of() { case $1 in direct) echo $B1;; floor) echo $FLOOR;; cohort) echo $COH;; cohort_log_off) echo $COH_OFF;; nginx) echo $NGX;; esac; }

for w in $WORKERS_LIST; do
  start_proxies "$w"
  # cohort lets go of its start-up code a second after it serves: at rest is after that.
  sleep 2
  record "rss_rest cohort $w $(rss_kib "$COH_PID" VmRSS)"
  record "rss_rest nginx $w $(rss_kib "$NGX_PID" VmRSS)"
  record "rss_rest floor $w $(rss_kib "$FLOOR_PID" VmRSS)"
  for round in $(seq "$ROUNDS"); do
    # Alternate the order each round, so that drift on a noisy machine hits everyone.
    order="direct floor cohort cohort_log_off nginx"
    [ $((round % 2)) = 0 ] && order="nginx cohort_log_off cohort floor direct"
    for t in $order; do
      read -r rps non2xx errs < <(saturate "$(port_of $t)")
      record "saturation $t $w $round $rps $non2xx $errs"
    done
  done
  record "events $w $(curl -s 127.0.0.1:$ADM/metrics | awk '/^cohort_events_written_total / {w=$2} /^cohort_events_dropped_total / {d=$2} END {print w+0, d+0}')"
  record "rss_peak cohort $w $(rss_kib "$COH_PID" VmHWM)"
  record "rss_peak nginx $w $(rss_kib "$NGX_PID" VmHWM)"
  record "rss_peak floor $w $(rss_kib "$FLOOR_PID" VmHWM)"

  if [ "$w" = "$(echo "$WORKERS_LIST" | awk '{print $1}')" ]; then
    # Fixed rates (oha corrects for coordinated omission).
    if [ -n "$HAVE_OHA" ]; then
      for rate in $RATES; do
        for t in direct floor cohort nginx; do
          oha -z "${DURATION}s" -q "$rate" -c 32 --latency-correction --no-tui --output-format json \
            -m POST -H "x-user-id: user-$RANDOM" -d '{"inputs": [[5.1, 3.5, 1.4, 0.2]]}' \
            "http://127.0.0.1:$(port_of $t)/invocations" > "$work/oha-$t-$rate.json" 2>/dev/null || true
          record "latency $t $rate $work/oha-$t-$rate.json"
        done
      done
    fi
    # 10 000 idle keep-alive connections: RSS while they are held (a sample proves them alive).
    for t in cohort nginx; do
      mkfifo "$work/hold"
      python3 "$ROOT/bench/idle.py" 127.0.0.1 "$(port_of $t)" "$IDLE" < "$work/hold" > "$work/idle.out" &
      idle_pid=$!
      exec 9>"$work/hold"
      for _ in $(seq 900); do [ -s "$work/idle.out" ] && break; sleep 0.1; done
      pid=$COH_PID; [ $t = nginx ] && pid=$NGX_PID
      record "idle $t $(rss_kib "$pid" VmRSS) $(cat "$work/idle.out")"
      exec 9>&-
      wait "$idle_pid" 2>/dev/null || true
      rm -f "$work/hold"
    done
    # A config reload every 100 ms during a saturation run (bounded: DURATION × 10 writes).
    # Three versions in turn: with two, a reload every ~220 ms (150 ms debounce + work)
    # samples the file in phase with the 200 ms a/b cycle and keeps finding the version in
    # force (a stroboscope, not a refusal).
    for v in 0 1 2; do
      cohort_config "$work/on-$v.yaml" $COH $ADM "events: { dir: $work/events-$w, fsync: interval }" $((30000 + v))
    done
    churn() { # target: the same cp + mv every 100 ms
      for i in $(seq $((DURATION * 10))); do
        cp "$work/on-$((i % 3)).yaml" "$1.tmp"
        mv "$1.tmp" "$1"
        sleep 0.1
      done
    }
    # The baseline runs the same loop on a file cohort does not watch: the loop's own
    # processes (cp, mv, sleep: 30 per second) load the 2 cores too, and are not cohort's.
    # ROUNDS pairs, the order alternating; each line is one pair (summarize.py takes medians).
    mkdir -p "$work/decoy"
    for round in $(seq "$ROUNDS"); do
      before=$(curl -s 127.0.0.1:$ADM/metrics | awk '$1 == "cohort_config_reloads_total{result=\"success\"}" {print $2}')
      for target in decoy live; do
        [ $((round % 2)) = 0 ] && target=$([ $target = decoy ] && echo live || echo decoy)
        file="$work/on.yaml"; [ $target = decoy ] && file="$work/decoy/on.yaml"
        churn "$file" &
        reloader=$!
        if [ $target = decoy ]; then
          read -r base _ _ < <(saturate $COH)
        else
          read -r rps non2xx errs < <(saturate $COH)
        fi
        wait "$reloader" 2>/dev/null || true
      done
      after=$(curl -s 127.0.0.1:$ADM/metrics | awk '$1 == "cohort_config_reloads_total{result=\"success\"}" {print $2}')
      record "reload $base $rps $non2xx $errs $(( ${after%.*} - ${before%.*} ))"
    done
  fi
  stop_proxies
done

mkdir -p bench/results
out="bench/results/$(date -u +%Y-%m-%dT%H%M%SZ).json"
python3 "$ROOT/bench/summarize.py" "$results" "$out" "$DURATION" "$ROUNDS" "$CONNS"
