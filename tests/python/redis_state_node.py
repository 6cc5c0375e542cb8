"""One skyrelay node for test_redis_state.py: ``python redis_state_node.py REDIS_URL OPTIONS``
(OPTIONS: a JSON object of extra Server arguments); prints ``port <n>`` once it serves, stops
on SIGTERM.

Every client topic is open (a JSON-protocol ``subscribe`` joins that room), the publish API
takes the token ``node-t0ken``, and a JSON-protocol request ``room_size`` with data
``{"room": name}`` answers ``server.room_size(name)``: the cluster's count, read on this node.
"""

from __future__ import annotations

import json
import signal
import sys
import threading

import skyrelay

TOKEN = "node-t0ken"


def main() -> None:
    extra = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    if "publish_rate" in extra:
        extra["publish_rate"] = tuple(extra["publish_rate"])
    server = skyrelay.Server(port=0, broker=sys.argv[1], client_topics="*", publish_token=TOKEN,
                             inbound_rate=0, **extra)

    @server.on("room_size")
    def room_size(conn, data):
        return server.room_size(data["room"])

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.start()
    print(f"port {server.port}", flush=True)
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
