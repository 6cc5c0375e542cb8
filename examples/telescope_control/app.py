"""Telescope control's real-time server (S2): WebSocket control of a fleet of Seestar
telescopes in the seed's own frames, on skyrelay.

- ``/api/ws`` and ``/api/ws/{telescope_id}``: frames ``{id, type, telescope_id, timestamp,
  payload}`` both ways (the envelope below; encoded once per event in C++). The second joins
  the telescope's room as it opens; on the first a client sends ``subscribe`` with a
  ``telescope_id``. Either way the client gets the telescope's whole status first
  (``status_update`` with ``full_update: true``), then only what changes (``changes``).
- ``control_command`` (validated by pydantic: ``telescope_protocol.ControlCommand``) runs on
  the telescope and is answered by ``command_response`` (``command_id`` = the command's id), or by
  ``error`` with a code: ``invalid_payload``, ``invalid_parameters``, ``parked``,
  ``battery_low``, ``not_found``, ``timeout`` (the mount did not finish within
  ``payload.timeout_ms``).
- ``heartbeat`` from a client is answered with ``heartbeat``; the server also sends one to
  everyone every 30 s. ``telescope_discovered`` / ``telescope_lost`` go to everyone.
- permessage-deflate is on for both WebSocket endpoints.
- REST (FastAPI, same port): ``/api/telescopes`` (list, add, remove), a telescope's status and
  an HTTP command route (what the page uses when its feature flags turn WebSocket off), and
  ``/api/ws/health``. ``/`` is the debug page.

Run it:  .venv/bin/python examples/telescope_control/app.py --port 8000
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))  # telescope_protocol.py and telescopes.py

from a2wsgi import ASGIMiddleware  # noqa: E402
from fastapi import FastAPI, HTTPException  # noqa: E402
from pydantic import BaseModel, Field  # noqa: E402

import skyrelay  # noqa: E402
from telescope_protocol import CommandPayload, ControlCommand  # noqa: E402
from telescopes import CommandFailed, Telescope  # noqa: E402

STATIC = Path(__file__).parent / "static"
TELESCOPE_ID = re.compile(r"seestar-[a-z0-9-]{1,32}")


def _reply(type_: str, payload: Any) -> dict[str, Any]:
    """A server frame answering a client frame (its telescope_id echoed)."""
    return {"id": "$id", "type": type_, "telescope_id": "$in.telescope_id",
            "timestamp": "$ts_ms", "payload": payload}


ENVELOPE = skyrelay.Envelope(
    outbound={"id": "$id", "type": "$event", "telescope_id": "$topic", "timestamp": "$ts_ms",
              "payload": "$data"},
    kind="type",
    data=None,  # handlers get the whole frame (ControlCommand validates all of it)
    id="id",
    requests=["control_command"],
    subscribe="subscribe",
    unsubscribe="unsubscribe",
    topic="telescope_id",
    ping="heartbeat",
    pong=_reply("heartbeat", {"server_time": "$ts"}),
    response=_reply("command_response", {"command_id": "$ref", "success": True,
                                         "result": "$result"}),
    error=_reply("error", {"command_id": "$ref", "success": False, "code": "$code",
                           "message": "$message"}),
)


class Fleet:
    """The telescopes the server knows, and each one's status as a keyed state of its room."""

    def __init__(self, server: skyrelay.Server, speed: float) -> None:
        self.server, self.speed = server, speed
        self.lock = threading.Lock()
        self.scopes: dict[str, Telescope] = {}

    def add(self, telescope_id: str) -> Telescope:
        if not TELESCOPE_ID.fullmatch(telescope_id):
            raise ValueError(f"a telescope id is seestar-<1 to 32 of a-z 0-9 ->, "
                             f"not {telescope_id!r}")
        with self.lock:
            if telescope_id in self.scopes:
                raise KeyError(telescope_id)
            scope = Telescope(telescope_id, seed=len(self.scopes) + 1, speed=self.speed)
            self.scopes[telescope_id] = scope
        self.state(telescope_id).update(telescope_id, scope.snapshot())
        if self.server.running:
            self.server.emit("telescope_discovered", {"telescope_id": telescope_id,
                                                      "status": scope.snapshot()})
        return scope

    def remove(self, telescope_id: str, reason: str) -> None:
        with self.lock:
            self.scopes.pop(telescope_id)
        self.state(telescope_id).remove(telescope_id)
        self.server.emit("telescope_lost", {"telescope_id": telescope_id, "reason": reason})

    def get(self, telescope_id: str | None) -> Telescope:
        with self.lock:
            scope = self.scopes.get(telescope_id or "")
        if scope is None:
            raise skyrelay.RequestError("not_found", f"no telescope {telescope_id!r}")
        return scope

    def state(self, telescope_id: str) -> Any:
        # status_update payloads: {"telescope_id", "status": {...}, "changes": [...],
        # "full_update": bool}; the room is the telescope's id, so the envelope's
        # telescope_id ($topic) is it too.
        return self.server.state(telescope_id, event="status_update", key_name="telescope_id",
                                 fields_name="status", request_event=None)

    def publisher(self, telescope_id: str):
        state = self.state(telescope_id)
        return lambda _kind, fields: state.update(telescope_id, fields)

    async def run(self, telescope_id: str | None, command: CommandPayload) -> dict[str, Any]:
        scope = self.get(telescope_id)
        try:
            return await asyncio.wait_for(scope.execute(command, self.publisher(scope.id)),
                                          command.timeout_ms / 1000)
        except asyncio.TimeoutError:
            raise skyrelay.RequestError(
                "timeout", f"{scope.id} did not finish {command.action} within "
                           f"{command.timeout_ms} ms") from None
        except CommandFailed as exc:
            raise skyrelay.RequestError(exc.code, exc.message) from None


