"""The tracker's cost per tick: computing, building and encoding satellite_positions for the
bundled 26 satellites and for gpredict's 979, and the communication windows search.

    make gpredict-data && .venv/bin/python bench/run_tracker.py
"""

from __future__ import annotations

import statistics
import sys
import time

import harness

sys.path.insert(0, str(harness.ROOT / "tests/python"))

from orbit_data import GPREDICT  # noqa: E402

from skyrelay import Server, orbit  # noqa: E402
from skyrelay.server import encode_json  # noqa: E402
from skyrelay.tracker import Tracker, bundled_satellites, rebase_by_days  # noqa: E402


def measure(label: str, sats, rounds: int = 30) -> None:
    tracker = Tracker(Server(port=0), sats)
    compute, build, encode = [], [], []
    size = 0
    for _ in range(rounds):
        snap = tracker.positions_snapshot()
        compute.append(tracker.last_position_cost["compute_s"])
        build.append(tracker.last_position_cost["build_s"])
        t = time.perf_counter()
        size = len(encode_json(snap))
        encode.append(time.perf_counter() - t)
    t = time.perf_counter()
    windows = tracker.windows_snapshot()
    win_s = time.perf_counter() - t
    ms = lambda xs: statistics.median(xs) * 1e3  # noqa: E731
    print(f"{label}: {len(sats)} satellites; positions tick: propagate+geodetic {ms(compute):.2f} ms, "
          f"records {ms(build):.2f} ms, JSON encode {ms(encode):.2f} ms, {size / 1024:.0f} KiB; "
          f"windows ({len(tracker.stations)} stations, {tracker.lookahead_hours:g} h): {win_s * 1e3:.0f} ms, "
          f"{windows['total']} passes")


def main() -> int:
    sats, _ = bundled_satellites()
    measure("bundled", sats)
    catalogue = rebase_by_days([s for s in orbit.load_tle(str(GPREDICT)) if s.error == 0])
    measure("gpredict", catalogue)
    return 0


if __name__ == "__main__":
    sys.exit(main())
