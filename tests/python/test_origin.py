"""Origin checks on every browser-reachable endpoint (JSON-protocol WebSocket, SSE, Engine.IO):
exact matches of cors_allowed_origins, the server's own origin, or no Origin at all (a
non-browser client). Foreign, `null` and lookalike origins get 403."""

from __future__ import annotations

import socket

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from skyrelay.testing import connect

ALLOWED = "https://app.example"


def ws_status(server, origin: str | None) -> int:
    headers = {"Origin": origin} if origin is not None else {}
    try:
        with connect(f"ws://127.0.0.1:{server.port}/ws", headers=headers) as c:
            assert c.ping()["type"] == "pong"
            return 101
    except InvalidStatus as exc:
        assert exc.response.status_code != 101
        if exc.response.status_code == 403:
            assert b"origin_not_allowed" in exc.response.body
        return exc.response.status_code


def sse_status(server, origin: str | None) -> int:
    headers = {"Origin": origin} if origin is not None else {}
    with httpx.stream("GET", f"http://127.0.0.1:{server.port}/sse/a", headers=headers,
                      timeout=5) as r:
        return r.status_code


def eio_status(server, origin: str | None) -> int:
    headers = {"Origin": origin} if origin is not None else {}
    r = httpx.get(f"http://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=polling",
                  headers=headers, timeout=5)
    return r.status_code


def eio_ws_status(server, origin: str | None) -> int:
    """The status of an Engine.IO WebSocket-transport upgrade (raw: 101 or the refusal)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall((f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                   f"Host: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   f"Sec-WebSocket-Version: 13\r\n"
                   + (f"Origin: {origin}\r\n" if origin is not None else "") + "\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            assert chunk, "closed without an answer"
            head += chunk
    return int(head.split(b" ")[1])


@pytest.mark.parametrize("probe", [ws_status, sse_status, eio_status, eio_ws_status],
                         ids=["websocket", "sse", "engine.io", "engine.io websocket"])
def test_origin_allowlist_is_exact(skyrelay_server_factory, probe):
    server = skyrelay_server_factory(cors_allowed_origins=[ALLOWED])
    own = f"http://127.0.0.1:{server.port}"
    ok = 101 if probe in (ws_status, eio_ws_status) else 200
    assert probe(server, None) == ok           # not a browser
    assert probe(server, ALLOWED) == ok
    assert probe(server, own) == ok            # the server's own pages
    for origin in ("https://evil.example", "null", "https://app.example.evil.example",
                   "https://evil-app.example", "http://app.example", "https://app.example:8443",
                   f"{own}.evil.example", "https://APP.example"):
        assert probe(server, origin) == 403, origin


def test_without_an_allowlist_only_the_servers_own_origin(skyrelay_server):
    own = f"http://127.0.0.1:{skyrelay_server.port}"
    assert ws_status(skyrelay_server, own) == 101
    assert ws_status(skyrelay_server, None) == 101
    assert ws_status(skyrelay_server, "https://anywhere.example") == 403
    assert ws_status(skyrelay_server, "null") == 403


def test_a_wildcard_allows_any_origin(skyrelay_server_factory):
    server = skyrelay_server_factory(cors_allowed_origins="*")
    assert ws_status(server, "https://anywhere.example") == 101
    assert sse_status(server, "null") == 200
