#!/usr/bin/env python3
"""Several nodes on one Redis: skyrelay's Redis broker at 1, 2 and 4 nodes against its
in-memory broker (one node), and python-socketio's AsyncRedisManager at 1, 2 and 4 nodes on the
same kind of Redis, side by side in one run.

One run: a fresh redis-server (no persistence) and the nodes, all pinned to CPU 1; the
clients (--clients in all, split evenly over the nodes) are one C++ load client per node,
pinned to CPU 0. Every node waits for its share of the clients, the driver then lets node 0
publish ~100-byte events at the offered rate to all of them; the others only deliver what
their broker hands them. "Server CPU" is every node's CPU plus redis-server's over the
measured window, so deliveries per server-CPU-second is what a delivery costs the whole
deployment, Redis included; the Redis column is redis-server's share. Latency is
publish-to-receive (CLOCK_MONOTONIC stamped by the publisher), the worst node's p50 and p99.

Every node shares one core here, so 2 and 4 nodes measure the cost of the broker (more
processes, each receiving every publication once), not more throughput; the model
(bench/redis_model.py) turns the per-publication and per-delivery costs measured here into
where one Redis, a cluster and the engine bind for N nodes and M channels.

    .venv/bin/python bench/run_redis.py [--rounds 3] [--duration 6] [--rates 1000,10]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import harness
from harness import HERE, LOADCLIENT, PYTHON, cpu_seconds, busy_seconds, free_port, stop

# name: (server script, broker kind, nodes, load client path, load client protocol)
SETUPS = {
    "skyrelay, memory, 1 node": ("skyrelay_node.py", "memory", 1, "/ws/bench", "ws"),
    "skyrelay, redis, 1 node": ("skyrelay_node.py", "redis", 1, "/ws/bench", "ws"),
    "skyrelay, redis, 2 nodes": ("skyrelay_node.py", "redis", 2, "/ws/bench", "ws"),
    "skyrelay, redis, 4 nodes": ("skyrelay_node.py", "redis", 4, "/ws/bench", "ws"),
    "python-socketio, redis, 1 node": ("sio_python_socketio.py", "redis", 1,
                                       "/socket.io/?EIO=4&transport=websocket", "socketio"),
    "python-socketio, redis, 2 nodes": ("sio_python_socketio.py", "redis", 2,
                                        "/socket.io/?EIO=4&transport=websocket", "socketio"),
    "python-socketio, redis, 4 nodes": ("sio_python_socketio.py", "redis", 4,
                                        "/socket.io/?EIO=4&transport=websocket", "socketio"),
}
COLUMNS = [("published msg/s", "published_per_s"), ("deliveries/s", "deliveries_per_s"),
           ("deliveries per server-CPU-s", "deliveries_per_cpu_s"), ("p50", "p50_us"),
           ("p99", "p99_us"), ("server CPU", "server_cpu_util"),
           ("Redis CPU", "redis_cpu_util"), ("disturbed runs", "disturbed_runs")]


def start_redis(directory: Path) -> tuple[subprocess.Popen, int]:
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is missing (make deps installs Debian's redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        ["taskset", "-c", "1", "redis-server", "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    harness.wait_port(port, proc, timeout=10)
    return proc, port


def read_line(proc: subprocess.Popen, prefix: str, timeout: float) -> None:
    harness.wait_line(proc, prefix, timeout)


def run_once(name: str, rate: float, args) -> dict:
    """One run of setup `name` at `rate` messages/s (see the module's docstring)."""
    script, kind, count, path, protocol = SETUPS[name]
    share = args.clients // count
    total = share * count
    env = dict(os.environ, PYTHONPATH=str(HERE / "servers"))
    seconds = args.warmup + args.duration + 1.5
    redis = None
    nodes: list[subprocess.Popen] = []
    clients: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="skyrelay-bench-redis-") as tmp:
        try:
            broker = None
            if kind == "redis":
                redis, redis_port = start_redis(Path(tmp))
                broker = f"redis://127.0.0.1:{redis_port}/0"
            ports = [free_port() for _ in range(count)]
            for i, port in enumerate(ports):
                log = open(harness.RESULTS / f"redis-{name}-node{i}.log", "w")
                command = ["taskset", "-c", "1", PYTHON, str(HERE / "servers" / script),
                           "--port", str(port), "--clients", str(total),
                           "--local-clients", str(share), "--rate", str(rate),
                           "--seconds", str(seconds), "--publisher", "1" if i == 0 else "0",
                           "--gate"]
                if broker:
                    command += ["--broker", broker]
                nodes.append(subprocess.Popen(command, stdin=subprocess.PIPE,
                                              stdout=subprocess.PIPE, stderr=log, text=True,
                                              env=env))
            for port, node in zip(ports, nodes):
                harness.wait_port(port, node)
            for port in ports:
                clients.append(subprocess.Popen(
                    ["taskset", "-c", "0", str(LOADCLIENT), "--port", str(port), "--path", path,
                     "--protocol", protocol, "--clients", str(share),
                     "--warmup", str(args.warmup), "--duration", str(args.duration)],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            for node in nodes:
                read_line(node, "READY", 60)
            time.sleep(0.5)  # the nodes' subscriptions to the topic settle
            for node in nodes:
                node.stdin.write("GO\n")
                node.stdin.flush()
            read_line(nodes[0], "PUBLISHING", 30)
            time.sleep(args.warmup)
            pids = [n.pid for n in nodes] + ([redis.pid] if redis else [])
            cpu0 = [cpu_seconds(p) for p in pids]
            t0, busy0 = time.monotonic(), busy_seconds()
            time.sleep(args.duration)
            cpu1 = [cpu_seconds(p) for p in pids]
            t1, busy1 = time.monotonic(), busy_seconds()
            outs = [json.loads(c.communicate(timeout=args.duration + 90)[0].strip()
                               .splitlines()[-1]) for c in clients]
        finally:
            for c in clients:
                stop(c)
            for n in nodes:
                stop(n)
            stop(redis)
    used = [b - a for a, b in zip(cpu0, cpu1)]
    server_cpu = sum(used)
    redis_cpu = used[-1] if redis else 0.0
    client_cpu = sum(o["client_cpu_s"] for o in outs)
    window = t1 - t0
    other = busy1[0] - busy0[0] - server_cpu - client_cpu
    deliveries_per_s = sum(o["deliveries_per_s"] for o in outs)
    return {
        "server": name, "rate": rate, "nodes": count, "clients": total,
        "connected": sum(o["connected"] for o in outs),
        "closed_by_server": sum(o["closed_by_server"] for o in outs),
        "deliveries_per_s": round(deliveries_per_s, 1),
        "published_per_s": outs[0]["published_per_s"],
        "deliveries_per_cpu_s": (round(deliveries_per_s * window / server_cpu, 1)
                                 if server_cpu else None),
        "p50_us": max(o["p50_us"] for o in outs), "p99_us": max(o["p99_us"] for o in outs),
        "server_cpu_s": round(server_cpu, 3), "server_cpu_util": round(server_cpu / window, 3),
        "redis_cpu_s": round(redis_cpu, 3), "redis_cpu_util": round(redis_cpu / window, 3),
        "node_cpu_s": [round(u, 3) for u in (used[:-1] if redis else used)],
        "client_cpu_s": round(client_cpu, 3), "client_bound": False,
        "other_cpu_s": round(other, 3), "disturbed": other > 0.15 * window,
        "duration_s": round(window, 3), "clients_out": outs,
    }


def progress(r: dict) -> str:
    return (f"{r['deliveries_per_s']:.0f}/s, {r['deliveries_per_cpu_s']}/cpu-s, "
            f"published {r['published_per_s']:.0f}/s, p50 {r['p50_us']} us, "
            f"p99 {r['p99_us']} us, nodes cpu {r['node_cpu_s']}, redis cpu {r['redis_cpu_s']}, "
            f"connected {r['connected']}/{r['clients']}, closed {r['closed_by_server']}, "
            f"other cpu {r['other_cpu_s']} s")


def summarize(results: harness.Results) -> tuple[list[str], dict]:
    lines = ["| offered | setup | " + " | ".join(h for h, _ in COLUMNS) + " |",
             "|---|---|" + "---:|" * len(COLUMNS)]
    summary: dict = {}
    keys = harness.MEDIANS + ("redis_cpu_util",)
    for scenario, by_setup in results.items():
        for name, runs in by_setup.items():
            if not runs:
                lines.append(f"| {scenario} | {name} | failed |" + " |" * (len(COLUMNS) - 1))
                continue
            row = {k: harness.median(runs, k) for k in keys}
            row["disturbed_runs"] = sum(r["disturbed"] for r in runs)
            summary.setdefault(scenario, {})[name] = row
            cells = []
            for _, k in COLUMNS:
                cells.append(f"{row[k]:.0%}" if k == "redis_cpu_util"
                             else harness.cell(k, row, len(runs)))
            lines.append(f"| {scenario} | {name} | " + " | ".join(cells) + " |")
    lines.append("")
    for scenario in results:
        for n in (1, 2, 4):
            suffix = "1 node" if n == 1 else f"{n} nodes"
            got = harness.ratio(results, scenario, f"skyrelay, redis, {suffix}",
                                f"python-socketio, redis, {suffix}")
            if got:
                summary.setdefault("ratios", {})[f"{scenario}, {suffix}"] = round(got[0], 2)
                lines.append(harness.ratio_line("skyrelay", "python-socketio",
                                                f"on Redis, {suffix}, {scenario}", *got, 1))
        got = harness.ratio(results, scenario, "skyrelay, redis, 1 node",
                            "skyrelay, memory, 1 node")
        if got:
            lines.append(harness.ratio_line("skyrelay redis", "skyrelay memory",
                                            f"one node, {scenario}", *got, 2))
    return lines, summary


def main() -> int:
    p = harness.argument_parser(__doc__)
    p.add_argument("--rates", default="1000,10", help="offered loads, messages/s")
    p.add_argument("--only", help="setup names separated by semicolons (default: all)")
    args = harness.parse_args(p)
    names = [n.strip() for n in args.only.split(";")] if args.only else list(SETUPS)
    unknown = [n for n in names if n not in SETUPS]
    if unknown:
        raise SystemExit(f"unknown setup(s): {unknown}; known: {list(SETUPS)}")
    harness.prepare()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results: harness.Results = {}
    for rate in [float(r) for r in args.rates.split(",") if r.strip()]:
        scenario = f"{rate:g} msg/s"
        results[scenario] = {n: [] for n in names}
        for rnd in range(args.rounds):
            for name in names:
                try:
                    r = run_once(name, rate, args)
                except Exception as exc:  # a setup that cannot run is reported, not hidden
                    print(f"[{scenario}] round {rnd + 1} {name}: failed: {exc}", flush=True)
                    continue
                results[scenario][name].append(r)
                print(f"[{scenario}] round {rnd + 1} {name}: {progress(r)}", flush=True)
    lines, summary = summarize(results)
    lines.insert(0, f"run_redis.py, {started}, {args.clients} clients, {args.rounds} rounds, "
                    f"{args.duration:g} s windows\n")
    harness.report("redis", lines, {"args": vars(args), "summary": summary, "runs": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
