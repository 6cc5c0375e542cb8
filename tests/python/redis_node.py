"""One skyrelay node on a Redis broker, for test_redis_broker.py: run as a subprocess with
``python redis_node.py REDIS_URL``; prints ``port <n>`` once it serves, stops on SIGTERM.

Every client topic is open, the publish API takes the token ``node-t0ken``, and a Socket.IO
client that connects with ``auth={"room": name}`` is joined to that room."""

from __future__ import annotations

import signal
import sys
import threading

import skyrelay

TOKEN = "node-t0ken"


def main() -> None:
    server = skyrelay.Server(port=0, broker=sys.argv[1], client_topics="*", publish_token=TOKEN)

    @server.on("connect")
    def joined(conn):
        auth = conn.auth
        if conn.transport == "socket.io" and isinstance(auth, dict) and isinstance(
                auth.get("room"), str):
            conn.join(auth["room"])

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.start()
    print(f"port {server.port}", flush=True)
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
