"""What every fan-out benchmark driver shares: the load client, the servers under test, the
measurement of one run, the rounds, the medians, the table and the result files.

A driver (run_fanout.py, run_socketio.py, run_sse.py, run_tls.py, ...) names its servers and
its scenarios, and hands them to a `Fanout`:

    args = harness.parse_args(harness.argument_parser(__doc__))
    bench = harness.Fanout({"skyrelay": harness.Peer(harness.server("skyrelay_server.py"))},
                           args, path="/ws/bench", protocol="ws")
    results = bench.measure([("saturation", {"skyrelay": 1000.0})])
    lines, summary = harness.summarize(results, peers=[])
    harness.report("mine", lines, {"args": vars(args), "summary": summary, "runs": results})

Method of one run (`Fanout.run_once`): the server pinned to CPU 1, the C++ load client
(bench/loadclient) to CPU 0; the server waits for every client, says PUBLISHING on stdout and
publishes at the offered rate; the server's CPU time comes from its threads' schedstat (or
/proc/<pid>/stat) over the client's measured window, the rest of the machine's from /proc/stat.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from skyrelay.testing import stop_process

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
PYTHON = sys.executable
LOADCLIENT = HERE / "build" / "loadclient" / "loadclient"
# The trivial server (loadclient/trivial_server.cpp), built with the load client.
TRIVIAL_SERVER = HERE / "build" / "loadclient" / "trivial_server"
TICK = os.sysconf("SC_CLK_TCK")

# A scenario: its name in the table, and the offered messages/s of each server it runs.
Scenario = tuple[str, dict[str, float]]
# Per scenario, per server: the runs (one dict per round, as run_once returns it).
Results = dict[str, dict[str, list[dict]]]


@dataclass(frozen=True)
class Peer:
    """A server under test: its command line (the harness adds --port, --clients, --rate and
    --seconds, see servers/common.py) and the load client's extra arguments for it."""

    command: list[str]
    client_args: tuple[str, ...] = ()


def server(script: str, *extra: str) -> list[str]:
    """The command line of a Python benchmark server in bench/servers/."""
    return [PYTHON, str(HERE / "servers" / script), *extra]


def trivial(protocol: str = "ws") -> Peer:
    """The trivial server for `protocol` (ws or socketio): pre-encoded frames to every
    connection as fast as it can, so that its run shows the load client's own ceiling."""
    return Peer([str(TRIVIAL_SERVER), "--protocol", protocol])


