"""Addresses that cannot collide (issue 13, item 1): a room is (namespace, name) in the hub and a
direct emit goes through the connection registry, so no topic a client can spell reaches a room
of another namespace, another connection's direct messages, or their history.

Real clients on 127.0.0.1: websockets (JSON protocol, `/ws/<topic>`), httpx + httpx-sse (SSE),
python-socketio, and raw Socket.IO over WebSocket where the private id (pid) is needed. Absence
is checked without timing: after the events under test, a marker goes to a topic the attacker
also holds, and since every connection receives publications in publication order, whatever
the attacker was going to get arrives before the marker.

Every server here opens all topics to clients (`client_topics="*"`): the worst case, where a
client may subscribe to any name it can spell, and addresses alone must keep it out."""

from __future__ import annotations

import json
import queue
import socket
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import socketio
from sse_client import Stream
from websockets.exceptions import InvalidStatus
from wsraw import RawClient

import skyrelay
from skyrelay.testing import connect, metric, wait_until

SECRET = "for-the-admins-only"
MARKER = "done"  # every attacker subscribes to it as well


# -- attackers: each subscribes to a spelled topic and to MARKER -------------------------------

class JsonAttacker:
    """A JSON-protocol client subscribed with a `subscribe` message (or `/ws/<topic>`)."""

    def __init__(self, server: skyrelay.Server, topic: str, *, in_path: bool = False) -> None:
        path = f"/ws/{quote(topic, safe='')}" if in_path else "/ws"
        self.client = connect(f"ws://127.0.0.1:{server.port}{path}")
        if in_path:
            self.client.expect_frame("subscribed")
            self.client.subscribe(MARKER)
        else:
            self.reply = self.client.subscribe(topic, MARKER)

    def events_until_marker(self) -> list[Any]:
        """The data of every event before the marker (which must come)."""
        got = []
        while True:
            frame = self.client.expect_frame("event")
            if frame["event"] == "marker":
                return got
            got.append(frame["data"])

    def close(self) -> None:
        self.client.close()


class SseAttacker:
    """An SSE stream; `path` holds the topic (percent-encoded, or in `topics=`)."""

    def __init__(self, server: skyrelay.Server, path: str,
                 headers: dict[str, str] | None = None) -> None:
        # One `topics=` parameter is read: the marker joins the list, or starts one.
        extra = f",{MARKER}" if "topics=" in path else \
            f"{'&' if '?' in path else '?'}topics={MARKER}"
        self.stream = Stream(f"http://127.0.0.1:{server.port}{path}{extra}", headers)
        assert self.stream.status == 200, self.stream.status
        self.welcome = self.stream.next_event("welcome")

    def events_until_marker(self) -> list[Any]:
        got = []
        while True:
            sse = self.stream.next()
            if sse.event == "marker":
                return got
            if sse.event not in ("welcome", "reset"):
                got.append(json.loads(sse.data))

    def close(self) -> None:
        self.stream.close()


