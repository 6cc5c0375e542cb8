"""The live satellite tracker: positions, communication windows and server status, pushed to
browsers and scripts over the JSON protocol and Socket.IO alike.

Events (all times ISO-8601 UTC, angles in degrees on WGS-84, distances in kilometres):

* ``satellite_positions`` to the room ``satellites`` every ``position_interval`` seconds:
  ``{satellites: [{name, position: {latitude, longitude, altitude_km}, timestamp}], count,
  timestamp}``;
* ``communication_windows`` to the room ``windows`` every ``window_interval`` seconds, the
  passes over the ground stations in the next ``lookahead_hours``: ``{windows: [{satellite,
  ground_station, start_time, end_time, duration_minutes, max_elevation, quality_score}], count,
  total, timestamp}`` (the soonest ``max_windows`` of ``total``);
* ``server_status`` to everyone every ``status_interval`` seconds and to each client when it
  connects: connected clients, subscriber counts, available subscriptions, server metrics.

Requests (JSON protocol) or events (Socket.IO, with or without an ack): ``subscribe_satellites``,
``unsubscribe_satellites``, ``subscribe_windows``, ``unsubscribe_windows``, and
``get_ground_tracks`` (``{names?}``: paths over the ground from 45 minutes back to 90 ahead). A subscribe joins the
room and answers at once with the current snapshot (``{subscribed, snapshot}``); the snapshot
also arrives as the ordinary event, so clients that only listen to events need no special case.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from . import orbit
from .server import Connection, Server

ROOM_SATELLITES = "satellites"
ROOM_WINDOWS = "windows"
SUBSCRIPTIONS = (ROOM_SATELLITES, ROOM_WINDOWS)

#: Ground stations of the demo: polar, mid-latitude and southern sites on every continent.
DEFAULT_STATIONS = (
    orbit.GroundStation("Svalbard", 78.23, 15.39, 0.45, 5.0),
    orbit.GroundStation("Fairbanks", 64.86, -147.85, 0.2, 5.0),
    orbit.GroundStation("Copenhagen", 55.68, 12.57, 0.01, 5.0),
    orbit.GroundStation("Wallops", 37.94, -75.46, 0.0, 5.0),
    orbit.GroundStation("Tokyo", 35.68, 139.77, 0.04, 5.0),
    orbit.GroundStation("Hartebeesthoek", -25.89, 27.69, 1.5, 5.0),
    orbit.GroundStation("Santiago", -33.15, -70.67, 0.7, 5.0),
    orbit.GroundStation("Perth", -31.80, 115.89, 0.02, 5.0),
)


def iso(t: float | dt.datetime) -> str:
    """ISO-8601 UTC with a Z, to the millisecond."""
    if not isinstance(t, dt.datetime):
        t = dt.datetime.fromtimestamp(t, dt.timezone.utc)
    return t.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_station(text: str) -> orbit.GroundStation:
    """``NAME=LAT,LON[,ALT_M[,MASK_DEG]]`` (degrees, metres, degrees)."""
    name, sep, rest = text.partition("=")
    parts = [p.strip() for p in rest.split(",")] if sep else []
    if not sep or not name.strip() or len(parts) not in (2, 3, 4):
        raise ValueError(f"a station is NAME=LAT,LON[,ALT_M[,MASK_DEG]], not {text!r}")
    try:
        lat, lon = float(parts[0]), float(parts[1])
        alt_m = float(parts[2]) if len(parts) > 2 else 0.0
        mask = float(parts[3]) if len(parts) > 3 else 5.0
    except ValueError:
        raise ValueError(f"a station needs numbers: {text!r}") from None
    return orbit.GroundStation(name.strip(), lat, lon, alt_m / 1000.0, mask)


class Tracker:
    """Computes and publishes the tracker's events on its own thread; install its handlers on a
    server with :meth:`install` (before the server starts)."""

    def __init__(self, server: Server, satellites: Sequence[orbit.Satellite] | orbit.SatelliteArray,
                 stations: Iterable[orbit.GroundStation] = DEFAULT_STATIONS, *,
                 position_interval: float = 10.0, window_interval: float = 60.0,
                 lookahead_hours: float = 6.0, status_interval: float = 30.0,
                 max_windows: int = 500, elements_note: str = "",
                 metrics: Callable[[], dict[str, Any]] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        for name, value in (("position_interval", position_interval), ("window_interval", window_interval),
                            ("status_interval", status_interval)):
            if not 0.05 <= value <= 86400:
                raise ValueError(f"{name} must be within [0.05, 86400] seconds, not {value}")
        if not 0 < lookahead_hours <= 7 * 24:
            raise ValueError(f"lookahead_hours must be within (0, 168], not {lookahead_hours}")
        self.server = server
        self.satellites = orbit.SatelliteArray(satellites)
        if len(self.satellites) == 0:
            raise ValueError("the tracker needs at least one satellite")
        self.stations = list(stations)
        self.position_interval = float(position_interval)
        self.window_interval = float(window_interval)
        self.lookahead_hours = float(lookahead_hours)
        self.status_interval = float(status_interval)
        self.max_windows = int(max_windows)
        self.elements_note = elements_note
        self._metrics = metrics
        self._clock = clock
        self._names = self.satellites.names
        self._lock = threading.Lock()
        self._positions: dict[str, Any] | None = None
        self._windows: dict[str, Any] | None = None
        self._greet: list[tuple[Connection, float]] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        #: seconds spent computing and encoding the last positions tick (for docs/benchmarks.md)
        self.last_position_cost: dict[str, float] = {}

    # -- snapshots ---------------------------------------------------------------------------

    def positions_snapshot(self, now: float | None = None) -> dict[str, Any]:
        """Where every satellite is at ``now`` (default: the clock)."""
        t = self._clock() if now is None else now
        started = time.perf_counter()
        stamp = np.array([int(round(t * 1e9))], dtype="datetime64[ns]")
        geo = self.satellites.subpoints(stamp)
        computed = time.perf_counter()
        when = iso(t)
        lat = np.round(geo.latitude[:, 0], 4).tolist()
        lon = np.round(geo.longitude[:, 0], 4).tolist()
        alt = np.round(geo.altitude_km[:, 0], 2).tolist()
        sats = [{"name": n, "position": {"latitude": a, "longitude": o, "altitude_km": h}, "timestamp": when}
                for n, a, o, h in zip(self._names, lat, lon, alt) if a == a]  # NaN: failed propagation
        snapshot = {"satellites": sats, "count": len(sats), "timestamp": when}
        self.last_position_cost = {"compute_s": computed - started, "build_s": time.perf_counter() - computed}
        return snapshot

    def windows_snapshot(self, now: float | None = None) -> dict[str, Any]:
        """Passes over the ground stations from ``now`` to ``now + lookahead_hours``."""
        t = self._clock() if now is None else now
        # Search from an hour back so that a pass in progress reports its real start.
        since = dt.datetime.fromtimestamp(t - 3600.0, dt.timezone.utc)
        table = orbit.pass_table(self.satellites, self.stations, since, hours=self.lookahead_hours + 1.0)
        aos = table["aos"].astype("datetime64[ms]").astype(np.int64) / 1000.0
        los = table["los"].astype("datetime64[ms]").astype(np.int64) / 1000.0
        current = np.flatnonzero(los > t)
        order = current[np.argsort(aos[current], kind="stable")][: self.max_windows]
        windows = [{
            "satellite": table["satellite"][i],
            "ground_station": table["ground_station"][i],
            "start_time": iso(aos[i]),
            "end_time": iso(los[i]),
            "duration_minutes": round(float(table["duration_s"][i]) / 60.0, 2),
            "max_elevation": round(float(table["max_elevation"][i]), 2),
            "quality_score": round(float(table["quality"][i]), 3),
        } for i in order]
        return {"windows": windows, "count": len(windows), "total": int(len(current)),
                "lookahead_hours": self.lookahead_hours, "timestamp": iso(t)}

    def ground_tracks(self, now: float | None = None, *, before_minutes: float = 45.0,
                      after_minutes: float = 90.0, step_s: float = 60.0,
                      names: Iterable[str] | None = None, limit: int = 200) -> dict[str, Any]:
        """Each satellite's path over the ground from ``before_minutes`` ago to ``after_minutes``
        ahead: ``{tracks: [{name, points: [[latitude, longitude], ...]}], start, step_s,
        timestamp}``, for at most ``limit`` satellites (``names`` picks which)."""
        t = self._clock() if now is None else now
        wanted = set(names) if names is not None else None
        chosen = [s for s in self.satellites if wanted is None or s.name in wanted][:limit]
        start = t - before_minutes * 60.0
        count = int((before_minutes + after_minutes) * 60.0 // step_s) + 1
        stamps = (np.round((start + np.arange(count) * step_s) * 1e9)).astype(np.int64).astype("datetime64[ns]")
        tracks = []
        if chosen:
            geo = orbit.SatelliteArray(chosen).subpoints(stamps)
            lat = np.round(geo.latitude, 3)
            lon = np.round(geo.longitude, 3)
            for i, sat in enumerate(chosen):
                ok = ~np.isnan(lat[i])
                tracks.append({"name": sat.name,
                               "points": np.stack([lat[i][ok], lon[i][ok]], axis=1).tolist()})
        return {"tracks": tracks, "start": iso(start), "step_s": step_s, "timestamp": iso(t)}

    def status_snapshot(self) -> dict[str, Any]:
        srv = self.server
        status = {
            "connected_clients": srv.connection_count,
            "subscribers": {room: srv.room_size(room) for room in SUBSCRIPTIONS},
            "available_subscriptions": list(SUBSCRIPTIONS),
            "satellites": len(self.satellites),
            "ground_stations": [{"name": g.name, "latitude": g.latitude, "longitude": g.longitude,
                                 "altitude_km": g.altitude_km, "min_elevation": g.min_elevation}
                                for g in self.stations],
            "intervals": {"positions_s": self.position_interval, "windows_s": self.window_interval,
                          "status_s": self.status_interval, "lookahead_hours": self.lookahead_hours},
            "elements": self.elements_note,
            "timestamp": iso(self._clock()),
        }
        if self._metrics is not None:
            status["metrics"] = self._metrics()
        return status

    def current_positions(self) -> dict[str, Any]:
        with self._lock:
            snap = self._positions
        return snap if snap is not None else self._publish_positions(emit=False)

    def current_windows(self) -> dict[str, Any]:
        with self._lock:
            snap = self._windows
        return snap if snap is not None else self._publish_windows(emit=False)

    # -- publishing --------------------------------------------------------------------------

    def _publish_positions(self, emit: bool = True) -> dict[str, Any]:
        snap = self.positions_snapshot()
        with self._lock:
            self._positions = snap
        if emit:
            self.server.emit("satellite_positions", snap, to=ROOM_SATELLITES, policy="drop_oldest")
        return snap

    def _publish_windows(self, emit: bool = True) -> dict[str, Any]:
        snap = self.windows_snapshot()
        with self._lock:
            self._windows = snap
        if emit:
            self.server.emit("communication_windows", snap, to=ROOM_WINDOWS, policy="drop_oldest")
        return snap

    def publish_status(self) -> None:
        self.server.emit("server_status", self.status_snapshot(), policy="drop_oldest")

    # -- handlers ----------------------------------------------------------------------------

    def install(self) -> Tracker:
        """Registers the subscribe handlers and the connect greeting on the server."""
        srv = self.server
        previous = srv._connect_handlers.get("/")

        def connected(conn: Connection) -> Any:
            result = previous(conn) if previous is not None else None
            if result is not False:
                with self._lock:
                    self._greet.append((conn, time.monotonic() + 5.0))
                self._wake.set()
            return result

        srv.on_connect(connected)

        def subscriber(room: str, event: str, current: Callable[[], dict[str, Any]]):
            def subscribe(conn: Connection, data: Any = None) -> dict[str, Any]:
                conn.join(room)
                snap = current()
                conn.emit(event, snap)
                return {"subscribed": room, "snapshot": snap}

            def unsubscribe(conn: Connection, data: Any = None) -> dict[str, Any]:
                conn.leave(room)
                return {"unsubscribed": room}

            return subscribe, unsubscribe

        @srv.on("get_ground_tracks")
        def get_ground_tracks(conn: Connection, data: Any = None) -> dict[str, Any]:
            names = data.get("names") if isinstance(data, dict) else None
            if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
                from .errors import RequestError

                raise RequestError("bad_request", "names must be a list of satellite names")
            return self.ground_tracks(names=names)

        for room, event, current in ((ROOM_SATELLITES, "satellite_positions", self.current_positions),
                                     (ROOM_WINDOWS, "communication_windows", self.current_windows)):
            subscribe, unsubscribe = subscriber(room, event, current)
            srv.on(f"subscribe_{room}", subscribe)
            srv.on(f"unsubscribe_{room}", unsubscribe)
        return self

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Tracker:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="skyrelay-tracker", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _greet_pending(self) -> None:
        now = time.monotonic()
        with self._lock:
            pending, self._greet = self._greet, []
        if not pending:
            return
        status = self.status_snapshot()
        keep = []
        for conn, deadline in pending:
            # The connect hook runs before the handshake completes: greet once it has (an emit
            # to a connection not yet open reaches nobody and is tried again).
            if not conn.emit("server_status", status) and now < deadline:
                keep.append((conn, deadline))
        if keep:
            with self._lock:
                self._greet.extend(keep)

    def _run(self) -> None:
        due = {"positions": 0.0, "windows": 0.0, "status": time.monotonic() + self.status_interval}
        tasks: dict[str, tuple[float, Callable[[], object]]] = {
            "positions": (self.position_interval, self._publish_positions),
            "windows": (self.window_interval, self._publish_windows),
            "status": (self.status_interval, self.publish_status)}
        while not self._stop.is_set():
            now = time.monotonic()
            for name, (interval, action) in tasks.items():
                if now >= due[name]:
                    try:
                        action()
                    except Exception as exc:  # a failed tick must not end the tracker
                        self.server._log_error(f"tracker {name}", exc)
                    # Keep the cadence; after a long stall, start again from now.
                    due[name] = max(due[name] + interval, now)
            self._greet_pending()
            wait = min(due.values()) - time.monotonic()
            if self._greet:
                wait = min(wait, 0.05)
            self._wake.wait(max(0.0, min(wait, 1.0)))
            self._wake.clear()


def bundled_satellites(now: float | None = None, *, rebase: bool = True) -> tuple[orbit.SatelliteArray, str]:
    """The demo's element sets, re-based to ``now`` unless ``rebase`` is false; with a note
    saying which for the page."""
    from importlib import resources

    text = (resources.files("skyrelay") / "data" / "demo.tle").read_text(encoding="utf-8")
    sats = orbit.load_tle(text)
    if not rebase:
        return sats, "bundled elements of January 2018, not re-based (positions are far off today)"
    return rebase_by_days(sats, now), (
        "bundled elements of January 2018, their epochs moved forward by whole days to the day "
        "before now: the orbits are real shapes, the satellites are not where the real ones are")


def rebase_by_days(satellites: Iterable[orbit.Satellite], now: float | None = None) -> orbit.SatelliteArray:
    """Each satellite's elements with the epoch moved forward by whole days to within the day
    before ``now``. Each keeps the phase its elements had at their epoch's time of day (element
    sets are often dated at a node crossing: moving them all to one instant would line them up on
    the equator)."""
    t = time.time() if now is None else now
    rebased = []
    for s in satellites:
        epoch = s.epoch.timestamp()
        days = (t - epoch) // 86400.0
        rebased.append(s.with_epoch(dt.datetime.fromtimestamp(epoch + days * 86400.0, dt.timezone.utc)))
    return orbit.SatelliteArray(rebased)
