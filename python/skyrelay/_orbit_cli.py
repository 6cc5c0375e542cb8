"""``skyrelay passes`` and ``skyrelay propagate``: readable tables from the orbit module."""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os

from ._extras import requires_extra

with requires_extra("orbit", "skyrelay passes and propagate"):
    import numpy as np


class UsageError(Exception):
    """A bad argument; the message says which and why."""


def _station(text: str):
    from .orbit import GroundStation

    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 3):
        raise UsageError(f"--station must be LAT,LON or LAT,LON,ALT (metres), not {text!r}")
    try:
        lat, lon = float(parts[0]), float(parts[1])
        alt_m = float(parts[2]) if len(parts) == 3 else 0.0
    except ValueError:
        raise UsageError(f"--station needs numbers: {text!r}") from None
    if not all(math.isfinite(v) for v in (lat, lon, alt_m)):
        raise UsageError(f"--station needs finite numbers: {text!r}")
    try:
        return GroundStation(f"{lat:.4f},{lon:.4f}", lat, lon, alt_m / 1000.0)
    except ValueError as exc:
        raise UsageError(f"--station: {exc}") from None


def _start(text: str | None) -> dt.datetime:
    if text is None:
        return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--start must be ISO-8601 such as 2026-01-01T12:00:00Z, not {text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc)


def _satellites(path: str, wanted: list[str]):
    from .orbit import load_tle

    if not os.path.exists(path):
        raise UsageError(f"--tle: no such file: {path}")
    sats = load_tle(path)
    for err in sats.errors:
        print(f"warning: {path}: {err}")
    if len(sats) == 0:
        raise UsageError(f"--tle: no valid element sets in {path}"
                         + (f" ({sats.errors[0]})" if sats.errors else ""))
    chosen = [s for s in sats if not wanted or any(w.lower() in s.name.lower() or w == s.satnum for w in wanted)]
    if not chosen:
        raise UsageError(f"--satellite: none of {wanted} is in {path}")
    unusable = [s for s in chosen if s.error]
    for s in unusable:
        from .orbit import describe_error

        print(f"warning: {s.name}: {describe_error(s.error)} (skipped)")
    return [s for s in chosen if not s.error]


def _fmt(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S")


def passes(args: argparse.Namespace) -> int:
    from .orbit import passes as find

    station = _station(args.station)
    start = _start(args.start)
    if not 0 < args.hours <= 24 * 366:
        raise UsageError(f"--hours must be within (0, 8784], not {args.hours}")
    if not -10 <= args.min_elevation < 90:
        raise UsageError(f"--min-elevation must be within [-10, 90), not {args.min_elevation}")
    sats = _satellites(args.tle, args.satellite)
    found = find(sats, [station], start, hours=args.hours, min_elevation=args.min_elevation)
    end = start + dt.timedelta(hours=args.hours)
    print(f"Passes over {station.latitude:.4f}, {station.longitude:.4f} ({station.altitude_km * 1000:.0f} m), "
          f"mask {args.min_elevation:g} deg, {_fmt(start)} to {_fmt(end)} UTC: {len(found)}")
    if not found:
        return 0
    width = max(9, *(len(p.satellite) for p in found))
    print(f"{'satellite':<{width}}  {'AOS (UTC)':<19}  {'max el':>6}  {'at (UTC)':<19}  {'LOS (UTC)':<19}  "
          f"{'duration':>8}  {'quality':>7}")
    for p in found:
        mark = ("<" if p.starts_before else " ") + (">" if p.ends_after else " ")
        minutes, seconds = divmod(int(round(p.duration_s)), 60)
        print(f"{p.satellite:<{width}}  {_fmt(p.aos)}  {p.max_elevation:6.1f}  {_fmt(p.culmination)}  "
              f"{_fmt(p.los)}  {minutes:5d}:{seconds:02d}  {p.quality:7.2f}{mark.rstrip()}")
    if any(p.starts_before or p.ends_after for p in found):
        print("< already in view at the start, > still in view at the end")
    return 0


def propagate(args: argparse.Namespace) -> int:
    start = _start(args.start)
    if not 0 <= args.minutes <= 525_600:
        raise UsageError(f"--minutes must be within [0, 525600], not {args.minutes}")
    if not args.step > 0:
        raise UsageError(f"--step must be positive, not {args.step}")
    if args.minutes / args.step > 100_000:
        raise UsageError("more than 100,000 rows; use a larger --step")
    sats = _satellites(args.tle, args.satellite)
    offsets = np.arange(0.0, args.minutes + 1e-9, args.step)
    base = np.datetime64(start.replace(tzinfo=None), "ns")
    times = base + (offsets * 60e9).astype("timedelta64[ns]")
    print(f"{'satellite':<24} {'time (UTC)':<19} {'latitude':>9} {'longitude':>10} {'alt km':>9} "
          f"{'x km':>11} {'y km':>11} {'z km':>11}  (TEME)")
    from .orbit import describe_error

    for sat in sats:
        r, _, err = sat.propagate(times)
        geo = sat.subpoint(times)
        for k, t in enumerate(times):
            stamp = str(t.astype("datetime64[s]")).replace("T", " ")
            if err[k]:
                print(f"{sat.name[:24]:<24} {stamp:<19} error {int(err[k])}: {describe_error(err[k])}")
                continue
            print(f"{sat.name[:24]:<24} {stamp:<19} {geo.latitude[k]:9.4f} {geo.longitude[k]:10.4f} "
                  f"{geo.altitude_km[k]:9.3f} {r[k, 0]:11.3f} {r[k, 1]:11.3f} {r[k, 2]:11.3f}")
    return 0
