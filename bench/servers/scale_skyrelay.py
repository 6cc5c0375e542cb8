"""skyrelay for the connection-scale run (run_scale.py): holds every connection of one transport
idle, through its heartbeats, and publishes one message per PUBLISH line on stdin.

    scale_skyrelay.py --port P --protocol json|socketio|sse --clients N [--heartbeat S]
                      [--descriptor-tables auto|shared|per-thread]

One I/O thread, sharing the process's descriptor table, while the open-file limit allows N;
past it ("auto"), one table per I/O thread (docs/api.md `descriptor_tables`), with as many I/O
threads as N needs at (hard limit - 1,024 - 64 - 200) connections each.

The JSON protocol (/ws/bench) and SSE (/sse/bench) subscribe to the "bench" topic by name; a
Socket.IO connection joins "/" and is reached by a broadcast to the namespace. Says PUBLISHED
after each publication, COUNT <n> on COUNT, and GCED after a full collection on GC;
stops on QUIT, end of input, or after --max-seconds.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import resource
import sys
import threading

import skyrelay
from common import payload


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--protocol", choices=["json", "socketio", "sse"], required=True)
    p.add_argument("--clients", type=int, required=True)
    p.add_argument("--heartbeat", type=float, default=25.0,
                   help="seconds between pings (JSON, Engine.IO) and SSE keep-alives")
    p.add_argument("--max-seconds", type=float, default=4000.0)
    p.add_argument("--certfile")
    p.add_argument("--keyfile")
    p.add_argument("--descriptor-tables", choices=["auto", "shared", "per-thread"],
                   default="auto")
    args = p.parse_args()
    hb = args.heartbeat
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    room = hard - 1024 - 64 - 200  # a table's floor, its own reserve, a margin
    tables = args.descriptor_tables
    if tables == "auto":
        tables = "per-thread" if hard != resource.RLIM_INFINITY and args.clients > hard - 500 \
            else "shared"
    threads = max(1, math.ceil(args.clients / room)) if tables == "per-thread" else 1
    print(f"descriptor_tables={tables} io_threads={threads}", file=sys.stderr, flush=True)
    # The default per-address limit (1,000) stays: the load client spreads its connections over
    # enough loopback source addresses. The total must admit the run.
    server = skyrelay.Server(
        "127.0.0.1", args.port, io_threads=threads, descriptor_tables=tables,
        client_topics=["bench"],
        heartbeat_interval=hb, ping_interval=hb, sse_keepalive=hb,
        max_connections=max(100_000, args.clients + 1000),
        ssl_certfile=args.certfile, ssl_keyfile=args.keyfile)
    server.start()
    # Bounded life even if the driver goes away without closing stdin.
    timer = threading.Timer(args.max_seconds, lambda: os._exit(3))
    timer.daemon = True
    timer.start()
    seq = 0
    while line := sys.stdin.readline():
        cmd = line.strip()
        if cmd == "QUIT":
            break
        if cmd == "PUBLISH":
            if args.protocol == "socketio":
                server.emit("tick", payload(seq).encode())
            else:
                server.emit("tick", payload(seq).encode(), to="bench")
            seq += 1
            print("PUBLISHED", flush=True)
        elif cmd == "GC":  # before an RSS reading, as the Node peers do
            gc.collect()
            print("GCED", flush=True)
        elif cmd == "COUNT":
            n = (server.connection_count if args.protocol == "socketio"
                 else server.room_size("bench"))
            print(f"COUNT {n}", flush=True)
    server.stop()


if __name__ == "__main__":
    main()
