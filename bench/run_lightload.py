#!/usr/bin/env python3
"""Light load (issue 18 item 3): skyrelay's epoll write path, its io_uring write path and Node
`ws`, side by side in one run, at 10 and 50 msg/s x 1,000 subscribers, and skyrelay's two
paths at saturation.

Same method as run_fanout.py (bench/harness.py: the server pinned to CPU 1, the C++ load
client to CPU 0, 1,000 clients, ~100-byte JSON messages, rounds interleaved, medians). Per
scenario and server: server CPU per delivery (the inverse of deliveries per server-CPU-second),
p50 and p99 publish-to-receive latency; then each skyrelay path's ratio to Node `ws` (CPU per
delivery and p99: below 0.5 is the aim) and io_uring's to epoll.

    .venv/bin/python bench/run_lightload.py [--rounds 3] [--duration 6] [--scenarios 10,50,saturation]

With --before PY (another checkout's .venv/bin/python, e.g. a build of main) its two paths run
too, as "before epoll" and "before io_uring", interleaved with this build's in every round.
"""

from __future__ import annotations

import statistics
import sys
import time

import harness
from harness import HERE, Peer, server

SERVERS = {
    "skyrelay epoll": Peer(server("skyrelay_server.py", "--io-uring", "off")),
    "skyrelay io_uring": Peer(server("skyrelay_server.py", "--io-uring", "auto")),
    "node ws": Peer(["node", str(HERE / "servers" / "ws_node.mjs")]),
}
COLUMNS = [("deliveries/s", "deliveries_per_s"),
           ("CPU per delivery", "cpu_ns_per_delivery"),
           ("deliveries per server-CPU-s", "deliveries_per_cpu_s"), ("p50", "p50_us"),
           ("p99", "p99_us"), ("server CPU", "server_cpu_util"),
           ("disturbed runs", "disturbed_runs")]


def per_round(runs: dict[str, list[dict]], a: str, b: str, key: str) -> str:
    """a / b of `key`: the ratio of the medians, and per round."""
    xs, ys = runs.get(a, []), runs.get(b, [])
    if not xs or not ys:
        return "n/a"
    med = statistics.median(x[key] for x in xs) / statistics.median(y[key] for y in ys)
    rounds = ", ".join(f"{x[key] / y[key]:.2f}" for x, y in zip(xs, ys))
    return f"**{med:.2f}x** ({rounds})"


def main() -> int:
    p = harness.argument_parser(__doc__)
    p.add_argument("--scenarios", default="10,50,saturation",
                   help="comma-separated: message rates (all three servers) and/or saturation "
                        "(1,000 msg/s, skyrelay's two paths)")
    p.add_argument("--servers", default=",".join(SERVERS),
                   help="comma-separated subset of: " + ", ".join(SERVERS))
    p.add_argument("--python", help="run the skyrelay servers with this interpreter (another "
                   "checkout's .venv/bin/python; without io_uring there, use --servers "
                   "'skyrelay,node ws')")
    p.add_argument("--before", metavar="PY", help="also run this interpreter's skyrelay (another "
                   "checkout's .venv/bin/python) on both paths, as 'before epoll' and 'before "
                   "io_uring'")
    args = harness.parse_args(p)
    if args.before:
        for path, option in (("epoll", "off"), ("io_uring", "auto")):
            SERVERS[f"before {path}"] = Peer(
                [args.before, str(HERE / "servers" / "skyrelay_server.py"), "--io-uring", option])
    if args.python:  # a build without the option: one skyrelay server, its default path
        SERVERS["skyrelay"] = Peer([args.python, str(HERE / "servers" / "skyrelay_server.py")])
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    names += [n for n in SERVERS if n.startswith("before ")]
    for name in list(SERVERS):
        if name not in names:
            del SERVERS[name]
    harness.prepare()
    scenarios = []
    for s in (x.strip() for x in args.scenarios.split(",") if x.strip()):
        if s == "saturation":
            scenarios.append(("saturation (1000 msg/s)",
                              {n: 1000.0 for n in SERVERS if n != "node ws"}))
        else:
            scenarios.append((f"{float(s):g} msg/s", {n: float(s) for n in SERVERS}))
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with open("/proc/loadavg") as f:
        load_before = f.read().split()[:3]
    results = harness.Fanout(SERVERS, args).measure(scenarios)
    for by_server in results.values():
        for runs in by_server.values():
            for r in runs:
                r["cpu_ns_per_delivery"] = (1e9 / r["deliveries_per_cpu_s"]
                                            if r.get("deliveries_per_cpu_s") else None)
    harness.MEDIANS = tuple(dict.fromkeys((*harness.MEDIANS, "cpu_ns_per_delivery")))
    lines, summary = harness.summarize(results, peers=[], columns=COLUMNS)
    lines = [ln.replace(" | CPU per delivery |", " | server CPU ns per delivery |")
             for ln in lines]
    for scenario, runs in results.items():
        lines.append("")
        lines.append(f"{scenario}:")
        for name in (n for n in runs if n != "node ws"):
            if "node ws" in runs:
                lines.append(f"- {name} / node ws, CPU per delivery: "
                             + per_round(runs, name, "node ws", "cpu_ns_per_delivery")
                             + "; p99: " + per_round(runs, name, "node ws", "p99_us"))
        for prefix in ("skyrelay", "before"):
            if f"{prefix} io_uring" in runs:
                lines.append(f"- {prefix} io_uring / epoll, deliveries per server-CPU-second: "
                             + per_round(runs, f"{prefix} io_uring", f"{prefix} epoll",
                                         "deliveries_per_cpu_s")
                             + "; p99: " + per_round(runs, f"{prefix} io_uring",
                                                     f"{prefix} epoll", "p99_us"))
        for path in ("epoll", "io_uring"):
            if f"before {path}" in runs and f"skyrelay {path}" in runs:
                lines.append(f"- {path}, this build / before, CPU per delivery: "
                             + per_round(runs, f"skyrelay {path}", f"before {path}",
                                         "cpu_ns_per_delivery")
                             + "; p99: " + per_round(runs, f"skyrelay {path}",
                                                     f"before {path}", "p99_us"))
    lines.append("")
    lines.append(f"Started {started}, load average before: {' '.join(load_before)}")
    harness.report("lightload", lines, {"args": vars(args), "summary": summary, "runs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
