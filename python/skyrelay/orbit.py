"""Satellite orbits: SGP4/SDP4 propagation, frames, look angles and pass prediction.

The numerics run in skyrelay's C++ core without the GIL; this module turns times into two-part
Julian dates and results into numpy arrays and records::

    from skyrelay import orbit

    iss = orbit.Satellite.from_tle(line1, line2, name="ISS")
    times = np.datetime64("2026-01-01T00:00") + np.arange(90) * np.timedelta64(1, "m")
    where = iss.subpoint(times)                       # latitude, longitude, altitude_km arrays
    copenhagen = orbit.GroundStation("CPH", 55.68, 12.57, min_elevation=10)
    windows = orbit.passes([iss], [copenhagen], "2026-01-01", hours=24)
    pandas.DataFrame(windows)                         # one row per pass

Conventions: positions in kilometres (TEME for propagation, WGS-84 geodetic for subpoints),
angles in degrees, times in UTC. UT1 is taken as UTC unless ``dut1`` (UT1-UTC, seconds) is
given. Propagation errors are data: an ``error`` array holds the standard SGP4 codes (0: none;
1 mean eccentricity, 2 mean motion, 3 perturbed eccentricity, 4 semi-latus rectum,
6 decayed) and the positions at those times are NaN.
"""

from __future__ import annotations

import configparser
import datetime as _dt
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, overload

from ._extras import requires_extra

with requires_extra("orbit", "skyrelay.orbit"):
    import numpy as np

from ._core import orbit as _orbit

__all__ = [
    "GroundStation", "Geodetic", "LookAngles", "Pass", "Propagation", "Satellite",
    "SatelliteArray", "TLEError", "describe_error", "julian_dates", "load_tle", "pass_table", "passes",
]

_UNIX_JD = 2440587.5
_NS_PER_DAY = 86_400_000_000_000


class TLEError(ValueError):
    """An element set could not be read; the message names the line and columns."""


class Propagation(NamedTuple):
    position: np.ndarray   # (..., 3) km, TEME
    velocity: np.ndarray   # (..., 3) km/s, TEME
    error: np.ndarray      # (...) int8 SGP4 error codes, 0 = none


class Geodetic(NamedTuple):
    latitude: np.ndarray   # degrees, geodetic WGS-84
    longitude: np.ndarray  # degrees east, (-180, 180]
    altitude_km: np.ndarray


class LookAngles(NamedTuple):
    azimuth: np.ndarray    # degrees from north through east
    elevation: np.ndarray  # degrees
    range_km: np.ndarray
    range_rate_km_s: np.ndarray  # positive when receding


def describe_error(code: int) -> str:
    """The meaning of an SGP4 error code."""
    return _orbit.describe_error(int(code))


def _datetime64_ns(value: Any) -> np.ndarray:
    if isinstance(value, _dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(_dt.timezone.utc).replace(tzinfo=None)
        return np.array([np.datetime64(value, "ns")])
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1]
        elif len(text) > 19 and text[-6] in "+-" and text[-3] == ":":
            parsed = _dt.datetime.fromisoformat(text)
            return _datetime64_ns(parsed)
        try:
            return np.array([np.datetime64(text, "ns")])
        except ValueError:
            raise ValueError(f"not an ISO-8601 time: {value!r}") from None
    array = np.asarray(value)
    if array.dtype.kind == "M":
        return array.astype("datetime64[ns]").reshape(-1)
    if array.dtype.kind in "US" or array.dtype == object:
        return np.concatenate([_datetime64_ns(v) for v in array.reshape(-1)])
    raise TypeError(f"cannot read times from {type(value).__name__}")


