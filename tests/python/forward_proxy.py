"""An HTTP forward proxy on 127.0.0.1 for the producer's tests, as a corporate proxy behaves:
absolute-form requests (``POST http://host:port/path``) forwarded in origin form over a
keep-alive upstream connection, CONNECT tunnels piped byte for byte, Basic credentials
required when asked (407 otherwise).

It records what it saw (request lines, credentials, client connections), counts requests in
flight, and can hold the first ones until ``hold`` are in flight at once (a concurrency check
that needs no clock), drop the first answer on the way back (a lost answer), or close each
client connection after its answer without saying so (a kept-alive connection gone stale).
"""

from __future__ import annotations

import base64
import socket
import threading
from urllib.parse import urlsplit

# A safety bound only: a held request goes on after this long even if the others never come.
HOLD_LIMIT = 15.0


class ForwardProxy:
    def __init__(self, *, user: str | None = None, password: str = "", hold: int = 0,
                 cut_first_answer: bool = False, close_after_answer: bool = False,
                 chunked: bool = False) -> None:
        self._expected = None if user is None else "Basic " + base64.b64encode(
            f"{user}:{password}".encode()).decode()
        self._hold = hold
        self._gate = threading.Event()
        self._cut = cut_first_answer
        self._close_after = close_after_answer  # as a server that drops idle connections
        self._chunked = chunked  # answers re-sent in chunks, as nginx may send them
        self._lock = threading.Lock()
        self.request_lines: list[str] = []
        self.credentials: list[str | None] = []
        self.connections = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._gate.set()
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            s.close()

    def __enter__(self) -> ForwardProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _track(self, s: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(s)
        return s

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(self._track(client),),
                             daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        reader = client.makefile("rb")
        upstreams: dict[tuple[str, int], tuple[socket.socket, object]] = {}
        try:
            while True:
                head = _read_head(reader)
                if head is None:
                    return
                line, headers = head
                method, target, _ = line.split(" ", 2)
                with self._lock:
                    self.request_lines.append(f"{method} {target}")
                    self.credentials.append(headers.get("proxy-authorization"))
                if self._expected is not None and \
                        headers.get("proxy-authorization") != self._expected:
                    reader.read(int(headers.get("content-length", "0")))  # dropped
                    client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                                   b"Proxy-Authenticate: Basic realm=\"test\"\r\n"
                                   b"Content-Length: 0\r\n\r\n")
                    continue
                if method == "CONNECT":
                    self._tunnel(client, target)
                    return
                body = reader.read(int(headers.get("content-length", "0")))
                if not self._forward(client, upstreams, line, headers, body) or \
                        self._close_after:
                    return
        except OSError:
            pass
        finally:
            for upstream, _ in upstreams.values():
                upstream.close()
            client.close()

    def _forward(self, client: socket.socket, upstreams: dict, line: str,
                 headers: dict[str, str], body: bytes) -> bool:
        method, target, version = line.split(" ", 2)
        parts = urlsplit(target)
        key = (parts.hostname, parts.port or 80)
        if key not in upstreams:
            upstream = self._track(socket.create_connection(key, timeout=10))
            upstreams[key] = (upstream, upstream.makefile("rb"))
        upstream, up_reader = upstreams[key]
        lines = [f"{method} {parts.path or '/'} {version}"] + [
            f"{name}: {value}" for name, value in headers.items()
            if name != "proxy-authorization"]
        self._enter()
        try:
            upstream.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            answer_head = _read_head(up_reader)
            assert answer_head is not None, "the server closed"
            status_line, answer_headers = answer_head
            answer_body = up_reader.read(int(answer_headers.get("content-length", "0")))
        finally:
            with self._lock:
                self.in_flight -= 1
        with self._lock:
            cut, self._cut = self._cut, False
        if cut:
            return False  # the answer is lost: the client sees its connection close
        if self._chunked:
            answer_headers.pop("content-length", None)
            answer_headers["transfer-encoding"] = "chunked"
            half = len(answer_body) // 2
            answer_body = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(part), part)
                                   for part in (answer_body[:half], answer_body[half:])
                                   if part) + b"0\r\nX-Trailer: 1\r\n\r\n"
        out = [status_line] + [f"{n}: {v}" for n, v in answer_headers.items()]
        client.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + answer_body)
        return True

    def _enter(self) -> None:
        """Counts a request in flight; the first ones wait until ``hold`` are in at once."""
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.in_flight >= self._hold:
                self._gate.set()
        self._gate.wait(HOLD_LIMIT)

    def _tunnel(self, client: socket.socket, target: str) -> None:
        host, _, port = target.rpartition(":")
        upstream = self._track(socket.create_connection((host.strip("[]"), int(port)),
                                                        timeout=10))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

        def pipe(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        other = threading.Thread(target=pipe, args=(upstream, client), daemon=True)
        other.start()
        pipe(client, upstream)
        other.join(10)
        upstream.close()


def _read_head(reader) -> tuple[str, dict[str, str]] | None:  # type: ignore[no-untyped-def]
    line = reader.readline(65537)
    if not line:
        return None
    headers: dict[str, str] = {}
    while (header := reader.readline(65537)) not in (b"\r\n", b"\n", b""):
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return line.decode("latin-1").rstrip("\r\n"), headers
