"""The SDR dashboard's real-time server (S1 in ../shared seeds' terms): a FastAPI app and the
dashboard's WebSocket on one port.

- ``/ws/updates``: WebSocket frames ``{"event", "data", "timestamp"}`` both ways. A client's
  ``ping`` gets ``pong``; ``subscribe``/``unsubscribe`` with ``{"events": [...]}`` follow or
  drop the events sent to subscribers only. The envelope is declared once; skyrelay encodes
  each event once in it, in C++, for every connection.
- Events: ``services:health`` (to everyone, whenever ``/api/v1/system/status`` is read),
  ``websdrs:status`` (to subscribers, when a receiver's state changes), ``signals:detected``
  and ``localizations:updated`` (to subscribers).
- REST (FastAPI, served on the same port through skyrelay's WSGI bridge): ``GET
  /api/v1/system/status``, ``GET /api/v1/websdrs``, ``PUT /api/v1/websdrs/{id}``, ``POST
  /api/v1/signals``, ``POST /api/v1/localizations``.
- ``/``: the dashboard page (static/), with the connection badge, a reconnect button and
  30-second polling while the WebSocket is down.

Run it:  .venv/bin/python examples/sdr_dashboard/app.py --port 8000
"""

from __future__ import annotations

import argparse
import random
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from a2wsgi import ASGIMiddleware
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

import skyrelay

STATIC = Path(__file__).parent / "static"

# The events a client may follow by name (its subscribe frames): nothing else is reachable.
SUBSCRIBABLE = ["services:health", "websdrs:status", "signals:detected", "localizations:updated"]

SERVICES = ["api-gateway", "rf-acquisition", "inference", "training", "data-ingestion-web"]

# S1's frame, both ways: {"event": name, "data": {...}, "timestamp": ISO-8601}.
ENVELOPE = skyrelay.Envelope(
    outbound={"event": "$event", "data": "$data", "timestamp": "$ts"},
    kind="event",
    data="data",
    ping="ping",
    pong={"event": "pong", "data": {}, "timestamp": "$ts"},
    subscribe="subscribe",
    unsubscribe="unsubscribe",
    topic="data.events",
    error={"event": "error", "data": {"code": "$code", "message": "$message"},
           "timestamp": "$ts"},
)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Signal(BaseModel):
    frequency_mhz: float = Field(gt=0)
    snr_db: float
    websdr_id: int
    timestamp: str | None = None


class Localization(BaseModel):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    uncertainty_m: float = Field(ge=0)
    confidence: float = Field(ge=0, le=1)
    timestamp: str | None = None


class WebSDRStatus(BaseModel):
    status: str = Field(pattern="^(online|offline)$")
    response_time_ms: int | None = Field(default=None, ge=0)


class Network:
    """What the gateway knows: its services' health and each WebSDR's state."""

    def __init__(self, websdrs: int = 7) -> None:
        self.lock = threading.Lock()
        self.services = {name: {"status": "healthy"} for name in SERVICES}
        self.websdrs: dict[str, dict[str, Any]] = {
            str(i): {"status": "online", "response_time_ms": 120 + 10 * i}
            for i in range(1, websdrs + 1)}

    def set_websdr(self, websdr_id: str, status: dict[str, Any]) -> bool:
        """Records a WebSDR's state; True when it changed."""
        with self.lock:
            if websdr_id not in self.websdrs:
                raise KeyError(websdr_id)
            changed = self.websdrs[websdr_id] != status
            self.websdrs[websdr_id] = dict(status)
            return changed