def julian_dates(times: Any) -> tuple[np.ndarray, np.ndarray]:
    """Times as two-part UTC Julian dates ``(jd, fr)``, each a 1-d float array.

    Accepts numpy datetime64 values or arrays, ``datetime`` objects (naive ones are UTC), ISO-8601
    strings, pandas timestamps and indexes, sequences of these, a ``(jd, fr)`` tuple of arrays,
    or plain numbers, which are read as Julian dates.
    """
    if isinstance(times, tuple) and len(times) == 2 and not isinstance(times[0], (str, _dt.datetime)):
        jd = np.atleast_1d(np.asarray(times[0], dtype=float))
        fr = np.atleast_1d(np.asarray(times[1], dtype=float))
        if jd.shape != fr.shape:
            raise ValueError("jd and fr must have the same shape")
        return jd.reshape(-1), fr.reshape(-1)
    if hasattr(times, "to_numpy") and not isinstance(times, np.ndarray):
        times = times.to_numpy()
    array = np.asarray(times) if not isinstance(times, (str, _dt.datetime)) else None
    if array is not None and array.dtype.kind in "fiu":
        x = array.astype(float).reshape(-1)
        jd = np.floor(x - 0.5) + 0.5
        return jd, x - jd
    ns = _datetime64_ns(times).astype(np.int64)
    days = np.floor_divide(ns, _NS_PER_DAY)
    return _UNIX_JD + days.astype(float), (ns - days * _NS_PER_DAY) / _NS_PER_DAY


def _unix_seconds(value: Any) -> float:
    jd, fr = julian_dates(value)
    if jd.size != 1:
        raise ValueError("expected one time")
    return float((jd[0] - _UNIX_JD) * 86400.0 + fr[0] * 86400.0)


_UTC = _dt.timezone.utc


def _to_datetime(unix: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(unix, _UTC)


@dataclass(frozen=True)
class GroundStation:
    """A place on the ground: geodetic WGS-84 latitude and longitude in degrees, altitude in km,
    and the elevation mask (degrees) below which a satellite does not count as in view."""

    name: str
    latitude: float
    longitude: float
    altitude_km: float = 0.0
    min_elevation: float = 0.0

    def __post_init__(self) -> None:
        if not -90.0 <= self.latitude <= 90.0:
            raise ValueError(f"latitude must be within [-90, 90], not {self.latitude}")
        if not -180.0 <= self.longitude <= 360.0:
            raise ValueError(f"longitude must be within [-180, 360], not {self.longitude}")
        if not -1.0 <= self.altitude_km <= 100.0:
            raise ValueError(f"altitude_km must be within [-1, 100], not {self.altitude_km}")
        if not -10.0 <= self.min_elevation < 90.0:
            raise ValueError(f"min_elevation must be within [-10, 90), not {self.min_elevation}")

    @classmethod
    def parse(cls, text: str, *, min_elevation: float = 0.0) -> GroundStation:
        """The one station syntax of the command line: ``[NAME=]LAT,LON[,ALT_M[,MASK_DEG]]``
        (degrees north, degrees east, metres above the ellipsoid, the mask in degrees;
        ``min_elevation`` when the mask is left out). Without a name the station is called
        after its coordinates. ValueError says what is wrong."""
        name, sep, rest = text.partition("=")
        if not sep:
            name, rest = "", text
        parts = [p.strip() for p in rest.split(",")]
        if (sep and not name.strip()) or len(parts) not in (2, 3, 4):
            raise ValueError(f"a station is [NAME=]LAT,LON[,ALT_M[,MASK_DEG]], not {text!r}")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"a station needs numbers: {text!r}") from None
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"a station needs finite numbers: {text!r}")
        lat, lon = values[0], values[1]
        alt_m = values[2] if len(values) > 2 else 0.0
        mask = values[3] if len(values) > 3 else min_elevation
        return cls(name.strip() or f"{lat:.4f},{lon:.4f}", lat, lon, alt_m / 1000.0, mask)


