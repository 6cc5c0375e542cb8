"""What an ingested reading must look like: ``{well_id, timestamp?, <telemetry fields>}``."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, NamedTuple

from .realtime import now, well_id_of
from .store import FIELDS


class InvalidReading(ValueError):
    """A reading the ingest API refuses; the message names the problem."""


class Reading(NamedTuple):
    well_id: str
    timestamp: str  # as the device sent it (ISO-8601), or the time it arrived
    values: dict[str, float]


def parse(raw: Any) -> Reading:
    """The reading in `raw` (decoded JSON), or InvalidReading. Unknown fields are refused,
    so that a misspelt field is an error at the device rather than a silent gap."""
    if not isinstance(raw, dict):
        raise InvalidReading("a reading is a JSON object")
    well_id = well_id_of(raw)
    if well_id is None:
        raise InvalidReading("well_id is required (1-64 letters, digits, '.', '_' or '-')")
    timestamp = raw.get("timestamp", now())
    if not _iso(timestamp):
        raise InvalidReading("timestamp must be an ISO-8601 date and time")
    unknown = sorted(set(raw) - {"well_id", "timestamp", *FIELDS})
    if unknown:
        raise InvalidReading(f"unknown fields: {', '.join(unknown)}"[:200])
    values = {}
    for name in FIELDS:
        if name not in raw:
            continue
        value = raw[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise InvalidReading(f"{name} must be a number")
        values[name] = float(value)
    if not values:
        raise InvalidReading(f"a reading needs one of: {', '.join(FIELDS)}")
    return Reading(well_id, timestamp, values)


def _iso(text: Any) -> bool:
    if not isinstance(text, str) or len(text) > 40:
        return False
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True
