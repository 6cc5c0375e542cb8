"""A Flask-SocketIO-compatible facade: move an app to skyrelay by changing its import line.

    from skyrelay.flask import SocketIO, emit, join_room, leave_room   # was: flask_socketio

Handlers, the context helpers (``emit``, ``send``, ``join_room``...), background tasks,
``socketio.run(app)`` (Flask routes keep working on the same port) and
``socketio.test_client(app)`` behave as in Flask-SocketIO. Underneath, the C++ core does the
sockets, Engine.IO/Socket.IO, rooms and fan-out. Handlers run inside a Flask request context
made from the client's handshake (``request.args``, ``request.headers``, ``request.cookies``,
``session``, Flask-Login's ``current_user``), plus ``request.sid``, ``request.namespace`` and
``request.event``. See docs/socketio.md, "Flask-SocketIO facade".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from ._extras import requires_extra

with requires_extra("flask", "skyrelay.flask"):
    import flask

from ._flask_context import HandshakeEnvirons, OrderedPool, protocol_logger
from ._flask_handlers import current, is_test_header, make_handler
from ._threads import os_named
from ._flask_test_client import SocketIOTestClient
from .errors import ConnectionRefused
from .redis_manager import RedisManagerWriter
from .server import Connection, Server

__all__ = ["SocketIO", "Namespace", "SocketIOTestClient", "ConnectionRefusedError", "emit",
           "send", "call", "join_room", "leave_room", "close_room", "rooms", "disconnect",
           "connection"]

log = logging.getLogger("skyrelay.flask")

# Flask-SocketIO options that have no meaning here (the C++ core owns I/O, no eventlet/gevent;
# Engine.IO's upgrade and compression settings are the core's).
_IGNORED = {"async_mode", "json", "always_connect", "monitor_clients", "http_compression",
            "compression_threshold", "transports", "serializer"}


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


@dataclass(frozen=True)
class MessageQueue:
    """``server_options['client_manager']`` with ``message_queue=``: where the queue is and
    whether this process only writes to it (no app: a Celery worker, a script)."""

    url: str
    channel: str
    write_only: bool


class FlaskServer(Server):
    """The facade's :class:`skyrelay.Server`. ``environ`` is what Flask-SocketIO code reads
    off ``socketio.server.environ``: the WSGI environ of each Engine.IO session's handshake,
    by its sid, with the managed Flask session under ``"saved_session"``."""

    environ: dict[str, dict[str, Any]]

    @property
    def eio(self) -> SimpleNamespace:
        """What Flask-SocketIO code reads off ``socketio.server.eio`` (python-engineio's server
        there): this server's Engine.IO settings, as a read-only snapshot."""
        o = self._options
        return SimpleNamespace(allow_upgrades=bool(o["eio_allow_upgrades"]),
                               cookie=o["eio_cookie"] or None,
                               ping_interval=o["eio_ping_interval_ms"] / 1000.0,
                               ping_timeout=o["eio_ping_timeout_ms"] / 1000.0,
                               max_http_buffer_size=int(o["max_body_size"]))


