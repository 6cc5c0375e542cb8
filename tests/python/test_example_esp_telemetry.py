"""examples/esp_telemetry (seed S4) with the seed's own clients: python-socketio and the
official socket.io-client for the Socket.IO contract, an SSE client for the event stream,
httpx for the HTTP API and the metrics."""

from __future__ import annotations

import importlib.util
import json
import math
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import socketio

from sse_client import Stream
from skyrelay.testing import stop_process, wait_until

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "esp_telemetry"
SECRET = b"esp-telemetry-test-secret-of-32-bytes!"
HEARTBEAT_S = 0.3
# python-engineio's polling client loses its close packet when it disconnects while a POST is
# in flight; the session then ends at the server's next ping. Pings every 2 s keep that short.
PING_INTERVAL_S = 2.0


def load_app():
    spec = importlib.util.spec_from_file_location("example_esp_telemetry_app",
                                                  EXAMPLE / "app.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


esp = load_app()


@pytest.fixture
def app():
    app = esp.EspTelemetry(port=0, secret=SECRET, heartbeat_s=HEARTBEAT_S,
                           ping_interval=PING_INTERVAL_S)
    app.tokens.add_user("admin", "admin-pw", ["admin"])
    app.tokens.add_user("viewer", "viewer-pw", ["viewer"])
    app.tokens.add_user("gateway", "gateway-pw", ["device"])
    app.start()
    app.http = httpx.Client(base_url=app.server.http_url, timeout=10)
    yield app
    app.http.close()
    app.stop()


def login(app, username: str) -> str:
    answer = app.http.post("/api/v1/auth/login",
                           json={"username": username, "password": f"{username}-pw"})
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


def ingest(app, reading, token=None):
    token = token or login(app, "gateway")
    return app.http.post("/api/v1/telemetry/ingest", json=reading,
                         headers={"Authorization": f"Bearer {token}"})


class Sio:
    """A python-socketio client that records every event of the contract in a queue."""

    EVENTS = ("connected", "subscribed", "unsubscribed", "pong", "stats", "error",
              "telemetry_update", "alert", "rate_limited")

    def __init__(self, app, token: str | None, transports=("websocket",)) -> None:
        self.events: queue.Queue = queue.Queue()
        self.client = socketio.Client(reconnection=False)
        for name in self.EVENTS:
            self.client.on(name, self._recorder(name))
        self.client.connect(app.server.http_url, auth={"token": token} if token else None,
                            transports=list(transports), wait_timeout=10)

    def _recorder(self, name):
        return lambda *args: self.events.put((name, args[0] if len(args) == 1 else args))

    def emit(self, event: str, data=None) -> None:
        if data is None:
            self.client.emit(event)
        else:
            self.client.emit(event, data)

    def next(self, timeout: float = 5.0):
        return self.events.get(timeout=timeout)

    def expect(self, name: str, timeout: float = 5.0):
        """The next event, which must be `name` (the contract's answers come in order)."""
        got, data = self.next(timeout)
        assert got == name, (got, data)
        return data

    def close(self) -> None:
        self.client.disconnect()


@pytest.fixture
def sio(app):
    clients = []

    def make(user: str | None = "viewer", **kwargs) -> Sio:
        client = Sio(app, login(app, user) if user else None, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def iso_z(text: str) -> bool:
    """UTC ISO-8601 with a Z; those skyrelay fills in ($ts) carry milliseconds too."""
    return re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z", text) is not None


# -- HTTP: login and ingest ------------------------------------------------------------------

def test_login_gives_a_bearer_token_and_refuses_bad_credentials(app):
    answer = app.http.post("/api/v1/auth/login",
                           json={"username": "admin", "password": "admin-pw"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert app.tokens.verify(body["access_token"])["username"] == "admin"
    wrong = app.http.post("/api/v1/auth/login", json={"username": "admin", "password": "x"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "AuthenticationError"
    nobody = app.http.post("/api/v1/auth/login", json={"username": "eve", "password": "x"})
    assert nobody.status_code == 401
    empty = app.http.post("/api/v1/auth/login", content=b"not json")
    assert empty.status_code == 400 and empty.json()["error"] == "ValidationError"


def test_failed_logins_are_rate_limited_per_username(app):
    statuses = [app.http.post("/api/v1/auth/login",
                              json={"username": "viewer", "password": "guess"}).status_code
                for _ in range(7)]
    assert statuses[:5] == [401] * 5 and statuses[5:] == [429, 429]
    refused = app.http.post("/api/v1/auth/login",
                            json={"username": "viewer", "password": "viewer-pw"})
    assert refused.status_code == 429 and refused.json()["error"] == "RateLimitError"
    assert int(refused.headers["Retry-After"]) >= 1
    # Another user is not held back by it.
    assert login(app, "admin")


def test_ingest_stores_readings_and_refuses_bad_ones(app):
    first = ingest(app, {"well_id": "WELL-001", "timestamp": "2025-11-20T10:30:00Z",
                         "flow_rate": 1000.5, "pip": 2000, "vibration": 3.2})
    assert first.status_code == 201
    assert first.json() == {"telemetry_id": 1, "well_id": "WELL-001", "alerts": []}
    batch = ingest(app, [{"well_id": "WELL-001", "flow_rate": 990.0},
                         {"well_id": "WELL-002", "gor": 150.0}])
    assert batch.status_code == 201
    assert [r["telemetry_id"] for r in batch.json()["ingested"]] == [2, 3]
    stored = app.http.get("/api/v1/wells/WELL-001/telemetry",
                          headers={"Authorization": f"Bearer {login(app, 'viewer')}"})
    assert [r["telemetry_id"] for r in stored.json()["readings"]] == [2, 1]
    assert stored.json()["readings"][1] == {
        "telemetry_id": 1, "well_id": "WELL-001", "timestamp": "2025-11-20T10:30:00Z",
        "flow_rate": 1000.5, "pip": 2000.0, "vibration": 3.2}

    bad = [({"flow_rate": 1.0}, "well_id is required"),
           ({"well_id": "WELL 1", "flow_rate": 1.0}, "well_id is required"),
           ({"well_id": "WELL-001", "flowrate": 1.0}, "unknown fields: flowrate"),
           ({"well_id": "WELL-001", "pip": "high"}, "pip must be a number"),
           ({"well_id": "WELL-001", "pip": True}, "pip must be a number"),
           ({"well_id": "WELL-001"}, "a reading needs one of"),
           ({"well_id": "WELL-001", "timestamp": "yesterday", "pip": 1.0}, "timestamp must be"),
           ([], "send 1 to 500 readings"),
           ([{"well_id": "W", "pip": 1.0}] * 501, "send 1 to 500 readings"),
           ([{"well_id": "W", "pip": 1.0}, {"pip": 1.0}], "reading 1: well_id is required"),
           ("text", "the body must be a JSON object")]
    for body, message in bad:
        answer = ingest(app, body)
        assert answer.status_code == 400, body
        assert answer.json()["error"] == "ValidationError"
        assert message in answer.json()["message"], (body, answer.json())
    # A batch is all or nothing: the good reading before the bad one was not stored.
    stored = app.http.get("/api/v1/wells/W/telemetry",
                          headers={"Authorization": f"Bearer {login(app, 'viewer')}"})
    assert stored.status_code == 200 and stored.json()["readings"] == []
    nan = app.http.post("/api/v1/telemetry/ingest", content=b'{"well_id":"W","pip":NaN}',
                        headers={"Authorization": f"Bearer {login(app, 'gateway')}",
                                 "Content-Type": "application/json"})
    assert nan.status_code == 400 and "pip must be a number" in nan.json()["message"]


def test_ingest_needs_a_device_token(app):
    assert ingest(app, {"well_id": "W", "pip": 1.0}, token="not.a.token").status_code == 401
    other = esp.Tokens(b"another-secret-of-at-least-32-bytes!").issue("u", "u", ["device"])
    assert ingest(app, {"well_id": "W", "pip": 1.0}, token=other).status_code == 401
    expired = app.tokens.issue("u", "u", ["device"], ttl_s=-10)
    assert ingest(app, {"well_id": "W", "pip": 1.0}, token=expired).status_code == 401
    answer = ingest(app, {"well_id": "W", "pip": 1.0}, token=login(app, "viewer"))
    assert answer.status_code == 403 and answer.json()["error"] == "AuthorizationError"
    bare = app.http.post("/api/v1/telemetry/ingest", json={"well_id": "W", "pip": 1.0})
    assert bare.status_code == 401


# -- Socket.IO: the contract ---------------------------------------------------------------

@pytest.mark.parametrize("transports", [("websocket",), ("polling",)])
def test_socketio_contract(app, sio, transports):
    client = sio("viewer", transports=transports)
    welcome = client.expect("connected")
    assert welcome["message"] == "Connected to Alkhorayef ESP IoT Platform"
    assert welcome["user_id"] == app.tokens.users["viewer"].user_id
    assert welcome["username"] == "viewer" and iso_z(welcome["timestamp"])

    client.emit("subscribe", {"well_id": "WELL-001"})
    subscribed = client.expect("subscribed")
    assert subscribed["well_id"] == "WELL-001" and iso_z(subscribed["timestamp"])
    client.emit("subscribe", {"well_id": "WELL-002"})
    client.expect("subscribed")
    client.emit("ping")
    assert iso_z(client.expect("pong")["timestamp"])
    client.emit("get_stats")
    stats = client.expect("stats")
    assert stats["subscriptions"] == ["WELL-001", "WELL-002"]
    assert stats["message_count"] == 4 and iso_z(stats["connected_at"])
    assert "server" not in stats  # full stats are for admins only
    client.emit("unsubscribe", {"well_id": "WELL-001"})
    assert client.expect("unsubscribed")["well_id"] == "WELL-001"
    client.emit("get_stats")
    assert client.expect("stats")["subscriptions"] == ["WELL-002"]


def test_socketio_bad_input_gets_error_events(app, sio):
    # (A test of its own: with the contract's messages it would go over 10 a second.)
    client = sio("viewer")
    client.expect("connected")
    # Bad input: an error event with the seed's shape, and the socket stays.
    for data, message in (({}, "well_id is required"), (None, "well_id is required"),
                          ({"well_id": 7}, "well_id must be"),
                          ({"well_id": "../x"}, "well_id must be")):
        client.emit("subscribe", data)
        error = client.expect("error")
        assert error["error"] == "ValidationError" and message in error["message"]
    client.emit("launch_missiles", {"well_id": "WELL-001"})
    assert client.expect("error") == {"error": "UnknownEvent",
                                       "message": "unknown event 'launch_missiles'"}
    client.emit("ping")
    assert client.expect("pong")


def test_admins_get_full_stats(app, sio):
    viewer = sio("viewer")
    viewer.expect("connected")
    viewer.emit("subscribe", {"well_id": "WELL-007"})
    viewer.expect("subscribed")
    admin = sio("admin")
    admin.expect("connected")
    admin.emit("get_stats")
    stats = admin.expect("stats")
    assert stats["subscriptions"] == [] and stats["message_count"] == 1
    assert stats["server"]["websocket_connections"] == 2
    assert stats["server"]["wells"] == {"WELL-007": 1}


def test_socketio_refuses_missing_bad_and_expired_tokens(app):
    tokens = [None, "garbage",
              esp.Tokens(b"another-secret-of-at-least-32-bytes!").issue("u", "u", ["admin"]),
              app.tokens.issue("u", "u", ["admin"], ttl_s=-60)]
    for token in tokens:
        client = socketio.Client(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            client.connect(app.server.http_url, auth={"token": token} if token else None,
                           transports=["websocket"], wait_timeout=5)
        client.disconnect()
    assert app.metrics.connections["socket.io"] == 0


def test_telemetry_and_alerts_reach_only_the_wells_subscribers(app, sio):
    one, two = sio(), sio()
    for client, well in ((one, "WELL-001"), (two, "WELL-002")):
        client.expect("connected")
        client.emit("subscribe", {"well_id": well})
        client.expect("subscribed")

    assert ingest(app, {"well_id": "WELL-001", "timestamp": "2025-11-20T10:30:00Z",
                        "flow_rate": 1000.5, "pip": 2000.0, "motor_current": 50.0,
                        "motor_temp": 85.0, "vibration": 5.2, "vsd_frequency": 60.0,
                        "flow_variance": 15.0, "torque": 120.5,
                        "gor": 150.0}).json()["alerts"] == ["high_vibration"]
    update = one.expect("telemetry_update")
    assert set(update) == {"event", "timestamp", "well_id", "data"}
    assert update["event"] == "telemetry_update" and update["well_id"] == "WELL-001"
    assert iso_z(update["timestamp"])
    assert update["data"] == {"telemetry_id": 1, "timestamp": "2025-11-20T10:30:00Z",
                              "flow_rate": 1000.5, "pip": 2000.0, "motor_current": 50.0,
                              "motor_temp": 85.0, "vibration": 5.2, "vsd_frequency": 60.0,
                              "flow_variance": 15.0, "torque": 120.5, "gor": 150.0}
    alert = one.expect("alert")
    assert set(alert) == {"event", "timestamp", "well_id", "alert"}
    assert alert["event"] == "alert" and alert["well_id"] == "WELL-001"
    assert alert["alert"] == {"type": "high_vibration", "severity": "critical",
                              "message": "Vibration exceeds threshold", "value": 5.2,
                              "threshold": 4.0}

    # WELL-002's subscriber got nothing of WELL-001: its first event is its own well's.
    ingest(app, {"well_id": "WELL-002", "flow_rate": 700.0})
    assert two.expect("telemetry_update")["well_id"] == "WELL-002"
    # Unsubscribed, WELL-001's next reading no longer comes; WELL-003's (a marker) does.
    one.emit("subscribe", {"well_id": "WELL-003"})
    one.expect("subscribed")
    one.emit("unsubscribe", {"well_id": "WELL-001"})
    one.expect("unsubscribed")
    ingest(app, {"well_id": "WELL-001", "flow_rate": 1.0})
    ingest(app, {"well_id": "WELL-003", "flow_rate": 2.0})
    assert one.expect("telemetry_update")["well_id"] == "WELL-003"


def test_alerts_fire_on_crossing_and_are_stored(app, sio):
    client = sio()
    client.expect("connected")
    client.emit("subscribe", {"well_id": "WELL-001"})
    client.expect("subscribed")
    readings = [({"vibration": 5.2}, ["high_vibration"]),
                ({"vibration": 6.0}, []),  # still over: no second alert
                ({"vibration": 2.0, "motor_temp": 130.0}, ["high_motor_temp"]),
                ({"vibration": 4.5, "pip": 300.0}, ["high_vibration", "low_intake_pressure"])]
    for values, expected in readings:
        answer = ingest(app, {"well_id": "WELL-001", **values}).json()
        assert answer["alerts"] == expected
        client.expect("telemetry_update")
        for kind in expected:
            assert client.expect("alert")["alert"]["type"] == kind
    stored = app.http.get("/api/v1/wells/WELL-001/alerts",
                          headers={"Authorization": f"Bearer {login(app, 'viewer')}"}).json()
    assert [(a["type"], a["telemetry_id"]) for a in stored["alerts"]] == [
        ("low_intake_pressure", 4), ("high_vibration", 4), ("high_motor_temp", 3),
        ("high_vibration", 1)]


def test_the_rate_limit_refuses_over_10_a_second_and_spares_others(app, sio):
    flood, calm = sio(), sio()
    flood.expect("connected")
    calm.expect("connected")
    for _ in range(60):
        flood.emit("ping")
    got = []
    while True:
        try:
            got.append(flood.next(timeout=1.0)[0])
        except queue.Empty:
            break
    assert "rate_limited" in got
    # The bucket holds 10, refilled at 10 a second: far fewer than 60 pings were answered.
    assert 10 <= got.count("pong") < 60
    calm.emit("ping")
    assert iso_z(calm.expect("pong")["timestamp"])
    # The flooder stays connected, and is served again once its bucket refills.
    time.sleep(1.1)
    flood.emit("ping")
    assert flood.expect("pong")
    text = app.http.get("/metrics").text
    assert float(sample(text, "websocket_errors_total")) >= got.count("rate_limited")


# -- SSE -----------------------------------------------------------------------------------

def stream(app, well: str, token: str | None, **headers) -> Stream:
    query = f"?token={token}" if token else ""
    return Stream(f"{app.server.http_url}/api/v1/sse/stream/{well}{query}", headers=headers)


def data(sse):
    return json.loads(sse.data)


def test_sse_stream_connected_updates_alerts_and_heartbeats(app):
    token = login(app, "viewer")
    with stream(app, "WELL-001", token) as one, stream(app, "WELL-002", token) as two:
        assert one.status == 200
        first = one.next()
        while first.event == "message" and not first.data:  # the retry: line
            first = one.next()
        assert first.event == "connected" and first.id  # in place of skyrelay's welcome
        connected = data(first)
        assert connected["message"] == "Connected to Alkhorayef ESP IoT Platform SSE stream"
        assert connected["well_id"] == "WELL-001" and iso_z(connected["timestamp"])
        two.next_event("connected")
        ingest(app, {"well_id": "WELL-001", "flow_rate": 1000.5, "vibration": 5.2})
        update = one.next_event("telemetry_update")
        assert update.id and data(update)["well_id"] == "WELL-001"
        assert data(update)["data"]["flow_rate"] == 1000.5
        alert = one.next_event("alert")
        assert alert.id != update.id
        assert data(alert)["alert"]["type"] == "high_vibration"
        assert iso_z(data(one.next_event("heartbeat"))["timestamp"])
        # WELL-002's stream: heartbeats, never WELL-001's events.
        ingest(app, {"well_id": "WELL-002", "gor": 150.0})
        names = []
        while not names or names[-1] != "telemetry_update":
            names.append(two.next().event)
        assert "alert" not in names
        assert data(two.next_event("heartbeat"))  # after its own update, still beating
        assert app.metrics.connections["sse"] == 2


@pytest.mark.parametrize("how", ["header", "query"])
def test_sse_replays_what_a_reconnecting_client_missed(app, how):
    token = login(app, "viewer")
    with stream(app, "WELL-001", token) as first:
        first.next_event("connected")
        ingest(app, {"well_id": "WELL-001", "pip": 1.0})
        last_id = first.next_event("telemetry_update").id
    for n in (2.0, 3.0):
        ingest(app, {"well_id": "WELL-001", "pip": n})
    url = f"{app.server.http_url}/api/v1/sse/stream/WELL-001?token={token}"
    if how == "header":
        again = Stream(url, headers={"Last-Event-ID": last_id})
    else:
        again = Stream(f"{url}&last_event_id={last_id}")
    with again:
        replayed = [data(again.next_event("telemetry_update"))["data"]["pip"] for _ in "ab"]
        assert replayed == [2.0, 3.0]
        ingest(app, {"well_id": "WELL-001", "pip": 4.0})
        assert data(again.next_event("telemetry_update"))["data"]["pip"] == 4.0


def test_sse_refuses_bad_tokens_and_well_ids(app):
    url = f"{app.server.http_url}/api/v1/sse/stream"
    for query in ("", "?token=garbage",
                  f"?token={app.tokens.issue('u', 'u', ['viewer'], ttl_s=-60)}"):
        answer = httpx.get(f"{url}/WELL-001{query}", timeout=5)
        assert answer.status_code == 401 and answer.json()["error"] == "unauthorized"
    bad = httpx.get(f"{url}/WELL%20001?token={login(app, 'viewer')}", timeout=5)
    assert bad.status_code == 400 and "well_id must be" in bad.json()["message"]
    # The wells' streams are at the seed's path only: skyrelay's /sse is off.
    builtin = httpx.get(f"{app.server.http_url}/sse/well:WELL-001?token={login(app, 'viewer')}",
                        timeout=5)
    assert builtin.status_code == 404
    assert app.metrics.connections["sse"] == 0


# -- metrics -------------------------------------------------------------------------------

def sample(text: str, series: str) -> str:
    match = re.search(r"^" + re.escape(series) + r" (\S+)$", text, re.M)
    assert match, f"{series} is not in the exposition"
    return match.group(1)


def test_the_seeds_metric_names(app, sio):
    def scrape() -> str:
        answer = app.http.get("/metrics")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        return answer.text

    before = scrape()
    for name, kind in (("websocket_connections", "gauge"), ("sse_connections", "gauge"),
                       ("websocket_messages_total", "counter"),
                       ("websocket_errors_total", "counter"),
                       ("realtime_publishes_total", "counter"),
                       ("realtime_publish_duration_seconds", "histogram")):
        assert f"# TYPE {name} {kind}\n" in before
    assert "# TYPE skyrelay_sent_messages_total counter" in before  # skyrelay's own follow
    own = app.http.get("/skyrelay/metrics").text  # and skyrelay's alone, on its moved path
    assert "skyrelay_sent_messages_total" in own and "websocket_connections" not in own
    assert sample(before, "websocket_connections") == "0"

    client = sio()
    client.expect("connected")
    client.emit("subscribe", {"well_id": "WELL-001"})
    client.expect("subscribed")
    client.emit("subscribe", {})
    client.expect("error")
    with stream(app, "WELL-001", login(app, "viewer")) as events:
        events.next_event("connected")
        ingest(app, {"well_id": "WELL-001", "vibration": 9.0})
        client.expect("telemetry_update")
        client.expect("alert")
        events.next_event("alert")
        text = scrape()
        assert sample(text, "websocket_connections") == "1"
        assert sample(text, "sse_connections") == "1"
    assert sample(text, 'realtime_publishes_total{event="telemetry_update"}') == "1"
    assert sample(text, 'realtime_publishes_total{event="alert"}') == "1"
    assert sample(text, 'realtime_publish_duration_seconds_bucket{le="+Inf"}') == "2"
    assert sample(text, "realtime_publish_duration_seconds_count") == "2"
    assert int(sample(text, "websocket_errors_total")) == 1
    # Messages written: what skyrelay counts, at least the 5 the socket and the stream got.
    sent = sum(int(float(sample(text, f'skyrelay_sent_messages_total{{transport="{t}"}}')))
               for t in ("json", "socketio", "polling", "sse"))
    assert int(sample(text, "websocket_messages_total")) == sent
    assert int(sample(text, "websocket_messages_total")) >= \
        int(sample(before, "websocket_messages_total")) + 5
    wait_until(lambda: sample(scrape(), "sse_connections") == "0", timeout=10)


# -- the seed's JavaScript client ----------------------------------------------------------

class Node:
    """A node script of tests/js that prints one JSON line per event and stops when its
    stdin closes: esp_telemetry_client.mjs (the seed's complete Socket.IO example on
    socket.io-client) or esp_telemetry_browser.mjs (its SSE example in Chromium)."""

    def __init__(self, script: str, *args: str) -> None:
        self.proc = subprocess.Popen(["node", str(ROOT / "tests/js" / script), *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     cwd=ROOT)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(None)

    def next(self, name: str, timeout: float = 10.0):
        """The args of the next event called `name` (others before it are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            assert line is not None, "the client exited"
            if line["on"] == name:
                return line["args"]

    def collect(self, done, timeout: float = 10.0) -> list:
        """Every line from now until `done(lines)` holds."""
        lines: list = []
        deadline = time.monotonic() + timeout
        while not done(lines):
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            assert line is not None, f"the client exited after {lines}"
            lines.append(line)
        return lines

    def emit(self, event: str, data) -> None:
        self.proc.stdin.write(json.dumps([event, data]) + "\n")
        self.proc.stdin.flush()

    def close(self) -> list:
        self.proc.stdin.close()
        rest = []
        while (line := self.lines.get(timeout=10)) is not None:
            rest.append(line)
        stop_process(self.proc)
        return rest


def test_the_seeds_javascript_client_flow(app):
    node = Node("esp_telemetry_client.mjs", app.server.http_url, login(app, "viewer"), "200",
                "WELL-001", "WELL-002")
    try:
        node.next("connect")
        assert node.next("connected")[0]["username"] == "viewer"
        assert {node.next("subscribed")[0]["well_id"] for _ in "ab"} == {"WELL-001", "WELL-002"}
        assert node.next("pong")[0]["timestamp"]  # its heartbeat, every 200 ms here
        ingest(app, {"well_id": "WELL-002", "vibration": 4.4, "torque": 120.5})
        update = node.next("telemetry_update")[0]
        assert update["well_id"] == "WELL-002" and update["data"]["torque"] == 120.5
        assert node.next("alert")[0]["alert"]["value"] == 4.4
        ingest(app, {"well_id": "WELL-009", "pip": 1.0})  # not subscribed
        ingest(app, {"well_id": "WELL-001", "pip": 2.0})
        assert node.next("telemetry_update")[0]["well_id"] == "WELL-001"
        node.emit("subscribe", {})
        assert node.next("error")[0] == {"error": "ValidationError",
                                         "message": "well_id is required"}
        assert app.metrics.connections["socket.io"] == 1
    finally:
        rest = node.close()
    assert rest[-1] == {"on": "disconnect", "args": ["io client disconnect"]}
    wait_until(lambda: app.metrics.connections["socket.io"] == 0, timeout=10)


def test_the_seeds_javascript_client_is_refused_without_a_valid_token(app):
    node = Node("esp_telemetry_client.mjs", app.server.http_url, "not-a-token", "1000")
    try:
        message, data = node.next("connect_error")
        assert data["code"] == "malformed"
    finally:
        node.close()


def test_the_seeds_sse_example_in_chromium_resumes_after_a_cut():
    """The browser's own EventSource: it follows the stream path, and when the server cuts
    the stream it comes back by itself with Last-Event-ID and gets what it missed, once."""
    app = esp.EspTelemetry(port=0, secret=SECRET, heartbeat_s=60, sse_retry=1.0)
    app.tokens.add_user("gateway", "gateway-pw", ["device"])
    app.start()
    app.http = httpx.Client(base_url=app.server.http_url, timeout=10)
    browser = Node("esp_telemetry_browser.mjs", app.server.http_url,
                   app.tokens.issue("u", "viewer", ["viewer"]), "WELL-001")
    try:
        assert browser.next("connected", timeout=30)[0]["data"]["well_id"] == "WELL-001"
        ingest(app, {"well_id": "WELL-001", "flow_rate": 1.0})
        first = browser.next("telemetry_update")[0]
        assert first["id"] and first["data"]["data"]["flow_rate"] == 1.0
        # The server ends the stream; while the browser waits to reconnect, two readings.
        for sid in app.server.room_members("well:WELL-001"):
            app.server.disconnect(sid)
        wait_until(lambda: app.metrics.connections["sse"] == 0, timeout=10)
        ingest(app, {"well_id": "WELL-001", "flow_rate": 2.0, "vibration": 8.0})
        ingest(app, {"well_id": "WELL-001", "flow_rate": 3.0})
        def updates(lines):
            return [x["args"][0]["data"] for x in lines if x["on"] == "telemetry_update"]

        # It comes back by itself (a new connected event; the replay may come before it).
        lines = browser.collect(lambda got: len(updates(got)) == 2 and
                                any(x["on"] == "connected" for x in got))
        assert [u["data"]["flow_rate"] for u in updates(lines)] == [2.0, 3.0]
        assert [x["args"][0]["data"]["alert"]["value"] for x in lines if x["on"] == "alert"] \
            == [8.0]
        ingest(app, {"well_id": "WELL-001", "flow_rate": 4.0})
        assert browser.next("telemetry_update")[0]["data"]["data"]["flow_rate"] == 4.0
    finally:
        rest = browser.close()
        app.http.close()
        app.stop()
    assert not [line for line in rest if line["on"] == "telemetry_update"]


# -- the README's command, and several instances -------------------------------------------

def test_the_readme_command_serves_simulated_wells():
    proc = subprocess.Popen([sys.executable, str(EXAMPLE / "app.py"), "--port", "0",
                             "--simulate", "2"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        password = re.fullmatch(r"log in as admin with password (\S+)\n",
                                proc.stdout.readline()).group(1)
        url = re.fullmatch(r"serving on (\S+)\n", proc.stdout.readline()).group(1)
        token = httpx.post(f"{url}/api/v1/auth/login", timeout=5, json={
            "username": "admin", "password": password}).json()["access_token"]
        got: queue.Queue = queue.Queue()
        client = socketio.Client(reconnection=False)
        client.on("telemetry_update", got.put)
        client.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
        client.emit("subscribe", {"well_id": "WELL-002"})
        update = got.get(timeout=10)
        assert update["well_id"] == "WELL-002"
        assert all(math.isfinite(update["data"][k]) for k in ("flow_rate", "vibration"))
        client.disconnect()
    finally:
        stop_process(proc)
    assert proc.returncode == 0


def test_two_instances_share_wells_through_redis(redis_server):
    apps = [esp.EspTelemetry(port=0, secret=SECRET, heartbeat_s=HEARTBEAT_S,
                             redis=redis_server.url) for _ in range(2)]
    try:
        for each in apps:
            each.tokens.add_user("gateway", "gateway-pw", ["device"])
            each.start()
            each.http = httpx.Client(base_url=each.server.http_url, timeout=10)
        token = apps[0].tokens.issue("u", "viewer", ["viewer"])
        client = Sio(apps[1], token)
        client.expect("connected")
        client.emit("subscribe", {"well_id": "WELL-001"})
        client.expect("subscribed")
        assert ingest(apps[0], {"well_id": "WELL-001", "vibration": 7.0}).status_code == 201
        assert client.expect("telemetry_update", timeout=10)["data"]["vibration"] == 7.0
        assert client.expect("alert")["alert"]["type"] == "high_vibration"
        client.close()
    finally:
        for each in apps:
            if hasattr(each, "http"):
                each.http.close()
            each.stop()
