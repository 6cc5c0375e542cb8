"""The public server API: configuration, handlers, connections and emit."""

from __future__ import annotations

import asyncio
import errno
import functools
import json
import logging
import os
import re
import signal
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from . import _core
from .auth import JWTAuth
from .encoding import NestedBytes, encode_args, encode_base64
from .encoding import encode_json as _encode_json
from .errors import ConnectionRefused, Forbidden, RequestError
from .handlers import HANDLER_ERROR_MESSAGE as HANDLER_ERROR_MESSAGE  # re-exported
from .handlers import Handler, HandlerRegistry
from .socketio import SocketIOBridge

if TYPE_CHECKING:
    from .wsgi import WSGIBridge

log = logging.getLogger("skyrelay")

Target = Union[str, "Connection", Iterable[Union[str, "Connection"]], None]

_POLICIES = {None: -1, "disconnect": 0, "drop_oldest": 1}

# Close code the server uses when the application disconnects a client (docs/protocol.md).
CLOSE_SERVER_DISCONNECT = 4002
# Close code of a JSON-protocol connection whose token expired.
CLOSE_TOKEN_EXPIRED = 4003
# Close code of a WebSocket from which nothing at all arrived for idle_timeout.
CLOSE_IDLE_TIMEOUT = 4004


def encode_json(data: Any, default: Callable[[Any], Any] | None = None) -> bytes:
    """Serializes a payload once, as the server sends it: :func:`skyrelay.encoding.encode_json`
    with the C++ core's check of a ``bytes`` payload (one valid UTF-8 JSON text)."""
    return _encode_json(data, default, check=_core.is_valid_json)


def _server_config(options: Mapping[str, Any]) -> _core.ServerConfig:
    """The C++ server_config, set field by field from the options (they have its names)."""
    config = _core.ServerConfig()
    for key, value in options.items():
        setattr(config, key, value)
    return config


def _topic_patterns(spec: str | Iterable[str] | None) -> list[str] | None:
    """The ``client_topics`` option as a list of patterns (None: no topic is open)."""
    if spec is None:
        return None
    if callable(spec):
        raise TypeError("client_topics takes patterns, not a function (it would run Python on "
                        "the I/O threads): let a handler check and call conn.join(room)")
    patterns = [spec] if isinstance(spec, str) else list(spec)
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f"a client_topics pattern is a non-empty string, not {pattern!r}")
    return patterns


def _targets(target: Target) -> tuple[list[str], list[str]]:
    """Splits ``to`` into names (rooms or sids, resolved by the hub) and the sids of
    :class:`Connection` objects (delivered through the connection registry only)."""
    if target is None:
        return [], []
    if isinstance(target, (str, Connection)):
        target = [target]
    names: list[str] = []
    conns: list[str] = []
    for t in target:
        if isinstance(t, Connection):
            conns.append(t.sid)
        else:
            names.append(str(t))
    return names, conns


def _names(target: Target) -> list[str]:
    names, conns = _targets(target)
    return names + conns


