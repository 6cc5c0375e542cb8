"""The asyncio JSON-protocol test client (``websockets.asyncio``), and the cleanup every async
test client shares.

An async client belongs to the event loop that opened it. Tests run that loop in different
ways (``asyncio.run`` inside a plain test, anyio's pytest plugin, pytest-asyncio), and the
fixture that made the client tears down after the test, outside any loop. So cleanup has two
halves: a client whose loop shuts down while it is open (``asyncio.run`` and the plugins'
runners cancel every task at the end) aborts its connection from the cancelled task, and the
fixture's teardown closes, in their own loop, the clients whose loop is still open.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from ._testing_inbox import AsyncInbox
from ._testing_json import decode, encode, is_event, is_frame, response_data, topics_message


class AsyncTestClient(Protocol):
    loop: asyncio.AbstractEventLoop
    closed: bool

    async def close(self) -> None: ...


class AsyncClientSet:
    """The async clients a fixture made; :meth:`close_all` runs at its teardown."""

    def __init__(self) -> None:
        self.clients: list[AsyncTestClient] = []

    def add(self, client: AsyncTestClient) -> None:
        self.clients.append(client)

    def close_all(self, timeout: float = 5.0) -> None:
        """Closes every client still open, even when one fails to; then raises the first
        failure."""
        errors = []
        for client in self.clients:
            try:
                self._close(client, timeout)
            except Exception as e:  # noqa: BLE001 - re-raised below, after the others closed
                errors.append(e)
        if errors:
            raise errors[0]

    @staticmethod
    def _close(client: AsyncTestClient, timeout: float) -> None:
        loop = client.loop
        if client.closed or loop.is_closed():
            return  # closed by the test, or aborted when its loop shut down
        coro = asyncio.wait_for(client.close(), timeout)
        if loop.is_running():  # a loop on another thread
            asyncio.run_coroutine_threadsafe(coro, loop).result(timeout + 1)
        else:
            loop.run_until_complete(coro)


class AsyncClient:
    """A connected JSON-protocol client on asyncio. Use :func:`connect_async` to make one.

    The same methods as :class:`skyrelay.testing.Client`, awaitable: ``await
    client.expect("tick")`` returns the event's data.
    """

    def __init__(self, ws: Any, timeout: float) -> None:
        self._ws = ws
        self.timeout = timeout
        self.loop = asyncio.get_running_loop()
        self._inbox = AsyncInbox()
        self._ids = itertools.count(1)
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.welcome: dict[str, Any] = {}
        self.sid = ""
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for raw in self._ws:
                self._inbox.put(decode(raw))
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            # The loop is shutting down with the connection open: drop it now, since nothing
            # will run a closing handshake later.
            self._ws.transport.abort()
            raise
        finally:
            rcvd = self._ws.protocol.close_rcvd
            if rcvd is not None:
                self.close_code, self.close_reason = rcvd.code, rcvd.reason
            self._inbox.end(f"connection closed ({self.close_code} {self.close_reason!r})")

    async def _start(self) -> AsyncClient:
        self.welcome = await self.expect_frame("welcome")
        self.sid = self.welcome["sid"]
        return self

    # -- waiting ----------------------------------------------------------------------------

    async def expect_frame(self, type: str | None = None, timeout: float | None = None,
                           where: Callable[[dict[str, Any]], bool] | None = None
                           ) -> dict[str, Any]:
        """Removes and returns the first received frame of ``type`` (any type if None) for
        which ``where`` holds, waiting up to ``timeout`` seconds."""
        return await self._inbox.take(is_frame(type, where), self._timeout(timeout),
                                      f"a {type or 'any'} frame")

    async def expect(self, event: str, timeout: float | None = None) -> Any:
        """Waits for the next ``event`` frame named ``event`` and returns its data."""
        return (await self.expect_event(event, timeout))["data"]

    async def expect_event(self, event: str, timeout: float | None = None) -> dict[str, Any]:
        """Like :meth:`expect` but returns the whole frame (topic, seq, ts, data)."""
        return await self._inbox.take(is_event(event), self._timeout(timeout),
                                      f"an event frame {event!r}")

    async def expect_nothing(self, within: float = 0.2, type: str | None = None) -> None:
        """Asserts that no frame (of ``type``) arrives within ``within`` seconds."""
        try:
            frame = await self._inbox.take(is_frame(type), within, "a frame")
        except AssertionError:
            return
        raise AssertionError(f"unexpected frame: {frame!r}")

    def received(self) -> list[dict[str, Any]]:
        """Returns and clears every frame received and not yet taken."""
        return self._inbox.drain()

    def _timeout(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else timeout

    # -- sending ----------------------------------------------------------------------------

    async def send(self, message: Mapping[str, Any] | str | bytes) -> None:
        await self._ws.send(encode(message))

    async def subscribe(self, *topics: str, since: int | None = None,
                        epoch: str | None = None) -> dict[str, Any]:
        await self.send(topics_message("subscribe", topics, since, epoch))
        return await self.expect_frame("subscribed")

    async def unsubscribe(self, *topics: str) -> dict[str, Any]:
        await self.send(topics_message("unsubscribe", topics))
        return await self.expect_frame("unsubscribed")

    async def emit(self, event: str, data: Any = None) -> None:
        await self.send({"type": "event", "event": event, "data": data})

    async def request(self, event: str, data: Any = None, timeout: float | None = None) -> Any:
        """Sends a request and returns the response's data; raises ResponseError on ok: false."""
        rid = str(next(self._ids))
        await self.send({"type": "request", "id": rid, "event": event, "data": data})
        frame = await self.expect_frame("response", timeout, lambda f: f.get("id") == rid)
        return response_data(frame)

    async def close(self) -> None:
        await self._ws.close()
        await asyncio.wait_for(asyncio.shield(self._reader), self.timeout)

    @property
    def closed(self) -> bool:
        return self._reader.done()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def connect_async(url: str, *, headers: Mapping[str, str] | None = None,
                        timeout: float = 5.0, **kwargs: Any) -> AsyncClient:
    """Opens a JSON-protocol connection on the running loop and waits for the welcome frame.
    Close it with ``await client.close()`` or ``async with``."""
    from ._extras import requires_extra

    with requires_extra("testing", "skyrelay.testing.connect_async"):
        from websockets.asyncio.client import connect as ws_connect

    ws = await ws_connect(url, additional_headers=dict(headers or {}), open_timeout=timeout,
                          compression=None, max_size=None, **kwargs)
    client = AsyncClient(ws, timeout)
    try:
        return await client._start()
    except BaseException:
        await client.close()
        raise


def async_factory(make: Callable[..., Awaitable[Any]], clients: AsyncClientSet
                  ) -> Callable[..., Awaitable[Any]]:
    """Wraps a coroutine function that makes a client so the client is registered in
    ``clients`` for the fixture's teardown."""
    async def factory(*args: Any, **kwargs: Any) -> Any:
        client = await make(*args, **kwargs)
        clients.add(client)
        return client

    return factory
