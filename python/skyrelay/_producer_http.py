"""HTTP/1.1 for the producer, without I/O: where a request goes (straight to the server,
through an HTTP proxy in absolute form, or through a CONNECT tunnel), the bytes of a request,
and a response parser that the blocking and the asyncio connections both drive
(``_producer_pool.py``).

Standard library only, like the rest of the producer: it runs from a copy of the package's
``.py`` files, with no compiled code and nothing else installed. Proxy settings follow what
requests and httpx do: ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY`` (or the lowercase forms)
through :func:`urllib.request.getproxies_environment`, ``NO_PROXY`` through
:func:`urllib.request.proxy_bypass_environment`.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import urllib.request
from collections.abc import Generator
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

# What the parser asks its driver for: a line (up to MAX_LINE bytes), everything up to the
# end of the stream, or (any positive number) exactly that many bytes.
LINE = -1
TO_EOF = -2
MAX_LINE = 65536
MAX_HEADERS = 100
MAX_BODY = 64 * 1024 * 1024  # far above any publish answer: a bound, not a working size

_BAD_HEADER_VALUE = re.compile(r"[\x00-\x1f\x7f]")


class ProtocolError(Exception):
    """The peer (server or proxy) did not speak HTTP/1.1 as expected; the connection is
    dropped and the request retried like after a network error."""


class ProxyRefused(Exception):
    """The proxy answered a CONNECT with something other than 2xx."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"the proxy refused the tunnel: HTTP {status} {reason}".rstrip())
        self.status = status


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # names lowercased; a repeated header keeps its last value
    body: bytes
    keep_alive: bool


@dataclass(frozen=True)
class Route:
    """How requests reach the server: ``host``/``port``/``tls`` are the server's; with a
    proxy, the TCP connection goes to ``proxy_host``/``proxy_port``, plain requests are sent
    in absolute form and TLS goes through a CONNECT tunnel."""

    host: str
    port: int
    tls: bool
    proxy_host: str | None = None
    proxy_port: int = 0
    proxy_auth: str | None = None  # the Proxy-Authorization value, from the proxy URL

    @property
    def address(self) -> tuple[str, int]:
        """Where the TCP connection goes."""
        if self.proxy_host is not None:
            return self.proxy_host, self.proxy_port
        return self.host, self.port

    @property
    def tunnel(self) -> bool:
        return self.proxy_host is not None and self.tls

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def target(self, path: str) -> str:
        """The request target: absolute form for a proxy that forwards plain HTTP."""
        if self.proxy_host is not None and not self.tls:
            return f"http://{self.authority}{path}"
        return path


def proxy_for(scheme: str, host: str, proxy: str | None, trust_env: bool) -> str | None:
    """The proxy URL for a server, or None: ``proxy`` when given (``""`` means none), else
    the environment's when ``trust_env``, unless ``NO_PROXY`` names the host."""
    if proxy is not None:
        return proxy or None
    if not trust_env:
        return None
    settings = urllib.request.getproxies_environment()
    if _bypassed(host, settings):
        return None
    return settings.get(scheme) or settings.get("all") or None


def _bypassed(host: str, settings: dict[str, str]) -> bool:
    """NO_PROXY's verdict: the standard library's (names, domain suffixes, ``*``), plus
    address ranges such as ``10.0.0.0/8``, which requests honours and it does not."""
    # The environment only, as getproxies_environment: proxy_bypass() would also read the
    # macOS/Windows system settings, which getproxies_environment does not.
    if urllib.request.proxy_bypass_environment(host, settings):  # type: ignore[attr-defined]
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    for entry in settings.get("no", "").replace(" ", "").split(","):
        if "/" in entry:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


