"""Test helpers: clients for the skyrelay JSON protocol, Socket.IO and SSE, sync and async.

:class:`Client` is built on the ``websockets`` package (a test dependency, imported on first
use). It reads frames on a background thread and keeps them until a test asks, so nothing is
missed between two calls, and every wait has a timeout that fails with a message instead of
hanging. The other clients share that: :class:`SioClient` (python-socketio),
:class:`SseClient` (httpx + httpx-sse), and on asyncio :class:`AsyncClient` (websockets) and
:class:`AsyncSioClient` (``socketio.AsyncClient``), each with ``expect(event, timeout=)``.
"""

from __future__ import annotations

import itertools
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from ._testing_inbox import ExpectationTimeout
from ._testing_json import ResponseError, decode, encode, response_data, topics_message

# The other test clients (docs/api.md, "Testing"); each imports its library on first use.
from ._testing_async import AsyncClient, connect_async  # noqa: F401
from ._testing_sio import AsyncSioClient, SioClient, connect_async_sio, connect_sio  # noqa: F401
from ._testing_sse import SseClient, SseEvent, connect_sse  # noqa: F401


def stop_process(proc: subprocess.Popen | None, grace: float = 5.0) -> None:
    """Stops a process the caller started, by its pid: SIGTERM, then SIGKILL when it is still
    running after ``grace`` seconds; always reaped. Nothing for None or an ended process."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0,
               interval: float = 0.02) -> bool:
    """Polls ``predicate`` until it is true or ``timeout`` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def metric(server: Any, sample: str) -> float:
    """The value of one sample of the server's /metrics text, such as
    ``'skyrelay_drops_total{reason="slow_consumer"}'``; 0.0 when it is absent."""
    prefix = sample + " "
    for line in server.metrics_text().splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix):])
    return 0.0


class Client:
    """A connected JSON-protocol client. Use :func:`connect` to make one."""

    def __init__(self, ws: Any, timeout: float) -> None:
        self._ws = ws
        self.timeout = timeout
        self._frames: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._closed = False
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._ids = itertools.count(1)
        self._reader = threading.Thread(target=self._read, name="skyrelay-test-client",
                                        daemon=True)
        self._reader.start()
        self.welcome = self.expect_frame("welcome")
        self.sid: str = self.welcome["sid"]

    def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            for raw in self._ws:
                frame = decode(raw)
                with self._cond:
                    self._frames.append(frame)
                    self._cond.notify_all()
        except ConnectionClosed:
            pass
        finally:
            # The close frame the server sent (None when the TCP connection just ended).
            rcvd = getattr(getattr(self._ws, "protocol", None), "close_rcvd", None)
            with self._cond:
                self._closed = True
                if rcvd is not None:
                    self.close_code, self.close_reason = rcvd.code, rcvd.reason
                self._cond.notify_all()

    # -- waiting ----------------------------------------------------------------------------

    def expect_frame(self, type: str | None = None, timeout: float | None = None,
                     where: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
        """Removes and returns the first received frame of ``type`` (any type if None) for which
        ``where`` holds, waiting up to ``timeout`` seconds. Other frames stay queued."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        with self._cond:
            while True:
                for i, frame in enumerate(self._frames):
                    if (type is None or frame.get("type") == type) and (where is None or where(frame)):
                        return self._frames.pop(i)
                if self._closed:
                    raise ExpectationTimeout(
                        f"connection closed ({self.close_code} {self.close_reason!r}) "
                        f"before a {type or 'any'} frame arrived; queued: {self._frames[:5]!r}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ExpectationTimeout(
                        f"no {type or 'any'} frame within {timeout or self.timeout}s; "
                        f"queued: {self._frames[:5]!r}")
                self._cond.wait(left)

    def expect(self, event: str, timeout: float | None = None) -> Any:
        """Waits for the next ``event`` frame named ``event`` and returns its data."""
        return self.expect_event(event, timeout)["data"]

    def expect_event(self, event: str, timeout: float | None = None) -> dict[str, Any]:
        """Like :meth:`expect` but returns the whole frame (topic, seq, ts, data)."""
        return self.expect_frame("event", timeout, lambda f: f.get("event") == event)

    def expect_nothing(self, within: float = 0.2, type: str | None = None) -> None:
        """Asserts that no frame (of ``type``) arrives within ``within`` seconds."""
        try:
            frame = self.expect_frame(type, within)
        except ExpectationTimeout:
            return
        raise AssertionError(f"unexpected frame: {frame!r}")

    def expect_closed(self, timeout: float | None = None) -> tuple[int | None, str | None]:
        """Waits until the server closes the connection; returns (code, reason)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        with self._cond:
            while not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ExpectationTimeout("the connection is still open")
                self._cond.wait(left)
        return self.close_code, self.close_reason

    def received(self) -> list[dict[str, Any]]:
        """Returns and clears every frame received and not yet taken."""
        with self._cond:
            frames, self._frames = self._frames, []
        return frames

    # -- sending ----------------------------------------------------------------------------

    def send(self, message: Mapping[str, Any] | str | bytes) -> None:
        """Sends a frame: a dict as JSON text, a str as text, bytes as a binary frame."""
        self._ws.send(encode(message))

    def subscribe(self, *topics: str, since: int | None = None,
                  epoch: str | None = None) -> dict[str, Any]:
        """Subscribes and returns the ``subscribed`` reply. To resume one topic, pass the
        ``seq`` you last saw as ``since`` and the ``epoch`` of an earlier reply."""
        self.send(topics_message("subscribe", topics, since, epoch))
        return self.expect_frame("subscribed")

    def unsubscribe(self, *topics: str) -> dict[str, Any]:
        self.send(topics_message("unsubscribe", topics))
        return self.expect_frame("unsubscribed")

    def ping(self) -> dict[str, Any]:
        self.send({"type": "ping"})
        return self.expect_frame("pong")

    def emit(self, event: str, data: Any = None) -> None:
        self.send({"type": "event", "event": event, "data": data})

    def request(self, event: str, data: Any = None, timeout: float | None = None) -> Any:
        """Sends a request and returns the response's data; raises ResponseError on ok: false."""
        rid = str(next(self._ids))
        self.send({"type": "request", "id": rid, "event": event, "data": data})
        frame = self.expect_frame("response", timeout, lambda f: f.get("id") == rid)
        return response_data(frame)

    def close(self) -> None:
        try:
            self._ws.close()
        finally:
            self._reader.join(timeout=5)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed


def connect(url: str, *, headers: Mapping[str, str] | None = None,
            timeout: float = 5.0, **kwargs: Any) -> Client:
    """Opens a JSON-protocol connection and waits for the welcome frame."""
    from ._extras import requires_extra

    with requires_extra("testing", "skyrelay.testing.connect"):
        from websockets.sync.client import connect as ws_connect

    # Entering the context gives the connection on every websockets version (17 made the
    # plain call a context-manager factory); Client.close() ends it.
    ws = ws_connect(url, additional_headers=dict(headers or {}), open_timeout=timeout,
                    compression=None, max_size=None, **kwargs).__enter__()
    return Client(ws, timeout)
