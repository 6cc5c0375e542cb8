"""S1, the SDR dashboard (examples/sdr_dashboard), through the seed's own contract: the
`websockets` client speaks {event, data, timestamp} frames on /ws/updates exactly as the
seed's manager does, and httpx calls the FastAPI routes served on the same port."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import websockets
from example_process import readme_command

APP = Path(__file__).parents[2] / "examples" / "sdr_dashboard" / "app.py"


def load_app():
    spec = importlib.util.spec_from_file_location("sdr_dashboard_app", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def dashboard():
    app = load_app()
    server, _, network = app.build("127.0.0.1", 0)
    server.start()
    try:
        yield server, network
    finally:
        server.stop()


def frame(event, data=None):
    return json.dumps({"event": event, "data": {} if data is None else data,
                       "timestamp": "2025-10-25T08:45:00.000Z"})


async def receive(ws, timeout=5.0):
    message = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    assert set(message) == {"event", "data", "timestamp"}, message
    datetime.fromisoformat(message["timestamp"].replace("Z", "+00:00"))  # ISO-8601
    return message


async def synced(ws):
    """Pings and waits for the pong: what the connection sent before is handled by then."""
    await ws.send(frame("ping"))
    while (m := await receive(ws))["event"] != "pong":
        pass
    return m


def ws_url(server):
    return server.http_url.replace("http", "ws", 1) + "/ws/updates"


def test_ping_gets_pong_in_the_seed_envelope(dashboard):
    server, _ = dashboard

    async def run():
        async with websockets.connect(ws_url(server)) as ws:
            pong = await synced(ws)
            assert pong["data"] == {}

    asyncio.run(run())


def test_services_health_reaches_every_dashboard(dashboard):
    server, _ = dashboard

    async def run():
        async with websockets.connect(ws_url(server)) as a, \
                websockets.connect(ws_url(server)) as b:
            await synced(a)
            await synced(b)
            async with httpx.AsyncClient() as http:
                r = await http.get(f"{server.http_url}/api/v1/system/status")
            assert r.status_code == 200 and r.json()["status"] == "healthy"
            for ws in (a, b):
                m = await receive(ws)
                assert m["event"] == "services:health"
                assert m["data"] == r.json()["services"]
                assert set(m["data"]) >= {"api-gateway", "rf-acquisition", "inference"}

    asyncio.run(run())


def test_subscriber_events_reach_subscribers_only(dashboard):
    server, _ = dashboard

    async def run():
        async with websockets.connect(ws_url(server)) as sub, \
                websockets.connect(ws_url(server)) as other:
            await sub.send(frame("subscribe", {"events": ["signals:detected", "websdrs:status"]}))
            await synced(sub)
            await synced(other)
            async with httpx.AsyncClient(base_url=server.http_url) as http:
                r = await http.post("/api/v1/signals",
                                    json={"frequency_mhz": 145.5, "snr_db": 15.3, "websdr_id": 1})
                assert r.status_code == 202 and r.json()["delivered"] == 1
                r = await http.put("/api/v1/websdrs/3",
                                   json={"status": "offline", "response_time_ms": None})
                assert r.json() == {"changed": True}
                m = await receive(sub)
                assert m["event"] == "signals:detected"
                assert m["data"]["frequency_mhz"] == 145.5 and m["data"]["websdr_id"] == 1
                m = await receive(sub)
                assert m == {**m, "event": "websdrs:status",
                             "data": {"3": {"status": "offline", "response_time_ms": None}}}
                # The same state again changes nothing and sends nothing.
                r = await http.put("/api/v1/websdrs/3",
                                   json={"status": "offline", "response_time_ms": None})
                assert r.json() == {"changed": False}
                await http.get("/api/v1/system/status")
            # Both next see the broadcast: nothing for subscribers reached `other`, and the
            # unchanged WebSDR reached nobody.
            assert (await receive(other))["event"] == "services:health"
            assert (await receive(sub))["event"] == "services:health"

            await sub.send(frame("unsubscribe", {"events": ["signals:detected"]}))
            await synced(sub)
            async with httpx.AsyncClient(base_url=server.http_url) as http:
                r = await http.post("/api/v1/signals",
                                    json={"frequency_mhz": 7.1, "snr_db": 3, "websdr_id": 2})
                assert r.json()["delivered"] == 0

    asyncio.run(run())


def test_bad_frames_get_error_frames_and_the_connection_stays(dashboard):
    server, _ = dashboard

    async def run():
        async with websockets.connect(ws_url(server)) as ws:
            await ws.send("not json")
            m = await receive(ws)
            assert m["event"] == "error" and m["data"]["code"] == "bad_json"
            # Only the four event names can be followed; anything else is refused whole.
            await ws.send(frame("subscribe", {"events": ["signals:detected", "admin"]}))
            m = await receive(ws)
            assert m["event"] == "error" and m["data"]["code"] == "forbidden"
            await synced(ws)
            async with httpx.AsyncClient(base_url=server.http_url) as http:
                r = await http.post("/api/v1/signals",
                                    json={"frequency_mhz": 1.0, "snr_db": 1, "websdr_id": 1})
                assert r.json()["delivered"] == 0

    asyncio.run(run())


def test_rest_api_validates_and_serves_the_page(dashboard):
    server, network = dashboard
    with httpx.Client(base_url=server.http_url) as http:
        assert http.post("/api/v1/signals", json={"frequency_mhz": -1, "snr_db": 1,
                                                  "websdr_id": 1}).status_code == 422
        assert http.put("/api/v1/websdrs/99", json={"status": "online"}).status_code == 404
        assert http.get("/api/v1/websdrs").json() == network.websdrs
        page = http.get("/")
        assert page.status_code == 200 and 'id="state-badge"' in page.text
        assert "createWebSocketManager" in http.get("/dashboard.js").text


def test_the_readme_command_serves_the_simulated_network():
    with readme_command(APP, "--interval", "0.1") as port:
        async def run():
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws/updates") as ws:
                await ws.send(frame("subscribe", {"events": ["signals:detected"]}))
                while (m := await receive(ws))["event"] != "signals:detected":
                    pass
                assert 144.0 <= m["data"]["frequency_mhz"] <= 146.0

        asyncio.run(run())
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
