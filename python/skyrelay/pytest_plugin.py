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
    for client in clients:
        client.close()
