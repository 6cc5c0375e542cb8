"""Simulated Seestar telescopes: each has a status (the fields the seed's status_update
carries) that drifts with time and changes with commands. Commands take as long as a real
mount would (scaled down) and fail as a real one does (parked, battery flat)."""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any, Callable

from pydantic import ValidationError

from telescope_protocol import PARAMETERS, CommandPayload

Publish = Callable[[str, dict[str, Any]], None]


class CommandFailed(Exception):
    """The telescope refused or could not do what it was asked: `code` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class Telescope:
    def __init__(self, telescope_id: str, seed: int, speed: float = 1.0) -> None:
        self.id = telescope_id
        self.speed = speed  # 1.0: commands take their real duration; tests go faster
        # A mount that stopped answering: motions never finish (the server's command timeout
        # answers for it).
        self.hung = False
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.status: dict[str, Any] = {
            "battery_capacity": 100 - seed % 20, "temp": 20.0 + seed % 5, "gain": 100,
            "ra": 0.0, "dec": 0.0, "tracking": False, "parked": True, "exposing": False,
            "mount": "idle", "firmware": "2.3.1",
        }

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return dict(self.status)

    def drift(self) -> dict[str, Any]:
        """One tick of the world: the sensor readings move; returns the new readings."""
        with self.lock:
            s = self.status
            s["temp"] = round(s["temp"] + self.rng.uniform(-0.3, 0.3), 1)
            if self.rng.random() < 0.1 and s["battery_capacity"] > 0:
                s["battery_capacity"] -= 1
            return {"temp": s["temp"], "battery_capacity": s["battery_capacity"]}

    async def execute(self, command: CommandPayload, publish: Publish) -> dict[str, Any]:
        """Runs one command; `publish(kind, fields)` reports status changes as they happen.
        Raises CommandFailed for a command the telescope cannot do."""
        model = PARAMETERS.get(command.action)
        try:
            params = model.model_validate(command.parameters).model_dump() if model else {}
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "parameters"
            raise CommandFailed("invalid_parameters", f"parameters.{where}: {first['msg']}") \
                from None
        if not model and command.parameters:
            raise CommandFailed("invalid_parameters", f"{command.action} takes no parameters")
        action = getattr(self, "_" + command.action)
        return await action(publish, **params)

    def _set(self, publish: Publish, **fields: Any) -> None:
        with self.lock:
            self.status.update(fields)
        publish("status", fields)

    def _ready(self) -> None:
        with self.lock:
            if self.status["parked"]:
                raise CommandFailed("parked", f"{self.id} is parked: unpark it first")
            if self.status["battery_capacity"] <= 5:
                raise CommandFailed("battery_low", f"{self.id}'s battery is too low")

    async def _slew(self, publish: Publish, seconds: float, mount: str, **fields: Any) -> None:
        self._set(publish, mount=mount)
        if self.hung:
            await asyncio.Event().wait()
        await asyncio.sleep(seconds * self.speed)
        self._set(publish, mount="idle", **fields)

    async def _move(self, publish: Publish, direction: str, duration: int) -> dict[str, Any]:
        self._ready()
        step = duration / 1000.0 * 0.1
        with self.lock:
            ra, dec = self.status["ra"], self.status["dec"]
        dra = {"left": -step, "right": step}.get(direction, 0.0)
        ddec = {"up": step, "down": -step}.get(direction, 0.0)
        await self._slew(publish, duration / 1000.0, "moving", ra=round((ra + dra) % 24, 4),
                         dec=round(max(-90.0, min(90.0, dec + ddec)), 4))
        return {"status": "movement_completed"}

    async def _goto(self, publish: Publish, ra: float, dec: float) -> dict[str, Any]:
        self._ready()
        await self._slew(publish, 2.0, "slewing", ra=ra, dec=dec)
        return {"status": "goto_completed", "ra": ra, "dec": dec}

    async def _park(self, publish: Publish) -> dict[str, Any]:
        await self._slew(publish, 1.0, "parking", parked=True, tracking=False)
        return {"status": "parked"}

    async def _unpark(self, publish: Publish) -> dict[str, Any]:
        self._set(publish, parked=False)
        return {"status": "unparked"}

    async def _set_gain(self, publish: Publish, gain: int) -> dict[str, Any]:
        self._set(publish, gain=gain)
        return {"status": "gain_set", "gain": gain}

    async def _start_tracking(self, publish: Publish) -> dict[str, Any]:
        self._ready()
        self._set(publish, tracking=True)
        return {"status": "tracking"}

    async def _stop_tracking(self, publish: Publish) -> dict[str, Any]:
        self._set(publish, tracking=False)
        return {"status": "tracking_stopped"}

    async def _start_exposure(self, publish: Publish, seconds: float) -> dict[str, Any]:
        self._ready()
        self._set(publish, exposing=True)
        await self._slew(publish, seconds, "exposing", exposing=False)
        return {"status": "exposure_completed", "seconds": seconds}
