"""Socket.IO test clients: python-socketio's ``Client`` and ``AsyncClient`` with the same
``expect(event, timeout=)`` as the JSON-protocol test client.

A catch-all handler keeps every event of the client's namespace until the test asks for it,
so nothing is missed between two calls. An event's data is its one argument (None for none,
a tuple for several); ``expect_args`` gives the arguments as sent. python-socketio is imported
on first use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from ._testing_inbox import AsyncInbox, Inbox


def event_data(args: tuple[Any, ...]) -> Any:
    """What ``expect`` returns for an event's arguments."""
    if not args:
        return None
    return args[0] if len(args) == 1 else args


def _named(event: str):
    return lambda item: item[0] == event


class _SioBase:
    """What the sync and async Socket.IO clients share: the inbox wiring and the sid."""

    def __init__(self, sio: Any, namespace: str, timeout: float, inbox: Any) -> None:
        self.sio = sio                  # the python-socketio client, for anything else
        self.namespace = namespace
        self.timeout = timeout
        self._inbox = inbox
        self.disconnect_reason: str | None = None
        self.connect_error: Any = None  # the server's refusal ({"message", "data"} or a str)
        sio.on("*", self._on_event, namespace=namespace)
        sio.on("disconnect", self._on_disconnect, namespace=namespace)
        sio.on("connect_error", self._on_connect_error, namespace=namespace)

    def _on_event(self, event: str, *args: Any) -> None:
        self._inbox.put((event, args))

    def _on_connect_error(self, data: Any = None) -> None:
        self.connect_error = data

    def _refused(self, error: Exception) -> Exception:
        """python-socketio's ConnectionError says only that a namespace failed; this one
        carries the server's refusal too."""
        import socketio

        if self.connect_error is None:
            return error
        return socketio.exceptions.ConnectionError(f"{error} (refused: {self.connect_error!r})")

    def _on_disconnect(self, *reason: Any) -> None:
        # python-socketio 5.12 and later pass the reason; earlier versions nothing.
        self.disconnect_reason = str(reason[0]) if reason else "disconnected"
        self._inbox.end(f"disconnected ({self.disconnect_reason})")

    @property
    def sid(self) -> str | None:
        """The socket's id in its namespace (what ``conn.sid`` is on the server)."""
        return self.sio.get_sid(self.namespace)

    def received(self) -> list[tuple[str, tuple[Any, ...]]]:
        """Returns and clears every (event, args) received and not yet taken."""
        return self._inbox.drain()

    def _what(self, event: str) -> str:
        return f"a Socket.IO event {event!r} on {self.namespace}"

    def _t(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else timeout


class SioClient(_SioBase):
    """A connected python-socketio ``Client``. Use :func:`connect_sio` to make one."""

    def __init__(self, sio: Any, namespace: str, timeout: float) -> None:
        super().__init__(sio, namespace, timeout, Inbox())

    def expect(self, event: str, timeout: float | None = None) -> Any:
        """Waits for the next ``event`` and returns its data (its one argument)."""
        return event_data(self.expect_args(event, timeout))

    def expect_args(self, event: str, timeout: float | None = None) -> tuple[Any, ...]:
        return self._inbox.take(_named(event), self._t(timeout), self._what(event))[1]

    def expect_nothing(self, within: float = 0.2) -> None:
        """Asserts that no event arrives within ``within`` seconds."""
        self._inbox.expect_nothing(within)

    def emit(self, event: str, *args: Any) -> None:
        self.sio.emit(event, args if len(args) > 1 else (args[0] if args else None),
                      namespace=self.namespace)

    def call(self, event: str, *args: Any, timeout: float | None = None) -> Any:
        """Emits with an ack and returns the ack's data (the handler's return value)."""
        return self.sio.call(event, args if len(args) > 1 else (args[0] if args else None),
                             namespace=self.namespace, timeout=self._t(timeout))

    @property
    def closed(self) -> bool:
        return not self.sio.connected

    def close(self) -> None:
        self.sio.disconnect()
        self.sio.wait()  # the client's threads have ended

    def __enter__(self) -> SioClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncSioClient(_SioBase):
    """A connected python-socketio ``AsyncClient``. Use :func:`connect_async_sio`."""

    def __init__(self, sio: Any, namespace: str, timeout: float) -> None:
        super().__init__(sio, namespace, timeout, AsyncInbox())
        self.loop = asyncio.get_running_loop()
        self._closed = False
        self._guard = asyncio.ensure_future(self._close_with_the_loop())

    async def _close_with_the_loop(self) -> None:
        """Waits until cancelled, which happens when the loop shuts down with this client
        open; then drops the connection without waiting for the server."""
        try:
            await asyncio.Future()
        except asyncio.CancelledError:
            if not self._closed:
                self._closed = True
                await asyncio.wait_for(self.sio.eio.disconnect(abort=True), 2)
            raise

    async def expect(self, event: str, timeout: float | None = None) -> Any:
        return event_data(await self.expect_args(event, timeout))

    async def expect_args(self, event: str, timeout: float | None = None) -> tuple[Any, ...]:
        return (await self._inbox.take(_named(event), self._t(timeout), self._what(event)))[1]

    async def expect_nothing(self, within: float = 0.2) -> None:
        try:
            item = await self._inbox.take(lambda _: True, within, "an event")
        except AssertionError:
            return
        raise AssertionError(f"unexpected event: {item!r}")

    async def emit(self, event: str, *args: Any) -> None:
        await self.sio.emit(event, args if len(args) > 1 else (args[0] if args else None),
                            namespace=self.namespace)

    async def call(self, event: str, *args: Any, timeout: float | None = None) -> Any:
        return await self.sio.call(event,
                                   args if len(args) > 1 else (args[0] if args else None),
                                   namespace=self.namespace, timeout=self._t(timeout))

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._guard.cancel()
        await self.sio.disconnect()
        await self.sio.wait()

    async def __aenter__(self) -> AsyncSioClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _options(url: str, namespace: str, auth: Any, headers: Mapping[str, str] | None,
             transports: list[str] | None, timeout: float) -> dict[str, Any]:
    return dict(url=url, namespaces=[namespace], auth=auth, headers=dict(headers or {}),
                transports=transports, wait_timeout=timeout)


def connect_sio(url: str, *, namespace: str = "/", auth: Any = None,
                headers: Mapping[str, str] | None = None, transports: list[str] | None = None,
                timeout: float = 5.0) -> SioClient:
    """Connects a python-socketio ``Client`` (no reconnection) to ``url`` (``http://host:port``)
    in ``namespace``; a refused CONNECT raises ``socketio.exceptions.ConnectionError``."""
    from ._extras import requires_extra

    with requires_extra("testing", "skyrelay.testing.connect_sio"):
        import socketio

    sio = socketio.Client(reconnection=False)
    client = SioClient(sio, namespace, timeout)
    try:
        sio.connect(**_options(url, namespace, auth, headers, transports, timeout))
    except socketio.exceptions.ConnectionError as e:
        client.close()
        raise client._refused(e) from e
    return client


async def connect_async_sio(url: str, *, namespace: str = "/", auth: Any = None,
                            headers: Mapping[str, str] | None = None,
                            transports: list[str] | None = None,
                            timeout: float = 5.0) -> AsyncSioClient:
    """The asyncio form of :func:`connect_sio` (``socketio.AsyncClient``, which needs aiohttp)."""
    from ._extras import requires_extra

    with requires_extra("testing", "skyrelay.testing.connect_async_sio"):
        import aiohttp  # noqa: F401  (python-socketio's AsyncClient imports it only on connect)
        import socketio

    sio = socketio.AsyncClient(reconnection=False)
    client = AsyncSioClient(sio, namespace, timeout)
    try:
        await sio.connect(**_options(url, namespace, auth, headers, transports, timeout))
    except socketio.exceptions.ConnectionError as e:
        await client.close()
        raise client._refused(e) from e
    except BaseException:
        await client.close()
        raise
    return client
