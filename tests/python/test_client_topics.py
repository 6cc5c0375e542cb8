"""Which topics clients may subscribe to by name (Server(client_topics=...)), and the transport
switches (json_protocol=, sse=, socketio=). Real clients on 127.0.0.1: websockets (through
skyrelay.testing) for the JSON protocol, httpx for SSE, python-socketio for Socket.IO."""

from __future__ import annotations

import json
import queue
import time
from typing import Any

import httpx
import jwt as pyjwt
import pytest
import socketio
from sse_client import Stream
from websockets.exceptions import InvalidStatus

import skyrelay
from skyrelay.testing import connect, metric, wait_until

# /metrics series this module reads (docs/deployment.md, Metrics).
OPENED_JSON = 'skyrelay_connections_opened_total{transport="json"}'
OPENED_SSE = 'skyrelay_connections_opened_total{transport="sse"}'

SECRET = b"client-topics-secret" * 2


def token(sub: str | None, *roles: str) -> str:
    claims: dict[str, Any] = {"roles": list(roles), "exp": int(time.time()) + 300}
    if sub is not None:
        claims["sub"] = sub
    return pyjwt.encode(claims, SECRET, algorithm="HS256")


def jwt_auth() -> skyrelay.JWTAuth:
    return skyrelay.JWTAuth(keys=[skyrelay.JWTKey.hmac("k", SECRET, ["HS256"])], required=False,
                            require_kind=False)


def ws(server: skyrelay.Server, path: str = "/ws", t: str | None = None):
    headers = {"Authorization": f"Bearer {t}"} if t else {}
    return connect(f"ws://127.0.0.1:{server.port}{path}", headers=headers)


def ws_refusal(server: skyrelay.Server, path: str, t: str | None = None) -> tuple[int, Any]:
    with pytest.raises(InvalidStatus) as info:
        with ws(server, path, t):
            pass
    response = info.value.response
    body = response.body.decode() if response.body else ""
    return response.status_code, json.loads(body) if body.startswith("{") else body


