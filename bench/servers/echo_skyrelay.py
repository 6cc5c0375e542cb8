"""skyrelay's echo handler for run_handlers.py: ``echo`` answers its data, for Socket.IO (the
ack) and the JSON protocol (the response). ``--mode sync`` registers a plain function, ``--mode
async`` a coroutine function (run on the server's asyncio loop). The per-connection inbound
rate limit is lifted: the benchmark sends as fast as answers come back."""

from __future__ import annotations

import argparse
import signal
import threading

import skyrelay

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--mode", choices=["sync", "async"], default="sync")
p.add_argument("--io-uring", choices=["auto", "off"], help="the write path (default: the Server's)")
args = p.parse_args()
options = {"io_uring": args.io_uring} if args.io_uring else {}
server = skyrelay.Server("127.0.0.1", args.port, io_threads=1, inbound_rate=1e9,
                         inbound_burst=1e9, **options)

if args.mode == "sync":
    @server.on("echo")
    def echo(conn, data):
        return data
else:
    @server.on("echo")
    async def echo(conn, data):
        return data

done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
server.start()
print("READY", flush=True)
done.wait(120)  # bounded even if the driver dies
server.stop()
