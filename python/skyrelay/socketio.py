"""Socket.IO v5 on the skyrelay server: the Python half.

The C++ core speaks Engine.IO and Socket.IO, keeps the namespaces, rooms and fan-out. This module
turns its callbacks into handler calls: it restores binary attachments, answers acks with
handler return values, and waits for the client's acks when the server ``call``s a client.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .connection import EMPTY_AUTH
from .encoding import encode_args, loads_json, unpack_binary
from .errors import ConnectionRefused, Forbidden, RequestError
from .typed import InvalidPayload

if TYPE_CHECKING:
    from . import _core
    from .handlers import HandlerRegistry
    from .connection import Connection


def handler_args(args: list[Any]) -> Any:
    """What the ``data`` parameter of a handler receives: the one argument, None for none, or
    the list of arguments when the client sent several."""
    if not args:
        return None
    return args[0] if len(args) == 1 else args


def handler_error(message: str, event: str) -> dict[str, Any]:
    """The ack argument for a handler that raised: the shape of a RequestError's."""
    return {"error": {"code": "handler_error", "message": message, "event": event}}


class SocketIOBridge:
    """Receives the core's Socket.IO callbacks (on the dispatcher thread) for one Server.

    It reaches the handlers through ``registry``, the running core through ``core`` (None
    before start), and makes each socket's :class:`Connection` with ``make_connection(sid,
    path, query, remote, headers, namespace=, auth=, transport=, claims=, scheme=)``.
    """

    def __init__(self, registry: HandlerRegistry, core: Callable[[], _core.Server | None],
                 make_connection: Callable[..., Connection], path: str) -> None:
        self.registry = registry
        self._core = core
        self._make_connection = make_connection
        self.path = path
        self._calls: dict[tuple[str, int], Callable[[list[Any]], None]] = {}
        self._lock = threading.Lock()
        self._next_id = 0
        self._query = ""  # the last socket's query (on the dispatcher thread only)

    # -- callbacks from the core ----------------------------------------------------------

    def on_connect(self, sid: str, nsp: str, auth: str, eio_sid: str, remote: str, query: str,
                   headers: list[tuple[str, str]], claims: str | None = None,
                   recovered: bool = False, scheme: str = "") -> None:
        registry = self.registry
        registry.entered()
        # Clients of one application mostly send one query ("EIO=4&transport=websocket"):
        # consecutive sockets share the string instead of keeping a copy each.
        if query == self._query:
            query = self._query
        else:
            self._query = query
        conn = self._make_connection(sid, self.path, query, remote, headers,
                                     namespace=nsp,
                                     auth=EMPTY_AUTH if auth == "{}" else json.loads(auth),
                                     transport="socket.io",
                                     claims=claims, scheme=scheme)
        conn.recovered = recovered
        conn.eio_sid = eio_sid
        connections = registry.connections
        previous = connections.get(sid) if recovered else None
        if previous is not None:
            conn.state = previous.state  # the application's data comes back with the socket
        core = self._core()
        assert core is not None  # it is calling us
        if registry.ns_patterns and not registry.namespace_allowed(nsp):
            core.sio_refuse(sid, "Invalid namespace", "")  # as the reference server words it
            return
        connections[sid] = conn

        def forget() -> None:
            # A refused recovery ends a socket that was connected: the core reports its
            # disconnect, which forgets it (and runs the disconnect handler) then.
            if not recovered:
                connections.pop(sid, None)

        handler = registry.namespace_handler(registry.connect_handlers, nsp)
        if handler is None:
            if not core.sio_accept(sid):
                forget()
            return

        def done(result: Any, exc: BaseException | None) -> None:
            if exc is None and result is not False:
                if not core.sio_accept(sid, registry.granted_roles(conn)):
                    forget()  # gone, or refused for its roles
                return
            forget()
            if isinstance(exc, ConnectionRefused):
                data = "" if exc.data is None else json.dumps(exc.data)
                core.sio_refuse(sid, exc.message, data)
            else:
                if exc is not None:
                    registry.log_error("connect handler failed", exc)
                core.sio_refuse(sid, "Connection refused", "")

        registry.call(handler, (conn,), done)

    def on_event(self, sid: str, event: str, args_json: str, ack_id: int,
                 attachments: list[bytes]) -> None:
        registry = self.registry
        registry.dispatch_ident = threading.get_ident()  # registry.entered(), inlined: per event
        conn = registry.connections.get(sid)
        if conn is None:
            conn = registry.connection(sid)
        args = loads_json(args_json)
        if attachments:
            args = unpack_binary(args, attachments)
        handler = registry.handlers.get((conn.namespace, event))
        if handler is not None and registry.plain_sync(handler):
            # A plain function (not async, not typed, no submit hook, not the Flask facade's
            # raw list): called here, without the closure and the dispatch of registry.call.
            try:
                result = handler(conn, args[0] if len(args) == 1 else (args or None))
            except Exception as exc:  # reported as registry.call reports it
                self._answer(sid, event, ack_id, None, exc)
                return
            if ack_id >= 0:
                self._answer(sid, event, ack_id, result, None)
            return
        if handler is None:  # a pattern's, or the "*" namespace's
            handler = registry.namespace_handler(registry.handlers, conn.namespace, event)
        spec = registry.payload_type(handler) if handler is not None else None
        if handler is None:
            handler = registry.namespace_handler(registry.handlers, conn.namespace, "*")
            if handler is not None:
                args = [event, *args]
        if handler is None:
            return  # Socket.IO has no error reply for unknown events

        def done(result: Any, exc: BaseException | None) -> None:
            self._answer(sid, event, ack_id, result, exc)

        # Handlers marked with `_skyrelay_args` (the Flask-SocketIO facade) get the raw list.
        data = args if getattr(handler, "_skyrelay_args", False) else handler_args(args)
        if spec is not None:  # a typed handler: the arguments are decoded already
            try:
                data = spec.from_python(data, event)
            except InvalidPayload as exc:
                self.refuse(sid, ack_id, event, exc)  # the handler never sees it
                return
            except Exception as exc:  # an app validator's error that pydantic does not wrap
                done(None, exc)
                return
        registry.call(handler, (conn, data), done)

    def _answer(self, sid: str, event: str, ack_id: int, result: Any,
                exc: BaseException | None) -> None:
        """What a handler's outcome sends: its return value as the ack (when the client asked
        for one), a refusal for a RequestError, handler_error for any other exception."""
        registry = self.registry
        if isinstance(exc, RequestError):
            self.refuse(sid, ack_id, event, exc)
            return
        if exc is not None:
            # The client that asked for an ack gets handler_error (generic unless debug),
            # shaped like a RequestError's, instead of waiting for nothing.
            message = registry.handler_error(f"handler for {event!r} failed", exc)
            if ack_id >= 0:
                self.ack(sid, ack_id, [handler_error(message, event)])
            return
        if ack_id < 0:
            return
        values = [] if result is None else list(result) if isinstance(result, tuple) \
            else [result]
        core = self._require_core()
        if core.sio_ack_plain(sid, ack_id, values) >= 0:  # plain values: written in C++
            return
        try:
            text, attachments = encode_args(values, registry.json_default)
        except (TypeError, ValueError) as err:
            message = registry.handler_error(f"ack of {event!r} is not JSON serializable", err)
            self.ack(sid, ack_id, [handler_error(message, event)])
            return
        core.sio_ack(sid, ack_id, text, attachments)

    def refuse(self, sid: str, ack_id: int, event: str, exc: RequestError) -> None:
        """Answers an event refused with a RequestError as the server answers a refused event:
        the ack when the client asked for one, else a ``forbidden`` event for
        :class:`Forbidden` and an ``error`` event for :class:`InvalidPayload` (other codes
        have no answer without an ack)."""
        if isinstance(exc, InvalidPayload):
            error = exc.answer()
        else:
            error = {"error": {"code": exc.code, "message": exc.message, "event": event}}
        if ack_id >= 0:
            self.ack(sid, ack_id, [error])
        elif isinstance(exc, Forbidden):
            self.emit(sid, "forbidden", [error])
        elif isinstance(exc, InvalidPayload):
            self.emit(sid, "error", [error])

    def on_ack(self, sid: str, ack_id: int, args_json: str, attachments: list[bytes]) -> None:
        with self._lock:
            resolve = self._calls.pop((sid, ack_id), None)
        if resolve is not None:
            resolve(unpack_binary(json.loads(args_json), attachments))

    # -- sending --------------------------------------------------------------------------

    def ack(self, sid: str, ack_id: int, values: list[Any]) -> None:
        text, attachments = encode_args(values, self.registry.json_default)
        self._require_core().sio_ack(sid, ack_id, text, attachments)

    def emit(self, sid: str, event: str, args: list[Any] | tuple[Any, ...],
             ack: Callable[[list[Any]], None] | None = None) -> bool:
        """Sends an event to one socket; ``ack`` gets the client's acknowledgement arguments."""
        text, attachments = encode_args(list(args), self.registry.json_default)
        inner = text[1:-1]  # the arguments without the array brackets
        ack_id = -1
        if ack is not None:
            with self._lock:
                ack_id = self._next_id
                self._next_id += 1
                self._calls[(sid, ack_id)] = ack
        sent = self._require_core().sio_emit(sid, event, inner, attachments, ack_id)
        if not sent and ack is not None:
            with self._lock:
                self._calls.pop((sid, ack_id), None)
        return sent

    def call(self, sid: str, event: str, args: tuple[Any, ...], timeout: float) -> Any:
        """Emits and blocks until the client acknowledges; returns its ack arguments."""
        if self.registry.on_dispatcher():
            raise RuntimeError("call() would block the dispatcher thread that delivers the ack; "
                               "use `await server.acall(...)` in an async handler instead")
        done = threading.Event()
        box: list[Any] = []

        def resolve(values: list[Any]) -> None:
            box.append(values)
            done.set()

        if not self.emit(sid, event, args, resolve):
            raise KeyError(f"no Socket.IO connection {sid!r}")
        if not done.wait(timeout):
            self._forget(sid, resolve)
            raise TimeoutError(f"no acknowledgement from {sid} within {timeout}s")
        return handler_args(box[0])

    async def acall(self, sid: str, event: str, args: tuple[Any, ...], timeout: float) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def resolve(values: list[Any]) -> None:
            def settle() -> None:  # on the loop; a timed-out call's future is already done
                if not future.done():
                    future.set_result(handler_args(values))

            loop.call_soon_threadsafe(settle)

        if not self.emit(sid, event, args, resolve):
            raise KeyError(f"no Socket.IO connection {sid!r}")
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            self._forget(sid, resolve)
            raise TimeoutError(f"no acknowledgement from {sid} within {timeout}s") from None

    def _require_core(self) -> _core.Server:
        core = self._core()
        if core is None or not core.running:
            raise RuntimeError("the server is not running; call start() first")
        return core

    def _forget(self, sid: str, resolve: Callable[[list[Any]], None]) -> None:
        with self._lock:
            for key, fn in list(self._calls.items()):
                if key[0] == sid and fn is resolve:
                    del self._calls[key]

    def forget_connection(self, sid: str) -> None:
        with self._lock:
            for key in [k for k in self._calls if k[0] == sid]:
                del self._calls[key]
