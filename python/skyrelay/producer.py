"""Publishing from scripts, notebooks and other processes, over the HTTP publish API.

    from skyrelay import Producer

    with Producer("http://127.0.0.1:8000", token="...") as producer:
        producer.emit("telemetry_update", {"flow": 41.7}, to="WELL-001")
        with producer.batch() as batch:          # one request per 500 events
            for row in frame.itertuples():
                batch.emit("reading", row._asdict(), to=row.well)

Every request carries an idempotency key, so a retry after a timeout or a dropped connection
never publishes twice. numpy arrays and scalars, pandas rows and frames, dataclasses, datetimes,
enums, sets and UUIDs are turned into JSON; ``bytes`` become base64 strings; NaN, infinities
and pandas' NA/NaT become null unless ``nan="error"``.

Standard library only, and no compiled code: this module and its ``_producer_*`` parts run
from a copy of the package's ``.py`` files. The parts: ``_producer_publisher`` (settings,
encoding, the retry rule), ``_producer_http`` (requests, proxies, the response parser),
``_producer_pool`` (blocking and asyncio keep-alive connections), ``_producer_nan``.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Iterable
from typing import Any

from ._producer_publisher import Names, Publisher, PublishError, Published
from ._producer_http import ProxyRefused
from ._producer_pool import NETWORK_ERRORS, AsyncPool, Pool

__all__ = ["AsyncBatch", "AsyncProducer", "Batch", "Producer", "PublishError", "Published"]

# Defined beside the rules that make them; named here, where users import them from.
PublishError.__module__ = Published.__module__ = __name__


# A request that got no answer: judged (retried or raised) by Publisher.outcome.
_FAILURES = (*NETWORK_ERRORS, ProxyRefused)


class Producer:
    """A client of ``POST /api/publish``; thread-safe, with up to ``max_connections``
    keep-alive connections (one per thread publishing at the same time).

    ``url`` is the server's base URL (``http://host:port``); ``token`` defaults to the
    ``SKYRELAY_TOKEN`` environment variable. Failed requests (connection errors, 5xx, 429, 409)
    are retried up to ``retries`` times with exponential backoff and the same idempotency key.
    ``nan="null"`` sends NaN, infinities and pandas' NA/NaT as null; ``nan="error"`` raises
    ValueError naming the field. ``proxy`` (``http://[user:password@]host:port``, ``""`` for
    none) overrides HTTP_PROXY/HTTPS_PROXY/ALL_PROXY/NO_PROXY, which are read when
    ``trust_env`` is true. ``verify``: True, a CA file, an ``ssl.SSLContext``, or False.
    """

    def __init__(self, url: str = "http://127.0.0.1:8000", token: str | None = None, *,
                 timeout: float = 10.0, retries: int = 5, backoff: float = 0.2,
                 max_backoff: float = 5.0, batch_size: int = 500,
                 default: Callable[[Any], Any] | None = None, nan: str = "null",
                 proxy: str | None = None, trust_env: bool = True,
                 verify: bool | str | ssl.SSLContext = True, max_connections: int = 4) -> None:
        self._core = Publisher(url, token, timeout=timeout, retries=retries, backoff=backoff,
                               max_backoff=max_backoff, batch_size=batch_size, default=default,
                               nan=nan, proxy=proxy, trust_env=trust_env, verify=verify,
                               max_connections=max_connections)
        core = self._core
        self._pool = Pool(core.route, core.max_connections, core.timeout, core.context)

    @property
    def batch_size(self) -> int:
        return self._core.batch_size

    def emit(self, event: str, data: Any = None, *, to: Names = None, skip: Names = None,
             namespace: str | None = None, policy: str | None = None,
             idempotency_key: str | None = None) -> Published:
        """Publishes one event and returns what the server gave it."""
        event_json = self._core.event_json(event, data, to, skip, namespace, policy)
        return self._post(self._core.chunks([event_json])[0], idempotency_key)[0]

    def emit_many(self, events: Iterable[dict[str, Any]]) -> list[Published]:
        """Publishes dicts with the keys of :meth:`emit` (``event``, ``data``, ``to``...), in
        requests of ``batch_size``; returns one result per event, in order."""
        with self.batch() as batch:
            for e in events:
                batch.emit(**e)
        return batch.results

    def batch(self) -> Batch:
        """A context manager collecting events; they go out in requests of ``batch_size`` (as
        the batch fills, and at the end of the block), one after another."""
        return Batch(self)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, body: str, key: str | None) -> list[Published]:
        request = self._core.request(body, key)
        attempt = 0
        while True:
            try:
                step = self._core.outcome(self._pool.exchange(request), None, attempt)
            except _FAILURES as error:
                step = self._core.outcome(None, error, attempt)
            if isinstance(step, list):
                return step
            time.sleep(step)
            attempt += 1


class _Collector:
    """The pending events of a batch, serialized as they are added."""

    def __init__(self, core: Publisher) -> None:
        self._core = core
        self._pending: list[str] = []
        self.results: list[Published] = []

    def _add(self, event: str, data: Any, to: Names, skip: Names, namespace: str | None,
             policy: str | None) -> None:
        self._pending.append(self._core.event_json(event, data, to, skip, namespace, policy))

    def _take(self) -> list[str]:
        bodies = self._core.chunks(self._pending)
        self._pending = []
        return bodies


class Batch(_Collector):
    """Collects events for :meth:`Producer.batch`; ``results`` holds what each one got."""

    def __init__(self, producer: Producer) -> None:
        super().__init__(producer._core)
        self._producer = producer

    def emit(self, event: str, data: Any = None, *, to: Names = None, skip: Names = None,
             namespace: str | None = None, policy: str | None = None) -> None:
        self._add(event, data, to, skip, namespace, policy)
        if len(self._pending) >= self._core.batch_size:
            self.flush()

    def flush(self) -> None:
        for body in self._take():
            self.results += self._producer._post(body, None)

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.flush()


class AsyncProducer:
    """The asyncio form of :class:`Producer`: the same arguments and methods, awaitable, on
    asyncio's own sockets. Up to ``max_connections`` requests are in flight at once (the
    emits of concurrent tasks); more wait for a free connection. Use it from one event loop.
    """

    def __init__(self, url: str = "http://127.0.0.1:8000", token: str | None = None,
                 **options: Any) -> None:
        self._core = Publisher(url, token, **options)
        core = self._core
        self._pool = AsyncPool(core.route, core.max_connections, core.timeout, core.context)

    async def emit(self, event: str, data: Any = None, *, to: Names = None,
                   skip: Names = None, namespace: str | None = None, policy: str | None = None,
                   idempotency_key: str | None = None) -> Published:
        event_json = self._core.event_json(event, data, to, skip, namespace, policy)
        return (await self._post(self._core.chunks([event_json])[0], idempotency_key))[0]

    async def emit_many(self, events: Iterable[dict[str, Any]]) -> list[Published]:
        async with self.batch() as batch:
            for e in events:
                batch.emit(**e)
        return batch.results

    def batch(self) -> AsyncBatch:
        """``async with producer.batch() as batch:``; ``batch.emit(...)`` only queues (it
        serializes at once); the requests go out one after another at the end."""
        return AsyncBatch(self)

    async def close(self) -> None:
        self._pool.close()

    async def __aenter__(self) -> AsyncProducer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _post(self, body: str, key: str | None) -> list[Published]:
        request = self._core.request(body, key)
        attempt = 0
        while True:
            try:
                step = self._core.outcome(await self._pool.exchange(request), None, attempt)
            except _FAILURES as error:
                step = self._core.outcome(None, error, attempt)
            if isinstance(step, list):
                return step
            await asyncio.sleep(step)
            attempt += 1


class AsyncBatch(_Collector):
    """The collector of :meth:`AsyncProducer.batch`; ``results`` as in :class:`Batch`."""

    def __init__(self, producer: AsyncProducer) -> None:
        super().__init__(producer._core)
        self._producer = producer

    def emit(self, event: str, data: Any = None, *, to: Names = None, skip: Names = None,
             namespace: str | None = None, policy: str | None = None) -> None:
        self._add(event, data, to, skip, namespace, policy)

    async def flush(self) -> None:
        for body in self._take():
            self.results += await self._producer._post(body, None)

    async def __aenter__(self) -> AsyncBatch:
        return self

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            await self.flush()