def sse_refusal(server: skyrelay.Server, path: str, t: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {t}"} if t else {}
    r = httpx.get(f"http://127.0.0.1:{server.port}{path}", headers=headers, timeout=5)
    return r.status_code, r.json()


def refused_topics(server: skyrelay.Server) -> float:
    return metric(server, 'skyrelay_forbidden_total{scope="client_topic"}')


def refused_subscribe(client, topics: list[str], ref: str) -> dict[str, Any]:
    client.send({"type": "subscribe", "topics": topics, "id": ref})
    err = client.expect_frame("error")
    assert err["code"] == "forbidden" and err["ref"] == ref
    assert client.ping()["type"] == "pong"  # the connection stays
    return err


def assert_forbidden_body(status: int, body: Any, topic: str) -> None:
    assert status == 403
    assert body["error"] == "forbidden"
    assert f'"{topic}"' in body["message"] and "client_topics" in body["message"]


# -- the default: no topic is open ------------------------------------------------------------

def test_by_default_no_transport_subscribes_by_name(skyrelay_server_factory):
    server = skyrelay_server_factory(client_topics=None)
    assert refused_topics(server) == 0  # the series is there from the start
    with ws(server) as client:
        err = refused_subscribe(client, ["news"], "s1")
        assert err["message"] == ('topic "news" is not open to clients: the server\'s '
                                  'client_topics setting opens no topic')
        assert server.room_size("news") == 0
    assert_forbidden_body(*ws_refusal(server, "/ws/news"), "news")
    assert_forbidden_body(*ws_refusal(server, "/ws/a%3Ab"), "a:b")  # percent-decoded first
    assert_forbidden_body(*sse_refusal(server, "/sse/news"), "news")
    assert_forbidden_body(*sse_refusal(server, "/sse?topics=sports"), "sports")
    assert refused_topics(server) == 5
    assert metric(server, 'skyrelay_errors_total{code="forbidden"}') == 1
    assert metric(server, "skyrelay_handshakes_rejected_total") == 4
    assert metric(server, OPENED_JSON) == 1  # the refused never opened


def test_by_default_clients_still_get_what_the_server_addresses_to_them(skyrelay_server_factory):
    def configure(server: skyrelay.Server) -> None:
        @server.on("join_private")
        def join_private(conn, data):
            return conn.join("private")

    server = skyrelay_server_factory(configure, client_topics=None)
    with ws(server) as client, Stream(f"http://127.0.0.1:{server.port}/sse") as stream:
        assert stream.status == 200
        sse_sid = json.loads(stream.next_event("welcome").data)["sid"]
        assert client.request("join_private") is True
        assert server.join(sse_sid, "private")
        server.emit("everyone", 1)
        server.emit("direct", 2, to=client.sid)
        server.emit("room", 3, to="private")
        assert [client.expect("everyone"), client.expect("direct"), client.expect("room")] == \
            [1, 2, 3]
        assert json.loads(stream.next_event("everyone").data) == 1
        assert json.loads(stream.next_event("room").data) == 3


# -- patterns -----------------------------------------------------------------------------------

def test_patterns_open_exactly_the_matching_topics(skyrelay_server_factory):
    server = skyrelay_server_factory(client_topics=["news", "well:*"])
    with ws(server) as client:
        assert client.subscribe("news")["topic"] == "news"
        assert client.subscribe("well:7")["topic"] == "well:7"
        assert client.subscribe("well:")["topic"] == "well:"
        for near_miss in ("newsx", "xnews", "News", "well", "wells:7", "xwell:7"):
            err = refused_subscribe(client, [near_miss], near_miss)
            assert err["message"] == (f'topic "{near_miss}" is not open to clients: no pattern '
                                      f"of the server's client_topics matches it")
        server.emit("reading", 7, to="well:7")
        assert client.expect("reading") == 7
    with ws(server, "/ws/well:9") as client:
        assert client.expect_frame("subscribed")["topic"] == "well:9"
    assert_forbidden_body(*ws_refusal(server, "/ws/wells:9"), "wells:9")
    with Stream(f"http://127.0.0.1:{server.port}/sse/news?topics=well:1") as stream:
        assert stream.status == 200
        assert json.loads(stream.next_event("welcome").data)["topics"] == ["news", "well:1"]
    # One topic of the stream that is not open refuses the whole stream.
    assert_forbidden_body(*sse_refusal(server, "/sse/news?topics=well:1,weather"), "weather")
    assert refused_topics(server) == 8


@pytest.mark.parametrize("spec", ["*", ["*"]])
def test_a_star_opens_every_topic(skyrelay_server_factory, spec):
    server = skyrelay_server_factory(client_topics=spec)
    with ws(server) as client:
        assert client.subscribe("admins", "x:y:z")["topics"] == ["admins", "x:y:z"]
    with ws(server, "/ws/anything") as client:
        assert client.expect_frame("subscribed")["topic"] == "anything"
    assert refused_topics(server) == 0


def test_sub_matches_only_the_connections_own_subject(skyrelay_server_factory):
    server = skyrelay_server_factory(jwt=jwt_auth(), client_topics=["user:{sub}", "news"])
    alice, bob, nobody = token("alice"), token("bob"), token(None)
    with ws(server, t=alice) as a, ws(server, t=bob) as b:
        assert a.subscribe("user:alice")["topic"] == "user:alice"
        assert b.subscribe("user:bob")["topic"] == "user:bob"
        assert 'topic "user:bob"' in refused_subscribe(a, ["user:bob"], "steal")["message"]
        refused_subscribe(a, ["user:*"], "star")
        refused_subscribe(a, ["user:alice:x"], "longer")
        server.emit("inbox", "for bob", to="user:bob")
        assert b.expect("inbox") == "for bob"
        a.expect_nothing(0.3, type="event")
    assert_forbidden_body(*ws_refusal(server, "/ws/user:bob", alice), "user:bob")
    assert_forbidden_body(*sse_refusal(server, "/sse/user:bob", alice), "user:bob")
    with Stream(f"http://127.0.0.1:{server.port}/sse/user:alice",
                headers={"Authorization": f"Bearer {alice}"}) as stream:
        assert stream.status == 200
    # Without a token, or with a token without sub, no {sub} pattern matches.
    with ws(server) as anonymous, ws(server, t=nobody) as subless:
        for client in (anonymous, subless):
            refused_subscribe(client, ["user:"], "empty")
            refused_subscribe(client, ["user:{sub}"], "literal")
            assert client.subscribe("news")["topic"] == "news"
    assert refused_topics(server) == 9


def test_room_roles_apply_on_top(skyrelay_server_factory):
    server = skyrelay_server_factory(jwt=jwt_auth(), client_topics=["well:*", "news"],
                                     room_roles={"well:*": ["operator"], "news": ["reader"]})
    viewer, operator = token("vic", "viewer"), token("otto", "operator")
    with ws(server, t=viewer) as v, ws(server, t=operator) as o:
        err = refused_subscribe(v, ["well:1"], "role")
        assert err["message"] == 'room "well:1" requires the role operator'
        assert o.subscribe("well:1")["topic"] == "well:1"
        # Open by pattern but not by role, and by role but not by pattern: both refused.
        assert "requires the role reader" in refused_subscribe(o, ["news"], "n")["message"]
        assert "client_topics" in refused_subscribe(o, ["control"], "c")["message"]
    status, body = ws_refusal(server, "/ws/well:2", viewer)
    assert (status, body["message"]) == (403, 'room "well:2" requires the role operator')
    assert_forbidden_body(*sse_refusal(server, "/sse/control", operator), "control")
    assert metric(server, 'skyrelay_forbidden_total{scope="room"}') == 3
    assert refused_topics(server) == 2


def test_a_subscribe_with_one_refused_topic_joins_none(skyrelay_server_factory):
    server = skyrelay_server_factory(client_topics=["news"])
    with ws(server) as client:
        refused_subscribe(client, ["news", "admins"], "mixed")
        refused_subscribe(client, ["admins", "news"], "mixed2")
        assert server.room_size("news") == 0 and server.rooms(client.sid) == []
        server.emit("headline", "x", to="news")
        client.expect_nothing(0.3, type="event")


# -- a room only the server joins ------------------------------------------------------------

@pytest.mark.parametrize("topics", [None, ["news", "well:*", "admin"]])
def test_a_room_the_server_joins_is_out_of_reach_of_anonymous_clients(
        skyrelay_server_factory, sio_clients, topics):
    joined: queue.Queue = queue.Queue()

    def configure(server: skyrelay.Server) -> None:
        @server.on("connect", namespace="/")
        def sio_connect(conn):
            if conn.transport == "socket.io":
                conn.join("admins")
                joined.put(conn.sid)

    server = skyrelay_server_factory(configure, client_topics=topics)
    admin = sio_clients()
    got: queue.Queue = queue.Queue()
    admin.on("alert", got.put)
    admin.connect(f"http://127.0.0.1:{server.port}", transports=["websocket"], wait_timeout=5)
    joined.get(timeout=5)
    assert wait_until(lambda: server.room_size("admins") == 1, timeout=5)

    with ws(server) as client, Stream(f"http://127.0.0.1:{server.port}/sse") as stream:
        refused_subscribe(client, ["admins"], "a")
        assert_forbidden_body(*ws_refusal(server, "/ws/admins"), "admins")
        assert_forbidden_body(*sse_refusal(server, "/sse/admins"), "admins")
        assert_forbidden_body(*sse_refusal(server, "/sse?topics=admins,news"), "admins")
        stream.next_event("welcome")
        server.emit("alert", {"level": "high"}, to="admins")
        server.emit("after", 1)  # everyone: it comes after the alert, had there been one
        assert got.get(timeout=5) == {"level": "high"}
        assert client.expect_event("after")["data"] == 1
        assert [f for f in client.received() if f.get("event") == "alert"] == []
        assert stream.next_event("after").event == "after"
    assert server.room_size("admins") == 1
    assert refused_topics(server) == 4


# -- transport switches -------------------------------------------------------------------------

def health(server: skyrelay.Server) -> dict[str, Any]:
    return httpx.get(f"http://127.0.0.1:{server.port}/health", timeout=5).json()


def sio_connects(make, server: skyrelay.Server) -> bool:
    client = make()
    try:
        client.connect(f"http://127.0.0.1:{server.port}", wait_timeout=5)
    except socketio.exceptions.ConnectionError:
        return False
    return client.connected


def test_json_protocol_off(skyrelay_server_factory, sio_clients):
    server = skyrelay_server_factory(json_protocol=False)
    assert health(server)["transports"] == ["sse", "socketio"]
    for path in ("/ws", "/ws/news"):
        status, body = ws_refusal(server, path)
        assert status == 404 and body["error"] == "not_found"
    assert metric(server, OPENED_JSON) == 0
    with Stream(f"http://127.0.0.1:{server.port}/sse/news") as stream:
        assert stream.status == 200
    assert sio_connects(sio_clients, server)


def test_sse_off(skyrelay_server_factory, sio_clients):
    server = skyrelay_server_factory(sse=False)
    assert health(server)["transports"] == ["json_protocol", "socketio"]
    for path in ("/sse", "/sse/news", "/sse?topics=news"):
        r = httpx.get(f"http://127.0.0.1:{server.port}{path}", timeout=5)
        assert (r.status_code, r.json()["error"]) == (404, "not_found")
    assert metric(server, OPENED_SSE) == 0
    assert server.connection_count == 0
    with ws(server, "/ws/news") as client:
        assert client.expect_frame("subscribed")["topic"] == "news"
    assert sio_connects(sio_clients, server)


def test_socketio_off(skyrelay_server_factory, sio_clients):
    server = skyrelay_server_factory(socketio=False)
    assert health(server)["transports"] == ["json_protocol", "sse"]
    r = httpx.get(f"http://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=polling",
                  timeout=5)
    assert (r.status_code, r.json()["error"]) == (404, "not_found")
    assert not sio_connects(sio_clients, server)
    assert server.connection_count == 0
    with ws(server, "/ws/news") as client:
        assert client.expect_frame("subscribed")["topic"] == "news"
    with Stream(f"http://127.0.0.1:{server.port}/sse/news") as stream:
        assert stream.status == 200


def test_every_transport_on_by_default(skyrelay_server):
    assert health(skyrelay_server)["transports"] == ["json_protocol", "sse", "socketio"]


def test_fastapi_and_flask_pass_the_options_through(sio_clients):
    flask = pytest.importorskip("flask")
    from skyrelay.fastapi import SkyRelay
    from skyrelay.flask import SocketIO

    relay = SkyRelay(port=0, sse=False, client_topics=["news"])
    relay.server.start()
    try:
        assert health(relay.server)["transports"] == ["json_protocol", "socketio"]
        with ws(relay.server, "/ws/news") as client:
            assert client.expect_frame("subscribed")["topic"] == "news"
        assert_forbidden_body(*ws_refusal(relay.server, "/ws/other"), "other")
    finally:
        relay.server.stop()

    app = flask.Flask("client_topics_app")
    facade = SocketIO(app, json_protocol=False, sse=False)
    facade.test_client(app)  # builds and starts the server
    try:
        assert health(facade.server)["transports"] == ["socketio"]
        assert sio_connects(sio_clients, facade.server)
    finally:
        facade.stop()


# -- options ------------------------------------------------------------------------------------

def test_bad_client_topics_are_refused_at_construction():
    with pytest.raises(TypeError, match="conn.join"):
        skyrelay.Server(port=0, client_topics=lambda conn, topic: True)
    with pytest.raises(ValueError, match="non-empty"):
        skyrelay.Server(port=0, client_topics=["news", ""])
    with pytest.raises(ValueError, match="non-empty"):
        skyrelay.Server(port=0, client_topics=[3])
