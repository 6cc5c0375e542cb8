"""The Server-Sent Events test client: httpx streaming, parsed by httpx-sse, on a reader
thread, with the same ``expect(event, timeout=)`` as the JSON-protocol test client.

httpx and httpx-sse are imported on first use. ``close()`` shuts the socket down under the
reading thread, as a browser tab that closes, so no read timeout is needed to end it.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ._testing_inbox import Inbox


@dataclass(frozen=True)
class SseEvent:
    """One event block of the stream; ``data`` is decoded JSON (the text when it is not JSON)."""

    event: str
    data: Any
    id: str | None


def stream_url(base: str, path: str = "/sse", topics: Iterable[str] = (),
               last_event_id: str | None = None) -> str:
    """``base`` (``http://host:port``) + ``path`` + the topics, each percent-encoded."""
    query = []
    names = list(topics)
    if names:
        query.append("topics=" + ",".join(quote(t, safe="") for t in names))
    if last_event_id is not None:
        query.append("last_event_id=" + quote(last_event_id, safe=""))
    return base + path + ("?" + "&".join(query) if query else "")


def _decode(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


class SseClient:
    """An open SSE stream whose welcome has arrived. Use :func:`connect_sse` to make one."""

    def __init__(self, url: str, headers: Mapping[str, str], timeout: float) -> None:
        from ._extras import requires_extra

        with requires_extra("testing", "skyrelay.testing.connect_sse"):
            import httpx
            import httpx_sse  # noqa: F401  (first used on the reading thread: fail here instead)

        self.url = url
        self.timeout = timeout
        self.status: int | None = None
        self.last_event_id: str | None = None  # the cursor to resume from (Last-Event-ID)
        self._inbox = Inbox()
        self._socket: socket.socket | None = None
        self._opened = threading.Event()
        self._error: BaseException | None = None
        self._http = httpx.Client(timeout=httpx.Timeout(timeout, read=None))
        self._reader = threading.Thread(target=self._read, args=(dict(headers),),
                                        name="skyrelay-test-sse", daemon=True)
        self._reader.start()
        if not self._opened.wait(timeout):
            self.close()
            raise TimeoutError(f"{url} did not answer within {timeout}s")
        if self._error is not None:
            self.close()
            raise self._error
        self.welcome: dict[str, Any] = self.expect("welcome")
        self.sid: str = self.welcome["sid"]

    def _read(self, headers: dict[str, str]) -> None:
        import httpx
        from httpx_sse import connect_sse

        try:
            with connect_sse(self._http, "GET", self.url, headers=headers) as source:
                response = source.response
                self.status = response.status_code
                if response.status_code != 200:
                    response.read()
                    response.raise_for_status()  # the refusal's status and JSON body
                stream = response.extensions.get("network_stream")
                self._socket = stream.get_extra_info("socket") if stream else None
                self._opened.set()
                for sse in source.iter_sse():
                    if sse.id:
                        self.last_event_id = sse.id
                    if not sse.data:
                        continue  # no data: not an event (the spec's rule), e.g. `retry:`
                    self._inbox.put(SseEvent(sse.event, _decode(sse.data), sse.id or None))
        except httpx.HTTPStatusError as e:
            self._error = e
        except (httpx.HTTPError, OSError, RuntimeError) as e:
            if not self._opened.is_set():
                self._error = e
        finally:
            self._opened.set()
            self._inbox.end("the stream ended")

    def expect(self, event: str, timeout: float | None = None) -> Any:
        """Waits for the next event named ``event`` and returns its data."""
        return self.expect_event(event, timeout).data

    def expect_event(self, event: str, timeout: float | None = None) -> SseEvent:
        """Like :meth:`expect` but returns the whole event (name, data, id)."""
        return self._inbox.take(lambda e: e.event == event,
                                self.timeout if timeout is None else timeout,
                                f"an SSE event {event!r}")

    def expect_nothing(self, within: float = 0.2) -> None:
        """Asserts that no event arrives within ``within`` seconds."""
        self._inbox.expect_nothing(within)

    def expect_end(self, timeout: float | None = None) -> None:
        """Waits until the server ends the stream."""
        if not self._inbox.wait_ended(self.timeout if timeout is None else timeout):
            raise AssertionError("the stream is still open")

    def received(self) -> list[SseEvent]:
        """Returns and clears every event received and not yet taken."""
        return self._inbox.drain()

    @property
    def closed(self) -> bool:
        return not self._reader.is_alive()

    def close(self) -> None:
        if self._socket is not None:
            try:
                self._socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already gone
        self._reader.join(self.timeout)
        self._http.close()

    def __enter__(self) -> SseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect_sse(url: str, *, headers: Mapping[str, str] | None = None,
                timeout: float = 5.0) -> SseClient:
    """Opens the stream at ``url`` and waits for its welcome. A refusal raises
    ``httpx.HTTPStatusError`` (its ``response`` has the status and the JSON body)."""
    return SseClient(url, headers or {}, timeout)
