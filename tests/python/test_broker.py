"""The broker seam, seen from outside: every publication (a Python emit, a handler's emit, a
publish-API request, a Socket.IO room emit) passes through the broker, and the broker is told
when a channel gains its first or loses its last local member (GET /metrics counts both)."""

from __future__ import annotations

import json
import queue

import httpx
import pytest
import socketio

import skyrelay
from skyrelay.testing import metric, wait_until

TOKEN = "broker-t0ken"
PUBS = "skyrelay_broker_publications_total"
SUBS = "skyrelay_broker_subscribes_total"
UNSUBS = "skyrelay_broker_unsubscribes_total"


@pytest.fixture
def server(skyrelay_server_factory):
    def configure(srv: skyrelay.Server) -> None:
        @srv.on("shout")
        def shout(conn, data):  # a handler's emit to a room of the sender's namespace
            srv.emit("heard", data, to="hall", namespace=conn.namespace)

        @srv.on("join")
        def join(conn, room):
            conn.join(room)
            return sorted(conn.rooms)

        @srv.on("leave")
        def leave(conn, room):
            conn.leave(room)
            return sorted(conn.rooms)

    return skyrelay_server_factory(configure, publish_token=TOKEN)


def test_every_kind_of_publication_passes_through_the_broker(server, skyrelay_client):
    ws = skyrelay_client(server)
    ws.subscribe("hall")
    before = metric(server, PUBS)
    assert before == metric(server, "skyrelay_publications_total")

    # A Python emit.
    assert server.emit("news", {"n": 1}, to="hall") == 1
    assert ws.expect("news") == {"n": 1}
    assert metric(server, PUBS) == before + 1

    # A publish-API request with a batch of two: two publications.
    r = httpx.post(f"http://127.0.0.1:{server.port}/api/publish", timeout=5,
                   headers={"Authorization": f"Bearer {TOKEN}",
                            "Content-Type": "application/json"},
                   content=json.dumps({"events": [{"event": "news", "data": 2, "to": "hall"},
                                                  {"event": "news", "data": 3, "to": "hall"}]}))
    assert r.status_code == 200, r.text
    assert [ws.expect("news") for _ in range(2)] == [2, 3]
    assert metric(server, PUBS) == before + 3

    # A Socket.IO client's event whose handler emits to a room of Socket.IO and JSON members.
    got: queue.Queue = queue.Queue()
    client = socketio.Client(reconnection=False)
    client.on("heard", lambda data: got.put(data))
    client.connect(f"http://127.0.0.1:{server.port}", transports=["websocket"], wait_timeout=10)
    try:
        assert client.call("join", "hall", timeout=5) == ["hall"]
        client.emit("shout", {"from": "sio"})
        assert got.get(timeout=5) == {"from": "sio"}
        assert ws.expect("heard") == {"from": "sio"}
        # A JSON-protocol client's event, through the same handler.
        ws.emit("shout", "json")
        assert got.get(timeout=5) == "json"
        assert ws.expect("heard") == "json"
    finally:
        client.disconnect()
    assert metric(server, PUBS) == before + 5
    # Nothing reaches the hub except through the broker.
    assert metric(server, PUBS) == metric(server, "skyrelay_publications_total")


def test_the_broker_hears_of_first_and_last_members_per_namespace(server, skyrelay_client):
    subs, unsubs = metric(server, SUBS), metric(server, UNSUBS)
    a = skyrelay_client(server)
    a.subscribe("room-x")
    assert metric(server, SUBS) == subs + 1  # the first member of ("/", "room-x")
    b = skyrelay_client(server)
    b.subscribe("room-x")
    assert metric(server, SUBS) == subs + 1  # a second member: the broker knows already

    client = socketio.Client(reconnection=False)
    client.connect(f"http://127.0.0.1:{server.port}", transports=["websocket"], wait_timeout=10)
    try:
        # The same room name, through a Socket.IO socket of "/": the same channel.
        assert client.call("join", "room-x", timeout=5) == ["room-x"]
        assert metric(server, SUBS) == subs + 1
        assert client.call("join", "room-y", timeout=5) == ["room-x", "room-y"]
        assert metric(server, SUBS) == subs + 2
        assert client.call("leave", "room-y", timeout=5) == ["room-x"]
        assert metric(server, UNSUBS) == unsubs + 1  # its last member left
    finally:
        client.disconnect()
    a.close()
    assert metric(server, UNSUBS) == unsubs + 1  # b and the socket may still be in room-x
    b.close()
    # The last of the three members gone (each close ends asynchronously): one unsubscribe.
    assert wait_until(lambda: metric(server, UNSUBS) == unsubs + 2)
    assert metric(server, SUBS) == subs + 2


def test_the_memory_broker_can_be_named(skyrelay_server_factory, skyrelay_client):
    server = skyrelay_server_factory(broker="memory")
    ws = skyrelay_client(server)
    ws.subscribe("hall")
    assert server.emit("news", {"n": 1}, to="hall") == 1
    assert ws.expect("news") == {"n": 1}
    assert metric(server, PUBS) == 1


def test_an_unknown_broker_url_is_refused_with_its_scheme():
    server = skyrelay.Server(port=0, broker="kafka://127.0.0.1:1/0")
    with pytest.raises(ValueError, match=r'unknown broker URL scheme in broker="kafka://'):
        server.start()
    assert not server.running
    server.stop()  # nothing to stop: it never started
    with pytest.raises(TypeError, match="broker must be a URL string"):
        skyrelay.Server(port=0, broker=b"memory")  # type: ignore[arg-type]
