"""The seed's Prometheus metrics, built from the app's counters and skyrelay's /metrics.

The app counts connections by transport, its `error` events and its publications (with how
long each took to hand to skyrelay); messages written and messages refused over the rate
come from skyrelay's own series. README.md ("Metrics") maps each name to its source.
skyrelay's own series follow, unchanged, so that one scrape gets both.
"""

from __future__ import annotations

import bisect
import re
import threading
from typing import Callable

BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)


def sample(text: str, series: str) -> float:
    """The value of one series (name and labels exactly as written) in an exposition."""
    match = re.search(r"^" + re.escape(series) + r" (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def summed(text: str, family: str) -> float:
    """The sum of a family's series over its labels (PromQL's sum(family))."""
    pattern = r"^" + re.escape(family) + r"(?:\{[^}]*\})? (\S+)$"
    return sum(float(v) for v in re.findall(pattern, text, re.M))


class AppMetrics:
    """The app's own counters; every method is safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.connections = {"socket.io": 0, "sse": 0}
        self.errors = 0
        self.publishes: dict[str, int] = {}
        self._buckets = [0] * len(BUCKETS)
        self._count = 0
        self._sum = 0.0

    def snapshot(self) -> tuple[dict[str, int], dict[str, int]]:
        """Copies of (open connections by transport, publications by event)."""
        with self._lock:
            return dict(self.connections), dict(self.publishes)

    def connected(self, transport: str, delta: int) -> None:
        with self._lock:
            if transport in self.connections:
                self.connections[transport] += delta

    def error_sent(self) -> None:
        with self._lock:
            self.errors += 1

    def published(self, event: str, seconds: float) -> None:
        with self._lock:
            self.publishes[event] = self.publishes.get(event, 0) + 1
            index = bisect.bisect_left(BUCKETS, seconds)
            if index < len(BUCKETS):
                self._buckets[index] += 1
            self._count += 1
            self._sum += seconds

    def exposition(self, skyrelay_text: Callable[[], str]) -> str:
        core = skyrelay_text()
        refused = sample(core, 'skyrelay_drops_total{reason="rate_limited"}')
        with self._lock:
            lines = [
                *_head("websocket_connections", "gauge",
                       "Active WebSocket (Socket.IO) connections."),
                f"websocket_connections {self.connections['socket.io']}",
                *_head("sse_connections", "gauge", "Active SSE connections."),
                f"sse_connections {self.connections['sse']}",
                *_head("websocket_messages_total", "counter",
                       "Total messages sent (skyrelay_sent_messages_total, all transports)."),
                f"websocket_messages_total {summed(core, 'skyrelay_sent_messages_total'):.0f}",
                *_head("websocket_errors_total", "counter",
                       "Total errors: error events sent and messages refused over the rate."),
                f"websocket_errors_total {self.errors + refused:.0f}",
                *_head("realtime_publishes_total", "counter", "Total real-time publishes."),
                *(f'realtime_publishes_total{{event="{event}"}} {n}'
                  for event, n in sorted(self.publishes.items())),
                *_head("realtime_publish_duration_seconds", "histogram", "Publish latency."),
                *self._histogram(),
            ]
        return "\n".join(lines) + "\n" + core

    def _histogram(self) -> list[str]:
        name = "realtime_publish_duration_seconds"
        lines, total = [], 0
        for bound, n in zip(BUCKETS, self._buckets):
            total += n
            lines.append(f'{name}_bucket{{le="{bound}"}} {total}')
        lines.append(f'{name}_bucket{{le="+Inf"}} {self._count}')
        lines.append(f"{name}_sum {self._sum:.9f}")
        lines.append(f"{name}_count {self._count}")
        return lines


def _head(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
