"""A real redis-server for tests: Debian's binary on a free port of 127.0.0.1, in a temporary
directory, with no persistence; stopped by its process id when the test ends, failed or not.

conftest.py imports the fixtures from here: ``redis_server`` (one server per test),
``redis_server_factory`` (several, or with options such as ``"--requirepass", "pw"``),
``redis_cluster`` (three cluster-enabled servers joined into a 3-master Redis Cluster) and
``redis_sentinel_factory`` (sentinels watching a master).
``redis_server_factory(tls=True)`` starts a server that speaks TLS only (``--port 0
--tls-port P``) with a throwaway CA and certificate for 127.0.0.1 (tlscerts.PKI, in the
server's directory); its ``url`` is ``rediss://127.0.0.1:P/0?ca=<that CA>``.
``tls="mutual"`` also requires a client certificate (``--tls-auth-clients yes``), the
PKI's ``client_cert``/``client_key``; ``url`` then names them too.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from skyrelay.testing import stop_process
from tlscerts import PKI

START_SECONDS = 5.0  # how long a starting server may take to answer before the test fails


@dataclasses.dataclass
class RedisServer:
    host: str
    port: int
    pid: int
    password: str | None
    directory: Path
    _restart: Any = dataclasses.field(default=None, repr=False)
    pki: PKI | None = None  # a TLS server's certificates
    mutual: bool = False    # a TLS server that requires a client certificate

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.pki is None:
            return f"redis://{auth}{self.host}:{self.port}/0"
        query = f"ca={self.pki.ca}"
        if self.mutual:
            query += f"&cert={self.pki.client_cert}&key={self.pki.client_key}"
        return f"rediss://{auth}{self.host}:{self.port}/0?{query}"

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


def _answers(port: int, pki: PKI | None = None) -> bool:
    """True when the server answers an inline PING with a RESP line (+PONG, or -NOAUTH); over
    TLS (with the PKI's client certificate) for a TLS server."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            if pki is None:
                s.sendall(b"PING\r\n")
                return s.recv(1)[:1] in (b"+", b"-")
            context = pki.client_context()
            context.load_cert_chain(pki.client_cert, pki.client_key)
            with context.wrap_socket(s, server_hostname="127.0.0.1") as t:
                t.sendall(b"PING\r\n")
                return t.recv(1)[:1] in (b"+", b"-")
    except (OSError, ssl.SSLError):
        return False


def _tls_args(pki: PKI, port: int, mutual: bool) -> list[str]:
    return ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(pki.cert),
            "--tls-key-file", str(pki.key), "--tls-ca-cert-file", str(pki.ca),
            "--tls-auth-clients", "yes" if mutual else "no"]


def _launch(args: list[str], log_path: Path, port: int,
            pki: PKI | None = None) -> subprocess.Popen | None:
    """Starts ``args`` with its output appended to ``log_path``: the process once it answers
    on ``port`` (within START_SECONDS), else None (it was stopped by its pid)."""
    log = open(log_path, "ab")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    deadline = time.monotonic() + START_SECONDS
    while proc.poll() is None and time.monotonic() < deadline:
        if _answers(port, pki):
            return proc
        time.sleep(0.025)
    stop_process(proc)
    return None


def _stop_all(started: list[tuple[subprocess.Popen, Path]]) -> None:
    """Stops every started process by its pid and removes its directory."""
    for proc, directory in started:
        stop_process(proc)
        shutil.rmtree(directory, ignore_errors=True)


def _start(directory: Path, extra: list[str], port: int | None = None,
           tls: tuple[PKI, bool] | None = None) -> tuple[subprocess.Popen, int]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is missing (make deps installs Debian's redis-server)")
    fixed = port
    for _attempt in range(3 if fixed is None else 40):  # the port may be taken meanwhile
        if fixed is not None and _attempt:
            time.sleep(0.05)  # the old server's socket may linger a moment
        port = fixed if fixed is not None else _free_port()
        args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(directory), *extra]
        if tls is not None:  # the later --port 0 wins: TLS only
            args += _tls_args(tls[0], port, tls[1])
        proc = _launch(args, directory / "redis.log", port, tls[0] if tls else None)
        if proc is not None:
            return proc, port
    log_text = (directory / "redis.log").read_text(errors="replace")[-2000:]
    pytest.fail(f"redis-server did not start:\n{log_text}")


@pytest.fixture
def redis_server_factory():
    """Starts redis-servers: ``factory(*extra_args, password=None)`` returns a RedisServer.
    Every server started is stopped by its pid after the test, even when the test fails."""
    started: list[tuple[subprocess.Popen, Path]] = []
    arguments: dict[Path, list[str]] = {}  # each server's, so a restart keeps them (cluster)

    def factory(*extra: str, password: str | None = None,
                tls: bool | str = False) -> RedisServer:
        directory = Path(tempfile.mkdtemp(prefix="skyrelay-redis-"))
        args = list(extra) + (["--requirepass", password] if password else [])
        try:
            pki = PKI(directory) if tls else None
            mutual = tls == "mutual"
            proc, port = _start(directory, args, tls=(pki, mutual) if pki else None)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        started.append((proc, directory))
        arguments[directory] = args
        return RedisServer("127.0.0.1", port, proc.pid, password, directory, restart, pki,
                           mutual)

    def restart(server: RedisServer, start: bool = True) -> None:
        index = next(i for i, (p, _) in enumerate(started) if p.pid == server.pid)
        proc, directory = started[index]
        stop_process(proc)
        if not start:
            return
        args = arguments[directory]
        tls = (server.pki, server.mutual) if server.pki else None
        new, _port = _start(directory, args, server.port, tls)
        started[index] = (new, directory)
        server.pid = new.pid

    try:
        yield factory
    finally:
        _stop_all(started)


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


@dataclasses.dataclass
class RedisSentinel:
    host: str
    port: int
    pid: int
    master_name: str


@pytest.fixture
def redis_sentinel_factory():
    """Starts `redis-server --sentinel` processes: ``factory(master, name="mymaster")`` returns
    a RedisSentinel monitoring `master` (a RedisServer) with quorum 1, down-after 1000 ms and
    failover-timeout 5000 ms, so a killed master is failed over within seconds. Every sentinel
    is stopped by its pid after the test."""
    started: list[tuple[subprocess.Popen, Path]] = []

    def factory(master: RedisServer, name: str = "mymaster") -> RedisSentinel:
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is missing (make deps installs Debian's redis-server)")
        directory = Path(tempfile.mkdtemp(prefix="skyrelay-sentinel-"))
        for _attempt in range(3):  # the port may be taken meanwhile
            port = _free_port()
            conf = directory / "sentinel.conf"  # sentinel rewrites it: in the temp dir
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
                f"sentinel monitor {name} {master.host} {master.port} 1\n"
                f"sentinel down-after-milliseconds {name} 1000\n"
                f"sentinel failover-timeout {name} 5000\n"
                f"sentinel parallel-syncs {name} 1\n"
                + (f"sentinel auth-pass {name} {master.password}\n" if master.password else ""))
            proc = _launch(["redis-server", str(conf), "--sentinel"],
                           directory / "sentinel.log", port)
            if proc is not None:
                started.append((proc, directory))
                return RedisSentinel("127.0.0.1", port, proc.pid, name)
        log_text = (directory / "sentinel.log").read_text(errors="replace")[-2000:]
        shutil.rmtree(directory, ignore_errors=True)
        pytest.fail(f"redis-server --sentinel did not start:\n{log_text}")

    try:
        yield factory
    finally:
        _stop_all(started)
