"""FastAPI (and any Starlette app) integration.

    from fastapi import Depends, FastAPI
    from skyrelay.fastapi import SkyRelay

    app = FastAPI()
    relay = SkyRelay(app)                     # port 8001; started and stopped with the lifespan

    @relay.server.on("subscribe_news")
    async def subscribe(conn, data):          # async handlers run on the app's event loop
        conn.join("news")

    @app.post("/news")
    async def publish(item: dict, server=Depends(relay.dependency)):
        return {"delivered": server.emit("news", item, to="news")}

The push server listens on its own port, 8001 by default, next to uvicorn's 8000 (FastAPI keeps
serving HTTP there); ``port=`` is the one setting to change it, and ``port=0`` picks a free port
(read ``relay.port`` or ``relay.url`` once the app has started). A port in use stops the app's
startup with an OSError that says so. Put both behind one public port with a reverse proxy (and
``trusted_proxies=``): see docs/deployment.md.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import AsyncIterator
from typing import Any

from .server import Server

# Beside uvicorn's (and FastAPI's documented) 8000, so that `SkyRelay(app)` under a default
# `uvicorn main:app` does not ask for the same port.
DEFAULT_PORT = 8001


class SkyRelay:
    """Ties a :class:`skyrelay.Server` to an ASGI app's lifespan.

    ``options`` are :class:`skyrelay.Server`'s keyword arguments, with ``port`` 8001 unless
    given (``port=0``: a free port). ``server=`` takes a Server made elsewhere instead, with its
    own port."""

    def __init__(self, app: Any = None, server: Server | None = None, **options: Any) -> None:
        if server is None:
            options.setdefault("port", DEFAULT_PORT)
        self.server = server if server is not None else Server(**options)
        if app is not None:
            self.init_app(app)

    @property
    def port(self) -> int:
        """The push server's port (the one the OS picked for ``port=0``, once started)."""
        return self.server.port

    @property
    def url(self) -> str:
        """The JSON protocol's WebSocket URL, ``ws://127.0.0.1:8001/ws`` by default."""
        return self.server.url

    @property
    def http_url(self) -> str:
        """The push server's base URL (``/sse``, ``/socket.io/``, ``/skyrelay.js`` below it)."""
        return self.server.http_url

    def init_app(self, app: Any) -> None:
        """Wraps the app's lifespan: the server starts before the app serves and stops after.
        Works with FastAPI's ``lifespan=`` and with the older startup/shutdown events."""
        router = app.router
        inner = router.lifespan_context

        @contextlib.asynccontextmanager
        async def lifespan(asgi_app: Any) -> AsyncIterator[Any]:
            async with self.running():
                async with inner(asgi_app) as state:
                    yield state

        router.lifespan_context = lifespan
        app.state.skyrelay = self.server

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Server]:
        """Starts the server on the running loop (so async handlers run there) and stops it
        without blocking the loop."""
        import asyncio

        host, port = self.server.host, self.server.port
        try:
            self.server.start()
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            # The one setting that moves it, named, instead of a bare "address in use".
            raise OSError(errno.EADDRINUSE,
                          f"skyrelay cannot listen on {host}:{port}: the "
                          f"port is in use (uvicorn's default is 8000, skyrelay's 8001); pass "
                          f"SkyRelay(app, port=...) with a free port, or port=0 to pick one and "
                          f"read relay.url") from None
        try:
            yield self.server
        finally:
            await asyncio.to_thread(self.server.stop)

    def dependency(self) -> Server:
        """For ``Depends(relay.dependency)``: the running server."""
        return self.server
