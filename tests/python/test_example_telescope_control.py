"""S2, telescope control (examples/telescope_control), through the seed's own contract: the
`websockets` client speaks {id, type, telescope_id, timestamp, payload} frames on /api/ws and
/api/ws/{telescope_id}, and rebuilds each telescope's status from the full update and the
deltas; httpx calls the REST routes on the same port."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import time
from pathlib import Path

import httpx
import pytest
import websockets
from example_process import readme_command

APP = Path(__file__).parents[2] / "examples" / "telescope_control" / "app.py"


def load_app():
    spec = importlib.util.spec_from_file_location("telescope_control_app", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def control():
    app = load_app()
    server, fleet = app.build("127.0.0.1", 0, speed=0.01)
    server.start()
    try:
        yield server, fleet
    finally:
        server.stop()
        sys.path.remove(str(APP.parent))


def ws_url(server, path):
    return server.http_url.replace("http", "ws", 1) + path


class Client:
    """A telescope client: sends the seed's frames, keeps each telescope's status as rebuilt
    from what it receives."""

    def __init__(self, ws):
        self.ws, self.status, self.frames, self.n = ws, {}, [], 0

    async def send(self, type_, payload=None, telescope_id=None, id_=None):
        self.n += 1
        frame_id = id_ or f"c{self.n}"
        await self.ws.send(json.dumps({"id": frame_id, "type": type_,
                                       "telescope_id": telescope_id,
                                       "timestamp": int(time.time() * 1000),
                                       "payload": payload or {}}))
        return frame_id

    async def recv(self, timeout=5.0):
        frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        assert set(frame) == {"id", "type", "telescope_id", "timestamp", "payload"}, frame
        assert isinstance(frame["id"], str) and isinstance(frame["timestamp"], int)
        self.frames.append(frame)
        if frame["type"] == "status_update":
            p, tid = frame["payload"], frame["telescope_id"]
            if p.get("removed"):
                self.status.pop(tid, None)
            elif p["full_update"] and p["index"] == 0:
                self.status[tid] = dict(p["status"])
            else:
                self.status.setdefault(tid, {}).update(p["status"])
        return frame

    async def until(self, type_, **payload):
        while True:
            frame = await self.recv()
            if frame["type"] == type_ and all(frame["payload"].get(k) == v
                                              for k, v in payload.items()):
                return frame

    async def command(self, action, parameters=None, telescope_id=None, **extra):
        cid = await self.send("control_command", {"action": action,
                                                  "parameters": parameters or {},
                                                  "response_expected": True, **extra},
                              telescope_id)
        while True:
            frame = await self.recv()
            if frame["type"] in ("command_response", "error") and \
                    frame["payload"].get("command_id") == cid:
                return frame


def test_a_telescope_connection_gets_the_full_status_then_deltas(control):
    server, fleet = control

    async def run():
        async with websockets.connect(ws_url(server, "/api/ws/seestar-001")) as ws:
            c = Client(ws)
            first = await c.recv()
            assert first["type"] == "status_update" and first["telescope_id"] == "seestar-001"
            assert first["payload"]["full_update"] is True
            assert first["payload"]["status"] == fleet.scopes["seestar-001"].snapshot()

            reply = await c.command("unpark")
            assert reply["type"] == "command_response"
            assert reply["payload"]["success"] is True
            assert reply["payload"]["result"] == {"status": "unparked"}
            assert reply["telescope_id"] is None  # echoes the command's (none: the URL's)
            deltas = [f["payload"] for f in c.frames if f["type"] == "status_update"][1:]
            assert deltas == [{"telescope_id": "seestar-001", "status": {"parked": False},
                               "changes": ["parked"], "full_update": False}]

            for action, params in [("set_gain", {"gain": 180}),
                                   ("move", {"direction": "up", "duration": 500}),
                                   ("goto", {"ra": 5.5, "dec": -5.4}),
                                   ("set_gain", {"gain": 180})]:
                assert (await c.command(action, params))["payload"]["success"] is True
            # Rebuilt from the full update and the deltas, it is the telescope's status.
            assert c.status["seestar-001"] == fleet.scopes["seestar-001"].snapshot()
            assert c.status["seestar-001"]["gain"] == 180 and c.status["seestar-001"]["ra"] == 5.5
            # The second set_gain changed nothing: no delta names gain twice in a row.
            gains = [f for f in c.frames if f["type"] == "status_update"
                     and not f["payload"]["full_update"] and "gain" in f["payload"]["changes"]]
            assert len(gains) == 1

    asyncio.run(run())


def test_commands_are_validated_and_fail_with_codes(control):
    server, fleet = control

    async def run():
        async with websockets.connect(ws_url(server, "/api/ws/seestar-002")) as ws:
            c = Client(ws)
            await c.until("status_update", full_update=True)
            bad = await c.command("fly")
            assert bad["type"] == "error" and bad["payload"]["code"] == "invalid_payload"
            assert "payload.action" in bad["payload"]["message"]
            assert bad["payload"]["success"] is False
            parked = await c.command("move", {"direction": "up", "duration": 10})
            assert parked["payload"]["code"] == "parked"
            await c.command("unpark")
            wrong = await c.command("move", {"direction": "sideways", "duration": 10})
            assert wrong["payload"]["code"] == "invalid_parameters"
            assert "parameters.direction" in wrong["payload"]["message"]
            other = await c.command("unpark", telescope_id="seestar-999")
            assert other["payload"]["code"] == "not_found"

            fleet.scopes["seestar-002"].hung = True  # the mount stops answering
            late = await c.command("goto", {"ra": 1, "dec": 2}, timeout_ms=200)
            assert late["payload"]["code"] == "timeout"
            assert "within 200 ms" in late["payload"]["message"]
            # The connection goes on.
            fleet.scopes["seestar-002"].hung = False
            assert (await c.command("set_gain", {"gain": 7}))["payload"]["success"] is True

    asyncio.run(run())


def test_the_general_endpoint_subscribes_by_frame(control):
    server, fleet = control

    async def run():
        async with websockets.connect(ws_url(server, "/api/ws")) as ws:
            # The server offered permessage-deflate back (the endpoints compress).
            assert "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")
            c = Client(ws)
            await c.send("subscribe", telescope_id="seestar-003")
            full = await c.until("status_update", full_update=True)
            assert full["telescope_id"] == "seestar-003"
            await c.send("heartbeat", telescope_id="seestar-003")
            beat = await c.until("heartbeat")
            assert beat["telescope_id"] == "seestar-003" and "server_time" in beat["payload"]

            reply = await c.command("set_gain", {"gain": 42}, telescope_id="seestar-003")
            assert reply["telescope_id"] == "seestar-003" and reply["payload"]["success"]
            assert c.status["seestar-003"]["gain"] == 42

            # A name outside the telescopes' is refused, whole.
            await c.send("subscribe", telescope_id="admin")
            refused = await c.until("error")
            assert refused["payload"]["code"] == "forbidden"

            await c.send("request_full_update", telescope_id="seestar-003")
            again = await c.until("status_update", full_update=True)
            assert again["payload"]["status"] == fleet.scopes["seestar-003"].snapshot()

            await c.send("unsubscribe", telescope_id="seestar-003")
            await c.send("heartbeat")
            await c.until("heartbeat")
            assert (await c.command("set_gain", {"gain": 43},
                                    telescope_id="seestar-003"))["payload"]["success"]
            gains = [f["payload"]["status"].get("gain") for f in c.frames
                     if f["type"] == "status_update"]
            assert 43 not in gains  # no longer a member: no delta

    asyncio.run(run())


def test_discovery_reaches_everyone_and_rest_works(control):
    server, fleet = control

    async def run():
        async with websockets.connect(ws_url(server, "/api/ws")) as ws, \
                httpx.AsyncClient(base_url=server.http_url) as http:
            c = Client(ws)
            await c.send("heartbeat")
            await c.until("heartbeat")
            r = await http.post("/api/telescopes", json={"telescope_id": "seestar-new"})
            assert r.status_code == 201
            found = await c.until("telescope_discovered")
            assert found["payload"]["telescope_id"] == "seestar-new"
            assert (await http.post("/api/telescopes",
                                    json={"telescope_id": "seestar-new"})).status_code == 409
            assert (await http.post("/api/telescopes",
                                    json={"telescope_id": "../x"})).status_code == 422
            assert (await http.delete("/api/telescopes/seestar-new")).status_code == 204
            lost = await c.until("telescope_lost")
            assert lost["payload"] == {"telescope_id": "seestar-new", "reason": "removed"}

            r = await http.post("/api/telescopes/seestar-001/commands",
                                json={"action": "set_gain", "parameters": {"gain": 9}})
            assert r.json() == {"success": True, "result": {"status": "gain_set", "gain": 9}}
            assert (await http.get("/api/telescopes/seestar-001/status")).json()["gain"] == 9
            health = await http.get("/api/ws/health")
            assert health.status_code == 200 and health.json()["connections"] >= 1

    asyncio.run(run())


def test_an_unknown_telescope_url_is_refused(control):
    server, _ = control

    async def run():
        with pytest.raises(websockets.InvalidStatus) as caught:
            async with websockets.connect(ws_url(server, "/api/ws/seestar-404")):
                pass
        assert caught.value.response.status_code == 404
        with pytest.raises(websockets.InvalidStatus) as caught:
            async with websockets.connect(ws_url(server, "/api/ws/admin")):
                pass
        assert caught.value.response.status_code == 403

    asyncio.run(run())


def test_the_readme_command_serves_drifting_telescopes():
    with readme_command(APP, "--tick", "0.1") as port:
        async def run():
            async with websockets.connect(f"ws://127.0.0.1:{port}/api/ws/seestar-001") as ws:
                c = Client(ws)
                await c.until("status_update", full_update=True)
                delta = await c.until("status_update", full_update=False)
                assert set(delta["payload"]["changes"]) <= {"temp", "battery_capacity"}

        asyncio.run(run())
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