def register_handlers(server: skyrelay.Server, fleet: Fleet) -> None:
    @server.on_connect
    def connect(conn: skyrelay.Connection) -> None:
        # /api/ws/{telescope_id} is for a telescope the server knows.
        telescope_id = conn.params.get("telescope_id")
        if telescope_id is not None and telescope_id not in fleet.scopes:
            raise skyrelay.ConnectionRefused(f"no telescope {telescope_id}", status=404)

    @server.on("control_command")
    async def control_command(conn: skyrelay.Connection, msg: ControlCommand) -> Any:
        return await fleet.run(msg.telescope_id or conn.params.get("telescope_id"), msg.payload)

    @server.on("request_full_update")
    def request_full_update(conn: skyrelay.Connection, msg: dict[str, Any]) -> None:
        telescope_id = msg.get("telescope_id") or conn.params.get("telescope_id")
        try:
            fleet.state(fleet.get(telescope_id).id).send_full(conn)
        except ValueError:
            raise skyrelay.RequestError("not_member",
                                        f"subscribe to {telescope_id} first") from None


class NewTelescope(BaseModel):
    telescope_id: str = Field(pattern=TELESCOPE_ID.pattern)


def create_api(server: skyrelay.Server, fleet: Fleet) -> FastAPI:
    api = FastAPI(title="Telescope control")

    def scope_or_404(telescope_id: str) -> Telescope:
        try:
            return fleet.get(telescope_id)
        except skyrelay.RequestError:
            raise HTTPException(404, f"no telescope {telescope_id}") from None

    @api.get("/api/ws/health")
    def ws_health() -> dict[str, Any]:
        return {"status": "ok", "connections": server.connection_count,
                "telescopes": len(fleet.scopes)}

    @api.get("/api/telescopes")
    def telescopes() -> list[dict[str, Any]]:
        with fleet.lock:
            scopes = list(fleet.scopes.values())
        return [{"telescope_id": s.id, "status": s.snapshot()} for s in scopes]

    @api.post("/api/telescopes", status_code=201)
    def add(body: NewTelescope) -> dict[str, Any]:
        try:
            scope = fleet.add(body.telescope_id)
        except KeyError:
            raise HTTPException(409, f"{body.telescope_id} is already known") from None
        return {"telescope_id": scope.id, "status": scope.snapshot()}

    @api.delete("/api/telescopes/{telescope_id}", status_code=204)
    def remove(telescope_id: str) -> None:
        scope_or_404(telescope_id)
        fleet.remove(telescope_id, "removed")

    @api.get("/api/telescopes/{telescope_id}/status")
    def status(telescope_id: str) -> dict[str, Any]:
        return scope_or_404(telescope_id).snapshot()

    @api.post("/api/telescopes/{telescope_id}/commands")
    async def command(telescope_id: str, body: CommandPayload) -> dict[str, Any]:
        scope_or_404(telescope_id)
        try:
            return {"success": True, "result": await fleet.run(telescope_id, body)}
        except skyrelay.RequestError as exc:
            return {"success": False, "code": exc.code, "message": exc.message}

    return api


