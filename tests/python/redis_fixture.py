"""A real redis-server for tests: Debian's binary on a free port of 127.0.0.1, in a temporary
directory, with no persistence; stopped by its process id when the test ends, failed or not.

conftest.py imports the fixtures from here: ``redis_server`` (one server per test),
``redis_server_factory`` (several, or with options such as ``"--requirepass", "pw"``) and
``redis_cluster`` (three cluster-enabled servers joined into a 3-master Redis Cluster).
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from skyrelay.testing import stop_process

START_SECONDS = 5.0  # how long a starting server may take to answer before the test fails


@dataclasses.dataclass
class RedisServer:
    host: str
    port: int
    pid: int
    password: str | None
    directory: Path
    _restart: Any = dataclasses.field(default=None, repr=False)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    def stop(self) -> None:
        """Stops this server (SIGTERM, by pid); :meth:`restart` starts it again."""
        self._restart(self, start=False)

    def restart(self) -> None:
        """Stops this server (when running) and starts a new, empty one on the same port."""
        self._restart(self)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    """True when the server answers an inline PING with a RESP line (+PONG, or -NOAUTH)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(1)[:1] in (b"+", b"-")
    except OSError:
        return False


def _start(directory: Path, extra: list[str],
           port: int | None = None) -> tuple[subprocess.Popen, int]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is missing (make deps installs Debian's redis-server)")
    fixed = port
    for _attempt in range(3 if fixed is None else 40):  # the port may be taken meanwhile
        if fixed is not None and _attempt:
            time.sleep(0.05)  # the old server's socket may linger a moment
        port = fixed if fixed is not None else _free_port()
        log = open(directory / "redis.log", "ab")
        args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(directory), *extra]
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + START_SECONDS
        while proc.poll() is None and time.monotonic() < deadline:
            if _answers(port):
                return proc, port
            time.sleep(0.025)
        stop_process(proc)
    log_text = (directory / "redis.log").read_text(errors="replace")[-2000:]
    pytest.fail(f"redis-server did not start:\n{log_text}")


@pytest.fixture
def redis_server_factory():
    """Starts redis-servers: ``factory(*extra_args, password=None)`` returns a RedisServer.
    Every server started is stopped by its pid after the test, even when the test fails."""
    started: list[tuple[subprocess.Popen, Path]] = []

    def factory(*extra: str, password: str | None = None) -> RedisServer:
        directory = Path(tempfile.mkdtemp(prefix="skyrelay-redis-"))
        args = list(extra) + (["--requirepass", password] if password else [])
        try:
            proc, port = _start(directory, args)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        started.append((proc, directory))
        return RedisServer("127.0.0.1", port, proc.pid, password, directory, restart)

    def restart(server: RedisServer, start: bool = True) -> None:
        index = next(i for i, (p, _) in enumerate(started) if p.pid == server.pid)
        proc, directory = started[index]
        stop_process(proc)
        if not start:
            return
        args = ["--requirepass", server.password] if server.password else []
        new, _port = _start(directory, args, server.port)
        started[index] = (new, directory)
        server.pid = new.pid

    try:
        yield factory
    finally:
        for proc, directory in started:
            stop_process(proc)
            shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def redis_server(redis_server_factory) -> RedisServer:
    """One redis-server for this test, with no password."""
    return redis_server_factory()


@dataclasses.dataclass
class RedisCluster:
    """A Redis Cluster of masters on 127.0.0.1 (no replicas), built by ``redis-cli --cluster
    create``; ``url`` names every master as a seed."""
    masters: list[RedisServer]

    @property
    def url(self) -> str:
        seeds = ",".join(f"{m.host}:{m.port}" for m in self.masters)
        return f"redis+cluster://{seeds}"


def _cluster_ok(port: int) -> bool:
    """True when the node says ``cluster_state:ok`` (every slot is served)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"CLUSTER INFO\r\n")
            data = b""
            while b"cluster_state" not in data or not data.endswith(b"\r\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return b"cluster_state:ok" in data
    except OSError:
        return False


@pytest.fixture
def redis_cluster(redis_server_factory) -> RedisCluster:
    """Three cluster-enabled redis-servers (each its own free port and bus port, temp directory)
    joined into one cluster of 3 masters, 0 replicas; stopped by pid after the test."""
    if shutil.which("redis-cli") is None:
        pytest.fail("redis-cli is missing (make deps installs Debian's redis-server)")
    masters = [redis_server_factory("--cluster-enabled", "yes", "--cluster-config-file",
                                    "nodes.conf", "--cluster-node-timeout", "2000",
                                    "--cluster-port", str(_free_port()))
               for _ in range(3)]
    create = subprocess.run(
        ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{m.port}" for m in masters),
         "--cluster-replicas", "0", "--cluster-yes"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    if create.returncode != 0:
        pytest.fail(f"redis-cli --cluster create failed:\n{create.stdout}\n{create.stderr}")
    deadline = time.monotonic() + 10
    while not all(_cluster_ok(m.port) for m in masters):
        if time.monotonic() > deadline:
            pytest.fail("the cluster did not reach cluster_state:ok")
        time.sleep(0.05)
    return RedisCluster(masters)
