"""Oil-well telemetry over the skyrelay JSON protocol.

Each simulated well publishes a telemetry sample to its own room (``WELL-001``...) twice a
second with the ``drop_oldest`` policy: a dashboard that falls behind skips stale samples
instead of being disconnected. An ``alert`` event goes to the well's room and to ``alerts``
when the motor temperature crosses its limit. Operators change a well's VSD frequency with a
``set_frequency`` request, which is validated and acknowledged.

Run it:  .venv/bin/python examples/well_telemetry/app.py --port 8000
Watch:   connect a WebSocket client to ws://127.0.0.1:8000/ws/WELL-001, or open the event
         stream http://127.0.0.1:8000/sse/WELL-001?topics=alerts
From another process: stream_telemetry.py publishes through the HTTP publish API.
"""

from __future__ import annotations

import argparse
import math
import random
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone

import skyrelay

MOTOR_TEMP_LIMIT_C = 110.0


@dataclass
class Well:
    name: str
    vsd_hz: float = 50.0
    phase: float = field(default_factory=lambda: random.uniform(0, math.tau))
    hot: bool = False

    def sample(self, t: float) -> dict[str, float | str]:
        load = self.vsd_hz / 50.0
        temp = 90.0 + 100.0 * (load - 1.0) + 4.0 * math.sin(t / 7.0 + self.phase)
        return {
            "well": self.name,
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "flow_rate_m3d": round(120.0 * load + 4.0 * math.sin(t / 3.0 + self.phase), 2),
            "intake_pressure_kpa": round(5200.0 - 900.0 * load + 30.0 * math.cos(t / 5.0), 1),
            "motor_current_a": round(38.0 * load + random.gauss(0, 0.4), 2),
            "motor_temp_c": round(temp, 1),
            "vibration_mm_s": round(abs(random.gauss(1.2 * load, 0.15)), 3),
            "vsd_frequency_hz": self.vsd_hz,
        }


class TelemetryApp:
    def __init__(self, server: skyrelay.Server, wells: int = 3, rate_hz: float = 2.0) -> None:
        self.server = server
        self.wells = {f"WELL-{i:03d}": Well(f"WELL-{i:03d}") for i in range(1, wells + 1)}
        self.period = 1.0 / rate_hz
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="telemetry", daemon=True)
        self._lock = threading.Lock()
        server.on("set_frequency", self.set_frequency)
        server.on("list_wells", lambda conn, data: sorted(self.wells))

    def set_frequency(self, conn: skyrelay.Connection, data: dict) -> dict:
        if not isinstance(data, dict):
            raise skyrelay.RequestError("bad_request", "expected {well, hz}")
        well = self.wells.get(data.get("well", ""))
        if well is None:
            raise skyrelay.RequestError("unknown_well", f"no well named {data.get('well')!r}")
        hz = data.get("hz")
        if not isinstance(hz, (int, float)) or not 30.0 <= hz <= 65.0:
            raise skyrelay.RequestError("out_of_range", "hz must be between 30 and 65")
        with self._lock:
            well.vsd_hz = float(hz)
        return {"well": well.name, "vsd_frequency_hz": well.vsd_hz}

    def start(self) -> None:
        for name in self.wells:
            self.server.set_room_policy(name, "drop_oldest")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        t = 0.0
        while not self._stop.wait(self.period):
            t += self.period
            with self._lock:
                samples = [(w, w.sample(t)) for w in self.wells.values()]
            for well, sample in samples:
                self.server.emit("telemetry_update", sample, to=well.name)
                hot = sample["motor_temp_c"] > MOTOR_TEMP_LIMIT_C
                if hot and not well.hot:
                    alert = {"well": well.name, "kind": "motor_temp_high",
                             "value": sample["motor_temp_c"], "limit": MOTOR_TEMP_LIMIT_C}
                    self.server.emit("alert", alert, to=[well.name, "alerts"])
                well.hot = hot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--wells", type=int, default=3,
                        help="wells simulated in this process (0: only relay what producers send)")
    parser.add_argument("--publish-token", default=None,
                        help="accept POST /api/publish with this bearer token "
                             "(see stream_telemetry.py)")
    args = parser.parse_args()
    server = skyrelay.Server(args.host, args.port, publish_token=args.publish_token)
    app = TelemetryApp(server, args.wells)
    server.start()
    app.start()
    try:
        server.run()
    finally:
        app.stop()


if __name__ == "__main__":
    main()
