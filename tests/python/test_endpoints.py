"""Endpoints and envelopes the application declares (docs/api.md "Endpoints and envelopes"):
the seeds' own clients, unchanged. S1's dashboard (``/ws/updates``, ``{event, data,
timestamp}``), S2's telescope control (``/api/ws`` and ``/api/ws/{telescope_id}``, ``{id, type,
telescope_id, timestamp, payload}``, control_command -> command_response), S4's SSE stream
(``/api/v1/sse/stream/<well_id>`` with ``connected`` and ``heartbeat`` events), hostile path
parameters, configurable built-in paths, and every transport getting the same publication."""

from __future__ import annotations

import contextlib
import datetime
import json
import socket

import httpx
import pytest
from pydantic import BaseModel
import websockets.sync.client as wsc
from sse_client import Stream

import skyrelay
from skyrelay import Envelope, RequestError
from skyrelay.testing import wait_until

S1 = Envelope(
    {"event": "$event", "data": "$data", "timestamp": "$ts"},
    kind="event", data="data", subscribe="subscribe", unsubscribe="unsubscribe",
    topic=["data.topic", "data.topics"], ping="ping",
    pong={"event": "pong", "data": {}, "timestamp": "$ts"},
    subscribed={"event": "subscribed", "data": {"topic": "$topic"}, "timestamp": "$ts"},
    error={"event": "error", "data": {"code": "$code", "message": "$message"},
           "timestamp": "$ts"})

S2 = Envelope(
    {"id": "$id", "type": "$event", "telescope_id": "$topic", "timestamp": "$ts_ms",
     "payload": "$data"},
    kind="type", data="payload", id="id", requests="control_command",
    subscribe="subscribe", unsubscribe="unsubscribe", topic="telescope_id", ping="heartbeat",
    pong={"id": "$id", "type": "heartbeat", "telescope_id": "$in.telescope_id",
          "timestamp": "$ts_ms", "payload": {}},
    response={"id": "$id", "type": "command_response", "telescope_id": "$in.telescope_id",
              "timestamp": "$ts_ms",
              "payload": {"command_id": "$ref", "success": True, "result": "$result"}},
    error={"id": "$id", "type": "error", "telescope_id": "$in.telescope_id",
           "timestamp": "$ts_ms",
           "payload": {"command_id": "$ref", "success": False, "code": "$code",
                       "message": "$message"}})


def declare(server: skyrelay.Server) -> None:
    server.endpoint("/ws/updates", envelope=S1)
    server.endpoint("/api/ws", envelope=S2)
    server.endpoint("/api/ws/{telescope_id}", topics=["{telescope_id}"], envelope=S2)


@pytest.fixture
def ws():
    with contextlib.ExitStack() as stack:
        def connect(server, path, **kw):
            return stack.enter_context(
                wsc.connect(f"ws://127.0.0.1:{server.port}{path}", open_timeout=5, **kw))

        yield connect


def first_event(stream: Stream):
    """The stream's first event with data (the `retry:` block comes before it, as a blank
    "message" in httpx-sse)."""
    while True:
        sse = stream.next()
        if sse.data:
            return sse


def recv(c, timeout: float = 5.0):
    return json.loads(c.recv(timeout=timeout))


def iso(ts: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))


# -- S1: {event, data, timestamp} at /ws/updates --------------------------------------------

def test_s1_ping_pong_and_broadcast(skyrelay_server_factory, ws):
    server = skyrelay_server_factory(declare)
    c = ws(server, "/ws/updates")
    c.send(json.dumps({"event": "ping", "data": {}, "timestamp": "2025-10-25T08:45:00.000Z"}))
    pong = recv(c)
    assert list(pong) == ["event", "data", "timestamp"]
    assert pong["event"] == "pong" and pong["data"] == {}
    assert iso(pong["timestamp"]).year >= 2026
    wait_until(lambda: server.connection_count == 1)
    health = {"api-gateway": {"status": "healthy"}, "inference": {"status": "healthy"}}
    assert server.emit("services:health", health) == 1
    got = recv(c)
    assert got["event"] == "services:health" and got["data"] == health
    assert list(got) == ["event", "data", "timestamp"]


def test_s1_path_is_the_endpoint_not_a_topic(skyrelay_server_factory, ws):
    server = skyrelay_server_factory(declare)
    c = ws(server, "/ws/updates")
    wait_until(lambda: server.connection_count == 1)
    assert server.room_members("updates") == []
    server.emit("to_room", {}, to="updates")
    server.emit("marker", {"n": 1})
    assert recv(c)["event"] == "marker"