class Satellite:
    """One element set and its SGP4/SDP4 propagator."""

    __slots__ = ("_core",)

    def __init__(self, core: Any) -> None:
        self._core = core

    @classmethod
    def from_tle(cls, line1: str, line2: str, name: str | None = None, *, gravity: str = "wgs72",
                 opsmode: str = "i") -> Satellite:
        """From a two-line element set. The checksum is reported (``checksum_ok``), not enforced.
        ``gravity`` is 'wgs72' (what TLEs are fitted with), 'wgs72old' or 'wgs84'; ``opsmode`` is
        'i' (improved) or 'a' (AFSPC)."""
        try:
            return cls(_orbit.Sgp4(line1, line2, name or "", gravity, opsmode))
        except ValueError as exc:
            raise TLEError(str(exc)) from None

    @classmethod
    def from_omm(cls, omm: str | dict, *, gravity: str = "wgs72", opsmode: str = "i") -> Satellite:
        """From one CCSDS OMM record (JSON text or a dict with OBJECT_NAME, NORAD_CAT_ID, EPOCH,
        MEAN_MOTION, ECCENTRICITY, ...), as CelesTrak's ``FORMAT=json`` gives."""
        import json

        text = omm if isinstance(omm, str) else json.dumps(omm)
        try:
            return cls(_orbit.Sgp4.from_omm(text, gravity, opsmode))
        except ValueError as exc:
            raise TLEError(str(exc)) from None

    @property
    def elements(self) -> dict:
        """The mean elements as read (TLE units: degrees, revolutions per day)."""
        return self._core.elements

    @property
    def name(self) -> str:
        el = self._core.elements
        return el["name"] or el["satnum"]

    @property
    def satnum(self) -> str:
        return self._core.elements["satnum"]

    @property
    def epoch(self) -> _dt.datetime:
        el = self._core.elements
        return _to_datetime((el["epoch_jd"] - _UNIX_JD) * 86400.0 + el["epoch_fr"] * 86400.0)

    @property
    def deep_space(self) -> bool:
        """True for periods of 225 minutes or more (SDP4)."""
        return self._core.deep_space

    @property
    def error(self) -> int:
        """The error code of a propagation at epoch (0: the elements are usable)."""
        return self._core.init_error

    def propagate(self, times: Any) -> Propagation:
        """TEME position (km) and velocity (km/s) at each time; shapes (M, 3) and (M,)."""
        jd, fr = julian_dates(times)
        return Propagation(*self._core.propagate(jd, fr))

    def propagate_tsince(self, minutes: float) -> tuple[int, tuple, tuple]:
        """``(error, position, velocity)`` a number of minutes after the epoch."""
        return self._core.propagate_tsince(float(minutes))

    def subpoint(self, times: Any, *, dut1: float = 0.0) -> Geodetic:
        """Geodetic latitude, longitude (degrees) and altitude (km) on WGS-84."""
        jd, fr = julian_dates(times)
        r, _, _ = self._core.propagate(jd, fr)
        return Geodetic(*_orbit.teme_to_geodetic(r, jd, fr, dut1))

    def look_angles(self, station: GroundStation, times: Any, *, dut1: float = 0.0) -> LookAngles:
        """Azimuth, elevation (degrees), range (km) and range rate (km/s) from a station."""
        jd, fr = julian_dates(times)
        r, v, _ = self._core.propagate(jd, fr)
        return LookAngles(*_orbit.look_angles(r, v, jd, fr, station.latitude, station.longitude,
                                              station.altitude_km, dut1))

    def with_epoch(self, epoch: Any) -> Satellite:
        """The same mean elements at another epoch: a plausible orbit for demos and tests when
        only old elements are at hand (the satellite will not be where the real one is)."""
        import json

        el = self.elements
        when = _to_datetime(_unix_seconds(epoch))
        omm = {"OBJECT_NAME": el["name"], "OBJECT_ID": el["intl_designator"],
               "NORAD_CAT_ID": el["catalog_number"],
               "EPOCH": when.strftime("%Y-%m-%dT%H:%M:%S.%f"), "MEAN_MOTION": el["mean_motion"],
               "ECCENTRICITY": el["eccentricity"], "INCLINATION": el["inclination_deg"],
               "RA_OF_ASC_NODE": el["raan_deg"], "ARG_OF_PERICENTER": el["arg_perigee_deg"],
               "MEAN_ANOMALY": el["mean_anomaly_deg"], "BSTAR": el["bstar"],
               "MEAN_MOTION_DOT": el["ndot"], "MEAN_MOTION_DDOT": el["nddot"],
               "EPHEMERIS_TYPE": el["ephemeris_type"], "ELEMENT_SET_NO": el["element_number"],
               "REV_AT_EPOCH": el["rev_number"], "CLASSIFICATION_TYPE": el["classification"]}
        return Satellite(_orbit.Sgp4.from_omm(json.dumps(omm), "wgs72", "i"))

    def __repr__(self) -> str:
        return f"Satellite({self.name!r}, satnum={self.satnum!r}, epoch={self.epoch.isoformat()})"


