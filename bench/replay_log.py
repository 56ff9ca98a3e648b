#!/usr/bin/env python3
"""Writes an event log for bench/replay.sh: exposures (and a conversion for one unit in
ten) of UNITS distinct units, in segment files of 64 MiB, until SIZE_MB are written.

  python3 bench/replay_log.py DIR SIZE_MB UNITS
"""
import os
import sys

out, size_mb, units = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(out, exist_ok=True)
limit = size_mb << 20
segment_limit = 64 << 20
written, seg, n = 0, 0, 0
f = None
seg_bytes = 0
while written < limit:
    if f is None or seg_bytes >= segment_limit:
        if f:
            f.close()
        f = open(os.path.join(out, f"events-2026-12-01T00-00-{seg:05d}.jsonl"), "w")
        seg, seg_bytes = seg + 1, 0
    lines = []
    for _ in range(10_000):
        unit = n % units
        variant = "rf" if (unit * 2654435761) % 100 < 50 else "lr"
        s, ms = divmod(n // 10, 1000)
        ts = f"2026-12-01T{(s // 3600) % 24:02d}:{(s // 60) % 60:02d}:{s % 60:02d}.{ms:03d}Z"
        lines.append(
            f'{{"type":"exposure","v":1,"ts":"{ts}","experiment":"iris-model","unit":"user-{unit}",'
            f'"variant":"{variant}","request_id":"c1~iris-model~{variant}~0123456789abcdef~{n:032x}",'
            f'"config_version":"0123456789abcdef","route":"iris","status":200,"latency_ms":{1 + n % 40}.5,'
            f'"phase":"iris-2026-11"}}\n'
        )
        if n % 10 == 0:
            lines.append(
                f'{{"type":"conversion","v":1,"ts":"{ts}","experiment":"iris-model","unit":"user-{unit}","value":1}}\n'
            )
        n += 1
    chunk = "".join(lines)
    f.write(chunk)
    seg_bytes += len(chunk)
    written += len(chunk)
f.close()
print(f"{written >> 20} MiB, {n} exposures, {min(n, units)} units, {seg} files", file=sys.stderr)
