"""Socket.IO v5 with the real python-socketio client, over each transport."""

from __future__ import annotations

import json
import queue
import threading

import pytest
import socketio

import skyrelay
from skyrelay.testing import connect, metric, wait_until

TRANSPORTS = {
    "websocket": ["websocket"],
    "polling": ["polling"],
    "upgrade": ["polling", "websocket"],
}


class Recorder:
    """Collects what a python-socketio client receives, with blocking waits."""

    def __init__(self, client: socketio.Client) -> None:
        self.client = client
        self.events: queue.Queue = queue.Queue()

    def listen(self, event: str, namespace: str = "/") -> None:
        self.client.on(event, lambda *args: self.events.put((namespace, event, args)),
                       namespace=namespace)

    def next(self, timeout: float = 5.0):
        return self.events.get(timeout=timeout)


@pytest.fixture
def sio_server(skyrelay_server_factory):
    log = {"disconnects": queue.Queue()}

    def configure(server: skyrelay.Server) -> None:
        @server.on("connect")
        def on_connect(conn):
            token = (conn.auth or {}).get("token")
            if token == "bad":
                raise skyrelay.ConnectionRefused("invalid token", data={"code": 401})
            conn.state["token"] = token
            conn.emit("auth", conn.auth)

        @server.on("message")
        def message(conn, data):
            conn.emit("message-back", data)

        @server.on("echo_ack")
        def echo_ack(conn, data):
            return data

        @server.on("join")
        def join(conn, room):
            conn.join(room)
            return conn.rooms

        @server.on("disconnect")
        def on_disconnect(conn, reason):
            log["disconnects"].put((conn.sid, conn.transport, reason))

        @server.on("connect", namespace="/custom")
        def custom_connect(conn):
            conn.emit("auth", conn.auth)

        @server.on("ping_custom", namespace="/custom")
        def ping_custom(conn, data):
            return {"nsp": conn.namespace, "got": data}

    server = skyrelay_server_factory(configure, ping_interval=1.0, ping_timeout=1.0)
    server.log = log
    return server