def test_s1_subscribe_and_room_events(skyrelay_server_factory, ws):
    server = skyrelay_server_factory(declare)
    c = ws(server, "/ws/updates")
    c.send(json.dumps({"event": "subscribe", "data": {"topic": "websdrs:status"}}))
    reply = recv(c)
    assert reply["event"] == "subscribed" and reply["data"] == {"topic": "websdrs:status"}
    status = {"1": {"status": "online", "response_time_ms": 150}}
    assert server.emit("websdrs:status", status, to="websdrs:status") == 1
    got = recv(c)
    assert got == {"event": "websdrs:status", "data": status, "timestamp": got["timestamp"]}
    c.send(json.dumps({"event": "unsubscribe", "data": {"topic": "websdrs:status"}}))
    wait_until(lambda: server.room_members("websdrs:status") == [])
    assert server.room_members("websdrs:status") == []


def test_s1_app_event_reaches_handler(skyrelay_server_factory, ws):
    seen = []

    def configure(server):
        declare(server)
        server.on("tune", lambda conn, data: seen.append((conn.transport, data)))

    server = skyrelay_server_factory(configure)
    c = ws(server, "/ws/updates")
    c.send(json.dumps({"event": "tune", "data": {"frequency_mhz": 145.5}}))
    assert wait_until(lambda: seen)
    assert seen == [("websocket", {"frequency_mhz": 145.5})]


@pytest.mark.parametrize("frame,code", [
    ("not json", "bad_json"),
    ("[1, 2]", "bad_message"),
    ('{"data": {}}', "unknown_type"),
    ('{"event": 5}', "unknown_type"),
    ('{"event": "x", "data": ' + "[" * 200 + "]" * 200 + "}", "bad_message"),
    ('{"event": "subscribe", "data": {}}', "bad_message"),
])
def test_s1_bad_frames_get_coded_errors(skyrelay_server_factory, ws, frame, code):
    server = skyrelay_server_factory(declare)
    c = ws(server, "/ws/updates")
    c.send(frame)
    err = recv(c)
    assert err["event"] == "error" and err["data"]["code"] == code
    c.send(json.dumps({"event": "ping", "data": {}}))  # the connection stays
    assert recv(c)["event"] == "pong"


# -- S2: {id, type, telescope_id, timestamp, payload} ----------------------------------------

def telescope_handlers(server):
    declare(server)

    @server.on("control_command")
    def command(conn, payload):
        if payload["action"] == "fail":
            raise RequestError("telescope_busy", "the mount is slewing")
        if payload["action"] == "crash":
            raise RuntimeError("boom")
        return {"status": "movement_completed", "echo": payload["parameters"]}


def test_s2_control_command_gets_command_response(skyrelay_server_factory, ws):
    server = skyrelay_server_factory(telescope_handlers)
    c = ws(server, "/api/ws")
    c.send(json.dumps({
        "id": "1234567891", "type": "control_command", "telescope_id": "seestar-001",
        "timestamp": 1640995200000,
        "payload": {"action": "move", "parameters": {"direction": "up", "duration": 1000},
                    "response_expected": True}}))
    r = recv(c)
    assert list(r) == ["id", "type", "telescope_id", "timestamp", "payload"]
    assert r["type"] == "command_response" and r["telescope_id"] == "seestar-001"
    assert isinstance(r["id"], str) and r["id"] != "1234567891"
    assert isinstance(r["timestamp"], int) and r["timestamp"] > 1_700_000_000_000
    assert r["payload"] == {"command_id": "1234567891", "success": True,
                            "result": {"status": "movement_completed",
                                       "echo": {"direction": "up", "duration": 1000}}}


def test_s2_handler_errors_answer_the_command(skyrelay_server_factory, ws):
    server = skyrelay_server_factory(telescope_handlers)
    c = ws(server, "/api/ws")
    for action, code in (("fail", "telescope_busy"), ("crash", "handler_error")):
        c.send(json.dumps({"id": f"c-{action}", "type": "control_command", "telescope_id": "t1",
                           "payload": {"action": action, "parameters": {}}}))
        r = recv(c)
        assert r["type"] == "error" and r["telescope_id"] == "t1"
        assert r["payload"]["command_id"] == f"c-{action}"
        assert r["payload"]["success"] is False and r["payload"]["code"] == code
    # A kind with no handler (not a request kind: no command_id): unknown_event.
    c.send(json.dumps({"id": 7, "type": "control_command_v2", "payload": {}}))
    r = recv(c)
    assert r["type"] == "error" and r["payload"]["code"] == "unknown_event"
    assert r["payload"]["command_id"] is None
    c.send(json.dumps({"id": 8, "type": "heartbeat", "telescope_id": "t1"}))
    beat = recv(c)
    assert beat["type"] == "heartbeat" and beat["telescope_id"] == "t1"


