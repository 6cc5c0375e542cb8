"""FastAPI (and any Starlette app) integration.

    from fastapi import Depends, FastAPI
    from skyrelay.fastapi import SkyRelay

    app = FastAPI()
    relay = SkyRelay(app, port=8001)          # started and stopped with the app's lifespan

    @relay.server.on("subscribe_news")
    async def subscribe(conn, data):          # async handlers run on the app's event loop
        conn.join("news")

    @app.post("/news")
    async def publish(item: dict, server=Depends(relay.dependency)):
        return {"delivered": server.emit("news", item, to="news")}

The push server listens on its own port (FastAPI keeps serving HTTP on uvicorn's). Put both
behind one public port with a reverse proxy: see docs/deployment.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from .server import Server


class SkyRelay:
    """Ties a :class:`skyrelay.Server` to an ASGI app's lifespan."""

    def __init__(self, app: Any = None, server: Server | None = None, **options: Any) -> None:
        self.server = server if server is not None else Server(**options)
        if app is not None:
            self.init_app(app)

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

        self.server.start()
        try:
            yield self.server
        finally:
            await asyncio.to_thread(self.server.stop)

    def dependency(self) -> Server:
        """For ``Depends(relay.dependency)``: the running server."""
        return self.server
