"""JWT keys from a JWKS URL (RFC 7517), kept fresh while the server runs.

The C++ verifier reads its keys from a ``_core.JWTKeySet``: an immutable list swapped whole,
so I/O threads verify tokens without a lock while this module replaces the list. Everything
that touches the network happens here, on one daemon thread per JWKS source, never on an I/O
thread: the first fetch when the server starts (a failure fails the start), then a refresh
every Cache-Control max-age (within bounds), and an early one when a token names a kid the set
does not hold, at most once per ``refetch_interval`` so that made-up kids cannot make the
server hammer the identity provider. A failed fetch keeps the last good keys, and is logged
and counted (``skyrelay_jwks_refresh_failures_total``). docs/security.md has the user's view.
"""

from __future__ import annotations

import atexit
import ipaddress
import json
import logging
import re
import ssl
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from ._threads import os_named

log = logging.getLogger("skyrelay.jwks")

MAX_DOCUMENT_BYTES = 1024 * 1024  # a JWKS holds a handful of keys; a bigger one is refused
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)


# Sources whose refresher runs; stopped at exit, before the interpreter finalizes, so that no
# thread is waiting in C++ with the GIL released when the runtime goes away.
_running: weakref.WeakSet[JWKSSource] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for source in list(_running):
        source._end_thread()


class JWKSError(ConnectionError):
    """A JWKS document could not be fetched or holds no usable key."""