def test_s2_status_updates_to_a_telescope_endpoint(skyrelay_server_factory, ws):
    server = skyrelay_server_factory(telescope_handlers)
    mine = ws(server, "/api/ws/seestar-001")
    other = ws(server, "/api/ws/seestar-002")
    wait_until(lambda: len(server.room_members("seestar-001")) == 1)
    wait_until(lambda: len(server.room_members("seestar-002")) == 1)
    status = {"status": {"battery_capacity": 85, "temp": 23.5}, "changes": ["temp"],
              "full_update": False}
    assert server.emit("status_update", status, to="seestar-001") == 1
    got = recv(mine)
    assert got["type"] == "status_update" and got["telescope_id"] == "seestar-001"
    assert got["payload"] == status and isinstance(got["timestamp"], int)
    assert isinstance(got["id"], str) and got["id"].isdigit()
    server.emit("marker", None)
    assert recv(other)["type"] == "marker"  # seestar-002 never saw seestar-001's update


def test_s2_subscribe_on_the_general_endpoint(skyrelay_server_factory, ws):
    server = skyrelay_server_factory(telescope_handlers)
    c = ws(server, "/api/ws")
    c.send(json.dumps({"id": "s1", "type": "subscribe", "telescope_id": "seestar-009",
                       "timestamp": 1, "payload": {}}))
    wait_until(lambda: len(server.room_members("seestar-009")) == 1)
    server.emit("telescope_discovered", {"name": "S9"}, to="seestar-009")
    got = recv(c)
    assert got["type"] == "telescope_discovered" and got["telescope_id"] == "seestar-009"


def test_path_params_reach_the_connect_handler(skyrelay_server_factory, ws):
    seen = []

    def configure(server):
        telescope_handlers(server)
        server.on_connect(lambda conn: seen.append((conn.path, dict(conn.params))) or True)

    server = skyrelay_server_factory(configure)
    ws(server, "/api/ws/seestar%2D001")
    assert wait_until(lambda: seen)
    assert seen == [("/api/ws/seestar%2D001", {"telescope_id": "seestar-001"})]


def test_a_skyrelay_protocol_endpoint(skyrelay_server_factory, ws):
    server = skyrelay_server_factory(
        lambda s: s.endpoint("/live/{room}", topics=["room:{room}"]))
    c = ws(server, "/live/lobby")
    assert recv(c)["type"] == "welcome"
    sub = recv(c)
    assert sub["type"] == "subscribed" and sub["topic"] == "room:lobby"
    server.emit("hello", {"x": 1}, to="room:lobby")
    got = recv(c)
    assert got["type"] == "event" and got["topic"] == "room:lobby" and got["data"] == {"x": 1}


def test_envelope_welcome_uses_params(skyrelay_server_factory, ws):
    env = Envelope({"type": "$event", "payload": "$data"}, kind="type", data="payload",
                   welcome={"type": "connected", "sid": "$sid", "telescope": "$param.tid",
                            "at": "$ts_ms"})
    server = skyrelay_server_factory(
        lambda s: s.endpoint("/w/{tid}", topics=["scope:{tid}"], envelope=env))
    c = ws(server, "/w/seestar-001")
    hello = recv(c)
    assert hello["type"] == "connected" and hello["telescope"] == "seestar-001"
    assert isinstance(hello["at"], int) and hello["sid"]
    wait_until(lambda: server.room_members("scope:seestar-001") == [hello["sid"]])
    assert server.room_members("scope:seestar-001") == [hello["sid"]]


# -- hostile parameters ---------------------------------------------------------------------

