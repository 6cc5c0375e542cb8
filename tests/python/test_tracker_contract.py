"""The tracker against the S0 seed's contract (shared/seeds/000_*.txt), with the seed's own
client: python-socketio on the default namespace, events emitted without acks. Each event name
and payload shape is checked against the seed's; skyrelay's extra fields may come on top."""

from __future__ import annotations

import datetime as dt
import http.server
import threading
import time

import pytest
import socketio

from skyrelay import Server
from skyrelay.tracker import ElementsSource, Tracker, bundled_satellites

from orbit_data import gpredict_catalogue

# The seed's payloads: key -> type (float accepts int: JSON has one number type).
SEED_STATUS = {"message": str, "connected_clients": int, "available_subscriptions": list}
SEED_SUBSCRIPTIONS = ["satellite_positions", "communication_windows", "server_metrics"]
SEED_POSITIONS = {"satellites": list, "count": int, "timestamp": str}
SEED_SATELLITE = {"name": str, "position": dict, "timestamp": str}
SEED_POSITION = {"latitude": float, "longitude": float, "altitude_km": float}
SEED_WINDOWS = {"windows": list, "count": int, "timestamp": str}
SEED_WINDOW = {"satellite": str, "ground_station": str, "start_time": str, "end_time": str,
               "duration_minutes": float, "max_elevation": float, "quality_score": float}


def _shape(payload, shape, what):
    assert isinstance(payload, dict), what
    for key, kind in shape.items():
        assert key in payload, f"{what} has no {key!r}: {sorted(payload)}"
        kinds = (int, float) if kind is float else kind
        assert isinstance(payload[key], kinds) and not isinstance(payload[key], bool), (what, key)


def _iso(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _positions(data, what):
    _shape(data, SEED_POSITIONS, what)
    assert data["count"] == len(data["satellites"]) > 0
    for sat in data["satellites"]:
        _shape(sat, SEED_SATELLITE, what)
        _shape(sat["position"], SEED_POSITION, what)
        assert isinstance(sat["catalog_number"], int)
        assert -90 <= sat["position"]["latitude"] <= 90 and -180 <= sat["position"]["longitude"] <= 180
    _iso(data["timestamp"])


def _windows(data, what):
    _shape(data, SEED_WINDOWS, what)
    assert data["count"] == len(data["windows"]) > 0
    for w in data["windows"]:
        _shape(w, SEED_WINDOW, what)
        assert _iso(w["start_time"]) < _iso(w["end_time"]) and 0 <= w["quality_score"] <= 1


class Recorder:
    """A python-socketio client that keeps every event it gets, by name."""

    def __init__(self, names) -> None:
        self.sio = socketio.Client(reconnection=False)
        self.got: dict[str, list] = {name: [] for name in names}
        self.changed = threading.Condition()
        for name in names:
            self.sio.on(name, self._keeper(name))

    def _keeper(self, name):
        def keep(data=None):
            with self.changed:
                self.got[name].append(data)
                self.changed.notify_all()
        return keep

    def wait(self, name, count=1, timeout=10.0):
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.got[name]) >= count, timeout), \
                f"{count} {name} within {timeout} s: got {len(self.got[name])}"
            return self.got[name][count - 1]


@pytest.fixture
def tracker():
    sats, note = bundled_satellites()
    server = Server(port=0)
    trk = Tracker(server, sats, position_interval=0.5, window_interval=2.0, status_interval=1.0,
                  metrics_interval=0.5, elements_note=note).install()
    server.start()
    trk.start()
    yield trk
    trk.stop()
    server.stop()


