"""skyrelay as a Socket.IO server: broadcast to every socket of "/" (io.emit)."""

from __future__ import annotations

import skyrelay
from common import parse_args, payload, publish

args = parse_args()
server = skyrelay.Server("127.0.0.1", args.port, io_threads=1)
server.start()
publish(lambda seq: server.emit("tick", payload(seq).encode(), policy="drop_oldest"),
        lambda: server.connection_count, args)
server.stop()
