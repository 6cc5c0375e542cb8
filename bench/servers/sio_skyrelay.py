"""skyrelay as a Socket.IO server: broadcast to every socket of "/" (io.emit)."""

from __future__ import annotations

import skyrelay
from common import announce, parse_args, paced, payload, wait_for_clients

args = parse_args()
server = skyrelay.Server("127.0.0.1", args.port, io_threads=1)
server.start()
wait_for_clients(lambda: server.connection_count, args.clients, args.connect_timeout)
announce("PUBLISHING")
seq = 0
for n in paced(args.rate, args.seconds):
    for _ in range(n):
        server.emit("tick", payload(seq).encode(), policy="drop_oldest")
        seq += 1
announce(f"DONE {seq}")
server.stop()
