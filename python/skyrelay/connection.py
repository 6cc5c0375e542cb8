"""One client connection as handlers see it (:class:`Connection`), and the ``to=``/``skip=``
targets of an emit, which name connections or rooms."""

from __future__ import annotations

import json
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


def target_names(target: Target) -> list[str]:
    """Every name and sid of ``target`` (for ``skip``)."""
    names, conns = split_targets(target)
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

    ``eio_sid`` is the Engine.IO session of a Socket.IO socket (shared by the namespaces one
    client opened on it), ``""`` for other transports.

    ``recovered`` is True in the connect handler of a Socket.IO connection state recovery: the
    socket (same ``sid``, its rooms and ``state``) comes back only if the handler accepts it.
    """

    __slots__ = ("_server", "sid", "path", "query", "remote", "headers", "state", "namespace",
                 "auth", "transport", "claims", "user", "roles", "recovered", "eio_sid")

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
        self.eio_sid = ""

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
