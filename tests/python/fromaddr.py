"""Raw HTTP requests and WebSocket handshakes from a chosen source address on loopback
(127.0.0.1, 127.0.0.2, ...), for the trusted-proxy tests: the server trusts some of these
addresses and not others, and a raw socket sends exactly the forwarded header under test."""

from __future__ import annotations

import base64
import os
import socket


def open_from(source: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def read_response(s: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response: status, header fields (lower-cased names) and its Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    size = int(fields.get("content-length", "0"))
    while len(rest) < size:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(lines[0].split(" ")[1]), fields, rest[:size]


def request(s: socket.socket, method: str, target: str, headers: dict[str, str] | None = None,
            body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    s.sendall(f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}"
              f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return read_response(s)


def ws_open(port: int, source: str, headers: dict[str, str] | None = None,
            path: str = "/ws") -> tuple[socket.socket, int, bytes]:
    """A WebSocket handshake from `source`; the socket stays open (the connection counts)."""
    s = open_from(source, port)
    key = base64.b64encode(os.urandom(16)).decode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
              f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
              f"{extra}\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    status = int(data.split(b" ", 2)[1]) if data else 0
    return s, status, data


def xff(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}
