"""Serving a WSGI app (Flask, Django...) on the skyrelay port.

Requests that no built-in route serves (WebSocket, Socket.IO, /health, /metrics, static files)
reach the app. The core parks each request and hands it over; a small thread pool runs the app
so a slow view never holds up the event dispatcher, and the answer goes back to the core.
"""

from __future__ import annotations

import io
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable
from urllib.parse import unquote

log = logging.getLogger("skyrelay")

WSGIApp = Callable[[dict, Callable[..., Any]], Any]


class WSGIBridge:
    def __init__(self, app: WSGIApp, host: str, port_fn: Callable[[], int],
                 workers: int = 8, url_scheme: str = "http") -> None:
        self.app = app
        self.url_scheme = url_scheme
        self.host = host
        self.port_fn = port_fn
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="skyrelay-wsgi")
        self.reply: Callable[..., Any] | None = None  # core.http_reply, set at start

    def handle(self, request_id: int, method: str, target: str, remote: str,
               headers: list[tuple[str, str]], body: bytes) -> None:
        self.pool.submit(self._run, request_id, method, target, remote, headers, body)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def environ(self, method: str, target: str, remote: str, headers: list[tuple[str, str]],
                body: bytes) -> dict[str, Any]:
        path, _, query = target.partition("?")
        addr, _, rport = remote.rpartition(":")
        env: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(path, encoding="latin-1"),
            "QUERY_STRING": query,
            "SERVER_NAME": self.host,
            "SERVER_PORT": str(self.port_fn()),
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": addr,
            "REMOTE_PORT": rport,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": self.url_scheme,
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "CONTENT_LENGTH": str(len(body)),
        }
        for name, value in headers:
            key = name.upper().replace("-", "_")
            if key == "CONTENT_TYPE":
                env["CONTENT_TYPE"] = value
            elif key != "CONTENT_LENGTH":
                k = f"HTTP_{key}"
                env[k] = f"{env[k]},{value}" if k in env else value
        return env

    def _run(self, request_id: int, method: str, target: str, remote: str,
             headers: list[tuple[str, str]], body: bytes) -> None:
        status_headers: list[Any] = []

        def start_response(status: str, response_headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], None]:
            status_headers[:] = [status, response_headers]
            return lambda data: chunks.append(data)

        chunks: list[bytes] = []
        try:
            result = self.app(self.environ(method, target, remote, headers, body),
                              start_response)
            try:
                chunks.extend(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
            status = int(str(status_headers[0]).split(" ", 1)[0])
            out_headers = [(str(k), str(v)) for k, v in status_headers[1]]
            payload = b"".join(chunks)
        except Exception:
            log.exception("WSGI app failed on %s %s", method, target)
            status, out_headers, payload = 500, [("Content-Type", "text/plain")], \
                b"Internal Server Error"
        assert self.reply is not None
        self.reply(request_id, status, out_headers, payload)
