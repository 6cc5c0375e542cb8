"""skyrelay as one node of several on a broker (run_redis.py): the JSON protocol's /ws/bench
topic, one I/O thread; with --publisher 1 it publishes, the others only deliver."""

from __future__ import annotations

import skyrelay
from common import gated, parse_args, payload

args = parse_args()
server = skyrelay.Server("127.0.0.1", args.port, io_threads=1, client_topics=["bench"],
                         broker=args.broker)
server.start()
server.set_room_policy("bench", "drop_oldest")
gated(lambda seq: server.emit("tick", payload(seq).encode(), to="bench"),
      lambda: server.connection_count, args)
server.stop()
