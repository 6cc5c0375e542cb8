"""Keep-alive connections for the producer, blocking and asyncio, and a bounded pool of each.

Both kinds drive the same parser (``_producer_http.read_response``); they differ only in how
bytes are read and written. A pool holds at most ``size`` connections: a request waits for a
free one rather than opening more, so ``max_connections`` bounds what one producer asks of
the server (and of a proxy). A connection whose peer said ``Connection: close``, or that
failed, is dropped, never reused.

Contract: ``exchange`` may be called from any number of threads (blocking pool) or tasks
(asyncio pool) at once; each request has one connection to itself until its answer is read.
"""

from __future__ import annotations

import asyncio
import io
import socket
import ssl
import threading
from typing import Protocol

from ._producer_http import (LINE, MAX_BODY, MAX_LINE, TO_EOF, Parser, ProtocolError, ProxyRefused,
                             Response, Route, connect_bytes, read_response)

# What a failed exchange raises: retried (with a fresh connection) by the producer.
NETWORK_ERRORS = (OSError, ProtocolError, EOFError, asyncio.TimeoutError)
# A timeout on a kept-alive connection is a slow server, not a stale connection: not tried
# again at once (the producer's backoff applies).
_TIMEOUTS = (TimeoutError, asyncio.TimeoutError)


class _Readable(Protocol):
    def readline(self, size: int = ..., /) -> bytes: ...
    def read(self, size: int = ..., /) -> bytes: ...


def _drive(parser: Parser, stream: _Readable) -> Response:
    need = next(parser)
    try:
        while True:
            if need == LINE:
                data = stream.readline(MAX_LINE + 1)
            elif need == TO_EOF:
                data = stream.read(MAX_BODY + 1)
                if len(data) > MAX_BODY:
                    raise ProtocolError("an answer too large")
            else:
                data = stream.read(need)
                if len(data) < need:
                    raise ConnectionResetError("the connection closed in the middle of an answer")
            need = parser.send(data)
    except StopIteration as done:
        return done.value


async def _drive_async(parser: Parser, reader: asyncio.StreamReader) -> Response:
    need = next(parser)
    try:
        while True:
            if need == LINE:
                try:
                    data = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError as cut:
                    data = cut.partial  # the parser tells a cut line from a closed stream
                except asyncio.LimitOverrunError:
                    raise ProtocolError("a line too long") from None
            elif need == TO_EOF:
                chunks: list[bytes] = []
                size = 0
                while chunk := await reader.read(65536):
                    size += len(chunk)
                    if size > MAX_BODY:
                        raise ProtocolError("an answer too large")
                    chunks.append(chunk)
                data = b"".join(chunks)
            else:
                data = await reader.readexactly(need)  # IncompleteReadError is an EOFError
            need = parser.send(data)
    except StopIteration as done:
        return done.value


def _check_tunnel(answer: Response) -> None:
    if not 200 <= answer.status < 300:
        raise ProxyRefused(answer.status, answer.reason)


class Connection:
    """One blocking keep-alive connection (through the route's proxy or tunnel)."""

    def __init__(self, route: Route, timeout: float, context: ssl.SSLContext | None) -> None:
        sock = socket.create_connection(route.address, timeout=timeout)
        try:
            if route.tunnel:
                sock.sendall(connect_bytes(route))
                # Unbuffered: the TLS handshake must find the socket right after the answer.
                with sock.makefile("rb", buffering=0) as raw:
                    _check_tunnel(_drive(read_response(head_only=True), raw))
            if route.tls:
                assert context is not None
                sock = context.wrap_socket(sock, server_hostname=route.host)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._stream = sock.makefile("rb")

    def exchange(self, request: bytes) -> Response:
        self._sock.sendall(request)
        return _drive(read_response(), self._stream)

    def close(self) -> None:
        self._stream.close()
        self._sock.close()