class SocketIO:
    reason = _Reasons

    def __init__(self, app: flask.Flask | None = None, **kwargs: Any) -> None:
        self.app: flask.Flask | None = None
        self.server: FlaskServer | None = None
        self.server_options: dict[str, Any] = {}
        self.manage_session = True
        self._registrations: list[tuple[str, str, Callable[..., Any], list[str] | None]] = []
        self._error_handlers: dict[str, Callable[[Exception], Any]] = {}
        self._default_error_handler: Callable[[Exception], Any] | None = None
        self._writer: RedisManagerWriter | None = None
        self._environs: HandshakeEnvirons | None = None
        self._pool: OrderedPool | None = None
        self._log: logging.Logger | None = None
        self._lock = threading.Lock()
        self._test_errors: dict[str, tuple[BaseException, bool]] = {}  # a test client's
        self._end_waiters: dict[str, threading.Event] = {}
        self._served: set[str] = set()  # namespaces with the facade's own handlers
        if app is not None or "message_queue" in kwargs:
            self.init_app(app, **kwargs)
        else:
            self.server_options.update(kwargs)

    def init_app(self, app: flask.Flask | None, **kwargs: Any) -> None:
        """As Flask-SocketIO's: takes more options and builds the server (not started). With
        ``app=None`` and a ``message_queue``, this process only writes to the queue."""
        self.server_options.update(kwargs)
        self.manage_session = bool(self.server_options.pop("manage_session",
                                                           self.manage_session))
        _check_queue(self.server_options)
        queue = self.server_options.get("message_queue")
        if queue and "client_manager" not in kwargs:
            self.server_options["client_manager"] = MessageQueue(
                queue, self.server_options.get("channel", "flask-socketio"),
                write_only=app is None or bool(self.server_options.get("write_only")))
        if app is None:
            return
        self.app = app
        app.extensions["socketio"] = self
        self.server = None
        self._build()

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

    def _server_kwargs(self) -> dict[str, Any]:
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
        queue = opts.pop("client_manager", None)
        for key in ("message_queue", "channel", "write_only", "async_handlers", "logger",
                    "engineio_logger", "handler_workers", "handler_queue_max"):
            opts.pop(key, None)
        if isinstance(queue, MessageQueue):
            kw["broker"] = queue.url
            kw["redis_manager_channels"] = [] if queue.write_only else [queue.channel]
        for key in list(opts):
            if key in _IGNORED:
                opts.pop(key)
        kw.update(opts)
        return kw

    def _build(self, host: str | None = None, port: int | None = None) -> Server:
        """The server (built once per app; ``host``/``port`` apply until it starts)."""
        if self.server is None:
            if self.app is None:
                raise RuntimeError("call init_app(app) or pass the app to SocketIO() first")
            self._make_server()
        server = self.server
        assert server is not None
        if not server.running and (host is not None or port is not None):
            server._configure_run(host, port)
        return server

    def _make_server(self) -> None:
        assert self.app is not None
        opts = self.server_options
        self._log = protocol_logger(opts.get("logger", False), "skyrelay.socketio")
        eio_log = protocol_logger(opts.get("engineio_logger", False), "skyrelay.engineio")
        server = FlaskServer("127.0.0.1", 5000, wsgi_app=self.app.wsgi_app,
                             **self._server_kwargs())
        self._environs = HandshakeEnvirons(self.app, lambda: server._wsgi, eio_log)
        server.environ = self._environs.environ
        if self._pool is not None:
            self._pool.close()
        self._pool = OrderedPool(int(opts.get("handler_workers", 8)),
                                 int(opts.get("handler_queue_max", 1024))) \
            if opts.get("async_handlers", True) else None
        self.server = server
        self._served = set()
        self._serve(server, "/")  # always served, as by every Socket.IO server
        for message, nsp, handler, roles in self._registrations:
            self._register(server, message, nsp, handler, roles)

    def _serve(self, server: Server, nsp: str) -> None:
        """The facade's own handlers in a namespace the app serves: the test client's round
        trip, and the disconnect bookkeeping (the handshake's environ is dropped with the
        client's last socket); with logger=True, a connect handler that logs connections the
        app has no handler for. The app's own handlers replace the last two."""
        self._served.add(nsp)
        server.on("__skyrelay_sync__", make_handler(self, None, "sync", nsp, ""), namespace=nsp)
        for kind in ("disconnect", "connect") if self._log is not None else ("disconnect",):
            if not any(m == kind and n == nsp for m, n, _, _ in self._registrations):
                server.on(kind, make_handler(self, None, kind, nsp, kind), namespace=nsp)

    def _register(self, server: Server, message: str, nsp: str,
                  handler: Callable[..., Any], roles: list[str] | None = None) -> None:
        if nsp not in self._served:
            self._serve(server, nsp)
        kind = message if message in ("connect", "disconnect") else "event"
        server.on(message, make_handler(self, handler, kind, nsp, message), namespace=nsp,
                  roles=roles)

    def _path(self) -> str:
        return self._server_kwargs()["socketio_path"]

    # -- what the handler runner and the test client ask (in this process) ---------------

    def _socket_ended(self, conn: Connection) -> None:
        """After a socket's disconnect handler (or the bookkeeping in its place)."""
        if self._environs is not None:
            self._environs.forget(conn)
        with self._lock:
            waiter = self._end_waiters.pop(conn.sid, None)
            self._test_errors.pop(conn.sid, None)
        if waiter is not None:
            waiter.set()

    def _watch_end(self, sid: str, nsp: str) -> threading.Event | None:
        """An event set once ``sid``'s disconnect handler ran; None when the namespace has
        none (nothing to wait for)."""
        server = self.server
        if server is None or not sid:
            return None
        registry = server._registry
        if registry.namespace_handler(registry.disconnect_handlers, nsp) is None:
            return None
        event = threading.Event()
        with self._lock:
            self._end_waiters[sid] = event
        return event

    def _is_test_connection(self, conn: Connection) -> bool:
        environs = self._environs
        return environs is not None and is_test_header(conn, environs.test_clients)

    def _note_test_error(self, conn: Connection, exc: BaseException,
                         in_ack: bool = False) -> None:
        """Keeps what a test client's handler raised (``in_ack``: its return value could not
        be sent as the ack) for the test client to raise in its caller."""
        if self._is_test_connection(conn):
            with self._lock:
                self._test_errors[conn.sid] = (exc, in_ack)

    # -- server-level API -----------------------------------------------------------------

    def emit(self, event: str, *args: Any, to: Any = None, room: Any = None,
             include_self: bool = True, skip_sid: Any = None, namespace: str | None = None,
             callback: Callable[..., Any] | None = None, broadcast: bool = False,
             **kwargs: Any) -> None:
        target = to if to is not None else room
        nsp = namespace or "/"
        if len(args) == 1 and isinstance(args[0], tuple):
            args = args[0]  # python-socketio: a tuple is several arguments
        writer = self._queue_writer()
        if writer is not None:
            if callback is not None:
                raise RuntimeError("callbacks can only be issued from the context of a server")
            writer.emit(event, *args, to=target, namespace=nsp, skip_sid=skip_sid)
            return
        server = self._require_server()
        skip = [] if skip_sid is None else [skip_sid] if isinstance(skip_sid, str) \
            else list(skip_sid)
        running = current()
        if not include_self and running is not None:
            skip.append(running[1].sid)
        if self._log is not None:
            self._log.info("emitting event %r to %s [%s]", event, "all" if target is None
                           else target.sid if isinstance(target, Connection) else target, nsp)
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
        """Emits ``message`` (``json`` with ``json=True``, as Flask-SocketIO names it)."""
        self.emit("json" if json else "message", data, to=to, namespace=namespace,
                  callback=callback, include_self=include_self, skip_sid=skip_sid, **kwargs)

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
        # Its OS name is its Python name, not that of the handler's thread that started it.
        thread = threading.Thread(target=os_named(target), args=args, kwargs=kwargs, daemon=True)
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
        rebuild = False
        # TLS: Flask-SocketIO's certfile/keyfile, or skyrelay's own ssl_certfile/ssl_keyfile.
        for key, option in (("certfile", "ssl_certfile"), ("keyfile", "ssl_keyfile"),
                            ("ssl_certfile", "ssl_certfile"), ("ssl_keyfile", "ssl_keyfile")):
            if kwargs.get(key):
                self.server_options[option] = kwargs[key]
                rebuild = True
        if rebuild and self.server is not None and not self.server.running:
            self.server = None  # the TLS settings are the server's construction arguments
        server = self._build(host or "127.0.0.1", 5000 if port is None else port)
        if "debug" in kwargs and "debug" not in self.server_options:
            server.debug = bool(kwargs["debug"])
        server.run()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def test_client(self, app: flask.Flask, namespace: str | None = None,
                    query_string: str | None = None, headers: dict[str, str] | None = None,
                    auth: Any = None, flask_test_client: Any = None) -> SocketIOTestClient:
        if self.app is None:
            self.init_app(app)
        server = self._build()
        if not server.running:
            server._configure_run("127.0.0.1", 0)
            server.start()
        return SocketIOTestClient(self, namespace, query_string, headers, auth,
                                  flask_test_client)

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
    running = current()
    if running is None:
        raise RuntimeError("this helper works inside a Socket.IO event handler")
    return running


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
    """Sends ``message`` (``json`` with ``json=True``) as :func:`emit` would."""
    emit("json" if json else "message", message, **kwargs)


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


