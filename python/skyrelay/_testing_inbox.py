"""What a test client has received and not yet taken, with waits that end in a clear failure.

One matching rule for every test client: :meth:`take` removes the first item a predicate
accepts, so items a test does not ask for stay queued for a later ``expect``. The sync inbox is
filled from a reader thread; the async one from tasks of one event loop (and read only there).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any


class ExpectationTimeout(AssertionError):
    """Raised when an expected frame or event did not arrive in time (or the connection ended
    first). An AssertionError, so pytest reports it as a failed expectation."""


Match = Callable[[Any], bool]


def _pop_first(items: list[Any], match: Match) -> tuple[bool, Any]:
    for i, item in enumerate(items):
        if match(item):
            return True, items.pop(i)
    return False, None


class Inbox:
    """Items received on a reader thread, taken by the test's thread."""

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._cond = threading.Condition()
        self.ended: str | None = None  # why nothing more will come, once nothing will

    def put(self, item: Any) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def end(self, why: str) -> None:
        with self._cond:
            if self.ended is None:
                self.ended = why
            self._cond.notify_all()

    def take(self, match: Match, timeout: float, what: str) -> Any:
        """Removes and returns the first item ``match`` accepts, waiting up to ``timeout``
        seconds; raises ExpectationTimeout naming ``what`` when none comes."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found, item = _pop_first(self._items, match)
                if found:
                    return item
                left = _time_left(self._items, self.ended, deadline - time.monotonic(),
                                  timeout, what)
                self._cond.wait(left)

    def expect_nothing(self, within: float) -> None:
        """Asserts that nothing arrives within ``within`` seconds."""
        try:
            item = self.take(lambda _: True, within, "an event")
        except AssertionError:
            return
        raise AssertionError(f"unexpected event: {item!r}")

    def wait_ended(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.ended is not None, timeout)

    def drain(self) -> list[Any]:
        with self._cond:
            items, self._items = self._items, []
        return items


class AsyncInbox:
    """Items received by tasks of one event loop, awaited in that loop."""

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._changed = asyncio.Event()
        self.ended: str | None = None

    def put(self, item: Any) -> None:
        self._items.append(item)
        self._changed.set()

    def end(self, why: str) -> None:
        if self.ended is None:
            self.ended = why
        self._changed.set()

    async def take(self, match: Match, timeout: float, what: str) -> Any:
        """The awaitable form of :meth:`Inbox.take`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found, item = _pop_first(self._items, match)
            if found:
                return item
            left = _time_left(self._items, self.ended, deadline - loop.time(), timeout, what)
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    def drain(self) -> list[Any]:
        items, self._items = self._items, []
        return items


def _time_left(items: list[Any], ended: str | None, left: float, timeout: float,
               what: str) -> float:
    """``left`` when waiting may go on; else the ExpectationTimeout that says why not."""
    if ended is not None:
        raise ExpectationTimeout(f"{ended} before {what} arrived; queued: {items[:5]!r}")
    if left <= 0:
        raise ExpectationTimeout(f"no {what} within {timeout}s; queued: {items[:5]!r}")
    return left
