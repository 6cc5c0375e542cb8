#!/usr/bin/env python3
"""Several nodes on one Redis: skyrelay's Redis broker at 1, 2 and 4 nodes against its
in-memory broker (one node), and python-socketio's AsyncRedisManager at 1, 2 and 4 nodes on the
same kind of Redis, side by side in one run; and skyrelay at 2 nodes on a 3-master Redis
Cluster (`redis+cluster://`, three cluster-enabled redis-servers built by the run).

One run: a fresh redis-server (no persistence) and the nodes, all pinned to CPU 1; the
clients (--clients in all, split evenly over the nodes) are one C++ load client per node,
pinned to CPU 0. Every node waits for its share of the clients, the driver then lets node 0
publish ~100-byte events at the offered rate to all of them; the others only deliver what
their broker hands them. "Server CPU" is every node's CPU plus redis-server's over the
measured window, so deliveries per server-CPU-second is what a delivery costs the whole
deployment, Redis included; the Redis column is redis-server's share (the three masters'
together on a cluster). Latency is
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
    "skyrelay, cluster, 2 nodes": ("skyrelay_node.py", "cluster", 2, "/ws/bench", "ws"),
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


def redis_command(directory: Path, port: int, *extra: str) -> list[str]:
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is missing (make deps installs Debian's redis-server)")
    return ["taskset", "-c", "1", "redis-server", "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(directory), *extra]


def start_redis(directory: Path) -> tuple[list[subprocess.Popen], str]:
    """One redis-server: its process and the broker URL."""
    port = free_port()
    proc = subprocess.Popen(redis_command(directory, port), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    harness.wait_port(port, proc, timeout=10)
    return [proc], f"redis://127.0.0.1:{port}/0"


def cluster_ok(port: int) -> bool:
    out = subprocess.run(["redis-cli", "-p", str(port), "CLUSTER", "INFO"],
                         capture_output=True, text=True, timeout=5).stdout
    return "cluster_state:ok" in out


def start_cluster(directory: Path) -> tuple[list[subprocess.Popen], str]:
    """Three cluster-enabled redis-servers joined into a 3-master Redis Cluster (no replicas):
    their processes (every one is stopped by the caller) and the broker URL."""
    procs: list[subprocess.Popen] = []
    ports = []
    for i in range(3):
        port, bus = free_port(), free_port()
        folder = directory / f"master{i}"
        folder.mkdir()
        procs.append(subprocess.Popen(
            redis_command(folder, port, "--cluster-enabled", "yes", "--cluster-config-file",
                          "nodes.conf", "--cluster-port", str(bus)),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL))
        ports.append(port)
    try:
        for port, proc in zip(ports, procs):
            harness.wait_port(port, proc, timeout=10)
        subprocess.run(["redis-cli", "--cluster", "create",
                        *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas", "0",
                        "--cluster-yes"], check=True, capture_output=True, timeout=30)
        deadline = time.monotonic() + 30
        while not all(cluster_ok(p) for p in ports):
            if time.monotonic() > deadline:
                raise TimeoutError("the cluster did not reach cluster_state:ok")
            time.sleep(0.1)
    except BaseException:
        for proc in procs:
            stop(proc)
        raise
    return procs, "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports)


def read_line(proc: subprocess.Popen, prefix: str, timeout: float) -> None:
    harness.wait_line(proc, prefix, timeout)


def run_once(name: str, rate: float, args) -> dict:
    """One run of setup `name` at `rate` messages/s (see the module's docstring)."""
    script, kind, count, path, protocol = SETUPS[name]
    share = args.clients // count
    total = share * count
    env = dict(os.environ, PYTHONPATH=str(HERE / "servers"))
    seconds = args.warmup + args.duration + 1.5
    redis: list[subprocess.Popen] = []
    nodes: list[subprocess.Popen] = []
    clients: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="skyrelay-bench-redis-") as tmp:
        try:
            broker = None
            if kind != "memory":
                redis, broker = (start_cluster if kind == "cluster" else start_redis)(Path(tmp))
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
            pids = [n.pid for n in nodes] + [r.pid for r in redis]
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
            for r in redis:
                stop(r)
    used = [b - a for a, b in zip(cpu0, cpu1)]
    server_cpu = sum(used)
    redis_cpu = sum(used[len(nodes):])
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
        "node_cpu_s": [round(u, 3) for u in used[:len(nodes)]],
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
        got = harness.ratio(results, scenario, "skyrelay, cluster, 2 nodes",
                            "skyrelay, redis, 2 nodes")
        if got:
            lines.append(harness.ratio_line("skyrelay on a 3-master cluster", "on one Redis",
                                            f"two nodes, {scenario}", *got, 2))
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
