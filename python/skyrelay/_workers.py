"""The supervisor of ``skyrelay run --workers N``: N worker processes serve one port with
``SO_REUSEPORT``; this process starts them, restarts one that dies (at most ``--max-restarts``
within a minute), and stops them all, by pid, on SIGINT or SIGTERM.

Each worker gets an AF_UNIX datagram socket pair from here: the worker reads one end (its
inbox) and every worker holds the other end of every pair, so that a worker that reads a request
for another's Engine.IO session can send that worker the connection (net/worker_handoff.hpp).
docs/deployment.md explains the design."""

from __future__ import annotations

import argparse
import errno
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque

from ._run_cli import WORKER_ENV, UsageError
from .server import Server

# How long workers get to start, and to drain after SIGTERM before they are killed.
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
RESTART_WINDOW_S = 60.0
# The handoff sockets' send buffer: a datagram (one request, up to 32 KiB inline) must fit.
HANDOFF_SNDBUF = 1 << 20


def _log(message: str) -> None:
    print(f"skyrelay run: {message}", file=sys.stderr, flush=True)


def _check_broker(args: argparse.Namespace, server: Server) -> None:
    broker = args.broker if args.broker is not None else server.broker
    if broker in ("", "memory") and not args.allow_memory_broker:
        raise UsageError(
            f"--workers {args.workers} with the in-memory broker: an event emitted in one "
            f"worker would not reach the clients of the others; name a shared broker "
            f"(--broker URL or Server(broker=...)), or pass --allow-memory-broker if each "
            f"worker's clients need only that worker's events")


def _reserve_port(host: str, port: int) -> int:
    """Checks that host:port is free (picking one for port 0) with a plain bind, released at
    once: the workers' SO_REUSEPORT sockets would otherwise join another server's group."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family = infos[0][0]
    except socket.gaierror as exc:
        raise UsageError(f"cannot resolve {host!r}: {exc.strerror}") from None
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(f"port {port} on {host} is in use") from None
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        return int(probe.getsockname()[1])


class Supervisor:
    """Starts, watches and stops the worker processes (one thread: the caller's)."""

    def __init__(self, args: argparse.Namespace, host: str, port: int) -> None:
        self.args = args
        self.host = host
        self.port = port
        self.pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
                      for _ in range(args.workers)]
        for send_end, _ in self.pairs:
            send_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, HANDOFF_SNDBUF)
        self.ready_r, self.ready_w = os.pipe()
        os.set_blocking(self.ready_r, False)
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * args.workers
        self.restarts: deque[float] = deque()
        self.stopping = threading.Event()

    def command(self) -> list[str]:
        a = self.args
        cmd = [sys.executable, "-m", "skyrelay.cli", "run", a.app, "--host", self.host,
               "--port", str(self.port)]
        if a.broker is not None:
            cmd += ["--broker", a.broker]
        return cmd

    def spawn(self, index: int) -> subprocess.Popen[bytes]:
        send_fds = [s.fileno() for s, _ in self.pairs]
        inbox = self.pairs[index][1].fileno()
        env = dict(os.environ)
        env[WORKER_ENV] = (f"{index};{','.join(map(str, send_fds))};{inbox};{self.ready_w}")
        # A session of its own: a terminal's Ctrl+C reaches this process only, which stops
        # the workers itself (and a worker stops when this process is gone).
        proc = subprocess.Popen(self.command(), env=env, pass_fds=[*send_fds, inbox,
                                                                   self.ready_w],
                                start_new_session=True)
        self.procs[index] = proc
        return proc

    def read_ready(self) -> list[tuple[int, int]]:
        """The (index, pid) lines the workers wrote since the last call."""
        try:
            data = os.read(self.ready_r, 65536)
        except BlockingIOError:
            return []
        return [(int(i), int(p)) for i, p in (line.split() for line in data.decode().split("\n")
                                              if line.strip())]

    def start_all(self) -> int:
        """Starts every worker and waits until each listens. 0, or the exit code to end with
        when one fails to start (2 when it said why: a user error)."""
        for index in range(self.args.workers):
            self.spawn(index)
        ready: set[int] = set()
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(ready) < self.args.workers:
            if self.stopping.is_set():
                return 0
            for index, proc in enumerate(self.procs):
                code = proc.poll() if proc else None
                if code is not None and index not in ready:
                    if code != 2:
                        _log(f"worker {index} exited with code {code} while starting")
                    return 2 if code == 2 else 1
            if time.monotonic() > deadline:
                _log(f"workers did not start within {START_TIMEOUT_S:.0f} s")
                return 1
            select.select([self.ready_r], [], [], 0.2)
            ready.update(index for index, _ in self.read_ready())
        return 0

    def watch(self) -> int:
        """Restarts workers that die until SIGINT/SIGTERM (0) or too many restarts (1)."""
        while not self.stopping.wait(0.2):
            self.read_ready()
            for index, proc in enumerate(self.procs):
                code = proc.poll() if proc is not None else None
                if proc is None or code is None:
                    continue
                now = time.monotonic()
                while self.restarts and now - self.restarts[0] > RESTART_WINDOW_S:
                    self.restarts.popleft()
                if len(self.restarts) >= self.args.max_restarts:
                    _log(f"worker {index} (pid {proc.pid}) exited with code {code}; "
                         f"{len(self.restarts)} restarts within a minute already: stopping")
                    return 1
                self.restarts.append(now)
                new = self.spawn(index)
                _log(f"worker {index} (pid {proc.pid}) exited with code {code}; restarted "
                     f"as pid {new.pid}")
        return 0

    def stop_all(self) -> None:
        """SIGTERM to every live worker (each drains), SIGKILL after STOP_GRACE_S, reaped."""
        live = [p for p in self.procs if p is not None and p.poll() is None]
        for proc in live:
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in live:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _log(f"worker pid {proc.pid} did not stop within {STOP_GRACE_S:.0f} s: killed")
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()

    def close(self) -> None:
        for a, b in self.pairs:
            a.close()
            b.close()
        os.close(self.ready_r)
        os.close(self.ready_w)


def supervise(args: argparse.Namespace, server: Server) -> int:
    """``skyrelay run --workers N`` (N > 1): the app was imported here to check it; the workers
    import it again, each in its own process."""
    _check_broker(args, server)
    if server.tls:
        _log("TLS: an Engine.IO polling request that reaches another worker than its "
             "session's cannot be handed over and gets unknown_sid; terminate TLS in front or "
             "use transports=['websocket'] (docs/deployment.md)")
    host = args.host if args.host is not None else server.host
    port = _reserve_port(host, args.port if args.port is not None else server.port)
    sup = Supervisor(args, host, port)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: sup.stopping.set())
    try:
        code = sup.start_all()
        if code == 0 and not sup.stopping.is_set():
            pids = " ".join(str(p.pid) for p in sup.procs if p)
            scheme = "https" if server.tls else "http"
            print(f"skyrelay serving on {scheme}://{host}:{port} with {args.workers} workers "
                  f"(pids {pids}); press Ctrl+C to stop", flush=True)
            code = sup.watch()
    finally:
        sup.stop_all()
        sup.close()
    return code