def handshake_status(port: int, target: str) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall((f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        return int(sock.recv(4096).split(b" ")[1])


def test_hostile_params_go_through_the_topic_policy(skyrelay_server_factory):
    server = skyrelay_server_factory(telescope_handlers, client_topics=["seestar-*"])
    assert handshake_status(server.port, "/api/ws/seestar-001") == 101
    assert handshake_status(server.port, "/api/ws/..%2Fadmin") == 403
    assert handshake_status(server.port, "/api/ws/%2Fadmin%23alerts") == 403
    assert handshake_status(server.port, "/api/ws/" + "a" * 300) == 400
    assert handshake_status(server.port, "/api/ws/%zz") == 400
    assert handshake_status(server.port, "/api/ws/a/b") == 404
    assert handshake_status(server.port, "/api/ws/") == 404
    assert handshake_status(server.port, "/api/wsx") == 404


def test_another_connections_sid_as_param_reaches_nothing(skyrelay_server_factory, ws):
    server = skyrelay_server_factory(telescope_handlers)
    victim = ws(server, "/ws")
    sid = recv(victim)["sid"]
    thief = ws(server, f"/api/ws/{sid}")
    wait_until(lambda: server.connection_count == 2)
    assert server.emit("secret", {"for": "victim"}, to=sid) == 1
    assert recv(victim)["event"] == "secret"
    server.emit("marker", None)
    assert recv(thief)["type"] == "marker"


def test_param_topics_meet_room_roles(skyrelay_server_factory):
    def configure(server):
        telescope_handlers(server)
        server.require_roles(["operator"], room="secure-*")

    server = skyrelay_server_factory(configure)
    assert handshake_status(server.port, "/api/ws/secure-1") == 403
    assert handshake_status(server.port, "/api/ws/open-1") == 101


def test_connect_handler_decides_per_param(skyrelay_server_factory):
    def configure(server):
        telescope_handlers(server)
        server.on_connect(lambda conn: conn.params.get("telescope_id") != "blocked")

    server = skyrelay_server_factory(configure)
    assert handshake_status(server.port, "/api/ws/blocked") == 403
    assert handshake_status(server.port, "/api/ws/seestar-001") == 101


class Move(BaseModel):
    action: str
    parameters: dict[str, int]


def test_typed_command_refused_before_the_handler(skyrelay_server_factory, ws):
    calls = []

    def configure(server):
        declare(server)

        @server.on("control_command")
        def command(conn, payload: Move) -> dict:
            calls.append(payload)
            return {"ok": payload.action}

    server = skyrelay_server_factory(configure)
    c = ws(server, "/api/ws/t-7")
    c.send(json.dumps({"id": "bad-1", "type": "control_command", "telescope_id": "t-7",
                       "payload": {"action": "move", "parameters": {"duration": "long"}}}))
    r = recv(c)
    assert r["type"] == "error" and r["payload"]["command_id"] == "bad-1"
    assert r["payload"]["code"] == "invalid_payload" and "duration" in r["payload"]["message"]
    c.send(json.dumps({"id": "ok-1", "type": "control_command", "telescope_id": "t-7",
                       "payload": {"action": "move", "parameters": {"duration": 5}}}))
    r = recv(c)
    assert r["type"] == "command_response" and r["payload"]["result"] == {"ok": "move"}
    assert len(calls) == 1 and calls[0].parameters == {"duration": 5}


# -- S4: SSE at /api/v1/sse/stream/<well_id> ------------------------------------------------

def s4(server):
    server.endpoint(
        "/api/v1/sse/stream/{well_id}", transport="sse", topics=["{well_id}"],
        welcome=("connected", {"message": "Connected to the ESP IoT Platform SSE stream",
                               "well_id": "$param.well_id", "timestamp": "$ts"}),
        heartbeat=("heartbeat", {"timestamp": "$ts"}, 0.2))


def test_s4_connected_heartbeat_and_replay(skyrelay_server_factory):
    server = skyrelay_server_factory(s4)
    base = f"http://127.0.0.1:{server.port}/api/v1/sse/stream/WELL-001"
    stream = Stream(base + "?token=x&last_event_id=")
    try:
        first = first_event(stream)
        assert first.event == "connected"
        body = json.loads(first.data)
        assert body["well_id"] == "WELL-001" and body["message"].startswith("Connected")
        assert iso(body["timestamp"]).year >= 2026
        beat = stream.next_event("heartbeat")
        assert set(json.loads(beat.data)) == {"timestamp"}
        wait_until(lambda: len(server.room_members("WELL-001")) == 1)
        for n in (1, 2):
            server.emit("telemetry_update", {"well_id": "WELL-001", "flow_rate": n},
                        to="WELL-001")
        one = stream.next_event("telemetry_update")
        two = stream.next_event("telemetry_update")
        assert json.loads(two.data)["flow_rate"] == 2
    finally:
        stream.close()
    again = Stream(f"{base}?last_event_id={one.id}")
    try:
        assert first_event(again).event == "connected"
        replayed = again.next_event("telemetry_update")
        assert json.loads(replayed.data)["flow_rate"] == 2 and replayed.id == two.id
    finally:
        again.close()


# -- configurable built-in paths ------------------------------------------------------------

def test_builtin_paths_move_and_turn_off(skyrelay_server_factory, ws):
    server = skyrelay_server_factory(
        health_path="/api/ws/health", metrics_path="/prom", json_ws_path="/realtime",
        sse_path=None, publish_path="/pub", client_js_path="/js/sr.js")
    http = f"http://127.0.0.1:{server.port}"
    assert httpx.get(http + "/api/ws/health").json()["status"]
    assert "skyrelay_" in httpx.get(http + "/prom").text
    for gone in ("/health", "/metrics", "/sse/a", "/skyrelay.js"):
        assert httpx.get(http + gone).status_code == 404, gone
    assert httpx.post(http + "/api/publish", json={}).status_code in (404, 405)
    assert httpx.post(http + "/pub", json={}).status_code == 403  # no publish_token: off
    assert "class" in httpx.get(http + "/js/sr.js").text
    assert recv(ws(server, "/realtime"))["type"] == "welcome"
    assert handshake_status(server.port, "/ws") == 404
    with pytest.raises(ValueError):
        skyrelay.Server(health_path="health")


def test_declarations_are_checked_early():
    server = skyrelay.Server(port=0)
    with pytest.raises(ValueError):
        Envelope({"a": "$nope"})
    with pytest.raises(ValueError):
        Envelope({"a": "$data"}, pong={"x": "$data"})
    with pytest.raises(ValueError):
        Envelope({"a": "$data"}, subscribe="sub")  # no topic path
    with pytest.raises(ValueError):
        server.endpoint("/a/{x}", topics=["{y}"])
    with pytest.raises(ValueError):
        server.endpoint("/a/{x}/{x}")
    with pytest.raises(ValueError):
        server.endpoint("/a/b{x}")
    with pytest.raises(ValueError):
        server.endpoint("/s/{x}", transport="sse", envelope=S1)
    with pytest.raises(ValueError):
        server.endpoint("/s/{x}", transport="sse", heartbeat=("hb", {"t": "$data"}, 1))


# -- every transport gets the same publication ----------------------------------------------

def test_all_transports_get_the_same_publication(skyrelay_server_factory, ws, sio_clients):
    server = skyrelay_server_factory(declare)
    s1 = ws(server, "/ws/updates")
    s2a = ws(server, "/api/ws")
    s2b = ws(server, "/api/ws/t-1")
    plain = ws(server, "/ws")
    recv(plain)  # welcome
    sio = sio_clients()
    got_sio = []
    sio.on("signals:detected", lambda data: got_sio.append(data))
    sio.connect(f"http://127.0.0.1:{server.port}", transports=["websocket"])
    sse = Stream(f"http://127.0.0.1:{server.port}/sse")
    try:
        sse.next_event("welcome")
        wait_until(lambda: server.connection_count == 6)
        signal = {"frequency_mhz": 145.5, "snr_db": 15.3, "websdr_id": 1}
        assert server.emit("signals:detected", signal) == 6
        assert recv(s1)["data"] == signal
        a, b = recv(s2a), recv(s2b)
        assert a == b and a["payload"] == signal and a["telescope_id"] is None
        assert recv(plain)["data"] == signal
        assert json.loads(sse.next_event("signals:detected").data) == signal
        assert wait_until(lambda: got_sio == [signal])
    finally:
        sse.close()


def test_endpoint_compression_and_plain_http_to_the_app(skyrelay_server_factory, ws):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode()]

    def setup(server):
        server.endpoint("/api/ws", envelope=S2, compression=True)
        server.endpoint("/api/ws/{telescope_id}", topics=["{telescope_id}"], envelope=S2)
        server.mount_wsgi(app)

    server = skyrelay_server_factory(setup)
    # The websockets client offers permessage-deflate: only the endpoint that turns it on
    # accepts it (the server's own compression option is off).
    on = ws(server, "/api/ws")
    assert "permessage-deflate" in on.response.headers.get("Sec-WebSocket-Extensions", "")
    off = ws(server, "/api/ws/seestar-001")
    assert "Sec-WebSocket-Extensions" not in off.response.headers
    assert server.emit("status_update", {"gain": 1}, to="seestar-001") == 1
    assert recv(off)["payload"] == {"gain": 1}
    # A plain GET under a WebSocket endpoint's path is the app's (S2's /api/ws/health)...
    r = httpx.get(f"{server.http_url}/api/ws/health")
    assert r.status_code == 200 and r.text == "/api/ws/health"
    # ... and, without an app, still a 426.
    bare = skyrelay_server_factory(declare)
    r = httpx.get(f"{bare.http_url}/api/ws/health")
    assert r.status_code == 426 and r.json()["error"] == "upgrade_required"
    with pytest.raises(ValueError, match="WebSocket option"):
        skyrelay.Server(port=0).endpoint("/s/{x}", transport="sse", compression=True)