def create_api(server: skyrelay.Server, network: Network) -> FastAPI:
    api = FastAPI(title="SDR dashboard gateway")

    @api.get("/api/v1/system/status")
    def system_status() -> dict[str, Any]:
        with network.lock:
            services = {k: dict(v) for k, v in network.services.items()}
        server.emit("services:health", services)  # to every dashboard
        healthy = all(s["status"] == "healthy" for s in services.values())
        return {"status": "healthy" if healthy else "degraded", "services": services,
                "timestamp": now()}

    @api.get("/api/v1/websdrs")
    def websdrs() -> dict[str, Any]:
        with network.lock:
            return {k: dict(v) for k, v in network.websdrs.items()}

    @api.put("/api/v1/websdrs/{websdr_id}")
    def set_websdr(websdr_id: str, status: WebSDRStatus) -> dict[str, Any]:
        try:
            changed = network.set_websdr(websdr_id, status.model_dump())
        except KeyError:
            raise HTTPException(404, f"no WebSDR {websdr_id}") from None
        if changed:
            server.emit("websdrs:status", {websdr_id: status.model_dump()}, to="websdrs:status")
        return {"changed": changed}

    @api.post("/api/v1/signals", status_code=202)
    def signal(sig: Signal) -> dict[str, Any]:
        data = sig.model_dump()
        data["timestamp"] = data["timestamp"] or now()
        return {"delivered": server.emit("signals:detected", data, to="signals:detected")}

    @api.post("/api/v1/localizations", status_code=202)
    def localization(loc: Localization) -> dict[str, Any]:
        data = loc.model_dump()
        data["timestamp"] = data["timestamp"] or now()
        return {"delivered": server.emit("localizations:updated", data,
                                         to="localizations:updated")}

    return api


class Simulator(threading.Thread):
    """Stands in for the acquisition and inference services: now and then a WebSDR changes
    state, a signal is detected, a transmitter is localized."""

    def __init__(self, server: skyrelay.Server, network: Network, interval: float) -> None:
        super().__init__(daemon=True, name="sdr-simulator")
        self.server, self.network, self.interval = server, network, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        rng = random.Random()
        while not self.stopped.wait(self.interval):
            websdr = str(rng.randint(1, len(self.network.websdrs)))
            online = rng.random() > 0.2
            status = {"status": "online" if online else "offline",
                      "response_time_ms": rng.randint(90, 300) if online else None}
            if self.network.set_websdr(websdr, status):
                self.server.emit("websdrs:status", {websdr: status}, to="websdrs:status")
            self.server.emit("signals:detected", {
                "frequency_mhz": round(rng.uniform(144.0, 146.0), 3),
                "snr_db": round(rng.uniform(3.0, 25.0), 1),
                "websdr_id": int(websdr), "timestamp": now()}, to="signals:detected")
            if rng.random() < 0.3:
                self.server.emit("localizations:updated", {
                    "latitude": round(45.0642 + rng.uniform(-0.05, 0.05), 4),
                    "longitude": round(7.6697 + rng.uniform(-0.05, 0.05), 4),
                    "uncertainty_m": round(rng.uniform(10, 80), 1),
                    "confidence": round(rng.uniform(0.5, 0.95), 2),
                    "timestamp": now()}, to="localizations:updated")

    def stop(self) -> None:
        self.stopped.set()


def build(host: str = "127.0.0.1", port: int = 8000, **options: Any
          ) -> tuple[skyrelay.Server, FastAPI, Network]:
    """The server (not started), its FastAPI app and the state they share."""
    server = skyrelay.Server(host=host, port=port, static_dir=str(STATIC),
                             client_topics=SUBSCRIBABLE, **options)
    server.endpoint("/ws/updates", envelope=ENVELOPE)
    network = Network()
    api = create_api(server, network)
    server.mount_wsgi(ASGIMiddleware(api))
    return server, api, network


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--interval", type=float, default=2.0,
                        help="seconds between simulated events (0: no simulation)")
    args = parser.parse_args(argv)
    server, _, network = build(args.host, args.port)
    sim = Simulator(server, network, args.interval) if args.interval > 0 else None
    if sim:
        sim.start()  # its first event comes after one interval, once the server runs
    try:
        server.run()  # the dashboard is at /, its WebSocket at /ws/updates
    finally:
        if sim:
            sim.stop()


if __name__ == "__main__":
    main()
