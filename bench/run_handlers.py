#!/usr/bin/env python3
"""Handler benchmark: inbound events answered by an in-process handler, side by side in one run.

100 connections (--clients), each sending its next request as soon as the answer to the previous
one arrives, ~64 bytes each way. The load generator (--client) is either bench/loadclient's
echo_client (C++, one thread, raw epoll, speaking Engine.IO/Socket.IO and the JSON protocol over
WebSocket itself: the default, whose ceiling is far above the servers') or bench/echo_load.mjs
(Node: socket.io-client, or `ws` for the JSON protocol: the view of a real client library, which
is itself the limit near 50 k answers/s). Each protocol also runs the trivial echo server
(bench/loadclient/echo_trivial_server.cpp: slices each request into its answer, no parsing),
whose rate is the load generator's own ceiling in the same run. The server under test is pinned to CPU 1, the load generator to CPU 0; rounds
are interleaved (each round runs every peer once) and the table shows medians:

- sio: a Socket.IO event with an ack. Peers: Node socket.io 4.8 (socket.on + ack callback),
  python-socketio on aiohttp (async handler), skyrelay with a sync and an async handler;
- json: a JSON-protocol request answered by a response. Peers: Node `ws` answering in the
  message callback, skyrelay with a sync and an async handler.

Answers/s is what the closed loop reaches; per server-CPU-s divides by the server's CPU time
(utime + stime over the window), which stays fair when the load generator is the limit
(client CPU near 100%).

    .venv/bin/python bench/run_handlers.py [--rounds 3] [--seconds 4] [--only sio]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import harness
from harness import PYTHON, HERE, cpu_seconds, free_port, stop, wait_line

NODE = shutil.which("node") or "node"
SERVERS = HERE / "servers"
# name: (command, protocol)
TRIVIAL = HERE / "build" / "loadclient" / "echo_trivial_server"
ECHO_CLIENT = HERE / "build" / "loadclient" / "echo_client"
PEERS: dict[str, tuple[list[str], str]] = {
    "trivial echo (sio)": ([str(TRIVIAL), "--proto", "sio"], "sio"),
    "node socket.io": ([NODE, str(SERVERS / "echo_node.mjs"), "--proto", "sio"], "sio"),
    "python-socketio (aiohttp)": ([PYTHON, str(SERVERS / "echo_python_socketio.py")], "sio"),
    "skyrelay sio sync": ([PYTHON, str(SERVERS / "echo_skyrelay.py"), "--mode", "sync"], "sio"),
    "skyrelay sio async": ([PYTHON, str(SERVERS / "echo_skyrelay.py"), "--mode", "async"], "sio"),
    "trivial echo (json)": ([str(TRIVIAL), "--proto", "json"], "json"),
    "node ws (json)": ([NODE, str(SERVERS / "echo_node.mjs"), "--proto", "json"], "json"),
    "skyrelay json sync": ([PYTHON, str(SERVERS / "echo_skyrelay.py"), "--mode", "sync"], "json"),
    "skyrelay json async": ([PYTHON, str(SERVERS / "echo_skyrelay.py"), "--mode", "async"],
                            "json"),
}
# --baseline DIR runs each skyrelay peer a second time with DIR (a `pip install --target` of
# another build, such as main's) first on PYTHONPATH: before and after in the same rounds.
BASELINE = "main: "
RATIOS = [("skyrelay sio sync", "node socket.io"),
          ("skyrelay sio async", "python-socketio (aiohttp)"),
          ("skyrelay sio async", "node socket.io"),
          ("skyrelay json sync", "node ws (json)"),
          ("skyrelay json async", "node ws (json)")]


def context_switches(pid: int) -> int:
    """Voluntary and involuntary context switches of every thread of a process so far."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as f:
                for line in f:
                    if line.split(":")[0].endswith("ctxt_switches"):
                        total += int(line.split()[1])
        except FileNotFoundError:  # a thread that ended meanwhile
            pass
    return total