class Ticker(threading.Thread):
    """The world moving on: sensor drift every `tick` s, a heartbeat every `heartbeat` s."""

    def __init__(self, server: skyrelay.Server, fleet: Fleet, tick: float,
                 heartbeat: float) -> None:
        super().__init__(daemon=True, name="telescope-ticker")
        self.server, self.fleet, self.tick, self.heartbeat = server, fleet, tick, heartbeat
        self.stopped = threading.Event()

    def run(self) -> None:
        next_tick = self.tick if self.tick > 0 else float("inf")
        next_beat = self.heartbeat if self.heartbeat > 0 else float("inf")
        now = 0.0
        while next_tick < float("inf") or next_beat < float("inf"):
            wait = min(next_tick, next_beat) - now
            if self.stopped.wait(wait):
                return
            now += wait
            if now >= next_tick:
                next_tick += self.tick
                with self.fleet.lock:
                    scopes = list(self.fleet.scopes.values())
                for scope in scopes:
                    self.fleet.state(scope.id).update(scope.id, scope.drift())
            if now >= next_beat:
                next_beat += self.heartbeat
                self.server.emit("heartbeat", {"connections": self.server.connection_count})

    def stop(self) -> None:
        self.stopped.set()


def build(host: str = "127.0.0.1", port: int = 8000, telescopes: int = 3, speed: float = 1.0,
          **options: Any) -> tuple[skyrelay.Server, Fleet]:
    """The server (not started) with its fleet, handlers and REST API."""
    server = skyrelay.Server(host=host, port=port, static_dir=str(STATIC),
                             client_topics=["seestar-*"], **options)
    server.endpoint("/api/ws", envelope=ENVELOPE, compression=True)
    server.endpoint("/api/ws/{telescope_id}", topics=["{telescope_id}"], envelope=ENVELOPE,
                    compression=True)
    fleet = Fleet(server, speed)
    register_handlers(server, fleet)
    for i in range(1, telescopes + 1):
        fleet.add(f"seestar-{i:03d}")
    server.mount_wsgi(ASGIMiddleware(create_api(server, fleet)))
    return server, fleet


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--telescopes", type=int, default=3)
    parser.add_argument("--tick", type=float, default=1.0, help="seconds between sensor drifts")
    parser.add_argument("--heartbeat", type=float, default=30.0)
    args = parser.parse_args(argv)
    server, fleet = build(args.host, args.port, args.telescopes)
    ticker = Ticker(server, fleet, args.tick, args.heartbeat)
    ticker.start()  # its first tick comes after the server runs
    try:
        server.run()  # the debug page is at /, the WebSockets at /api/ws[/{telescope_id}]
    finally:
        ticker.stop()


if __name__ == "__main__":
    main()
