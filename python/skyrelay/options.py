"""The keyword arguments of ``Server(...)`` as the C++ server's configuration: each checked,
converted to the unit and name of its ``server_config`` field (milliseconds for durations), and
bound to the typed ``_core.ServerConfig``. Server.__init__ keeps the documented signature and
hands its arguments here by name."""

from __future__ import annotations

import errno
import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from . import _core
from .auth import JWTAuth
from .endpoints import builtin_path


def server_config(options: Mapping[str, Any]) -> _core.ServerConfig:
    """The C++ server_config, set field by field from the options (they have its names)."""
    config = _core.ServerConfig()
    for key, value in options.items():
        setattr(config, key, value)
    return config


def topic_patterns(spec: str | Iterable[str] | None) -> list[str] | None:
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


def server_options(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The server_config fields (by name) for ``Server(**settings)``; ``settings`` holds every
    keyword argument of Server.__init__. Raises TypeError, ValueError or FileNotFoundError as
    :class:`skyrelay.Server` documents, for the first argument that does not fit."""
    o = SimpleNamespace(**settings)
    options = _fields(o)
    options.update(probe_fields(o))
    _check(o, options)
    return options


def _ms(seconds: float) -> int:
    """A duration in whole milliseconds, at least 1."""
    return max(1, int(round(seconds * 1000)))


def _fields(o: SimpleNamespace) -> dict[str, Any]:
    """Each argument converted to its server_config field (TypeError or ValueError for one
    that does not convert)."""
    return {
        "host": o.host,
        "port": int(o.port),
        "io_threads": int(o.io_threads),
        "static_dir": str(o.static_dir) if o.static_dir else "",
        # The browser client (skyrelay.js) ships in the package and is served built in.
        "client_dir": str(Path(__file__).with_name("web")),
        "max_message_size": int(o.max_message_size),
        "max_header_size": int(o.max_header_size),
        "max_body_size": int(o.max_body_size),
        "handshake_timeout_ms": _ms(o.handshake_timeout),
        # Inbound silence: keep-alive HTTP between requests, WebSockets (close 4004); 0: none.
        "idle_timeout_ms": _ms(o.idle_timeout) if o.idle_timeout > 0 else 0,
        "heartbeat_interval_ms": _ms(o.heartbeat_interval),
        "heartbeat_timeout_ms": _ms(o.heartbeat_timeout),
        "drain_timeout_ms": _ms(o.drain_timeout),
        # A WebSocket or SSE write pending this long cuts the connection (slow consumer).
        "write_timeout_ms": _ms(o.write_timeout) if o.write_timeout > 0 else 0,
        "outbox_max_bytes": int(o.outbox_max_bytes),
        "outbox_max_frames": int(o.outbox_max_frames),
        "dispatch_queue_max": int(o.dispatch_queue_max),
        "socketio_path": o.socketio_path if o.socketio_path.endswith("/")
        else o.socketio_path + "/",
        "eio_ping_interval_ms": _ms(o.ping_interval),
        "eio_ping_timeout_ms": _ms(o.ping_timeout),
        "sio_connect_timeout_ms": _ms(o.connect_timeout),
        # Origins besides the server's own for /ws, /sse and /socket.io (docs/api.md).
        "cors_allowed_origins": [o.cors_allowed_origins]
        if isinstance(o.cors_allowed_origins, str) else list(o.cors_allowed_origins or []),
        # Credentialed CORS for listed origins only: never with "*" (checked below).
        "cors_credentials": o.cors_credentials is not False,
        "eio_cookie": "io" if o.cookie is True else (o.cookie or ""),
        # False: polling sessions stay on polling (python-engineio's allow_upgrades=False).
        "eio_allow_upgrades": bool(o.allow_upgrades),
        # Test-only: a raw Engine.IO echo endpoint for the official conformance suite.
        "engineio_echo_path": o.engineio_echo_path,
        # Socket.IO connection state recovery (seconds a dropped socket waits; 0: off).
        "sio_recovery_window_ms": int(round(o.recovery_window * 1000)),
        # Replay history per topic (and per namespace for broadcasts to everyone).
        "history_max_events": int(o.history_size),
        "history_max_age_ms": _ms(o.history_ttl),
        # Server-Sent Events: keep-alive comment period and the browser's retry delay.
        "sse_keepalive_ms": _ms(o.sse_keepalive),
        "sse_retry_ms": _ms(o.sse_retry),
        # POST /api/publish takes "Authorization: Bearer <publish_token>"; None: API off.
        "publish_token": o.publish_token or "",
        # Limits (0: none): TCP connections in total and per IP, rooms per connection.
        "max_connections": int(o.max_connections),
        "max_connections_per_ip": int(o.max_connections_per_ip),
        "max_rooms_per_connection": int(o.max_rooms_per_connection),
        # Inbound messages per connection (token bucket; rate 0: no limit).
        "inbound_rate": float(o.inbound_rate),
        "inbound_burst": float(o.inbound_burst),
        # New TCP connections per second from one IP (rate, burst); rate 0: no limit.
        "new_connections_per_ip": (float(o.new_connections_per_ip[0]),
                                   float(o.new_connections_per_ip[1])),
        # New Engine.IO polling sessions per second from one IP (rate, burst); 0: no limit.
        "new_sessions_per_ip": (float(o.new_sessions_per_ip[0]),
                                float(o.new_sessions_per_ip[1])),
        # Binary attachments of one Socket.IO packet: how many, and their bytes in all.
        "max_attachments": int(o.max_attachments),
        "max_attachment_bytes": int(o.max_attachment_bytes),
        # Per-IP limits skip 127.0.0.0/8 and ::1 unless set (a proxy on the same host).
        "limit_loopback": bool(o.limit_loopback),
        # JWT verification at every handshake and for the publish API (docs/api.md).
        "jwt": o.jwt._options() if isinstance(o.jwt, JWTAuth) else None,
        # Topics of "/" that clients may subscribe to by name (docs/api.md "Client
        # topics"): glob patterns, `{sub}` for the token's subject; None: none.
        "client_topics": topic_patterns(o.client_topics),
        # Built-in routes' paths; None turns one off (an unknown path, 404).
        "json_ws_path": builtin_path("json_ws_path", o.json_ws_path),
        "sse_path": builtin_path("sse_path", o.sse_path),
        "health_path": builtin_path("health_path", o.health_path),
        "metrics_path": builtin_path("metrics_path", o.metrics_path),
        "publish_path": builtin_path("publish_path", o.publish_path),
        "client_js_path": builtin_path("client_js_path", o.client_js_path),
        # Transports: False turns the endpoint off (an unknown path, 404).
        "json_protocol": bool(o.json_protocol),
        "sse": bool(o.sse),
        "socketio": bool(o.socketio),
        # permessage-deflate (RFC 7692), accepted when a client offers it: per transport.
        "compress_json_ws": "json" in compression_transports(o.compression),
        "compress_socketio": "socketio" in compression_transports(o.compression),
        # Messages under this many bytes go uncompressed (RFC 7692 allows it per message).
        "compression_threshold": int(o.compression_threshold),
        # TLS on the same port (https, wss): PEM certificate (chain) and key files.
        "tls_cert_file": os.fspath(o.ssl_certfile) if o.ssl_certfile else "",
        "tls_key_file": os.fspath(o.ssl_keyfile) if o.ssl_keyfile else "",
        # The broker publications pass through: "" (None) or "memory" is this process
        # only; C++ refuses any other URL when the server is built, at start().
        "broker": o.broker or "",
        # Cluster state on a Redis broker: a node's report lives this long (reported every
        # fifth of it), with at most this many of its rooms (docs/api.md "Cluster state").
        "cluster_state_ttl_ms": _ms(o.cluster_state_ttl),
        "cluster_rooms_max": int(o.cluster_rooms_max),
        # The publish API's budget per publisher (events/s, burst); (0, 0): no limit.
        "publish_rate": _publish_rate(o.publish_rate),
        # SO_REUSEPORT: several processes serve the port (skyrelay run --workers N).
        "reuse_port": bool(o.reuse_port),
        # On a Redis broker: python-socketio / Flask-SocketIO manager channels accepted.
        "redis_manager_channels": manager_channels(o.redis_manager_channels, o.broker),
        # Reverse proxies whose header names the client (docs/deployment.md): (specs, header).
        "trusted_proxies": trusted_proxies(o.trusted_proxies, o.proxy_header),
    }


def trusted_proxies(spec: Any, header: str) -> tuple[list[str], str] | None:
    """The ``trusted_proxies`` and ``proxy_header`` options as (specs, header), None for no
    proxy. A spec is an address or a CIDR network, as text or an ``ipaddress`` object; C++
    parses them (ValueError from :func:`_check` for one that does not)."""
    if not isinstance(header, str):
        raise TypeError(f"proxy_header is 'x-forwarded-for' or 'forwarded', not {header!r}")
    if spec is None:
        return None
    specs = [spec] if isinstance(spec, (str, ipaddress.IPv4Address, ipaddress.IPv6Address,
                                        ipaddress.IPv4Network, ipaddress.IPv6Network)) \
        else list(spec)
    for item in specs:
        if not isinstance(item, (str, ipaddress.IPv4Address, ipaddress.IPv6Address,
                                 ipaddress.IPv4Network, ipaddress.IPv6Network)):
            raise TypeError(f"a trusted_proxies entry is an address or network (a string or an "
                            f"ipaddress object), not {item!r}")
    return ([str(item) for item in specs], header.lower()) if specs else None


def manager_channels(spec: str | Iterable[str] | None, broker: str | None = None) -> list[str]:
    """The ``redis_manager_channels`` option as a list (None: both managers' defaults; none on
    a Redis Cluster, where the bridge is opt-in: name the channels to turn it on)."""
    cluster = isinstance(broker, str) and broker.lower().startswith("redis+cluster:")
    if spec is None:
        return [] if cluster else ["socketio", "flask-socketio"]
    channels = [spec] if isinstance(spec, str) else list(spec)
    for channel in channels:
        if not isinstance(channel, str) or not channel:
            raise ValueError(f"a redis_manager_channels entry is a non-empty string, "
                             f"not {channel!r}")
    return channels


COMPRESSIBLE = ("json", "socketio")


def compression_transports(spec: bool | str | Iterable[str] | None) -> set[str]:
    """The ``compression`` option as the set of transports that accept permessage-deflate:
    True is every WebSocket transport (``"json"``, the JSON protocol's ``/ws``, and
    ``"socketio"``, Socket.IO's WebSocket transport); False or None, none."""
    if spec is None or spec is False:
        return set()
    if spec is True:
        return set(COMPRESSIBLE)
    names = {spec} if isinstance(spec, str) else set(spec)
    unknown = names - set(COMPRESSIBLE)
    if unknown:
        raise ValueError(f"compression takes True, False or transports among "
                         f"{', '.join(COMPRESSIBLE)}, not {sorted(unknown)!r}")
    return names


def _publish_rate(spec: tuple[float, float] | None) -> tuple[float, float]:
    """``publish_rate`` as (rate, burst); None is no limit, (0.0, 0.0)."""
    if spec is None:
        return (0.0, 0.0)
    try:
        rate, burst = (float(v) for v in spec)
    except (TypeError, ValueError):
        raise TypeError(f"publish_rate is (rate, burst) or None, not {spec!r}") from None
    if not (rate > 0 and burst >= 1) or rate == float("inf") or burst == float("inf"):
        raise ValueError(f"publish_rate needs rate > 0 and burst >= 1, not {spec!r}")
    return (rate, burst)


def _check(o: SimpleNamespace, options: dict[str, Any]) -> None:
    """The checks that involve several arguments, a file or the core (the JWT keys)."""
    if o.broker is not None and not isinstance(o.broker, str):
        raise TypeError(f"broker must be a URL string, not {type(o.broker).__name__}")
    if "*" in options["cors_allowed_origins"] and o.cors_credentials:
        raise ValueError("cors_credentials=True cannot be combined with "
                         "cors_allowed_origins='*': any site could then read what a "
                         "user's cookies unlock; list the origins that may send them")
    if bool(o.ssl_certfile) != bool(o.ssl_keyfile):
        raise ValueError("TLS needs both ssl_certfile and ssl_keyfile")
    for what, path in (("certificate", o.ssl_certfile), ("key", o.ssl_keyfile)):
        if path and not os.path.isfile(path):
            raise FileNotFoundError(errno.ENOENT, f"TLS {what} file not found",
                                    os.fspath(path))
    if o.jwt is not None and not isinstance(o.jwt, JWTAuth):
        raise TypeError(f"jwt must be a skyrelay.JWTAuth, not {type(o.jwt).__name__}")
    if o.jwt is not None:
        _core.check_jwt(options["jwt"])  # a key that does not fit: ValueError now
    if not o.cluster_state_ttl >= 0.5 or int(o.cluster_rooms_max) < 1:
        raise ValueError("cluster_state_ttl must be >= 0.5 s and cluster_rooms_max >= 1")
    if options["trusted_proxies"] is not None or o.proxy_header.lower() != "x-forwarded-for":
        specs, header = options["trusted_proxies"] or ([], o.proxy_header.lower())
        _core.check_trusted_proxies(specs, header)  # ValueError names a bad spec
    if int(o.compression_threshold) < 0:
        raise ValueError("compression_threshold must be >= 0 bytes")
    if o.history_size < 0 or o.history_ttl <= 0:
        raise ValueError("history_size must be >= 0 and history_ttl > 0")
    if o.recovery_window > 0 and (o.history_size == 0 or o.recovery_window > o.history_ttl):
        raise ValueError(
            f"recovery_window={o.recovery_window} needs history that lasts at least as long: "
            f"history_size > 0 and history_ttl >= recovery_window (history_size="
            f"{o.history_size}, history_ttl={o.history_ttl})")


def namespace_specs(
        namespaces: Iterable[str | re.Pattern[str]] | str | re.Pattern[str] | None,
) -> list[str | re.Pattern[str]] | None:
    """The ``namespaces=`` argument as a list (None: the namespaces that have handlers); each
    is ``"*"``, a path starting with ``/`` or a compiled regular expression."""
    specs: list[str | re.Pattern[str]] | None = \
        [namespaces] if isinstance(namespaces, (str, re.Pattern)) else \
        list(namespaces) if namespaces is not None else None
    for spec in specs or []:
        if not isinstance(spec, re.Pattern) and not (spec == "*" or spec.startswith("/")):
            raise ValueError(f"a namespace is '*', a path starting with '/' or a compiled "
                             f"regular expression, not {spec!r}")
    return specs


def run_overrides(options: dict[str, Any], *, host: str | None = None, port: int | None = None,
                  broker: str | None = None, reuse_port: bool | None = None,
                  worker: tuple[int, list[int], int] | None = None) -> None:
    """``skyrelay run``'s command line over an app's own options (each one given), and for
    one of several worker processes its index, every worker's handoff socket and its inbox."""
    if host is not None:
        options["host"] = host
    if port is not None:
        options["port"] = int(port)
    if broker is not None:
        options["broker"] = broker
    if reuse_port is not None:
        options["reuse_port"] = bool(reuse_port)
    if worker is not None:
        index, handoff_fds, inbox_fd = worker
        options.update(worker_index=int(index), worker_inbox_fd=int(inbox_fd),
                       worker_handoff_fds=[int(fd) for fd in handoff_fds])


def probe_fields(o: SimpleNamespace) -> dict[str, Any]:
    """The probes' and the core log queue's options (docs/deployment.md "Probes", "Logs")."""
    for name in ("io_stall_timeout", "dispatcher_stall_timeout"):
        if not getattr(o, name) > 0:
            raise ValueError(f"{name} must be > 0 seconds, not {getattr(o, name)!r}")
    if int(o.log_queue_max) < 1:
        raise ValueError(f"log_queue_max must be >= 1 record, not {o.log_queue_max!r}")
    if o.io_uring not in ("auto", "off"):
        raise ValueError(f"io_uring must be 'auto' or 'off', not {o.io_uring!r}")
    tables = {"shared": "shared", "per-thread": "per_thread", "per_thread": "per_thread"}
    if o.descriptor_tables not in tables:
        raise ValueError("descriptor_tables must be 'shared' or 'per-thread', not "
                         f"{o.descriptor_tables!r}")
    return {
        # GET /health/live (the I/O threads answer) and /health/ready (dispatcher moving,
        # broker reachable, not stopping): 200 or 503; None turns one off.
        "liveness_path": builtin_path("liveness_path", o.liveness_path),
        "readiness_path": builtin_path("readiness_path", o.readiness_path),
        "io_stall_timeout_ms": _ms(o.io_stall_timeout),
        "dispatcher_stall_timeout_ms": _ms(o.dispatcher_stall_timeout),
        # Log records of the C++ core waiting for Python's logging; past it, dropped.
        "log_queue_max": int(o.log_queue_max),
        # The io_uring write path where the kernel allows it ("auto"), or epoll only ("off").
        "io_uring": o.io_uring,
        # One file descriptor table per I/O thread ("per_thread"): past the open-file limit.
        "descriptor_tables": tables[o.descriptor_tables],
    }
