#!/usr/bin/env bash
# Fleet outcomes' costs on this machine, on loopback, in one run (bench/README.md):
#   1. saturation with shipping to ClickHouse on and off (the same build, alternating rounds)
#   2. the shipper's events/s: a spool of $SHIP_EVENTS lines drained into ClickHouse
#   3. a report over $REPORT_EVENTS events: `cohort report --clickhouse` (wall time, cohort's
#      peak RSS) beside `cohort report --events` over the same events as JSON Lines, and
#      whether the two reports are the same
#
#   bench/clickhouse.sh                                          # ~25 minutes, ~35 GB of disk
#   REPORT_EVENTS=10000000 REPORT_UNITS=1000000 bench/clickhouse.sh   # a quicker look
#   PARTS=1 bench/clickhouse.sh                                  # only the saturation rounds
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-5}
CONNS=${CONNS:-64}
SHIP_EVENTS=${SHIP_EVENTS:-2000000}
REPORT_EVENTS=${REPORT_EVENTS:-100000000}
REPORT_UNITS=${REPORT_UNITS:-5000000}
CH_MEMORY=${CH_MEMORY:-20000000000}   # max_memory_usage for the report's queries
PARTS=${PARTS:-"1 2 3"}
CH_NICE=${CH_NICE:-}   # e.g. 19: ClickHouse yields the cores, a stand-in for one on other machines
part() { [[ " $PARTS " == *" $1 "* ]]; }

. bench/common.sh
need_nginx_and_wrk
[ -x /usr/sbin/clickhouse-server ] || apt_install clickhouse-server
command -v /usr/bin/time >/dev/null || apt_install time
cargo build --release --quiet --bin cohort
COHORT="$ROOT/target/release/cohort"

