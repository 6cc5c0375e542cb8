"""The server raises its own open-file limit at start (skyrelay/_fd_limit.py).

Each case runs a real server in a child process started with a low soft RLIMIT_NOFILE (the
suite's own limit stays as it is), reads the limit the child has once the server is up, and
where it was raised, opens more WebSocket connections than the old limit would have allowed.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys

import pytest

from skyrelay.testing import stop_process

CHILD = """
import resource, sys
import skyrelay
server = skyrelay.Server("127.0.0.1", int(sys.argv[1]), max_connections=int(sys.argv[2]))
server.start()
print(*resource.getrlimit(resource.RLIMIT_NOFILE), flush=True)
sys.stdin.readline()
server.stop()
"""

HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")

pytestmark = pytest.mark.skipif(HARD != resource.RLIM_INFINITY and HARD < 2048,
                                reason="the hard open-file limit leaves no room to raise")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_child(soft: int, max_connections: int, raise_env: str | None):
    port = free_port()
    env = dict(os.environ)
    env.pop("SKYRELAY_RAISE_NOFILE", None)
    if raise_env is not None:
        env["SKYRELAY_RAISE_NOFILE"] = raise_env
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(port), str(max_connections)], env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, HARD)))
    line = proc.stdout.readline().split()
    assert len(line) == 2, "the child server did not start"
    return proc, port, int(line[0])


def upgrade(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(UPGRADE)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        assert chunk, "closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head[:80]
    return s


def test_raised_toward_max_connections_and_used():
    proc, port, soft = start_child(64, 200, None)
    socks = []
    try:
        assert soft == min(200 + 1024, HARD)
        # Far more connections than the 64 descriptors the process started with.
        socks = [upgrade(port) for _ in range(150)]
        assert len(socks) == 150
    finally:
        for s in socks:
            s.close()
        stop_process(proc)


def test_no_cap_raises_to_the_hard_limit():
    proc, _, soft = start_child(64, 0, None)
    stop_process(proc)
    assert soft == HARD or (HARD == resource.RLIM_INFINITY and soft == 64)


def test_switched_off_by_the_environment():
    proc, _, soft = start_child(64, 200, "0")
    stop_process(proc)
    assert soft == 64


def test_never_lowered():
    proc, _, soft = start_child(2048, 10, None)
    stop_process(proc)
    assert soft == 2048
