"""Publishing from scripts, notebooks and other processes, over the HTTP publish API.

    from skyrelay import Producer

    with Producer("http://127.0.0.1:8000", token="...") as producer:
        producer.emit("telemetry_update", {"flow": 41.7}, to="WELL-001")
        with producer.batch() as batch:          # one request per 500 events
            for row in frame.itertuples():
                batch.emit("reading", row._asdict(), to=row.well)

Every request carries an idempotency key, so a retry after a timeout or a dropped connection
never publishes twice. numpy arrays and scalars, pandas rows and frames, dataclasses, datetimes,
enums, sets and UUIDs are turned into JSON; ``bytes`` become base64 strings.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .encoding import encode_base64

__all__ = ["AsyncBatch", "AsyncProducer", "Batch", "Producer", "PublishError", "Published"]

_RETRY_STATUSES = {409, 429, 500, 502, 503, 504}


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


class Producer:
    """A client of ``POST /api/publish``; thread-safe, one keep-alive connection.

    ``url`` is the server's base URL (``http://host:port``); ``token`` defaults to the
    ``SKYRELAY_TOKEN`` environment variable. Failed requests (connection errors, 5xx, 429, 409)
    are retried up to ``retries`` times with exponential backoff and the same idempotency key.
    """

    def __init__(self, url: str = "http://127.0.0.1:8000", token: str | None = None, *,
                 timeout: float = 10.0, retries: int = 5, backoff: float = 0.2,
                 max_backoff: float = 5.0, batch_size: int = 500,
                 default: Callable[[Any], Any] | None = None) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be http(s)://host[:port], not {url!r}")
        if not 1 <= batch_size <= 1000:
            raise ValueError("batch_size must be 1 to 1000 (the server's batch limit)")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        base = parts.path.rstrip("/")
        self._path = base if base.endswith("/api/publish") else base + "/api/publish"
        self._token = token if token is not None else os.environ.get("SKYRELAY_TOKEN")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.batch_size = batch_size
        self._default = default
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    # -- publishing ---------------------------------------------------------------------------

    def emit(self, event: str, data: Any = None, *, to: str | Iterable[str] | None = None,
             skip: str | Iterable[str] | None = None, namespace: str | None = None,
             policy: str | None = None, idempotency_key: str | None = None) -> Published:
        """Publishes one event and returns what the server gave it."""
        body = '{"events":[' + self._event_json(event, data, to, skip, namespace, policy) + "]"
        return self._post(body, idempotency_key)[0]

    def emit_many(self, events: Iterable[dict[str, Any]]) -> list[Published]:
        """Publishes dicts with the keys of :meth:`emit` (``event``, ``data``, ``to``...), in
        requests of ``batch_size``; returns one result per event, in order."""
        with self.batch() as batch:
            for e in events:
                batch.emit(**e)
        return batch.results

    def batch(self) -> Batch:
        """A context manager collecting events; they go out in requests of ``batch_size`` (as
        the batch fills, and at the end of the block)."""
        return Batch(self)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def _event_json(self, event: str, data: Any, to: Any, skip: Any, namespace: str | None,
                    policy: str | None) -> str:
        if not isinstance(event, str) or not event:
            raise ValueError("event must be a non-empty string")
        payload = encode_base64(data, self._default)
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

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self.timeout)
        return self._conn

    def _post(self, events_body: str, key: str | None) -> list[Published]:
        """Sends `events_body` (a batch object without its closing brace) and retries."""
        key = key or uuid.uuid4().hex
        body = (events_body + "}").encode("utf-8")
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        attempt = 0
        while True:
            status, answer, error = self._request(body, headers)
            if status == 200:
                result = json.loads(answer)
                dup = bool(result.get("duplicate"))
                return [Published(p["id"], p["delivered"], p.get("topic"), p.get("seq"), dup,
                                  p.get("epoch")) for p in result["published"]]
            retryable = status is None or status in _RETRY_STATUSES
            if status == 409 and b"idempotency_key_reused" in answer:
                retryable = False  # the key went with another body: retrying cannot help
            if not retryable or attempt >= self.retries:
                if status is None:
                    raise PublishError(f"cannot reach the server: {error}")
                try:
                    detail = json.loads(answer)
                except ValueError:
                    detail = {}
                raise PublishError(detail.get("message") or f"HTTP {status}", status,
                                   detail.get("error"))
            delay = min(self.max_backoff, self.backoff * 2 ** attempt)
            time.sleep(delay * random.uniform(0.5, 1.0))
            attempt += 1

    def _request(self, body: bytes, headers: dict[str, str]
                 ) -> tuple[int | None, bytes, BaseException | None]:
        with self._lock:
            conn = self._connection()
            try:
                conn.request("POST", self._path, body=body, headers=headers)
                response = conn.getresponse()
                answer = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    self._conn = None
                return response.status, answer, None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._conn = None
                return None, b"", exc


class Batch:
    """Collects events for :meth:`Producer.batch`; ``results`` holds what each one got."""

    def __init__(self, producer: Producer) -> None:
        self._producer = producer
        self._pending: list[str] = []
        self.results: list[Published] = []

    def emit(self, event: str, data: Any = None, *, to: str | Iterable[str] | None = None,
             skip: str | Iterable[str] | None = None, namespace: str | None = None,
             policy: str | None = None) -> None:
        self._pending.append(self._producer._event_json(event, data, to, skip, namespace, policy))
        if len(self._pending) >= self._producer.batch_size:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            body = '{"events":[' + ",".join(self._pending) + "]"
            self._pending = []
            self.results += self._producer._post(body, None)

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.flush()


class AsyncBatch:
    """The collector of :meth:`AsyncProducer.batch`; ``results`` as in :class:`Batch`."""

    def __init__(self, producer: Producer) -> None:
        self._batch = Batch(producer)
        self._producer = producer

    @property
    def results(self) -> list[Published]:
        return self._batch.results

    def emit(self, event: str, data: Any = None, **kwargs: Any) -> None:
        self._batch._pending.append(self._producer._event_json(
            event, data, kwargs.get("to"), kwargs.get("skip"), kwargs.get("namespace"),
            kwargs.get("policy")))

    async def flush(self) -> None:
        pending, self._batch._pending = self._batch._pending, []
        size = self._producer.batch_size
        for i in range(0, len(pending), size):
            body = '{"events":[' + ",".join(pending[i:i + size]) + "]"
            self._batch.results += await asyncio.to_thread(self._producer._post, body, None)

    async def __aenter__(self) -> AsyncBatch:
        return self

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            await self.flush()


class AsyncProducer:
    """The asyncio form of :class:`Producer`: the same arguments and methods, awaitable.
    Requests run in a worker thread, so the event loop never blocks on the network."""

    def __init__(self, url: str = "http://127.0.0.1:8000", token: str | None = None,
                 **options: Any) -> None:
        self._sync = Producer(url, token, **options)

    async def emit(self, event: str, data: Any = None, **kwargs: Any) -> Published:
        return await asyncio.to_thread(self._sync.emit, event, data, **kwargs)

    async def emit_many(self, events: Iterable[dict[str, Any]]) -> list[Published]:
        events = list(events)
        return await asyncio.to_thread(self._sync.emit_many, events)

    def batch(self) -> AsyncBatch:
        """``async with producer.batch() as batch:``; ``batch.emit(...)`` only queues (it
        serializes at once), the requests go out from a worker thread."""
        return AsyncBatch(self._sync)

    async def close(self) -> None:
        await asyncio.to_thread(self._sync.close)

    async def __aenter__(self) -> AsyncProducer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
