"""Role requirements per namespace, room pattern and event (Server(namespace_roles=...,
room_roles=...), on(..., roles=...), require_roles()), checked in C++ against the roles of the
connection's token; with real clients on 127.0.0.1: websockets for the JSON protocol,
python-socketio, httpx for SSE. Tokens are made here with PyJWT."""

from __future__ import annotations

import json
import queue
import re
import time
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt as pyjwt
import pytest
import socketio
from sse_client import Stream
from websockets.exceptions import InvalidStatus

import skyrelay
from skyrelay.testing import ResponseError, connect, metric, wait_until

SECRET = b"roles-secret-" * 4


def token(*roles: str, sub: str = "ada") -> str:
    return pyjwt.encode({"sub": sub, "roles": list(roles), "typ": "connect",
                         "exp": int(time.time()) + 300}, SECRET, algorithm="HS256")


def bearer(t: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {t}"}


VIEWER, OPERATOR, ADMIN = token("viewer"), token("operator", sub="otto"), token("admin", sub="root")


def forbidden(scope: str, server: skyrelay.Server) -> float:
    return metric(server, f'skyrelay_forbidden_total{{scope="{scope}"}}')


@pytest.fixture
def wells(skyrelay_server_factory):
    """The oil-well service: wells are for operators, their control rooms for admins, the
    /admin namespace and announcements for admins; news is open to anyone with a token."""
    handled: queue.Queue = queue.Queue()

    def configure(server: skyrelay.Server) -> None:
        @server.on("broadcast_announcement", roles=["admin"])
        def announce(conn, data):
            handled.put(("announce", conn.user, data))
            return {"announced": data}

        @server.on("broadcast_announcement", namespace="/ops", roles=["operator"])
        def announce_ops(conn, data):
            handled.put(("announce_ops", conn.user, data))
            return "ok"

        @server.on("chat")
        def chat(conn, data):
            handled.put(("chat", conn.user, data))
            return "ok"

        @server.on("join")
        def join(conn, room):
            joined = conn.join(room)
            handled.put(("join", conn.user, room))
            return {"joined": joined}

        @server.on("connect", namespace="/admin")
        def admin_connect(conn):
            handled.put(("admin_connect", conn.user, None))

        @server.on("connect", namespace="/ops")
        def ops_connect(conn):
            pass

    server = skyrelay_server_factory(
        configure,
        jwt=skyrelay.JWTAuth(keys=[skyrelay.JWTKey.hmac("k", SECRET, ["HS256"])], required=False,
                             require_kind=False),
        namespace_roles={"/admin": ["admin"]},
        room_roles={"well:*": ["operator", "admin"], "well:*:control": ["admin"]},
        inbound_rate=0)
    server.handled = handled
    return server


def ws(server: skyrelay.Server, t: str | None = None, path: str = "/ws"):
    return connect(f"ws://127.0.0.1:{server.port}{path}", headers=bearer(t) if t else {})


def ws_refusal(server: skyrelay.Server, t: str | None, path: str) -> tuple[int, dict[str, Any]]:
    with pytest.raises(InvalidStatus) as info:
        with ws(server, t, path):
            pass
    response = info.value.response
    return response.status_code, json.loads(response.body)


# -- the JSON protocol ------------------------------------------------------------------------

def test_subscribing_to_a_room_needs_one_of_its_roles(wells):
    with ws(wells, VIEWER) as viewer, ws(wells, OPERATOR) as operator, ws(wells) as anonymous:
        for client in (viewer, anonymous):
            client.send({"type": "subscribe", "topic": "well:7", "id": "s1"})
            err = client.expect_frame("error")
            assert err["code"] == "forbidden" and err["ref"] == "s1"
            assert err["message"] == 'room "well:7" requires one of the roles: operator, admin'
            assert client.ping()["type"] == "pong"  # the connection stays
            assert client.subscribe("news")["topic"] == "news"
        assert operator.subscribe("well:7")["topic"] == "well:7"
        # A narrower rule also applies: control rooms need admin, even for operators.
        operator.send({"type": "subscribe", "topic": "well:7:control"})
        assert operator.expect_frame("error")["message"] == \
            'room "well:7:control" requires the role admin'
        # Lookalikes are other rooms.
        assert operator.subscribe("wells:7")["topic"] == "wells:7"
        assert viewer.subscribe("xwell:7")["topic"] == "xwell:7"

        wells.emit("reading", {"psi": 1}, to="well:7")
        assert operator.expect("reading") == {"psi": 1}
        viewer.expect_nothing(0.3, type="event")
        assert forbidden("room", wells) == 3


def test_a_refused_subscribe_joins_none_of_its_topics(wells):
    with ws(wells, VIEWER) as viewer:
        viewer.send({"type": "subscribe", "topics": ["news", "well:1"], "id": "both"})
        assert viewer.expect_frame("error")["code"] == "forbidden"
        wells.emit("headline", "x", to="news")
        viewer.expect_nothing(0.3, type="event")
        assert wells.room_size("news") == 0


def test_events_with_roles_are_refused_before_the_handler(wells):
    with ws(wells, VIEWER) as viewer, ws(wells, ADMIN) as admin:
        viewer.emit("broadcast_announcement", "hello")
        err = viewer.expect_frame("error")
        assert err["code"] == "forbidden"
        assert err["message"] == 'event "broadcast_announcement" requires the role admin'
        with pytest.raises(ResponseError) as info:
            viewer.request("broadcast_announcement", "hello")
        assert info.value.code == "forbidden"
        assert viewer.request("chat", "hi") == "ok"  # other events are open
        assert admin.request("broadcast_announcement", "maintenance") == \
            {"announced": "maintenance"}
    seen = []
    while not wells.handled.empty():
        seen.append(wells.handled.get_nowait())
    assert ("announce", "root", "maintenance") in seen
    assert not [s for s in seen if s[0] == "announce" and s[1] == "ada"]
    assert forbidden("event", wells) == 2
    assert metric(wells, 'skyrelay_errors_total{code="forbidden"}') == 2


def test_a_topic_in_the_path_is_checked_before_the_upgrade(wells):
    status, body = ws_refusal(wells, VIEWER, "/ws/well:7")
    assert status == 403
    assert body == {"error": "forbidden",
                    "message": 'room "well:7" requires one of the roles: operator, admin'}
    assert ws_refusal(wells, None, "/ws/well%3A9")[0] == 403  # percent-encoded, same room
    with ws(wells, OPERATOR, "/ws/well:7") as operator:
        operator.ping()
        wells.emit("reading", 5, to="well:7")
        assert operator.expect("reading") == 5
    assert forbidden("room", wells) == 2
    assert metric(wells, "skyrelay_handshakes_rejected_total") == 2


def test_the_default_namespace_rule_applies_to_the_json_protocol_and_sse(skyrelay_server_factory):
    server = skyrelay_server_factory(
        jwt=skyrelay.JWTAuth(keys=[skyrelay.JWTKey.hmac("k", SECRET, ["HS256"])],
                             require_kind=False),
        namespace_roles={"/": ["member"]})
    status, body = ws_refusal(server, VIEWER, "/ws")
    assert status == 403
    assert body["message"] == 'namespace "/" requires the role member'
    r = httpx.get(f"http://127.0.0.1:{server.port}/sse/news", headers=bearer(VIEWER), timeout=5)
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    with ws(server, token("member")) as member:
        assert member.ping()["type"] == "pong"
    assert forbidden("namespace", server) == 2


# -- Server-Sent Events -----------------------------------------------------------------------

def test_sse_topics_are_checked_before_the_stream_opens(wells):
    base = f"http://127.0.0.1:{wells.port}"
    for url in (f"{base}/sse/well:7", f"{base}/sse?topics=news,well:7"):
        r = httpx.get(url, headers=bearer(VIEWER), timeout=5)
        assert r.status_code == 403, url
        assert r.json()["message"] == 'room "well:7" requires one of the roles: operator, admin'
    stream = Stream(f"{base}/sse?topics=news,well:7", bearer(OPERATOR))
    try:
        wait_until(lambda: wells.room_size("well:7") == 1)
        wells.emit("reading", {"psi": 3}, to="well:7")
        event = stream.next_event("reading")
        assert json.loads(event.data) == {"psi": 3}
    finally:
        stream.close()


# -- Socket.IO --------------------------------------------------------------------------------

@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_a_namespace_needs_one_of_its_roles(wells, sio_clients, transport):
    url = f"http://127.0.0.1:{wells.port}"
    client = sio_clients()
    errors: list[Any] = []
    client.on("connect_error", lambda data: errors.append(data), namespace="/admin")
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(url, namespaces=["/admin"], auth={"token": VIEWER},
                       transports=[transport], wait_timeout=5)
    assert errors == [{"message": 'namespace "/admin" requires the role admin',
                       "data": {"code": "forbidden"}}]
    admin = sio_clients()
    admin.connect(url, namespaces=["/admin"], auth={"token": ADMIN}, transports=[transport],
                  wait_timeout=5)
    assert wells.handled.get(timeout=5) == ("admin_connect", "root", None)
    assert wells.handled.empty()  # the refused CONNECT never reached the handler
    assert forbidden("namespace", wells) == 1


def test_socketio_events_with_roles_answer_in_the_ack_or_with_a_forbidden_event(wells, sio_clients):
    url = f"http://127.0.0.1:{wells.port}"
    viewer = sio_clients()
    refused: queue.Queue = queue.Queue()
    viewer.on("forbidden", lambda data: refused.put(data))
    viewer.connect(url, auth={"token": VIEWER}, transports=["websocket"], wait_timeout=5)
    answer = viewer.call("broadcast_announcement", "hello", timeout=5)
    assert answer == {"error": {"code": "forbidden", "event": "broadcast_announcement",
                                "message": 'event "broadcast_announcement" requires the role '
                                           'admin'}}
    viewer.emit("broadcast_announcement", "hello again")
    assert refused.get(timeout=5)["error"]["code"] == "forbidden"
    assert viewer.call("chat", "hi", timeout=5) == "ok"

    admin = sio_clients()
    admin.connect(url, auth={"token": ADMIN}, transports=["websocket"], wait_timeout=5)
    assert admin.call("broadcast_announcement", "drill", timeout=5) == {"announced": "drill"}
    handled = [wells.handled.get(timeout=5) for _ in range(2)]
    assert ("announce", "root", "drill") in handled and ("chat", "ada", "hi") in handled
    assert forbidden("event", wells) == 2


def test_event_rules_belong_to_their_namespace(wells, sio_clients):
    url = f"http://127.0.0.1:{wells.port}"
    operator = sio_clients()
    operator.connect(url, namespaces=["/", "/ops"], auth={"token": OPERATOR},
                     transports=["websocket"], wait_timeout=5)
    # In /ops, announcements are for operators; in "/", for admins.
    assert operator.call("broadcast_announcement", "shift", namespace="/ops", timeout=5) == "ok"
    answer = operator.call("broadcast_announcement", "shift", timeout=5)
    assert answer["error"]["code"] == "forbidden"


# -- joins made by the application --------------------------------------------------------------

def test_server_join_holds_the_connection_to_the_room_rules(wells, sio_clients):
    with ws(wells, VIEWER) as viewer, ws(wells, OPERATOR) as operator:
        with pytest.raises(ResponseError) as info:
            viewer.request("join", "well:3")
        assert (info.value.code, info.value.message) == \
            ("forbidden", 'room "well:3" requires one of the roles: operator, admin')
        assert operator.request("join", "well:3")["joined"] is True
        assert viewer.request("join", "lobby")["joined"] is True
        assert wells.room_members("well:3") == [operator.sid]
        # A plain event whose handler is refused gets an error frame.
        viewer.emit("join", "well:4")
        assert viewer.expect_frame("error")["code"] == "forbidden"

    client = sio_clients()
    client.connect(f"http://127.0.0.1:{wells.port}", auth={"token": VIEWER},
                   transports=["websocket"], wait_timeout=5)
    answer = client.call("join", "well:3", timeout=5)
    assert answer["error"]["code"] == "forbidden"
    assert wells.room_size("well:3") == 0
    assert forbidden("room", wells) == 3


# -- the rate limit comes first ------------------------------------------------------------------

@pytest.fixture
def guarded(skyrelay_server_factory):
    """A burst of 3 inbound messages and almost no refill (one token per 1000 s): a role-gated
    event and an open one, both recording the calls that reach them."""
    handled: queue.Queue = queue.Queue()

    def configure(server: skyrelay.Server) -> None:
        server.on("secret", lambda conn, data: handled.put(("secret", data)), roles=["admin"])
        server.on("open", lambda conn, data: handled.put(("open", data)) or "ok")

    server = skyrelay_server_factory(configure, inbound_rate=0.001, inbound_burst=3)
    server.handled = handled
    return server


def test_a_forbidden_event_uses_up_a_rate_limit_token(guarded):
    with ws(guarded) as anonymous:
        for i in range(3):
            anonymous.send({"type": "event", "event": "secret", "data": i, "id": f"s{i}"})
            err = anonymous.expect_frame("error")
            assert (err["code"], err["ref"]) == ("forbidden", f"s{i}")
        anonymous.send({"type": "event", "event": "open", "data": 3, "id": "o"})
        err = anonymous.expect_frame("error")
        assert (err["code"], err["ref"]) == ("rate_limited", "o")
    assert guarded.handled.empty()  # neither handler ran
    assert forbidden("event", guarded) == 3
    assert metric(guarded, 'skyrelay_drops_total{reason="rate_limited"}') == 1


def test_a_forbidden_socketio_event_uses_up_a_rate_limit_token(guarded, sio_clients):
    client = sio_clients()
    limited: queue.Queue = queue.Queue()
    client.on("rate_limited", lambda data: limited.put(data))
    client.connect(f"http://127.0.0.1:{guarded.port}", transports=["websocket"],
                   wait_timeout=5)
    for i in range(3):
        assert client.call("secret", i, timeout=5)["error"]["code"] == "forbidden"
    client.emit("open", 3)
    refused = limited.get(timeout=5)
    assert refused["event"] == "open" and refused["retry_after_ms"] > 0
    assert guarded.handled.empty()
    assert forbidden("event", guarded) == 3
    assert metric(guarded, 'skyrelay_drops_total{reason="rate_limited"}') == 1


# -- configuration ------------------------------------------------------------------------------

def test_rules_are_checked_when_they_are_set():
    server = skyrelay.Server(port=0)
    with pytest.raises(ValueError):
        server.require_roles([], room="well:*")
    with pytest.raises(ValueError):
        server.require_roles([""], room="well:*")
    with pytest.raises(ValueError):
        server.require_roles(["a"], room="")
    with pytest.raises(ValueError):
        server.require_roles(["a"], namespace="admin")
    with pytest.raises(ValueError):
        server.require_roles(["a"], room="x", event="y")
    with pytest.raises(ValueError):
        server.on("x", lambda c, d: None, namespace=re.compile("/a.*"), roles=["a"])
    with pytest.raises(ValueError):
        server.on("connect", lambda c: None, roles=["a"])
    with pytest.raises(ValueError):
        skyrelay.Server(port=0, room_roles={"well:*": []})
    server.require_roles("admin", event="reset")  # one role as a string
    assert server._access_options()["events"] == [("/", "reset", ["admin"])]
    server.start()
    try:
        with pytest.raises(RuntimeError):
            server.require_roles(["a"], room="late")
    finally:
        server.stop()


# -- the Flask-SocketIO facade --------------------------------------------------------------

def test_flask_socketio_facade_takes_roles(sio_clients):
    import flask

    from skyrelay.flask import SocketIO, join_room

    app = flask.Flask(__name__)
    socketio = SocketIO(app, jwt=skyrelay.JWTAuth(
        keys=[skyrelay.JWTKey.hmac("k", SECRET, ["HS256"])], require_kind=False),
        room_roles={"well:*": ["operator"]})

    @socketio.on("announce", roles=["admin"])
    def announce(text):
        return f"announced {text}"

    @socketio.on("watch")
    def watch(room):
        join_room(room)
        return "watching"

    helper = socketio.test_client(app)  # builds and starts the server
    try:
        url = f"http://127.0.0.1:{socketio.server.port}"
        viewer, admin = sio_clients(), sio_clients()
        viewer.connect(url, auth={"token": VIEWER}, transports=["websocket"], wait_timeout=5)
        admin.connect(url, auth={"token": token("admin", "operator")},
                      transports=["websocket"], wait_timeout=5)
        assert viewer.call("announce", "x", timeout=5)["error"]["code"] == "forbidden"
        assert admin.call("announce", "x", timeout=5) == "announced x"
        assert viewer.call("watch", "well:2", timeout=5)["error"]["code"] == "forbidden"
        assert viewer.call("watch", "lobby", timeout=5) == "watching"
        assert admin.call("watch", "well:2", timeout=5) == "watching"
        assert socketio.server.room_size("well:2") == 1
    finally:
        helper.disconnect()
        socketio.stop()


# -- roles from the connect handler ----------------------------------------------------------

KEYS = {"op-key": ["operator"], "admin-key": ["admin", "operator"]}


@pytest.fixture
def keyed(skyrelay_server_factory):
    """No JWT: the app's connect handlers look API keys up and set conn.roles from them."""
    seen: queue.Queue = queue.Queue()

    def configure(server: skyrelay.Server) -> None:
        @server.on("connect")
        def connect_json(conn):
            key = parse_qs(conn.query).get("key", [""])[0]
            conn.roles = KEYS.get(key, [])
            seen.put(("connect", conn.transport, key))

        @server.on("connect", namespace="/admin")
        def connect_admin(conn):
            conn.roles = set(KEYS.get((conn.auth or {}).get("key"), []))  # any iterable
            seen.put(("connect", "/admin", sorted(conn.roles)))

        @server.on("purge", roles=["admin"])
        def purge(conn, data):
            return "purged"

        @server.on("purge", namespace="/admin", roles=["admin"])
        def purge_admin(conn, data):
            return "purged"

        @server.on("join")
        def join(conn, room):
            return conn.join(room)

    server = skyrelay_server_factory(configure, roles_from_connect=True,
                                     namespace_roles={"/admin": ["admin"]},
                                     room_roles={"well:*": ["operator"]})
    server.seen = seen
    return server


def test_a_connect_handler_gives_roles_with_roles_from_connect(keyed):
    assert ws_refusal(keyed, None, "/ws/well:1?key=nope") == (
        403, {"error": "forbidden",
              "message": 'room "well:1" requires the role operator'})
    assert keyed.seen.get(timeout=5) == ("connect", "websocket", "nope")  # the handler ran first
    wait_until(lambda: not keyed._connections)  # the refused connection is forgotten
    with ws(keyed, None, "/ws/well:1?key=op-key") as op, ws(keyed, None, "/ws?key=admin-key") as admin:
        op.expect_frame("subscribed")
        keyed.emit("reading", 1, to="well:1")
        assert op.expect("reading") == 1
        with pytest.raises(ResponseError) as info:
            op.request("purge")
        assert info.value.code == "forbidden"
        assert admin.request("purge") == "purged"
        assert admin.request("join", "well:2") is True
        assert admin.subscribe("well:3")["topic"] == "well:3"
    r = httpx.get(f"http://127.0.0.1:{keyed.port}/sse/well:1?key=nope", timeout=5)
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    assert forbidden("room", keyed) == 2


def test_a_socketio_connect_handler_gives_roles_with_roles_from_connect(keyed, sio_clients):
    url = f"http://127.0.0.1:{keyed.port}"
    guest = sio_clients()
    errors: list[Any] = []
    guest.on("connect_error", lambda data: errors.append(data), namespace="/admin")
    with pytest.raises(socketio.exceptions.ConnectionError):
        guest.connect(url, namespaces=["/admin"], auth={"key": "op-key"},
                      transports=["websocket"], wait_timeout=5)
    assert errors == [{"message": 'namespace "/admin" requires the role admin',
                       "data": {"code": "forbidden"}}]
    wait_until(lambda: not keyed._connections)
    admin = sio_clients()
    admin.connect(url, namespaces=["/admin"], auth={"key": "admin-key"},
                  transports=["websocket"], wait_timeout=5)
    assert admin.call("purge", None, namespace="/admin", timeout=5) == "purged"
    assert forbidden("namespace", keyed) == 1


def test_without_roles_from_connect_the_token_decides_before_the_handler(skyrelay_server_factory,
                                                                         caplog):
    ran: list[str] = []

    def configure(server: skyrelay.Server) -> None:
        @server.on("connect")
        def on_connect(conn):
            ran.append(conn.transport)
            conn.roles = ["operator"]  # ignored: the server does not take roles from here

        @server.on("whoami")
        def whoami(conn, data):
            return conn.roles

    server = skyrelay_server_factory(
        configure, jwt=skyrelay.JWTAuth(keys=[skyrelay.JWTKey.hmac("k", SECRET, ["HS256"])],
                                        require_kind=False),
        room_roles={"well:*": ["operator"]})
    assert ws_refusal(server, VIEWER, "/ws/well:1")[0] == 403
    assert ran == []  # refused before the connect handler
    with caplog.at_level("WARNING", logger="skyrelay"):
        with ws(server, VIEWER) as viewer:
            viewer.send({"type": "subscribe", "topic": "well:1"})
            assert viewer.expect_frame("error")["code"] == "forbidden"
    assert ran == ["websocket"]
    assert "roles_from_connect" in caplog.text
