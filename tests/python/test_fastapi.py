"""FastAPI: lifespan start/stop, the server through a dependency, emits from sync and async
routes, async handlers on the app's loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

fastapi = pytest.importorskip("fastapi")
from fastapi import Depends, FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from skyrelay.fastapi import SkyRelay  # noqa: E402
from skyrelay.testing import connect  # noqa: E402


def build_app():
    events = []

    @__import__("contextlib").asynccontextmanager
    async def lifespan(app):
        events.append("app startup")
        yield
        events.append("app shutdown")

    app = FastAPI(lifespan=lifespan)
    relay = SkyRelay(app, port=0)
    loops = []

    @relay.server.on("subscribe_news")
    async def subscribe(conn, data):
        loops.append(asyncio.get_running_loop())
        conn.join("news")
        return "ok"

    @app.post("/news")
    async def publish_async(item: dict, server=Depends(relay.dependency)):
        return {"delivered": server.emit("news", item, to="news")}

    @app.post("/news-sync")
    def publish_sync(item: dict, server=Depends(relay.dependency)):
        return {"delivered": server.emit("news", item, to="news"),
                "thread": threading.current_thread().name}

    @app.get("/loop")
    async def loop_id():
        return {"id": id(asyncio.get_running_loop())}

    return app, relay, events, loops


def test_lifespan_dependency_and_emits():
    app, relay, events, loops = build_app()
    assert not relay.server.running
    with TestClient(app) as http:
        assert relay.server.running and events == ["app startup"]
        with connect(relay.server.url) as ws:
            assert ws.request("subscribe_news") == "ok"
            r = http.post("/news", json={"headline": "async route"})
            assert r.json() == {"delivered": 1}
            assert ws.expect("news") == {"headline": "async route"}
            r = http.post("/news-sync", json={"headline": "sync route"})
            assert r.json()["delivered"] == 1
            assert ws.expect("news") == {"headline": "sync route"}
        # The async handler ran on the app's own event loop.
        assert id(loops[0]) == http.get("/loop").json()["id"]
    assert not relay.server.running
    assert events == ["app startup", "app shutdown"]