async def _tunnel(route: Route) -> socket.socket:
    """A socket to the server through the proxy's CONNECT tunnel, on the running loop (the
    TLS handshake then starts on it; StreamWriter.start_tls needs Python 3.11)."""
    loop = asyncio.get_running_loop()
    family, kind, proto, _, address = (await loop.getaddrinfo(
        *route.address, type=socket.SOCK_STREAM))[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, address)
        await loop.sock_sendall(sock, connect_bytes(route))
        head = b""
        while b"\r\n\r\n" not in head:  # a 2xx answer to CONNECT has no body to over-read
            chunk = await loop.sock_recv(sock, 4096)
            if not chunk or len(head) > MAX_LINE:
                raise ProtocolError("the proxy closed or rambled before answering CONNECT")
            head += chunk
        _check_tunnel(_drive(read_response(head_only=True), io.BytesIO(head)))
    except BaseException:
        sock.close()
        raise
    return sock


class AsyncConnection:
    """One asyncio keep-alive connection; ``await AsyncConnection.open(...)`` makes one."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, route: Route, timeout: float, context: ssl.SSLContext | None
                   ) -> AsyncConnection:
        if route.tunnel:
            sock = await asyncio.wait_for(_tunnel(route), timeout)
            opening = asyncio.open_connection(sock=sock, ssl=context, server_hostname=route.host,
                                              limit=MAX_LINE)
        else:
            host, port = route.address
            opening = asyncio.open_connection(
                host, port, ssl=context if route.tls else None,
                server_hostname=route.host if route.tls else None, limit=MAX_LINE)
        reader, writer = await asyncio.wait_for(opening, timeout)
        return cls(reader, writer)

    async def exchange(self, request: bytes, timeout: float) -> Response:
        self._writer.write(request)
        return await asyncio.wait_for(_drive_async(read_response(), self._reader), timeout)

    def close(self) -> None:
        try:
            self._writer.close()
        except RuntimeError:  # its event loop is closed: the socket goes with the transport
            pass


class Pool:
    """At most ``size`` blocking connections, shared by threads."""

    def __init__(self, route: Route, size: int, timeout: float,
                 context: ssl.SSLContext | None) -> None:
        self._route, self._timeout, self._context = route, timeout, context
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[Connection] = []

    def exchange(self, request: bytes) -> Response:
        with self._slots:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is not None:
                try:
                    answer = conn.exchange(request)
                except _TIMEOUTS:
                    conn.close()
                    raise
                except NETWORK_ERRORS:
                    # A kept-alive connection the server closed while idle: once more on a
                    # fresh one (safe: the request carries its idempotency key).
                    conn.close()
                except BaseException:
                    conn.close()
                    raise
                else:
                    return self._finish(conn, answer)
            conn = Connection(self._route, self._timeout, self._context)
            try:
                return self._finish(conn, conn.exchange(request))
            except BaseException:
                conn.close()
                raise

    def _finish(self, conn: Connection, answer: Response) -> Response:
        if answer.keep_alive:
            with self._lock:
                self._idle.append(conn)
        else:
            conn.close()
        return answer

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class AsyncPool:
    """At most ``size`` asyncio connections, shared by the tasks of one event loop."""

    def __init__(self, route: Route, size: int, timeout: float,
                 context: ssl.SSLContext | None) -> None:
        self._route, self._timeout, self._context = route, timeout, context
        self._size = size
        self._slots = asyncio.Semaphore(size)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: list[AsyncConnection] = []

    async def exchange(self, request: bytes) -> Response:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # Another event loop (a second asyncio.run): the old loop's connections and
            # waiters cannot be used from this one.
            self._loop = loop
            self.close()
            self._slots = asyncio.Semaphore(self._size)
        async with self._slots:
            conn = self._idle.pop() if self._idle else None
            if conn is not None:
                try:
                    answer = await conn.exchange(request, self._timeout)
                except _TIMEOUTS:
                    conn.close()
                    raise
                except NETWORK_ERRORS:
                    conn.close()  # stale: once more on a fresh one, as in Pool.exchange
                except BaseException:  # cancelled: the answer may still come, so drop it
                    conn.close()
                    raise
                else:
                    return self._finish(conn, answer)
            conn = await AsyncConnection.open(self._route, self._timeout, self._context)
            try:
                return self._finish(conn, await conn.exchange(request, self._timeout))
            except BaseException:
                conn.close()
                raise

    def _finish(self, conn: AsyncConnection, answer: Response) -> Response:
        if answer.keep_alive:
            self._idle.append(conn)
        else:
            conn.close()
        return answer

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