def check_url(url: str) -> str:
    """The URL, if it is https, or http to a loopback host (a sidecar on the same machine);
    anything else is ValueError: keys fetched in the clear could be swapped on the way."""
    if not isinstance(url, str) or not url:
        raise TypeError("jwks_url must be a non-empty string")
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return url
    raise ValueError(f"jwks_url must be https:// (http:// only to a loopback host), not {url!r}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _SameRulesRedirect(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to a URL that check_url accepts (no https -> http)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        try:
            check_url(newurl)
        except (TypeError, ValueError):
            raise urllib.error.HTTPError(newurl, code, f"redirect to {newurl!r} refused",
                                         headers, fp) from None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def max_age(cache_control: str | None, age: str | None = None) -> float | None:
    """Seconds a response stays fresh by its Cache-Control max-age less its Age header, or
    None when it does not say; ``no-cache``/``no-store`` count as 0."""
    if not cache_control:
        return None
    directives = cache_control.lower()
    if "no-cache" in directives or "no-store" in directives:
        return 0.0
    m = _MAX_AGE.search(cache_control)
    if m is None:
        return None
    seconds = float(m.group(1))
    try:
        seconds -= float(age) if age else 0.0
    except ValueError:
        pass
    return max(0.0, seconds)


class JWKSSource:
    """One JWKS URL feeding one key set, shared by every server that uses the JWTAuth."""

    def __init__(self, url: str, *, static_keys: Sequence[Any], refresh: float,
                 refresh_bounds: tuple[float, float], refetch_interval: float,
                 timeout: float, ssl_context: ssl.SSLContext | None) -> None:
        self.url = check_url(url)
        self.static_keys = tuple(static_keys)
        self.refresh = float(refresh)
        self.refresh_bounds = (float(refresh_bounds[0]), float(refresh_bounds[1]))
        self.refetch_interval = float(refetch_interval)
        self.timeout = float(timeout)
        handlers: list[Any] = [_SameRulesRedirect()]
        if ssl_context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=ssl_context))
        # build_opener keeps the defaults: proxies from the environment, the system CAs.
        self._opener = urllib.request.build_opener(*handlers)
        self._lock = threading.Lock()
        self._users = 0
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._key_set: Any = None
        self._kids: tuple[str, ...] = ()
        self._last_fetch = float("-inf")  # monotonic time of the last attempt
        self._failures = 0  # in a row, for the retry backoff

    @property
    def key_set(self) -> Any:
        """The ``_core.JWTKeySet`` the verifier reads (made on first use: it needs the engine)."""
        if self._key_set is None:
            from . import _core
            self._key_set = _core.JWTKeySet(jwks=True)
        return self._key_set

    # -- lifecycle (Server.start / Server.stop) --------------------------------------------------

    def start(self) -> None:
        """First use: fetch now (JWKSError if that fails), then refresh on a thread."""
        with self._lock:
            self._users += 1
            if self._users > 1:
                return
            try:
                next_in = self._refresh(initial=True)
            except BaseException:
                self._users -= 1
                raise
            self._stopping.clear()
            self._thread = threading.Thread(target=os_named(self._run), args=(next_in,),
                                            name="skyrelay-jwks", daemon=True)
            self._thread.start()
            _running.add(self)

    def stop(self) -> None:
        """Last user gone: the refresher ends (within a fetch's timeout)."""
        with self._lock:
            if self._users == 0:
                return
            self._users -= 1
            if self._users > 0:
                return
        self._end_thread()

    def _end_thread(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            self._stopping.set()
            _running.discard(self)
            if self._key_set is not None:
                self._key_set.wake()
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.timeout + 5)

    # -- the refresher -----------------------------------------------------------------------

    def _run(self, next_in: float) -> None:
        deadline = time.monotonic() + next_in  # the next scheduled fetch
        pending = False  # a token named an unknown kid since the last fetch
        while not self._stopping.is_set():
            # Made-up kids cost at most one fetch per refetch_interval (counted from the last
            # fetch of any kind), and never delay the schedule.
            wake_at = min(deadline, self._last_fetch + self.refetch_interval) if pending \
                else deadline
            timeout = max(0.0, wake_at - time.monotonic())
            if pending:
                if self._stopping.wait(timeout):
                    return
            else:
                pending = self.key_set.wait_unknown_key(timeout)
                if self._stopping.is_set():
                    return
                if pending:
                    continue  # now wait out the rest of the interval, if any
            now = time.monotonic()
            if now < wake_at:
                continue  # woken early without cause
            if pending and now < deadline:
                self.key_set.count_unknown_kid_refetch()
            # The tokens that came meanwhile ride on this fetch.
            self.key_set.wait_unknown_key(0)
            pending = False
            deadline = time.monotonic() + self._refresh(initial=False)

    def _refresh(self, *, initial: bool) -> float:
        """Fetches and installs the keys; answers the seconds until the next scheduled fetch.
        On failure: JWKSError when ``initial``, else the last good keys stay and the next try
        comes after a backoff (refetch_interval doubling up to the refresh period)."""
        self._last_fetch = time.monotonic()
        try:
            keys, fresh_for = self._fetch()
        except JWKSError as exc:
            self.key_set.count_refresh(False)
            self._failures += 1
            if initial:
                raise
            retry = min(self.refresh, self.refetch_interval * 2 ** min(self._failures - 1, 16))
            log.warning("%s; keeping the %d keys fetched before, next try in %.0f s",
                        exc, len(self._kids), retry)
            return max(retry, 1.0)
        self._install(keys)
        self._failures = 0
        low, high = self.refresh_bounds
        return min(max(self.refresh if fresh_for is None else fresh_for, low), high)

    def _install(self, keys: list[Any]) -> None:
        every = list(self.static_keys) + keys
        self.key_set.replace([(k.type, k.kid, k.material, list(k.algorithms)) for k in every])
        self.key_set.count_refresh(True)
        kids = tuple(k.kid for k in keys)
        if kids != self._kids:
            added = sorted(set(kids) - set(self._kids))
            removed = sorted(set(self._kids) - set(kids))
            log.info("JWKS %s: %d keys (added %s, removed %s)", self.url, len(kids),
                     added or "none", removed or "none")
        self._kids = kids

    def _fetch(self) -> tuple[list[Any], float | None]:
        """The usable keys of the document and how long it says it stays fresh; JWKSError
        for a network error, a status other than 200, a document that is not a JWKS, or one
        without a single usable key."""
        request = urllib.request.Request(
            self.url, headers={"Accept": "application/jwk-set+json, application/json",
                               "User-Agent": "skyrelay-jwks"})
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                body = response.read(MAX_DOCUMENT_BYTES + 1)
                fresh_for = max_age(response.headers.get("Cache-Control"),
                                    response.headers.get("Age"))
                status = response.status
        except urllib.error.HTTPError as exc:
            raise JWKSError(f"JWKS {self.url}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise JWKSError(f"JWKS {self.url}: {reason}") from None
        if status != 200:
            raise JWKSError(f"JWKS {self.url}: HTTP {status}")
        if len(body) > MAX_DOCUMENT_BYTES:
            raise JWKSError(f"JWKS {self.url}: document over {MAX_DOCUMENT_BYTES} bytes")
        return self._parse(body), fresh_for

    def _parse(self, body: bytes) -> list[Any]:
        from . import _core
        from .auth import JWTKey
        try:
            document = json.loads(body)
        except ValueError:
            raise JWKSError(f"JWKS {self.url}: not JSON") from None
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise JWKSError(f"JWKS {self.url}: not a JWK Set (no \"keys\" array)")
        keys, skipped = [], []
        for jwk in document["keys"]:
            kid = jwk.get("kid", "") if isinstance(jwk, dict) else ""
            try:
                key = JWTKey.from_jwk(jwk)
            except (ValueError, TypeError) as exc:
                skipped.append(f"{kid!r}: {exc}")
                continue
            problem = _core.check_jwt_key((key.type, key.kid, key.material,
                                           list(key.algorithms)))
            if problem:
                skipped.append(f"{kid!r}: {problem}")
                continue
            keys.append(key)
        if skipped:
            log.debug("JWKS %s: keys skipped: %s", self.url, "; ".join(skipped))
        if not keys:
            detail = f" ({'; '.join(skipped)})" if skipped else ""
            raise JWKSError(f"JWKS {self.url}: no usable signing key{detail}")
        return keys
