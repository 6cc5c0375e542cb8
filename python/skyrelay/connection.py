"""One client connection as handlers see it (:class:`Connection`), and the ``to=``/``skip=``
targets of an emit, which name connections or rooms."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from .server import Server

Target = Union[str, "Connection", Iterable[Union[str, "Connection"]], None]


def split_targets(target: Target) -> tuple[list[str], list[str]]:
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


# Given as `auth` for a CONNECT without a payload: read as a fresh empty dict, made on first
# use (most sockets never read it).
EMPTY_AUTH: Any = object()


def _pack_headers(headers: Iterable[tuple[str, str]]) -> str | dict[str, str]:
    """Header pairs as one string, each lower-cased name and value followed by a NUL (a dict
    when some name or value holds a NUL itself, which an HTTP parser never lets through)."""
    pairs = headers if isinstance(headers, (list, tuple)) else list(headers)
    packed = "".join(f"{k.lower()}\0{v}\0" for k, v in pairs)
    if packed.count("\0") != 2 * len(pairs):
        return {k.lower(): v for k, v in pairs}
    return packed


def target_names(target: Target) -> list[str]:
    """Every name and sid of ``target`` (for ``skip``)."""
    names, conns = split_targets(target)
    return names + conns


class Connection:
    """One client connection, as handlers see it.

    ``transport`` is ``"websocket"`` for the JSON protocol, ``"sse"`` for an event stream and
    ``"socket.io"`` for Socket.IO, where the connection is one namespace of the client
    (``namespace``, with the CONNECT payload in ``auth``). ``path``, ``query``, ``remote``,
    ``scheme`` and ``headers`` describe the handshake; for the JSON protocol they are filled in
    when the server has a connect handler. ``scheme`` is ``"http"`` or ``"https"``: what a
    trusted proxy said its client used (``X-Forwarded-Proto``, or ``Forwarded``'s ``proto=``),
    else the connection's own (``"https"`` on a TLS port), as a WSGI app's ``wsgi.url_scheme``.
    ``state`` is a dict for the application's own per-connection data.

    With ``Server(jwt=...)``, ``claims`` is the payload of the token the connection was opened
    with (verified in C++ before any handler ran), ``user`` its ``sub`` and ``roles`` its
    ``roles``; without a token they are ``{}``, ``None`` and ``[]``.

    ``params`` holds the path parameters of a declared endpoint (``Server.endpoint``), such as
    ``{"telescope_id": "seestar-001"}``; filled in with the handshake (a connect handler).

    ``eio_sid`` is the Engine.IO session of a Socket.IO socket (shared by the namespaces one
    client opened on it), ``""`` for other transports.

    ``recovered`` is True in the connect handler of a Socket.IO connection state recovery: the
    socket (same ``sid``, its rooms and ``state``) comes back only if the handler accepts it.
    """

    # Every open connection has one, so what most never use is made on first use: ``state``,
    # ``claims``, ``roles``, ``params`` and an empty ``auth`` are made when read or set, and
    # ``headers`` waits as one packed string (name NUL value NUL ...) until read (docs/benchmarks.md: ~0.8 KB less
    # per idle Socket.IO socket).
    __slots__ = ("_server", "sid", "path", "query", "remote", "scheme", "_headers", "_state",
                 "namespace", "_auth", "transport", "_claims", "user", "_roles", "recovered",
                 "eio_sid", "_params")

    def __init__(self, server: Server, sid: str, path: str = "", query: str = "",
                 remote: str = "", headers: Iterable[tuple[str, str]] = (), *,
                 namespace: str = "/", auth: Any = None, transport: str = "websocket",
                 claims: str | dict[str, Any] | None = None, scheme: str = "") -> None:
        self._server = server
        self.sid = sid
        self.path = path
        self.query = query
        self.remote = remote
        self.scheme = sys.intern(scheme)  # one "http" and one "https" for every connection
        self._headers: str | dict[str, str] = _pack_headers(headers)
        self._state: dict[str, Any] | None = None
        self.namespace = namespace
        self._auth = auth
        self.transport = transport
        parsed = json.loads(claims) if isinstance(claims, str) else claims
        self._claims: dict[str, Any] | None = parsed or None
        sub = parsed.get("sub") if parsed else None
        self.user: str | None = sub if isinstance(sub, str) else None
        self._roles: list[str] | None = None
        self.recovered = False
        self._params: dict[str, str] | None = None
        self.eio_sid = ""

    @property
    def headers(self) -> dict[str, str]:
        """The handshake's headers, names in lower case."""
        h = self._headers
        if isinstance(h, str):
            parts = h.split("\0")
            h = self._headers = dict(zip(parts[0:-1:2], parts[1::2]))
        return h

    @headers.setter
    def headers(self, value: dict[str, str]) -> None:
        self._headers = value

    @property
    def auth(self) -> Any:
        """The CONNECT payload (Socket.IO), else None."""
        if self._auth is EMPTY_AUTH:
            self._auth = {}
        return self._auth

    @auth.setter
    def auth(self, value: Any) -> None:
        self._auth = value

    @property
    def state(self) -> dict[str, Any]:
        if self._state is None:
            self._state = {}
        return self._state

    @state.setter
    def state(self, value: dict[str, Any]) -> None:
        self._state = value

    @property
    def claims(self) -> dict[str, Any]:
        if self._claims is None:
            self._claims = {}
        return self._claims

    @claims.setter
    def claims(self, value: dict[str, Any]) -> None:
        self._claims = value

    @property
    def roles(self) -> list[str]:
        if self._roles is None:
            self._roles = list(self._claims.get("roles") or []) if self._claims else []
        return self._roles

    @roles.setter
    def roles(self, value: list[str]) -> None:
        self._roles = value

    @property
    def params(self) -> dict[str, str]:
        if self._params is None:
            self._params = {}
        return self._params

    @params.setter
    def params(self, value: dict[str, str]) -> None:
        self._params = value

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
