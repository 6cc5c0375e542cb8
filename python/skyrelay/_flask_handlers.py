"""How the Flask facade (skyrelay.flask) runs a Flask-SocketIO handler: inside a Flask request
context made from the client's handshake, with the managed session, the error handlers, the
protocol log, and (``async_handlers=True``) on the ordered pool, in order per socket."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import flask

from ._flask_context import TEST_CLIENT_HEADER, ManagedSession, install_session
from .encoding import encode_args
from .errors import ConnectionRefused
from .typed import payload_type

if TYPE_CHECKING:
    from .connection import Connection
    from .flask import SocketIO

_local = threading.local()  # the connection whose event is being handled on this thread

_REASONS = {"client_close": "client disconnect",
            "server_disconnect": "server disconnect",
            "heartbeat_timeout": "ping timeout",
            "server_shutdown": "transport close",
            "token_expired": "server disconnect",
            "idle_timeout": "ping timeout"}

Done = Callable[[Any, "BaseException | None"], None]


def current() -> tuple[SocketIO, Connection] | None:
    """The facade and connection of the handler running on this thread, if any."""
    conn = getattr(_local, "conn", None)
    return None if conn is None else (_local.socketio, conn)


def _accepts_argument(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
               for p in params)


def make_handler(socketio: SocketIO, fn: Callable[..., Any] | None, kind: str, nsp: str,
                 message: str) -> Callable[..., Any]:
    """The ``server.on`` handler for a Flask-SocketIO handler ``fn``.

    ``kind`` is ``"connect"``, ``"disconnect"``, ``"event"`` or ``"sync"`` (the test client's
    round trip: no request context, answered in order behind the socket's earlier events).
    ``fn`` is None for the facade's own disconnect bookkeeping in a namespace whose app has
    no disconnect handler. The result runs ``fn`` through the registry's ``_skyrelay_submit``
    hook: on the calling (dispatcher) thread, or on the facade's pool, in order per socket.
    """
    takes_arg = fn is not None and _accepts_argument(fn)
    # A first parameter typed with a pydantic model (docs/api.md "Typed handlers").
    spec = payload_type(fn, 0) if kind == "event" and fn is not None else None

    def call(conn: Connection, data: Any) -> Any:
        if kind == "sync":
            return True
        if kind == "event" and spec is not None:  # InvalidPayload before any handler
            data = [spec.from_python(data[0] if data else None, message), *data[1:]]
        try:
            return _in_request(socketio, conn, fn, kind, nsp, message, data, takes_arg)
        finally:
            if kind == "disconnect":
                socketio._socket_ended(conn)

    def native(conn: Connection, data: Any = None) -> Any:
        return call(conn, data)

    def submit(args: tuple[Any, ...], done: Done) -> None:
        conn, data = args[0], (args[1] if len(args) > 1 else None)

        def task() -> None:
            try:
                result = call(conn, data)
            except Exception as exc:  # reported through `done`, never lost
                done(None, exc)
                result = False
            else:
                done(result, None)
            if kind == "connect" and (result is False or not _connected(socketio, conn)):
                socketio._socket_ended(conn)  # refused: no disconnect handler will run

        pool = socketio._pool
        if pool is None:
            task()
        else:
            pool.submit(conn.sid, task)

    native._skyrelay_args = kind in ("event", "sync")  # type: ignore[attr-defined]
    native._skyrelay_submit = submit  # type: ignore[attr-defined]
    native.__name__ = getattr(fn, "__name__", f"skyrelay_{kind}")
    return native


def _connected(socketio: SocketIO, conn: Connection) -> bool:
    server = socketio.server
    return server is not None and conn.sid in server._connections


def _in_request(socketio: SocketIO, conn: Connection, fn: Callable[..., Any] | None,
                kind: str, nsp: str, message: str, data: Any, takes_arg: bool) -> Any:
    app = socketio.app
    environs = socketio._environs
    assert app is not None and environs is not None
    environ = environs.get(conn)
    args: tuple[Any, ...] = tuple(data) if kind == "event" else \
        (conn.auth,) if kind == "connect" else (_REASONS.get(data, data),)
    log = socketio._log
    if log is not None:
        _log_received(log, kind, message, conn, args)
    if fn is None:
        return None
    with app.request_context(environ):
        managed = socketio.manage_session
        if managed:
            # The cookie session as it was at connection time, then the handlers' own copy.
            saved = environ.get("saved_session")
            if saved is None:
                saved = environ["saved_session"] = ManagedSession(flask.session)
            install_session(saved)
        req: Any = flask.request._get_current_object()  # type: ignore[attr-defined]
        req.sid, req.namespace = conn.sid, conn.namespace
        req.event = {"message": message, "args": args}
        _local.conn, _local.socketio = conn, socketio
        try:
            result = _call(socketio, conn, fn, kind, nsp, args, takes_arg)
        finally:
            _local.conn = None
        if not managed:
            # Flask keeps the session: a server-side store (Flask-Session) saves it; a cookie
            # session stays as it was at connection time (no response carries a cookie).
            session = flask.session._get_current_object()  # type: ignore[attr-defined]
            if getattr(session, "modified", True):
                app.session_interface.save_session(app, session, app.response_class())
    if kind == "event" and socketio._is_test_connection(conn) and result is not None:
        _check_ack(socketio, conn, result)
    return result


def _call(socketio: SocketIO, conn: Connection, fn: Callable[..., Any], kind: str, nsp: str,
          args: tuple[Any, ...], takes_arg: bool) -> Any:
    try:
        if kind == "event":
            return fn(*args)
        return fn(*args) if takes_arg else fn()
    except ConnectionRefused:
        raise
    except Exception as exc:
        try:
            return _handle_error(socketio, nsp, fn, exc)
        except Exception as failed:
            socketio._note_test_error(conn, failed)
            raise


def _handle_error(socketio: SocketIO, nsp: str, fn: Callable[..., Any], exc: Exception) -> Any:
    """Flask-SocketIO's order: the namespace's ``on_error`` handler (or ``on_error_default``);
    then, when there is none or it raises, the ``error(exc)`` method of a class-based Namespace
    whose ``on_<event>`` method failed. What none of them handles propagates."""
    handler = socketio._error_handlers.get(nsp, socketio._default_error_handler)
    owner = getattr(fn, "__self__", None)
    ns_error = getattr(owner, "error", None) if hasattr(owner, "_set_socketio") else None
    try:
        if handler is None:
            raise exc
        return handler(exc)
    except Exception as failed:
        if not callable(ns_error):
            raise
        return ns_error(failed)


def _check_ack(socketio: SocketIO, conn: Connection, result: Any) -> None:
    """For a test client's connection: an ack that cannot be encoded is the caller's error
    there (Flask-SocketIO's in-process test client raises it in ``emit``)."""
    values = list(result) if isinstance(result, tuple) else [result]
    server = socketio.server
    try:
        encode_args(values, server._registry.json_default if server is not None else None)
    except (TypeError, ValueError) as exc:
        socketio._note_test_error(conn, exc, in_ack=True)


def _log_received(log: Any, kind: str, message: str, conn: Connection,
                  args: tuple[Any, ...]) -> None:
    if kind == "connect":
        log.info("%s: connect to namespace %s (%s)", conn.sid, conn.namespace,
                 conn.remote or conn.transport)
    elif kind == "disconnect":
        log.info("%s: disconnect from namespace %s: %s", conn.sid, conn.namespace, args[0])
    else:
        log.info("%s: received event %r %r [%s]", conn.sid, message, args, conn.namespace)


def is_test_header(conn: Connection, tokens: dict[str, Any]) -> bool:
    return conn.headers.get(TEST_CLIENT_HEADER, "") in tokens
