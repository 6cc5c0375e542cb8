"""Every example app runs and does what its README says."""

from __future__ import annotations

import json

import importlib.util
import sys
from pathlib import Path

import pytest

from skyrelay.testing import ResponseError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str, module: str = "app"):
    path = EXAMPLES / name / f"{module}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}_{module}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def telemetry(skyrelay_server_factory):
    mod = load("well_telemetry")
    holder = {}

    def configure(server):
        holder["app"] = mod.TelemetryApp(server, wells=2, rate_hz=20.0)

    server = skyrelay_server_factory(configure, client_topics=mod.CLIENT_TOPICS)
    app = holder["app"]
    app.start()
    yield server, app
    app.stop()


def test_well_telemetry_streams_and_accepts_commands(telemetry, skyrelay_client):
    server, app = telemetry
    client = skyrelay_client(server, path="/ws/WELL-002")
    client.expect_frame("subscribed")
    first = client.expect_event("telemetry_update", timeout=5)
    assert first["topic"] == "WELL-002"
    assert first["data"]["well"] == "WELL-002"
    assert {"flow_rate_m3d", "intake_pressure_kpa", "motor_current_a", "motor_temp_c",
            "vibration_mm_s", "vsd_frequency_hz"} <= set(first["data"])

    assert client.request("list_wells") == ["WELL-001", "WELL-002"]
    assert client.request("set_frequency", {"well": "WELL-002", "hz": 60}) == {
        "well": "WELL-002", "vsd_frequency_hz": 60.0}
    # Later samples reflect the command, in increasing seq order.
    seq = first["seq"]
    for _ in range(100):
        frame = client.expect_event("telemetry_update", timeout=5)
        assert frame["seq"] > seq
        seq = frame["seq"]
        if frame["data"]["vsd_frequency_hz"] == 60.0:
            break
    else:
        pytest.fail("the new frequency never showed up in telemetry")

    with pytest.raises(ResponseError) as err:
        client.request("set_frequency", {"well": "WELL-002", "hz": 500})
    assert err.value.code == "out_of_range"
    with pytest.raises(ResponseError) as err:
        client.request("set_frequency", {"well": "WELL-404", "hz": 50})
    assert err.value.code == "unknown_well"


def test_well_telemetry_raises_alerts(telemetry, skyrelay_client):
    server, app = telemetry
    client = skyrelay_client(server, path="/ws/alerts")
    client.expect_frame("subscribed")
    # 65 Hz drives the simulated motor temperature well over the limit.
    for name in app.wells:
        client.request("set_frequency", {"well": name, "hz": 65})
    alert = client.expect("alert", timeout=10)
    assert alert["kind"] == "motor_temp_high"
    assert alert["value"] > alert["limit"]
    # Only the wells' rooms and alerts are open to clients (the README says so).
    client.send({"type": "subscribe", "topic": "operators", "id": "other"})
    assert client.expect_frame("error")["code"] == "forbidden"


def test_demo_serves_page_and_metrics(skyrelay_client):
    import urllib.request

    from skyrelay.demo import build_demo

    demo = build_demo(port=0, metrics_interval=0.05)
    demo.start()
    server = demo.server
    try:
        page = urllib.request.urlopen(f"{server.http_url}/metrics.html", timeout=5).read().decode()
        assert "/ws/metrics" in page
        tracker_page = urllib.request.urlopen(f"{server.http_url}/", timeout=5).read().decode()
        assert "live satellite tracker" in tracker_page and 'src="app.js"' in tracker_page
        land = json.loads(urllib.request.urlopen(f"{server.http_url}/land.json", timeout=5).read())
        assert len(land["rings"]) > 100
        sio_page = urllib.request.urlopen(f"{server.http_url}/sio.html", timeout=5).read().decode()
        assert "/vendor/socket.io.min.js" in sio_page
        bundle = urllib.request.urlopen(f"{server.http_url}/vendor/socket.io.min.js", timeout=5).read()
        assert b"io" in bundle and len(bundle) > 10_000  # socket.io-client from node_modules
        client = skyrelay_client(server, path="/ws/metrics")
        first = client.expect("server_metrics", timeout=5)
        assert first["connections"] >= 1
        assert client.request("say", {"text": "hello"}) == {"delivered": 1}
        assert client.expect("chat")["text"] == "hello"
        with pytest.raises(ResponseError):
            client.request("say", {"text": "   "})
        # The tracker's rooms are joined by its handlers, never by name.
        client.send({"type": "subscribe", "topic": "satellites", "id": "by-name"})
        assert client.expect_frame("error")["code"] == "forbidden"
        # The tracker's server_status carries the metrics snapshot.
        status = client.expect("server_status", timeout=10)
        assert status["satellites"] == 26 and "metrics" in status
    finally:
        demo.stop()


