"""The Flask facade's request side (skyrelay.flask): the WSGI environ of each client's
handshake, the Flask session its handlers see, and the pool that runs sync handlers in order
per client.

Flask-SocketIO runs every handler inside a request context made from the Engine.IO
handshake's environ, so ``request.args``, ``request.headers``, ``request.cookies``,
``request.remote_addr``, ``session`` and Flask-Login's ``current_user`` read the client that
opened the connection. :class:`HandshakeEnvirons` keeps one such environ per Engine.IO session
(shared by its namespaces, as there), built from what the core hands the connect callback.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import flask
from flask.sessions import SessionMixin

from ._threads import name_os_thread

if TYPE_CHECKING:
    from .connection import Connection
    from .wsgi import WSGIBridge

_log = logging.getLogger("skyrelay.flask")

# Engine.IO's own query parameters: not the app's (the test client hides them, see below).
ENGINEIO_PARAMS = frozenset({"EIO", "transport", "t", "sid", "j", "b64"})
# The handshake header by which a SocketIOTestClient's connection names itself (in-process).
TEST_CLIENT_HEADER = "x-skyrelay-test-client"


class ManagedSession(dict, SessionMixin):  # type: ignore[type-arg]
    """The Flask session of one Socket.IO client with ``manage_session=True``: a copy of the
    cookie session at connection time, kept on the server; handlers' changes stay here (a
    Socket.IO connection cannot set a cookie)."""


def strip_engineio_params(query: str) -> str:
    """``query`` without Engine.IO's own parameters, the others in their order and encoding."""
    kept = [part for part in query.split("&")
            if part and part.partition("=")[0] not in ENGINEIO_PARAMS]
    return "&".join(kept)


class HandshakeEnvirons:
    """The WSGI environ of each Engine.IO session's handshake, by Engine.IO sid.

    ``environ`` is the table itself (``socketio.server.environ`` in Flask-SocketIO; the
    managed session lives in it under ``"saved_session"``). An environ is made the first time
    a socket of the session reaches a handler and forgotten when the session's last socket
    that did so is gone. Thread-safe: handlers run on several threads.
    """

    def __init__(self, app: flask.Flask, wsgi: Callable[[], WSGIBridge | None],
                 log: logging.Logger | None) -> None:
        self.app = app
        self._wsgi = wsgi
        self._log = log
        self.environ: dict[str, dict[str, Any]] = {}
        self._sockets: dict[str, set[str]] = {}  # eio sid -> its sockets' sids
        self._lock = threading.Lock()
        # Test clients' connections, by the token in their TEST_CLIENT_HEADER: the header
        # names they were given (others, the transport's own, are hidden, as in
        # Flask-SocketIO's test client, which has no transport).
        self.test_clients: dict[str, frozenset[str]] = {}

    @staticmethod
    def key(conn: Connection) -> str:
        return conn.eio_sid or conn.sid

    def get(self, conn: Connection) -> dict[str, Any]:
        key = self.key(conn)
        with self._lock:
            env = self.environ.get(key)
            self._sockets.setdefault(key, set()).add(conn.sid)
            if env is not None:
                return env
        env = self._build(conn)
        with self._lock:
            env = self.environ.setdefault(key, env)
        if self._log is not None and conn.eio_sid:
            self._log.info("%s: Engine.IO session opened from %s (%s)", conn.eio_sid,
                           env.get("REMOTE_ADDR"), env.get("QUERY_STRING"))
        return env

    def forget(self, conn: Connection) -> None:
        """Called when ``conn`` is gone: drops its session's environ with its last socket."""
        key = self.key(conn)
        with self._lock:
            sockets = self._sockets.get(key)
            if sockets is None:
                return
            sockets.discard(conn.sid)
            if sockets:
                return
            del self._sockets[key]
            self.environ.pop(key, None)
        if self._log is not None and conn.eio_sid:
            self._log.info("%s: Engine.IO session has no socket left", conn.eio_sid)

    def _build(self, conn: Connection) -> dict[str, Any]:
        headers: Iterable[tuple[str, str]] = conn.headers.items()
        query = conn.query.lstrip("?")
        declared = self.test_clients.get(conn.headers.get(TEST_CLIENT_HEADER, ""))
        if declared is not None:
            headers = [(k, v) for k, v in headers if k in declared or k == "host"]
            query = strip_engineio_params(query)
        else:
            headers = [(k, v) for k, v in headers if k != TEST_CLIENT_HEADER]
        target = conn.path or "/"
        if query:
            target += "?" + query
        wsgi = self._wsgi()
        assert wsgi is not None  # the facade always mounts the app
        # The core's scheme for the handshake (a trusted proxy's word, else the connection's);
        # empty (a connection made without one) leaves the port's.
        env = wsgi.environ("GET", target, conn.remote, list(headers), b"", conn.scheme or None)
        env["flask.app"] = self.app
        return env


def install_session(session: SessionMixin) -> None:
    """Makes ``session`` the one ``flask.session`` returns in the current request context."""
    app_ctx = flask.globals.app_ctx
    if hasattr(app_ctx, "session"):  # Flask >= 3.2: one context
        ctx: Any = app_ctx._get_current_object()  # type: ignore[attr-defined]
    else:
        ctx = flask.globals.request_ctx._get_current_object()  # type: ignore[attr-defined]
    if hasattr(ctx, "_session"):  # Flask >= 3.1.3
        ctx._session = session
    else:
        ctx.session = session


class OrderedPool:
    """Runs tasks on ``workers`` threads, one at a time and in submission order per key (a
    client), keys in parallel: ``async_handlers=True``.

    At most ``max_pending`` tasks wait or run at once; :meth:`submit` blocks the caller (the
    core's dispatcher) beyond that, so a flood backs up into the core's bounded dispatch
    queue rather than into memory here.
    """

    def __init__(self, workers: int, max_pending: int) -> None:
        if workers < 1 or max_pending < 1:
            raise ValueError("handler_workers and handler_queue_max must be at least 1")
        self._pool = ThreadPoolExecutor(max_workers=workers,
                                        thread_name_prefix="skyrelay-flask-handler",
                                        initializer=name_os_thread, initargs=("skyrelay-flask",))
        self._slots = threading.BoundedSemaphore(max_pending)
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Callable[[], None]]] = {}

    def submit(self, key: str, task: Callable[[], None]) -> None:
        """Queues ``task`` (which must not raise) behind the key's earlier tasks."""
        self._slots.acquire()
        with self._lock:
            queue = self._queues.get(key)
            if queue is not None:  # a drain of this key is under way: it will run it
                queue.append(task)
                return
            self._queues[key] = deque([task])
        self._pool.submit(self._drain, key)

    def _drain(self, key: str) -> None:
        while True:
            with self._lock:
                queue = self._queues[key]
                if not queue:
                    del self._queues[key]
                    return
                task = queue.popleft()
            try:
                task()
            except Exception:  # a task's own report failed (the server stopped meanwhile):
                _log.exception("a Socket.IO handler's outcome could not be reported")
            finally:  # the key's later tasks still run
                self._slots.release()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=False)


def protocol_logger(option: Any, name: str) -> logging.Logger | None:
    """Flask-SocketIO's ``logger``/``engineio_logger``: False (off), True (the named logger,
    at INFO unless configured, to stderr when logging is not configured), or a Logger."""
    if isinstance(option, logging.Logger):
        return option
    if not option:
        return None
    logger = logging.getLogger(name)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    if not logging.root.handlers and not logger.handlers:
        logger.addHandler(logging.StreamHandler())
    return logger
