"""The live satellite tracker: positions, communication windows, server status and metrics,
pushed to browsers and scripts over the JSON protocol and Socket.IO alike, with the event names
and payloads of the Flask-SocketIO tracker it replaces (docs/tracker.md maps them one by one).

Events (all times ISO-8601 UTC, angles in degrees on WGS-84, distances in kilometres):

* ``satellite_positions`` every ``position_interval`` seconds, to every client (``broadcast``,
  the default) or to the subscribers only: ``{satellites: [{name, catalog_number, position:
  {latitude, longitude, altitude_km}, timestamp}], count, timestamp}``;
* ``communication_windows`` every ``window_interval`` seconds, same audience: the passes over the
  ground stations in the next ``lookahead_hours``: ``{windows: [{satellite, catalog_number,
  ground_station, start_time, end_time, duration_minutes, max_elevation, quality_score}], count,
  total, lookahead_hours, timestamp}`` (the soonest ``max_windows`` of ``total``);
* ``server_status`` to everyone every ``status_interval`` seconds and to each client when it
  connects: ``message``, connected clients, ``available_subscriptions`` (``satellite_positions``,
  ``communication_windows``, ``server_metrics``), subscriber counts, server metrics;
* ``server_metrics`` to the subscribers of the room ``metrics`` every ``metrics_interval``
  seconds (None: another publisher feeds that room, as the demo's does every second).

Requests (JSON protocol) or events (Socket.IO, with or without an ack): ``subscribe_satellites``
(answered by the event ``satellite_update`` with the current positions), ``subscribe_windows``
(``window_update``), ``subscribe_metrics`` (``server_metrics``), their ``unsubscribe_*``, and
``get_ground_tracks`` (``{names?}``: paths over the ground from 45 minutes back to 90 ahead). A
subscribe joins the room and its ack carries the same snapshot: ``{subscribed, snapshot}``.

Elements are reloaded every ``elements_interval`` seconds from ``elements`` (an
:class:`ElementsSource`: a file path or an http(s) URL) on a thread of their own; a failed
reload keeps the elements in use and is reported in ``server_status.elements_error``.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ._extras import requires_extra

with requires_extra("orbit", "skyrelay.tracker"):
    import numpy as np

from . import orbit
from .server import Connection, Server
from .tracker_elements import ElementsSource, bundled_satellites, load_elements, rebase_by_days

__all__ = ["Tracker", "ElementsSource", "bundled_satellites", "load_elements", "rebase_by_days",
           "catalog_number", "parse_station", "iso", "DEFAULT_STATIONS", "SUBSCRIPTIONS"]

ROOM_SATELLITES = "satellites"
ROOM_WINDOWS = "windows"
ROOM_METRICS = "metrics"
#: subscription name (as ``available_subscriptions`` lists it) -> the room its subscribers join
SUBSCRIPTIONS = {"satellite_positions": ROOM_SATELLITES, "communication_windows": ROOM_WINDOWS,
                 "server_metrics": ROOM_METRICS}
GREETING = "Connected to the skyrelay satellite tracker"

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
    """``[NAME=]LAT,LON[,ALT_M[,MASK_DEG]]`` (degrees, metres, degrees; the tracker's default
    mask is 5 degrees): :meth:`skyrelay.orbit.GroundStation.parse`."""
    return orbit.GroundStation.parse(text, min_elevation=5.0)


class Tracker:
    """Computes and publishes the tracker's events on its own thread; install its handlers on a
    server with :meth:`install` (before the server starts)."""

    def __init__(self, server: Server, satellites: Sequence[orbit.Satellite] | orbit.SatelliteArray,
                 stations: Iterable[orbit.GroundStation] = DEFAULT_STATIONS, *,
                 position_interval: float = 10.0, window_interval: float = 60.0,
                 lookahead_hours: float = 6.0, status_interval: float = 30.0,
                 max_windows: int = 500, elements_note: str = "",
                 metrics: Callable[[], dict[str, Any]] | None = None,
                 metrics_interval: float | None = 30.0, broadcast: bool = True,
                 elements: ElementsSource | None = None, elements_interval: float | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        for name, value in (("position_interval", position_interval), ("window_interval", window_interval),
                            ("status_interval", status_interval), ("metrics_interval", metrics_interval),
                            ("elements_interval", elements_interval)):
            if value is not None and not 0.05 <= value <= 86400:
                raise ValueError(f"{name} must be within [0.05, 86400] seconds, not {value}")
        if not 0 < lookahead_hours <= 7 * 24:
            raise ValueError(f"lookahead_hours must be within (0, 168], not {lookahead_hours}")
        if elements_interval is not None and elements is None:
            raise ValueError("elements_interval needs an elements source")
        self.server = server
        self._set_catalogue(satellites)
        self.stations = list(stations)
        self.position_interval = float(position_interval)
        self.window_interval = float(window_interval)
        self.lookahead_hours = float(lookahead_hours)
        self.status_interval = float(status_interval)
        self.max_windows = int(max_windows)
        self.elements_note = elements_note
        self.metrics_interval = metrics_interval
        self.broadcast = bool(broadcast)
        self.elements = elements
        self.elements_interval = elements_interval
        #: when the elements were last (re)loaded from ``elements``, and the last reload's error
        self.elements_loaded_at: float | None = None
        self.elements_error: str | None = None
        self._metrics = metrics
        self._clock = clock
        self._lock = threading.Lock()
        self._positions: dict[str, Any] | None = None
        self._positions_raw: bytes | None = None
        self._windows: dict[str, Any] | None = None
        self._greet: list[tuple[Connection, float]] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._loader: threading.Thread | None = None
        #: seconds spent computing and encoding the last positions tick (for docs/benchmarks.md)
        self.last_position_cost: dict[str, float] = {}

    # -- the catalogue -----------------------------------------------------------------------

    def _set_catalogue(self, satellites: Sequence[orbit.Satellite] | orbit.SatelliteArray) -> None:
        """Replaces the satellites in one assignment: a tick reads the old set or the new one,
        never half of each."""
        sats = orbit.SatelliteArray(satellites)
        if len(sats) == 0:
            raise ValueError("the tracker needs at least one satellite")
        names, numbers = sats.names, [catalog_number(s) for s in sats]
        self._catalogue = (sats, names, numbers, _positions_encoder(names, numbers))

    @property
    def satellites(self) -> orbit.SatelliteArray:
        return self._catalogue[0]

    def reload_elements(self) -> bool:
        """Loads the elements again from ``elements``; on failure keeps the ones in use and
        records why in ``elements_error``. True when the catalogue was replaced."""
        if self.elements is None:
            return False
        try:
            self._set_catalogue(self.elements.load())
        except (ValueError, OSError) as exc:
            self.elements_error = f"{self.elements.source}: {exc}"
            self.server._log_error("tracker elements", exc)
            return False
        self.elements_loaded_at = self._clock()
        self.elements_error = None
        return True

    # -- snapshots ---------------------------------------------------------------------------

    def positions_message(self, now: float | None = None) -> bytes:
        """The ``satellite_positions`` payload at ``now`` (default: the clock) as JSON text,
        written in C++ (``_orbit.PositionsEncoder``): the same text Python's json.dumps wrote
        for :meth:`positions_snapshot`'s dict."""
        t = self._clock() if now is None else now
        sats, _, _, encoder = self._catalogue
        started = time.perf_counter()
        stamp = np.array([int(round(t * 1e9))], dtype="datetime64[ns]")
        geo = sats.subpoints(stamp)
        computed = time.perf_counter()
        raw = encoder.encode(geo.latitude[:, 0], geo.longitude[:, 0], geo.altitude_km[:, 0],
                             json.dumps(iso(t)))
        self.last_position_cost = {"compute_s": computed - started, "build_s": time.perf_counter() - computed}
        return raw

    def positions_snapshot(self, now: float | None = None) -> dict[str, Any]:
        """Where every satellite is at ``now`` (default: the clock): :meth:`positions_message`
        read back into a dict."""
        return json.loads(self.positions_message(now))

    def windows_snapshot(self, now: float | None = None) -> dict[str, Any]:
        """Passes over the ground stations from ``now`` to ``now + lookahead_hours``."""
        t = self._clock() if now is None else now
        # Search from an hour back so that a pass in progress reports its real start.
        since = dt.datetime.fromtimestamp(t - 3600.0, dt.timezone.utc)
        sats, names, numbers, _ = self._catalogue
        table = _pass_columns(sats, self.stations, since, self.lookahead_hours + 1.0)
        aos, los = table["aos"], table["los"]
        current = np.flatnonzero(los > t)
        order = current[np.argsort(aos[current], kind="stable")][: self.max_windows]
        windows = [{
            "satellite": names[table["satellite"][i]],
            "catalog_number": numbers[table["satellite"][i]],
            "ground_station": self.stations[table["ground_station"][i]].name,
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
                tracks.append({"name": sat.name, "catalog_number": catalog_number(sat),
                               "points": np.stack([lat[i][ok], lon[i][ok]], axis=1).tolist()})
        return {"tracks": tracks, "start": iso(start), "step_s": step_s, "timestamp": iso(t)}

    def status_snapshot(self, message: str = GREETING) -> dict[str, Any]:
        srv = self.server
        status = {
            "message": message,
            "connected_clients": srv.connection_count,
            "available_subscriptions": list(SUBSCRIPTIONS),
            "subscribers": {name: srv.room_size(room) for name, room in SUBSCRIPTIONS.items()},
            "satellites": len(self.satellites),
            "ground_stations": [{"name": g.name, "latitude": g.latitude, "longitude": g.longitude,
                                 "altitude_km": g.altitude_km, "min_elevation": g.min_elevation}
                                for g in self.stations],
            "intervals": {"positions_s": self.position_interval, "windows_s": self.window_interval,
                          "status_s": self.status_interval, "metrics_s": self.metrics_interval,
                          "elements_s": self.elements_interval, "lookahead_hours": self.lookahead_hours},
            "broadcast": self.broadcast,
            "elements": self.elements_note,
            "elements_loaded_at": iso(self.elements_loaded_at) if self.elements_loaded_at else None,
            "elements_error": self.elements_error,
            "timestamp": iso(self._clock()),
        }
        if self._metrics is not None:
            status["metrics"] = self._metrics()
        return status

    def metrics_snapshot(self) -> dict[str, Any]:
        """The ``server_metrics`` payload: the ``metrics`` callable's dict when it has one, else
        client and subscriber counts and the cost of the last positions tick."""
        if self._metrics is not None:
            found = self._metrics()
            if found:
                return found
        srv = self.server
        cost = self.last_position_cost
        return {"connected_clients": srv.connection_count,
                "subscribers": {name: srv.room_size(room) for name, room in SUBSCRIPTIONS.items()},
                "satellites": len(self.satellites),
                "positions_tick_ms": round(1000.0 * sum(cost.values()), 2),
                "timestamp": iso(self._clock())}

    def current_positions(self) -> dict[str, Any]:
        """The last positions published, as a dict (read back from their JSON text once)."""
        with self._lock:
            snap, raw = self._positions, self._positions_raw
        if snap is None and raw is not None:
            snap = json.loads(raw)
            with self._lock:
                if self._positions_raw is raw:
                    self._positions = snap
        return snap if snap is not None else json.loads(self._publish_positions(emit=False))

    def current_windows(self) -> dict[str, Any]:
        with self._lock:
            snap = self._windows
        return snap if snap is not None else self._publish_windows(emit=False)

    # -- publishing --------------------------------------------------------------------------

    def _publish_positions(self, emit: bool = True) -> bytes:
        raw = self.positions_message()
        with self._lock:
            self._positions_raw, self._positions = raw, None
        if emit:
            # bytes: already-encoded JSON, sent as it is to every transport
            self.server.emit("satellite_positions", raw, to=None if self.broadcast else ROOM_SATELLITES,
                             policy="drop_oldest")
        return raw

    def _publish_windows(self, emit: bool = True) -> dict[str, Any]:
        snap = self.windows_snapshot()
        with self._lock:
            self._windows = snap
        if emit:
            self.server.emit("communication_windows", snap, to=None if self.broadcast else ROOM_WINDOWS,
                             policy="drop_oldest")
        return snap

    def publish_status(self) -> None:
        self.server.emit("server_status", self.status_snapshot(), policy="drop_oldest")

    def publish_metrics(self) -> None:
        self.server.emit("server_metrics", self.metrics_snapshot(), to=ROOM_METRICS, policy="drop_oldest")

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

        def subscriber(name: str, room: str, reply: str, current: Callable[[], dict[str, Any]]):
            def subscribe(conn: Connection, data: Any = None) -> dict[str, Any]:
                conn.join(room)
                snap = current()
                conn.emit(reply, snap)
                return {"subscribed": name, "snapshot": snap}

            def unsubscribe(conn: Connection, data: Any = None) -> dict[str, Any]:
                conn.leave(room)
                return {"unsubscribed": name}

            return subscribe, unsubscribe

        @srv.on("get_ground_tracks")
        def get_ground_tracks(conn: Connection, data: Any = None) -> dict[str, Any]:
            names = data.get("names") if isinstance(data, dict) else None
            if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
                from .errors import RequestError

                raise RequestError("bad_request", "names must be a list of satellite names")
            return self.ground_tracks(names=names)

        for verb, name, reply, current in (
                ("satellites", "satellite_positions", "satellite_update", self.current_positions),
                ("windows", "communication_windows", "window_update", self.current_windows),
                ("metrics", "server_metrics", "server_metrics", self.metrics_snapshot)):
            subscribe, unsubscribe = subscriber(name, SUBSCRIPTIONS[name], reply, current)
            srv.on(f"subscribe_{verb}", subscribe)
            srv.on(f"unsubscribe_{verb}", unsubscribe)
        return self

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Tracker:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="skyrelay-tracker", daemon=True)
            self._thread.start()
            if self.elements_interval is not None:
                # Its own thread: a slow URL must not hold up the positions.
                self._loader = threading.Thread(target=self._reload_loop, name="skyrelay-tracker-elements",
                                                daemon=True)
                self._loader.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in (self._thread, self._loader):
            if thread is not None:
                thread.join(timeout=30)
        self._thread = self._loader = None

    def _reload_loop(self) -> None:
        assert self.elements_interval is not None
        while not self._stop.wait(self.elements_interval):
            self.reload_elements()

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
        later = time.monotonic() + self.status_interval
        tasks: dict[str, tuple[float, Callable[[], object]]] = {
            "positions": (self.position_interval, self._publish_positions),
            "windows": (self.window_interval, self._publish_windows),
            "status": (self.status_interval, self.publish_status)}
        due = {"positions": 0.0, "windows": 0.0, "status": later}
        if self.metrics_interval is not None:
            tasks["metrics"] = (self.metrics_interval, self.publish_metrics)
            due["metrics"] = time.monotonic() + self.metrics_interval
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


def catalog_number(sat: orbit.Satellite) -> int | str:
    """The satellite's catalogue (NORAD) number: an int, or the text as read when it is not
    all digits (Alpha-5 numbers such as ``A0001``)."""
    number = str(sat.satnum).strip()
    return int(number) if number.isdigit() else number


def _positions_encoder(names: Sequence[str], numbers: Sequence[int | str]) -> Any:
    """The C++ writer of satellite_positions for this catalogue: each record's text up to its
    latitude, written here once by json.dumps (so names are escaped exactly as before)."""
    heads = ['{"name":' + json.dumps(name, ensure_ascii=False) + ',"catalog_number":' + json.dumps(number)
             + ',"position":{"latitude":' for name, number in zip(names, numbers)]
    return orbit._orbit.PositionsEncoder([h.encode("utf-8") for h in heads])


def _pass_columns(sats: orbit.SatelliteArray, stations: Sequence[orbit.GroundStation],
                  since: dt.datetime, hours: float) -> dict[str, np.ndarray]:
    """orbit.pass_table's search with satellites and stations left as indices (names repeat
    in a catalogue: gpredict's has 19 "SL-16 R/B") and times as Unix seconds."""
    _, _, cores, masks, t0, t1 = orbit._pass_arguments(sats, stations, since, None, hours, None)
    return orbit._orbit.find_pass_columns(cores, masks, t0, t1, 0.0, 0)
