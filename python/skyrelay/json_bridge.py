"""The JSON protocol and SSE on the skyrelay server: the Python half.

The C++ core speaks the protocol, keeps the rooms and answers the built-in messages
(subscribe, unsubscribe, ping). This module turns its callbacks for ``/ws`` and ``/sse``
connections into handler calls: the connect handler's decision, events and requests (with the
handler's return value or :class:`RequestError` as the answer), and the disconnect handler.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _core
from .encoding import encode_json, loads_json
from .endpoints import Endpoint, match_endpoint
from .errors import ConnectionRefused, RequestError
from .typed import InvalidPayload

if TYPE_CHECKING:
    from .connection import Connection
    from .handlers import HandlerRegistry
    from .socketio import SocketIOBridge

log = logging.getLogger("skyrelay")


class JSONProtocolBridge:
    """Receives the core's JSON-protocol and SSE callbacks (on the dispatcher thread) for one
    Server.

    It reaches the handlers and the connection table through ``registry``, the running core
    through ``core`` (None before start), the Socket.IO bridge through ``socketio`` (a sid
    whose connection was a Socket.IO socket is forgotten there), and makes each connection's
    :class:`Connection` with ``make_connection(sid, path, query, remote, headers,
    transport=, claims=, scheme=)``.
    """

    def __init__(self, registry: HandlerRegistry, core: Callable[[], _core.Server | None],
                 make_connection: Callable[..., Connection], socketio: SocketIOBridge) -> None:
        self._registry = registry
        self._core = core
        self._make_connection = make_connection
        self._socketio = socketio
        self.endpoints: list[Endpoint] = []  # declared with Server.endpoint, matched first
        self.sse_path = "/sse"

    def on_connect(self, sid: str, path: str, query: str, remote: str,
                   headers: list[tuple[str, str]], claims: str | None = None,
                   scheme: str = "") -> None:
        self._registry.entered()
        found = match_endpoint(self.endpoints, path)
        if found is not None:
            sse = found[0].transport == "sse"
        else:
            sse = bool(self.sse_path) and (path == self.sse_path or
                                           path.startswith(self.sse_path + "/"))
        conn = self._make_connection(sid, path, query, remote, headers,
                                     transport="sse" if sse else "websocket", claims=claims,
                                     scheme=scheme)
        conn.params = found[1] if found is not None else {}
        self._registry.connections[sid] = conn
        core = self._core()
        handler = self._registry.connect_handlers.get("/")
        assert core is not None and handler is not None

        def done(result: Any, exc: BaseException | None) -> None:
            if exc is None and result is not False:
                if not core.accept(sid, self._registry.granted_roles(conn)):
                    self._registry.connections.pop(sid, None)  # gone, or refused for its roles
                return
            self._registry.connections.pop(sid, None)
            if isinstance(exc, ConnectionRefused):
                core.refuse(sid, exc.status, exc.message)
            elif exc is not None:
                self._registry.log_error("connect handler failed", exc)
                core.refuse(sid, 500, "connect handler failed")
            else:
                core.refuse(sid, 403, "connection refused")

        self._registry.call(handler, (conn,), done)

    def on_message(self, sid: str, event: str, data: str, request_id: str) -> None:
        self._registry.entered()
        core = self._core()
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
        if self._registry.plain_sync(handler):
            # A plain function (not async, not typed, no submit hook, not the Flask facade's):
            # called here, without the closures and the dispatch of registry.call.
            try:
                result = handler(conn, loads_json(data))
            except Exception as exc:  # reported as registry.call reports it
                self._answer(core, sid, event, request_id, None, exc)
                return
            if request_id:
                self._answer(core, sid, event, request_id, result, None)
            return

        def refuse(exc: RequestError) -> None:
            if request_id:
                core.respond(sid, request_id, False, exc.code, exc.message)
            else:
                core.send_error(sid, exc.code, exc.message)

        def done(result: Any, exc: BaseException | None) -> None:
            self._answer(core, sid, event, request_id, result, exc)

        spec = self._registry.payload_type(handler)
        if spec is not None:  # a typed handler: pydantic parses the JSON text itself
            try:
                value = spec.from_json(data, event)
            except InvalidPayload as exc:
                refuse(exc)  # the handler never sees it
                return
            except Exception as exc:  # an app validator's error that pydantic does not wrap
                done(None, exc)
                return
            self._registry.call(handler, (conn, value), done)
            return
        value = loads_json(data)
        if getattr(handler, "_skyrelay_args", False):  # facade handlers take an argument list
            value = [] if value is None else [value]
        self._registry.call(handler, (conn, value), done)

    def _answer(self, core: Any, sid: str, event: str, request_id: str, result: Any,
                exc: BaseException | None) -> None:
        """What a handler's outcome sends: for a request, its return value as the response, a
        RequestError's refusal or handler_error; for a plain event, a RequestError's error
        and nothing else."""
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
            if core.respond_plain(sid, request_id, result) >= 0:  # plain: written in C++
                return
            try:
                body = encode_json(result, self._registry.json_default,
                                   check=_core.is_valid_json).decode("utf-8")
            except (TypeError, ValueError) as err:
                message = self._registry.handler_error(
                    f"response of {event!r} is not JSON serializable", err)
                core.respond(sid, request_id, False, "handler_error", message)
                return
            core.respond(sid, request_id, True, body, "")

    def on_disconnect(self, sid: str, reason: str, claims: str | None = None) -> None:
        self._registry.entered()
        conn = self._registry.connections.pop(sid, None)
        if conn is not None and conn.transport == "socket.io":
            self._socketio.forget_connection(sid)
        registry = self._registry
        handler = registry.namespace_handler(registry.disconnect_handlers,
                                             conn.namespace if conn is not None else "/")
        if handler is None:
            return
        if conn is None:
            conn = self._make_connection(sid, claims=claims)

        def done(result: Any, exc: BaseException | None) -> None:
            if exc is not None:
                log.error("disconnect handler failed", exc_info=exc)

        self._registry.call(handler, (conn, reason), done)