class Connection:
    """One client connection, as handlers see it.

    ``transport`` is ``"websocket"`` for the JSON protocol, ``"sse"`` for an event stream and
    ``"socket.io"`` for Socket.IO, where the connection is one namespace of the client
    (``namespace``, with the CONNECT payload in ``auth``). ``path``, ``query``, ``remote`` and ``headers`` describe the handshake; for the
    JSON protocol they are filled in when the server has a connect handler. ``state`` is a dict
    for the application's own per-connection data.

    With ``Server(jwt=...)``, ``claims`` is the payload of the token the connection was opened
    with (verified in C++ before any handler ran), ``user`` its ``sub`` and ``roles`` its
    ``roles``; without a token they are ``{}``, ``None`` and ``[]``.

    ``recovered`` is True in the connect handler of a Socket.IO connection state recovery: the
    socket (same ``sid``, its rooms and ``state``) comes back only if the handler accepts it.
    """

    __slots__ = ("_server", "sid", "path", "query", "remote", "headers", "state", "namespace",
                 "auth", "transport", "claims", "user", "roles", "recovered")

    def __init__(self, server: Server, sid: str, path: str = "", query: str = "",
                 remote: str = "", headers: Iterable[tuple[str, str]] = (), *,
                 namespace: str = "/", auth: Any = None, transport: str = "websocket",
                 claims: str | dict[str, Any] | None = None) -> None:
        self._server = server
        self.sid = sid
        self.path = path
        self.query = query
        self.remote = remote
        self.headers = {k.lower(): v for k, v in headers}
        self.state: dict[str, Any] = {}
        self.namespace = namespace
        self.auth = auth
        self.transport = transport
        parsed = json.loads(claims) if isinstance(claims, str) else claims
        self.claims: dict[str, Any] = parsed or {}
        sub = self.claims.get("sub")
        self.user: str | None = sub if isinstance(sub, str) else None
        self.roles: list[str] = list(self.claims.get("roles") or [])
        self.recovered = False

    def __repr__(self) -> str:
        return f"<skyrelay.Connection sid={self.sid!r} {self.transport} {self.namespace}>"

    @property
    def rooms(self) -> list[str]:
        """The rooms this connection is in, sorted."""
        return self._server.rooms(self.sid, namespace=self.namespace)

    def join(self, room: str) -> bool:
        return self._server.join(self.sid, room, namespace=self.namespace)

    def leave(self, room: str) -> bool:
        return self._server.leave(self.sid, room, namespace=self.namespace)

    def emit(self, event: str, data: Any = None, *,
             default: Callable[[Any], Any] | None = None) -> int:
        """Sends an event to this connection only. For Socket.IO, ``bytes`` anywhere in
        ``data`` travel as binary attachments."""
        if self.transport == "socket.io":
            args = () if data is None else (data,)
            return int(self._server._socketio.emit(self.sid, event, args))
        return self._server.emit(event, data, to=self, namespace=self.namespace,
                                 default=default)

    def disconnect(self, reason: str = "disconnected by the server") -> bool:
        return self._server.disconnect(self.sid, reason)

    @property
    def connected(self) -> bool:
        return self._server._has_connection(self.sid)


