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
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any, NamedTuple

from . import _core

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
    tokens back a second. Thread-safe; one limiter can serve a whole app."""

    def __init__(self, rate: float, burst: float, *, max_keys: int = 100_000) -> None:
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ValueError("max_keys must be a positive integer")
        self._limiter = _core.RateLimiter(float(rate), float(burst), max_keys)

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
        allowed, retry_after, remaining = self._limiter.acquire(key, cost)
        return Decision(allowed, retry_after, remaining)

    def reset(self, key: str) -> bool:
        """Forgets ``key``: its next call finds a full bucket. Whether it was known."""
        if not isinstance(key, str):
            raise TypeError(f"a rate limit key is a str, not {type(key).__name__}")
        return self._limiter.reset(key)

    def sweep(self) -> int:
        """Drops the buckets that have refilled to full (they are the same as new ones); the
        number dropped. Optional: adding keys drops idle buckets as it goes."""
        return self._limiter.sweep()

    def stats(self) -> dict[str, int]:
        """``keys`` held now; ``expired``: full buckets dropped (nothing lost); ``evicted``:
        buckets dropped before they refilled, to stay within ``max_keys``."""
        return self._limiter.stats()

    def __len__(self) -> int:
        return len(self._limiter)

    def __repr__(self) -> str:
        return (f"RateLimiter(rate={self.rate:g}, burst={self.burst:g}, "
                f"max_keys={self.max_keys})")

    # ---- Flask ---------------------------------------------------------------------------------

    def flask(self, key: Callable[[Any], str | None] | None = None, *,
              cost: float = 1) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """A view decorator. Over the limit, the view does not run and the client gets 429
        with ``Retry-After`` (whole seconds, rounded up) and the JSON body
        ``{"error": "rate_limited", "retry_after": <seconds>}``.

        ``key(request)`` names the bucket (default: the client address, ``remote_addr``);
        returning None lets the request through unlimited. Put it below ``@app.route``."""

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
