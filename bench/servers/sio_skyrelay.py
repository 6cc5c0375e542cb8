"""skyrelay as a Socket.IO server: broadcast to every socket of "/" (io.emit)."""

from __future__ import annotations

import time

import skyrelay
from common import announce, fail, parse_args, paced, payload

args = parse_args()
server = skyrelay.Server("127.0.0.1", args.port, io_threads=1)
server.start()
deadline = time.monotonic() + args.connect_timeout
while server.connection_count < args.clients:
    if time.monotonic() > deadline:
        fail(f"only {server.connection_count} clients connected")
    time.sleep(0.05)
announce("PUBLISHING")
seq = 0
for n in paced(args.rate, args.seconds):
    for _ in range(n):
        server.emit("tick", payload(seq).encode(), policy="drop_oldest")
        seq += 1
announce(f"DONE {seq}")
server.stop()
