"""A Flask-SocketIO-compatible facade: move an app to skyrelay by changing its import line.

    from skyrelay.flask import SocketIO, emit, join_room, leave_room   # was: flask_socketio

Handlers, the context helpers (``emit``, ``send``, ``join_room``...), ``request.sid`` and
``request.namespace``, background tasks, ``socketio.run(app)`` (Flask routes keep working on the
same port) and ``socketio.test_client(app)`` behave as in Flask-SocketIO. Underneath, the C++
core does the sockets, Engine.IO/Socket.IO, rooms and fan-out; handlers run with a Flask app
context and a request context pushed, as Flask-SocketIO does. See docs/flask.md for what
differs.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import flask

from .errors import ConnectionRefused
from .redis_manager import RedisManagerWriter
from .server import Connection, Server
from .typed import payload_type

__all__ = ["SocketIO", "Namespace", "SocketIOTestClient", "ConnectionRefusedError", "emit",
           "send", "call", "join_room", "leave_room", "close_room", "rooms", "disconnect",
           "connection"]

log = logging.getLogger("skyrelay.flask")
_local = threading.local()  # the connection whose event is being handled on this thread

# Flask-SocketIO options that have no meaning here (the C++ core owns I/O, no eventlet/gevent).
_IGNORED = {"async_mode", "manage_session", "json", "async_handlers", "always_connect",
            "engineio_logger", "monitor_clients", "http_compression", "compression_threshold",
            "allow_upgrades", "transports", "serializer", "logger"}


class ConnectionRefusedError(ConnectionRefused):  # noqa: A001 - the Flask-SocketIO name
    """Raise from a connect handler: ``ConnectionRefusedError(message[, data])``."""

    def __init__(self, *args: Any) -> None:
        message = str(args[0]) if args else "Connection rejected by server"
        super().__init__(message, data=args[1] if len(args) > 1 else None)


class _Reasons:
    CLIENT_DISCONNECT = "client disconnect"
    SERVER_DISCONNECT = "server disconnect"
    PING_TIMEOUT = "ping timeout"
    TRANSPORT_CLOSE = "transport close"
    TRANSPORT_ERROR = "transport error"


_REASONS = {"client_close": _Reasons.CLIENT_DISCONNECT,
            "server_disconnect": _Reasons.SERVER_DISCONNECT,
            "heartbeat_timeout": _Reasons.PING_TIMEOUT,
            "server_shutdown": _Reasons.TRANSPORT_CLOSE,
            "token_expired": _Reasons.SERVER_DISCONNECT,
            "idle_timeout": _Reasons.PING_TIMEOUT}


def _accepts_argument(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
               for p in params)


class SocketIO:
    reason = _Reasons

    def __init__(self, app: flask.Flask | None = None, **kwargs: Any) -> None:
        self.app: flask.Flask | None = None
        self.server: Server | None = None
        self.server_options: dict[str, Any] = dict(kwargs)
        self._registrations: list[tuple[str, str, Callable[..., Any], list[str] | None]] = []
        self._error_handlers: dict[str, Callable[[Exception], Any]] = {}
        self._default_error_handler: Callable[[Exception], Any] | None = None
        self._writer: RedisManagerWriter | None = None
        if app is not None:
            self.init_app(app, **kwargs)
        else:
            _check_queue(self.server_options)

    def init_app(self, app: flask.Flask, **kwargs: Any) -> None:
        self.server_options.update(kwargs)
        _check_queue(self.server_options)
        self.app = app
        app.extensions["socketio"] = self

    # -- registration ---------------------------------------------------------------------

    def on(self, message: str, namespace: str | None = None, *,
           roles: list[str] | None = None) -> Callable[..., Any]:
        """As Flask-SocketIO's; ``roles`` (skyrelay's own) lets only connections whose token
        holds one of them send the event (``Server.on(..., roles=)``)."""
        def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.on_event(message, fn, namespace, roles=roles)
            return fn

        return decorator

    def event(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs and callable(args[0]):
            return self.on(args[0].__name__)(args[0])

        def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
            return self.on(fn.__name__, *args, **kwargs)(fn)

        return decorator

    def on_event(self, message: str, handler: Callable[..., Any],
                 namespace: str | None = None, *, roles: list[str] | None = None) -> None:
        nsp = namespace or "/"
        self._registrations.append((message, nsp, handler, roles))
        if self.server is not None:
            self._register(self.server, message, nsp, handler, roles)

    def on_error(self, namespace: str | None = None) -> Callable[..., Any]:
        def decorator(fn: Callable[[Exception], Any]) -> Callable[[Exception], Any]:
            self._error_handlers[namespace or "/"] = fn
            return fn

        return decorator

    def on_error_default(self, fn: Callable[[Exception], Any]) -> Callable[[Exception], Any]:
        self._default_error_handler = fn
        return fn

    def on_namespace(self, namespace_handler: Namespace) -> None:
        namespace_handler._set_socketio(self)
        for name in dir(namespace_handler):
            if name.startswith("on_") and callable(getattr(namespace_handler, name)):
                self.on_event(name[3:], getattr(namespace_handler, name),
                              namespace_handler.namespace)

    # -- the server -----------------------------------------------------------------------

    def _server_kwargs(self, **overrides: Any) -> dict[str, Any]:
        opts = dict(self.server_options)
        kw: dict[str, Any] = {}
        interval = opts.pop("ping_interval", 25)
        kw["ping_interval"] = interval[0] if isinstance(interval, (tuple, list)) else interval
        kw["ping_timeout"] = opts.pop("ping_timeout", 20)
        kw["max_body_size"] = opts.pop("max_http_buffer_size", 1_000_000)
        kw["socketio_path"] = "/" + str(opts.pop("path", opts.pop("resource", "socket.io"))
                                        ).strip("/") + "/"
        origins = opts.pop("cors_allowed_origins", None)
        kw["cors_allowed_origins"] = "*" if origins == [] else origins  # [] disables checks
        kw["cors_credentials"] = opts.pop("cors_credentials", None)  # never with "*"
        if "cookie" in opts:
            kw["cookie"] = opts.pop("cookie")
        if "namespaces" in opts and opts["namespaces"] is not None:
            kw["namespaces"] = opts.pop("namespaces")
        # message_queue="redis://...": this node's broker, and the manager channel it takes
        # other processes' emits from (none with write_only).
        queue = opts.pop("message_queue", None)
        channel = opts.pop("channel", "flask-socketio")
        write_only = bool(opts.pop("write_only", False))
        if queue:
            kw["broker"] = queue
            kw["redis_manager_channels"] = [] if write_only else [channel]
        for key in list(opts):
            if key in _IGNORED or key == "client_manager":
                opts.pop(key)
        kw.update(opts)
        kw.update(overrides)
        return kw

    def _build(self, host: str, port: int) -> Server:
        if self.server is not None:
            return self.server
        if self.app is None:
            raise RuntimeError("call init_app(app) or pass the app to SocketIO() first")
        server = Server(host, port, wsgi_app=self.app.wsgi_app, **self._server_kwargs())
        # Internal: lets the test client wait until everything sent before has arrived.
        for nsp in {"/"} | {n for _, n, _, _ in self._registrations}:
            server.on("__skyrelay_sync__", lambda conn, data: True, namespace=nsp)
        for message, nsp, handler, roles in self._registrations:
            self._register(server, message, nsp, handler, roles)
        self.server = server
        return server

    def _register(self, server: Server, message: str, nsp: str,
                  handler: Callable[..., Any], roles: list[str] | None = None) -> None:
        kind = message if message in ("connect", "disconnect") else "event"
        server.on(message, self._wrap(handler, kind, nsp, message), namespace=nsp, roles=roles)

    def _wrap(self, fn: Callable[..., Any], kind: str, nsp: str, message: str):
        takes_arg = _accepts_argument(fn)
        # A first parameter typed with a pydantic model (docs/api.md "Typed handlers").
        spec = payload_type(fn, 0) if kind == "event" else None

        def native(conn: Connection, data: Any = None) -> Any:
            app = self.app
            assert app is not None
            if spec is not None:  # raises InvalidPayload before any handler or error handler
                data = [spec.from_python(data[0] if data else None, message), *data[1:]]
            with app.app_context(), app.test_request_context(self._path()):
                req = flask.request._get_current_object()  # type: ignore[attr-defined]
                req.sid = conn.sid  # type: ignore[attr-defined]
                req.namespace = conn.namespace  # type: ignore[attr-defined]
                req.event = {"message": message, "args": data}  # type: ignore[attr-defined]
                _local.conn, _local.socketio = conn, self
                try:
                    if kind == "connect":
                        return fn(conn.auth) if takes_arg else fn()
                    if kind == "disconnect":
                        return fn(_REASONS.get(data, data)) if takes_arg else fn()
                    return fn(*data)
                except ConnectionRefused:
                    raise
                except Exception as exc:
                    handler = self._error_handlers.get(nsp, self._default_error_handler)
                    if handler is None:
                        raise
                    return handler(exc)
                finally:
                    _local.conn = None

        native._skyrelay_args = kind == "event"  # type: ignore[attr-defined]
        native.__name__ = getattr(fn, "__name__", "handler")
        return native

    def _path(self) -> str:
        return self._server_kwargs()["socketio_path"]

    # -- server-level API -----------------------------------------------------------------

    def emit(self, event: str, *args: Any, to: Any = None, room: Any = None,
             include_self: bool = True, skip_sid: Any = None, namespace: str | None = None,
             callback: Callable[..., Any] | None = None, broadcast: bool = False,
             **kwargs: Any) -> None:
        target = to if to is not None else room
        nsp = namespace or "/"
        writer = self._queue_writer()
        if writer is not None:
            if callback is not None:
                raise RuntimeError("callbacks can only be issued from the context of a server")
            writer.emit(event, *args, to=target, namespace=nsp, skip_sid=skip_sid)
            return
        server = self._require_server()
        skip = [] if skip_sid is None else [skip_sid] if isinstance(skip_sid, str) \
            else list(skip_sid)
        if not include_self and getattr(_local, "conn", None) is not None:
            skip.append(_local.conn.sid)
        if callback is not None:
            sid = target.sid if isinstance(target, Connection) else target
            single_socket = isinstance(sid, str) and sid in server._connections and \
                server._connections[sid].transport == "socket.io"
            if not single_socket:
                raise ValueError("callbacks are only supported when emitting to one client")
            server._socketio.emit(sid, event, args, lambda values: callback(*values))
            return
        # One argument as data (JSON clients get it as it is); otherwise, or for top-level
        # bytes (binary, not pre-encoded JSON), as an argument list.
        if len(args) == 1 and not isinstance(args[0], (bytes, bytearray, memoryview)):
            server.emit(event, args[0], to=target, skip=skip or None, namespace=nsp)
        else:
            server.emit(event, args=args, to=target, skip=skip or None, namespace=nsp)

    def send(self, data: Any, json: bool = False, namespace: str | None = None,
             to: Any = None, callback: Callable[..., Any] | None = None,
             include_self: bool = True, skip_sid: Any = None, **kwargs: Any) -> None:
        self.emit("message", data, to=to, namespace=namespace, callback=callback,
                  include_self=include_self, skip_sid=skip_sid, **kwargs)

    def call(self, event: str, *args: Any, to: Any = None, sid: Any = None,
             namespace: str | None = None, timeout: float = 60, **kwargs: Any) -> Any:
        target = to if to is not None else sid
        server = self._require_server()
        return server._socketio.call(target, event, args, timeout)

    def close_room(self, room: str, namespace: str | None = None) -> None:
        nsp = namespace or "/"
        writer = self._queue_writer()
        if writer is not None:
            writer.close_room(room, nsp)
            return
        server = self._require_server()
        for sid in server.room_members(room, namespace=nsp):
            server.leave(sid, room, namespace=nsp)

    def start_background_task(self, target: Callable[..., Any], *args: Any,
                              **kwargs: Any) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, kwargs=kwargs, daemon=True)
        thread.start()
        return thread

    def sleep(self, seconds: float = 0) -> None:
        time.sleep(seconds)

    def run(self, app: flask.Flask | None = None, host: str | None = None,
            port: int | None = None, **kwargs: Any) -> None:
        """Serves the Socket.IO endpoint and the Flask app's routes on one port until Ctrl+C.
        Werkzeug options (use_reloader, allow_unsafe_werkzeug...) are accepted and ignored:
        there is no Werkzeug server here. ``debug=True`` sends a failed handler's exception text
        to the client (``Server(debug=True)``, for development), unless ``SocketIO(debug=...)``
        said otherwise. ``certfile`` and ``keyfile`` serve TLS."""
        if app is not None and self.app is None:
            self.init_app(app)
        if "debug" in kwargs:
            self.server_options.setdefault("debug", bool(kwargs["debug"]))
        # TLS: Flask-SocketIO's certfile/keyfile, or skyrelay's own ssl_certfile/ssl_keyfile.
        for key, option in (("certfile", "ssl_certfile"), ("keyfile", "ssl_keyfile"),
                            ("ssl_certfile", "ssl_certfile"), ("ssl_keyfile", "ssl_keyfile")):
            if kwargs.get(key):
                self.server_options[option] = kwargs[key]
        server = self._build(host or "127.0.0.1", 5000 if port is None else port)
        server.run()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def test_client(self, app: flask.Flask, namespace: str | None = None,
                    query_string: str | None = None, headers: dict[str, str] | None = None,
                    auth: Any = None, flask_test_client: Any = None) -> SocketIOTestClient:
        if self.app is None:
            self.init_app(app)
        server = self._build("127.0.0.1", 0)
        if not server.running:
            server.start()
        return SocketIOTestClient(self, namespace, query_string, headers, auth)

    def _queue_writer(self) -> RedisManagerWriter | None:
        """With message_queue and no server running in this process (a Celery worker, a
        script): the writer that publishes emits in Flask-SocketIO's manager format on the
        queue's channel, for the skyrelay nodes on that Redis to deliver. Else None."""
        queue = self.server_options.get("message_queue")
        if not queue or (self.server is not None and self.server.running):
            return None
        if self._writer is None:
            self._writer = RedisManagerWriter(
                queue, self.server_options.get("channel", "flask-socketio"),
                json_module=self.server_options.get("json"))
        return self._writer

    def _require_server(self) -> Server:
        if self.server is None or not self.server.running:
            raise RuntimeError("the Socket.IO server is not running (call socketio.run(app))")
        return self.server