class Server:
    """A skyrelay server: one port for WebSocket, /health, /metrics and static files.

    Durations are in seconds. ``port=0`` picks a free port; read it from :attr:`port` after
    :meth:`start`. Handlers run on the server's dispatcher thread (sync functions) or on an
    asyncio loop (coroutine functions): ``loop`` if given, else the loop that is running when
    :meth:`start` is called, else one the server starts in a thread of its own.

    With ``ssl_certfile`` and ``ssl_keyfile`` (PEM; the certificate file may hold the chain)
    the port serves TLS only: https and wss. A file that will not load, or a key that does not
    match the certificate, raises at :meth:`start`.

    ``client_topics`` says which topics clients may subscribe to by name (a JSON-protocol
    ``subscribe``, ``/ws/<topic>``, ``/sse/<topic>``, ``?topics=``): glob patterns in which
    ``*`` matches any run of characters and ``{sub}`` the subject of the connection's token
    (``["news", "well:*", "user:{sub}"]``), or ``"*"`` for every topic. The default, None,
    opens none: clients then get what the server addresses to them (broadcasts, direct emits,
    rooms a handler joins them to). ``json_protocol``, ``sse`` and ``socketio`` set to False
    turn that transport's endpoint off.

    ``broker`` names the broker every publication passes through: None or ``"memory"`` (the
    default) delivers in this process only. Any other URL raises ValueError at :meth:`start`,
    naming the scheme (a Redis broker is planned).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        static_dir: str | None = None,
        io_threads: int = 0,
        max_message_size: int = 64 * 1024,
        max_header_size: int = 16 * 1024,
        max_body_size: int = 1_000_000,
        handshake_timeout: float = 10.0,
        idle_timeout: float = 120.0,
        heartbeat_interval: float = 30.0,
        heartbeat_timeout: float = 20.0,
        drain_timeout: float = 2.0,
        write_timeout: float = 30.0,
        outbox_max_bytes: int = 1024 * 1024,
        outbox_max_frames: int = 1024,
        dispatch_queue_max: int = 65536,
        json_default: Callable[[Any], Any] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        socketio_path: str = "/socket.io/",
        ping_interval: float = 25.0,
        ping_timeout: float = 20.0,
        connect_timeout: float = 45.0,
        namespaces: Iterable[str | re.Pattern[str]] | str | re.Pattern[str] | None = None,
        cors_allowed_origins: Iterable[str] | str | None = None,
        cors_credentials: bool | None = None,
        cookie: str | bool | None = None,
        wsgi_app: Callable[..., Any] | None = None,
        engineio_echo_path: str = "",
        recovery_window: float = 0.0,
        history_size: int = 1000,
        history_ttl: float = 120.0,
        sse_keepalive: float = 15.0,
        sse_retry: float = 3.0,
        publish_token: str | None = None,
        max_connections: int = 100_000,
        max_connections_per_ip: int = 1_000,
        max_rooms_per_connection: int = 1_000,
        inbound_rate: float = 10.0,
        inbound_burst: float = 20.0,
        new_connections_per_ip: tuple[float, float] = (50.0, 100.0),
        new_sessions_per_ip: tuple[float, float] = (10.0, 20.0),
        max_attachments: int = 16,
        max_attachment_bytes: int = 1024 * 1024,
        limit_loopback: bool = False,
        jwt: JWTAuth | None = None,
        namespace_roles: Mapping[str, Iterable[str]] | None = None,
        room_roles: Mapping[str, Iterable[str]] | None = None,
        roles_from_connect: bool = False,
        client_topics: str | Iterable[str] | None = None,
        json_protocol: bool = True,
        sse: bool = True,
        socketio: bool = True,
        ssl_certfile: str | os.PathLike[str] | None = None,
        ssl_keyfile: str | os.PathLike[str] | None = None,
        broker: str | None = None,
        debug: bool = False,
    ) -> None:
        def ms(seconds: float) -> int:
            return max(1, int(round(seconds * 1000)))

        self.host = host
        self._options: dict[str, Any] = {
            "host": host,
            "port": int(port),
            "io_threads": int(io_threads),
            "static_dir": str(static_dir) if static_dir else "",
            # The browser client (skyrelay.js) ships in the package and is served built in.
            "client_dir": str(Path(__file__).with_name("web")),
            "max_message_size": int(max_message_size),
            "max_header_size": int(max_header_size),
            "max_body_size": int(max_body_size),
            "handshake_timeout_ms": ms(handshake_timeout),
            # Inbound silence: keep-alive HTTP between requests, WebSockets (close 4004); 0: none.
            "idle_timeout_ms": ms(idle_timeout) if idle_timeout > 0 else 0,
            "heartbeat_interval_ms": ms(heartbeat_interval),
            "heartbeat_timeout_ms": ms(heartbeat_timeout),
            "drain_timeout_ms": ms(drain_timeout),
            # A WebSocket or SSE write pending this long cuts the connection (slow consumer).
            "write_timeout_ms": ms(write_timeout) if write_timeout > 0 else 0,
            "outbox_max_bytes": int(outbox_max_bytes),
            "outbox_max_frames": int(outbox_max_frames),
            "dispatch_queue_max": int(dispatch_queue_max),
            "socketio_path": socketio_path if socketio_path.endswith("/") else socketio_path + "/",
            "eio_ping_interval_ms": ms(ping_interval),
            "eio_ping_timeout_ms": ms(ping_timeout),
            "sio_connect_timeout_ms": ms(connect_timeout),
            # Origins besides the server's own for /ws, /sse and /socket.io (docs/api.md).
            "cors_allowed_origins": [cors_allowed_origins]
            if isinstance(cors_allowed_origins, str) else list(cors_allowed_origins or []),
            # Credentialed CORS for listed origins only: never with "*" (checked below).
            "cors_credentials": cors_credentials is not False,
            "eio_cookie": "io" if cookie is True else (cookie or ""),
            # Test-only: a raw Engine.IO echo endpoint for the official conformance suite.
            "engineio_echo_path": engineio_echo_path,
            # Socket.IO connection state recovery (seconds a dropped socket waits; 0: off).
            "sio_recovery_window_ms": int(round(recovery_window * 1000)),
            # Replay history per topic (and per namespace for broadcasts to everyone).
            "history_max_events": int(history_size),
            "history_max_age_ms": ms(history_ttl),
            # Server-Sent Events: keep-alive comment period and the browser's retry delay.
            "sse_keepalive_ms": ms(sse_keepalive),
            "sse_retry_ms": ms(sse_retry),
            # POST /api/publish takes "Authorization: Bearer <publish_token>"; None: API off.
            "publish_token": publish_token or "",
            # Limits (0: none): TCP connections in total and per IP, rooms per connection.
            "max_connections": int(max_connections),
            "max_connections_per_ip": int(max_connections_per_ip),
            "max_rooms_per_connection": int(max_rooms_per_connection),
            # Inbound messages per connection (token bucket; rate 0: no limit).
            "inbound_rate": float(inbound_rate),
            "inbound_burst": float(inbound_burst),
            # New TCP connections per second from one IP (rate, burst); rate 0: no limit.
            "new_connections_per_ip": (float(new_connections_per_ip[0]),
                                       float(new_connections_per_ip[1])),
            # New Engine.IO polling sessions per second from one IP (rate, burst); 0: no limit.
            "new_sessions_per_ip": (float(new_sessions_per_ip[0]),
                                    float(new_sessions_per_ip[1])),
            # Binary attachments of one Socket.IO packet: how many, and their bytes in all.
            "max_attachments": int(max_attachments),
            "max_attachment_bytes": int(max_attachment_bytes),
            # Per-IP limits skip 127.0.0.0/8 and ::1 unless set (a proxy on the same host).
            "limit_loopback": bool(limit_loopback),
            # JWT verification at every handshake and for the publish API (docs/api.md).
            "jwt": jwt._options() if isinstance(jwt, JWTAuth) else None,
            # Topics of "/" that clients may subscribe to by name (docs/api.md "Client
            # topics"): glob patterns, `{sub}` for the token's subject; None: none.
            "client_topics": _topic_patterns(client_topics),
            # Transports: False turns the endpoint off (an unknown path, 404).
            "json_protocol": bool(json_protocol),
            "sse": bool(sse),
            "socketio": bool(socketio),
            # TLS on the same port (https, wss): PEM certificate (chain) and key files.
            "tls_cert_file": os.fspath(ssl_certfile) if ssl_certfile else "",
            "tls_key_file": os.fspath(ssl_keyfile) if ssl_keyfile else "",
            # The broker publications pass through: "" (None) or "memory" is this process
            # only; C++ refuses any other URL when the server is built, at start().
            "broker": broker or "",
        }
        if broker is not None and not isinstance(broker, str):
            raise TypeError(f"broker must be a URL string, not {type(broker).__name__}")
        if "*" in self._options["cors_allowed_origins"] and cors_credentials:
            raise ValueError("cors_credentials=True cannot be combined with "
                             "cors_allowed_origins='*': any site could then read what a "
                             "user's cookies unlock; list the origins that may send them")
        if bool(ssl_certfile) != bool(ssl_keyfile):
            raise ValueError("TLS needs both ssl_certfile and ssl_keyfile")
        for what, path in (("certificate", ssl_certfile), ("key", ssl_keyfile)):
            if path and not os.path.isfile(path):
                raise FileNotFoundError(errno.ENOENT, f"TLS {what} file not found",
                                        os.fspath(path))
        self.tls = bool(ssl_certfile)
        if jwt is not None and not isinstance(jwt, JWTAuth):
            raise TypeError(f"jwt must be a skyrelay.JWTAuth, not {type(jwt).__name__}")
        if jwt is not None:
            _core.check_jwt(self._options["jwt"])  # a key that does not fit: ValueError now
        self.jwt = jwt
        if history_size < 0 or history_ttl <= 0:
            raise ValueError("history_size must be >= 0 and history_ttl > 0")
        if recovery_window > 0 and (history_size == 0 or recovery_window > history_ttl):
            raise ValueError(
                f"recovery_window={recovery_window} needs history that lasts at least as long: "
                f"history_size > 0 and history_ttl >= recovery_window (history_size="
                f"{history_size}, history_ttl={history_ttl})")
        self.socketio_path = self._options["socketio_path"]
        specs: list[str | re.Pattern[str]] | None = \
            [namespaces] if isinstance(namespaces, (str, re.Pattern)) else \
            list(namespaces) if namespaces is not None else None
        for spec in specs or []:
            if not isinstance(spec, re.Pattern) and not (spec == "*" or spec.startswith("/")):
                raise ValueError(f"a namespace is '*', a path starting with '/' or a compiled "
                                 f"regular expression, not {spec!r}")
        # Handlers, namespaces, role requirements (docs/api.md "Authorization", passed to C++
        # at start()) and the connection table; the Socket.IO bridge reaches them through it.
        # With roles_from_connect, a connect handler's conn.roles replace the token's, and the
        # namespace and handshake-room checks wait for the handler.
        self._options["roles_from_connect"] = bool(roles_from_connect)
        self._registry = HandlerRegistry(specs, json_default, bool(debug),
                                         bool(roles_from_connect), loop, self._new_connection)
        # The same objects under the names the facades and tests use.
        self._connections = self._registry.connections
        self._connect_handlers = self._registry.connect_handlers
        self._core: _core.Server | None = None
        self._socketio = SocketIOBridge(self._registry, lambda: self._core,
                                        functools.partial(Connection, self), self.socketio_path)
        self._wsgi: WSGIBridge | None = None
        if wsgi_app is not None:
            self.mount_wsgi(wsgi_app)
        self._lock = threading.Lock()
        for nsp, roles in (namespace_roles or {}).items():
            self.require_roles(roles, namespace=nsp)
        for pattern, roles in (room_roles or {}).items():
            self.require_roles(roles, room=pattern)

    # -- registration -------------------------------------------------------------------------

    def on(self, event: str, handler: Handler | None = None, *,
           namespace: str | re.Pattern[str] | None = None,
           rate: tuple[float, float] | None = None,
           roles: Iterable[str] | None = None) -> Any:
        """Registers ``handler(conn, data)`` for an event; usable as a decorator.

        ``"connect"`` and ``"disconnect"`` register the connection handlers instead (see
        :meth:`on_connect` and :meth:`on_disconnect`). For a request (or a Socket.IO event that
        asks for an ack), the handler's return value, or its awaited result, is the answer;
        raising :class:`RequestError` answers with your own error code. ``namespace`` is the
        Socket.IO namespace; ``"/"`` (the default) is shared with the JSON protocol. The event
        ``"*"`` catches Socket.IO events with no handler of their own: it gets ``[name, *args]``.

        ``namespace`` may also be ``"*"`` or a compiled regular expression: the handler then
        serves every namespace it matches (the whole name, ``re.fullmatch``) that has no handler
        of its own for the event; ``conn.namespace`` tells which one.

        ``rate=(per_second, burst)`` gives the event its own inbound limit per connection,
        instead of the server's ``inbound_rate``/``inbound_burst`` (JSON protocol and Socket.IO;
        set it before :meth:`start`).

        ``roles=[...]`` lets only connections holding one of these roles send the event: the
        check runs in C++ before the handler is queued, and a refusal answers ``forbidden``
        (see :meth:`require_roles`). Set it before :meth:`start`.
        """
        if roles is not None:
            if isinstance(namespace, re.Pattern) or namespace == "*":
                raise ValueError("roles= needs a namespace name, not a pattern: register the "
                                 "event for each namespace, or check conn.roles in the handler")
            if event in ("connect", "disconnect"):
                raise ValueError(f"roles= does not apply to {event!r}: use "
                                 f"require_roles(roles, namespace=...) for a namespace")
            self.require_roles(roles, event=event, namespace=namespace or "/")
        if rate is not None:
            per_second, burst = rate
            if per_second < 0 or burst < 1:
                raise ValueError("rate is (messages per second >= 0, burst >= 1)")
            self._registry.event_limits[event] = (float(per_second), float(burst))
        nsp = namespace or "/"

        def register(fn: Handler) -> Handler:
            return self._registry.register(event, nsp, fn)

        return register(handler) if handler is not None else register

    def require_roles(self, roles: Iterable[str], *, namespace: str = "/",
                      room: str | None = None, event: str | None = None) -> None:
        """Requires one of ``roles`` (from the token's ``roles`` claim) for a namespace, a
        room or an event, checked in C++ before anything reaches Python.

        - Neither ``room`` nor ``event``: connecting to ``namespace`` (a Socket.IO CONNECT;
          for ``"/"`` also every JSON-protocol WebSocket and SSE stream). Refused with
          ``connect_error`` ``{"code": "forbidden"}`` or HTTP 403.
        - ``room``: a pattern in which ``*`` matches any run of characters (``"well:*"``).
          Every rule that matches a room must be met. Checked for subscriptions
          (``subscribe``, ``/ws/<topic>``, SSE topics) and for :meth:`join`.
        - ``event``: the event's messages (JSON protocol events and requests, Socket.IO
          events): an ``error`` frame or response with code ``forbidden``; for Socket.IO the
          ack, if asked for, else a ``forbidden`` event, carries ``{"error": {...}}``.

        Call before :meth:`start`.
        """
        if isinstance(roles, str):
            roles = [roles]
        roles = [str(r) for r in roles]
        if not roles or any(not r for r in roles):
            raise ValueError("roles must name at least one role, and no role may be empty")
        if room is not None and event is not None:
            raise ValueError("a rule is for a room or an event, not both")
        if not isinstance(namespace, str) or not namespace.startswith("/"):
            raise ValueError(f"namespace must be a name starting with '/', not {namespace!r}")
        if self._core is not None:
            raise RuntimeError("set role requirements before start()")
        if room is not None and not room:
            raise ValueError("room pattern must not be empty")
        if event is not None and not event:
            raise ValueError("event name must not be empty")
        self._registry.add_roles(roles, namespace, room, event)

    def _access_options(self) -> dict[str, Any] | None:
        return self._registry.access_options()

    def mount_wsgi(self, app: Callable[..., Any], workers: int = 8) -> None:
        """Serves a WSGI app (Flask, Django...) for every request that no built-in route
        takes, on the same port. Call before :meth:`start`."""
        from .wsgi import WSGIBridge

        self._wsgi = WSGIBridge(app, self.host, lambda: self.port, workers,
                                url_scheme="https" if self.tls else "http")

    def on_connect(self, fn: Handler) -> Handler:
        """Registers ``fn(conn)``, called for every handshake before it completes.

        Return ``False`` or raise :class:`ConnectionRefused` to refuse it. Register it before
        :meth:`start`: without one, handshakes complete in C++ without calling Python.
        """
        return self._registry.register("connect", "/", fn)

    def on_disconnect(self, fn: Handler) -> Handler:
        """Registers ``fn(conn, reason)``; ``reason`` is one of the documented strings."""
        return self._registry.register("disconnect", "/", fn)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Server:
        """Binds and starts serving in background threads; returns at once."""
        with self._lock:
            if self._core is not None and self._core.running:
                return self
            registry = self._registry
            if registry.loop is None:
                try:
                    registry.loop = asyncio.get_running_loop()
                except RuntimeError:
                    pass
            # Static names are checked in C++. With patterns, C++ lets every name through and
            # the connect callback checks them with Python's own regular expressions.
            options = dict(self._options,
                           sio_namespaces=registry.namespace_specs(),
                           event_limits=dict(registry.event_limits),
                           access=registry.access_options())
            bridge = self._socketio
            self._core = _core.Server(
                _server_config(options),
                self._hook_connect if "/" in self._connect_handlers else None,
                self._hook_message,
                self._hook_disconnect,
                bridge.on_connect,
                bridge.on_event,
                bridge.on_ack,
                self._wsgi.handle if self._wsgi is not None else None,
            )
            if self._wsgi is not None:
                self._wsgi.reply = self._core.http_reply
            self._core.start()
        log.info("skyrelay listening on %s", self.http_url)
        return self

    def stop(self) -> None:
        """Graceful stop: close frames (1001) to every client, a bounded drain, then exit."""
        with self._lock:
            core = self._core
        if core is None:
            return
        if self._registry.on_dispatcher():
            # Called from a handler: the dispatcher cannot join itself, so stop from elsewhere.
            threading.Thread(target=core.stop, name="skyrelay-stop").start()
            return
        core.stop()
        self._connections.clear()
        self._registry.stop_loop()

    def run(self) -> None:
        """Starts and blocks until SIGINT or SIGTERM, then stops gracefully."""
        done = threading.Event()
        previous = {}
        # The handlers go in before the server starts and says so: a signal sent as soon as
        # "serving on" is read must still stop it gracefully.
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda *_: done.set())
        try:
            self.start()
            print(f"skyrelay serving on {self.http_url} (WebSocket at {self.url}); "
                  f"press Ctrl+C to stop", flush=True)
            # Also returns when stop() is called elsewhere (another thread, a handler).
            while not done.wait(0.5) and self.running:
                pass
        except KeyboardInterrupt:
            pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._core is not None and self._core.running

    @property
    def port(self) -> int:
        """The bound port (the one picked by the OS when configured as 0)."""
        if self._core is None:
            return int(self._options["port"])
        return self._core.port

    @property
    def url(self) -> str:
        """The WebSocket URL of the JSON protocol endpoint."""
        return f"{'wss' if self.tls else 'ws'}://{self.host}:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    # -- publishing and rooms -----------------------------------------------------------------

    def emit(self, event: str, data: Any = None, *, to: Target = None, skip: Target = None,
             policy: str | None = None, default: Callable[[Any], Any] | None = None,
             namespace: str | None = None, args: Iterable[Any] | None = None) -> int:
        """Publishes an event; safe from any thread and from asyncio; never blocks on sockets.

        ``to`` is a room, a sid, a :class:`Connection` or a list of them; omit it to reach every
        connection of the namespace. A :class:`Connection` is reached through the connection
        registry only. A string is the sid of a live connection of ``namespace`` when there is
        one (that connection, never a room of the same name); nothing when it is the sid of a
        connection of another namespace or of one closed in the last 10 minutes; else the room
        of that name in ``namespace``. ``skip`` lists sids (or connections) to leave out.
        ``policy`` overrides the outbox overflow policy: ``"drop_oldest"`` for volatile
        streams or ``"disconnect"``. ``namespace`` is the Socket.IO namespace (default ``"/"``,
        which JSON-protocol and SSE clients share; when ``to`` is one :class:`Connection`, its
        namespace). Returns the number of connections it was queued for.

        ``args`` (instead of ``data``) sends several arguments: Socket.IO clients get them as
        separate arguments, JSON-protocol clients as a list. ``bytes`` inside ``data`` or
        ``args`` travel to Socket.IO clients as binary attachments, and to JSON-protocol
        clients as base64 strings. (``bytes`` as the whole ``data`` is already-encoded JSON.)
        """
        if policy not in _POLICIES:
            raise ValueError(f"policy must be 'drop_oldest' or 'disconnect', not {policy!r}")
        if args is not None and data is not None:
            raise ValueError("pass either data or args, not both")
        hook = default or self._registry.json_default
        values = list(args) if args is not None else None
        sio_args: str | None = None
        attachments: list[bytes] = []
        try:
            payload = encode_json(values if values is not None else data, hook)
        except NestedBytes:
            payload = None
        if values is not None or payload is None:
            # Socket.IO clients get the bytes as attachments, JSON-protocol clients as base64.
            text, attachments = encode_args(values if values is not None else [data], hook)
            sio_args = text[1:-1]  # the arguments without the array's brackets
            if payload is None:
                payload = encode_base64(values if values is not None else data, hook,
                                        check=_core.is_valid_json)
        core = self._require_core()
        if namespace is None:
            namespace = to.namespace if isinstance(to, Connection) else "/"
        names, conns = _targets(to)
        return core.emit(event, payload, names, _names(skip), _POLICIES[policy],
                         namespace, sio_args, attachments, conns)

    def call(self, event: str, data: Any = None, *, to: str | Connection,
             timeout: float = 60.0) -> Any:
        """Emits to one Socket.IO connection and blocks until it acknowledges; returns the ack's
        argument (a list when the client sent several). Raises TimeoutError. Not from a sync
        handler: use :meth:`acall` in an async one."""
        sid = to.sid if isinstance(to, Connection) else to
        return self._socketio.call(sid, event, () if data is None else (data,), timeout)

    async def acall(self, event: str, data: Any = None, *, to: str | Connection,
                    timeout: float = 60.0) -> Any:
        """The awaitable form of :meth:`call`."""
        sid = to.sid if isinstance(to, Connection) else to
        return await self._socketio.acall(sid, event, () if data is None else (data,), timeout)

    def set_room_policy(self, room: str, policy: str | None, *, namespace: str = "/") -> None:
        """Sets the default overflow policy of a room's publications (None resets it)."""
        if policy not in _POLICIES:
            raise ValueError(f"policy must be 'drop_oldest' or 'disconnect', not {policy!r}")
        self._require_core().set_room_policy(namespace, room, _POLICIES[policy])

    def join(self, sid: str, room: str, *, namespace: str = "/") -> bool:
        """Puts a connection in a room. False when the connection is gone or already in
        ``max_rooms_per_connection`` rooms; raises :class:`Forbidden` when the connection lacks
        a role the room requires (:meth:`require_roles`). Raised in a request handler, that
        answers the request with code ``forbidden``."""
        joined, refusal = self._require_core().join_checked(sid, namespace, room)
        if refusal is not None:
            raise Forbidden(refusal)
        return bool(joined)

    def leave(self, sid: str, room: str, *, namespace: str = "/") -> bool:
        return self._require_core().leave(sid, namespace, room)

    def rooms(self, sid: str, *, namespace: str = "/") -> list[str]:
        """The rooms of ``namespace`` the connection is in, sorted."""
        return self._require_core().rooms(sid, namespace)

    def room_members(self, room: str, *, namespace: str = "/") -> list[str]:
        """The sids in a room."""
        return self._require_core().room_members(namespace, room)

    def room_size(self, room: str, *, namespace: str = "/") -> int:
        return self._require_core().room_size(namespace, room)

    def disconnect(self, sid: str, reason: str = "disconnected by the server") -> bool:
        """Closes a JSON-protocol connection with close code 4002 and ``reason``, or disconnects
        a Socket.IO connection from its namespace (the client sees "io server disconnect")."""
        core = self._require_core()
        conn = self._connections.get(sid)
        if conn is not None and conn.transport == "socket.io":
            return core.sio_disconnect(sid)
        return core.disconnect(sid, CLOSE_SERVER_DISCONNECT, reason) or core.sio_disconnect(sid)

    @property
    def connection_count(self) -> int:
        return self._core.connection_count if self._core is not None else 0

    def health(self) -> dict[str, Any]:
        return json.loads(self._require_core().health_json())

    def metrics_text(self) -> str:
        return self._require_core().metrics_text()

    # -- internals ----------------------------------------------------------------------------

    @property
    def debug(self) -> bool:
        """Whether clients see a failed handler's exception text (development only); the
        server log gets the traceback either way."""
        return self._registry.debug

    @debug.setter
    def debug(self, value: bool) -> None:
        self._registry.debug = bool(value)

    def _log_error(self, what: str, exc: BaseException) -> None:
        self._registry.log_error(what, exc)

    def _require_core(self) -> _core.Server:
        core = self._core
        if core is None or not core.running:
            raise RuntimeError("the server is not running; call start() first")
        return core

    def _has_connection(self, sid: str) -> bool:
        return self._core is not None and self._core.has_connection(sid)

    def _new_connection(self, sid: str) -> Connection:
        """The Connection of a sid the table does not hold yet, with its token's claims."""
        claims = self._core.claims(sid) \
            if self.jwt is not None and self._core is not None else None
        return Connection(self, sid, claims=claims)

    def _hook_connect(self, sid: str, path: str, query: str, remote: str,
                      headers: list[tuple[str, str]], claims: str | None = None) -> None:
        self._registry.entered()
        sse = path == "/sse" or path.startswith("/sse/")
        conn = Connection(self, sid, path, query, remote, headers,
                          transport="sse" if sse else "websocket", claims=claims)
        self._connections[sid] = conn
        core = self._core
        handler = self._connect_handlers.get("/")
        assert core is not None and handler is not None

        def done(result: Any, exc: BaseException | None) -> None:
            if exc is None and result is not False:
                if not core.accept(sid, self._registry.granted_roles(conn)):
                    self._connections.pop(sid, None)  # gone, or refused for its roles
                return
            self._connections.pop(sid, None)
            if isinstance(exc, ConnectionRefused):
                core.refuse(sid, exc.status, exc.message)
            elif exc is not None:
                self._log_error("connect handler failed", exc)
                core.refuse(sid, 500, "connect handler failed")
            else:
                core.refuse(sid, 403, "connection refused")

        self._registry.call(handler, (conn,), done)

    def _hook_message(self, sid: str, event: str, data: str, request_id: str) -> None:
        self._registry.entered()
        core = self._core
        assert core is not None
        handler = self._registry.handlers.get(("/", event))
        if handler is None:
            message = f'no handler for event "{event}"'
            if request_id:
                core.respond(sid, request_id, False, "unknown_event", message)
            else:
                core.send_error(sid, "unknown_event", message)
            return
        conn = self._registry.connection(sid)

        def done(result: Any, exc: BaseException | None) -> None:
            if exc is not None:
                if isinstance(exc, RequestError):
                    if request_id:
                        core.respond(sid, request_id, False, exc.code, exc.message)
                    else:
                        core.send_error(sid, exc.code, exc.message)
                    return
                # A plain event has no answer to carry the error: only the log hears of it.
                message = self._registry.handler_error(f"handler for {event!r} failed", exc)
                if request_id:
                    core.respond(sid, request_id, False, "handler_error", message)
                return
            if request_id:
                try:
                    body = encode_json(result, self._registry.json_default).decode("utf-8")
                except (TypeError, ValueError) as err:
                    message = self._registry.handler_error(
                        f"response of {event!r} is not JSON serializable", err)
                    core.respond(sid, request_id, False, "handler_error", message)
                    return
                core.respond(sid, request_id, True, body, "")

        value = json.loads(data)
        if getattr(handler, "_skyrelay_args", False):  # facade handlers take an argument list
            value = [] if value is None else [value]
        self._registry.call(handler, (conn, value), done)

    def _hook_disconnect(self, sid: str, reason: str, claims: str | None = None) -> None:
        self._registry.entered()
        conn = self._connections.pop(sid, None)
        if conn is not None and conn.transport == "socket.io":
            self._socketio.forget_connection(sid)
        registry = self._registry
        handler = registry.namespace_handler(registry.disconnect_handlers,
                                             conn.namespace if conn is not None else "/")
        if handler is None:
            return
        if conn is None:
            conn = Connection(self, sid, claims=claims)

        def done(result: Any, exc: BaseException | None) -> None:
            if exc is not None:
                log.error("disconnect handler failed", exc_info=exc)

        self._registry.call(handler, (conn, reason), done)
