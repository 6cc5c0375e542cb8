"""The tracker's satellite_positions message, written in C++ (Tracker.positions_message), is
byte for byte the text the Python records and json.dumps wrote before, for whole catalogues,
hostile names and the float values whose formatting differs between C++ and Python."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from orbit_data import GPREDICT
from skyrelay import Server, orbit
from skyrelay.server import encode_json
from skyrelay.tracker import Tracker, _positions_encoder, bundled_satellites, catalog_number, iso, rebase_by_days


def _python_text(names, numbers, lat, lon, alt, when: str) -> bytes:
    """The message as the tracker wrote it in Python: numpy rounding, dicts, json.dumps."""
    lat = np.round(np.asarray(lat, dtype=float), 4).tolist()
    lon = np.round(np.asarray(lon, dtype=float), 4).tolist()
    alt = np.round(np.asarray(alt, dtype=float), 2).tolist()
    records = [{"name": n, "catalog_number": c,
                "position": {"latitude": a, "longitude": o, "altitude_km": h}, "timestamp": when}
               for n, c, a, o, h in zip(names, numbers, lat, lon, alt) if a == a]
    return encode_json({"satellites": records, "count": len(records), "timestamp": when})


def _cpp_text(names, numbers, lat, lon, alt, when: str) -> bytes:
    enc = _positions_encoder(names, numbers)
    return enc.encode(np.asarray(lat, dtype=float), np.asarray(lon, dtype=float),
                      np.asarray(alt, dtype=float), json.dumps(when))


def test_floats_are_written_as_python_writes_them():
    # Values around every switch of Python's repr (positional from 1e-4 to below 1e16, ".0" on
    # whole numbers, two-digit exponents), signed zeros, halves that numpy rounds to even, and
    # random ones.
    special = [0.0, -0.0, 1e-5, -1e-5, 4.9e-5, 5e-5, 5.1e-5, 1e-4, 0.00015, 0.00025, 12.0, -90.0, 90.0,
               179.99995, -179.99996, 0.1, 0.3, 1 / 3, 2.675, 1e15, 1e16, 1.5e16, 123456789012.3456,
               6378.135, 35786.004999, 42164.005, -0.00004999]
    rng = np.random.default_rng(18)
    values = np.concatenate([special, rng.uniform(-180, 180, 3000), rng.uniform(-1, 1, 1000) * 1e-3,
                             10.0 ** rng.uniform(-6, 17, 1000)])
    n = len(values)
    names = [f"S{i}" for i in range(n)]
    numbers = list(range(n))
    when = "2026-12-07T05:00:00.000Z"
    # the same values as latitude, longitude and altitude (rounded to 4, 4 and 2 decimals)
    cpp = _cpp_text(names, numbers, values, values[::-1], values, when)
    assert cpp == _python_text(names, numbers, values, values[::-1], values, when)
    assert json.loads(cpp)["count"] == n


def test_hostile_names_numbers_and_failed_satellites():
    names = ['quote " and \\ backslash', "tab\tnew\nline\r\x00\x1f\x7f", "ÆØÅ 卫星 \u2028 😀", "", "</script>"]
    numbers = [25544, "A0001", 0, 99999, "12\"3"]
    lat = [10.0, math.nan, -45.5, 0.0, 89.9]
    lon = [20.0, math.nan, 170.25, -0.0, -179.9]
    alt = [400.0, math.nan, 35786.0, 1.0, 500.0]
    when = "2026-12-07T05:00:00.123Z"
    cpp = _cpp_text(names, numbers, lat, lon, alt, when)
    assert cpp == _python_text(names, numbers, lat, lon, alt, when)
    data = json.loads(cpp)
    assert data["count"] == 4 and [s["name"] for s in data["satellites"]] == [names[0]] + names[2:]
    assert [s["catalog_number"] for s in data["satellites"]] == [25544, 0, 99999, '12"3']
    # A bad shape is refused, not read out of bounds.
    enc = _positions_encoder(names, numbers)
    with pytest.raises(ValueError):
        enc.encode(np.zeros(3), np.zeros(5), np.zeros(5), '"x"')


@pytest.mark.parametrize("which", ["bundled", "gpredict"])
def test_tracker_message_is_the_python_text(which):
    if which == "bundled":
        sats, _ = bundled_satellites()
    else:
        if not GPREDICT.exists():
            pytest.skip("run `make gpredict-data`")
        sats = rebase_by_days([s for s in orbit.load_tle(str(GPREDICT)) if s.error == 0])
    tracker = Tracker(Server(port=0), sats)
    names, numbers = tracker.satellites.names, [catalog_number(s) for s in tracker.satellites]
    for t in (1_800_000_000.0, 1_800_000_000.5 + 3600 * 7.3, 1_800_086_399.999):
        raw = tracker.positions_message(t)
        geo = tracker.satellites.subpoints(np.array([int(round(t * 1e9))], dtype="datetime64[ns]"))
        expected = _python_text(names, numbers, geo.latitude[:, 0], geo.longitude[:, 0], geo.altitude_km[:, 0],
                                iso(t))
        assert raw == expected
        snap = tracker.positions_snapshot(t)
        assert snap == json.loads(expected)
        assert snap["count"] == int(np.isfinite(geo.latitude[:, 0]).sum()) > 0.9 * len(sats)
