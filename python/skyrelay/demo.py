"""The live demo behind ``make demo``: server metrics pushed to a page every second.

It shows the engine end to end: a browser subscribes over the JSON protocol to the topic
``metrics``, Python publishes a snapshot per interval with ``server.emit``, and the page's chat
box sends a request whose handler fans a message out to every open page. The satellite tracker
replaces this demo once the orbit module exists.
"""

from __future__ import annotations

import os
import threading
import time
from importlib import resources
from typing import Any

from .server import Connection, Server

TOPIC = "metrics"
_COUNTERS = (
    "skyrelay_messages_in_total",
    "skyrelay_messages_out_total",
    "skyrelay_bytes_out_total",
    "skyrelay_write_calls_total",
    "skyrelay_frames_out_total",
    "skyrelay_publications_total",
)


def parse_prometheus(text: str) -> dict[str, float]:
    """Reads unlabelled samples from Prometheus text into a dict."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or "{" in line:
            continue
        name, _, value = line.partition(" ")
        try:
            values[name] = float(value)
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
        frames = counters.get("skyrelay_frames_out_total", 0.0)
        writes = counters.get("skyrelay_write_calls_total", 0.0)
        return {
            "uptime_s": round(counters.get("skyrelay_uptime_seconds", 0.0), 1),
            "connections": int(counters.get("skyrelay_connections", 0)),
            "rooms": int(counters.get("skyrelay_rooms", 0)),
            "messages_in": int(counters.get("skyrelay_messages_in_total", 0)),
            "messages_out": int(counters.get("skyrelay_messages_out_total", 0)),
            "bytes_out": int(counters.get("skyrelay_bytes_out_total", 0)),
            "frames_per_write": round(frames / writes, 2) if writes else 0.0,
            "messages_out_per_s": round(rates.get("skyrelay_messages_out_total", 0.0), 1),
            "rss_mib": round(proc["rss_mib"], 1),
            "cpu_percent": round(cpu_percent, 1),
            "load_avg": list(os.getloadavg()),
        }

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.server.emit("server_metrics", self.snapshot(), to=TOPIC, policy="drop_oldest")


def build_demo(host: str = "127.0.0.1", port: int = 8000, **options: Any) -> Server:
    """The demo server, not yet started (tests start it on port 0)."""
    static_dir = resources.files("skyrelay") / "web" / "demo"
    server = Server(host, port, static_dir=str(static_dir), **options)

    @server.on("say")
    def say(conn: Connection, data: Any) -> dict[str, Any]:
        text = str((data or {}).get("text", "")).strip()[:200]
        if not text:
            from .errors import RequestError

            raise RequestError("empty_message", "say something")
        delivered = server.emit("chat", {"from": conn.sid[:6], "text": text}, to=TOPIC)
        return {"delivered": delivered}

    return server


def run_demo(host: str, port: int, interval: float) -> int:
    server = build_demo(host, port)
    publisher = MetricsPublisher(server, interval)
    server.start()
    publisher.start()
    print(f"skyrelay demo: open http://{host}:{server.port}/ in a browser "
          f"(metrics every {interval:g} s; Ctrl+C to stop)", flush=True)
    try:
        server.run()
    finally:
        publisher.stop()
    return 0