def make_route(host: str, port: int, tls: bool, proxy_url: str | None) -> Route:
    """A Route through ``proxy_url`` (``http://[user:password@]host[:port]``), or direct."""
    if proxy_url is None:
        return Route(host, port, tls)
    parts = urlsplit(proxy_url if "://" in proxy_url else f"http://{proxy_url}")
    if parts.scheme != "http":
        raise ValueError(f"proxy {_redacted(parts)!r}: only http:// proxies are supported "
                         "(https servers are still reached end to end through CONNECT)")
    if not parts.hostname:
        raise ValueError(f"proxy {_redacted(parts)!r} has no host")
    auth = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")
    return Route(host, port, tls, parts.hostname, parts.port or 80, auth)


def _redacted(parts) -> str:  # type: ignore[no-untyped-def]
    """A proxy URL without its password, for error messages."""
    netloc = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{netloc}"


def check_header_value(name: str, value: str) -> str:
    """Refuses control characters (CR/LF would let a value add headers of its own)."""
    if _BAD_HEADER_VALUE.search(value):
        raise ValueError(f"{name} must not contain control characters")
    return value


def request_bytes(route: Route, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """A POST with ``body``; the proxy's credentials ride along when it forwards it."""
    lines = [f"POST {route.target(path)} HTTP/1.1", f"Host: {route.authority}",
             f"Content-Length: {len(body)}"]
    if route.proxy_auth is not None and not route.tunnel:
        lines.append(f"Proxy-Authorization: {route.proxy_auth}")
    lines += [f"{name}: {check_header_value(name, value)}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def connect_bytes(route: Route) -> bytes:
    """The CONNECT request that opens a tunnel to the server through the proxy."""
    lines = [f"CONNECT {route.authority} HTTP/1.1", f"Host: {route.authority}"]
    if route.proxy_auth is not None:
        lines.append(f"Proxy-Authorization: {route.proxy_auth}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


Parser = Generator[int, bytes, Response]


def read_response(head_only: bool = False) -> Parser:
    """Parses one response. Yields what it needs next (LINE, TO_EOF or a byte count) and is
    sent the bytes read; returns the Response. ``head_only`` for a CONNECT answer, which has
    no body (the tunnel's bytes follow it). Interim 1xx answers are read and skipped."""
    while True:
        answer = yield from _one_response(head_only)
        if not 100 <= answer.status < 200 or answer.status == 101:
            return answer


def _one_response(head_only: bool) -> Parser:
    status_line = _text((yield LINE))
    version, _, rest = status_line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or not code.isdigit() or len(code) != 3:
        raise ProtocolError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    while True:
        line = _text((yield LINE))
        if not line:
            break
        if len(headers) >= MAX_HEADERS:
            raise ProtocolError("too many header lines")
        name, sep, value = line.partition(":")
        if not sep:
            raise ProtocolError(f"a header line without a colon: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    status = int(code)
    keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    if head_only or status in (204, 304) or 100 <= status < 200:
        return Response(status, reason, headers, b"", keep_alive)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = yield from _chunked_body()
    elif "content-length" in headers:
        size = headers["content-length"]
        if not size.isdigit() or int(size) > MAX_BODY:
            raise ProtocolError(f"bad Content-Length {size[:20]!r}")
        body = (yield int(size)) if int(size) else b""
    else:  # the body runs to the end of the connection, which cannot be reused
        body = yield TO_EOF
        keep_alive = False
    return Response(status, reason, headers, body, keep_alive)


def _chunked_body() -> Generator[int, bytes, bytes]:
    parts: list[bytes] = []
    total = 0
    while True:
        size_text = _text((yield LINE)).partition(";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size {size_text[:20]!r}") from None
        if size == 0:
            while _text((yield LINE)):  # trailers, read and dropped
                pass
            return b"".join(parts)
        total += size
        if total > MAX_BODY:
            raise ProtocolError("chunked body too large")
        parts.append((yield size))
        yield LINE  # the CRLF after the chunk


def _text(line: bytes) -> str:
    """A header or status line without its line end; an empty read means the peer closed."""
    if not line:
        raise ConnectionResetError("the connection closed before the answer")
    if not line.endswith(b"\n"):
        raise ProtocolError("a line too long, or cut short")
    return line.decode("latin-1").rstrip("\r\n")
