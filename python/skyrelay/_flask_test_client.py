"""``socketio.test_client(app)`` of the Flask facade (skyrelay.flask): Flask-SocketIO's test
client API over a real Socket.IO connection to the running server."""

from __future__ import annotations

import secrets
import threading
import time
from typing import TYPE_CHECKING, Any

from ._flask_context import TEST_CLIENT_HEADER

if TYPE_CHECKING:
    from .flask import SocketIO

# How long one call waits for the server (a handler, the disconnect handler) at most.
WAIT = 10.0


class SocketIOTestClient:
    """Flask-SocketIO's test client API over a real Socket.IO connection (python-socketio over
    WebSocket to the server on 127.0.0.1).

    As Flask-SocketIO's in-process client does, it shows handlers the request it was given:
    ``query_string``, ``headers`` and the cookies of ``flask_test_client`` travel on the real
    handshake, while the transport's own headers and Engine.IO's query parameters are hidden
    from ``flask.request`` (its connections name themselves to the server, in this process
    only, by a random token). Each call returns once the server has handled it: ``emit`` and
    ``send`` after the handler ran (raising in the caller what the handler raised when no
    error handler took it, or an ack value that cannot be sent), ``disconnect`` after the
    disconnect handler ran, ``get_received`` after everything sent before has arrived. With
    ``callback=True`` a handler's exception is not raised: the server answers the ack with
    ``handler_error`` (docs/socketio.md), and ``emit`` returns that answer.
    """

    def __init__(self, socketio: SocketIO, namespace: str | None, query_string: str | None,
                 headers: dict[str, str] | None, auth: Any,
                 flask_test_client: Any = None) -> None:
        from ._extras import requires_extra

        with requires_extra("testing", "SocketIO.test_client"):
            import socketio as sio_client  # type: ignore[import-untyped]

        self.socketio = socketio
        self.flask_test_client = flask_test_client
        self.queue: dict[str, list[dict[str, Any]]] = {}
        self.connected: dict[str, bool] = {}
        self.sids: dict[str, str] = {}
        self._lock = threading.Lock()
        self._waits: set[threading.Event] = set()
        self._token = secrets.token_hex(16)
        # With TLS the test client talks to its own server over loopback: no certificate check
        # (a test certificate is rarely one the client could verify).
        tls = socketio.server is not None and socketio.server.tls
        self.client = sio_client.Client(reconnection=False, ssl_verify=not tls)
        self._query = query_string
        self._headers = dict(headers or {})
        self.connect(namespace, query_string, headers, auth)

    @property
    def eio_sid(self) -> str | None:
        """The Engine.IO session's id (the server's ``conn.eio_sid``)."""
        return self.client.eio.sid if self.client.eio is not None else None

    def _record(self, namespace: str):
        def handler(event: str, *args: Any) -> None:
            # As in Flask-SocketIO's test client: send()'s one payload as it is.
            value: Any = (args[0] if args else None) if event in ("message", "json") \
                else list(args)
            with self._lock:
                self.queue.setdefault(namespace, []).append(
                    {"name": event, "args": value, "namespace": namespace})

        return handler

    def _lost(self, namespace: str):
        def handler(*reason: Any) -> None:
            with self._lock:
                self.connected[namespace] = False
                waits = list(self._waits)
            for event in waits:  # nothing is coming any more
                event.set()

        return handler

    def _cookie_header(self, path: str) -> str | None:
        """The Cookie header the Flask test client would send to ``path``."""
        client = self.flask_test_client
        if client is None:
            return None
        environ = {"wsgi.url_scheme": "http", "HTTP_HOST": "localhost", "SERVER_NAME":
                   "localhost", "SERVER_PORT": "80", "SCRIPT_NAME": "", "PATH_INFO": path}
        client._add_cookies_to_wsgi(environ)  # Werkzeug >= 2.3, as Flask-SocketIO uses it
        return environ.get("HTTP_COOKIE")

    def connect(self, namespace: str | None = None, query_string: str | None = None,
                headers: dict[str, str] | None = None, auth: Any = None) -> None:
        import socketio as sio_client

        nsp = namespace or "/"
        socketio = self.socketio
        server = socketio._require_server()
        self.client.on("*", self._record(nsp), namespace=nsp)
        self.client.on("disconnect", self._lost(nsp), namespace=nsp)
        sent = dict(headers or self._headers)
        cookie = self._cookie_header(socketio._path())
        if cookie:
            sent["Cookie"] = cookie
        assert socketio._environs is not None
        socketio._environs.test_clients[self._token] = frozenset(k.lower() for k in sent)
        sent[TEST_CLIENT_HEADER] = self._token
        url = f"{'https' if server.tls else 'http'}://127.0.0.1:{server.port}"
        qs = query_string or self._query
        if qs:
            url += "?" + qs.lstrip("?")
        try:
            self.client.connect(url, namespaces=[nsp], auth=auth, headers=sent,
                                transports=["websocket"], wait_timeout=WAIT,
                                socketio_path=socketio._path())
        except sio_client.exceptions.ConnectionError:
            # Refused (False, ConnectionRefusedError): not connected, as Flask-SocketIO's.
            self.connected[nsp] = False
            self.client.disconnect()
            return
        self.connected[nsp] = True
        self.sids[nsp] = self.client.get_sid(nsp)

    def disconnect(self, namespace: str | None = None) -> None:
        """Ends the connection (every namespace of it: python-socketio connects them
        together) and returns once the server's disconnect handlers ran."""
        open_now = [nsp for nsp, up in self.connected.items() if up]
        watches = [self.socketio._watch_end(self.sids.get(nsp, ""), nsp) for nsp in open_now]
        self.client.disconnect()
        for nsp in open_now:
            self.connected[nsp] = False
        for gone in watches:
            if gone is not None:
                gone.wait(WAIT)

    def is_connected(self, namespace: str | None = None) -> bool:
        return self.client.connected and self.connected.get(namespace or "/", False)

    def emit(self, event: str, *args: Any, callback: bool = False,
             namespace: str | None = None, **kwargs: Any) -> Any:
        """Sends an event and returns once its handler ran: the ack's arguments with
        ``callback=True`` (one as it is, else a list). Other keyword arguments (``broadcast``)
        are accepted and ignored, as in Flask-SocketIO's test client."""
        nsp = namespace or "/"
        if not self.is_connected(nsp):
            raise RuntimeError("not connected")
        acks: list[tuple[Any, ...]] = []
        acked = threading.Event()

        def on_ack(*values: Any) -> None:
            acks.append(values)
            acked.set()

        data = args[0] if len(args) == 1 else args or None
        self.client.emit(event, data, namespace=nsp, callback=on_ack if callback else None)
        self._settle(nsp)
        # What the handler raised, as Flask-SocketIO's in-process client raises it; except that
        # with callback=True a handler's exception is answered (the handler_error ack, which
        # the caller gets), so only a return value that cannot be sent is raised then.
        error = self.socketio._test_errors.pop(self.sids.get(nsp, ""), None)
        if error is not None and (error[1] or not callback):
            raise error[0]
        if not callback:
            return None
        self._wait(acked, nsp)
        if not acks:
            return None
        values = acks[0]
        return values[0] if len(values) == 1 else list(values)

    def send(self, data: Any, json: bool = False, callback: bool = False,
             namespace: str | None = None) -> Any:
        return self.emit("json" if json else "message", data, callback=callback,
                         namespace=namespace)

    def get_received(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Returns and clears what arrived; waits first for everything the server sent before
        this call (a round trip on the same connection)."""
        nsp = namespace or "/"
        if self.is_connected(nsp):
            self._settle(nsp)
        with self._lock:
            return self.queue.pop(nsp, [])

    def _settle(self, nsp: str) -> None:
        """A round trip behind everything sent before: the server answers it after the
        socket's earlier handlers (they run in order per socket), or the connection ends."""
        done = threading.Event()
        try:
            self.client.emit("__skyrelay_sync__", None, namespace=nsp,
                             callback=lambda *_: done.set())
        except Exception:  # the namespace is gone already (python-socketio's BadNamespaceError)
            return
        self._wait(done, nsp)

    def _wait(self, event: threading.Event, nsp: str) -> None:
        with self._lock:
            self._waits.add(event)
        try:
            deadline = time.monotonic() + WAIT
            while self.is_connected(nsp) and time.monotonic() < deadline:
                if event.wait(min(0.5, max(0.0, deadline - time.monotonic()))):
                    return
        finally:
            with self._lock:
                self._waits.discard(event)
