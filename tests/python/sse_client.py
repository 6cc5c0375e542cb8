"""A Server-Sent Events client for the tests: httpx + httpx-sse on a thread, collecting events
into a queue, and able to hang up abruptly (as a closed browser tab)."""

from __future__ import annotations

import queue
import socket
import threading
import time

import httpx
from httpx_sse import connect_sse


class Stream:
    """An SSE client on a thread (httpx + httpx-sse), collecting events into a queue."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.events: queue.Queue = queue.Queue()
        self.status: int | None = None
        self.headers: httpx.Headers | None = None
        self._client = httpx.Client(timeout=httpx.Timeout(10.0, read=30.0))
        self._socket: socket.socket | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(headers or {},), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "the stream did not open"

    def _run(self, headers: dict[str, str]) -> None:
        try:
            with connect_sse(self._client, "GET", self.url, headers=headers) as source:
                self.status = source.response.status_code
                self.headers = source.response.headers
                stream = source.response.extensions.get("network_stream")
                self._socket = stream.get_extra_info("socket") if stream else None
                self._ready.set()
                for sse in source.iter_sse():
                    self.events.put(sse)
        except (httpx.HTTPError, RuntimeError):
            pass
        finally:
            self._ready.set()
            self.events.put(None)  # the stream ended

    def next(self, timeout: float = 5.0):
        sse = self.events.get(timeout=timeout)
        assert sse is not None, "the stream ended"
        return sse

    def next_event(self, name: str, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        while True:
            sse = self.next(max(0.01, deadline - time.monotonic()))
            if sse.event == name:
                return sse

    def close(self) -> None:
        """Hangs up: shuts the socket down under the reading thread, as a browser tab closing."""
        if self._socket is not None:
            try:
                self._socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)
        self._client.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
