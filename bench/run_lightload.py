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
        [--rps] [--wait-quiet S]

Beside them, the floor: the trivial server (loadclient/trivial_server.cpp, one thread, no
library, every message encoded once) on its epoll path (one send() per connection) and its
io_uring path (one submission per message), "trivial epoll" and "trivial io_uring". No server
can spend less kernel time per delivery on this harness than they do, so their ratio to Node
`ws` says how far below Node any server could go here.

With --before PY (another checkout's .venv/bin/python, e.g. a build of main) its two paths run
too, as "before epoll" and "before io_uring", interleaved with this build's in every round.

With --rps (a side view, opt-in; the runs without it stay the headline) every server also runs
with the loopback device's receive work steered to the load client's core: Receive Packet
Steering, /sys/class/net/lo/queues/rx-0/rps_cpus set to CPU 0's mask for that run only and
put back to its old value after it (and on any exit). On loopback the receive path of every
send (ip_rcv, tcp_v4_rcv, the reader's wake-up) otherwise runs on the sender's core, inside
its send call, and is charged to the server; behind a real NIC it would run on the client's
machine. Those runs are named "<server> +rps". Needs root and a writable rps_cpus; otherwise
the side view is skipped with a message. While a +rps run is on, RPS applies to every
loopback packet on the machine, not only the benchmark's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import sys
import time
from pathlib import Path

import harness
from harness import HERE, Peer, server

SERVERS = {
    "skyrelay epoll": Peer(server("skyrelay_server.py", "--io-uring", "off")),
    "skyrelay io_uring": Peer(server("skyrelay_server.py", "--io-uring", "auto")),
    "node ws": Peer(["node", str(HERE / "servers" / "ws_node.mjs")]),
    # The floor: the least a server can do for the same deliveries (loadclient/trivial_server.cpp:
    # pre-encoded frames, one send() each, or one io_uring submission per message).
    "trivial epoll": harness.trivial("ws"),
    "trivial io_uring": Peer([*harness.trivial("ws").command, "--io-uring", "1"]),
}
COLUMNS = [("deliveries/s", "deliveries_per_s"),
           ("CPU per delivery", "cpu_ns_per_delivery"),
           ("deliveries per server-CPU-s", "deliveries_per_cpu_s"), ("p50", "p50_us"),
           ("p99", "p99_us"), ("server CPU", "server_cpu_util"),
           ("disturbed runs", "disturbed_runs")]
# With --rps: where the receive work went (the client's CPU, the softirq time of each core).
RPS_COLUMNS = [("client CPU", "client_cpu_util"), ("softirq ms CPU 0", "softirq_ms_cpu0"),
               ("softirq ms CPU 1", "softirq_ms_cpu1")]

RPS_SUFFIX = " +rps"
RPS_CPUS = Path("/sys/class/net/lo/queues/rx-0/rps_cpus")
CLIENT_CPU = 0  # harness.Fanout pins the load client here (taskset -c 0)


def rps_unavailable() -> str | None:
    """Why the RPS side view cannot run here, or None."""
    if os.geteuid() != 0:
        return "not running as root"
    if not RPS_CPUS.exists():
        return f"{RPS_CPUS} does not exist (kernel without RPS?)"
    if not os.access(RPS_CPUS, os.W_OK):
        return f"{RPS_CPUS} is not writable (read-only /sys?)"
    return None


def write_rps(mask: str) -> None:
    RPS_CPUS.write_text(mask + "\n")
    got = RPS_CPUS.read_text().strip()
    if int(got.replace(",", ""), 16) != int(mask.replace(",", ""), 16):
        raise RuntimeError(f"{RPS_CPUS} reads {got!r} after writing {mask!r}")


@contextlib.contextmanager
def rps_steered(original: str):
    """Loopback receive work steered to CLIENT_CPU while inside; `original` written back after."""
    try:
        write_rps(f"{1 << CLIENT_CPU:x}")
        yield
    finally:
        write_rps(original)


class SideViewFanout(harness.Fanout):
    """harness.Fanout whose "<server> +rps" runs have RPS steered to the client's core."""

    rps_original: str = ""

    def run_once(self, name: str, rate: float) -> dict:
        if not name.endswith(RPS_SUFFIX):
            return super().run_once(name, rate)
        with rps_steered(self.rps_original):
            return super().run_once(name, rate)


def per_round(runs: dict[str, list[dict]], a: str, b: str, key: str) -> str:
    """a / b of `key`: the ratio of the medians, and per round."""
    xs, ys = runs.get(a, []), runs.get(b, [])
    if not xs or not ys:
        return "n/a"
    med = statistics.median(x[key] for x in xs) / statistics.median(y[key] for y in ys)
    rounds = ", ".join(f"{x[key] / y[key]:.2f}" for x, y in zip(xs, ys))
    return f"**{med:.2f}x** ({rounds})"


def main() -> int:
    p = harness.argument_parser(__doc__, wait_quiet=True)
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
    p.add_argument("--rps", action="store_true",
                   help="side view: every server also runs with the loopback receive steered to "
                        "the client's core by RPS (root only; see the module's doc)")
    args = harness.parse_args(p)
    rps_original = None
    if args.rps:
        why = rps_unavailable()
        if why:
            print(f"--rps: the RPS side view is skipped: {why}. Only the default runs follow.",
                  file=sys.stderr, flush=True)
            args.rps = False
        else:
            rps_original = RPS_CPUS.read_text().strip()
    try:
        if rps_original is not None:
            # SIGTERM (e.g. `timeout`) unwinds through the finally below like Ctrl-C does.
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        return run(args, rps_original)
    finally:
        if rps_original is not None:
            write_rps(rps_original)
            print(f"{RPS_CPUS}: {RPS_CPUS.read_text().strip()} (restored)", flush=True)


def run(args, rps_original: str | None) -> int:
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
    if rps_original is not None:  # each server's +rps run right after its default run
        paired = {}
        for name, peer in SERVERS.items():
            paired[name] = paired[name + RPS_SUFFIX] = peer
        SERVERS.clear()
        SERVERS.update(paired)
    harness.prepare()
    scenarios = []
    for s in (x.strip() for x in args.scenarios.split(",") if x.strip()):
        if s == "saturation":
            scenarios.append(("saturation (1000 msg/s)",
                              {n: 1000.0 for n in SERVERS
                               if not n.startswith(("node ws", "trivial"))}))
        else:
            scenarios.append((f"{float(s):g} msg/s", {n: float(s) for n in SERVERS}))
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with open("/proc/loadavg") as f:
        load_before = f.read().split()[:3]
    bench = SideViewFanout(SERVERS, args)
    bench.rps_original = rps_original or ""
    results = bench.measure(scenarios)
    for by_server in results.values():
        for runs in by_server.values():
            for r in runs:
                r["cpu_ns_per_delivery"] = (1e9 / r["deliveries_per_cpu_s"]
                                            if r.get("deliveries_per_cpu_s") else None)
                for cpu, sec in enumerate(r.get("softirq_s", [])[:2]):
                    r[f"softirq_ms_cpu{cpu}"] = sec * 1000
    harness.MEDIANS = tuple(dict.fromkeys((*harness.MEDIANS, "cpu_ns_per_delivery",
                                           "softirq_ms_cpu0", "softirq_ms_cpu1")))
    columns = COLUMNS + (RPS_COLUMNS if rps_original is not None else [])
    lines, summary = harness.summarize(results, peers=[], columns=columns)
    lines = [ln.replace(" | CPU per delivery |", " | server CPU ns per delivery |")
             for ln in lines]
    for scenario, runs in results.items():
        lines.append("")
        lines.append(f"{scenario}:")

        def ratios(label: str, a: str, b: str, key: str = "cpu_ns_per_delivery",
                   what: str = "CPU per delivery") -> None:
            """One line: a / b of `key` and of p99, where both ran."""
            if a in runs and b in runs:
                lines.append(f"- {label}, {what}: " + per_round(runs, a, b, key)
                             + "; p99: " + per_round(runs, a, b, "p99_us"))

        for suffix in ("", RPS_SUFFIX):
            node = "node ws" + suffix
            for name in (n for n in runs
                         if n != node and n.endswith(RPS_SUFFIX) == bool(suffix)):
                ratios(f"{name} / {node}", name, node)
        for name in (n for n in runs if n.endswith(RPS_SUFFIX)):
            base = name[:-len(RPS_SUFFIX)]
            ratios(f"{name} / {base}", name, base, what="server CPU per delivery")
        for prefix in ("skyrelay", "before"):
            ratios(f"{prefix} io_uring / epoll", f"{prefix} io_uring", f"{prefix} epoll",
                   "deliveries_per_cpu_s", "deliveries per server-CPU-second")
        for path in ("epoll", "io_uring"):
            ratios(f"skyrelay {path} / trivial {path} (the floor)", f"skyrelay {path}",
                   f"trivial {path}")
        for path in ("epoll", "io_uring"):
            ratios(f"{path}, this build / before", f"skyrelay {path}", f"before {path}")
    lines.append("")
    lines.append(f"Started {started}, load average before: {' '.join(load_before)}")
    if rps_original is not None:
        lines.append(f"Side view: runs named '<server>{RPS_SUFFIX}' had {RPS_CPUS} = "
                     f"{1 << CLIENT_CPU:x} (loopback receive on the client's CPU {CLIENT_CPU}); "
                     f"it was {rps_original} before and after them.")
        args.rps_original = rps_original
    harness.report("lightload", lines, {"args": vars(args), "summary": summary, "runs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
