"""The public server API: :class:`Server` (configuration, handlers, lifecycle, emit and
rooms). Its parts live beside it: the keyword handling in ``options.py``, the
:class:`Connection` in ``connection.py``, the handler registry in ``handlers.py``, and the
core's callbacks in ``json_bridge.py`` (JSON protocol and SSE) and ``socketio.py``."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
import signal
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from . import _core
from .auth import JWTAuth
from .connection import Connection as Connection  # re-exported: skyrelay.server.Connection
from .connection import Target, split_targets, target_names
from .encoding import encode_event
from .endpoints import Envelope, make_endpoint
from .encoding import encode_json as _encode_json
from .errors import Forbidden
from .handlers import HANDLER_ERROR_MESSAGE as HANDLER_ERROR_MESSAGE  # re-exported
from .handlers import Handler, HandlerRegistry
from .json_bridge import JSONProtocolBridge
from ._core_logging import CoreLogPump
from ._fd_limit import raise_nofile
from ._rate_text import parse_rate
from ._threads import os_named
from .options import namespace_specs, run_overrides, server_config, server_options
from .socketio import SocketIOBridge
from . import state as state_mod

if TYPE_CHECKING:
    from .wsgi import WSGIBridge

log = logging.getLogger("skyrelay")

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
    default) delivers in this process only; ``"redis://[[user]:password@]host[:port][/db]"``
    carries every publication through one Redis server to every skyrelay process on it
    (docs/deployment.md); ``rediss://`` the same over TLS (``?ca=``, ``cert=``/``key=``,
    ``sni=``; verified by default), ``redis+sentinel://h1:p1,h2:p2/<master>[/db]`` to the master
    that Sentinel names (grammar: docs/api.md "Broker URLs"); ``redis+cluster://h1:p1,h2:p2``
    spreads the rooms over a Redis Cluster's masters (7.0+; cluster state, idempotency keys
    and the publish budget are then per node). A bad URL, an unreadable TLS file
    and any other scheme raise ValueError at :meth:`start`, naming it.

    On a Redis broker the node also accepts what python-socketio's and Flask-SocketIO's Redis
    managers publish (``socketio.RedisManager(url, write_only=True).emit(...)``, and
    enter_room, leave_room, close_room, disconnect) on ``redis_manager_channels``: None (the
    default) listens on ``"socketio"`` and ``"flask-socketio"``, the managers' defaults; a
    string or list names others; ``[]`` turns it off (docs/deployment.md).

    With a Redis broker the nodes share their state (docs/api.md "Cluster state"):
    :meth:`room_size` and ``/health`` answer for every node, each node's report living
    ``cluster_state_ttl`` seconds (5.0; reported every fifth of it) and holding at most
    ``cluster_rooms_max`` rooms (10,000, its largest); the publish API's idempotency keys and
    its ``publish_rate`` budget are kept in Redis. ``publish_rate=(rate, burst)`` limits each
    publisher of ``/api/publish`` to ``rate`` events a second with bursts of ``burst`` (429
    ``rate_limited`` over it); None, the default, sets no limit.

    ``compression=True`` accepts permessage-deflate (RFC 7692) on every WebSocket transport
    when the client offers it; ``"json"`` or ``"socketio"`` (or a list of them) turns it on for
    those transports only. Off by default. Each publication is compressed once and the same
    bytes go to every compressed connection; messages under ``compression_threshold`` bytes
    (128) go uncompressed (docs/protocol.md "Compression").

    ``allow_upgrades=False`` keeps Engine.IO polling sessions on polling: their open packet offers
    no upgrade and a WebSocket probe for one is refused, as python-engineio does (a client may
    still open a session over WebSocket directly).

    ``reuse_port=True`` sets ``SO_REUSEPORT`` on the listening socket, so that several
    processes can serve one port (``skyrelay run --workers N`` sets it; docs/deployment.md).

    ``json_ws_path``, ``sse_path`` (each also ``<path>/<topic>``), ``health_path``,
    ``metrics_path``, ``publish_path`` and ``client_js_path`` move the built-in routes; None
    turns one off. :meth:`endpoint` declares the application's own (docs/api.md "Endpoints and
    envelopes").

    ``trusted_proxies`` lists the reverse proxies in front of the server: addresses or CIDR
    networks (``["127.0.0.1", "10.0.0.0/8", "fd00::/8"]``; ``"*"`` trusts every peer). From
    them, the client's address is read from ``proxy_header``: ``"x-forwarded-for"`` (the
    default; what nginx, Caddy, Traefik and cloud load balancers write) walked from the right,
    skipping trusted hops, or ``"forwarded"`` (RFC 7239). That address is what per-IP limits
    count (the loopback exemption included), ``conn.remote`` shows and a WSGI app reads in
    ``REMOTE_ADDR``; from any other peer the header is ignored. A spec that does not parse
    raises ValueError here (docs/deployment.md "Client addresses behind a proxy").
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
        allow_upgrades: bool = True,
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
        compression: bool | str | Iterable[str] = False,
        compression_threshold: int = 128,
        ssl_certfile: str | os.PathLike[str] | None = None,
        ssl_keyfile: str | os.PathLike[str] | None = None,
        broker: str | None = None,
        cluster_state_ttl: float = 5.0,
        cluster_rooms_max: int = 10_000,
        publish_rate: tuple[float, float] | None = None,
        reuse_port: bool = False,
        redis_manager_channels: str | Iterable[str] | None = None,
        json_ws_path: str | None = "/ws",
        sse_path: str | None = "/sse",
        health_path: str | None = "/health",
        metrics_path: str | None = "/metrics",
        publish_path: str | None = "/api/publish",
        client_js_path: str | None = "/skyrelay.js",
        debug: bool = False,
        trusted_proxies: Iterable[str] | str | None = None,
        proxy_header: str = "x-forwarded-for",
        liveness_path: str | None = "/health/live",
        readiness_path: str | None = "/health/ready",
        io_stall_timeout: float = 10.0,
        dispatcher_stall_timeout: float = 10.0,
        log_queue_max: int = 10_000,
        io_uring: str = "auto",
        descriptor_tables: str = "shared",
    ) -> None:
        # Every argument by its name, taken before any other local exists.
        settings = dict(locals())
        del settings["self"]
        self.host = host
        self._options: dict[str, Any] = server_options(settings)
        self.tls = bool(ssl_certfile)
        self.jwt = jwt
        self.socketio_path = self._options["socketio_path"]
        specs = namespace_specs(namespaces)
        # Handlers, namespaces, role requirements (docs/api.md "Authorization", passed to C++
        # at start()) and the connection table; the Socket.IO bridge reaches them through it.
        # With roles_from_connect, a connect handler's conn.roles replace the token's, and the
        # namespace and handshake-room checks wait for the handler.
        self._options["roles_from_connect"] = bool(roles_from_connect)
        self._registry = HandlerRegistry(specs, json_default, bool(debug),
                                         bool(roles_from_connect), loop, self._new_connection)
        # The same objects under the names the facades and tests use.
        self._connections = self._registry.connections
        self._states: dict[tuple[str, str, str], state_mod.State] = {}
        self._connect_handlers = self._registry.connect_handlers
        self._core: _core.Server | None = None
        self._jwt_started = False  # this server holds its JWTAuth's JWKS refresher
        self._log_pump: CoreLogPump | None = None
        self._socketio = SocketIOBridge(self._registry, lambda: self._core,
                                        functools.partial(Connection, self), self.socketio_path)
        self._json = JSONProtocolBridge(self._registry, lambda: self._core,
                                        functools.partial(Connection, self), self._socketio)
        self._wsgi: WSGIBridge | None = None
        self._json.sse_path = self._options["sse_path"]
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
           rate: tuple[float, float] | str | None = None,
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

        ``rate=(per_second, burst)``, or text such as ``"10/second"`` (the ``limits``
        package's notation: N per period is a burst of N refilled over the period), gives the
        event its own inbound limit per connection,
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
            per_second, burst = parse_rate(rate) if isinstance(rate, str) else rate
            if per_second < 0 or burst < 1:
                raise ValueError("rate is (messages per second >= 0, burst >= 1)")
            self._registry.event_limits[event] = (float(per_second), float(burst))
        nsp = namespace or "/"

        def register(fn: Handler) -> Handler:
            return self._registry.register(event, nsp, fn)

        return register(handler) if handler is not None else register

    def endpoint(self, path: str, *, transport: str = "websocket",
                 topics: str | Iterable[str] | None = None, envelope: Envelope | None = None,
                 welcome: tuple[str, Any] | None = None,
                 heartbeat: tuple[str, Any, float] | None = None,
                 compression: bool | None = None) -> None:
        """Declares a WebSocket or SSE endpoint at ``path``, matched before the built-in routes.

        ``{name}`` segments are path parameters: each matches one non-empty segment
        (percent-decoded, at most 256 bytes; else 400 ``bad_param``) and reaches the connect
        handler as ``conn.params[name]``. ``topics`` are templates over them
        (``"{telescope_id}"``, ``"well:{well_id}"``) joined as the connection opens, after the
        same checks as ``/ws/<topic>`` (``client_topics``, room roles: 403 otherwise).

        A WebSocket speaks the skyrelay protocol, or with ``envelope=`` an :class:`Envelope`
        of the application's own. An SSE endpoint (``transport="sse"``) takes
        ``welcome=(event, data_template)`` in place of its ``welcome`` event and
        ``heartbeat=(event, data_template, seconds)`` in place of its keep-alive comment;
        templates may use ``"$param.<name>"``, ``"$topic"``, ``"$ts"``, ``"$ts_ms"``,
        ``"$sid"``. ``compression`` turns permessage-deflate on or off for a WebSocket
        endpoint (None: as ``compression=`` says for the JSON protocol). Call before
        :meth:`start`; a bad declaration raises ValueError here.
        """
        if self._core is not None:
            raise RuntimeError("declare endpoints before start()")
        ep = make_endpoint(path, transport, topics, envelope, welcome, heartbeat, compression)
        if any(e.path == ep.path for e in self._json.endpoints):
            raise ValueError(f"endpoint {path!r} is declared twice")
        self._json.endpoints.append(ep)

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
            from . import __version__  # here: the package imports this module first
            options = dict(self._options,
                           version=__version__,
                           sio_namespaces=registry.namespace_specs(),
                           event_limits=dict(registry.event_limits),
                           access=registry.access_options(),
                           endpoints=[e.config(self._options["compress_json_ws"])
                                      for e in self._json.endpoints])
            bridge = self._socketio
            if self.jwt is not None and not self._jwt_started:
                self.jwt._start()  # a jwks_url: fetched now (JWKSError fails the start)
                self._jwt_started = True
            # Every connection is an fd. With a table per I/O thread the limit bounds each
            # table's numbers, so all of it is taken (0: up to the hard limit).
            per_thread = self._options["descriptor_tables"] == "per_thread"
            raise_nofile(0 if per_thread else int(self._options["max_connections"]))
            try:
                self._core = _core.Server(
                    server_config(options),
                    self._json.on_connect if "/" in self._connect_handlers else None,
                    self._json.on_message,
                    self._json.on_disconnect,
                    bridge.on_connect,
                    bridge.on_event,
                    bridge.on_ack,
                    self._wsgi.handle if self._wsgi is not None else None,
                    registry.flush_async,  # after each dispatcher batch (handlers.py)
                )
                registry.batching = True
                if self._wsgi is not None:
                    self._wsgi.reply = self._core.http_reply
                # The core's log records, into logging (levels set before the first one is made).
                self._log_pump = CoreLogPump(self._core.log_queue)
                self._log_pump.start()
                self._core.start()
            except BaseException:
                self._stop_jwt()  # the refresher goes with the failed start
                if self._log_pump is not None:
                    self._log_pump.stop()
                    self._log_pump = None
                raise
            for state in self._states.values():
                # Made in C++ now, with what was updated before the start, so the first
                # member gets its full update.
                state._apply_seed()
        log.info("skyrelay listening on %s", self.http_url)
        return self

    def _stop_jwt(self) -> None:
        if self.jwt is not None and self._jwt_started:
            self._jwt_started = False
            self.jwt._stop()

    def _configure_run(self, host: str | None = None, port: int | None = None, *,
                       broker: str | None = None, reuse_port: bool | None = None,
                       worker: tuple[int, list[int], int] | None = None) -> None:
        """For ``skyrelay run`` (cli.py), before :meth:`start`: the command line's host, port
        and broker over the app's own, and for one of several worker processes its index,
        the handoff socket of every worker and its own inbox (docs/deployment.md)."""
        if self._core is not None:
            raise RuntimeError("the server has already started")
        if host is not None:
            self.host = host
        run_overrides(self._options, host=host, port=port, broker=broker,
                      reuse_port=reuse_port, worker=worker)

    @property
    def broker(self) -> str:
        """The broker URL publications pass through ("" or ``"memory"``: this process only)."""
        return str(self._options["broker"])

    def stop(self) -> None:
        """Graceful stop: close frames (1001) to every client, a bounded drain, then exit."""
        with self._lock:
            core = self._core
        if core is None:
            return
        if self._registry.on_dispatcher():
            # Called from a handler: the dispatcher cannot join itself, so stop from elsewhere.
            def stop_then_jwt() -> None:
                self._stop_core(core)
                self._stop_jwt()
            threading.Thread(target=os_named(stop_then_jwt), name="skyrelay-stop").start()
            return
        if self._wsgi is not None:
            self._wsgi.pause()  # no WSGI answer in flight while the core tears down
        try:
            self._stop_core(core)
        finally:
            if self._wsgi is not None:
                self._wsgi.resume()
            self._stop_jwt()
        self._connections.clear()
        self._registry.stop_loop()

    def _stop_core(self, core: _core.Server) -> None:
        core.stop()
        if self._log_pump is not None:
            self._log_pump.stop()  # after the core: its last records are logged too

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
            from ._cli_output import served_routes

            print(f"skyrelay serving on {self.http_url} ({served_routes(self)}); "
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
        path = self._options["json_ws_path"] or "/ws"
        return f"{'wss' if self.tls else 'ws'}://{self.host}:{self.port}{path}"

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
        namespace). Returns the number of connections it was queued for (0 with a Redis
        broker: it returns once the publication is queued to the broker, without waiting for
        Redis, and local delivery happens when Redis hands it back). Raises
        :class:`~skyrelay.errors.BrokerUnavailable` while a Redis broker cannot reach Redis.
        While its queue of publications waiting for Redis is full (``publish_queue``), it waits
        for a place, up to 5 s, then raises that. One that was queued and then failed is
        counted on /metrics, not raised.

        ``args`` (instead of ``data``) sends several arguments: Socket.IO clients get them as
        separate arguments, JSON-protocol clients as a list. ``bytes`` inside ``data`` or
        ``args`` travel to Socket.IO clients as binary attachments, and to JSON-protocol
        clients as base64 strings. (``bytes`` as the whole ``data`` is already-encoded JSON.)
        """
        if policy not in _POLICIES:
            raise ValueError(f"policy must be 'drop_oldest' or 'disconnect', not {policy!r}")
        if args is not None and data is not None:
            raise ValueError("pass either data or args, not both")
        # Socket.IO clients get the bytes as attachments, JSON-protocol clients as base64.
        payload, sio_args, attachments = encode_event(
            data, list(args) if args is not None else None,
            default or self._registry.json_default, check=_core.is_valid_json)
        core = self._require_core()
        if namespace is None:
            namespace = to.namespace if isinstance(to, Connection) else "/"
        names, conns = split_targets(to)
        return core.emit(event, payload, names, target_names(skip), _POLICIES[policy],
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
        """The members of a room. With a Redis broker, on every node: this node's members
        now plus the other alive nodes' last reports (at most ``cluster_state_ttl / 5`` old);
        one Redis round trip, without the GIL; raises :class:`~skyrelay.errors.BrokerUnavailable`
        when Redis does not answer within 1 s. Else this process's members."""
        return self._require_core().room_size(namespace, room)

    def state(self, room: str, *, event: str = "state", namespace: str = "/",
              key_name: str = "key", fields_name: str = "fields", max_keys: int = 1000,
              max_key_bytes: int = 16384,
              request_event: str | None = state_mod.REQUEST_EVENT) -> state_mod.State:
        """The keyed state of ``room`` for ``event`` (docs/api.md "Delta updates"): the same
        object for the same arguments; ValueError for other options, bad names, or a Redis
        broker (a state lives in one process). Clients get its deltas and full updates as
        ``event`` publications to the room. Unless ``request_event`` is None (or the app
        handles that event itself), a client that sends it with ``{"room": room}`` gets the
        full update again. Usable before :meth:`start`: updates made then are the initial
        state, applied in C++ as it starts (limits are checked then)."""
        state_mod._check_broker(self)
        reserved = {"changes", "full_update", "removed", "index", "count"}
        if not event or not key_name or not fields_name or key_name == fields_name or \
                {key_name, fields_name} & reserved or max_keys < 1 or max_key_bytes < 1:
            raise ValueError("state needs an event name, two different non-empty names for "
                             f"the key and the fields, none of {sorted(reserved)}, and "
                             "max_keys, max_key_bytes >= 1")
        options = (key_name, fields_name, max_keys, max_key_bytes)
        with self._lock:
            state = self._states.get((namespace, room, event))
            if state is None:
                state = state_mod.State(self, room, event, namespace, *options)
                self._states[(namespace, room, event)] = state
            elif (state.key_name, state.fields_name, state.max_keys, state.max_key_bytes) \
                    != options:
                raise ValueError(f"room {room!r} already has a state for {event!r} with "
                                 f"other options")
            if request_event and (namespace, request_event) not in self._registry.handlers:
                self._registry.register(request_event, namespace,
                                        state_mod.full_update_handler(self))
        if self.running:
            state._core()
        return state

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
        """This process's connections (:meth:`cluster` has every node's)."""
        return self._core.connection_count if self._core is not None else 0

    def cluster(self) -> dict[str, Any] | None:
        """With a Redis broker, the cluster as of this node's last report (never blocks):
        ``{"status", "nodes", "connections", "age_ms", "node"}``, as in ``/health``; None with
        the memory broker."""
        return self.health().get("cluster")

    def health(self) -> dict[str, Any]:
        return json.loads(self._require_core().health_json())

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """What ``GET /health/ready`` answers: (ready, its JSON with each check)."""
        ok, text = self._require_core().readiness()
        return ok, json.loads(text)

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """What ``GET /health/live`` answers: (alive, its JSON with each check)."""
        ok, text = self._require_core().liveness()
        return ok, json.loads(text)

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
