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
Secured:  --jwt-secret S makes every client present an HS256 token signed with S; well rooms
         need the role viewer or operator, set_frequency the role operator. --print-token
         ROLE prints a token for trying it out.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import math
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import skyrelay

MOTOR_TEMP_LIMIT_C = 110.0

# The topics dashboards may subscribe to by name (docs/api.md "Client topics"): each well's
# room and the alerts. Anything else the server publishes is not reachable by name.
CLIENT_TOPICS = ["WELL-*", "alerts"]

# Who may do what when the server checks tokens (docs/api.md "Authorization"): the rooms of
# the wells need one of ROOM_ROLES; changing a drive's frequency needs COMMAND_ROLES.
ROOM_ROLES = {"WELL-*": ["viewer", "operator"]}
COMMAND_ROLES = ["operator"]


def secured_options(secret: str) -> dict:
    """Server options for a deployment where every client presents a token signed with
    `secret`, and the well rooms need a role."""
    key = skyrelay.JWTKey.hmac("wells", secret.encode(), ["HS256"])
    return {"jwt": skyrelay.JWTAuth(keys=[key], required=True, require_kind=False),
            "room_roles": ROOM_ROLES}


def make_token(secret: str, user: str, roles: list[str], hours: float = 8.0) -> str:
    """An HS256 token for trying the secured mode out (a real deployment gets its tokens
    from its identity provider)."""
    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    claims = {"sub": user, "roles": roles, "exp": int(time.time() + hours * 3600)}
    signed = part(b'{"alg":"HS256","typ":"JWT"}') + "." + part(json.dumps(claims).encode())
    mac = hmac.new(secret.encode(), signed.encode(), hashlib.sha256).digest()
    return signed + "." + part(mac)


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
    def __init__(self, server: skyrelay.Server, wells: int = 3, rate_hz: float = 2.0,
                 command_roles: list[str] | None = None) -> None:
        self.server = server
        self.wells = {f"WELL-{i:03d}": Well(f"WELL-{i:03d}") for i in range(1, wells + 1)}
        self.period = 1.0 / rate_hz
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="telemetry", daemon=True)
        self._lock = threading.Lock()
        # With command_roles, the server refuses set_frequency from anyone else (forbidden)
        # before this handler is ever called.
        server.on("set_frequency", self.set_frequency, roles=command_roles)
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
    parser.add_argument("--jwt-secret", default=None,
                        help="require HS256 tokens signed with this secret, and roles")
    parser.add_argument("--print-token", metavar="ROLE", default=None,
                        help="print a token with this role (needs --jwt-secret) and exit")
    args = parser.parse_args()
    if args.print_token:
        if not args.jwt_secret:
            parser.error("--print-token needs --jwt-secret")
        print(make_token(args.jwt_secret, args.print_token, [args.print_token]))
        return
    secured = secured_options(args.jwt_secret) if args.jwt_secret else {}
    server = skyrelay.Server(args.host, args.port, publish_token=args.publish_token,
                             client_topics=CLIENT_TOPICS, **secured)
    app = TelemetryApp(server, args.wells,
                       command_roles=COMMAND_ROLES if args.jwt_secret else None)
    server.start()
    app.start()
    try:
        server.run()
    finally:
        app.stop()


if __name__ == "__main__":
    main()
