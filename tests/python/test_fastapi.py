"""FastAPI: lifespan start/stop, the server through a dependency, emits from sync and async
routes, async handlers on the app's loop; the default port beside a real uvicorn's."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

fastapi = pytest.importorskip("fastapi")
from fastapi import Depends, FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

import skyrelay  # noqa: E402
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


# -- ports: SkyRelay(app) beside a default uvicorn -------------------------------------------

PORTS_SCRIPT = Path(__file__).with_name("fastapi_ports.py")


def run_in_own_network(mode: str) -> dict:
    """fastapi_ports.py in a network namespace of its own (unshare: a private loopback), so that
    the fixed ports 8000 and 8001 are free whatever else runs on this machine. Where namespaces
    are not allowed, it runs here only if both ports are free."""
    script = [sys.executable, str(PORTS_SCRIPT), mode]
    unshare = shutil.which("unshare")
    command = None
    if unshare and subprocess.run([unshare, "-rn", "true"], capture_output=True).returncode == 0:
        command = [unshare, "-rn", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *script]
    else:
        for port in (8000, 8001):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    pytest.skip(f"no network namespace here and port {port} is in use")
        command = script
    done = subprocess.run(command, capture_output=True, text=True, timeout=60,
                          cwd=PORTS_SCRIPT.parent)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_defaults_do_not_clash_with_uvicorn():
    # uvicorn on its default port and SkyRelay(app) with no port, in one process: both serve.
    result = run_in_own_network("defaults")
    assert result["started"], result
    assert result["app"] == {"url": "ws://127.0.0.1:8001/ws", "port": 8001, "running": True}
    assert result["welcome"] is True
    assert result["running_after"] is False  # stopped with the app's lifespan


def test_a_port_in_use_fails_startup_naming_the_setting():
    result = run_in_own_network("occupied")
    assert result["started"] is False and result["exit"] == 3  # uvicorn's startup failure
    text = "\n".join(result["errors"])
    assert "skyrelay cannot listen on 127.0.0.1:8001: the port is in use" in text, text
    assert "SkyRelay(app, port=...)" in text, text


def test_relay_reports_its_port_and_urls():
    app = FastAPI()
    relay = SkyRelay(app, port=0)
    assert relay.port == 0  # picked when the app starts
    with TestClient(app):
        assert relay.port > 0
        assert relay.url == f"ws://127.0.0.1:{relay.port}/ws"
        assert relay.http_url == f"http://127.0.0.1:{relay.port}"
    assert SkyRelay(FastAPI()).port == 8001
    # A Server made elsewhere keeps its own port.
    assert SkyRelay(FastAPI(), server=skyrelay.Server(port=9123)).port == 9123
