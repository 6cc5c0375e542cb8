"""The tracker's element sets: the bundled demo set, re-basing epochs to now, and loading
(again) from a TLE or gpredict file or an http(s) URL."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterable

from . import orbit


def bundled_satellites(now: float | None = None, *, rebase: bool = True) -> tuple[orbit.SatelliteArray, str]:
    """The demo's element sets, re-based to ``now`` unless ``rebase`` is false; with a note
    saying which for the page."""
    from importlib import resources

    text = (resources.files("skyrelay") / "data" / "demo.tle").read_text(encoding="utf-8")
    sats = orbit.load_tle(text)
    if not rebase:
        return sats, "bundled elements of January 2018, not re-based (positions are far off today)"
    return rebase_by_days(sats, now), (
        "bundled elements of January 2018, their epochs moved forward by whole days to the day "
        "before now: the orbits are real shapes, the satellites are not where the real ones are")


def rebase_by_days(satellites: Iterable[orbit.Satellite], now: float | None = None) -> orbit.SatelliteArray:
    """Each satellite's elements with the epoch moved forward by whole days to within the day
    before ``now``. Each keeps the phase its elements had at their epoch's time of day (element
    sets are often dated at a node crossing: moving them all to one instant would line them up on
    the equator)."""
    t = time.time() if now is None else now
    rebased = []
    for s in satellites:
        epoch = s.epoch.timestamp()
        days = (t - epoch) // 86400.0
        rebased.append(s.with_epoch(dt.datetime.fromtimestamp(epoch + days * 86400.0, dt.timezone.utc)))
    return orbit.SatelliteArray(rebased)


def load_elements(source: str) -> list[orbit.Satellite]:
    """The usable element sets of a TLE file, gpredict .dat file or http(s) URL of TLE text;
    ValueError saying what is wrong otherwise."""
    if source.startswith(("http://", "https://")):
        import urllib.request

        try:
            with urllib.request.urlopen(source, timeout=20) as reply:  # the user's own network
                text = reply.read().decode("utf-8", errors="replace")
        except OSError as exc:
            raise ValueError(f"could not fetch {source}: {exc}") from None
        sats = orbit.load_tle(text)
    else:
        if not os.path.exists(source):
            raise ValueError(f"no such file: {source}")
        sats = orbit.load_tle(source)
    usable = [s for s in sats if s.error == 0]
    if not usable:
        raise ValueError(f"no usable element sets in {source}" + (f" ({sats.errors[0]})" if sats.errors else ""))
    return usable


class ElementsSource:
    """Where the tracker's elements come from, read again on every :meth:`load`: a file path or
    an http(s) URL, with the epochs moved to the day before now when ``rebase``."""

    def __init__(self, source: str, *, rebase: bool = False) -> None:
        self.source = source
        self.rebase = rebase

    def load(self) -> list[orbit.Satellite]:
        sats = load_elements(self.source)
        return list(rebase_by_days(sats)) if self.rebase else sats
