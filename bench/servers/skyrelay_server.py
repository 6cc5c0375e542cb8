"""skyrelay under test: one I/O thread (--io-threads), publisher in the main Python thread."""

from __future__ import annotations

import skyrelay
from common import parse_args, payload, publish

args = parse_args()
# With --certfile/--keyfile the one port serves TLS only (wss, https), terminated by skyrelay.
# The load clients subscribe by name (/ws/bench, /sse/bench): that one topic is open to them.
server = skyrelay.Server("127.0.0.1", args.port, io_threads=args.io_threads,
                         client_topics=["bench"], ssl_certfile=args.certfile, ssl_keyfile=args.keyfile,
                         **({"io_uring": args.io_uring} if args.io_uring else {}))
server.start()
# A benchmark topic is a volatile stream: under overload drop stale frames (counted) rather than
# disconnect subscribers, so the run measures sustained delivery.
server.set_room_policy("bench", "drop_oldest")
publish(lambda seq: server.emit("tick", payload(seq).encode(), to="bench"),
        lambda: server.room_size("bench"), args)
server.stop()
