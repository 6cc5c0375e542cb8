"""The satellite tracker's events over the JSON protocol and Socket.IO, with real clients."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time

import numpy as np
import pytest
import socketio
from websockets.sync.client import connect

from skyrelay import Server, orbit
from skyrelay.tracker import DEFAULT_STATIONS, Tracker, bundled_satellites, parse_station

#: the subscriptions the seed's server_status lists, in its order
SEED_SUBSCRIPTIONS = ["satellite_positions", "communication_windows", "server_metrics"]


def _t(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _start_tracker(**options):
    sats, note = bundled_satellites()
    server = Server(port=0)
    options = {"position_interval": 0.5, "window_interval": 2.0, "status_interval": 1.0,
               "elements_note": note, **options}
    trk = Tracker(server, options.pop("satellites", sats), **options).install()
    server.start()
    trk.start()
    return trk


@pytest.fixture
def tracker():
    trk = _start_tracker()
    yield trk
    trk.stop()
    trk.server.stop()


@pytest.fixture
def subscribers_only():
    """A tracker that sends positions and windows to their subscribers only (broadcast=False)."""
    trk = _start_tracker(broadcast=False)
    yield trk
    trk.stop()
    trk.server.stop()


class JsonClient:
    def __init__(self, ws) -> None:
        self.ws = ws
        self.next_id = 0
        self.held: list = []  # frames that arrived while a request waited for its answer

    def recv_until(self, pred, timeout: float = 10.0):
        for i, msg in enumerate(self.held):
            if pred(msg):
                del self.held[: i + 1]
                return msg
        self.held.clear()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no matching frame")
            msg = json.loads(self.ws.recv(timeout=left))
            if pred(msg):
                return msg

    def event(self, name: str, timeout: float = 10.0):
        return self.recv_until(lambda m: m.get("type") == "event" and m.get("event") == name, timeout)

    def request(self, event: str, data=None):
        self.next_id += 1
        rid = str(self.next_id)
        self.ws.send(json.dumps({"type": "request", "id": rid, "event": event, "data": data}))
        skipped: list = []

        def answer(m):
            if m.get("type") == "response" and m.get("id") == rid:
                return True
            skipped.append(m)
            return False

        found = self.recv_until(answer)
        self.held = skipped
        return found


def test_json_client_gets_status_then_positions_that_move(subscribers_only):
    tracker = subscribers_only
    with connect(tracker.server.url, open_timeout=5) as ws:
        client = JsonClient(ws)
        status = client.event("server_status")["data"]
        assert status["available_subscriptions"] == SEED_SUBSCRIPTIONS
        assert status["connected_clients"] >= 1 and status["satellites"] == 26
        assert "moved forward by whole days" in status["elements"]
        answer = client.request("subscribe_satellites")
        assert answer["ok"] and answer["data"]["subscribed"] == "satellite_positions"
        snap = answer["data"]["snapshot"]
        assert snap["count"] == len(snap["satellites"]) == 26
        assert client.event("satellite_update")["data"] == snap  # the snapshot, also as the seed's reply
        first = client.event("satellite_positions")["data"]
        later = client.event("satellite_positions")["data"]
        while later["timestamp"] == first["timestamp"]:
            later = client.event("satellite_positions")["data"]
        assert _t(later["timestamp"]) > _t(first["timestamp"])
        a = {s["name"]: s["position"] for s in first["satellites"]}
        b = {s["name"]: s["position"] for s in later["satellites"]}
        iss_a, iss_b = a["ISS (ZARYA)"], b["ISS (ZARYA)"]
        assert (iss_a["latitude"], iss_a["longitude"]) != (iss_b["latitude"], iss_b["longitude"])
        # Positions are the orbit module's, at the snapshot's time.
        sat = [s for s in tracker.satellites if s.name == "ISS (ZARYA)"][0]
        when = np.datetime64(later["timestamp"].rstrip("Z"), "ms")
        geo = sat.subpoint(when)
        assert abs(geo.latitude[0] - iss_b["latitude"]) < 1e-3
        assert abs(geo.altitude_km[0] - iss_b["altitude_km"]) < 0.01
        # A status after the subscription counts the subscriber.
        status = client.event("server_status")["data"]
        assert status["subscribers"]["satellite_positions"] == 1 and status["broadcast"] is False
        # Unsubscribed, no more positions: none computed after the answer arrives.
        assert client.request("unsubscribe_satellites")["data"] == {"unsubscribed": "satellite_positions"}
        left = time.time()
        with pytest.raises(TimeoutError):
            client.recv_until(lambda m: m.get("event") == "satellite_positions" and
                              _t(m["data"]["timestamp"]) > left + 0.05, timeout=1.5)


def test_windows_are_future_passes_over_the_stations(tracker):
    with connect(tracker.server.url, open_timeout=5) as ws:
        client = JsonClient(ws)
        snap = client.request("subscribe_windows")["data"]["snapshot"]
        now = _t(snap["timestamp"])
        windows = snap["windows"]
        assert snap["count"] == len(windows) > 10 and snap["total"] >= snap["count"]
        names = {g.name for g in DEFAULT_STATIONS}
        starts = [_t(w["start_time"]) for w in windows]
        assert starts == sorted(starts)
        for w in windows:
            start, end = _t(w["start_time"]), _t(w["end_time"])
            assert end > now and start < end <= now + 6 * 3600 + 1
            assert w["ground_station"] in names
            assert abs((end - start) / 60 - w["duration_minutes"]) < 0.02
            assert 5.0 <= w["max_elevation"] <= 90 and 0 <= w["quality_score"] <= 1
        pushed = client.event("communication_windows", timeout=5)["data"]
        assert pushed["count"] > 10


def test_socketio_client_gets_the_same_events(subscribers_only):
    tracker = subscribers_only
    sio = socketio.Client(reconnection=False)
    statuses: list = []
    positions: list = []
    got_status = threading.Event()
    got_positions = threading.Event()

    @sio.on("server_status")
    def on_status(data):
        statuses.append(data)
        got_status.set()

    @sio.on("satellite_positions")
    def on_positions(data):
        positions.append(data)
        if len(positions) >= 2:
            got_positions.set()

    sio.connect(tracker.server.http_url, transports=["websocket"], wait_timeout=5)
    try:
        assert got_status.wait(5)
        assert statuses[0]["satellites"] == 26
        answer = sio.call("subscribe_satellites", timeout=5)
        assert answer["subscribed"] == "satellite_positions" and answer["snapshot"]["count"] == 26
        assert got_positions.wait(5)
        windows = sio.call("subscribe_windows", timeout=5)
        assert windows["snapshot"]["count"] > 10
    finally:
        sio.disconnect()


def test_bundled_elements_rebase_and_station_parsing():
    t = dt.datetime(2030, 5, 1, 12, 0, 20, tzinfo=dt.timezone.utc).timestamp()
    sats, note = bundled_satellites(t)
    old, old_note = bundled_satellites(t, rebase=False)
    for new, orig in zip(sats, old):
        assert t - 86400 < new.epoch.timestamp() <= t
        # moved by whole days (to the microsecond the OMM epoch keeps)
        shift = new.epoch.timestamp() - orig.epoch.timestamp()
        assert abs(shift / 86400 - round(shift / 86400)) < 1e-9
    assert "moved forward by whole days" in note
    note = old_note
    assert old[0].epoch.year == 2018 and "not re-based" in note
    # Same orbit shape: the mean motion is unchanged.
    assert sats[0].elements["mean_motion"] == old[0].elements["mean_motion"]
    g = parse_station("Kiruna=67.86,20.96,390,10")
    assert (g.name, g.latitude, g.altitude_km, g.min_elevation) == ("Kiruna", 67.86, 0.39, 10.0)
    for bad in ("Kiruna", "=1,2", "K=1", "K=a,b", "K=95,0"):
        with pytest.raises(ValueError):
            parse_station(bad)
    with pytest.raises(ValueError, match="position_interval"):
        Tracker(Server(port=0), sats, position_interval=0)


def test_whole_gpredict_catalogue_at_one_update_per_second():
    """979 satellites, positions every second: every tick arrives, on time, complete."""
    from orbit_data import GPREDICT

    from skyrelay.tracker import rebase_by_days

    sats = rebase_by_days([s for s in orbit.load_tle(str(GPREDICT)) if s.error == 0])
    assert len(sats) >= 970
    server = Server(port=0)
    trk = Tracker(server, sats, position_interval=1.0, window_interval=60.0, status_interval=30.0).install()
    server.start()
    trk.start()
    try:
        with connect(server.url, open_timeout=5, max_size=2**24) as ws:
            client = JsonClient(ws)
            first = client.request("subscribe_satellites")["data"]["snapshot"]
            # (a satellite whose elements fail at this time, decayed say, is left out)
            assert len(sats) - 5 <= first["count"] <= len(sats)
            # Names repeat in the catalogue (19 "SL-16 R/B"); catalogue numbers do not.
            numbers = [s["catalog_number"] for s in first["satellites"]]
            assert len(set(numbers)) == len(numbers)
            assert sum(s["name"] == "SL-16 R/B" for s in first["satellites"]) >= 15
            assert {s.satnum for s in sats} >= {str(n) for n in numbers}
            stamps = []
            deadline = time.monotonic() + 6.5
            while time.monotonic() < deadline:
                try:
                    msg = client.event("satellite_positions", timeout=max(0.1, deadline - time.monotonic()))
                except TimeoutError:
                    break
                data = msg["data"]
                assert data["count"] == first["count"]
                stamps.append(_t(data["timestamp"]))
            # One update per second: ticks in order, and over the run they
            # average a second apart. (Not each gap: on a loaded machine one tick may come
            # late and the next on schedule; that is the machine, not the tracker's contract.)
            assert stamps == sorted(stamps), stamps
            ticks = sorted(set(stamps))
            assert len(ticks) >= 5
            mean_gap = (ticks[-1] - ticks[0]) / (len(ticks) - 1)
            assert 0.75 < mean_gap < 1.25, np.diff(ticks)
    finally:
        trk.stop()
        server.stop()


def test_ground_tracks_follow_the_orbit(tracker):
    with connect(tracker.server.url, open_timeout=5) as ws:
        client = JsonClient(ws)
        answer = client.request("get_ground_tracks", {"names": ["ISS (ZARYA)", "GOES 16"]})["data"]
        assert [t["name"] for t in answer["tracks"]] == ["ISS (ZARYA)", "GOES 16"]
        iss, goes = (t["points"] for t in answer["tracks"])
        assert len(iss) == 136 and answer["step_s"] == 60.0
        sat = [s for s in tracker.satellites if s.name == "ISS (ZARYA)"][0]
        start = np.datetime64(answer["start"].rstrip("Z"), "ms")
        geo = sat.subpoint(start + np.arange(136) * np.timedelta64(60, "s"))
        assert np.allclose([p[0] for p in iss], geo.latitude, atol=2e-3)
        assert max(abs(p[0]) for p in iss) > 45  # the ISS swings to 51.6 degrees
        assert max(abs(p[0]) for p in goes) < 1  # a geostationary satellite stays on the equator
        bad = client.request("get_ground_tracks", {"names": "ISS"})
        assert not bad["ok"] and bad["error"]["code"] == "bad_request"


def test_demo_elements_from_a_file_or_url_and_clear_errors(tmp_path):
    import http.server
    import subprocess
    import sys

    from skyrelay.demo import load_elements

    from orbit_data import gpredict_catalogue

    name, l1, l2 = gpredict_catalogue()[0]
    path = tmp_path / "one.tle"
    path.write_text(f"{name}\n{l1}\n{l2}\n")
    assert [s.name for s in load_elements(str(path))] == [name]

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
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        assert [s.name for s in load_elements(f"{url}/gp.tle")] == [name]
        with pytest.raises(ValueError, match="could not fetch"):
            load_elements(f"{url}/missing.tle")
    finally:
        httpd.shutdown()
    bad = tmp_path / "bad.tle"
    bad.write_text("nothing here\n")
    for args, message in [(["--tle", str(tmp_path / "none.tle")], "no such file"),
                          (["--tle", str(bad)], "no usable element sets"),
                          (["--station", "Nowhere=95,0"], "latitude"),
                          (["--elements-every", "60"], "--elements-every reloads --tle")]:
        done = subprocess.run([sys.executable, "-m", "skyrelay.cli", "demo", "--port", "0", *args],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