def run_once(name: str, args: argparse.Namespace) -> dict:
    baseline = name.startswith(BASELINE)
    command, proto = PEERS[name[len(BASELINE):] if baseline else name]
    env = dict(os.environ)
    if baseline:  # another build of skyrelay, found before the installed one
        env["PYTHONPATH"] = args.baseline
    port = free_port()
    server = client = None
    harness.RESULTS.mkdir(exist_ok=True)
    try:
        log = open(harness.RESULTS / "handlers-server.log", "a")
        server = subprocess.Popen(["taskset", "-c", "1", *command, "--port", str(port)],
                                  stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        wait_line(server, "READY", 30)
        harness.wait_port(port, server)
        generator = ([str(ECHO_CLIENT)] if args.client == "cpp"
                     else [NODE, str(HERE / "echo_load.mjs")])
        client = subprocess.Popen(
            ["taskset", "-c", "0", *generator, "--proto", proto, "--port", str(port), "--clients", str(args.clients), "--warmup", str(args.warmup),
             "--seconds", str(args.seconds)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=harness.ROOT)
        time.sleep(args.warmup + 0.5)  # connections and warm-up; the window starts after it
        cpu0, ccpu0, t0 = cpu_seconds(server.pid), cpu_seconds(client.pid), time.monotonic()
        sw0 = context_switches(server.pid)
        time.sleep(args.seconds - 1.0)
        cpu1, ccpu1, t1 = cpu_seconds(server.pid), cpu_seconds(client.pid), time.monotonic()
        sw1 = context_switches(server.pid)
        out, err = client.communicate(timeout=args.seconds + 60)
        if client.returncode != 0 or not out.strip():
            raise RuntimeError(f"{name}: load generator failed: {err.strip()[-300:]}")
        r = json.loads(out.strip().splitlines()[-1])
        rate = r["answers"] / r["seconds"]
        util = (cpu1 - cpu0) / (t1 - t0)
        return {"peer": name, "answers_per_s": round(rate), "errors": r["errors"],
                "server_cpu": round(util, 3), "client_cpu": round((ccpu1 - ccpu0) / (t1 - t0), 3),
                "per_cpu_s": round(rate / util) if util > 0 else None,
                # the server's thread switches per answer over the window (the rate is the
                # load generator's whole run, close enough for a ratio of this kind)
                "switches_per_answer": round((sw1 - sw0) / (rate * (t1 - t0)), 3) if rate else None}
    finally:
        stop(client)
        stop(server)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=4.0, help="measured window (at most 60)")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--only", choices=["sio", "json"], help="one protocol's peers only")
    p.add_argument("--baseline", help="a directory holding another skyrelay build (see above)")
    p.add_argument("--label", default="", help="a tag for the result file (before/after)")
    p.add_argument("--client", choices=["cpp", "node"], default="cpp",
                   help="the load generator: bench/loadclient/echo_client (C++, default) or "
                        "bench/echo_load.mjs (socket.io-client / ws)")
    args = p.parse_args()
    args.seconds = min(max(args.seconds, 2.0), 60.0)
    harness.build_loadclient()  # the echo client and the trivial echo server
    if not (harness.ROOT / "node_modules" / "socket.io-client").is_dir():
        sys.exit("run `npm ci` first (node_modules/socket.io-client is missing)")
    names = [n for n, (_, proto) in PEERS.items() if args.only in (None, proto)]
    if args.baseline:
        names += [BASELINE + n for n in names if n.startswith("skyrelay")]
        RATIOS.extend((n, BASELINE + n) for n in names if n.startswith("skyrelay"))
    runs: dict[str, list[dict]] = {n: [] for n in names}
    load = open("/proc/loadavg").read().split()[:3]
    for rnd in range(args.rounds):
        for name in names:
            r = run_once(name, args)
            runs[name].append(r)
            print(f"round {rnd + 1} {name}: {r['answers_per_s']:,}/s, server CPU "
                  f"{r['server_cpu']:.0%}, client CPU {r['client_cpu']:.0%}, "
                  f"{r['errors']} errors", flush=True)
    keys = ["answers_per_s", "server_cpu", "client_cpu", "per_cpu_s", "switches_per_answer"]
    med = {n: {k: statistics.median(r[k] or 0 for r in rs) for k in keys}
           for n, rs in runs.items()}
    lines = [f"load average before: {' '.join(load)}; {args.rounds} rounds, medians; "
             f"load generator: {args.client}",
             "| peer | answers/s | per server-CPU-s | server CPU | client CPU | server switches per answer |",
             "|---|---:|---:|---:|---:|---:|"]
    for n, m in med.items():
        lines.append(f"| {n} | {m['answers_per_s']:,.0f} | {m['per_cpu_s']:,.0f} | "
                     f"{m['server_cpu']:.0%} | {m['client_cpu']:.0%} | "
                     f"{m['switches_per_answer']:.2f} |")
    for a, b in RATIOS:
        if a in med and b in med:
            per_round = [x["answers_per_s"] / y["answers_per_s"]
                         for x, y in zip(runs[a], runs[b])]
            lines.append(f"- {a} / {b}: {statistics.median(per_round):.2f}× answers/s "
                         f"(rounds {', '.join(f'{v:.2f}' for v in per_round)}), "
                         f"{med[a]['per_cpu_s'] / med[b]['per_cpu_s']:.2f}× per server-CPU-s")
    print("\n".join(lines))
    harness.save(f"handlers{('-' + args.label) if args.label else ''}",
                 {"args": vars(args), "runs": runs, "medians": med}, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
