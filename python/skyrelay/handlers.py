"""The handlers of one Server and the helpers that dispatch to them.

:class:`HandlerRegistry` is what the JSON-protocol bridge (json_bridge.py) and the Socket.IO
bridge (socketio.py) share: the handlers by namespace and event, the namespaces served, the
per-event rate limits, the role requirements, the connection table, and running a handler
(sync or async) with its outcome reported to a callback. It knows nothing of the C++ core.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._threads import name_os_thread
from .typed import PayloadType, payload_type

if TYPE_CHECKING:
    from .connection import Connection

log = logging.getLogger("skyrelay")

Handler = Callable[..., Any]
Done = Callable[[Any, "BaseException | None"], None]

# What a client is told when a handler raises (unless Server(debug=True)).
HANDLER_ERROR_MESSAGE = "the handler failed; the server log has the details"


_SYNC, _ASYNC, _SUBMIT = object(), object(), object()


def _kind_of(fn: Handler) -> tuple[object, Any]:
    submit = getattr(fn, "_skyrelay_submit", None)
    if submit is not None:
        return _SUBMIT, submit
    return (_ASYNC if inspect.iscoroutinefunction(fn) else _SYNC), None


def _start_tasks(pending: list[tuple[Any, Done]]) -> None:
    """On the loop: one task per coroutine, in order, each reporting to its ``done``."""
    loop = asyncio.get_running_loop()
    for coro, done in pending:
        loop.create_task(coro).add_done_callback(functools.partial(_finished, done))


def _finished(done: Done, task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        done(None, asyncio.CancelledError())
        return
    exc = task.exception()
    done(None if exc is not None else task.result(), exc)


class HandlerRegistry:
    """Handlers, namespaces, role requirements and the connection table of one Server.

    ``namespaces`` is the Server's ``namespaces=`` argument (None: the namespaces that have
    handlers). ``new_connection(sid)`` makes the :class:`Connection` of a sid that has none in
    the table yet (a JSON-protocol client of a server without a connect handler).
    """

    def __init__(self, namespaces: list[str | re.Pattern[str]] | None,
                 json_default: Callable[[Any], Any] | None, debug: bool,
                 roles_from_connect: bool, loop: asyncio.AbstractEventLoop | None,
                 new_connection: Callable[[str], Connection]) -> None:
        self.namespaces = namespaces
        self.json_default = json_default
        self.debug = debug
        self.roles_from_connect = roles_from_connect
        self.loop = loop
        self.new_connection = new_connection
        self.handlers: dict[tuple[Any, str], Handler] = {}  # by (namespace, event)
        # The validators of the handlers typed with a pydantic model (typed.py), by handler.
        self.payload_types: dict[Handler, PayloadType] = {}
        self.connect_handlers: dict[Any, Handler] = {}      # by namespace
        self.disconnect_handlers: dict[Any, Handler] = {}
        self.event_limits: dict[str, tuple[float, float]] = {}
        self.namespace_roles: dict[str, list[str]] = {}
        self.room_roles: list[tuple[str, str, list[str]]] = []
        self.event_roles: dict[tuple[str, str], list[str]] = {}
        self.ns_patterns: list[re.Pattern[str]] = []  # set by namespace_specs() at start
        self.connections: dict[str, Connection] = {}
        self.dispatch_ident: int | None = None  # the thread that delivers core callbacks
        # Set by the Server when the core calls flush_async after each dispatcher batch.
        self.batching = False
        self._pending: list[tuple[Any, Done]] = []  # async handlers of the batch in hand
        self._kinds: dict[Any, tuple[object, Any]] = {}
        self._plain: dict[Any, bool] = {}  # plain_sync's answers (cleared on a typed handler)
        self._own_loop: asyncio.AbstractEventLoop | None = None
        self._own_loop_thread: threading.Thread | None = None

    # -- registration ---------------------------------------------------------------------

    def register(self, event: str, nsp: str | re.Pattern[str], fn: Handler) -> Handler:
        if event == "connect":
            self.connect_handlers[nsp] = fn
        elif event == "disconnect":
            self.disconnect_handlers[nsp] = fn
        else:
            self.handlers[(nsp, event)] = fn
            spec = payload_type(fn, 1) if event != "*" else None
            if spec is not None:
                self.payload_types[fn] = spec  # a typed callable must be hashable
                self._plain.clear()
        return fn

    def payload_type(self, fn: Handler) -> PayloadType | None:
        """The validator of a typed handler, None for any other (one falsy check when the
        server has no typed handler)."""
        if not self.payload_types:
            return None
        try:
            return self.payload_types.get(fn)
        except TypeError:  # an unhashable callable object: never typed
            return None

    def add_roles(self, roles: list[str], namespace: str, room: str | None,
                  event: str | None) -> None:
        """Stores one role requirement (checked by Server.require_roles)."""
        if room is not None:
            self.room_roles.append((namespace, room, roles))
        elif event is not None:
            self.event_roles[(namespace, event)] = roles
        else:
            self.namespace_roles[namespace] = roles

    def access_options(self) -> dict[str, Any] | None:
        """The role requirements as the core's ``access`` option, None when there are none."""
        if not (self.namespace_roles or self.room_roles or self.event_roles):
            return None
        return {
            "namespaces": list(self.namespace_roles.items()),
            "rooms": list(self.room_roles),
            "events": [(nsp, ev, r) for (nsp, ev), r in self.event_roles.items()],
        }

    def namespace_specs(self) -> list[str]:
        """The static namespace names for the core (``"*"`` added when patterns are served);
        remembers the patterns, which :meth:`namespace_allowed` checks in Python."""
        specs = self.namespaces
        if specs is None:
            specs = [nsp for nsp, _ in self.handlers] + list(self.connect_handlers) + \
                list(self.disconnect_handlers)
            specs = ["/", *dict.fromkeys(specs)]
        self.ns_patterns = [spec for spec in specs if isinstance(spec, re.Pattern)]
        static = sorted({spec for spec in specs if isinstance(spec, str)})
        return static + ["*"] if self.ns_patterns else static

    # -- lookup ---------------------------------------------------------------------------

    def namespace_handler(self, table: dict[Any, Handler], nsp: str,
                          event: str | None = None) -> Handler | None:
        """The handler for `nsp` (and `event`): the namespace's own, else that of the first
        pattern (in registration order) that matches it, else the ``"*"`` namespace's."""
        key = (lambda n: n) if event is None else (lambda n: (n, event))
        found = table.get(key(nsp))
        if found is not None:
            return found
        for spec in table:
            name = spec if event is None else spec[0]
            if isinstance(name, re.Pattern) and (event is None or spec[1] == event) \
                    and name.fullmatch(nsp):
                return table[spec]
        return table.get(key("*"))

    def namespace_allowed(self, nsp: str) -> bool:
        return any(p.fullmatch(nsp) for p in self.ns_patterns) or \
            nsp in (self.namespaces if self.namespaces is not None else
                    {"/", *(n for n, _ in self.handlers), *self.connect_handlers,
                     *self.disconnect_handlers}) or \
            "*" in (self.namespaces or ())

    def connection(self, sid: str) -> Connection:
        """The table's connection for `sid`, made (and stored) when it has none."""
        conn = self.connections.get(sid)
        if conn is None:
            conn = self.connections[sid] = self.new_connection(sid)
        return conn

    # -- dispatch -------------------------------------------------------------------------

    def entered(self) -> None:
        """Called by every core callback: remembers the dispatcher thread."""
        self.dispatch_ident = threading.get_ident()

    def on_dispatcher(self) -> bool:
        return threading.get_ident() == self.dispatch_ident

    def call(self, fn: Handler, args: tuple[Any, ...], done: Done) -> None:
        """Runs a handler, sync or async, and passes (result, exception) to ``done``.

        A handler with a ``_skyrelay_submit`` attribute runs itself: ``fn._skyrelay_submit(
        args, done)`` must call ``done`` exactly once, from any thread (the Flask facade's
        ordered pool, ``async_handlers=True``).

        An async handler called on the dispatcher thread waits for the end of the dispatcher's
        batch (:meth:`flush_async`): the batch's coroutines then go to the loop with one
        wake-up, and start there in the order their events arrived. ``done`` runs on the loop.
        """
        kind, submit = self._kind(fn)
        if kind is _SUBMIT:
            submit(args, done)
            return
        if kind is _ASYNC:
            coro = fn(*args)
            if self.batching and threading.get_ident() == self.dispatch_ident:
                self._pending.append((coro, done))
            else:
                self._hand_to_loop([(coro, done)])
            return
        try:
            result = fn(*args)
        except Exception as exc:  # reported through `done`, never lost
            done(None, exc)
            return
        done(result, None)

    def plain_sync(self, fn: Handler) -> bool:
        """Whether ``fn`` is a plain function for :meth:`call`: neither async nor with a
        submit hook, not typed, not marked ``_skyrelay_args``, so that a caller may run it
        directly and skip ``call``'s closure (the sync Socket.IO event path). Remembered per
        handler."""
        try:
            return self._plain[fn]
        except KeyError:
            pass
        except TypeError:  # an unhashable callable object
            return False
        plain = (self._kind(fn)[0] is _SYNC and self.payload_type(fn) is None
                 and not getattr(fn, "_skyrelay_args", False))
        if len(self._plain) >= 4096:  # handlers are few; a bound all the same
            self._plain.clear()
        self._plain[fn] = plain
        return plain

    def _kind(self, fn: Handler) -> tuple[object, Any]:
        """How :meth:`call` runs ``fn`` (remembered per handler: inspect is slow)."""
        try:
            return self._kinds[fn]
        except KeyError:
            pass
        except TypeError:  # an unhashable callable object
            return _kind_of(fn)
        found = _kind_of(fn)
        if len(self._kinds) >= 4096:  # handlers are few; a bound all the same
            self._kinds.clear()
        self._kinds[fn] = found
        return found

    def flush_async(self) -> None:
        """The end of a dispatcher batch (the core calls it, with the GIL, on the dispatcher
        thread): hands the batch's async handlers to their loop at once."""
        pending = self._pending
        if pending:
            self._pending = []
            self._hand_to_loop(pending)

    def _hand_to_loop(self, pending: list[tuple[Any, Done]]) -> None:
        try:
            self.async_loop().call_soon_threadsafe(_start_tasks, pending)
        except RuntimeError as exc:  # the loop closed under us: each handler hears of it
            for coro, done in pending:
                coro.close()
                done(None, exc)

    def async_loop(self) -> asyncio.AbstractEventLoop:
        """The loop async handlers run on: ``loop`` if open, else one of our own thread."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            return loop
        if self._own_loop is None:
            self._own_loop = asyncio.new_event_loop()
            self._own_loop_thread = threading.Thread(
                target=self._own_loop.run_forever, name="skyrelay-asyncio", daemon=True)
            self._own_loop_thread.start()
            self._own_loop.call_soon_threadsafe(name_os_thread, "skyrelay-async")
        return self._own_loop

    def stop_loop(self) -> None:
        """Stops the loop of our own thread, if one was started."""
        loop, thread = self._own_loop, self._own_loop_thread
        if loop is None:
            return
        self._own_loop = None
        self._own_loop_thread = None
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=5)
            if thread.is_alive():
                return  # a handler that never yields holds it: leave the loop to the thread
        loop.close()  # its self-pipe too; an unclosed loop warns when it is collected

    def log_error(self, what: str, exc: BaseException) -> None:
        log.error(what, exc_info=exc)

    def handler_error(self, what: str, exc: BaseException) -> str:
        """Logs a failed handler with its traceback and returns the ``handler_error`` message
        for the client: the exception text with ``debug=True``, else a generic message (an
        exception's text may hold paths, queries or secrets)."""
        log.error(what, exc_info=exc)
        return f"{type(exc).__name__}: {exc}" if self.debug else HANDLER_ERROR_MESSAGE

    def granted_roles(self, conn: Connection) -> list[str] | None:
        """The roles a connect handler left in ``conn.roles`` when they are not the token's:
        passed to C++ with ``roles_from_connect``, else ignored with a warning."""
        token_roles = list(conn.claims.get("roles") or [])
        roles = conn.roles
        roles = [str(r) for r in ([roles] if isinstance(roles, str) else list(roles or []))]
        if roles == token_roles:
            return None
        if not self.roles_from_connect:
            log.warning("conn.roles set by a connect handler is not used for role checks "
                        "unless the server has roles_from_connect=True")
            return None
        conn.roles = roles
        return roles

