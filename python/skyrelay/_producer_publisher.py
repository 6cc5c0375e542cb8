"""What :class:`~skyrelay.Producer` and :class:`~skyrelay.AsyncProducer` share, without I/O:
their settings, how an event becomes JSON, the bytes of a publish request, and the rule that
turns an answer (or a failure) into results, a retry after a delay, or an error. The two
classes are thin loops around it (habit 9: one implementation, thin sync/async adapters).
"""

from __future__ import annotations

import json
import os
import random
import ssl
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Union
from urllib.parse import urlsplit

from ._producer_http import (ProxyRefused, Response, check_header_value, make_route,
                             proxy_for, request_bytes)
from ._producer_nan import NAN_POLICIES, encode_payload

_RETRY_STATUSES = {409, 429, 500, 502, 503, 504}

Names = Union[str, Iterable[str], None]


class PublishError(Exception):
    """The server refused a publication (a 4xx), or it could not be reached after retries."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Published:
    """What one publication was given: its unique id (``"<process>:<n>"``, for logs; not a
    resume point), how many connections it was queued for, and when it went to exactly one
    room, that room's ``topic``, ``seq`` and ``epoch`` (what a JSON-protocol client resumes
    from with ``since``)."""

    id: str
    delivered: int
    topic: str | None = None
    seq: int | None = None
    duplicate: bool = False  # an earlier request with the same key already published it
    epoch: str | None = None


def _results(body: bytes) -> list[Published]:
    """The ``published`` list of a 200 (one object for a single event)."""
    try:
        result = json.loads(body)
        published = result["published"]
        dup = bool(result.get("duplicate"))
        return [Published(p["id"], p["delivered"], p.get("topic"), p.get("seq"), dup,
                          p.get("epoch"))
                for p in (published if isinstance(published, list) else [published])]
    except (ValueError, TypeError, KeyError) as error:
        # Something else answered 200 (a captive portal, a misrouted proxy): not ours.
        raise PublishError(f"a 200 that is not the publish API's answer: {body[:80]!r}",
                           200) from error


def _ssl_context(verify: bool | str | ssl.SSLContext) -> ssl.SSLContext:
    """As httpx's ``verify``: True (the system's CAs), a CA file, a context, or False."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=None if verify is True else str(verify))


class Publisher:
    """The settings and rules of one producer (see Producer for the arguments)."""

    def __init__(self, url: str, token: str | None, *, timeout: float = 10.0,
                 retries: int = 5, backoff: float = 0.2, max_backoff: float = 5.0,
                 batch_size: int = 500, default: Callable[[Any], Any] | None = None,
                 nan: str = "null", proxy: str | None = None, trust_env: bool = True,
                 verify: bool | str | ssl.SSLContext = True, max_connections: int = 4) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be http(s)://host[:port], not {url!r}")
        if not 1 <= batch_size <= 1000:
            raise ValueError("batch_size must be 1 to 1000 (the server's batch limit)")
        if nan not in NAN_POLICIES:
            raise ValueError(f"nan must be one of {', '.join(map(repr, NAN_POLICIES))}, "
                             f"not {nan!r}")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        self.route = make_route(parts.hostname, port, tls,
                                proxy_for(parts.scheme, parts.hostname, proxy, trust_env))
        self.context = _ssl_context(verify) if tls else None
        base = parts.path.rstrip("/")
        self.path = base if base.endswith("/api/publish") else base + "/api/publish"
        token = token if token is not None else os.environ.get("SKYRELAY_TOKEN")
        self.token = check_header_value("token", token) if token else None
        self.timeout, self.retries = timeout, retries
        self.backoff, self.max_backoff = backoff, max_backoff
        self.batch_size, self.max_connections = batch_size, max_connections
        self.default, self.nan = default, nan

    def event_json(self, event: str, data: Any, to: Names, skip: Names,
                   namespace: str | None, policy: str | None) -> str:
        """One event as JSON text: serialized (and the NaN policy applied) at once, so a bad
        payload raises here, before anything is sent."""
        if not isinstance(event, str) or not event:
            raise ValueError("event must be a non-empty string")
        payload = encode_payload(data, self.default, self.nan)
        parts = ['{"event":', json.dumps(event), ',"data":', payload.decode("utf-8")]
        for name, value in (("to", to), ("skip", skip)):
            if value is not None:
                names = [value] if isinstance(value, str) else [str(v) for v in value]
                parts += [',"', name, '":', json.dumps(names)]
        if namespace is not None:
            parts += [',"namespace":', json.dumps(namespace)]
        if policy is not None:
            parts += [',"policy":', json.dumps(policy)]
        parts.append("}")
        return "".join(parts)

    def chunks(self, events: list[str]) -> list[str]:
        """Request bodies of at most ``batch_size`` events each, in order."""
        size = self.batch_size
        return ['{"events":[' + ",".join(events[i:i + size]) + "]}"
                for i in range(0, len(events), size)]

    def request(self, body: str, key: str | None) -> bytes:
        """The request for ``body``, with ``key`` (or a fresh one) as its idempotency key:
        every retry sends these same bytes."""
        headers = {"Content-Type": "application/json",
                   "Idempotency-Key": key or uuid.uuid4().hex}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return request_bytes(self.route, self.path, headers, body.encode("utf-8"))

    def outcome(self, answer: Response | None, error: BaseException | None,
                attempt: int) -> list[Published] | float:
        """The results of a 200; else the delay before the next attempt; else PublishError."""
        if answer is not None and answer.status == 200:
            return _results(answer.body)
        status = answer.status if answer is not None else None
        if isinstance(error, ProxyRefused):
            status = error.status
        if status is None:
            # A certificate the client does not trust stays untrusted on a retry.
            retryable = not isinstance(error, ssl.SSLCertVerificationError)
        else:
            retryable = status in _RETRY_STATUSES
        if answer is not None and status == 409 and b"idempotency_key_reused" in answer.body:
            retryable = False  # the key went with another body: retrying cannot help
        if retryable and attempt < self.retries:
            delay = min(self.max_backoff, self.backoff * 2 ** attempt)
            return delay * random.uniform(0.5, 1.0)
        if answer is None:
            if isinstance(error, ProxyRefused):
                raise PublishError(str(error), error.status, "proxy_refused") from error
            raise PublishError(f"cannot reach the server: {error}") from error
        try:
            detail = json.loads(answer.body)
        except ValueError:
            detail = {}
        if not isinstance(detail, dict):
            detail = {}
        raise PublishError(detail.get("message") or f"HTTP {answer.status} {answer.reason}",
                           answer.status, detail.get("error"))