class SatelliteArray(Sequence[Satellite]):
    """Many satellites propagated together: N satellites x M times in one call, spread over
    every core without the GIL."""

    def __init__(self, satellites: Iterable[Satellite]) -> None:
        self._sats = list(satellites)
        for s in self._sats:
            if not isinstance(s, Satellite):
                raise TypeError(f"SatelliteArray holds Satellite objects, not {type(s).__name__}")
        #: "line N: message" for each set that could not be read (from_tle_text only)
        self.errors: list[str] = []

    @classmethod
    def from_tle_text(cls, text: str, *, gravity: str = "wgs72", opsmode: str = "i") -> SatelliteArray:
        """Every two- or three-line set in a text; bad sets are listed in ``errors``."""
        cores, errors, _warnings = _orbit.load_tle_text(text, gravity, opsmode)
        sats = [Satellite(c) for c in cores]
        array = cls(sats)
        array.errors = list(errors)
        return array

    @classmethod
    def from_gpredict(cls, path: str | os.PathLike[str]) -> SatelliteArray:
        """gpredict's ``satellites.dat`` (INI sections with NAME, TLE1 and TLE2)."""
        parser = configparser.ConfigParser(interpolation=None)
        parser.optionxform = str  # type: ignore[assignment]
        parser.read(path, encoding="utf-8")
        sats = []
        errors = []
        for section in parser.sections():
            entry = parser[section]
            try:
                sats.append(Satellite.from_tle(entry["TLE1"], entry["TLE2"], entry.get("NAME", section)))
            except (KeyError, TLEError) as exc:
                errors.append(f"[{section}]: {exc}")
        array = cls(sats)
        array.errors = errors
        return array

    def __len__(self) -> int:
        return len(self._sats)

    @overload
    def __getitem__(self, index: int) -> Satellite: ...
    @overload
    def __getitem__(self, index: slice) -> SatelliteArray: ...
    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        if isinstance(index, slice):
            return SatelliteArray(self._sats[index])
        return self._sats[index]

    def __iter__(self) -> Iterator[Satellite]:
        return iter(self._sats)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self._sats]

    def propagate(self, times: Any, *, threads: int | None = None) -> Propagation:
        """Positions and velocities of shape (N, M, 3), errors (N, M)."""
        jd, fr = julian_dates(times)
        return Propagation(*_orbit.propagate_many([s._core for s in self._sats], jd, fr, threads or 0))

    def subpoints(self, times: Any, *, dut1: float = 0.0, threads: int | None = None) -> Geodetic:
        """Geodetic latitude, longitude and altitude arrays of shape (N, M)."""
        jd, fr = julian_dates(times)
        r, _, _ = _orbit.propagate_many([s._core for s in self._sats], jd, fr, threads or 0)
        return Geodetic(*_orbit.teme_to_geodetic(r, jd, fr, dut1))


def load_tle(source: str | os.PathLike, *, gravity: str = "wgs72", opsmode: str = "i") -> SatelliteArray:
    """A TLE file (two- or three-line sets) or gpredict ``.dat`` file, or TLE text itself."""
    text = str(source)
    if "\n" not in text and os.path.exists(text):
        if text.endswith(".dat"):
            return SatelliteArray.from_gpredict(text)
        with open(text, encoding="utf-8", errors="replace") as f:
            text = f.read()
    return SatelliteArray.from_tle_text(text, gravity=gravity, opsmode=opsmode)


