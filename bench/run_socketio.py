#!/usr/bin/env python3
"""Socket.IO fan-out benchmark: skyrelay against python-socketio (ASGI on uvicorn),
Flask-SocketIO (threading mode) and the Node socket.io 4.8 server, side by side in one run.

Same method as run_fanout.py (server on CPU 1, the C++ load client on CPU 0, 1,000 Socket.IO
clients over WebSocket, ~100-byte events broadcast to every socket of "/", medians of the
rounds, deliveries per server-CPU-second):

    .venv/bin/python bench/run_socketio.py [--rounds 3] [--quick]
"""

from __future__ import annotations

import shutil
import sys

import harness
from harness import Peer, server

SERVERS = {
    "skyrelay": Peer(server("sio_skyrelay.py")),
    "python-socketio": Peer(server("sio_python_socketio.py")),
    "flask-socketio": Peer(server("sio_flask_socketio.py")),
    "node socket.io": Peer([shutil.which("node") or "node",
                            str(harness.HERE / "servers" / "sio_node.mjs")]),
    "trivial server": harness.trivial("socketio"),  # the load client's ceiling
}
# Offered load per server in the saturation scenario (messages/s x subscribers): above what
# each one sustains, so each is measured at saturation.
SATURATION = {"skyrelay": 1000.0, "python-socketio": 50.0, "flask-socketio": 50.0,
              "node socket.io": 200.0, "trivial server": 1000.0}
PATH = "/socket.io/?EIO=4&transport=websocket"
# The table's columns (fewer than run_fanout.py's, as docs/benchmarks.md shows them).
COLUMNS = [("deliveries/s", "deliveries_per_s"), ("client CPU", "client_cpu_util"), ("per server-CPU-s", "deliveries_per_cpu_s"),
           ("p50", "p50_us"), ("p99", "p99_us"), ("server CPU", "server_cpu_util")]


def main() -> int:
    p = harness.argument_parser(__doc__)
    p.add_argument("--latency-rate", type=float, default=5.0)
    args = harness.parse_args(p)
    if not (harness.ROOT / "node_modules" / "socket.io").is_dir():
        sys.exit("run `npm ci` first (node_modules/socket.io is missing)")
    harness.prepare()
    scenarios = [("saturation", SATURATION),
                 (f"{args.latency_rate:g} msg/s",
                  {n: args.latency_rate for n in SERVERS if n != "trivial server"})]
    results = harness.Fanout(SERVERS, args, path=PATH, protocol="socketio").measure(scenarios)
    lines, _ = harness.summarize(results, [], COLUMNS)
    harness.report("socketio", lines, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
