"""Connection scale: how many idle connections one server process holds, what they cost, and how
fast one publication reaches all of them; skyrelay beside Node `ws` and Node socket.io.

For each server and transport (skyrelay: the JSON protocol at /ws/bench, Socket.IO over
WebSocket, SSE at /sse/bench; Node `ws`; Node socket.io), one run:

1. The server starts pinned to CPU 1 (servers/scale_skyrelay.py, servers/scale_node.mjs), with
   the given heartbeat interval; its RSS is read from /proc/<pid>/status once it listens.
2. The load client (bench/loadclient, pinned to CPU 0) opens N connections, --connect-concurrency
   at a time (non-blocking, in its event loop, answering pings on the open ones meanwhile),
   each with its handshake (WebSocket upgrade and the Socket.IO CONNECT, or the SSE GET). It
   binds each socket to one of many loopback source addresses (127.k.0.1 onwards, at most
   --per-address connections each) so neither the ephemeral ports of one address nor the
   server's per-address limit bind. More than --per-process connections are split over several
   load client processes, each with its own addresses, started together.
3. Accepts per second: N over the wall time until every load client has its connections open
   (the server's rate once --connect-concurrency keeps it busy; handshakes per second over TLS).
4. After --settle seconds the server's RSS is read again: memory per idle connection is that
   growth over N. Before each reading the server runs a full garbage collection (Python's
   gc.collect(); Node's gc() under --expose-gc) so handshake garbage is not counted. This is
   user-space memory only: the kernel's memory for the sockets is not in RSS; the growth of
   the machine's slab memory (/proc/meminfo) is reported apart, for both ends together.
5. The connections are held --hold seconds; the load client answers pings (WebSocket and
   Engine.IO) on the way. The server's CPU over the hold is the heartbeat cost.
6. The driver writes PUBLISH to the server: one ~100-byte message to every connection. The
   fan-out time is the latest of the load clients' receive times minus the publish time carried
   in the message (one CLOCK_MONOTONIC on one machine).

    .venv/bin/python bench/run_scale.py --clients 5000 --hold 30
    .venv/bin/python bench/run_scale.py --clients 19000 --hold 60 --runs skyrelay-json,node-ws

Every wait is bounded; every process started is stopped by its pid. Results go to
bench/results/scale-<stamp>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import harness
from harness import HERE, LOADCLIENT, RESULTS, cpu_seconds, free_port, stop, wait_port

SIO_PATH = "/socket.io/?EIO=4&transport=websocket"
NODE_SCRIPT = str(HERE / "servers" / "scale_node.mjs")

# name -> (server command without --port, load client path, load client protocol)
RUNS = {
    "skyrelay-json": (harness.server("scale_skyrelay.py", "--protocol", "json"), "/ws/bench", "ws"),
    "skyrelay-socketio": (harness.server("scale_skyrelay.py", "--protocol", "socketio"),
                          SIO_PATH, "socketio"),
    "skyrelay-sse": (harness.server("scale_skyrelay.py", "--protocol", "sse"), "/sse/bench", "sse"),
    "node-ws": (["node", "--expose-gc", NODE_SCRIPT, "--protocol", "ws"], "/ws/bench", "ws"),
    "node-socketio": (["node", "--expose-gc", NODE_SCRIPT, "--protocol", "socketio"], SIO_PATH,
                      "socketio"),
}
TLS_CAPABLE = {"skyrelay-json", "skyrelay-socketio", "skyrelay-sse", "node-ws", "node-socketio"}


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def context_switches(pid: int) -> int:
    """Voluntary context switches of all the process's threads: each is a thread going to sleep
    (epoll_wait, a lock), so over an idle hold it counts the wake-ups that the heartbeats cost.
    Unlike CPU time it does not shrink when a busy machine makes timers pile up between runs."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            with open(task / "status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        total += int(line.split()[1])
        except FileNotFoundError:  # a thread that ended meanwhile
            pass
    return total


def kernel_slab_bytes() -> int:
    """The kernel's slab memory, machine-wide (/proc/meminfo): sockets, files, epoll items and
    the rest. Its growth over a run is both ends' kernel memory per connection, give or take
    what else the machine does meanwhile. (/proc/net/sockstat's TCP "mem" counts only data
    queued in socket buffers, about nothing for idle connections.)"""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Slab:"):
                return int(line.split()[1]) * 1024
    return 0


