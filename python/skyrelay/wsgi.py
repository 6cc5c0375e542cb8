"""Serving a WSGI app (Flask, Django...) on the skyrelay port.

Requests that no built-in route serves (WebSocket, Socket.IO, /health, /metrics, static files)
reach the app. The core parks each request and hands it over; a small thread pool runs the app
so a slow view never holds up the event dispatcher, and the answer goes back to the core.
"""

from __future__ import annotations

import io
import logging
import re
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable
from urllib.parse import unquote

from ._threads import name_os_thread

log = logging.getLogger("skyrelay")

WSGIApp = Callable[[dict, Callable[..., Any]], Any]

# RFC 9110 5: a field name is a token; a value holds no control character but HTAB.
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class BadResponse(ValueError):
    """The app's status or headers could split the response or cannot be written."""


def check_response(status: Any, headers: Any) -> tuple[int, list[tuple[str, str]]]:
    """The status code and headers of a ``start_response`` call, checked: a status is three
    digits from 200 up, a header name a token, a value free of CR, LF and other controls
    (HTAB aside). Anything else raises :class:`BadResponse` (the bridge answers 500)."""
    code, _, reason = str(status).partition(" ")
    if not (len(code) == 3 and code.isdigit() and code >= "200") or _BAD_VALUE.search(reason):
        raise BadResponse(f"invalid status {status!r}")
    out = []
    for name, value in headers:
        name, value = str(name), str(value)
        if not _FIELD_NAME.fullmatch(name) or _BAD_VALUE.search(value):
            raise BadResponse(f"invalid response header {name!r}: {value!r}")
        out.append((name, value))
    return int(code), out


class WSGIBridge:
    def __init__(self, app: WSGIApp, host: str, port_fn: Callable[[], int],
                 workers: int = 8, url_scheme: str = "http") -> None:
        self.app = app
        self.url_scheme = url_scheme  # the port's own, for environs the core did not describe
        self.host = host
        self.port_fn = port_fn
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="skyrelay-wsgi",
                                       initializer=name_os_thread, initargs=("skyrelay-wsgi",))
        self.reply: Callable[..., Any] | None = None  # core.http_reply, set at start
        # Answers being handed to the core, and whether the server is stopping (see pause).
        self._replying = 0
        self._paused = False
        self._cond = threading.Condition()

    def pause(self, timeout: float = 5.0) -> None:
        """Before the core stops: waits (at most `timeout`) for the answers being handed to
        it, and holds back new ones until :meth:`resume`. A thread inside ``http_reply`` may
        hold the last reference to a connection, and must not drop it after the core has
        destroyed that connection's I/O context (which ``stop`` does)."""
        with self._cond:
            self._paused = True
            self._cond.wait_for(lambda: self._replying == 0, timeout)

    def resume(self) -> None:
        """After the core stopped: held answers go on (the core drops those of a stopped
        server, whose requests are gone)."""
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def handle(self, request_id: int, method: str, target: str, remote: str,
               headers: list[tuple[str, str]], body: bytes, scheme: str | None = None) -> None:
        self.pool.submit(self._run, request_id, method, target, remote, headers, body, scheme)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def environ(self, method: str, target: str, remote: str, headers: list[tuple[str, str]],
                body: bytes, scheme: str | None = None) -> dict[str, Any]:
        """The request's WSGI environ. `scheme` is the core's: what a trusted proxy said its
        client used (X-Forwarded-Proto, Forwarded's proto=), else the connection's own; without
        it, the port's."""
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
            "wsgi.url_scheme": scheme or self.url_scheme,
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "CONTENT_LENGTH": str(len(body)),
        }
        for name, value in headers:
            # "X_Forwarded_For" would land on HTTP_X_FORWARDED_FOR too and pass for the header a
            # proxy sets: names with "_" are dropped, as nginx and Werkzeug do.
            if "_" in name:
                continue
            key = name.upper().replace("-", "_")
            if key == "CONTENT_TYPE":
                env["CONTENT_TYPE"] = value
            elif key != "CONTENT_LENGTH":
                k = f"HTTP_{key}"
                env[k] = f"{env[k]},{value}" if k in env else value
        return env

    def _run(self, request_id: int, method: str, target: str, remote: str,
             headers: list[tuple[str, str]], body: bytes, scheme: str | None) -> None:
        status_headers: list[Any] = []

        def start_response(status: str, response_headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], None]:
            status_headers[:] = [status, response_headers]
            return lambda data: chunks.append(data)

        chunks: list[bytes] = []
        try:
            result = self.app(self.environ(method, target, remote, headers, body, scheme),
                              start_response)
            try:
                chunks.extend(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
            if not status_headers:
                raise BadResponse("the app never called start_response")
            status, out_headers = check_response(*status_headers)
            payload = b"".join(chunks)
        except Exception:
            # Also a header with CR or LF: a 500, never a split response.
            log.exception("WSGI app failed on %s %s", method, target)
            status, out_headers, payload = 500, [("Content-Type", "text/plain")], \
                b"Internal Server Error"
        assert self.reply is not None
        with self._cond:
            self._cond.wait_for(lambda: not self._paused)
            self._replying += 1
        try:
            self.reply(request_id, status, out_headers, payload)
        finally:
            with self._cond:
                self._replying -= 1
                self._cond.notify_all()
