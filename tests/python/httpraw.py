"""Raw HTTP/1.1 over a plain socket on 127.0.0.1, for tests that must see exactly what the
server writes (status line, header block, a close) without a client library in between."""

from __future__ import annotations

import socket
import time


def read_head(s: socket.socket) -> bytes:
    """Reads until the end of a header block, or until the server closes; returns every byte
    read (the head and whatever came after it in the same reads)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def read_to_close(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Sends one request on a new connection (it should ask for Connection: close, unless the
    server closes anyway) and returns every byte the server wrote until it closed the
    connection, or until `timeout` s."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data