@pytest.fixture
def make_client(sio_server):
    clients = []

    def make(transport: str, auth=None, namespaces=("/",)):
        client = socketio.Client(reconnection=False)
        rec = Recorder(client)
        for nsp in namespaces:
            for event in ("auth", "message-back", "news", "question"):
                rec.listen(event, nsp)
        client.connect(f"http://127.0.0.1:{sio_server.port}", transports=TRANSPORTS[transport],
                       auth=auth, namespaces=list(namespaces), wait_timeout=10)
        clients.append(client)
        return client, rec

    yield make
    for client in clients:
        client.disconnect()


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_events_acks_and_binary(sio_server, make_client, transport):
    client, rec = make_client(transport, auth={"token": "123"})
    assert rec.next() == ("/", "auth", ({"token": "123"},))
    client.emit("message", {"x": [1, "2", {"3": True}]})
    assert rec.next() == ("/", "message-back", ({"x": [1, "2", {"3": True}]},))
    # Binary both ways, nested inside JSON.
    client.emit("message", {"blob": b"\x00\x01\xff", "more": [b"\x02"]})
    assert rec.next() == ("/", "message-back", ({"blob": b"\x00\x01\xff", "more": [b"\x02"]},))
    # Client-to-server ack with the handler's return value.
    assert client.call("echo_ack", {"n": 5}, timeout=5) == {"n": 5}
    assert client.call("echo_ack", b"\x09\x08", timeout=5) == b"\x09\x08"
    if transport == "upgrade":
        assert wait_until(lambda: client.transport() == "websocket", timeout=5)


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_server_calls_client_and_gets_ack(sio_server, make_client, transport):
    client, rec = make_client(transport)
    rec.next()  # auth
    client.on("question", lambda n: n * 2)
    sid = client.get_sid("/")
    assert sio_server.call("question", 21, to=sid, timeout=5) == 42
    # A client that answers too late: the call times out and the late ack is ignored.
    import time

    client.on("slow", lambda n: time.sleep(1.0) or n)
    with pytest.raises(TimeoutError):
        sio_server.call("slow", 1, to=sid, timeout=0.3)
    assert sio_server.call("question", 2, to=sid, timeout=5) == 4


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_namespaces_and_refusals(sio_server, make_client, transport):
    client, rec = make_client(transport, auth={"token": "abc"}, namespaces=("/", "/custom"))
    got = {rec.next()[:2] for _ in range(2)}
    assert got == {("/", "auth"), ("/custom", "auth")}
    assert client.call("ping_custom", 7, namespace="/custom", timeout=5) == {
        "nsp": "/custom", "got": 7}

    refused = socketio.Client(reconnection=False)
    errors = queue.Queue()
    refused.on("connect_error", lambda data: errors.put(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        refused.connect(f"http://127.0.0.1:{sio_server.port}",
                        transports=TRANSPORTS[transport], auth={"token": "bad"},
                        wait_timeout=5)
    assert errors.get(timeout=5) == {"message": "invalid token", "data": {"code": 401}}

    unknown = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        unknown.connect(f"http://127.0.0.1:{sio_server.port}", namespaces=["/nowhere"],
                        transports=TRANSPORTS[transport], wait_timeout=5)


def test_one_hub_for_both_protocols(sio_server, make_client):
    """A single emit to a room reaches JSON-protocol and Socket.IO members alike."""
    sio_client, rec = make_client("websocket")
    rec.next()
    assert sio_client.call("join", "ops", timeout=5) == ["ops"]
    with connect(f"ws://127.0.0.1:{sio_server.port}/ws") as ws_client:
        ws_client.subscribe("ops")
        assert sio_server.room_size("ops") == 2
        assert sio_server.emit("news", {"headline": "both"}, to="ops") == 2
        assert ws_client.expect("news") == {"headline": "both"}
        assert rec.next() == ("/", "news", ({"headline": "both"},))
        # A broadcast to everyone in "/" reaches both as well.
        assert sio_server.emit("news", "all") == 2
        assert ws_client.expect("news") == "all"
        assert rec.next() == ("/", "news", ("all",))


def test_namespace_isolation(sio_server, make_client):
    client, rec = make_client("websocket", namespaces=("/", "/custom"))
    rec.next(), rec.next()
    # Rooms and broadcasts of another namespace do not leak into "/custom".
    assert sio_server.emit("news", "root only") == 1
    assert rec.next() == ("/", "news", ("root only",))
    assert sio_server.emit("news", "custom only", namespace="/custom") == 1
    assert rec.next() == ("/custom", "news", ("custom only",))
    with pytest.raises(queue.Empty):
        rec.next(timeout=0.3)


def test_disconnect_reasons(sio_server, make_client):
    client, rec = make_client("websocket")
    rec.next()
    sid = client.get_sid("/")
    client.disconnect()
    assert sio_server.log["disconnects"].get(timeout=5) == (sid, "socket.io", "client_close")

    client2, rec2 = make_client("polling")
    rec2.next()
    gone = threading.Event()
    client2.on("disconnect", lambda *a: gone.set())
    sid2 = client2.get_sid("/")
    assert sio_server.disconnect(sid2)
    assert gone.wait(5)
    assert sio_server.log["disconnects"].get(timeout=5) == (sid2, "socket.io",
                                                            "server_disconnect")
    assert wait_until(lambda: sio_server.connection_count == 0)


def polling_handshake(port: int, origin: str | None = None, path: str = "/socket.io/"):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    headers = {"Origin": origin} if origin else {}
    conn.request("GET", f"{path}?EIO=4&transport=polling&t=x1", headers=headers)
    res = conn.getresponse()
    body = res.read()
    conn.close()
    return res.status, {k.lower(): v for k, v in res.getheaders()}, body


def test_engineio_http_errors(sio_server):
    import http.client
    import json as _json

    port = sio_server.port
    for query, code in [("EIO=3&transport=polling", 5), ("transport=polling", 5),
                        ("EIO=4&transport=carrier-pigeon", 0),
                        ("EIO=4&transport=polling&sid=nope", 1)]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", f"/socket.io/?{query}")
        res = conn.getresponse()
        assert res.status == 400, query
        assert _json.loads(res.read())["code"] == code, query
        conn.close()
    status, _, body = polling_handshake(port)
    assert status == 200 and body.startswith(b'0{"sid":')
    open_packet = _json.loads(body[1:])
    assert set(open_packet) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
    assert open_packet["upgrades"] == ["websocket"]
    assert open_packet["pingInterval"] == 1000 and open_packet["maxPayload"] == 1_000_000


def test_cors_allowlist_and_cookie(skyrelay_server_factory):
    server = skyrelay_server_factory(cors_allowed_origins=["https://app.example.com"],
                                     cookie=True)
    status, headers, body = polling_handshake(server.port, "https://app.example.com")
    assert status == 200
    assert headers["access-control-allow-origin"] == "https://app.example.com"
    assert headers["access-control-allow-credentials"] == "true"
    sid = json_sid(body)
    assert headers["set-cookie"].startswith(f"io={sid};")
    for bad in ("https://evil.example.com", "https://app.example.com.evil.net", "null",
                "http://app.example.com"):
        assert polling_handshake(server.port, bad)[0] == 403, bad
    # No Origin (a non-browser client) and the server's own origin are always fine.
    assert polling_handshake(server.port)[0] == 200
    assert polling_handshake(server.port, f"http://127.0.0.1:{server.port}")[0] == 200

    star = skyrelay_server_factory(cors_allowed_origins="*", cors_credentials=False)
    status, headers, _ = polling_handshake(star.port, "https://anywhere.example")
    assert status == 200 and headers["access-control-allow-origin"] == "*"
    assert "set-cookie" not in headers

    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("OPTIONS", "/socket.io/?EIO=4&transport=polling",
                 headers={"Origin": "https://app.example.com",
                          "Access-Control-Request-Headers": "x-token"})
    res = conn.getresponse()
    res.read()
    assert res.status == 204
    assert res.getheader("Access-Control-Allow-Headers") == "x-token"
    assert "POST" in res.getheader("Access-Control-Allow-Methods")
    conn.close()


def json_sid(body: bytes) -> str:
    import json as _json

    return _json.loads(body[1:])["sid"]


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_python_client_reconnects_after_the_network_fails(sio_server, transport):
    """python-socketio reconnects by itself: a new socket (its client has no connection state
    recovery, so there is nothing to resume), the connect handler runs again with the same
    auth, and events and acks work again. The server reports the old socket's loss."""
    from tcpproxy import Proxy

    proxy = Proxy(sio_server.port)
    client = socketio.Client(reconnection=True, reconnection_delay=0.5,
                             reconnection_delay_max=0.5, randomization_factor=0)
    rec = Recorder(client)
    rec.listen("auth")
    rec.listen("message-back")
    connects = queue.Queue()
    client.on("connect", lambda: connects.put(client.get_sid()))
    try:
        client.connect(f"http://127.0.0.1:{proxy.port}", transports=TRANSPORTS[transport],
                       auth={"token": "t-1"}, wait_timeout=10)
        first = connects.get(timeout=5)
        assert rec.next() == ("/", "auth", ({"token": "t-1"},))
        if transport == "upgrade":
            wait_until(lambda: client.transport() == "websocket", timeout=10)
        proxy.cut(refuse_for=0.3)
        second = connects.get(timeout=15)
        assert second != first
        assert rec.next(timeout=10) == ("/", "auth", ({"token": "t-1"},))
        sid, _, reason = sio_server.log["disconnects"].get(timeout=10)
        assert sid == first
        assert reason in ("transport_error", "heartbeat_timeout"), reason
        client.emit("message", {"after": "reconnect"})
        assert rec.next() == ("/", "message-back", ({"after": "reconnect"},))
        assert client.call("echo_ack", [1, 2], timeout=5) == [1, 2]
    finally:
        client.disconnect()
        proxy.close()


def test_namespace_patterns_and_catch_all_handlers(skyrelay_server_factory):
    """Namespaces given as regular expressions admit every name they fully match; handlers
    registered for a pattern (or "*") serve each such namespace, and its rooms stay its own."""
    import re

    wells = re.compile(r"/well-\d+")
    seen = queue.Queue()

    def configure(server):
        @server.on("connect", namespace=wells)
        def well_connect(conn):
            if conn.namespace == "/well-13":
                raise skyrelay.ConnectionRefused("unlucky well", data={"code": 13})
            conn.join("operators")
            seen.put(("connect", conn.namespace))

        @server.on("reading", namespace=wells)
        def reading(conn, data):
            return {"nsp": conn.namespace, "value": data}

        @server.on("reading", namespace="/well-7")  # a namespace's own handler wins
        def reading_seven(conn, data):
            return {"special": data}

        @server.on("*", namespace="*")
        def anything(conn, data):
            return {"caught": data, "nsp": conn.namespace}

    server = skyrelay_server_factory(configure, namespaces=["/", wells, "/extra"])
    url = f"http://127.0.0.1:{server.port}"
    clients = []
    try:
        for name in ("/well-1", "/well-7"):
            c = socketio.Client(reconnection=False)
            rec = Recorder(c)
            rec.listen("alarm", name)
            c.connect(url, namespaces=[name], transports=["websocket"], wait_timeout=5)
            clients.append((c, rec, name))
        assert {seen.get(timeout=5), seen.get(timeout=5)} == {("connect", "/well-1"),
                                                              ("connect", "/well-7")}
        c1, rec1, _ = clients[0]
        c7, rec7, _ = clients[1]
        assert c1.call("reading", 3.5, namespace="/well-1", timeout=5) == {
            "nsp": "/well-1", "value": 3.5}
        assert c7.call("reading", 1, namespace="/well-7", timeout=5) == {"special": 1}
        assert c1.call("other", "x", namespace="/well-1", timeout=5) == {
            "caught": ["other", "x"], "nsp": "/well-1"}
        # Each namespace has its own "operators" room.
        assert server.emit("alarm", "low", to="operators", namespace="/well-7") == 1
        assert rec7.next() == ("/well-7", "alarm", ("low",))
        with pytest.raises(queue.Empty):
            rec1.next(timeout=0.3)

        # Names the pattern does not fully match, and a refusal from the pattern's handler.
        for name, message in (("/well-", "Invalid namespace"), ("/well-1x", "Invalid namespace"),
                              ("/xwell-1", "Invalid namespace"),
                              ("/well-13", "unlucky well")):
            bad = socketio.Client(reconnection=False)
            errors = queue.Queue()
            bad.on("connect_error", errors.put, namespace=name)
            with pytest.raises(socketio.exceptions.ConnectionError):
                bad.connect(url, namespaces=[name], transports=["websocket"], wait_timeout=3)
            assert errors.get(timeout=5)["message"] == message, name
        # A static namespace next to the pattern still works.
        extra = socketio.Client(reconnection=False)
        extra.connect(url, namespaces=["/extra"], transports=["polling"], wait_timeout=5)
        clients.append((extra, None, "/extra"))
        assert extra.call("ping", 1, namespace="/extra", timeout=5) == {
            "caught": ["ping", 1], "nsp": "/extra"}
    finally:
        for c, _, _ in clients:
            c.disconnect()


def test_bad_namespace_spec_is_refused():
    with pytest.raises(ValueError, match="namespace"):
        skyrelay.Server(port=0, namespaces=["admin"])


def test_several_arguments_and_binary_to_rooms_reach_both_protocols(sio_server, make_client):
    """server.emit(args=...) and bytes inside data: Socket.IO members get separate arguments
    and binary attachments, JSON-protocol members a list and base64 strings."""
    import base64

    clients = {t: make_client(t) for t in ("websocket", "polling")}
    for client, rec in clients.values():
        rec.next()  # the connect handler's "auth"
        rec.listen("multi")
        rec.listen("blob")
        assert client.call("join", "desk", timeout=5) == ["desk"]
    with connect(f"ws://127.0.0.1:{sio_server.port}/ws") as ws_client:
        ws_client.subscribe("desk")
        payload = bytes(range(256))
        assert sio_server.emit("multi", args=("a", 2, {"three": [3]}), to="desk") == 3
        assert sio_server.emit("blob", {"name": "x.bin", "body": payload, "more": [b"\x00"]},
                               to="desk") == 3
        assert sio_server.emit("multi", args=(), to="desk") == 3
        for client, rec in clients.values():
            assert rec.next() == ("/", "multi", ("a", 2, {"three": [3]}))
            assert rec.next() == ("/", "blob", ({"name": "x.bin", "body": payload,
                                                 "more": [b"\x00"]},))
            assert rec.next() == ("/", "multi", ())
        assert ws_client.expect("multi") == ["a", 2, {"three": [3]}]
        assert ws_client.expect("blob") == {"name": "x.bin",
                                            "body": base64.b64encode(payload).decode(),
                                            "more": ["AA=="]}
        assert ws_client.expect("multi") == []
    with pytest.raises(ValueError, match="either"):
        sio_server.emit("x", 1, args=(2,))


def test_a_socketio_disconnect_is_counted_once(sio_server, make_client):
    """One socket over a WebSocket transport ends: one disconnect, not one for the transport
    as well."""
    from skyrelay.testing import metric

    before = metric(sio_server, 'skyrelay_disconnects_total{reason="client_close"}')
    client, rec = make_client("websocket")
    rec.next()
    client.disconnect()
    sio_server.log["disconnects"].get(timeout=5)
    wait_until(lambda: sio_server.connection_count == 0)
    assert metric(sio_server, 'skyrelay_disconnects_total{reason="client_close"}') == before + 1


def connect_watching_limits(sio_clients, port: int) -> tuple[socketio.Client, queue.Queue]:
    """A Socket.IO client over WebSocket, connected to "/", whose rate_limited events land in
    the queue returned with it."""
    client = sio_clients()
    limited: queue.Queue = queue.Queue()
    client.on("rate_limited", limited.put)
    client.connect(f"http://127.0.0.1:{port}", transports=["websocket"], wait_timeout=5)
    return client, limited


def test_socketio_events_have_the_inbound_rate_limit(skyrelay_server_factory, sio_clients):
    """Over the socket's limit an event is dropped (no handler, no ack) and the client gets a
    rate_limited event; other sockets are not affected."""
    handled = queue.Queue()

    def configure(server):
        server.on("n", lambda conn, data: handled.put(data) or data)

    server = skyrelay_server_factory(configure, inbound_rate=1, inbound_burst=3)
    client, limited = connect_watching_limits(sio_clients, server.port)
    for i in range(5):
        client.emit("n", i)
    info = limited.get(timeout=5)
    assert info["event"] == "n" and info["retry_after_ms"] > 0
    assert limited.get(timeout=5)["event"] == "n"  # the 5th too
    assert [handled.get(timeout=5) for _ in range(3)] == [0, 1, 2]
    assert handled.empty()
    other = sio_clients()
    other.connect(f"http://127.0.0.1:{server.port}", transports=["polling"], wait_timeout=5)
    assert other.call("n", "other", timeout=5) == "other"


def test_socketio_events_can_have_their_own_rate(skyrelay_server_factory, sio_clients):
    """server.on(event, rate=...) applies to Socket.IO events as to JSON-protocol ones: the
    event has its own bucket, far past the socket's; other events keep the socket's bucket."""
    handled = queue.Queue()

    def configure(server):
        server.on("telemetry", lambda conn, data: handled.put(data), rate=(1000, 100))
        server.on("ask", lambda conn, data: data)

    server = skyrelay_server_factory(configure, inbound_rate=0.01, inbound_burst=2)
    client, limited = connect_watching_limits(sio_clients, server.port)
    for i in range(50):  # 25 times the socket's burst, within the event's
        client.emit("telemetry", i)
    assert [handled.get(timeout=5) for _ in range(50)] == list(range(50))
    assert client.call("ask", 1, timeout=5) == 1
    assert client.call("ask", 2, timeout=5) == 2
    client.emit("ask", 3)  # the socket's bucket (burst 2) is spent
    assert limited.get(timeout=5)["event"] == "ask"
    assert limited.empty()  # no telemetry event was refused
    assert metric(server, 'skyrelay_limit_hits_total{limit="inbound_rate"}') == 1


def test_a_polling_client_that_stops_polling_is_cut_not_deadlocked(skyrelay_server_factory):
    """Direct emits to a Socket.IO polling session that never polls overflow its queue: the
    session ends as a slow consumer (the emitting thread must not hang on the socket's own
    lock while the session closes), and other clients are served."""
    import httpx

    reasons = queue.Queue()
    connected = queue.Queue()

    def configure(server):
        server.on("connect", lambda conn: connected.put(conn) or None)
        server.on("disconnect", lambda conn, reason: reasons.put(reason))

    server = skyrelay_server_factory(configure, outbox_max_frames=50)
    base = f"http://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=polling"
    open_packet = httpx.get(base, timeout=5).text
    sid = json.loads(open_packet[1:])["sid"]
    assert httpx.post(f"{base}&sid={sid}", content="40", timeout=5).text == "ok"
    conn = connected.get(timeout=5)
    done = threading.Event()

    def flood():
        for i in range(500):
            conn.emit("x", {"i": i, "blob": b"\x00" * 10})  # binary: a packet and its attachment
        done.set()

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    assert done.wait(10), "the emitting thread hung"
    assert reasons.get(timeout=5) == "slow_consumer"
    other = socketio.Client(reconnection=False)
    other.connect(f"http://127.0.0.1:{server.port}", transports=["websocket"], wait_timeout=5)
    other.disconnect()