def _check_queue(options: dict[str, Any]) -> None:
    queue = options.get("message_queue")
    if queue is None:
        return
    if not isinstance(queue, str) or not queue.startswith(("redis://", "rediss://")):
        raise ValueError(f"skyrelay.flask: message_queue must be a redis:// URL (the Redis "
                         f"broker), not {queue!r}")
    if options.get("broker") not in (None, queue):
        raise ValueError("skyrelay.flask: give message_queue or broker, not two different URLs")


class Namespace:
    """Class-based handlers: methods named ``on_<event>`` handle that event."""

    def __init__(self, namespace: str | None = None) -> None:
        self.namespace = namespace or "/"
        self.socketio: SocketIO | None = None

    def _set_socketio(self, socketio: SocketIO) -> None:
        self.socketio = socketio

    def emit(self, event: str, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("namespace", self.namespace)
        assert self.socketio is not None
        self.socketio.emit(event, *args, **kwargs)

    def send(self, data: Any, **kwargs: Any) -> None:
        kwargs.setdefault("namespace", self.namespace)
        assert self.socketio is not None
        self.socketio.send(data, **kwargs)

    def close_room(self, room: str, namespace: str | None = None) -> None:
        assert self.socketio is not None
        self.socketio.close_room(room, namespace or self.namespace)


# -- context-bound helpers (inside a handler) ----------------------------------------------

def _context() -> tuple[SocketIO, Connection]:
    conn = getattr(_local, "conn", None)
    if conn is None:
        raise RuntimeError("this helper works inside a Socket.IO event handler")
    return _local.socketio, conn


def connection() -> Connection:
    """skyrelay's own (Flask-SocketIO has no such helper): the :class:`~skyrelay.Connection`
    whose event is being handled. Its ``user``, ``roles`` and ``claims`` are what the server
    verified at the handshake (``jwt=``), whether the token came in ``auth`` or in an
    ``Authorization`` header; its ``state`` is a dict kept for the connection's life."""
    return _context()[1]


def emit(event: str, *args: Any, to: Any = None, room: Any = None, broadcast: bool = False,
         include_self: bool = True, skip_sid: Any = None, namespace: str | None = None,
         callback: Callable[..., Any] | None = None, **kwargs: Any) -> None:
    socketio, conn = _context()
    target = to if to is not None else room
    if target is None and not broadcast:
        target = conn  # the sender itself, through the connection registry, never a room
    socketio.emit(event, *args, to=target, include_self=include_self, skip_sid=skip_sid,
                  namespace=namespace or conn.namespace, callback=callback)


def send(message: Any, json: bool = False, **kwargs: Any) -> None:
    emit("message", message, **kwargs)


def call(event: str, *args: Any, to: Any = None, timeout: float = 60, **kwargs: Any) -> Any:
    socketio, conn = _context()
    return socketio.call(event, *args, to=to or conn.sid, timeout=timeout)


def join_room(room: str, sid: str | None = None, namespace: str | None = None) -> None:
    socketio, conn = _context()
    socketio._require_server().join(sid or conn.sid, room, namespace=namespace or conn.namespace)


def leave_room(room: str, sid: str | None = None, namespace: str | None = None) -> None:
    socketio, conn = _context()
    socketio._require_server().leave(sid or conn.sid, room, namespace=namespace or conn.namespace)


def close_room(room: str, namespace: str | None = None) -> None:
    socketio, conn = _context()
    socketio.close_room(room, namespace or conn.namespace)


def rooms(sid: str | None = None, namespace: str | None = None) -> list[str]:
    """The client's rooms; like Flask-SocketIO, its own sid is the first one."""
    socketio, conn = _context()
    sid = sid or conn.sid
    return [sid] + socketio._require_server().rooms(sid, namespace=namespace or conn.namespace)


def disconnect(sid: str | None = None, namespace: str | None = None, silent: bool = False) -> None:
    socketio, conn = _context()
    socketio._require_server().disconnect(sid or conn.sid)


# -- test client ----------------------------------------------------------------------------

class SocketIOTestClient:
    """Flask-SocketIO's test client API over a real Socket.IO connection (python-socketio)."""

    def __init__(self, socketio: SocketIO, namespace: str | None, query_string: str | None,
                 headers: dict[str, str] | None, auth: Any) -> None:
        import socketio as sio_client  # type: ignore[import-untyped]

        self.socketio = socketio
        self.queue: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        # With TLS the test client talks to its own server over loopback: no certificate check
        # (a test certificate is rarely one the client could verify).
        tls = socketio.server is not None and socketio.server.tls
        self.client = sio_client.Client(reconnection=False, ssl_verify=not tls)
        self.connected: dict[str, bool] = {}
        self._query = query_string
        self._headers = headers or {}
        self.connect(namespace, query_string, headers, auth)

    def _record(self, namespace: str):
        def handler(event: str, *args: Any) -> None:
            with self._lock:
                self.queue.setdefault(namespace, []).append(
                    {"name": event, "args": list(args), "namespace": namespace})

        return handler

    def connect(self, namespace: str | None = None, query_string: str | None = None,
                headers: dict[str, str] | None = None, auth: Any = None) -> None:
        nsp = namespace or "/"
        server = self.socketio._require_server()
        self.client.on("*", self._record(nsp), namespace=nsp)
        url = f"{'https' if server.tls else 'http'}://127.0.0.1:{server.port}"
        qs = query_string or self._query
        if qs:
            url += "?" + qs.lstrip("?")
        self.client.connect(url, namespaces=[nsp], auth=auth, headers=headers or self._headers,
                            transports=["websocket"], wait_timeout=10,
                            socketio_path=self.socketio._path())
        self.connected[nsp] = True

    def disconnect(self, namespace: str | None = None) -> None:
        self.client.disconnect()
        self.connected[namespace or "/"] = False

    def is_connected(self, namespace: str | None = None) -> bool:
        return self.client.connected and self.connected.get(namespace or "/", False)

    def emit(self, event: str, *args: Any, callback: bool = False,
             namespace: str | None = None) -> Any:
        nsp = namespace or "/"
        if callback:
            return self.client.call(event, args[0] if len(args) == 1 else args or None,
                                    namespace=nsp, timeout=10)
        self.client.emit(event, args[0] if len(args) == 1 else args or None, namespace=nsp)
        return None

    def send(self, data: Any, json: bool = False, callback: bool = False,
             namespace: str | None = None) -> Any:
        return self.emit("message", data, callback=callback, namespace=namespace)

    def get_received(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Returns and clears what arrived; waits first for everything the server sent before
        this call (a round trip on the same connection)."""
        nsp = namespace or "/"
        if self.client.connected:
            self.client.call("__skyrelay_sync__", namespace=nsp, timeout=10)
        with self._lock:
            return self.queue.pop(nsp, [])
