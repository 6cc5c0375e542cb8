"""pytest plugin (entry point ``pytest11``): fixtures for testing skyrelay apps.

Inert unless used: importing it loads neither the C++ core nor the websockets package.

* ``skyrelay_server`` - a started :class:`skyrelay.Server` on 127.0.0.1 and a free port,
  stopped after the test, with every topic open to clients (``client_topics="*"``: it has no
  app to decide which; the factory's servers take your app's ``client_topics``). Register
  handlers on it inside the test (sync handlers are looked up per event, so registering after
  start works; a connect handler must be registered before start, so use
  ``skyrelay_server_factory`` for that).
* ``skyrelay_server_factory`` - ``factory(configure=None, **options)`` builds, configures and
  starts servers; all are stopped after the test.
* ``skyrelay_client`` - ``connect(server_or_url=None, path="/ws", headers=None, timeout=5)``
  returns a connected :class:`skyrelay.testing.Client`; all are closed after the test.
* ``skyrelay_sio_client`` - ``connect(server_or_url=None, namespace="/", auth=None,
  headers=None, transports=None, timeout=5)``: a :class:`skyrelay.testing.SioClient`
  (python-socketio).
* ``skyrelay_sse_client`` - ``connect(server_or_url=None, topics=(), path="/sse", headers=None,
  last_event_id=None, timeout=5)``: a :class:`skyrelay.testing.SseClient` whose welcome came.
* ``skyrelay_async_client`` and ``skyrelay_async_sio_client`` - the same as the JSON and
  Socket.IO ones, awaited inside the test's event loop (``await skyrelay_async_client()``),
  giving :class:`skyrelay.testing.AsyncClient` / :class:`~skyrelay.testing.AsyncSioClient`.
  They are plain fixtures that return coroutine functions, so they work under ``asyncio.run``
  in a sync test, anyio's ``@pytest.mark.anyio`` and pytest-asyncio alike.

Every client a fixture made is closed after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture
def skyrelay_server_factory() -> Iterator[Callable[..., Any]]:
    from skyrelay import Server

    servers: list[Server] = []

    def factory(configure: Callable[[Server], None] | None = None, **options: Any) -> Server:
        options.setdefault("port", 0)
        server = Server(**options)
        if configure is not None:
            configure(server)
        servers.append(server)
        return server.start()

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture
def skyrelay_server(skyrelay_server_factory: Callable[..., Any]) -> Any:
    return skyrelay_server_factory(client_topics="*")


@pytest.fixture
def skyrelay_client(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    from skyrelay.testing import Client, connect

    clients: list[Client] = []

    def factory(server: Any = None, path: str = "/ws", headers: dict[str, str] | None = None,
                timeout: float = 5.0) -> Client:
        if server is None:
            server = request.getfixturevalue("skyrelay_server")
        if isinstance(server, str):
            url = server
        else:
            url = f"ws://{server.host}:{server.port}{path}"
        client = connect(url, headers=headers, timeout=timeout)
        clients.append(client)
        return client

    yield factory
    _close_all(clients)


def _close_all(clients: list[Any]) -> None:
    """Closes every client, even when one fails to close; then raises the first failure."""
    errors = []
    for client in clients:
        try:
            client.close()
        except Exception as e:  # noqa: BLE001 - re-raised below, after the others closed
            errors.append(e)
    if errors:
        raise errors[0]


def _base_url(request: pytest.FixtureRequest, server: Any, scheme: str) -> str:
    """``scheme://host:port`` of a server (the test's ``skyrelay_server`` when None)."""
    if server is None:
        server = request.getfixturevalue("skyrelay_server")
    return f"{scheme}://{server.host}:{server.port}"


@pytest.fixture
def skyrelay_sio_client(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``connect(server=None, namespace="/", auth=None, headers=None, transports=None,
    timeout=5)``: a python-socketio client; ``expect(event)`` returns the event's data."""
    from skyrelay.testing import SioClient, connect_sio

    clients: list[SioClient] = []

    def factory(server: Any = None, namespace: str = "/", auth: Any = None,
                headers: dict[str, str] | None = None, transports: list[str] | None = None,
                timeout: float = 5.0) -> SioClient:
        url = server if isinstance(server, str) else _base_url(request, server, "http")
        client = connect_sio(url, namespace=namespace, auth=auth, headers=headers,
                             transports=transports, timeout=timeout)
        clients.append(client)
        return client

    yield factory
    _close_all(clients)


@pytest.fixture
def skyrelay_sse_client(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``connect(server=None, topics=(), path="/sse", headers=None, last_event_id=None,
    timeout=5)``: an SSE stream whose welcome came; ``expect(event)`` returns decoded data."""
    from skyrelay.testing import SseClient, connect_sse
    from skyrelay._testing_sse import stream_url

    clients: list[SseClient] = []

    def factory(server: Any = None, topics: Any = (), path: str = "/sse",
                headers: dict[str, str] | None = None, last_event_id: str | None = None,
                timeout: float = 5.0) -> SseClient:
        if isinstance(server, str):
            url = server
        else:
            names = [topics] if isinstance(topics, str) else list(topics)
            url = stream_url(_base_url(request, server, "http"), path, names, last_event_id)
        client = connect_sse(url, headers=headers, timeout=timeout)
        clients.append(client)
        return client

    yield factory
    _close_all(clients)


@pytest.fixture
def skyrelay_async_client(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``await connect(server=None, path="/ws", headers=None, timeout=5)`` in the test's
    loop: a JSON-protocol client on asyncio; ``await client.expect(event)``."""
    from skyrelay._testing_async import AsyncClientSet, async_factory
    from skyrelay.testing import AsyncClient, connect_async

    clients = AsyncClientSet()

    async def make(server: Any = None, path: str = "/ws", headers: dict[str, str] | None = None,
                   timeout: float = 5.0) -> AsyncClient:
        url = server if isinstance(server, str) else _base_url(request, server, "ws") + path
        return await connect_async(url, headers=headers, timeout=timeout)

    yield async_factory(make, clients)
    clients.close_all()


@pytest.fixture
def skyrelay_async_sio_client(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``await connect(server=None, namespace="/", ...)`` in the test's loop: a
    ``socketio.AsyncClient``; ``await client.expect(event)``."""
    from skyrelay._testing_async import AsyncClientSet, async_factory
    from skyrelay.testing import AsyncSioClient, connect_async_sio

    clients = AsyncClientSet()

    async def make(server: Any = None, namespace: str = "/", auth: Any = None,
                   headers: dict[str, str] | None = None, transports: list[str] | None = None,
                   timeout: float = 5.0) -> AsyncSioClient:
        url = server if isinstance(server, str) else _base_url(request, server, "http")
        return await connect_async_sio(url, namespace=namespace, auth=auth, headers=headers,
                                       transports=transports, timeout=timeout)

    yield async_factory(make, clients)
    clients.close_all()
