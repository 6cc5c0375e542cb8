"""Raw HTTP/1.1 over a plain socket on 127.0.0.1, for tests that must see exactly what the
server writes (status line, header block, a close) without a client library in between."""

from __future__ import annotations

import http.client
import json
import socket
import time


def read_head(s: socket.socket, data: bytes = b"") -> bytes:
    """Reads until the end of a header block, or until the server closes; returns every byte
    read (the head and whatever came after it in the same reads), after `data` (bytes of this
    answer read before)."""
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


class EioPolling:
    """One Engine.IO v4 long-polling session, opened in the constructor (`sid`), its requests
    made with http.client on a new connection each: `post(text)` and `get()` (the records of
    one GET, split at the record separator). Every answer must be 200."""

    RECORD_SEPARATOR = "\x1e"

    def __init__(self, port: int) -> None:
        self.port = port
        body = self.request("GET", "/socket.io/?EIO=4&transport=polling")
        assert body.startswith("0"), body
        self.sid = json.loads(body[1:])["sid"]
        self.path = f"/socket.io/?EIO=4&transport=polling&sid={self.sid}"

    def request(self, method: str, path: str, body: str | None = None) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body,
                         headers={"Content-Type": "text/plain;charset=UTF-8"} if body else {})
            res = conn.getresponse()
            text = res.read().decode()
            assert res.status == 200, (res.status, text)
            return text
        finally:
            conn.close()

    def post(self, text: str) -> None:
        assert self.request("POST", self.path, text) == "ok"

    def get(self) -> list[str]:
        return self.request("GET", self.path).split(self.RECORD_SEPARATOR)
