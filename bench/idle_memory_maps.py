"""Where the RSS of N idle connections lands, mapping by mapping: the scale server
(servers/scale_skyrelay.py) holds N idle connections of one transport, and the growth of each
of its memory mappings' RSS (/proc/PID/smaps) over the empty server is shown per connection.

    .venv/bin/python bench/idle_memory_maps.py --protocol socketio --clients 3000

heaptrack (profile_idle_memory.py) sees what goes through malloc; this sees everything the
kernel counts, which tells apart the I/O thread's malloc arena (a 64 MiB-aligned anonymous
mapping), other threads' arenas, Python's object arenas (pymalloc takes 1 MiB anonymous
mappings straight from mmap, so heaptrack never sees Python objects such as a Socket.IO
socket's Connection) and code pages touched for the first time (file-backed, not per
connection). run_scale.py's "RSS per conn" is the sum.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time

import harness
from harness import LOADCLIENT, free_port, stop, wait_port

PATHS = {"json": ("/ws/bench", "ws"),
         "socketio": ("/socket.io/?EIO=4&transport=websocket", "socketio"),
         "sse": ("/sse/bench", "sse")}


def mappings(pid: int) -> dict[tuple[str, str], int]:
    """RSS in KiB of each mapping, by (address range, name)."""
    out: dict[tuple[str, str], int] = {}
    current = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                parts = line.split()
                current = (parts[0], parts[5] if len(parts) > 5 else "[anon]")
            elif line.startswith("Rss:") and current:
                out[current] = int(line.split()[1])
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", choices=list(PATHS), required=True)
    p.add_argument("--clients", type=int, default=3000)
    p.add_argument("--settle", type=float, default=3.0)
    p.add_argument("--rows", type=int, default=8)
    args = p.parse_args()
    harness.build_loadclient()
    port = free_port()
    server = subprocess.Popen(harness.server(
        "scale_skyrelay.py", "--protocol", args.protocol, "--port", str(port),
        "--clients", str(args.clients), "--heartbeat", "600", "--max-seconds", "300"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    client = None
    try:
        wait_port(port, server, timeout=60)
        time.sleep(1)
        before = mappings(server.pid)
        path, protocol = PATHS[args.protocol]
        client = subprocess.Popen(
            [str(LOADCLIENT), "--port", str(port), "--path", path, "--protocol", protocol,
             "--clients", str(args.clients), "--expect", "1", "--warmup", "0",
             "--duration", "1", "--hold", "120", "--bind-base", "127.9.0.1",
             "--bind-count", str(max(1, -(-args.clients // 500)))],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for line in client.stderr:
            if " connected in " in line:
                print(line.strip(), file=sys.stderr)
                break
        else:
            raise RuntimeError("the load client did not connect")
        time.sleep(args.settle)
        after = mappings(server.pid)
    finally:
        if client:
            stop(client)
        stop(server)
    n = args.clients
    rows = sorted(((kib - before.get(key, 0), key) for key, kib in after.items()),
                  reverse=True)
    total = sum(d for d, _ in rows)
    print(f"{args.protocol}: N = {n}, RSS growth {total * 1024 / n:.0f} bytes per connection")
    for d, (addr, name) in rows[:args.rows]:
        if d:
            print(f"{d * 1024 / n:8.0f}  {d:8d} KiB  {addr} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
