#!/usr/bin/env python3
"""Socket.IO fan-out benchmark: skyrelay against python-socketio (ASGI on uvicorn),
Flask-SocketIO (threading mode) and the Node socket.io 4.8 server, side by side in one run.

Same method as run_fanout.py (server on CPU 1, the C++ load client on CPU 0, 1,000 Socket.IO
clients over WebSocket, ~100-byte events broadcast to every socket of "/", medians of the
rounds, deliveries per server-CPU-second):

    .venv/bin/python bench/run_socketio.py [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time

from run_fanout import HERE, PYTHON, ROOT, build_loadclient, median, run_once

SERVERS = {
    "skyrelay": [PYTHON, str(HERE / "servers" / "sio_skyrelay.py")],
    "python-socketio": [PYTHON, str(HERE / "servers" / "sio_python_socketio.py")],
    "flask-socketio": [PYTHON, str(HERE / "servers" / "sio_flask_socketio.py")],
    "node socket.io": [shutil.which("node") or "node", str(HERE / "servers" / "sio_node.mjs")],
}
# Offered load per server in the saturation scenario (messages/s x subscribers): above what
# each one sustains, so each is measured at saturation.
SATURATION = {"skyrelay": 1000.0, "python-socketio": 50.0, "flask-socketio": 50.0,
              "node socket.io": 200.0}
PATH = "/socket.io/?EIO=4&transport=websocket"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--duration", type=float, default=6.0)
    p.add_argument("--latency-rate", type=float, default=5.0)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.rounds, args.warmup, args.duration = 1, 1.0, 3.0
    if not (ROOT / "node_modules" / "socket.io").is_dir():
        sys.exit("run `npm ci` first (node_modules/socket.io is missing)")
    build_loadclient()
    (HERE / "results").mkdir(exist_ok=True)
    scenarios = [("saturation", SATURATION),
                 (f"{args.latency_rate:g} msg/s", {n: args.latency_rate for n in SERVERS})]
    results: dict = {}
    for scenario, rates in scenarios:
        results[scenario] = {n: [] for n in SERVERS}
        for rnd in range(args.rounds):
            for name in SERVERS:
                try:
                    r = run_once(name, rates[name], args.clients, args.warmup, args.duration,
                                 SERVERS, PATH, "socketio")
                except Exception as exc:  # a peer that cannot run is reported, not hidden
                    print(f"[{scenario}] {name}: failed: {exc}", flush=True)
                    continue
                results[scenario][name].append(r)
                print(f"[{scenario}] round {rnd + 1} {name}: {r['deliveries_per_s']:.0f}/s, "
                      f"{r['deliveries_per_cpu_s']}/cpu-s, p50 {r['p50_us']} us, "
                      f"p99 {r['p99_us']} us, cpu {r['server_cpu_util']:.2f}, "
                      f"connected {r['connected']}", flush=True)
    lines = ["| scenario | server | deliveries/s | per server-CPU-s | p50 | p99 | server CPU |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for scenario, by in results.items():
        for name, runs in by.items():
            if not runs:
                lines.append(f"| {scenario} | {name} | failed | | | | |")
                continue
            row = {k: median(runs, k) for k in ("deliveries_per_s", "deliveries_per_cpu_s",
                                                "p50_us", "p99_us", "server_cpu_util")}
            lines.append(f"| {scenario} | {name} | {row['deliveries_per_s']:,.0f} | "
                         f"{row['deliveries_per_cpu_s']:,.0f} | {row['p50_us'] / 1000:.2f} ms | "
                         f"{row['p99_us'] / 1000:.2f} ms | {row['server_cpu_util']:.0%} |")
    table = "\n".join(lines)
    print("\n" + table)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (HERE / "results" / f"socketio-{stamp}.json").write_text(json.dumps(results, indent=2))
    (HERE / "results" / f"socketio-{stamp}.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
