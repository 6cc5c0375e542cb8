"""ESP well telemetry: ingest -> store -> publish, over Socket.IO and SSE (seed S4).

ESP devices (or their gateway) POST readings to /api/v1/telemetry/ingest. Each reading is
stored in SQLite, checked against the alert rules, and published to its well's room as a
``telemetry_update`` (and an ``alert`` when a threshold is crossed), which reaches the
Socket.IO sockets subscribed to that well and its SSE streams. Every client presents a JWT
(POST /api/v1/auth/login issues one). With --redis, several instances share the traffic.

Run it:  .venv/bin/python examples/esp_telemetry/app.py --port 8000 --simulate 3
"""

from __future__ import annotations

import argparse
import math
import os
import random
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import skyrelay  # noqa: E402

from esp.alerts import AlertRules  # noqa: E402
from esp.http_api import build_flask  # noqa: E402
from esp.metrics import AppMetrics  # noqa: E402
from esp.readings import Reading, parse  # noqa: E402
from esp.realtime import SSE_WELCOME, Realtime, now, room  # noqa: E402
from esp.store import Store  # noqa: E402
from esp.tokens import Tokens  # noqa: E402

RATE_PER_CLIENT = 10  # the seed's limit: 10 messages a second per client


class EspTelemetry:
    """The app: a skyrelay server with the Socket.IO contract, the SSE stream and the HTTP
    API (a Flask app on the same port). `start()`/`stop()` run it; `server` is skyrelay's."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 8000, secret: bytes,
                 db: str = ":memory:", redis: str | None = None, heartbeat_s: float = 30.0,
                 **server_options: Any) -> None:
        self.tokens = Tokens(secret)
        self.store = Store(db)
        self.rules = AlertRules()
        self.metrics = AppMetrics()
        self.server = skyrelay.Server(
            host, port,
            jwt=self.tokens.jwt_auth(),
            client_topics=["well:*"],  # SSE streams may name wells, nothing else
            json_protocol=False,  # the seed's clients speak Socket.IO and SSE only
            inbound_rate=RATE_PER_CLIENT, inbound_burst=RATE_PER_CLIENT,
            broker=redis,
            wsgi_app=build_flask(self),
            sse_path=None,  # the wells' streams are at the seed's path only (below)
            metrics_path="/skyrelay/metrics",  # /metrics has the seed's names (and these)
            **server_options)
        self.server.endpoint(
            "/api/v1/sse/stream/{well_id}", transport="sse", topics=["well:{well_id}"],
            welcome=("connected", {"message": SSE_WELCOME, "well_id": "$param.well_id",
                                   "timestamp": "$ts"}),
            heartbeat=("heartbeat", {"timestamp": "$ts"}, heartbeat_s))
        self.realtime = Realtime(self.server, self.metrics)

    def start(self) -> EspTelemetry:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()
        self.store.close()

    def ingest(self, raw: Any) -> dict[str, Any]:
        """Stores one reading, checks it against the rules and publishes it (and its alerts).
        Raises InvalidReading (nothing stored) for one that is not valid."""
        return self.record(parse(raw))

    def record(self, reading: Reading) -> dict[str, Any]:
        """`ingest` for a reading already parsed."""
        well_id, timestamp, values = reading
        telemetry_id = self.store.add_reading(well_id, timestamp, values)
        alerts = self.rules.check(well_id, values)
        for alert in alerts:
            self.store.add_alert(telemetry_id, well_id, timestamp, alert)
        self._publish("telemetry_update", well_id, "data",
                      {"telemetry_id": telemetry_id, "timestamp": timestamp, **values})
        for alert in alerts:
            self._publish("alert", well_id, "alert", alert)
        return {"telemetry_id": telemetry_id, "well_id": well_id,
                "alerts": [a["type"] for a in alerts]}

    def _publish(self, event: str, well_id: str, key: str, body: dict[str, Any]) -> None:
        payload = {"event": event, "timestamp": now(), "well_id": well_id, key: body}
        started = time.perf_counter()
        # A dashboard that falls behind skips stale readings; alerts are never dropped.
        self.server.emit(event, payload, to=room(well_id),
                         policy="drop_oldest" if event == "telemetry_update" else None)
        self.metrics.published(event, time.perf_counter() - started)


def simulate(app: EspTelemetry, wells: int, stop: threading.Event, period: float = 1.0) -> None:
    """A stand-in for ESP gateways: readings for WELL-001... every `period` seconds, through
    the same ingest path as POST /api/v1/telemetry/ingest. Vibration now and then spikes
    over the alert threshold."""
    t = 0.0
    while not stop.wait(period):
        t += period
        for i in range(1, wells + 1):
            spike = random.random() < 0.02
            app.ingest({
                "well_id": f"WELL-{i:03d}",
                "flow_rate": round(1000 + 40 * math.sin(t / 20 + i), 1),
                "pip": round(2000 + 60 * math.cos(t / 30 + i), 1),
                "motor_current": round(50 + random.gauss(0, 1.5), 2),
                "motor_temp": round(85 + 5 * math.sin(t / 60 + i), 1),
                "vibration": round(5.0 + random.random() if spike else
                                   abs(random.gauss(2.5, 0.4)), 2),
                "vsd_frequency": 60.0,
                "flow_variance": round(abs(random.gauss(15, 3)), 1),
                "torque": round(120 + random.gauss(0, 2), 1),
                "gor": round(150 + random.gauss(0, 5), 1),
            })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--db", default=":memory:", help="SQLite file (default: in memory)")
    parser.add_argument("--redis", default=None, metavar="URL",
                        help="skyrelay's Redis broker, for several instances (redis://...)")
    parser.add_argument("--user", action="append", default=[], metavar="NAME:PASSWORD:ROLE",
                        help="a user who may log in (repeatable; roles: admin, operator, "
                             "viewer, device)")
    parser.add_argument("--cors-origin", action="append", default=None, metavar="ORIGIN",
                        help="another origin whose pages may connect (repeatable)")
    parser.add_argument("--simulate", type=int, default=0, metavar="N",
                        help="simulate N wells, one reading each a second")
    args = parser.parse_args()
    # Every instance behind one load balancer needs the same secret.
    secret = os.environ.get("ESP_JWT_SECRET", "").encode() or secrets.token_bytes(32)
    app = EspTelemetry(host=args.host, port=args.port, secret=secret, db=args.db,
                       redis=args.redis, cors_allowed_origins=args.cors_origin)
    users = []
    for spec in args.user:
        name, _, rest = spec.partition(":")
        password, _, role = rest.rpartition(":")
        if not (name and password and role):
            parser.error(f"--user wants NAME:PASSWORD:ROLE, not {spec!r}")
        users.append([name, password, role])
    if not users:
        users = [["admin", secrets.token_urlsafe(12), "admin"]]
        print(f"log in as admin with password {users[0][1]}", flush=True)
    for name, password, role in users:
        app.tokens.add_user(name, password, role.split(","))
    app.start()
    stop = threading.Event()
    if args.simulate:
        threading.Thread(target=simulate, args=(app, args.simulate, stop), daemon=True).start()
    print(f"serving on {app.server.http_url}", flush=True)
    try:
        app.server.run()
    finally:
        stop.set()
        app.store.close()


if __name__ == "__main__":
    main()