def raise_fd_limit() -> int:
    """Raises this driver's soft RLIMIT_NOFILE to the hard limit (the servers and load clients
    it starts inherit it); returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Client:
    """One load client process: its share of the connections and the moment it said that it
    has them open (read from its stderr on a thread)."""

    def __init__(self, cmd: list[str]) -> None:
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.connected_at: float | None = None
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())
            if " connected in " in line and self.connected_at is None:
                self.connected_at = time.monotonic()

    def result(self, timeout: float) -> dict:
        out, _ = self.proc.communicate(timeout=timeout)
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        return json.loads(lines[-1]) if lines else {}


def command(server_cmd: list[str], port: int, args: argparse.Namespace,
            tls: tuple[Path, Path] | None) -> list[str]:
    cmd = ["taskset", "-c", "1", *server_cmd, "--port", str(port), "--clients", str(args.clients),
           "--heartbeat", str(args.heartbeat), "--max-seconds", str(args.hold + 600)]
    if tls:
        cmd += ["--certfile", str(tls[0]), "--keyfile", str(tls[1])]
    return cmd


def client_commands(port: int, path: str, protocol: str, args: argparse.Namespace,
                    ca: Path | None) -> list[list[str]]:
    procs = math.ceil(args.clients / args.per_process)
    shares = [args.clients // procs + (k < args.clients % procs) for k in range(procs)]
    cmds = []
    for k, share in enumerate(shares):
        addresses = math.ceil(share / args.per_address)
        cmd = ["taskset", "-c", "0", str(LOADCLIENT), "--port", str(port), "--path", path,
               "--protocol", protocol, "--clients", str(share), "--expect", "1",
               "--warmup", "0", "--duration", "30", "--hold", str(args.hold + 600),
               "--bind-base", f"127.{k + 1}.0.1", "--bind-count", str(addresses),
               "--connect-concurrency", str(args.connect_concurrency)]
        if ca:
            cmd += ["--ca", str(ca)]
        cmds.append(cmd)
    return cmds


def server_line(proc: subprocess.Popen, send: str, prefix: str, timeout: float = 60.0) -> str:
    proc.stdin.write(send + "\n")
    proc.stdin.flush()
    return harness.wait_line(proc, prefix, timeout).strip()


def run_one(name: str, args: argparse.Namespace, tls: tuple[Path, Path] | None) -> dict:
    # "<run>/nogrid": a skyrelay run with its heartbeat deadlines exact, one wake-up per
    # connection (SKYRELAY_HEARTBEAT_GRID=0, see cpp/include/skyrelay/net/heartbeat_grid.hpp):
    # the before/after of the heartbeat batching in one build.
    base, _, variant = name.partition("/")
    server_cmd, path, protocol = RUNS[base]
    env = dict(os.environ, SKYRELAY_HEARTBEAT_GRID="0") if variant == "nogrid" else None
    port = free_port()
    log = open(RESULTS / f"scale-{base}-server.log", "w")
    server = subprocess.Popen(command(server_cmd, port, args, tls), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    clients: list[Client] = []
    try:
        wait_port(port, server)
        # The empty server's own CPU (timers, the Python side) over the same span as the hold,
        # at most 10 s: what the hold's CPU is compared with.
        te, cpue = time.monotonic(), cpu_seconds(server.pid)
        time.sleep(min(max(args.hold, 1.0), 10.0))
        empty_cpu_pct = (cpu_seconds(server.pid) - cpue) / (time.monotonic() - te) * 100
        server_line(server, "GC", "GCED")
        rss0, kernel0, cpu0 = rss_bytes(server.pid), kernel_slab_bytes(), cpu_seconds(server.pid)
        start = time.monotonic()
        clients = [Client(c) for c in client_commands(port, path, protocol, args,
                                                      tls[0] if tls else None)]
        # Bounded: a generous 4 ms per connection (20 ms over TLS), at least a minute.
        deadline = start + max(60.0, args.clients * (0.02 if tls else 0.004))
        while any(c.connected_at is None for c in clients) and time.monotonic() < deadline:
            if any(c.proc.poll() is not None and c.connected_at is None for c in clients):
                break
            time.sleep(0.05)
        opened = [c.connected_at for c in clients if c.connected_at is not None]
        if len(opened) < len(clients):
            raise RuntimeError(f"{name}: load clients did not connect: "
                               f"{[c.stderr[-3:] for c in clients]}")
        connect_wall = max(opened) - start
        cpu_connect = cpu_seconds(server.pid) - cpu0
        time.sleep(args.settle)
        server_line(server, "GC", "GCED")
        rss1, kernel1 = rss_bytes(server.pid), kernel_slab_bytes()
        held = int(server_line(server, "COUNT", "COUNT").split()[1])
        t1, cpu1, cs1 = time.monotonic(), cpu_seconds(server.pid), context_switches(server.pid)
        time.sleep(args.hold)
        t2, cpu2, cs2 = time.monotonic(), cpu_seconds(server.pid), context_switches(server.pid)
        server_line(server, "GC", "GCED")
        rss2 = rss_bytes(server.pid)
        held_after = int(server_line(server, "COUNT", "COUNT").split()[1])
        server_line(server, "PUBLISH", "PUBLISHED")
        outs = [c.result(timeout=90) for c in clients]
    finally:
        for c in clients:
            stop(c.proc)
        stop(server)
        log.close()
    connected = sum(o.get("connected", 0) for o in outs)
    return {
        "name": name, "tls": bool(tls), "clients": args.clients, "connected": connected,
        "held": held, "held_after_hold": held_after,
        "closed_by_server": sum(o.get("closed_by_server", 0) for o in outs),
        "failed_to_open": sum(o.get("failed_to_open", 0) for o in outs),
        "received": sum(o.get("complete_clients", 0) for o in outs),
        "load_processes": len(outs),
        "connect_wall_s": round(connect_wall, 3),
        "accepts_per_s": round(connected / connect_wall, 1),
        "server_cpu_per_accept_us": round(cpu_connect / max(connected, 1) * 1e6, 1),
        "rss_before_mb": round(rss0 / 2**20, 1), "rss_held_mb": round(rss1 / 2**20, 1),
        "rss_after_hold_mb": round(rss2 / 2**20, 1),
        "bytes_per_conn": round((rss1 - rss0) / max(connected, 1)),
        "bytes_per_conn_after_hold": round((rss2 - rss0) / max(connected, 1)),
        "kernel_slab_bytes_per_conn_both_ends": round((kernel1 - kernel0) / max(connected, 1)),
        "hold_s": round(t2 - t1, 2),
        "hold_cpu_pct": round((cpu2 - cpu1) / (t2 - t1) * 100, 2),
        "hold_wakeups_per_s": round((cs2 - cs1) / (t2 - t1), 1),
        "empty_cpu_pct": round(empty_cpu_pct, 2),
        "fanout_ms": round(max(o.get("max_us", 0) for o in outs) / 1000, 2),
        "fanout_p50_ms": round(max(o.get("p50_us", 0) for o in outs) / 1000, 2),
        "loadclients": outs,
    }


def table(rows: list[dict], args: argparse.Namespace, fd_limit: int) -> list[str]:
    lines = [f"N = {args.clients} connections, held {args.hold:g} s, heartbeat every "
             f"{args.heartbeat:g} s, RLIMIT_NOFILE {fd_limit}", "",
             "| run | connected / held | accepts/s (TLS: handshakes/s) | server CPU per accept | RSS per conn "
             "(after hold) | kernel slab per conn, both ends | CPU while holding "
             "(empty server) | wake-ups/s while holding | fan-out to all (p50) | closed by server |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        name = r["name"] + (" (TLS)" if r["tls"] else "")
        lines.append(
            f"| {name} | {r['connected']} / {r['held_after_hold']} | {r['accepts_per_s']:.0f} | "
            f"{r['server_cpu_per_accept_us']:.0f} µs | {r['bytes_per_conn'] / 1024:.1f} KB "
            f"({r['bytes_per_conn_after_hold'] / 1024:.1f} KB) | "
            f"{r['kernel_slab_bytes_per_conn_both_ends'] / 1024:.1f} KB | "
            f"{r['hold_cpu_pct']:.2f} % ({r['empty_cpu_pct']:.2f} %) | {r['hold_wakeups_per_s']:.0f} | "
            f"{r['fanout_ms']:.1f} ms ({r['fanout_p50_ms']:.1f} ms) | "
            f"{r['closed_by_server']} |")
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=5000)
    p.add_argument("--hold", type=float, default=30.0, help="seconds idle (capped at 3600)")
    p.add_argument("--heartbeat", type=float, default=25.0, help="ping / keep-alive interval, s")
    p.add_argument("--settle", type=float, default=3.0)
    p.add_argument("--runs", default=",".join(RUNS), help=f"a subset of {','.join(RUNS)}")
    p.add_argument("--tls", action="store_true", help="also each run over TLS")
    p.add_argument("--tls-only", action="store_true", help="each run over TLS only")
    p.add_argument("--per-process", type=int, default=0,
                   help="connections per load client process (default: the fd limit less 100)")
    p.add_argument("--connect-concurrency", type=int, default=64,
                   help="connections each load client opens at once")
    p.add_argument("--per-address", type=int, default=500,
                   help="connections per loopback source address (skyrelay allows 1,000)")
    args = p.parse_args()
    args.hold = min(max(args.hold, 0.0), 3600.0)
    fd_limit = raise_fd_limit()
    args.per_process = args.per_process or fd_limit - 100
    if args.clients > fd_limit - 100:
        print(f"note: past RLIMIT_NOFILE {fd_limit}, skyrelay runs one descriptor table per I/O "
              f"thread (servers/scale_skyrelay.py); the Node peers hold at most ~{fd_limit} "
              "each", file=sys.stderr)
    harness.prepare()
    names = [n for n in args.runs.split(",") if n]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        certs = None
        args.tls = args.tls or args.tls_only
        if args.tls:
            from run_tls import make_cert
            certs = make_cert(Path(tmp))
        plan = [] if args.tls_only else [(n, None) for n in names]
        plan += [(n, certs) for n in names if certs and n.partition("/")[0] in TLS_CAPABLE]
        for name, tls in plan:
            print(f"{name}{' tls' if tls else ''}: {args.clients} connections ...", flush=True)
            try:
                r = run_one(name, args, tls)
            except (RuntimeError, TimeoutError, subprocess.TimeoutExpired) as e:
                print(f"  failed: {e}", flush=True)
                continue
            rows.append(r)
            print(f"  {json.dumps({k: v for k, v in r.items() if k != 'loadclients'})}",
                  flush=True)
    harness.report("scale", table(rows, args, fd_limit),
                   {"args": vars(args), "fd_limit": fd_limit, "runs": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
