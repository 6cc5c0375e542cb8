"""The C++ core's log records, into Python's :mod:`logging` (docs/deployment.md "Logs").

The core's I/O threads never call Python: they put structured records (level, logger, event,
fields) on a bounded queue, and only when the logger they belong to is enabled for that level.
One thread per server, :class:`CoreLogPump`, takes them in batches and hands each to its logger
(``skyrelay.core``, ``skyrelay.core.connection``, ``skyrelay.core.auth``,
``skyrelay.core.limits``, ``skyrelay.core.broker``) with the time the core stamped on it. The
same thread keeps the core's idea of each logger's level in step with Python's, every half
second, so ``logging.getLogger("skyrelay.core").setLevel(logging.INFO)`` takes effect at run
time. Records the queue cannot hold are dropped and counted on ``/metrics``
(``skyrelay_log_records_dropped_total``).
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
import weakref
from typing import Any

from . import _core
from ._threads import name_os_thread

# Above CRITICAL: the core builds no record for a logger at this level.
LEVEL_OFF = 1000
# How often the loggers' levels are read again, and how long one take() waits for records
# while they flow (the I/O threads do not wake the pump then). After a take() that found none,
# the pump sleeps until its next level sync and the next record wakes it: an idle server's pump
# wakes twice a second, not ten times.
LEVEL_SYNC_INTERVAL = 0.5
TAKE_WAIT = 0.1
TAKE_BATCH = 512

# Attribute names of a LogRecord: a field named like one goes in as ``field_<name>`` instead
# (makeRecord refuses to overwrite them).
_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime"}


def effective_level(logger: logging.Logger) -> int:
    """The lowest level ``logger`` emits: its effective level, raised by ``logging.disable``
    and LEVEL_OFF when the logger is disabled."""
    if logger.disabled:
        return LEVEL_OFF
    level = logger.getEffectiveLevel()
    disabled_up_to = logger.manager.disable
    return max(level, disabled_up_to + 1) if disabled_up_to else level


def _text(value: Any) -> str:
    """A field's value in the message: bare unless it needs quotes (logfmt style)."""
    s = str(value)
    if s == "" or any(c in s for c in ' ="\\\n'):
        return json.dumps(s)
    return s


def make_record(name: str, level: int, event: str, created: float,
                fields: dict[str, Any]) -> logging.LogRecord:
    """A LogRecord for one core record: the message is ``event key=value ...``, and the event
    and fields are attributes too (``record.event``, ``record.sid``...) for structured
    formatters; ``created`` is when the core made it, not when it was drained."""
    logger = logging.getLogger(name)
    message = event + "".join(f" {k}={_text(v)}" for k, v in fields.items())
    extra = {"event": event}
    for key, value in fields.items():
        extra[f"field_{key}" if key in _RESERVED or key == "event" else key] = value
    record = logger.makeRecord(name, level, "(skyrelay core)", 0, message, (), None,
                               extra=extra)
    record.created = created
    record.msecs = (created - int(created)) * 1000
    record.relativeCreated = (created - logging._startTime) * 1000  # type: ignore[attr-defined]
    return record


# Pumps whose thread runs: stopped at exit, so that no daemon thread is waiting inside the
# core (without the GIL) when the interpreter finalizes, which would abort the process.
_running: weakref.WeakSet[CoreLogPump] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for pump in list(_running):
        pump.stop(timeout=1.0)


class CoreLogPump:
    """Drains one server's :class:`skyrelay._core.LogQueue` on a daemon thread (a server left
    running at exit must not keep the process alive)."""

    def __init__(self, queue: _core.LogQueue) -> None:
        self._queue = queue
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._levels: dict[str, int] = {}

    def sync_levels(self) -> None:
        """Tells the core each logger's current level (only the ones that changed)."""
        for name in _core.LogQueue.loggers:
            level = effective_level(logging.getLogger(name))
            if self._levels.get(name) != level:
                self._queue.set_level(name, level)
                self._levels[name] = level

    def start(self) -> None:
        """Before the core starts: the levels are set, then the thread runs."""
        self._queue.reopen()
        self._stopping.clear()
        self._levels.clear()
        self.sync_levels()
        self._thread = threading.Thread(target=self._run, name="skyrelay-core-log", daemon=True)
        self._thread.start()
        _running.add(self)

    def stop(self, timeout: float = 5.0) -> None:
        """After the core stopped: what is queued is logged, then the thread ends (a handler
        that blocks makes this give up after ``timeout``)."""
        thread = self._thread
        if thread is None:
            return
        _running.discard(self)
        self._stopping.set()
        self._queue.close()
        if thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        name_os_thread("skyrelay-log")
        next_sync = time.monotonic() + LEVEL_SYNC_INTERVAL
        idle = False
        while True:
            if idle:
                batch = self._queue.take(TAKE_BATCH, max(0.0, next_sync - time.monotonic()), True)
            else:
                batch = self._queue.take(TAKE_BATCH, TAKE_WAIT)
            idle = not batch
            for name, level, event, created, fields in batch:
                logger = logging.getLogger(name)
                if logger.isEnabledFor(level):
                    logger.handle(make_record(name, level, event, created, fields))
            if not batch and self._stopping.is_set():
                return
            if time.monotonic() >= next_sync:
                self.sync_levels()
                next_sync = time.monotonic() + LEVEL_SYNC_INTERVAL