def build_loadclient() -> None:
    build = HERE / "build" / "loadclient"
    subprocess.run(["cmake", "-S", str(HERE / "loadclient"), "-B", str(build), "-G", "Ninja",
                    "-DCMAKE_BUILD_TYPE=Release"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", str(build)], check=True, stdout=subprocess.DEVNULL)


def prepare() -> None:
    """Builds the load client and makes bench/results/: what a driver does before its runs."""
    build_loadclient()
    RESULTS.mkdir(exist_ok=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def thread_cpu_ns(pid: int) -> dict[int, int]:
    """Each live thread's CPU time in ns (the scheduler's sum_exec_runtime, first field of
    /proc/<pid>/task/<tid>/schedstat): exact where utime + stime come in 10 ms ticks, which at
    light load (~0.3 CPU-s in a 5 s window) is a 3 % step. Empty where schedstat is absent."""
    out: dict[int, int] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[int(tid)] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return {}
    return out


class CpuMark:
    """A process's CPU time at one moment, for `seconds_since`: the per-thread scheduler
    clocks when the same threads are alive at both marks, utime + stime otherwise (a thread
    that ended in between took its schedstat with it)."""

    def __init__(self, pid: int) -> None:
        self.threads = thread_cpu_ns(pid)
        self.ticks = cpu_seconds(pid)

    def seconds_since(self, earlier: "CpuMark") -> float:
        if self.threads and self.threads.keys() == earlier.threads.keys():
            return sum(self.threads.values()) / 1e9 - sum(earlier.threads.values()) / 1e9
        return self.ticks - earlier.ticks


def busy_seconds() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine (all cores), from /proc/stat. Busy
    excludes idle, iowait and steal (time the hypervisor gave to other guests)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (sum(v) - v[3] - v[4] - v[7]) / TICK, v[7] / TICK


def softirq_seconds() -> list[float]:
    """Per CPU, the time the tick found it in softirq (/proc/stat's seventh column; without
    CONFIG_IRQ_TIME_ACCOUNTING the same time is also in the running task's system time)."""
    with open("/proc/stat") as f:
        return [int(line.split()[7]) / TICK for line in f
                if line.startswith("cpu") and line[3].isdigit()]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Waits until the server under test accepts connections."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited; see bench/results/*-server.log")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def wait_line(proc: subprocess.Popen, prefix: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return line
        if not line and proc.poll() is not None:
            raise RuntimeError(f"server exited before {prefix!r}; see bench/results/*-server.log")
    raise TimeoutError(f"no {prefix!r} within {timeout}s")


# Stops a process this harness started, by its pid: SIGTERM, then SIGKILL after 5 s.
stop = stop_process


class QuietWaiter:
    """On a shared machine: before a run, waits until the whole machine was under 10% of one
    core busy for 2 s, spending at most `budget` seconds on waiting over the whole benchmark.
    A budget of 0 turns the waiting off."""

    def __init__(self, budget: float) -> None:
        self.enabled = budget > 0
        self.left = budget
        self.waited = 0.0

    def wait(self) -> bool | None:
        """Returns whether the machine was quiet (False: the budget ran out first; None: the
        waiting is off)."""
        if not self.enabled:
            return None
        while self.left > 0:
            b0, t0 = busy_seconds()[0], time.monotonic()
            time.sleep(2.0)
            b1, t1 = busy_seconds()[0], time.monotonic()
            if b1 - b0 < 0.1 * (t1 - t0):
                return True
            self.left -= t1 - t0
            self.waited += t1 - t0
        return False


def argument_parser(doc: str, *, wait_quiet: bool = False) -> argparse.ArgumentParser:
    """The options every fan-out driver takes (a driver adds its own rates and scenarios)."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--duration", type=float, default=6.0)
    p.add_argument("--quick", action="store_true", help="1 round, short windows (smoke test)")
    if wait_quiet:
        p.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                       help="before each run wait for an idle machine, at most S seconds in all")
    return p


def parse_args(p: argparse.ArgumentParser, quick_duration: float = 3.0) -> argparse.Namespace:
    """Parses the command line; --quick is 1 round, a 1 s warm-up and `quick_duration` s."""
    args = p.parse_args()
    if args.quick:
        args.rounds, args.warmup, args.duration = 1, 1.0, quick_duration
    return args


@dataclass
class Fanout:
    """One fan-out benchmark: its servers, how the load client reaches them (path, protocol),
    and the load (clients, warm-up, measured window, rounds) taken from the parsed options.

    `retry_budget_s`: a run disturbed by other work on the machine is repeated (at most twice)
    while the benchmark has been running for less than this (time spent waiting for a quiet
    machine not counted); None: never repeated. `fail_fast`: a run that fails raises; otherwise
    the failure is printed and the server has one run fewer (a scenario with none: "failed").
    With --wait-quiet among the options (argument_parser(wait_quiet=True)) each run waits for
    a quiet machine first and records `started_quiet`."""

    servers: dict[str, Peer]
    args: argparse.Namespace
    path: str = "/ws/bench"
    protocol: str = "ws"
    retry_budget_s: float | None = None
    fail_fast: bool = False
    waiter: QuietWaiter | None = field(init=False)
    started: float = field(init=False, default_factory=time.monotonic)

    def __post_init__(self) -> None:
        wait_quiet = getattr(self.args, "wait_quiet", None)
        self.waiter = QuietWaiter(wait_quiet) if wait_quiet is not None else None

    def run_once(self, name: str, rate: float) -> dict:
        """One run of server `name` at `rate` messages/s: the load client's JSON line with the
        server's CPU and the machine's disturbance added."""
        args, peer = self.args, self.servers[name]
        port = free_port()
        env = dict(os.environ, PYTHONPATH=str(HERE / "servers"))
        server = client = None
        try:
            # stderr goes to a file: an unread pipe could fill up and stall the server under test.
            log = open(RESULTS / f"{name}-server.log", "w")
            server = subprocess.Popen(
                ["taskset", "-c", "1", *peer.command, "--port", str(port),
                 "--clients", str(args.clients), "--rate", str(rate),
                 "--seconds", str(args.warmup + args.duration + 1.5)],
                stdout=subprocess.PIPE, stderr=log, text=True, env=env)
            wait_port(port, server)
            client = subprocess.Popen(
                ["taskset", "-c", "0", str(LOADCLIENT), "--port", str(port), "--path", self.path,
                 "--protocol", self.protocol, "--clients", str(args.clients),
                 "--warmup", str(args.warmup), "--duration", str(args.duration),
                 *peer.client_args],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            wait_line(server, "PUBLISHING", 60)
            time.sleep(args.warmup)
            cpu0, t0, busy0 = CpuMark(server.pid), time.monotonic(), busy_seconds()
            softirq0 = softirq_seconds()
            time.sleep(args.duration)
            cpu1, t1, busy1 = CpuMark(server.pid), time.monotonic(), busy_seconds()
            softirq1 = softirq_seconds()
            out, err = client.communicate(timeout=args.duration + 60)
            result = json.loads(out.strip().splitlines()[-1])
            server_cpu = cpu1.seconds_since(cpu0)
            other_cpu = busy1[0] - busy0[0] - server_cpu - result["client_cpu_s"]
            result.update(
                server=name, rate=rate, server_cpu_s=round(server_cpu, 3),
                server_cpu_util=round(server_cpu / (t1 - t0), 3),
                deliveries_per_cpu_s=(round(result["deliveries"] / server_cpu, 1)
                                      if server_cpu else None),
                client_bound=result["client_cpu_s"] >= 0.9 * result["duration_s"],
                client_cpu_util=round(result["client_cpu_s"] / result["duration_s"], 3),
                # CPU used by anything else on the machine during the window (the client's window
                # is its own, so this is approximate): above 15% of a core the run was disturbed.
                other_cpu_s=round(other_cpu, 3),
                steal_s=round(busy1[1] - busy0[1], 3),
                # per CPU (0, 1, ...): seconds the tick found in softirq during the window,
                # e.g. the loopback receive path (run_lightload.py's --rps side view moves it)
                softirq_s=[round(b - a, 3) for a, b in zip(softirq0, softirq1)],
                disturbed=other_cpu > 0.15 * (t1 - t0),
                # published_per_s comes from the client (span of the payloads' "seq" in its
                # window): a publisher that cannot keep up with the offered rate shows as
                # published < rate.
                demanded_per_s=rate * args.clients,
            )
            return result
        finally:
            stop(client)
            stop(server)

    def measure(self, scenarios: list[Scenario]) -> Results:
        """Every scenario, in interleaved rounds (a, b, c, a, b, c, ...), printing each run."""
        results: Results = {}
        for scenario, rates in scenarios:
            results[scenario] = {name: [] for name in rates}
            for rnd in range(self.args.rounds):
                for name, rate in rates.items():
                    r = self._attempts(f"[{scenario}] round {rnd + 1} {name}", name, rate)
                    if r is not None:
                        results[scenario][name].append(r)
                        print(f"[{scenario}] round {rnd + 1} {name}: {progress(r)}", flush=True)
        if self.waiter is not None:
            print(f"\n{time.monotonic() - self.started:.0f} s ({self.waiter.waited:.0f} s "
                  f"waiting for a quiet machine)", flush=True)
        return results

    def _attempts(self, label: str, name: str, rate: float) -> dict | None:
        """One round of one server, repeated while disturbed (see retry_budget_s); None when it
        failed and fail_fast is off."""
        attempts = 1 if self.retry_budget_s is None else 3
        r = None
        for attempt in range(attempts):
            quiet = self.waiter.wait() if self.waiter is not None else None
            try:
                r = self.run_once(name, rate)
            except Exception as exc:  # a server that cannot run is reported, not hidden
                if self.fail_fast:
                    raise
                print(f"{label}: failed: {exc}", flush=True)
                return None
            if self.retry_budget_s is not None:
                r["attempt"] = attempt + 1
            if self.waiter is not None:
                r["started_quiet"] = quiet
            if not r["disturbed"] or attempt == attempts - 1 or self._over_budget():
                break
            print(f"{label}: disturbed (other cpu {r['other_cpu_s']} s), repeating", flush=True)
            time.sleep(3)
        return r

    def _over_budget(self) -> bool:
        waited = self.waiter.waited if self.waiter is not None else 0.0
        return time.monotonic() - self.started - waited > (self.retry_budget_s or 0.0)


def progress(r: dict) -> str:
    """One run in a line of the driver's console output."""
    return (f"{r['deliveries_per_s']:.0f}/s, {r['deliveries_per_cpu_s']}/cpu-s, "
            f"p50 {r['p50_us']} us, p99 {r['p99_us']} us, "
            f"server cpu {r['server_cpu_util']:.2f}, client cpu {r['client_cpu_s']} s, "
            f"client-bound={r['client_bound']}, connected {r['connected']}, "
            f"closed {r['closed_by_server']}, other cpu {r['other_cpu_s']} s"
            + (f", {r['tls_version']} {r['tls_cipher']}" if r.get("tls") else ""))


def median(runs: list[dict], key: str) -> float:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else float("nan")


# The table's columns after scenario and server: (header, key of the medians row).
COLUMNS = [("published msg/s", "published_per_s"), ("deliveries/s", "deliveries_per_s"),
           ("deliveries per server-CPU-s", "deliveries_per_cpu_s"), ("p50", "p50_us"),
           ("p99", "p99_us"), ("server CPU", "server_cpu_util"),
           ("client-bound runs", "client_bound_runs"), ("disturbed runs", "disturbed_runs")]
MEDIANS = ("published_per_s", "deliveries_per_s", "deliveries_per_cpu_s", "p50_us", "p99_us",
           "server_cpu_util", "client_cpu_util")


def cell(key: str, row: dict, runs: int) -> str:
    value = row[key]
    if key.endswith("_us"):
        return f"{value / 1000:.2f} ms"
    if key.endswith("_runs"):
        return f"{value}/{runs}"
    if key in ("server_cpu_util", "client_cpu_util"):
        return f"{value:.0%}"
    return f"{value:,.0f}"


def summarize(results: Results, peers: list[str],
              columns: list[tuple[str, str]] = COLUMNS) -> tuple[list[str], dict]:
    """A run's markdown table (medians per scenario and server) and summary, with skyrelay's
    ratio to each peer in deliveries per server-CPU-second at saturation."""
    lines = ["| scenario | server | " + " | ".join(h for h, _ in columns) + " |",
             "|---|---|" + "---:|" * len(columns)]
    summary: dict = {}
    for scenario, by_server in results.items():
        for name, runs in by_server.items():
            if not runs:
                lines.append(f"| {scenario} | {name} | failed |" + " |" * (len(columns) - 1))
                continue
            row = {k: median(runs, k) for k in MEDIANS}
            row["client_bound_runs"] = sum(r["client_bound"] for r in runs)
            row["disturbed_runs"] = sum(r["disturbed"] for r in runs)
            summary.setdefault(scenario, {})[name] = row
            lines.append(f"| {scenario} | {name} | "
                         + " | ".join(cell(k, row, len(runs)) for _, k in columns) + " |")
    if peers and "skyrelay" in summary.get("saturation", {}):
        lines.append("")
        for peer in peers:
            got = ratio(results, "saturation", "skyrelay", peer)
            if got:
                summary[f"ratio_vs_{peer}"] = round(got[0], 2)
                lines.append(ratio_line("skyrelay", peer, "at saturation", *got, digits=1))
    return lines, summary


def ratio(results: Results, scenario: str, a: str, b: str) -> tuple[float, list[float]] | None:
    """`a / b` in deliveries per server-CPU-second: the ratio of the medians, and per round
    (None when either has no run in the scenario)."""
    runs = results.get(scenario, {})
    if not runs.get(a) or not runs.get(b):
        return None
    key = "deliveries_per_cpu_s"
    per_round = [x[key] / y[key] for x, y in zip(runs[a], runs[b])]
    return median(runs[a], key) / median(runs[b], key), per_round


def ratio_line(a: str, b: str, where: str, value: float, per_round: list[float],
               digits: int) -> str:
    return (f"{a} / {b}, deliveries per server-CPU-second {where}: **{value:.{digits}f}x** "
            f"(per round: {', '.join(f'{x:.{digits}f}x' for x in per_round)})")


def save(prefix: str, data: object, table: str | None = None) -> Path:
    """Writes bench/results/<prefix>-<stamp>.json (and .md with the table); returns the JSON's
    path."""
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"{prefix}-{stamp}.json"
    path.write_text(json.dumps(data, indent=2))
    if table is not None:
        (RESULTS / f"{prefix}-{stamp}.md").write_text(table + "\n")
    return path


def report(prefix: str, lines: list[str], data: object) -> None:
    """Prints the table and saves it with the run's data (see save)."""
    table = "\n".join(lines)
    print("\n" + table)
    save(prefix, data, table)
