"""The live demo behind ``make demo``: the satellite tracker (``/``) and the engine's own
metrics page (``/metrics.html``).

The tracker (skyrelay.tracker) propagates the satellites with the orbit module and pushes
positions, communication windows and server status over the JSON protocol and Socket.IO. The
metrics page subscribes to the topic ``metrics``, which gets a snapshot of the server's counters
every second, and has a chat box whose request handler fans a message out to every open page.
"""

from __future__ import annotations

import os
import threading
import time
from importlib import resources
from typing import Any

from .server import Connection, Server
from .tracker import DEFAULT_STATIONS, ROOM_METRICS, ElementsSource, Tracker
from .tracker import load_elements  # noqa: F401 (moved to the tracker; kept importable here)

#: the room the metrics page (/ws/metrics) and the tracker's subscribe_metrics share
TOPIC = ROOM_METRICS
_COUNTERS = (
    "skyrelay_received_messages_total",
    "skyrelay_sent_messages_total",
    "skyrelay_sent_bytes_total",
    "skyrelay_write_calls_total",
    "skyrelay_sent_frames_total",
    "skyrelay_publications_total",
)


def parse_prometheus(text: str) -> dict[str, float]:
    """Reads Prometheus text into a dict: unlabelled samples by name, and the samples labelled
    by transport only summed under their family's name (the page shows all transports)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        name, brace, labels = series.partition("{")
        if brace and not (labels.startswith('transport="') and labels.count("=") == 1):
            continue
        try:
            values[name] = values.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return values


def _process_stats() -> dict[str, float]:
    """RSS in MiB and CPU seconds of this process, from /proc (Linux)."""
    stats = {"rss_mib": 0.0, "cpu_s": 0.0}
    try:
        with open("/proc/self/statm") as f:
            stats["rss_mib"] = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        stats["cpu_s"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        pass
    return stats


class MetricsPublisher:
    """Publishes a metrics snapshot to TOPIC every ``interval`` seconds on its own thread."""

    def __init__(self, server: Server, interval: float) -> None:
        self.server = server
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-metrics", daemon=True)
        self._last: tuple[float, dict[str, float], float] | None = None
        #: the last snapshot published (the tracker's server_status carries it)
        self.latest: dict[str, Any] = {}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        counters = parse_prometheus(self.server.metrics_text())
        proc = _process_stats()
        rates: dict[str, float] = {}
        cpu_percent = 0.0
        if self._last is not None:
            then, before, cpu_before = self._last
            dt = max(now - then, 1e-6)
            rates = {k: (counters.get(k, 0.0) - before.get(k, 0.0)) / dt for k in _COUNTERS}
            cpu_percent = 100.0 * (proc["cpu_s"] - cpu_before) / dt
        self._last = (now, counters, proc["cpu_s"])
        frames = counters.get("skyrelay_sent_frames_total", 0.0)
        writes = counters.get("skyrelay_write_calls_total", 0.0)
        return {
            "uptime_s": round(counters.get("skyrelay_uptime_seconds", 0.0), 1),
            "connections": int(counters.get("skyrelay_open_connections", 0)),
            "rooms": int(counters.get("skyrelay_rooms", 0)),
            "messages_in": int(counters.get("skyrelay_received_messages_total", 0)),
            "messages_out": int(counters.get("skyrelay_sent_messages_total", 0)),
            "bytes_out": int(counters.get("skyrelay_sent_bytes_total", 0)),
            "frames_per_write": round(frames / writes, 2) if writes else 0.0,
            "messages_out_per_s": round(rates.get("skyrelay_sent_messages_total", 0.0), 1),
            "rss_mib": round(proc["rss_mib"], 1),
            "cpu_percent": round(cpu_percent, 1),
            "load_avg": list(os.getloadavg()),
        }

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.latest = self.snapshot()
            self.server.emit("server_metrics", self.latest, to=TOPIC, policy="drop_oldest")


class Demo:
    """The demo's parts: ``server`` (not yet started), ``tracker`` and ``metrics``."""

    def __init__(self, server: Server, tracker: Tracker, metrics: MetricsPublisher) -> None:
        self.server = server
        self.tracker = tracker
        self.metrics = metrics

    def start(self) -> Demo:
        self.server.start()
        self.metrics.start()
        self.tracker.start()
        return self

    def stop(self) -> None:
        self.tracker.stop()
        self.metrics.stop()
        self.server.stop()