class Pass(NamedTuple):
    """One window of visibility of a satellite from a ground station."""

    satellite: str
    ground_station: str
    aos: _dt.datetime           # rise above the station's mask (UTC)
    culmination: _dt.datetime   # time of maximum elevation
    los: _dt.datetime           # set below the mask
    max_elevation: float        # degrees
    aos_azimuth: float
    culmination_azimuth: float
    los_azimuth: float
    culmination_range_km: float
    duration_s: float
    quality: float              # 0..1: 0.6 elevation + 0.4 duration (see docs/orbit.md)
    starts_before: bool         # already in view at the window's start (aos is the start)
    ends_after: bool            # still in view at the window's end (los is the end)

    @property
    def duration_minutes(self) -> float:
        return self.duration_s / 60.0


def _pass_arguments(satellites, stations, start, end, hours, min_elevation):
    sats = list(satellites)
    sites = list(stations)
    for s in sites:
        if not isinstance(s, GroundStation):
            raise TypeError(f"stations must be GroundStation objects, not {type(s).__name__}")
    t0 = _unix_seconds(start)
    if end is None:
        if hours is None:
            raise ValueError("give end or hours")
        if not 0 < hours <= 24 * 366:
            raise ValueError(f"hours must be within (0, 8784], not {hours}")
        t1 = t0 + float(hours) * 3600.0
    else:
        t1 = _unix_seconds(end)
    if t1 <= t0:
        raise ValueError("end must be after start")
    if min_elevation is not None and not -10.0 <= min_elevation < 90.0:
        raise ValueError(f"min_elevation must be within [-10, 90), not {min_elevation}")
    masks = [(g.latitude, g.longitude, g.altitude_km,
              g.min_elevation if min_elevation is None else min_elevation) for g in sites]
    return sats, sites, [s._core for s in sats], masks, t0, t1


def passes(satellites: Iterable[Satellite], stations: Iterable[GroundStation], start: Any,
           end: Any = None, *, hours: float | None = None, min_elevation: float | None = None,
           dut1: float = 0.0, threads: int | None = None) -> list[Pass]:
    """Every pass of every satellite over every station between ``start`` and ``end`` (or
    ``start + hours``), sorted by AOS, as ``Pass`` records (``pandas.DataFrame(result)`` makes a
    table of them). Each station's own ``min_elevation`` is its mask unless ``min_elevation`` is
    given for all. AOS, LOS and culmination are found to a millisecond. For very many passes,
    ``pass_table`` returns the same as numpy columns, without a Python object per pass."""
    sats, sites, cores, masks, t0, t1 = _pass_arguments(satellites, stations, start, end, hours, min_elevation)
    rows = _orbit.find_passes(cores, masks, t0, t1, dut1, threads or 0)
    sat_names = [s.name for s in sats]
    site_names = [g.name for g in sites]
    stamp = _dt.datetime.fromtimestamp
    return [Pass(sat_names[si], site_names[gi], stamp(aos, _UTC), stamp(tca, _UTC), stamp(los, _UTC),
                 max_el, aos_az, tca_az, los_az, rng, dur, quality, before, after)
            for (si, gi, aos, tca, los, max_el, aos_az, tca_az, los_az, rng, dur, quality, before, after)
            in rows]


def pass_table(satellites: Iterable[Satellite], stations: Iterable[GroundStation], start: Any,
               end: Any = None, *, hours: float | None = None, min_elevation: float | None = None,
               dut1: float = 0.0, threads: int | None = None) -> dict[str, np.ndarray]:
    """``passes`` as columns: a dict of numpy arrays with the fields of ``Pass`` (times as
    ``datetime64[ns]`` UTC, names as object arrays), ready for ``pandas.DataFrame(...)``."""
    sats, sites, cores, masks, t0, t1 = _pass_arguments(satellites, stations, start, end, hours, min_elevation)
    # (AOS, culmination and LOS come as datetime64[ns], rounded in C++ as np.round would.)
    cols = _orbit.find_pass_columns(cores, masks, t0, t1, dut1, threads or 0, True)
    cols["satellite"] = np.array([s.name for s in sats], dtype=object)[cols["satellite"]]
    cols["ground_station"] = np.array([g.name for g in sites], dtype=object)[cols["ground_station"]]
    return {field: cols[field] for field in Pass._fields}
