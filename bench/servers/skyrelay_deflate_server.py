"""skyrelay under test for run_compression.py: one I/O thread, publisher in the main Python
thread, a ~1 KB JSON telemetry object per message. `--compression 1` turns permessage-deflate
on for /ws (the load client then offers it); 0 leaves it off (the offer is declined)."""

from __future__ import annotations

import json
import sys
import time

import skyrelay
from common import parse_args, publish

# Our own flag first; common.parse_args reads the rest.
compression = False
if "--compression" in sys.argv:
    at = sys.argv.index("--compression")
    compression = sys.argv[at + 1] != "0"
    del sys.argv[at:at + 2]
args = parse_args()

# A well's status as a telemetry app publishes it: ~1 KB, keys repeated per sensor.
SENSORS = {f"sensor_{i:02d}": {"value": round(1000 + 37.5 * i, 2), "unit": "kPa",
                               "status": "ok", "alarm": False} for i in range(14)}


def payload(seq: int) -> bytes:
    # "t" and "seq" first: the load client reads them (latency, publication numbers).
    return json.dumps({"t": time.monotonic_ns(), "seq": seq, "well_id": "WELL-001",
                       "site": "north-field", "state": "producing", "sensors": SENSORS},
                      separators=(",", ":")).encode()


server = skyrelay.Server("127.0.0.1", args.port, io_threads=1, client_topics=["bench"],
                         compression="json" if compression else False)
server.start()
server.set_room_policy("bench", "drop_oldest")
print(f"payload bytes {len(payload(0))}", file=sys.stderr, flush=True)
publish(lambda seq: server.emit("tick", payload(seq), to="bench"),
        lambda: server.room_size("bench"), args)
server.stop()