def find_socketio_client(start: str | None = None) -> str | None:
    """socket.io-client's browser bundle from an npm install: ``node_modules`` in the given
    directory or the current one, or one of their parents."""
    here = os.path.abspath(start or os.getcwd())
    while True:
        candidate = os.path.join(here, "node_modules", "socket.io-client", "dist", "socket.io.min.js")
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def _vendor_app(bundle: str | None) -> Any:
    """A WSGI app for /vendor/socket.io.min.js (the demo's Socket.IO page)."""
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ.get("PATH_INFO") == "/vendor/socket.io.min.js" and bundle:
            with open(bundle, "rb") as f:
                body = f.read()
            start_response("200 OK", [("Content-Type", "text/javascript; charset=utf-8"),
                                      ("Cache-Control", "max-age=3600")])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found\n"]

    return app


def build_demo(host: str = "127.0.0.1", port: int = 8000, *, satellites: Any = None,
               stations: Any = DEFAULT_STATIONS, elements_note: str = "",
               position_interval: float = 10.0, window_interval: float = 60.0,
               lookahead_hours: float = 6.0, status_interval: float = 30.0,
               metrics_interval: float = 1.0, socketio_client: str | None = None,
               elements: ElementsSource | None = None, elements_interval: float | None = None,
               **options: Any) -> Demo:
    """The demo, not yet started (tests start it on port 0). Without ``satellites`` it uses the
    bundled element sets moved forward to now; with ``elements`` and ``elements_interval`` the
    tracker reloads them from there on that interval. ``socketio_client`` is the path of
    socket.io-client's ``socket.io.min.js`` for the Socket.IO page (default: found in
    ``node_modules``)."""
    from .tracker import bundled_satellites

    if satellites is None:
        satellites, elements_note = bundled_satellites()
    static_dir = resources.files("skyrelay") / "web" / "tracker"
    options.setdefault("wsgi_app", _vendor_app(socketio_client or find_socketio_client()))
    # The metrics page subscribes to its topic by name (/ws/metrics); the tracker's pages are
    # joined to their rooms by the subscribe_* handlers, so no other topic is open.
    options.setdefault("client_topics", [TOPIC])
    server = Server(host, port, static_dir=str(static_dir), **options)
    metrics = MetricsPublisher(server, metrics_interval)
    tracker = Tracker(server, satellites, stations, position_interval=position_interval,
                      window_interval=window_interval, lookahead_hours=lookahead_hours,
                      status_interval=status_interval, elements_note=elements_note,
                      # The publisher feeds the metrics room every metrics_interval seconds.
                      metrics=lambda: metrics.latest, metrics_interval=None,
                      elements=elements, elements_interval=elements_interval).install()

    @server.on("say")
    def say(conn: Connection, data: Any) -> dict[str, Any]:
        text = str((data or {}).get("text", "")).strip()[:200]
        if not text:
            from .errors import RequestError

            raise RequestError("empty_message", "say something")
        delivered = server.emit("chat", {"from": conn.sid[:6], "text": text}, to=TOPIC)
        return {"delivered": delivered}

    return Demo(server, tracker, metrics)


def run_demo(host: str = "127.0.0.1", port: int = 8000, *, tle: str | None = None, rebase: bool | None = None,
             stations: Any = None, elements_every: float | None = None, **intervals: Any) -> int:
    """``tle``: a file or http(s) URL, loaded at start and again every ``elements_every``
    seconds (None or 0: never)."""
    from .tracker import bundled_satellites

    if elements_every and not tle:
        raise ValueError("--elements-every reloads --tle: give a file or URL")
    source = None
    if tle:
        source = ElementsSource(tle, rebase=bool(rebase))
        satellites = source.load()
        note = f"elements from {tle}"
        if rebase:
            note += ", their epochs moved forward by whole days to the day before now"
        if elements_every:
            note += f", reloaded every {elements_every:g} s"
    else:
        satellites, note = bundled_satellites(rebase=rebase is not False)
    demo = build_demo(host, port, satellites=satellites, stations=stations or DEFAULT_STATIONS,
                      elements_note=note, elements=source,
                      elements_interval=(elements_every or None) if source else None, **intervals)
    demo.start()
    print(f"skyrelay demo: the satellite tracker is at {demo.server.http_url}/ "
          f"({len(demo.tracker.satellites)} satellites, {len(demo.tracker.stations)} ground stations; "
          f"{note}). Ctrl+C to stop.", flush=True)
    try:
        demo.server.run()
    finally:
        demo.tracker.stop()
        demo.metrics.stop()
    return 0
