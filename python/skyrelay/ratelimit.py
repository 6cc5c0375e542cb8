"""Rate limiting for applications: keyed token buckets in the C++ core.

    from skyrelay import RateLimiter

    limiter = RateLimiter(rate=5, burst=20)        # per key: 20 at once, then 5 a second

    decision = limiter.acquire(f"user:{user_id}")
    if not decision:                               # a Decision is true when allowed
        ...  # decision.retry_after seconds until the same call would pass

    @app.get("/search")                            # Flask: 429 + Retry-After when over
    @limiter.flask()                               # keyed by the client address
    def search(): ...

    @app.get("/items", dependencies=[Depends(limiter.fastapi())])   # FastAPI
    async def items(): ...

The buckets live in C++, sharded over 16 mutexes, and ``acquire`` runs without the GIL, so
threads of a WSGI server or a thread pool do not queue on each other. Memory is bounded by
``max_keys``: see docs/api.md for how buckets are dropped.

With ``redis="redis://host:port/db"`` the buckets live in Redis instead, shared by every
process (worker) that makes a limiter with the same ``rate``, ``burst`` and ``name``: one
script per call on Redis's clock, over a connection of the C++ core (its own thread; the call
waits without the GIL). While Redis does not answer, each process limits with its own buckets
(the same rate and burst) and counts that in ``stats()["redis_fallbacks"]``.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any, NamedTuple

from . import _core
from ._rate_text import parse_rate
from .errors import BrokerUnavailable

__all__ = ["Decision", "RateLimiter"]


class Decision(NamedTuple):
    """What :meth:`RateLimiter.acquire` answered. True when the call was allowed."""

    allowed: bool
    #: Seconds until the same call would pass (0.0 when it passed). Waiting exactly this long
    #: is enough.
    retry_after: float
    #: Tokens left in the bucket after the call (fractional while it refills).
    remaining: float

    def __bool__(self) -> bool:
        return self.allowed

    @property
    def retry_after_header(self) -> str:
        """``retry_after`` as an HTTP Retry-After value: whole seconds, rounded up."""
        return str(math.ceil(self.retry_after))


def _rejection(decision: Decision) -> dict[str, Any]:
    return {"error": "rate_limited", "retry_after": decision.retry_after}


class RateLimiter:
    """Token buckets by key: each key may spend ``burst`` tokens at once and gets ``rate``
    tokens back a second. Thread-safe; one limiter can serve a whole app.

    ``redis`` (a ``redis://`` URL, optionally ``?prefix=...``) shares the buckets with every
    process whose limiter has the same rate, burst and ``name`` (default: the rate and burst);
    see docs/api.md for what happens while Redis is unreachable."""

    def __init__(self, rate: float | str, burst: float | None = None, *, max_keys: int = 100_000,
                 redis: str | None = None, name: str | None = None) -> None:
        if isinstance(rate, str):
            # The limits package's notation ("100/minute"): N per period is a bucket of N
            # refilled over the period; burst= may still set its own size.
            rate, counted = parse_rate(rate)
            burst = counted if burst is None else burst
        elif burst is None:
            raise TypeError("burst is needed with a numeric rate (or give rate as '100/minute')")
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ValueError("max_keys must be a positive integer")
        self._limiter = _core.RateLimiter(float(rate), float(burst), max_keys)
        self._shared: _core.RedisRateLimiter | None = None
        self._fallbacks = 0
        if redis is not None:
            if not isinstance(redis, str):
                raise TypeError(f"redis must be a URL string, not {type(redis).__name__}")
            if name is not None and (not isinstance(name, str) or not name):
                raise ValueError("name must be a non-empty string")
            label = name if name is not None else f"{float(rate)!r}/{float(burst)!r}"
            self._shared = _core.RedisRateLimiter(redis, label, float(rate), float(burst))
        elif name is not None:
            raise ValueError("name is for limiters shared through redis=")

    @property
    def rate(self) -> float:
        return self._limiter.rate

    @property
    def burst(self) -> float:
        return self._limiter.burst

    @property
    def max_keys(self) -> int:
        return self._limiter.max_keys

    def acquire(self, key: str, cost: float = 1) -> Decision:
        """Takes ``cost`` tokens from ``key``'s bucket if it has them (a new key starts full);
        otherwise takes nothing. ``cost`` may be fractional, 0 (just a look) or up to
        ``burst``; more raises ``ValueError``, as such a call could never pass."""
        if not isinstance(key, str):
            raise TypeError(f"a rate limit key is a str, not {type(key).__name__}")
        if self._shared is not None:
            try:
                allowed, retry_after, remaining = self._shared.acquire(key, cost)
                return Decision(allowed, retry_after, remaining)
            except BrokerUnavailable:
                self._fallbacks += 1  # this process's own buckets until Redis answers
        allowed, retry_after, remaining = self._limiter.acquire(key, cost)
        return Decision(allowed, retry_after, remaining)

    def reset(self, key: str) -> bool:
        """Forgets ``key``: its next call finds a full bucket. Whether it was known. With
        ``redis=``, in Redis too (raises BrokerUnavailable when Redis does not answer)."""
        if not isinstance(key, str):
            raise TypeError(f"a rate limit key is a str, not {type(key).__name__}")
        local = self._limiter.reset(key)
        if self._shared is not None:
            return self._shared.reset(key) or local
        return local

    def sweep(self) -> int:
        """Drops the buckets that have refilled to full (they are the same as new ones); the
        number dropped. Optional: adding keys drops idle buckets as it goes."""
        return self._limiter.sweep()

    def stats(self) -> dict[str, int]:
        """``keys`` held now; ``expired``: full buckets dropped (nothing lost); ``evicted``:
        buckets dropped before they refilled, to stay within ``max_keys`` (all three about
        this process's buckets). With ``redis=``: ``redis_fallbacks``, calls this process
        answered with its own buckets because Redis did not."""
        stats = self._limiter.stats()
        if self._shared is not None:
            stats["redis_fallbacks"] = self._fallbacks
        return stats

    def __len__(self) -> int:
        return len(self._limiter)

    @property
    def shared(self) -> bool:
        """Whether the buckets are shared through Redis (``redis=``)."""
        return self._shared is not None

    def __repr__(self) -> str:
        shared = ", redis=..." if self._shared is not None else ""
        return (f"RateLimiter(rate={self.rate:g}, burst={self.burst:g}, "
                f"max_keys={self.max_keys}{shared})")

    # ---- Flask ---------------------------------------------------------------------------------

    def flask(self, key: Callable[[Any], str | None] | None = None, *,
              cost: float = 1) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """A view decorator. Over the limit, the view does not run and the client gets 429
        with ``Retry-After`` (whole seconds, rounded up) and the JSON body
        ``{"error": "rate_limited", "retry_after": <seconds>}``.

        ``key(request)`` names the bucket (default: the client address, ``remote_addr``);
        returning None lets the request through unlimited. Put it below ``@app.route``."""

        from ._extras import requires_extra

        with requires_extra("flask", "RateLimiter.flask"):
            import flask

        def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
            def check() -> Any:
                request = flask.request
                k = key(request) if key is not None else (request.remote_addr or "unknown")
                if k is None:
                    return None
                decision = self.acquire(k, cost)
                if decision.allowed:
                    return None
                response = flask.jsonify(_rejection(decision))
                response.status_code = 429
                response.headers["Retry-After"] = decision.retry_after_header
                return response

            if inspect.iscoroutinefunction(view):
                @functools.wraps(view)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    refused = check()
                    return refused if refused is not None else await view(*args, **kwargs)

                return async_wrapper

            @functools.wraps(view)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                refused = check()
                return refused if refused is not None else view(*args, **kwargs)

            return wrapper

        return decorate

    # ---- FastAPI -------------------------------------------------------------------------------

    def fastapi(self, key: Callable[[Any], Any] | None = None, *,
                cost: float = 1) -> Callable[..., Any]:
        """A FastAPI dependency: ``Depends(limiter.fastapi())``, in a route's parameters (it
        then gives the :class:`Decision`) or in ``dependencies=[...]`` of a route, a router or
        the app. Over the limit it raises ``HTTPException(429)`` with ``Retry-After`` (whole
        seconds, rounded up) and the detail ``{"error": "rate_limited", "retry_after": ...}``.

        ``key(request)`` (sync or async) names the bucket (default: the client host);
        returning None lets the request through unlimited (the dependency then gives None)."""
        from ._extras import requires_extra

        with requires_extra("fastapi", "RateLimiter.fastapi"):
            from fastapi import HTTPException, Request

        async def rate_limit(request: Request) -> Decision | None:
            if key is None:
                k = request.client.host if request.client is not None else "unknown"
            else:
                k = key(request)
                if inspect.isawaitable(k):
                    k = await k
                if k is None:
                    return None
            decision = self.acquire(k, cost)
            if not decision.allowed:
                raise HTTPException(status_code=429, detail=_rejection(decision),
                                    headers={"Retry-After": decision.retry_after_header})
            return decision

        # Annotations here are strings (postponed evaluation) that FastAPI would look up in this
        # module's globals, where Request is not: hand it the real signature.
        rate_limit.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                               annotation=Request)])
        return rate_limit
