"""Streams simulated well telemetry into a skyrelay server from another process.

A data-science style producer: it simulates wells (flow rate, intake pressure, motor current and
temperature, vibration, VSD frequency), publishes one sample per well per tick at a steady rate
through the HTTP publish API (one batched request per tick), and raises an ``alert`` event to
the well's room and to ``alerts`` when a motor's temperature crosses its limit. The VSD
frequencies drift (``--drift``), so wells heat up and cool down over time.

Run a server that accepts publications, then this script:

    .venv/bin/python examples/well_telemetry/app.py --port 8000 --wells 0 --publish-token s3cret
    SKYRELAY_TOKEN=s3cret .venv/bin/python examples/well_telemetry/stream_telemetry.py \\
        --url http://127.0.0.1:8000 --wells 5 --rate 2

Watch with ``curl -N http://127.0.0.1:8000/sse/WELL-001?topics=alerts`` or any WebSocket client
on ``ws://127.0.0.1:8000/ws/WELL-001``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from app import MOTOR_TEMP_LIMIT_C, Well  # noqa: E402  (the simulation shared with app.py)

from skyrelay import Producer  # noqa: E402


def run(producer: Producer, wells: list[Well], rate_hz: float, count: int | None,
        drift_hz: float, rng: random.Random) -> dict[str, int]:
    """Publishes `count` ticks (forever when None); returns what it did."""
    period = 1.0 / rate_hz
    stats = {"ticks": 0, "samples": 0, "alerts": 0, "late_ticks": 0}
    hot = {w.name: False for w in wells}
    start = time.monotonic()
    next_tick = start
    while count is None or stats["ticks"] < count:
        t = next_tick - start
        with producer.batch() as batch:
            for well in wells:
                # A slow random walk of the drive frequency, within the pump's range.
                step = rng.uniform(-1.0, 1.0) * drift_hz
                well.vsd_hz = round(min(65.0, max(30.0, well.vsd_hz + step)), 2)
                sample = well.sample(t)
                batch.emit("telemetry_update", sample, to=well.name, policy="drop_oldest")
                stats["samples"] += 1
                is_hot = sample["motor_temp_c"] > MOTOR_TEMP_LIMIT_C
                if is_hot and not hot[well.name]:  # a rising edge, not every hot sample
                    batch.emit("alert", {"well": well.name, "kind": "motor_temp_high",
                                         "value": sample["motor_temp_c"],
                                         "limit": MOTOR_TEMP_LIMIT_C,
                                         "timestamp": sample["timestamp"]},
                               to=[well.name, "alerts"])
                    stats["alerts"] += 1
                hot[well.name] = is_hot
        stats["ticks"] += 1
        # A steady rate: aim at the schedule, not at "period after the last request".
        next_tick += period
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif -delay > period:  # more than a tick behind: skip ahead rather than burst
            stats["late_ticks"] += 1
            next_tick = time.monotonic()
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--token", default=None, help="default: $SKYRELAY_TOKEN")
    parser.add_argument("--wells", type=int, default=5)
    parser.add_argument("--rate", type=float, default=2.0, help="samples per well per second")
    parser.add_argument("--count", type=int, default=None, help="ticks to send (default: run)")
    parser.add_argument("--start-hz", type=float, default=50.0, help="initial VSD frequency")
    parser.add_argument("--drift", type=float, default=0.5, help="VSD random walk step, Hz")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.wells < 1:
        parser.error("--rate must be > 0 and --wells >= 1")
    rng = random.Random(args.seed)
    wells = [Well(f"WELL-{i:03d}", vsd_hz=args.start_hz) for i in range(1, args.wells + 1)]
    with Producer(args.url, token=args.token) as producer:
        try:
            stats = run(producer, wells, args.rate, args.count, args.drift, rng)
        except KeyboardInterrupt:
            return 0
    print(" ".join(f"{k}={v}" for k, v in stats.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
