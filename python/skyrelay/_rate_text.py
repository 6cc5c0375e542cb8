"""Rate limits written as text, in the notation of the ``limits`` package (and so of
Flask-Limiter and SlowAPI): ``"100/minute"``, ``"10 per second"``, ``"1000 per 2 hours"``.

A limit of N per period becomes a token bucket of ``burst = N`` refilled at ``N / period``
tokens a second: a client may spend all N at once and then earns them back over the period,
which is what ``limits``' moving window allows over any whole period (docs/api.md).
"""

from __future__ import annotations

import math
import re

__all__ = ["parse_rate"]

_SECONDS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0,
            "month": 30 * 86400.0, "year": 365 * 86400.0}
_LIMIT = re.compile(r"\s*(\d+)\s*(?:/|per)\s*(\d+)?\s*(second|minute|hour|day|month|year)s?\s*",
                    re.IGNORECASE)


def parse_rate(text: str) -> tuple[float, float]:
    """``(tokens per second, burst)`` of one limit such as ``"100/minute"``. ValueError says
    what is wrong; several limits (``"10/second;100/minute"``) are refused: one bucket holds
    one limit, so make one limiter per limit."""
    if not isinstance(text, str):
        raise TypeError(f"a rate limit is text such as '100/minute', not {type(text).__name__}")
    if any(sep in text for sep in ";,|"):
        raise ValueError(f"one limit per bucket, not {text!r}: make one limiter per limit")
    match = _LIMIT.fullmatch(text)
    if match is None:
        raise ValueError(f"a rate limit is '[count] per|/ [n] second|minute|hour|day|month|year' "
                         f"such as '100/minute', not {text!r}")
    count = int(match.group(1))
    multiple = int(match.group(2)) if match.group(2) else 1
    if count < 1 or multiple < 1:
        raise ValueError(f"a rate limit needs a count and a period of at least 1: {text!r}")
    period = multiple * _SECONDS[match.group(3).lower()]
    rate = count / period
    if not math.isfinite(rate):
        raise ValueError(f"rate limit out of range: {text!r}")
    return rate, float(count)
