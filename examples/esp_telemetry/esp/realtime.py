"""The seed's real-time contract on skyrelay: Socket.IO events and the SSE stream's extras.

Socket.IO (client → server): ``subscribe``/``unsubscribe`` ``{well_id}``, ``ping``,
``get_stats``. Server → client: ``connected`` (the welcome, from the token's claims),
``subscribed``, ``unsubscribed``, ``pong``, ``stats``, ``error`` ``{error, message}``, and
``telemetry_update``/``alert`` for the wells a socket subscribed to. Every socket's events
count against skyrelay's per-connection limit (10 a second); over it, skyrelay drops the
event before any handler runs and sends ``rate_limited``.

SSE streams (the endpoint app.py declares) count as connections here; skyrelay itself
sends their ``connected`` event and their heartbeats.
"""

from __future__ import annotations

import re
import threading
from datetime import datetime, timezone
from typing import Any

import skyrelay

from .metrics import AppMetrics

WELCOME = "Connected to Alkhorayef ESP IoT Platform"
SSE_WELCOME = "Connected to Alkhorayef ESP IoT Platform SSE stream"
WELL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_SUBSCRIPTIONS = 100  # wells one socket may follow at once
MAX_STATS_WELLS = 100  # wells an admin's stats list (each may cost a Redis round trip)
ADMIN_ROLE = "admin"


def now() -> str:
    """The seed's timestamps: UTC, whole seconds, with a Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def room(well_id: str) -> str:
    """The room (and SSE topic) of a well. The prefix keeps client_topics to wells only."""
    return f"well:{well_id}"


def well_id_of(data: Any) -> str | None:
    """The payload's well_id when it is a valid one, else None."""
    well_id = data.get("well_id") if isinstance(data, dict) else None
    return well_id if isinstance(well_id, str) and WELL_ID.fullmatch(well_id) else None


class Realtime:
    """Registers the contract's handlers on `server`."""

    def __init__(self, server: skyrelay.Server, metrics: AppMetrics) -> None:
        self.server = server
        self.metrics = metrics
        self._followed: dict[str, int] = {}  # well -> sockets here subscribed to it
        self._lock = threading.Lock()
        server.on_connect(self.connect)
        server.on_disconnect(self.disconnect)
        server.on("subscribe", self.subscribe)
        server.on("unsubscribe", self.unsubscribe)
        server.on("ping", self.ping)
        server.on("get_stats", self.get_stats)
        server.on("*", self.unknown)

    # -- connections ------------------------------------------------------------------------

    def connect(self, conn: skyrelay.Connection) -> None:
        if conn.transport == "sse" and not WELL_ID.fullmatch(conn.params.get("well_id", "")):
            raise skyrelay.ConnectionRefused(
                "well_id must be 1-64 letters, digits, '.', '_' or '-'", status=400)
        conn.state.update(connected_at=now(), message_count=0, subscriptions=[])
        self.metrics.connected(conn.transport, +1)
        if conn.transport == "socket.io":
            conn.emit("connected", {"message": WELCOME, "user_id": conn.user,
                                    "username": conn.claims.get("username"),
                                    "timestamp": now()})

    def disconnect(self, conn: skyrelay.Connection, reason: str) -> None:
        self.metrics.connected(conn.transport, -1)
        for well_id in conn.state.get("subscriptions", ()):
            self._follow(well_id, -1)

    # -- Socket.IO events -------------------------------------------------------------------

    def subscribe(self, conn: skyrelay.Connection, data: Any) -> None:
        well_id = self._counted_well_id(conn, data)
        if well_id is None:
            return
        subscriptions = conn.state["subscriptions"]
        if well_id not in subscriptions:
            if len(subscriptions) >= MAX_SUBSCRIPTIONS:
                self._error(conn, "LimitError",
                            f"at most {MAX_SUBSCRIPTIONS} wells per connection")
                return
            conn.join(room(well_id))
            subscriptions.append(well_id)
            self._follow(well_id, +1)
        conn.emit("subscribed", {"well_id": well_id, "timestamp": now()})

    def unsubscribe(self, conn: skyrelay.Connection, data: Any) -> None:
        well_id = self._counted_well_id(conn, data)
        if well_id is None:
            return
        if well_id in conn.state["subscriptions"]:
            conn.leave(room(well_id))
            conn.state["subscriptions"].remove(well_id)
            self._follow(well_id, -1)
        conn.emit("unsubscribed", {"well_id": well_id, "timestamp": now()})

    def ping(self, conn: skyrelay.Connection, data: Any = None) -> None:
        conn.state["message_count"] += 1
        conn.emit("pong", {"timestamp": now()})

    def get_stats(self, conn: skyrelay.Connection, data: Any = None) -> None:
        conn.state["message_count"] += 1
        stats = {key: conn.state[key] for key in
                 ("connected_at", "message_count", "subscriptions")}
        stats["subscriptions"] = list(stats["subscriptions"])
        if ADMIN_ROLE in conn.roles:
            stats["server"] = self._server_stats()
        conn.emit("stats", stats)

    def unknown(self, conn: skyrelay.Connection, data: Any) -> None:
        conn.state["message_count"] += 1
        name = data[0] if isinstance(data, list) and data else "?"
        self._error(conn, "UnknownEvent", f"unknown event {str(name)[:64]!r}")

    # -- helpers ----------------------------------------------------------------------------

    def _counted_well_id(self, conn: skyrelay.Connection, data: Any) -> str | None:
        conn.state["message_count"] += 1
        well_id = well_id_of(data)
        if well_id is None:
            given = data.get("well_id") if isinstance(data, dict) else None
            self._error(conn, "ValidationError", "well_id is required" if given is None else
                        "well_id must be 1-64 letters, digits, '.', '_' or '-'")
        return well_id

    def _error(self, conn: skyrelay.Connection, error: str, message: str) -> None:
        self.metrics.error_sent()
        conn.emit("error", {"error": error, "message": message})

    def _server_stats(self) -> dict[str, Any]:
        """What an admin's get_stats adds: connections here, and the subscribers of the
        first MAX_STATS_WELLS wells followed here (on every instance, with a Redis broker)."""
        with self._lock:
            wells = sorted(self._followed)[:MAX_STATS_WELLS]
        connections, publishes = self.metrics.snapshot()
        return {"websocket_connections": connections["socket.io"],
                "sse_connections": connections["sse"],
                "wells": {w: self.server.room_size(room(w)) for w in wells},
                "publishes": publishes}

    def _follow(self, well_id: str, delta: int) -> None:
        with self._lock:
            count = self._followed.get(well_id, 0) + delta
            if count > 0:
                self._followed[well_id] = count
            else:
                self._followed.pop(well_id, None)
