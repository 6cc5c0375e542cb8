"""The tracker's cost per tick: computing and encoding satellite_positions for the bundled 26
satellites and for gpredict's 979 (the JSON written in C++ by Tracker.positions_message, and,
side by side in the same run, the Python records + json encoding it replaced), and the
communication windows search.

    make gpredict-data && .venv/bin/python bench/run_tracker.py
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import numpy as np

import harness

sys.path.insert(0, str(harness.ROOT / "tests/python"))

from orbit_data import GPREDICT  # noqa: E402

from skyrelay import Server, orbit  # noqa: E402
from skyrelay.server import encode_json  # noqa: E402
from skyrelay.tracker import Tracker, bundled_satellites, catalog_number, iso, rebase_by_days  # noqa: E402


def python_message(sats, t: float) -> bytes:
    """The positions message as the tracker built it before the C++ encoder: numpy rounding,
    a dict per satellite, json.dumps through the server's encoder."""
    stamp = np.array([int(round(t * 1e9))], dtype="datetime64[ns]")
    geo = sats.subpoints(stamp)
    when = iso(t)
    lat = np.round(geo.latitude[:, 0], 4).tolist()
    lon = np.round(geo.longitude[:, 0], 4).tolist()
    alt = np.round(geo.altitude_km[:, 0], 2).tolist()
    records = [{"name": n, "catalog_number": c,
                "position": {"latitude": a, "longitude": o, "altitude_km": h}, "timestamp": when}
               for n, c, a, o, h in zip(sats.names, [catalog_number(s) for s in sats], lat, lon, alt) if a == a]
    return encode_json({"satellites": records, "count": len(records), "timestamp": when})


def measure(label: str, sats, rounds: int = 30) -> dict:
    tracker = Tracker(Server(port=0), sats)
    compute, encode_cpp, encode_py = [], [], []
    size = 0
    same_bytes = same_values = True
    for _ in range(rounds):
        t = time.time()
        raw = tracker.positions_message(t)
        compute.append(tracker.last_position_cost["compute_s"])
        encode_cpp.append(tracker.last_position_cost["build_s"])
        started = time.perf_counter()
        reference = python_message(tracker.satellites, t)
        # the Python path's own time less its propagation (the same call as the C++ path's)
        encode_py.append(time.perf_counter() - started - compute[-1])
        same_bytes &= raw == reference
        same_values &= json.loads(raw) == json.loads(reference)
        size = len(raw)
    t = time.perf_counter()
    windows = tracker.windows_snapshot()
    win_s = time.perf_counter() - t
    ms = lambda xs: statistics.median(xs) * 1e3  # noqa: E731
    print(f"{label}: {len(sats)} satellites; positions tick: propagate+geodetic {ms(compute):.2f} ms, "
          f"JSON in C++ {ms(encode_cpp):.3f} ms (Python records + json {ms(encode_py):.2f} ms, "
          f"byte-identical: {same_bytes}, equal values: {same_values}), {size / 1024:.0f} KiB; "
          f"windows ({len(tracker.stations)} stations, {tracker.lookahead_hours:g} h): {win_s * 1e3:.0f} ms, "
          f"{windows['total']} passes")
    return {"satellites": len(sats), "compute_ms": ms(compute), "encode_cpp_ms": ms(encode_cpp),
            "encode_python_ms": ms(encode_py), "byte_identical": same_bytes, "equal_values": same_values,
            "message_bytes": size, "windows_ms": win_s * 1e3, "windows_passes": windows["total"]}


def main() -> int:
    sats, _ = bundled_satellites()
    results = {"load_average": os.getloadavg(), "bundled": measure("bundled", sats)}
    catalogue = rebase_by_days([s for s in orbit.load_tle(str(GPREDICT)) if s.error == 0])
    results["gpredict"] = measure("gpredict", catalogue)
    harness.save("tracker", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
