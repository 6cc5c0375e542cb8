"""One skyrelay node on a Redis broker, for test_redis_broker.py: run as a subprocess with
``python redis_node.py REDIS_URL [--recovery SECONDS] [--outbox FRAMES BYTES]``; prints
``port <n>`` once it serves, stops on SIGTERM.

Every client topic is open, the publish API takes the token ``node-t0ken``, and a Socket.IO
client that connects with ``auth={"room": name}`` is joined to that room. ``--recovery``
turns Socket.IO connection state recovery on; ``--outbox`` sets ``outbox_max_frames`` and
``outbox_max_bytes`` (default: the server's).

A JSON-protocol client may send ``{"type":"event","event":"burst","data":{"topic": t,
"first": i, "count": n}}``: the node then emits ``tick`` ``{"n": i}`` .. ``{"n": i+n-1}`` to
``t`` from a thread of its own, as fast as the broker takes them or at most ``"rate"`` a
second when the data has one (a publish refused while Redis is away is tried again), and prints ``burst done <i>`` when the last one is accepted.
The faults tests publish their 100,000 events this way, not as 100,000 HTTP requests."""

from __future__ import annotations

import argparse
import signal
import threading
import time

import skyrelay

TOKEN = "node-t0ken"
RETRY_SECONDS = 30.0  # how long a burst keeps trying one refused event


def burst(server: skyrelay.Server, topic: str, first: int, count: int, rate: float) -> None:
    started = time.monotonic()
    for n in range(first, first + count):
        if rate and (n - first) % 100 == 0:  # paced: at most `rate` events a second
            ahead = started + (n - first) / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        deadline = time.monotonic() + RETRY_SECONDS
        while True:
            try:
                server.emit("tick", {"n": n}, to=topic)
                break
            except skyrelay.BrokerUnavailable:
                if time.monotonic() > deadline:
                    print(f"burst failed {first} at {n}", flush=True)
                    return
                time.sleep(0.01)
    print(f"burst done {first}", flush=True)


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("redis_url")
    args.add_argument("--recovery", type=float, default=0.0)
    args.add_argument("--outbox", type=int, nargs=2, metavar=("FRAMES", "BYTES"))
    opts = args.parse_args()
    outbox = {}
    if opts.outbox:
        outbox = {"outbox_max_frames": opts.outbox[0], "outbox_max_bytes": opts.outbox[1]}
    server = skyrelay.Server(port=0, broker=opts.redis_url, client_topics="*",
                             publish_token=TOKEN, recovery_window=opts.recovery, **outbox)

    @server.on("connect")
    def joined(conn):
        auth = conn.auth
        if conn.transport == "socket.io" and isinstance(auth, dict) and isinstance(
                auth.get("room"), str):
            conn.join(auth["room"])

    @server.on("burst")
    def start_burst(conn, data):
        threading.Thread(target=burst, daemon=True,
                         args=(server, str(data["topic"]), int(data["first"]),
                               int(data["count"]), float(data.get("rate", 0)))).start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.start()
    print(f"port {server.port}", flush=True)
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
