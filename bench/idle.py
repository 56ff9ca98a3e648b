#!/usr/bin/env python3
"""Opens N keep-alive connections to HOST:PORT, proves a sample of them alive with a
request each, then holds them all open until stdin closes (bench/run.sh reads the proxy's
RSS meanwhile). Prints one line: "open N alive K of S". Bounded: gives up after 60 s of
setup. SAMPLE (default 100) is how many of them send a request: N makes every connection
carry one before it idles (bench/conn_memory.sh).

  python3 bench/idle.py 127.0.0.1 18120 10000 [SAMPLE] < fifo
"""
import asyncio
import sys
import time

REQUEST = (b"POST /invocations HTTP/1.1\r\nHost: bench\r\nx-user-id: idle-%d\r\n"
           b"content-type: application/json\r\ncontent-length: 2\r\n\r\n{}")


async def main(host, port, n, sample):
    conns = []
    deadline = time.monotonic() + 60
    while len(conns) < n and time.monotonic() < deadline:
        batch = [asyncio.open_connection(host, port) for _ in range(min(500, n - len(conns)))]
        for r in await asyncio.gather(*batch, return_exceptions=True):
            if not isinstance(r, Exception):
                conns.append(r)
    alive = 0
    step = max(1, len(conns) // sample)
    for i in range(0, len(conns), step):
        reader, writer = conns[i]
        writer.write(REQUEST % i)
        await writer.drain()
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await asyncio.wait_for(reader.readexactly(length), 5)
            alive += head.startswith(b"HTTP/1.1 200")
        except Exception:  # noqa: BLE001 — a dead connection just does not count
            pass
    print(f"open {len(conns)} alive {alive} of {len(range(0, len(conns), step))}", flush=True)
    # Hold until bench/run.sh closes our stdin (it reads RSS meanwhile), at most 120 s.
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.read), 120)
    for _, writer in conns:
        writer.close()


if __name__ == "__main__":
    sample = int(sys.argv[4]) if len(sys.argv) > 4 else 100
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sample))