def test_the_seeds_events_and_payloads_over_socketio(tracker):
    names = ["server_status", "satellite_positions", "communication_windows", "satellite_update",
             "window_update", "server_metrics"]
    client = Recorder(names)
    client.sio.connect(tracker.server.http_url, transports=["websocket", "polling"], wait_timeout=5)
    try:
        # On connect: server_status with the seed's message, client count and subscriptions.
        status = client.wait("server_status")
        _shape(status, SEED_STATUS, "server_status")
        assert status["available_subscriptions"] == SEED_SUBSCRIPTIONS
        assert status["message"] and status["connected_clients"] >= 1
        # Positions and windows are broadcast to every client, subscribed or not.
        _positions(client.wait("satellite_positions"), "satellite_positions")
        _windows(client.wait("communication_windows"), "communication_windows")
        assert client.got["satellite_update"] == [] and client.got["server_metrics"] == []
        # The seed's subscribes take no data and no ack; each replies with its own event.
        client.sio.emit("subscribe_satellites")
        update = client.wait("satellite_update")
        _positions(update, "satellite_update")
        assert update["count"] == 26
        client.sio.emit("subscribe_windows")
        _windows(client.wait("window_update"), "window_update")
        # server_metrics is a subscription like the others: a reply at once, then periodic.
        client.sio.emit("subscribe_metrics")
        first = client.wait("server_metrics")
        assert first["subscribers"]["server_metrics"] == 1 and first["satellites"] == 26
        client.wait("server_metrics", 3)
        # server_status again on its interval, counting the subscribers by subscription name.
        seen = len(client.got["server_status"])
        later = client.wait("server_status", seen + 1)
        _shape(later, SEED_STATUS, "server_status")
        assert later["subscribers"] == {name: 1 for name in SEED_SUBSCRIPTIONS}
        # Positions go on after the subscribe and carry the same satellites.
        count = len(client.got["satellite_positions"])
        latest = client.wait("satellite_positions", count + 1)
        assert {s["catalog_number"] for s in latest["satellites"]} == \
            {s["catalog_number"] for s in update["satellites"]}
        # unsubscribe_metrics stops the metrics; nothing else.
        client.sio.emit("unsubscribe_metrics")
        deadline = time.monotonic() + 5
        while tracker.server.room_size("metrics") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tracker.server.room_size("metrics") == 0
        stopped = len(client.got["server_metrics"])
        client.wait("satellite_positions", len(client.got["satellite_positions"]) + 2)
        assert len(client.got["server_metrics"]) == stopped
    finally:
        client.sio.disconnect()


def _tle_text(entries) -> str:
    return "".join(f"{name}\n{l1}\n{l2}\n" for name, l1, l2 in entries)


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.mark.parametrize("via", ["file", "url"])
def test_elements_are_reloaded_on_their_interval(tmp_path, via):
    """The tracker reads its elements again every elements_interval seconds from a file or an
    http URL (127.0.0.1); a bad reload keeps the elements in use and says why in server_status."""
    catalogue = [e for e in gpredict_catalogue() if e[1][2:7].strip().isdigit()][:3]
    path = tmp_path / "elements.tle"
    path.write_text(_tle_text(catalogue[:1]))
    httpd = None
    source = str(path)
    if via == "url":
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                body = path.read_bytes() if self.path == "/gp.tle" else b""
                self.send_response(200 if body else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        source = f"http://127.0.0.1:{httpd.server_address[1]}/gp.tle"
    elements = ElementsSource(source, rebase=True)
    server = Server(port=0)
    trk = Tracker(server, elements.load(), position_interval=0.2, window_interval=600, status_interval=0.3,
                  elements=elements, elements_interval=0.3).install()
    server.start()
    trk.start()
    client = Recorder(["satellite_positions", "server_status"])
    try:
        client.sio.connect(server.http_url, transports=["websocket"], wait_timeout=5)
        first = client.wait("satellite_positions")
        assert [s["catalog_number"] for s in first["satellites"]] == [int(catalogue[0][1][2:7])]
        path.write_text(_tle_text(catalogue))  # three satellites now
        want = sorted(int(e[1][2:7]) for e in catalogue)
        _wait_for(lambda: sorted(s["catalog_number"] for s in client.got["satellite_positions"][-1]["satellites"]) == want)
        path.write_text("no elements here\n")  # a bad reload: the three stay
        _wait_for(lambda: (client.got["server_status"][-1].get("elements_error") or "").find("no usable") >= 0)
        count = len(client.got["satellite_positions"])
        assert client.wait("satellite_positions", count + 1)["count"] == 3
        path.write_text(_tle_text(catalogue[1:2]))  # good again: the error clears
        _wait_for(lambda: client.got["server_status"][-1].get("elements_error") is None
                  and client.got["satellite_positions"][-1]["count"] == 1)
        assert client.got["server_status"][-1]["elements_loaded_at"]
    finally:
        client.sio.disconnect()
        trk.stop()
        server.stop()
        if httpd is not None:
            httpd.shutdown()


def test_elements_interval_needs_a_source_and_a_sane_value():
    sats, _ = bundled_satellites()
    with pytest.raises(ValueError, match="elements source"):
        Tracker(Server(port=0), sats, elements_interval=60)
    with pytest.raises(ValueError, match="elements_interval"):
        Tracker(Server(port=0), sats, elements=ElementsSource("x.tle"), elements_interval=0)