class RawSseAttacker:
    """An SSE request written on a raw socket, so the request target is sent as spelled
    (`#` unescaped, which an HTTP client library would strip as a fragment)."""

    def __init__(self, server: skyrelay.Server, target: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        self.buf = b""
        self._read_until(b"event: welcome")

    def _read_until(self, needle: bytes) -> bytes:
        for _ in range(1000):  # bounded: each recv waits at most the socket timeout
            if needle in self.buf:
                head, _, self.buf = self.buf.partition(needle)
                return head
            chunk = self.sock.recv(65536)
            assert chunk, "the stream ended"
            self.buf += chunk
        raise AssertionError(f"{needle!r} did not arrive")

    def events_until_marker(self) -> list[Any]:
        """The names of the events before the marker."""
        before = self._read_until(b"event: marker")
        return [line[6:].strip() for line in before.decode().splitlines()
                if line.startswith("event:")]

    def close(self) -> None:
        self.sock.close()


def everything_before_marker(server: skyrelay.Server, attackers: list[Any]) -> list[list[Any]]:
    server.emit("marker", None, to=MARKER)
    return [a.events_until_marker() for a in attackers]


# -- 1. another namespace's room -----------------------------------------------------------------

@pytest.fixture
def admin_server(skyrelay_server_factory):
    """An app whose /admin handler puts every admin socket in room `alerts` of /admin."""
    def configure(server: skyrelay.Server) -> None:
        @server.on("connect", namespace="/admin")
        def admin_connect(conn):
            conn.join("alerts")

    return skyrelay_server_factory(configure, history_size=100, client_topics="*")


def admin_client(server: skyrelay.Server, sio_clients) -> queue.Queue:
    got: queue.Queue = queue.Queue()
    client = sio_clients()
    client.on("alert", lambda data: got.put(data), namespace="/admin")
    client.connect(f"http://127.0.0.1:{server.port}", namespaces=["/admin"],
                   transports=["websocket"], wait_timeout=10)
    assert wait_until(lambda: server.room_size("alerts", namespace="/admin") == 1)
    return got


SPELLED = "/admin#alerts"
ENC = quote(SPELLED, safe="")  # %2Fadmin%23alerts


def test_a_spelled_topic_gets_nothing_of_another_namespaces_room(admin_server, sio_clients):
    server = admin_server
    legit = admin_client(server, sio_clients)
    attackers = [
        JsonAttacker(server, SPELLED),
        JsonAttacker(server, SPELLED, in_path=True),
        JsonAttacker(server, "alerts"),  # the same name in "/": another room
        SseAttacker(server, f"/sse/{ENC}"),
        SseAttacker(server, f"/sse/x?topics={ENC}"),
        RawSseAttacker(server, f"/sse//admin#alerts?topics={MARKER}"),
        RawSseAttacker(server, f"/sse/{ENC}?topics={MARKER}"),
    ]
    try:
        assert server.room_size(SPELLED) == 6  # they are in a room of "/" by that name
        assert server.room_size("alerts") == 1
        assert server.room_size("alerts", namespace="/admin") == 1
        for i in range(3):
            server.emit("alert", {"secret": SECRET, "n": i}, to="alerts", namespace="/admin")
        assert [legit.get(timeout=5) for _ in range(3)] == \
            [{"secret": SECRET, "n": i} for i in range(3)]
        for got in everything_before_marker(server, attackers):
            assert got == []
        # The JSON-protocol attacker's subscribe reported the position of its own room.
        assert attackers[0].reply["positions"][SPELLED]["seq"] == 0
    finally:
        for a in attackers:
            a.close()


def test_a_spelled_topic_gets_none_of_another_namespaces_history(admin_server, sio_clients):
    server = admin_server
    legit = admin_client(server, sio_clients)
    # Positions taken before the secret events: the spelled room's epoch and SSE event ids.
    first = connect(f"ws://127.0.0.1:{server.port}/ws")
    before = first.subscribe(SPELLED)
    first.close()
    sse = SseAttacker(server, f"/sse/{ENC}")
    last_id = sse.welcome.id
    sse.close()
    for i in range(3):
        server.emit("alert", {"secret": SECRET, "n": i}, to="alerts", namespace="/admin")
    assert [legit.get(timeout=5)["n"] for _ in range(3)] == [0, 1, 2]

    replayer = connect(f"ws://127.0.0.1:{server.port}/ws")
    reply = replayer.subscribe(SPELLED, since=0, epoch=before["epoch"])
    assert reply["recovered"] is True and reply["seq"] == 0
    replayer.subscribe(MARKER)
    resumed = [
        SseAttacker(server, f"/sse/{ENC}", headers={"Last-Event-ID": last_id}),
        SseAttacker(server, f"/sse/{ENC}?last_event_id={quote(last_id)}"),
    ]
    server.emit("marker", None, to=MARKER)
    got = []
    while (frame := replayer.expect_frame("event"))["event"] != "marker":
        got.append(frame)
    assert got == []
    try:
        for a in resumed:
            assert a.events_until_marker() == []
    finally:
        replayer.close()
        for a in resumed:
            a.close()


# -- 2. another connection's direct messages ------------------------------------------------------

@pytest.fixture
def poke_server(skyrelay_server_factory):
    """`poke` answers the sender through Connection.emit, `poke_server` through
    server.emit(to=<Connection>), in "/" and in "/ns"."""
    def configure(server: skyrelay.Server) -> None:
        for nsp in ("/", "/ns"):
            @server.on("poke", namespace=nsp)
            def poke(conn, data):
                conn.emit("private", {"via": "conn.emit", "secret": data})

            @server.on("poke_server", namespace=nsp)
            def poke_server(conn, data):
                server.emit("private", {"via": "server.emit", "secret": data}, to=conn)

        @server.on("connect", namespace="/ns")
        def ns_connect(conn):
            pass

    return skyrelay_server_factory(configure, history_size=100, recovery_window=30,
                                   inbound_rate=0, client_topics="*")


def sid_attackers(server: skyrelay.Server, names: list[str]) -> list[Any]:
    out: list[Any] = []
    for name in names:
        out += [JsonAttacker(server, name), JsonAttacker(server, name, in_path=True),
                SseAttacker(server, f"/sse/{quote(name, safe='')}"),
                SseAttacker(server, f"/sse/x?topics={quote(name, safe='')}")]
    return out


def test_a_topic_named_like_a_json_clients_sid_takes_none_of_its_messages(poke_server):
    server = poke_server
    victim = connect(f"ws://127.0.0.1:{server.port}/ws")
    attackers = sid_attackers(server, [victim.sid, f"/#{victim.sid}"])
    try:
        assert server.room_size(victim.sid) == 4
        victim.emit("poke", "one")
        assert victim.expect("private") == {"via": "conn.emit", "secret": "one"}
        victim.emit("poke_server", "one")
        assert victim.expect("private") == {"via": "server.emit", "secret": "one"}
        assert server.emit("private", {"via": "server.emit", "secret": "two"},
                           to=victim.sid) == 1
        assert victim.expect("private") == {"via": "server.emit", "secret": "two"}
        for got in everything_before_marker(server, attackers):
            assert got == []
        # The direct messages went to no room's history either.
        late = connect(f"ws://127.0.0.1:{server.port}/ws")
        assert late.subscribe(victim.sid)["seq"] == 0
        late.close()

        # Once the victim is gone its sid still addresses nobody: not the attackers' room.
        count = server.connection_count
        victim.close()
        assert wait_until(lambda: server.connection_count == count - 1)
        assert metric(server, "skyrelay_closed_sids") >= 1
        assert server.emit("private", "after-close", to=victim.sid) == 0
        for got in everything_before_marker(server, attackers):
            assert got == []
    finally:
        victim.close()
        for a in attackers:
            a.close()


def test_a_topic_named_like_a_socketio_sid_or_pid_takes_none_of_its_messages(poke_server):
    server = poke_server
    got: dict[str, queue.Queue] = {"/": queue.Queue(), "/ns": queue.Queue()}
    victim = socketio.Client(reconnection=False)
    for nsp in got:
        # With recovery on, an event carries its offset as a last argument.
        victim.on("private", lambda *args, nsp=nsp: got[nsp].put(args[0]), namespace=nsp)
    victim.connect(f"http://127.0.0.1:{server.port}", namespaces=["/", "/ns"],
                   transports=["websocket"], wait_timeout=10)
    # A raw Socket.IO socket, to learn its private id (pid, used for connection recovery).
    raw = RawClient(server.port, "/socket.io/?EIO=4&transport=websocket")
    assert raw.read_frame()[1].startswith(b"0{")
    raw.send_text("40")
    hello = json.loads(raw.read_frame()[1][2:])
    sid, ns_sid = victim.get_sid("/"), victim.get_sid("/ns")
    names = [sid, ns_sid, f"/ns#{ns_sid}", hello["sid"], hello["pid"]]
    attackers = sid_attackers(server, names)
    try:
        victim.emit("poke", "a", namespace="/")
        victim.emit("poke", "b", namespace="/ns")
        assert got["/"].get(timeout=5) == {"via": "conn.emit", "secret": "a"}
        assert got["/ns"].get(timeout=5) == {"via": "conn.emit", "secret": "b"}
        victim.emit("poke_server", "a", namespace="/")
        victim.emit("poke_server", "b", namespace="/ns")  # the Connection's own namespace
        assert got["/"].get(timeout=5) == {"via": "server.emit", "secret": "a"}
        assert got["/ns"].get(timeout=5) == {"via": "server.emit", "secret": "b"}
        assert server.emit("private", "c", to=sid) == 1
        assert server.emit("private", "d", to=ns_sid, namespace="/ns") == 1
        assert server.emit("private", "e", to=ns_sid) == 0  # a sid of /ns, emitted in "/"
        assert got["/"].get(timeout=5) == "c"
        assert got["/ns"].get(timeout=5) == "d"
        assert server.emit("private", "f", to=hello["sid"]) == 1
        # Rooms by (namespace, name) through the Python API.
        assert server.join(ns_sid, "r", namespace="/ns")
        assert server.rooms(ns_sid, namespace="/ns") == ["r"]
        assert server.rooms(ns_sid) == [] and server.room_size("r") == 0
        assert server.room_members("r", namespace="/ns") == [ns_sid]
        assert server.leave(ns_sid, "r", namespace="/ns")
        assert server.room_size("r", namespace="/ns") == 0
        op, data = raw.read_frame()
        assert data.startswith(b'42["private","f"'), data
        for gotten in everything_before_marker(server, attackers):
            assert gotten == []
    finally:
        raw.close()
        victim.disconnect()
        for a in attackers:
            a.close()


def test_the_flask_facades_replies_reach_only_the_sender(skyrelay_server_factory):
    flask = pytest.importorskip("flask")
    from skyrelay.flask import SocketIO, emit

    app = flask.Flask(__name__)
    sio = SocketIO(app, client_topics="*")

    @sio.on("ask")
    def ask(data):
        emit("answer", {"implicit": data})                            # to the sender
        emit("answer", {"to_sid": data}, to=flask.request.sid)        # to request.sid

    sio.test_client(app).disconnect()  # builds and starts the server
    server = sio.server
    try:
        answers: queue.Queue = queue.Queue()
        victim = socketio.Client(reconnection=False)
        victim.on("answer", answers.put)
        victim.connect(f"http://127.0.0.1:{server.port}", transports=["websocket"],
                       wait_timeout=10)
        attackers = sid_attackers(server, [victim.get_sid("/")])
        try:
            victim.emit("ask", "q")
            assert answers.get(timeout=5) == {"implicit": "q"}
            assert answers.get(timeout=5) == {"to_sid": "q"}
            for got in everything_before_marker(server, attackers):
                assert got == []
        finally:
            victim.disconnect()
            for a in attackers:
                a.close()
    finally:
        sio.stop()


# -- 3. names at the edges of the allowed lengths -------------------------------------------------

def test_empty_and_oversized_topics_are_refused(skyrelay_server):
    server = skyrelay_server
    base = f"http://127.0.0.1:{server.port}"
    c = connect(f"ws://127.0.0.1:{server.port}/ws")
    try:
        for topic in ("", "x" * 257):
            c.send({"type": "subscribe", "topic": topic})
            err = c.expect_frame("error")
            assert err["code"] == "bad_message", err
        long = "x" * 257
        for target in (f"/sse/{long}", f"/sse/x?topics={long}", "/sse/x?topics=a,,b"):
            r = httpx.get(base + target, timeout=5)
            assert r.status_code == 400 and r.json()["error"] == "bad_topic", (target, r.text)
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://127.0.0.1:{server.port}/ws/{long}")
        assert refused.value.response.status_code == 400
        assert server.connection_count == 1
    finally:
        c.close()


def test_a_256_byte_topic_works_and_reaches_only_itself(skyrelay_server):
    server = skyrelay_server
    topic = "t" * 255 + "#"
    exact = connect(f"ws://127.0.0.1:{server.port}/ws")
    assert exact.subscribe(topic)["topic"] == topic
    in_path = connect(f"ws://127.0.0.1:{server.port}/ws/{quote(topic, safe='')}")
    in_path.expect_frame("subscribed")
    near = JsonAttacker(server, topic[:-1])
    stream = SseAttacker(server, f"/sse/{quote(topic, safe='')}")
    try:
        assert server.emit("e", "mine", to=topic) == 3
        assert exact.expect_event("e")["topic"] == topic
        assert in_path.expect("e") == "mine"
        assert stream.stream.next_event("e").data == '"mine"'
        assert everything_before_marker(server, [near]) == [[]]
    finally:
        for c in (exact, in_path):
            c.close()
        near.close()
        stream.close()