def test_stream_telemetry_producer_script(skyrelay_server_factory, skyrelay_client):
    """The producer script in another process: steady telemetry to each well's room, alerts on
    a rising edge, seen over the JSON protocol and over SSE."""
    import subprocess
    import sys

    import httpx

    mod = load("well_telemetry")
    server = skyrelay_server_factory(publish_token="s3cret", client_topics=mod.CLIENT_TOPICS)
    ws = skyrelay_client(server)
    ws.subscribe("WELL-002", "alerts")
    script = Path(__file__).parents[2] / "examples" / "well_telemetry" / "stream_telemetry.py"
    with httpx.stream("GET", f"http://127.0.0.1:{server.port}/sse/WELL-001?topics=alerts",
                      timeout=10) as sse:
        lines = sse.iter_lines()
        assert next(lines) == "retry: 3000"
        # Start hot (at 63 Hz the motor runs at 112-120 °C, over the 110 limit): one alert each.
        done = subprocess.run(
            [sys.executable, str(script), "--url", f"http://127.0.0.1:{server.port}",
             "--token", "s3cret", "--wells", "2", "--rate", "40", "--count", "30",
             "--start-hz", "63", "--drift", "0", "--seed", "1"],
            capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        stats = dict(kv.split("=") for kv in done.stdout.split())
        assert (stats["ticks"], stats["samples"], stats["alerts"]) == ("30", "60", "2")
        events = []
        for line in lines:
            if line.startswith("event: "):
                events.append(line[7:])
            if events.count("telemetry_update") == 30:
                break
        assert events.count("alert") == 2  # WELL-001's own, and WELL-002's through "alerts"
    frames = [ws.expect_frame("event") for _ in range(32)]
    telemetry = [f for f in frames if f["event"] == "telemetry_update"]
    assert [f["seq"] for f in telemetry] == list(range(1, 31))
    assert {"flow_rate_m3d", "intake_pressure_kpa", "motor_current_a", "motor_temp_c",
            "vibration_mm_s", "vsd_frequency_hz"} <= set(telemetry[0]["data"])
    alerts = [f["data"] for f in frames if f["event"] == "alert"]
    assert sorted(a["well"] for a in alerts) == ["WELL-001", "WELL-002"]
    assert all(a["value"] > a["limit"] == 110.0 for a in alerts)


def test_well_telemetry_secured_with_roles(skyrelay_server_factory):
    """--jwt-secret: the wells' rooms need viewer or operator, set_frequency needs operator."""
    from websockets.exceptions import InvalidStatus

    from skyrelay.testing import connect

    mod = load("well_telemetry")
    secret = "a-deployment-secret-of-32-bytes!"
    holder = {}

    def configure(server):
        holder["app"] = mod.TelemetryApp(server, wells=1, rate_hz=20.0,
                                         command_roles=mod.COMMAND_ROLES)

    server = skyrelay_server_factory(configure, client_topics=mod.CLIENT_TOPICS,
                                     **mod.secured_options(secret))
    holder["app"].start()
    try:
        url = f"ws://127.0.0.1:{server.port}/ws"
        with pytest.raises(InvalidStatus) as refused:
            with connect(url):
                pass
        assert refused.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as refused:
            with connect(f"{url}/WELL-001?token={mod.make_token(secret, 'eve', ['guest'])}"):
                pass
        assert refused.value.response.status_code == 403

        viewer = mod.make_token(secret, "vic", ["viewer"])
        with connect(f"{url}/WELL-001?token={viewer}") as client:
            client.expect_frame("subscribed")
            assert client.expect_event("telemetry_update", timeout=5)["topic"] == "WELL-001"
            with pytest.raises(ResponseError) as err:
                client.request("set_frequency", {"well": "WELL-001", "hz": 55})
            assert err.value.code == "forbidden"
        operator = mod.make_token(secret, "olga", ["operator"])
        with connect(f"{url}?token={operator}") as client:
            assert client.request("set_frequency", {"well": "WELL-001", "hz": 55}) == {
                "well": "WELL-001", "vsd_frequency_hz": 55.0}
    finally:
        holder["app"].stop()
