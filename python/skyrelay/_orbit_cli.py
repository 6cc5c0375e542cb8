"""``skyrelay passes`` and ``skyrelay propagate``: the orbit module on the command line, as a
table, CSV or JSON (_cli_output.py)."""

from __future__ import annotations

import argparse
import datetime as dt
import os

from ._extras import requires_extra

with requires_extra("orbit", "skyrelay passes and propagate"):
    import numpy as np

from ._cli_output import Column, UsageError, iso, warn, write


def _stations(texts: list[str], min_elevation: float):
    """``--station`` (repeatable) in the one station syntax, ``[NAME=]LAT,LON[,ALT_M[,MASK_DEG]]``;
    ``--min-elevation`` is the mask of stations that give none."""
    from .orbit import GroundStation

    if not -10 <= min_elevation < 90:
        raise UsageError(f"--min-elevation must be within [-10, 90), not {min_elevation}")
    try:
        return [GroundStation.parse(t, min_elevation=min_elevation) for t in texts]
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


def _satellites(command: str, path: str, wanted: list[str]):
    from .orbit import load_tle

    if not os.path.exists(path):
        raise UsageError(f"--tle: no such file: {path}")
    sats = load_tle(path)
    for err in sats.errors:
        warn(command, f"{path}: {err}")
    if len(sats) == 0:
        raise UsageError(f"--tle: no valid element sets in {path}"
                         + (f" ({sats.errors[0]})" if sats.errors else ""))
    chosen = [s for s in sats if not wanted or any(w.lower() in s.name.lower() or w == s.satnum for w in wanted)]
    if not chosen:
        raise UsageError(f"--satellite: none of {wanted} is in {path}")
    unusable = [s for s in chosen if s.error]
    for s in unusable:
        from .orbit import describe_error

        warn(command, f"{s.name}: {describe_error(s.error)} (skipped)")
    return [s for s in chosen if not s.error]


def _clock(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}"


def passes(args: argparse.Namespace) -> int:
    from .orbit import passes as find

    stations = _stations(args.station, args.min_elevation)
    start = _start(args.start)
    if not 0 < args.hours <= 24 * 366:
        raise UsageError(f"--hours must be within (0, 8784], not {args.hours}")
    sats = _satellites("passes", args.tle, args.satellite)
    found = find(sats, stations, start, hours=args.hours)
    end = start + dt.timedelta(hours=args.hours)
    rows = [{**p._asdict(), "duration_s": round(p.duration_s, 3)} for p in found]
    for row, p in zip(rows, found):
        row["cut"] = ("<" if p.starts_before else "") + (">" if p.ends_after else "")
    columns = [Column("satellite", "satellite")]
    if len(stations) > 1 or args.format != "table":
        columns.append(Column("ground_station", "station"))
    columns += [Column("aos", "AOS (UTC)", _clock), Column("max_elevation", "max el", "{:.1f}".format, ">"),
                Column("culmination", "at (UTC)", _clock), Column("los", "LOS (UTC)", _clock),
                Column("duration_s", "duration", _duration, ">"),
                Column("quality", "quality", "{:.2f}".format, ">")]
    if args.format == "table":
        columns.append(Column("cut", ""))
    else:
        columns += [Column(k, k) for k in ("aos_azimuth", "culmination_azimuth", "los_azimuth",
                                            "culmination_range_km", "starts_before", "ends_after")]
    where = "; ".join(f"{g.name} ({g.latitude:.4f}, {g.longitude:.4f}, {g.altitude_km * 1000:.0f} m, "
                      f"mask {g.min_elevation:g} deg)" for g in stations)
    about = {"stations": [{"name": g.name, "latitude": g.latitude, "longitude": g.longitude,
                           "altitude_m": g.altitude_km * 1000.0, "min_elevation": g.min_elevation}
                          for g in stations],
             "start": iso(start), "end": iso(end)}
    notes = ["< already in view at the start, > still in view at the end"] \
        if any(p.starts_before or p.ends_after for p in found) else []
    write(args.format, columns, rows, about=about, notes=notes,
          title=f"Passes over {where}, {_clock(start)} to {_clock(end)} UTC: {len(found)}")
    return 0


def propagate(args: argparse.Namespace) -> int:
    from .orbit import describe_error

    start = _start(args.start)
    if not 0 <= args.minutes <= 525_600:
        raise UsageError(f"--minutes must be within [0, 525600], not {args.minutes}")
    if not args.step > 0:
        raise UsageError(f"--step must be positive, not {args.step}")
    if args.minutes / args.step > 100_000:
        raise UsageError("more than 100,000 rows; use a larger --step")
    sats = _satellites("propagate", args.tle, args.satellite)
    offsets = np.arange(0.0, args.minutes + 1e-9, args.step)
    base = np.datetime64(start.replace(tzinfo=None), "ns")
    times = base + (offsets * 60e9).astype("timedelta64[ns]")
    stamps = [dt.datetime.fromtimestamp(int(t.astype("datetime64[ms]").astype(np.int64)) / 1000.0,
                                        dt.timezone.utc) for t in times]
    rows = []
    for sat in sats:
        r, _, err = sat.propagate(times)
        geo = sat.subpoint(times)
        for k, stamp in enumerate(stamps):
            row: dict[str, object] = {"satellite": sat.name, "satnum": sat.satnum, "time": stamp}
            if err[k]:
                row.update(error=int(err[k]), message=describe_error(err[k]))
            else:
                row.update(latitude=round(float(geo.latitude[k]), 6),
                           longitude=round(float(geo.longitude[k]), 6),
                           altitude_km=round(float(geo.altitude_km[k]), 4),
                           x_km=round(float(r[k, 0]), 4), y_km=round(float(r[k, 1]), 4),
                           z_km=round(float(r[k, 2]), 4), error=0)
            rows.append(row)

    def number(fmt: str):
        return lambda v: "" if v is None else fmt.format(v)

    columns = [Column("satellite", "satellite", lambda v: v[:24]), Column("time", "time (UTC)", _clock),
               Column("latitude", "latitude", number("{:.4f}"), ">"),
               Column("longitude", "longitude", number("{:.4f}"), ">"),
               Column("altitude_km", "alt km", number("{:.3f}"), ">"),
               Column("x_km", "x km", number("{:.3f}"), ">"), Column("y_km", "y km", number("{:.3f}"), ">"),
               Column("z_km", "z km", number("{:.3f}"), ">")]
    if args.format == "table":
        columns.append(Column("message", "", lambda v: f"error: {v}" if v else ""))
    else:
        columns[1:1] = [Column("satnum", "satnum")]
        columns += [Column("error", "error"), Column("message", "message")]
    write(args.format, columns, rows, about={"frame": "TEME", "start": iso(start)},
          title=f"Positions (latitude/longitude/altitude geodetic WGS-84; x, y, z TEME) from "
                f"{_clock(start)} UTC every {args.step:g} min: {len(rows)} rows")
    return 0
