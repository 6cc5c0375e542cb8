"""Drop-in for existing producers (issue 15, item 5): skyrelay nodes on a Redis broker take what
python-socketio's and Flask-SocketIO's Redis managers publish. Real parts only: a redis-server
from the fixture, skyrelay node processes (redis_node.py), the unchanged python-socketio
``RedisManager`` and Flask-SocketIO's ``SocketIO(message_queue=...)`` as producers, and
python-socketio and JSON-protocol clients.

- Emits reach the clients of every node once (one node, the lease holder, republishes them),
  in order, with several arguments and binary intact.
- Names are hostile: a room named like a sid reaches that connection only, names shaped like
  the broker's own tags reach only a room of that exact name.
- enter_room, leave_room, close_room and disconnect act on the node that holds the sid; an
  emit sent right after an enter_room reaches the new member, and one sent right after a
  leave_room does not reach the old one, on either node, without probing first.
- Malformed messages are counted on /metrics and dropped; the nodes go on.
- ``skyrelay.flask.SocketIO(message_queue=...)``: with an app it is a node on the broker (and
  its ``channel``); without one it publishes in the manager format.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import threading
import time

import flask
import flask_socketio
import pytest
import redis
import socketio

import skyrelay.flask
from test_redis_broker import JsonClient, Node

WAIT = 15.0  # bound on every wait (not a speed assertion)


@pytest.fixture
def cluster(redis_server):
    """Two skyrelay nodes on the test's Redis, once the leases of both default manager
    channels ("socketio", "flask-socketio") are held."""
    started = [Node(redis_server.url), Node(redis_server.url)]
    try:
        deadline = time.monotonic() + WAIT
        while sum(n.metric("skyrelay_manager_leased_channels") for n in started) != 2:
            assert time.monotonic() < deadline, "no node took the manager lease"
            time.sleep(0.05)
        yield started
    finally:
        for node in started:
            node.stop()


class SioClient:
    """A python-socketio client (joined to `room` by redis_node.py's connect handler) that
    records every event as (name, args)."""

    def __init__(self, port: int, room: str | None = None) -> None:
        self.events: queue.Queue = queue.Queue()
        self.disconnected = threading.Event()
        self.client = socketio.Client(reconnection=False)
        self.client.on("*", lambda event, *args: self.events.put((event, list(args))))
        self.client.on("disconnect", lambda *_: self.disconnected.set())
        self.client.connect(f"http://127.0.0.1:{port}", auth={"room": room} if room else None,
                            transports=["websocket"], wait_timeout=10)
        self.sid = self.client.get_sid()

    def until(self, event: str) -> list[tuple[str, list]]:
        """Every event up to and including the first named `event` (bounded by WAIT)."""
        got = []
        deadline = time.monotonic() + WAIT
        while not got or got[-1][0] != event:
            got.append(self.events.get(timeout=max(0.01, deadline - time.monotonic())))
        return got

    def close(self) -> None:
        self.client.disconnect()


def probe_until(emit, clients) -> None:
    """Emits `probe` (through `emit`) until every client got one: their nodes follow the room
    then (a join made on connect is not warmed; docs/deployment.md), and leftover probes are
    drained."""
    deadline = time.monotonic() + WAIT
    pending = list(clients)
    while pending:
        assert time.monotonic() < deadline, "the clients did not get a probe in time"
        emit()
        time.sleep(0.1)
        pending = [c for c in pending if not _has_probe(c)]
    emit_end = time.monotonic() + 0.3  # probes already in flight: drained below by name
    while time.monotonic() < emit_end:
        time.sleep(0.05)


def _has_probe(c) -> bool:
    if isinstance(c, SioClient):
        return any(e == "probe" for e, _ in list(c.events.queue))
    return any(f and f.get("event") == "probe" for f in list(c.frames.queue))


def without_probes(events):
    return [e for e in events if e[0] != "probe"]


def json_events(client: JsonClient, last: str) -> list[dict]:
    """The JSON client's event frames, probes left out, up to the first named `last`."""
    events = client.collect(lambda ev: any(e["event"] == last for e in ev))
    return [e for e in events if e["event"] != "probe"]


def test_redis_manager_emits_reach_every_node_once_and_in_order(cluster, redis_server):
    a, b = cluster
    sio_a, sio_b = SioClient(a.port, "r1"), SioClient(b.port, "r1")
    js = JsonClient(b.port)
    js.subscribe("r1")
    mgr = socketio.RedisManager(redis_server.url, write_only=True)  # unchanged python-socketio
    try:
        probe_until(lambda: mgr.emit("probe", 0, room="r1"), [sio_a, sio_b, js])
        for i in range(40):
            mgr.emit("tick", {"n": i}, room="r1")
        mgr.emit("multi", (1, "two", None), room="r1")
        mgr.emit("bin", {"blob": b"\x00\xffdata"}, room="r1")
        mgr.emit("none", None, room="r1")  # data=None: no argument
        mgr.emit("everyone", "hi")  # no room: the whole namespace
        mgr.emit("end", 0, room="r1")
        expected = [("tick", [{"n": i}]) for i in range(40)] + [
            ("multi", [1, "two", None]), ("bin", [{"blob": b"\x00\xffdata"}]), ("none", []),
            ("everyone", ["hi"]), ("end", [0])]
        for c in (sio_a, sio_b):
            assert without_probes(c.until("end")) == expected
        got = json_events(js, "end")
        assert [e["event"] for e in got] == [e for e, _ in expected]
        assert [e["data"] for e in got[:40]] == [{"n": i} for i in range(40)]
        assert got[40]["data"] == [1, "two", None]  # several arguments: a list
        seqs = [e["seq"] for e in got[:40]]
        assert seqs == list(range(seqs[0], seqs[0] + 40)), "Redis-numbered, one order"
        # One node republished each emit (the lease holder), never both: the sum reaches
        # the count of messages each node received, and stays there.
        received = [n.metric("skyrelay_manager_received_messages_total") for n in cluster]
        assert received[0] == received[1]
        deadline = time.monotonic() + WAIT
        while sum(n.metric("skyrelay_manager_republished_total") for n in cluster) < received[0]:
            assert time.monotonic() < deadline, "an emit was not republished"
            time.sleep(0.05)
        assert sum(n.metric("skyrelay_manager_republished_total") for n in cluster) == received[0]
    finally:
        for c in (sio_a, sio_b, js):
            c.close()


def test_hostile_room_names_resolve_as_a_python_emit_would(cluster, redis_server):
    a, b = cluster
    target = SioClient(a.port, "lobby")
    other = SioClient(b.port, "lobby")
    squatter = JsonClient(b.port)  # subscribes to topics named like a sid and like tags
    squatter.subscribe(target.sid)
    for name in ("{r1:/lobby}", "{b1:/}", "*"):
        squatter.subscribe(name)
    mgr = socketio.RedisManager(redis_server.url, write_only=True)
    try:
        probe_until(lambda: mgr.emit("probe", 0, room="lobby"), [target, other])
        mgr.emit("to-sid", 1, room=target.sid)  # a live sid: that connection only
        mgr.emit("to-sid-other-nsp", 2, room=target.sid, namespace="/admin")
        for name in ("{r1:/lobby}", "{b1:/}", "*"):
            mgr.emit("tag", name, room=name)  # exactly the room of that name
        mgr.emit("skip", 3, room="lobby", skip_sid=target.sid)
        mgr.emit("end", 0, room=[target.sid, other.sid])
        assert without_probes(target.until("end")) == [("to-sid", [1]), ("end", [0])]
        assert without_probes(other.until("end")) == [("skip", [3]), ("end", [0])]
        mgr.emit("end", 0, room="*")
        got = json_events(squatter, "end")
        assert [e["data"] for e in got if e["event"] == "tag"] == ["{r1:/lobby}", "{b1:/}", "*"]
        assert not [e for e in got if e["event"] in ("to-sid", "to-sid-other-nsp", "skip")]
    finally:
        for c in (target, other, squatter):
            c.close()


def wait_metric(node: Node, name: str, at_least: float) -> None:
    deadline = time.monotonic() + WAIT
    while node.metric(name) < at_least:
        assert time.monotonic() < deadline, f"{name} stayed below {at_least}"
        time.sleep(0.05)


def test_room_methods_and_disconnect_act_on_the_node_holding_the_sid(cluster, redis_server):
    a, b = cluster
    x = SioClient(a.port)  # in no room
    y = SioClient(b.port, "r2")
    mgr = socketio.RedisManager(redis_server.url, write_only=True)
    try:
        mgr.enter_room(x.sid, "/", "r2")  # x is not on this process: published
        probe_until(lambda: mgr.emit("probe", 0, room="r2"), [x, y])
        for i in range(5):
            mgr.emit("tick", i, room="r2")
        mgr.emit("end", 0, room="r2")
        assert without_probes(x.until("end")) == [("tick", [i]) for i in range(5)] + [
            ("end", [0])]

        applied = a.metric("skyrelay_manager_applied_total")
        mgr.leave_room(x.sid, "/", "r2")
        wait_metric(a, "skyrelay_manager_applied_total", applied + 1)
        mgr.emit("after-leave", 0, room="r2")
        mgr.emit("marker", 0, room=x.sid)  # republished after: x's node handles it later
        assert without_probes(x.until("marker")) == [("marker", [0])]
        assert without_probes(y.until("after-leave"))[-1] == ("after-leave", [0])

        mgr.enter_room(x.sid, "/", "r2")
        wait_metric(a, "skyrelay_manager_applied_total", applied + 2)
        counts = [n.metric("skyrelay_manager_applied_total") for n in cluster]
        mgr.close_room("r2", "/")  # every node empties the room of its members
        for node, count in zip(cluster, counts):
            wait_metric(node, "skyrelay_manager_applied_total", count + 1)
        mgr.emit("after-close", 0, room="r2")
        mgr.emit("marker", 1, room=[x.sid, y.sid])
        assert without_probes(x.until("marker")) == [("marker", [1])]
        assert without_probes(y.until("marker")) == [("marker", [1])]

        # Through a python-socketio server whose manager is on the same Redis: y is not its
        # client, so it publishes the disconnect for the node that holds y.
        sio = socketio.Server(client_manager=socketio.RedisManager(redis_server.url,
                                                                   write_only=True))
        sio.disconnect(y.sid)
        assert y.disconnected.wait(WAIT), "disconnect did not reach the client's node"
        assert x.client.connected
    finally:
        for c in (x, y):
            c.close()


def test_an_emit_right_after_a_room_method_sees_it(cluster, redis_server):
    leader, other = sorted(cluster, key=lambda n: -n.metric("skyrelay_manager_leased_channels"))
    assert leader.metric("skyrelay_manager_leased_channels") == 2  # the cluster fixture waited for it
    x, z = SioClient(other.port), SioClient(leader.port)  # one on each node, in no room
    mgr = socketio.RedisManager(redis_server.url, write_only=True)
    try:
        # Rooms no node follows yet: the join must also make the node follow the room.
        for i in range(4):
            for c in (x, z):
                room = f"fresh-{c.sid}-{i}"
                mgr.enter_room(c.sid, "/", room)
                mgr.emit("hello", i, room=room)
        for c in (x, z):
            mgr.emit("marker", 0, room=c.sid)
            assert c.until("marker") == [("hello", [i]) for i in range(4)] + [("marker", [0])]

        # x's node is stopped while the leader reads the enter_room and the emit: the emit
        # waits until x's node, resumed, applied the join (with no wait it would be published
        # before that node follows the room, and missed).
        os.kill(other.proc.pid, signal.SIGSTOP)
        try:
            mgr.enter_room(x.sid, "/", "late")
            mgr.emit("hello", "late", room="late")
            time.sleep(0.3)  # the leader has read both meanwhile (not an assertion)
        finally:
            os.kill(other.proc.pid, signal.SIGCONT)
        mgr.emit("marker", 1, room=x.sid)
        assert x.until("marker") == [("hello", ["late"]), ("marker", [1])]

        for c in (x, z):
            mgr.leave_room(c.sid, "/", f"fresh-{c.sid}-0")
            mgr.emit("after-leave", 0, room=f"fresh-{c.sid}-0")
            mgr.emit("marker", 2, room=c.sid)
        for c in (x, z):
            assert c.until("marker") == [("marker", [2])]
        # The leader waited for every method (9 enters, 2 leaves) and never gave up.
        assert leader.metric("skyrelay_manager_order_waits_total") == 11
        assert leader.metric("skyrelay_manager_order_timeouts_total") == 0
    finally:
        for c in (x, z):
            c.close()


def test_malformed_messages_are_counted_and_dropped(cluster, redis_server):
    a, b = cluster
    client = SioClient(a.port, "r3")
    mgr = socketio.RedisManager(redis_server.url, write_only=True)
    raw = redis.Redis.from_url(redis_server.url)
    bad = [
        b"not json", b"\xff\xfe", b"[1, 2]", b'"emit"', b"{}", b'{"method": 7}',
        b'{"method": "emit"}',
        b'{"method": "emit", "event": "x", "data": "not a list"}',
        b'{"method": "emit", "event": "x", "data": [1], "namespace": "admin"}',
        b'{"method": "emit", "event": "x", "data": [1], "room": 5}',
        b'{"method": "emit", "event": "x", "data": [1], "room": []}',
        b'{"method": "emit", "event": "x", "data": [1], "skip_sid": {"a": 1}}',
        b'{"method": "emit", "event": "x", "binary": true, "data": [[1], "%%%"]}',
        b'{"method": "emit", "event": "x", "binary": true,'
        b' "data": [[{"_placeholder": true, "num": 3}], "AA=="]}',
        b'{"method": "enter_room", "sid": 1, "room": "r"}',
        b'{"method": "disconnect"}',
        b'{"method": "emit", "event": "x", "data": ' + b"[" * 200 + b"]" * 200 + b"}",
    ]
    try:
        probe_until(lambda: mgr.emit("probe", 0, room="r3"), [client])
        before = [n.metric("skyrelay_manager_malformed_total") for n in cluster]
        for payload in bad:
            raw.publish("socketio", payload)
        raw.publish("socketio", json.dumps({"method": "callback", "host_id": "h", "sid": "s",
                                            "namespace": "/", "id": 1, "args": []}))
        mgr.emit("end", "still here", room="r3")
        assert without_probes(client.until("end")) == [("end", ["still here"])]
        for node, count in zip(cluster, before):  # every node reads every message
            wait_metric(node, "skyrelay_manager_malformed_total", count + len(bad))
            assert node.metric("skyrelay_manager_malformed_total") == count + len(bad)
            assert node.health()["status"] == "ok"
    finally:
        client.close()
        raw.close()


def test_flask_socketio_producers_and_the_flask_facade_on_redis(cluster, redis_server):
    a, _b = cluster
    app = flask.Flask(__name__)
    facade = skyrelay.flask.SocketIO(app, message_queue=redis_server.url, channel="custom")
    client = facade.test_client(app)  # starts this process's node on the same Redis
    remote = SioClient(a.port, "news")
    try:
        # Flask-SocketIO itself, without an app (a Celery worker): its "flask-socketio"
        # channel reaches the nodes that listen there (redis_node.py's: the defaults).
        real = flask_socketio.SocketIO(message_queue=redis_server.url)
        probe_until(lambda: real.emit("probe", 0, to="news"), [remote])
        real.emit("story", {"id": 1}, to="news")
        # skyrelay.flask without an app: the same format, the same channel by default.
        worker = skyrelay.flask.SocketIO(message_queue=redis_server.url)
        worker.emit("story", {"id": 2}, to="news")
        worker.emit("story", b"\x01\x02", to="news")
        with pytest.raises(RuntimeError):
            worker.emit("story", 0, to="news", callback=lambda *a: None)
        worker.emit("end", 0, to="news")
        assert without_probes(remote.until("end")) == [
            ("story", [{"id": 1}]), ("story", [{"id": 2}]), ("story", [b"\x01\x02"]),
            ("end", [0])]

        # The facade's node listens on its channel= ("custom") and emits through the broker.
        custom = skyrelay.flask.SocketIO(message_queue=redis_server.url, channel="custom")
        sid = client.client.get_sid()
        deadline = time.monotonic() + WAIT
        while not client.get_received():
            assert time.monotonic() < deadline, "the facade's node did not take the emit"
            custom.emit("hello", "from a worker", to=sid)
            time.sleep(0.1)
        facade.emit("story", {"id": 3}, to="news")  # the app's own emit, through Redis
        facade.emit("end", 1, to="news")
        assert without_probes(remote.until("end")) == [("story", [{"id": 3}]), ("end", [1])]
    finally:
        remote.close()
        client.disconnect()
        facade.stop()


def test_message_queue_must_be_a_redis_url():
    with pytest.raises(ValueError, match="redis://"):
        skyrelay.flask.SocketIO(message_queue="amqp://guest@localhost//")
