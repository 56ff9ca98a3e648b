#!/usr/bin/env python3
"""Turns bench/run.sh's raw lines into one table (stdout) and bench/results/<time>.json.

  python3 bench/summarize.py RESULTS_TXT OUT_JSON DURATION ROUNDS CONNS
"""
import json
import platform
import statistics
import subprocess
import sys
import time

raw, out_path, duration, rounds, conns = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
sat, rss, idle, latency, events, reload = {}, {}, {}, {}, {}, None
reloads_seen = []
for line in open(raw):
    f = line.split()
    if not f:
        continue
    kind = f[0]
    if kind == "saturation":
        t, w, rps = f[1], int(f[2]), float(f[4] or 0)
        sat.setdefault(w, {}).setdefault(t, {"rps": [], "non2xx": 0, "socket_errors": 0})
        s = sat[w][t]
        s["rps"].append(rps)
        s["non2xx"] += int(f[5])
        s["socket_errors"] += int(f[6])
    elif kind in ("rss_rest", "rss_peak"):
        rss.setdefault(int(f[2]), {}).setdefault(f[1], {})[kind[4:]] = int(f[3]) / 1024
    elif kind == "events":
        events[int(f[1])] = {"written": int(float(f[2])), "dropped": int(float(f[3]))}
    elif kind == "idle":
        # idle T kib open N alive K of S
        idle[f[1]] = {"rss_mib": int(f[2]) / 1024, "open": int(f[4]), "alive": int(f[6]), "sampled": int(f[8])}
    elif kind == "latency":
        t, rate, path = f[1], int(f[2]), f[3]
        try:
            d = json.load(open(path))
            p = d["latencyPercentiles"]
            ok = d["summary"].get("successRate", 0)
            latency.setdefault(rate, {})[t] = {
                "p50_ms": p["p50"] * 1e3, "p99_ms": p["p99"] * 1e3, "p99.9_ms": p["p99.9"] * 1e3,
                "success_rate": ok, "rps": d["summary"].get("requestsPerSec"),
            }
        except (OSError, ValueError, KeyError, TypeError):
            latency.setdefault(rate, {})[t] = None
    elif kind == "reload":
        # One line per round (a run with reloads and one without, same harness load).
        reloads_seen.append({"rps_without": float(f[1] or 0), "rps_with": float(f[2] or 0),
                             "non2xx": int(f[3]), "socket_errors": int(f[4]),
                             "reloads_succeeded": int(float(f[5]))})

if reloads_seen:
    # Medians over the rounds; failures and reloads summed.
    reload = {
        "rps_without": statistics.median(r["rps_without"] for r in reloads_seen),
        "rps_with": statistics.median(r["rps_with"] for r in reloads_seen),
        "non2xx": sum(r["non2xx"] for r in reloads_seen),
        "socket_errors": sum(r["socket_errors"] for r in reloads_seen),
        "reloads_succeeded": sum(r["reloads_succeeded"] for r in reloads_seen),
        "rounds": reloads_seen,
    }
summary = {"saturation": {}, "latency": latency, "rss_mib": rss, "idle_10k": idle, "events": events,
           "reload_every_100ms": reload}
print(f"\ncohort benchmark — loopback, wrk -t1 -c{conns}, {duration} s per run, median of {rounds} alternating rounds\n")
for w, targets in sorted(sat.items()):
    med = {t: statistics.median(v["rps"]) for t, v in targets.items()}
    ratio = lambda a, b: med[a] / med[b] if med.get(b) else None  # noqa: E731
    pairs = {"cohort/nginx": ("cohort", "nginx"), "cohort/floor": ("cohort", "floor"),
             "cohort/direct": ("cohort", "direct"), "log on/off": ("cohort", "cohort_log_off"),
             "nginx/direct": ("nginx", "direct")}

    def per_round(a, b):
        # The two runs of one round are minutes apart at most: their ratio is less
        # exposed to the machine's drift than the ratio of medians over the whole run.
        if a not in targets or b not in targets:
            return None
        rounds_ = [x / y for x, y in zip(targets[a]["rps"], targets[b]["rps"]) if y]
        return {"rounds": rounds_, "median": statistics.median(rounds_)} if rounds_ else None

    summary["saturation"][w] = {
        "median_rps": med, "runs": targets,
        "ratios": {k: ratio(a, b) for k, (a, b) in pairs.items()},
        "paired_ratios": {k: per_round(a, b) for k, (a, b) in pairs.items()}}
    print(f"saturation, {w} worker(s): req/s (median)")
    for t in ("direct", "floor", "cohort", "cohort_log_off", "nginx"):
        if t in med:
            errs = targets[t]["non2xx"] + targets[t]["socket_errors"]
            print(f"  {t:<16} {med[t]:>10.0f}   failed {errs}")
    r = summary["saturation"][w]["ratios"]
    print("  " + "   ".join(f"{k} {v:.2f}" for k, v in r.items() if v is not None))
    paired = summary["saturation"][w]["paired_ratios"]
    print("  the same ratios round by round (median; each round):")
    for k in ("cohort/floor", "cohort/nginx", "log on/off"):
        if paired.get(k):
            each = " ".join(f"{x:.2f}" for x in paired[k]["rounds"])
            print(f"    {k:<13} {paired[k]['median']:.2f}  ({each})")
    if w in events:
        print(f"  event log: {events[w]['written']} written, {events[w]['dropped']} dropped")
for rate, targets in sorted(latency.items()):
    print(f"\nfixed rate {rate} req/s (oha, latency-corrected): ms")
    d = targets.get("direct")
    for t in ("direct", "floor", "cohort", "nginx"):
        v = targets.get(t)
        if not v:
            print(f"  {t:<8} (no result)")
            continue
        added = f"   added p50 {v['p50_ms'] - d['p50_ms']:+.3f} p99 {v['p99_ms'] - d['p99_ms']:+.3f}" if d and t != "direct" else ""
        print(f"  {t:<8} p50 {v['p50_ms']:.3f}  p99 {v['p99_ms']:.3f}  p99.9 {v['p99.9_ms']:.3f}  ok {v['success_rate']:.4f}{added}")
print("\nmemory (MiB): rest / peak under load")
for w, t in sorted(rss.items()):
    print("  " + ", ".join(f"{name} ({w}w) {v.get('rest', 0):.1f} / {v.get('peak', 0):.1f}" for name, v in t.items()))
for t, v in idle.items():
    print(f"  {t} with {v['open']} idle keep-alive connections: {v['rss_mib']:.1f} MiB ({v['alive']}/{v['sampled']} sampled alive)")
if reload:
    cost = 1 - reload["rps_with"] / reload["rps_without"] if reload["rps_without"] else 0
    print(f"\nreload every 100 ms under load (median of {len(reloads_seen)} alternating pairs, the "
          f"baseline under the same cp/mv loop on an unwatched file): {reload['rps_with']:.0f} vs "
          f"{reload['rps_without']:.0f} req/s "
          f"(cost {100 * cost:.1f}%), {reload['reloads_succeeded']} reloads, failed requests "
          f"{reload['non2xx'] + reload['socket_errors']}")
meta = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": platform.machine(),
        "cores": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
        "duration_s": duration, "rounds": rounds, "connections": conns}
json.dump({"meta": meta, **summary}, open(out_path, "w"), indent=1, default=str)
print(f"\nwritten {out_path}")
