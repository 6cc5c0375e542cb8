"""The redis_server fixture: a real server that answers, isolated per test, stopped by pid."""

from __future__ import annotations

import os
import socket


def _command(port: int, *parts: bytes) -> bytes:
    """Sends one RESP command over a plain socket and returns the first reply line."""
    payload = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = s.recv(4096)
            assert chunk, "redis-server closed the connection"
            data += chunk
    return data


def test_server_answers_ping_and_is_empty(redis_server):
    assert _command(redis_server.port, b"PING") == b"+PONG\r\n"
    assert _command(redis_server.port, b"DBSIZE") == b":0\r\n"
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"


def test_password_is_required_and_servers_are_stopped(redis_server_factory):
    locked = redis_server_factory(password="pw")
    assert _command(locked.port, b"PING").startswith(b"-NOAUTH")
    assert _command(locked.port, b"AUTH", b"pw") == b"+OK\r\n"
    assert locked.url == f"redis://:pw@127.0.0.1:{locked.port}/0"
    os.kill(locked.pid, 0)  # running now; the fixture stops it by this pid afterwards