make_work
CH_DIR="$work/clickhouse"
URL=$(scripts/clickhouse-server "$CH_DIR")
pids+=("$(cat "$CH_DIR/pid")")
nice_ch() { # every thread of the server (threads it starts later inherit it)
  [ -n "$CH_NICE" ] || return 0
  local t; for t in /proc/"$(cat "$CH_DIR/pid")"/task/*; do renice -n "$CH_NICE" -p "$(basename "$t")" >/dev/null; done
}
nice_ch
ch() { curl -sS --fail-with-body "$URL/" --data-binary "$1"; }
echo "== fleet outcomes in ClickHouse ($(nproc) cores, clickhouse-server $(ch 'SELECT version()') at $URL${CH_NICE:+, at nice $CH_NICE})"
start_backends
write_users_lua

metric() { # admin-port name-with-labels
  curl -s "127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m {print $2}'
}

# --- 1. saturation, shipping on and off ------------------------------------------------
if part 1; then
ON=18220; ON_ADM=18221; OFF=18230; OFF_ADM=18231
cohort_config "$work/ship-on.yaml" $ON $ON_ADM "events: { dir: $work/ev-on, fsync: interval, clickhouse: { url: \"$URL\", database: bench_ship_on } }"
cohort_config "$work/ship-off.yaml" $OFF $OFF_ADM "events: { dir: $work/ev-off, fsync: interval }"
(cd "$work" && RUST_LOG=error exec "$COHORT" serve --config "$work/ship-on.yaml" --workers 1) &
pids+=($!); ON_PID=$!
(cd "$work" && RUST_LOG=warn exec "$COHORT" serve --config "$work/ship-off.yaml" --workers 1) &
pids+=($!); OFF_PID=$!
wait_http $ON_ADM /readyz; wait_http $OFF_ADM /readyz
CH_PID=$(cat "$CH_DIR/pid")
SHIPPER_TID=$(thread_id "$ON_PID" cohort-shipper)
cpu_ticks() { awk '{print $14 + $15}' "$1"; } # /proc/…/stat: utime + stime
TICK=$(getconf CLK_TCK)
# wrk at saturation: "req/s p99" into $work/sat.out; with "on", also the CPU seconds
# ClickHouse and the shipper thread used during the round (into ch_cpu, shipper_cpu).
saturate() { # port [on]
  local c0 s0
  if [ -n "${2:-}" ]; then c0=$(cpu_ticks "/proc/$CH_PID/stat"); s0=$(cpu_ticks "/proc/$ON_PID/task/$SHIPPER_TID/stat"); fi
  wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$work/users.lua" "http://127.0.0.1:$1/invocations" > "$work/wrk.out"
  if [ -n "${2:-}" ] && kill -0 "$CH_PID" 2>/dev/null; then
    ch_cpu+=("$(echo "scale=2; ($(cpu_ticks "/proc/$CH_PID/stat") - $c0) / $TICK" | bc)")
    shipper_cpu+=("$(echo "scale=2; ($(cpu_ticks "/proc/$ON_PID/task/$SHIPPER_TID/stat") - $s0) / $TICK" | bc)")
  fi
  awk '/Requests\/sec/ {r=$2} $1 == "99%" {p=$2} END {print r, p}' "$work/wrk.out" > "$work/sat.out"
}
on=(); off=(); on_p99=(); off_p99=(); ch_cpu=(); shipper_cpu=()
round() { # port on|off
  local r p
  saturate "$1" "$([ "$2" = on ] && echo 1)"; read -r r p < "$work/sat.out"
  if [ "$2" = on ]; then on+=("$r"); on_p99+=("$p"); else off+=("$r"); off_p99+=("$p"); fi
}
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then round $ON on; round $OFF off
  else round $OFF off; round $ON on; fi
done
# ClickHouse killed: serving goes on, the spool grows; p99 beside the rounds above.
kill -KILL "$CH_PID"; while kill -0 "$CH_PID" 2>/dev/null; do sleep 0.1; done
down=(); down_p99=()
for r in $(seq "$ROUNDS"); do saturate $ON; read -r a b < "$work/sat.out"; down+=("$a"); down_p99+=("$b"); done
backlog_down=$(metric $ON_ADM cohort_clickhouse_backlog_bytes)
URL2=$(scripts/clickhouse-server "$CH_DIR"); [ "$URL2" = "$URL" ] || { echo "ClickHouse came back elsewhere" >&2; exit 1; }
CH_PID=$(cat "$CH_DIR/pid"); pids+=("$CH_PID"); nice_ch
# Shipping catches up after the load: how long until the backlog is 0.
t0=$(date +%s.%N)
while [ "$(metric $ON_ADM cohort_clickhouse_backlog_bytes)" != 0 ]; do sleep 0.2; done
caught_up=$(echo "$(date +%s.%N) - $t0" | bc)
shipped_on=$(metric $ON_ADM 'cohort_clickhouse_events_total{result="shipped"}')
written_on=$(metric $ON_ADM cohort_events_written_total)
dropped_on=$(metric $ON_ADM cohort_events_dropped_total)
kill "$ON_PID" "$OFF_PID"; wait "$ON_PID" "$OFF_PID" 2>/dev/null || true
cat <<TABLE
saturation, 1 worker, wrk -t1 -c$CONNS, ${DURATION}s rounds (req/s):
  shipping on : ${on[*]}   (p99: ${on_p99[*]})
  shipping off: ${off[*]}   (p99: ${off_p99[*]})
  CPU s per shipping round: ClickHouse ${ch_cpu[*]}; cohort's shipper thread ${shipper_cpu[*]}
  ClickHouse killed: ${down[*]}   (p99: ${down_p99[*]}); backlog then $backlog_down bytes
  ClickHouse restarted: the backlog shipped in ${caught_up} s; shipped $shipped_on of $written_on written ($dropped_on dropped)
TABLE
fi

# --- 2. the shipper's throughput ----------------------------------------------------------
if part 2; then
SPOOL="$work/spool"; mkdir -p "$SPOOL"
python3 - "$SPOOL/events-20261101T000000Z-000001.jsonl" "$SHIP_EVENTS" <<'PY'
import sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    for i in range(n):
        v = "rf" if i % 2 else "lr"
        f.write('{"type":"exposure","v":1,"ts":"2026-11-01T%02d:%02d:%02dZ","experiment":"bench","unit":"user-%d",'
                '"variant":"%s","phase":"bench","config_version":"v1","route":"bench","request_id":"c1~bench~%s~v1~%032x",'
                '"status":200,"latency_ms":4.5}\n' % (i // 3600000 % 24, i // 60000 % 60, i // 1000 % 60, i % 100000, v, v, i))
PY
spool_bytes=$(stat -c %s "$SPOOL"/events-*.jsonl)
SHIP=18240; SHIP_ADM=18241
cohort_config "$work/ship.yaml" $SHIP $SHIP_ADM "events: { dir: $SPOOL, clickhouse: { url: \"$URL\", database: bench_shipper } }"
(cd "$work" && RUST_LOG=warn exec "$COHORT" serve --config "$work/ship.yaml" --workers 1) &
pids+=($!); SHIP_PID=$!
wait_http $SHIP_ADM /readyz
shipped() { metric $SHIP_ADM 'cohort_clickhouse_events_total{result="shipped"}'; }
while [ "$(shipped)" = 0 ]; do sleep 0.05; done
s1=$(shipped); t1=$(date +%s.%N)
while [ "$(shipped)" -lt "$SHIP_EVENTS" ]; do sleep 0.05; done
t2=$(date +%s.%N)
ship_rate=$(echo "($SHIP_EVENTS - $s1) / ($t2 - $t1)" | bc)
kill $SHIP_PID; wait $SHIP_PID 2>/dev/null || true
echo "shipper: $SHIP_EVENTS events ($spool_bytes bytes of spool) at $ship_rate events/s"
fi

# --- 3. a report over $REPORT_EVENTS events ---------------------------------------------
if part 3; then
# Generated in ClickHouse: units user-0 … user-(U-1) in turn, 1 000 events a second, the
# variant sticky by unit; from the second pass on, some events are conversions (lr's
# units convert a little more often). `payload` holds each event's JSON line, which is
# what the JSONL side reads.
"$COHORT" clickhouse init --url "$URL" --database bench_report >/dev/null
U=$REPORT_UNITS
t0=$(date +%s.%N)
ch "INSERT INTO bench_report.events (date, ts, ts_ns, type, event_id, experiment, unit, variant, phase, config_version, route, request_id, status, latency_ms, aborted, forced, unit_missing, replica, payload)
SELECT toDate(toDateTime(secs, 'UTC')), ts, secs * 1000000000, type, event_id, 'bench', unit, variant, phase, version, route, request_id,
  toUInt16(if(conv, 0, 200)), if(conv, NULL, 4.5), toUInt8(0), toUInt8(0), toUInt8(0), 'bench',
  if(conv,
     concat('{\"type\":\"conversion\",\"v\":1,\"ts\":\"', ts, '\",\"event_id\":\"', event_id, '\",\"experiment\":\"bench\",\"unit\":\"', unit, '\"}'),
     concat('{\"type\":\"exposure\",\"v\":1,\"ts\":\"', ts, '\",\"experiment\":\"bench\",\"unit\":\"', unit, '\",\"variant\":\"', variant,
            '\",\"phase\":\"bench\",\"config_version\":\"v1\",\"route\":\"bench\",\"request_id\":\"', request_id, '\",\"status\":200,\"latency_ms\":4.5}'))
FROM (
  SELECT number, toInt64(1793491200 + intDiv(number, 1000)) AS secs,
    concat(replaceOne(toString(toDateTime(secs, 'UTC')), ' ', 'T'), 'Z') AS ts,
    number % $U AS u, concat('user-', toString(u)) AS unit, if(u % 2 = 0, 'rf', 'lr') AS arm,
    number >= $U AND ((u % 2 = 0 AND number % 61 = 7) OR (u % 2 = 1 AND number % 53 = 7)) AS conv,
    if(conv, 'conversion', 'exposure') AS type, concat('e', toString(number)) AS event_id,
    if(conv, '', arm) AS variant, if(conv, '', 'bench') AS phase, if(conv, '', 'v1') AS version,
    if(conv, '', 'bench') AS route, if(conv, '', concat('c1~bench~', arm, '~v1~', toString(number))) AS request_id
  FROM system.numbers LIMIT $REPORT_EVENTS
)" >/dev/null
gen_s=$(echo "$(date +%s.%N) - $t0" | bc)
rows=$(ch "SELECT count() FROM bench_report.events")
ch_bytes=$(ch "SELECT sum(bytes) FROM system.parts WHERE database = 'bench_report' AND active")

timed() { # out-file cmd...: wall seconds and peak RSS (KiB) of cmd, its stdout to out-file
  local out=$1; shift
  /usr/bin/time -f '%e %M' -o "$work/time.txt" "$@" > "$out"
  cat "$work/time.txt"
}
CH_PID=$(cat "$CH_DIR/pid")
echo 5 > "/proc/$CH_PID/clear_refs"   # resets the server's peak RSS (VmHWM) to now
read -r ch_wall ch_rss < <(timed "$work/report-ch.json" "$COHORT" report --clickhouse "$URL" --clickhouse-database bench_report \
  --experiment bench --control rf --format json --clickhouse-setting "max_memory_usage=$CH_MEMORY")
server_rss=$(awk '$1 == "VmHWM:" {print $2}' "/proc/$CH_PID/status")
mkdir -p "$work/jsonl"
t0=$(date +%s.%N)
curl -sS --fail "$URL/" --data-binary "SELECT payload FROM bench_report.events FORMAT TabSeparatedRaw" > "$work/jsonl/events-20261101T000000Z-000001.jsonl"
export_s=$(echo "$(date +%s.%N) - $t0" | bc)
jsonl_bytes=$(stat -c %s "$work/jsonl/events-20261101T000000Z-000001.jsonl")
read -r local_wall local_rss < <(timed "$work/report-local.json" "$COHORT" report --events "$work/jsonl" \
  --experiment bench --control rf --format json)
same=$(python3 - "$work/report-ch.json" "$work/report-local.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for r in a + b:
    r.pop("computed_at", None)
print("yes" if a == b else "NO")
PY
)

cat <<TABLE
report over $rows events, $U units ($ch_bytes bytes in ClickHouse; generated in ${gen_s} s):
  cohort report --clickhouse: ${ch_wall} s, peak RSS ${ch_rss} KiB (max_memory_usage=$CH_MEMORY); clickhouse-server's peak RSS meanwhile ${server_rss} KiB
  cohort report --events    : ${local_wall} s, peak RSS ${local_rss} KiB over $jsonl_bytes bytes of JSONL (exported in ${export_s} s)
  the two reports are the same (but computed_at): $same
TABLE
fi
