"""Several skyrelay processes on one Redis (issue 15, first step): real server processes (each
its own port), one real redis-server from the fixture, real clients of every transport.

- JSON-protocol, SSE and Socket.IO subscribers on every node receive every event published on
  any node, exactly once, in one order (Redis's seq).
- Redis restarted mid-stream: every client ends with every event exactly once and in order,
  or sees an explicit reset (a new epoch), never a silent gap; /health says ``degraded`` while
  Redis is down and ``ok`` after; the publish API answers 503 ``broker_unavailable``.
- A client resumes on a node that never followed its topic (JSON ``since``/``epoch``, SSE
  ``Last-Event-ID``) and gets exactly what it missed.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import socketio
from websockets.sync.client import connect as ws_connect

import skyrelay
from sse_client import Stream

HERE = Path(__file__).parent
TOKEN = "node-t0ken"
WAIT = 15.0  # bound on every wait (not a speed assertion)


def start_node_process(script: str, *args: str) -> tuple[subprocess.Popen, queue.Queue, int]:
    """Starts a node script of tests/python that prints "port N" once it serves: the process,
    the queue of its output lines after that one (read by a thread), and the port."""
    proc = subprocess.Popen([sys.executable, str(HERE / script), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    deadline = time.monotonic() + WAIT
    while True:
        line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        if line.startswith("port "):
            return proc, lines, int(line.split()[1])


@pytest.fixture
def started():
    """The nodes a test appends here are stopped after it."""
    nodes: list = []
    try:
        yield nodes
    finally:
        for node in nodes:
            node.stop()


class Node:
    """A skyrelay process (tests/python/redis_node.py) on the Redis broker."""

    def __init__(self, redis_url: str, *extra: str) -> None:
        # `lines`: what the node prints, after its port.
        self.proc, self.lines, self.port = start_node_process("redis_node.py", redis_url, *extra)
        self.http = f"http://127.0.0.1:{self.port}"

    def publish(self, event: str, data, to: str | None = None) -> httpx.Response:
        body = {"event": event, "data": data}
        if to is not None:
            body["to"] = to
        return httpx.post(f"{self.http}/api/publish", json=body, timeout=10,
                          headers={"Authorization": f"Bearer {TOKEN}"})

    def health(self) -> dict:
        return httpx.get(f"{self.http}/health", timeout=5).json()

    def metric(self, name: str) -> float:
        for line in httpx.get(f"{self.http}/metrics", timeout=5).text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"{name} missing from /metrics")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture
def nodes(redis_server):
    started: list[Node] = []

    def start(n: int, *extra: str, url: str | None = None) -> list[Node]:
        for _ in range(n):
            started.append(Node(url or redis_server.url, *extra))
        return started[-n:]

    try:
        yield start
    finally:
        for node in started:
            node.stop()


class JsonClient:
    """A JSON-protocol WebSocket client collecting `event` frames on a thread."""

    def __init__(self, port: int) -> None:
        self.ws = ws_connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10).__enter__()
        assert json.loads(self.ws.recv(timeout=10))["type"] == "welcome"
        self.frames: queue.Queue = queue.Queue()
        self.events: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for text in self.ws:
                self.frames.put(json.loads(text))
        except Exception:  # noqa: BLE001 - the connection ended; the queue says so
            pass
        self.frames.put(None)

    def subscribe(self, topic: str, **extra) -> dict:
        self.ws.send(json.dumps({"type": "subscribe", "topic": topic, **extra}))
        deadline = time.monotonic() + WAIT
        while True:
            frame = self.frames.get(timeout=max(0.01, deadline - time.monotonic()))
            assert frame is not None, "the connection closed"
            if frame["type"] == "subscribed":
                return frame
            if frame["type"] == "event":
                self.events.append(frame)

    def collect(self, until, what: str = "event") -> list[dict]:
        """Frames until `until(events)` holds (bounded by WAIT)."""
        deadline = time.monotonic() + WAIT
        while not until(self.events):
            frame = self.frames.get(timeout=max(0.01, deadline - time.monotonic()))
            assert frame is not None, "the connection closed"
            if frame["type"] == what:
                self.events.append(frame)
        return self.events

    def close(self) -> None:
        self.ws.close()


def sse_collect(stream: Stream, until) -> list:
    got = []
    deadline = time.monotonic() + WAIT
    while not until(got):
        got.append(stream.next(max(0.01, deadline - time.monotonic())))
    return got


def sio_client(port: int, room: str):
    """A python-socketio client joined to `room` (by redis_node.py's connect handler): its
    queue gets the `tick` events' data; `probe` events land in `client.probes`."""
    got: queue.Queue = queue.Queue()
    client = socketio.Client(reconnection=False)
    client.probes = queue.Queue()
    client.on("tick", lambda data: got.put(data))
    client.on("probe", lambda data: client.probes.put(data))
    client.connect(f"http://127.0.0.1:{port}", auth={"room": room}, transports=["websocket"],
                   wait_timeout=10)
    return client, got


def follow(publisher: Node, client: JsonClient, topic: str) -> None:
    """Publishes `probe` to `topic` until `client` (subscribed to it) got one: the client's
    node follows the topic then."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        assert publisher.publish("probe", 0, to=topic).status_code == 200
        try:
            frame = client.frames.get(timeout=0.2)
        except queue.Empty:
            continue
        assert frame is not None, "the connection closed"
        if frame["type"] == "event":
            return
    raise AssertionError("the node did not follow the topic in time")


def warm_up(publisher: Node, topic: str, json_clients, streams, sio_clients) -> None:
    """Publishes `probe` until every client has one: every node follows the topic then."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        assert publisher.publish("probe", 0, to=topic).status_code == 200
        time.sleep(0.1)
        ok = all(any(f["type"] == "event" for f in list(c.frames.queue)) or c.events
                 for c in json_clients)
        ok = ok and all(any(e is not None and e.event == "probe" for e in list(s.events.queue))
                        for s in streams)
        ok = ok and all(not client.probes.empty() for client in sio_clients)
        if ok:
            return
    raise AssertionError("the nodes did not follow the topic in time")


def test_every_transport_on_every_node_gets_every_event_once_in_one_order(nodes):
    cluster = nodes(3)
    json_clients = [JsonClient(n.port) for n in cluster]
    for c in json_clients:
        c.subscribe("t")
    streams = [Stream(f"{n.http}/sse/t") for n in cluster]
    sios = [sio_client(n.port, "t") for n in cluster]
    try:
        warm_up(cluster[0], "t", json_clients, streams, [client for client, _ in sios])
        total = 90
        for i in range(total):  # round robin over the nodes: three publishers, one order
            r = cluster[i % 3].publish("tick", {"n": i}, to="t")
            assert r.status_code == 200, r.text
            assert r.json()["published"]["topic"] == "t"
        expected = list(range(total))

        orders = []
        for c in json_clients:
            events = c.collect(lambda ev: sum(e["event"] == "tick" for e in ev) >= total)
            ticks = [e for e in events if e["event"] == "tick"]
            assert [e["data"]["n"] for e in ticks] == expected
            orders.append([e["seq"] for e in ticks])
        assert orders[0] == orders[1] == orders[2], "one order on every node, Redis's seq"
        assert orders[0] == list(range(orders[0][0], orders[0][0] + total))

        for s in streams:
            got = sse_collect(s, lambda g: sum(e.event == "tick" for e in g) >= total)
            assert [json.loads(e.data)["n"] for e in got if e.event == "tick"] == expected
        for _, q in sios:
            ticks = []
            deadline = time.monotonic() + WAIT
            while len(ticks) < total:
                ticks.append(q.get(timeout=max(0.01, deadline - time.monotonic())))
            assert [d["n"] for d in ticks] == expected
        time.sleep(0.2)  # a duplicate would have arrived by now
        assert all(c.frames.empty() for c in json_clients)
        assert all(q.empty() for _, q in sios)
        assert all(n.metric("skyrelay_broker_redis_publishes_total") >= total // 3
                   for n in cluster)
    finally:
        for c in json_clients:
            c.close()
        for s in streams:
            s.close()
        for client, _ in sios:
            client.disconnect()


def test_redis_restarted_mid_stream_every_event_once_in_order_or_an_explicit_reset(
        nodes, redis_server):
    cluster = nodes(2)
    json_clients = [JsonClient(n.port) for n in cluster]
    for c in json_clients:
        c.subscribe("r")
    streams = [Stream(f"{n.http}/sse/r") for n in cluster]
    sios = [sio_client(n.port, "r") for n in cluster]
    warm_up(cluster[0], "r", json_clients, streams, [client for client, _ in sios])
    total = 60
    refused = []
    published = []
    for i in range(total):
        if i == total // 2:
            redis_server.restart()  # an empty Redis: the sequence starts again
        deadline = time.monotonic() + WAIT
        while True:  # a refused publish published nothing: try again
            r = cluster[i % 2].publish("tick", {"n": i}, to="r")
            if r.status_code == 200:
                published.append(i)
                break
            assert r.status_code == 503, r.text
            assert r.json()["error"] == "broker_unavailable"
            refused.append(i)
            assert time.monotonic() < deadline, "redis did not come back"
            time.sleep(0.05)
    assert all(n.health()["status"] == "ok" for n in cluster)
    for c in json_clients:
        events = c.collect(lambda ev: any(e["event"] == "tick" and e["data"]["n"] == total - 1
                                          for e in ev))
        ns = [e["data"]["n"] for e in events if e["event"] == "tick" and e["data"]["n"] >= 0]
        # Exactly once and in order; the sequence restarts with the new Redis (seq from 1),
        # which the client sees as seq going back: an explicit reset, not a hole.
        assert ns == sorted(set(ns)), ns
        assert ns == list(range(total)), ns
        seqs = [e["seq"] for e in events if e["event"] == "tick"]
        drops = [i for i in range(1, len(seqs)) if seqs[i] != seqs[i - 1] + 1]
        assert all(seqs[i] == 1 for i in drops), seqs  # only a restart, never a jump ahead
    assert max(n.metric("skyrelay_broker_redis_reconnects_total") for n in cluster) >= 1
    for stream in streams:
        got = sse_collect(stream, lambda g: any(
            e.event == "tick" and json.loads(e.data)["n"] == total - 1 for e in g))
        ns = [json.loads(e.data)["n"] for e in got if e.event == "tick"]
        assert [n for n in ns if n >= 0] == list(range(total))
    for client, q in sios:
        ns = []
        deadline = time.monotonic() + WAIT
        while total - 1 not in ns:
            ns.append(q.get(timeout=max(0.01, deadline - time.monotonic()))["n"])
        assert [n for n in ns if n >= 0] == list(range(total))
        client.disconnect()
    for c in json_clients:
        c.close()
    for stream in streams:
        stream.close()


def test_a_node_started_while_redis_is_unreachable_serves_once_it_is_back(nodes, redis_server):
    redis_server.stop()
    (node,) = nodes(1)
    health = node.health()
    assert health["status"] == "degraded"
    assert "cannot connect to redis" in health["broker"]["reason"]
    assert node.publish("x", 1, to="room").status_code == 503
    c = JsonClient(node.port)
    # A stream opened now starts in the node's own numbering; once the node follows the topic
    # in Redis, the change of numbering reaches it as a marker that writes nothing, which
    # must not stall it.
    stream = Stream(f"{node.http}/sse/early")
    assert stream.next_event("welcome").id
    redis_server.restart()
    deadline = time.monotonic() + WAIT
    while node.health()["status"] != "ok" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert node.health()["status"] == "ok"
    epoch = c.subscribe("late")["epoch"]
    r = node.publish("tick", {"n": 1}, to="late")
    assert r.status_code == 200
    assert r.json()["published"]["epoch"] == epoch  # the subscriber was told Redis's epoch
    assert c.collect(lambda ev: len(ev) >= 1)[0]["data"] == {"n": 1}
    c.close()
    try:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:  # the node follows "early" soon after it is back
            assert node.publish("tick", {"n": 2}, to="early").status_code == 200
            try:
                sse = stream.next_event("tick", timeout=0.5)
                break
            except queue.Empty:
                pass
        else:
            raise AssertionError("the stream opened before Redis was back stayed silent")
        assert json.loads(sse.data) == {"n": 2}
        assert sse.id.startswith("r~")
    finally:
        stream.close()


def test_a_node_killed_with_sigkill_does_not_disturb_the_others(nodes):
    a, b, c = nodes(3)
    clients = [JsonClient(n.port) for n in (a, c)]
    for cl in clients:
        cl.subscribe("k")
    doomed = JsonClient(b.port)
    doomed.subscribe("k")
    warm_up(a, "k", clients + [doomed], [], [])
    for i in range(10):
        assert (a, b, c)[i % 3].publish("tick", {"n": i}, to="k").status_code == 200
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait(timeout=10)
    for i in range(10, 20):
        assert (a, c)[i % 2].publish("tick", {"n": i}, to="k").status_code == 200
    for cl in clients:
        events = cl.collect(lambda ev: sum(e["event"] == "tick" for e in ev) >= 20)
        assert [e["data"]["n"] for e in events if e["event"] == "tick"] == list(range(20))
        cl.close()


def test_health_is_degraded_while_redis_is_down_and_publish_refused(nodes, redis_server):
    (node,) = nodes(1)
    assert node.health()["status"] == "ok"
    assert node.health()["broker"] == {"kind": "redis", "status": "ok"}
    assert node.metric("skyrelay_broker_up") == 1
    redis_server.stop()
    deadline = time.monotonic() + WAIT
    while node.health()["status"] != "degraded" and time.monotonic() < deadline:
        time.sleep(0.02)
    health = node.health()
    assert health["status"] == "degraded"
    assert health["broker"]["status"] == "degraded"
    assert "redis" in health["broker"]["reason"]
    assert node.metric("skyrelay_broker_up") == 0
    r = node.publish("x", 1, to="room")
    assert r.status_code == 503
    assert r.json()["error"] == "broker_unavailable"
    redis_server.restart()
    deadline = time.monotonic() + WAIT
    while node.health()["status"] != "ok" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert node.health()["status"] == "ok"
    assert node.publish("x", 1, to="room").status_code == 200


def test_python_emit_raises_broker_unavailable_without_redis(redis_server_factory):
    dead = redis_server_factory()
    url = dead.url
    server = skyrelay.Server(port=0, broker=url)
    server.start()
    try:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                server.emit("e", 1, to="room")  # connected: accepted
                break
            except skyrelay.BrokerUnavailable:
                time.sleep(0.05)
        else:
            raise AssertionError("never connected")
        os.kill(dead.pid, signal.SIGKILL)
        deadline = time.monotonic() + WAIT
        with pytest.raises(skyrelay.BrokerUnavailable, match="Redis"):
            while time.monotonic() < deadline:
                server.emit("e", 1, to="room")
                time.sleep(0.02)
    finally:
        server.stop()


def test_tls_with_sentinel_and_bad_urls_are_refused_with_a_clear_message():
    cases = {"rediss+sentinel://127.0.0.1:1/m": "not supported",
             "redis+sentinel://127.0.0.1:1": "master name",
             "redis://127.0.0.1:1/0?prefix=a&x=1": "unknown query name x"}
    for url, words in cases.items():
        with pytest.raises(ValueError, match=words):
            skyrelay.Server(port=0, broker=url).start()


def test_json_client_resumes_on_a_node_that_never_followed_the_topic(nodes):
    a, b = nodes(2)
    first = JsonClient(a.port)
    reply = first.subscribe("resume")
    epoch = reply["epoch"]
    for i in range(3):
        assert a.publish("tick", {"n": i}, to="resume").status_code == 200
    got = first.collect(lambda ev: len(ev) >= 3)
    assert [e["data"]["n"] for e in got] == [0, 1, 2]
    last = got[-1]["seq"]
    first.close()
    for i in range(3, 7):  # while it is away, from both nodes
        assert (a if i % 2 else b).publish("tick", {"n": i}, to="resume").status_code == 200

    back = JsonClient(b.port)  # b has never followed "resume"
    reply = back.subscribe("resume", since=last, epoch=epoch)
    assert reply["recovered"] is True, reply
    assert (reply["seq"], reply["epoch"]) == (last + 4, epoch)
    replayed = back.collect(lambda ev: len(ev) >= 4)
    assert [e["data"]["n"] for e in replayed] == [3, 4, 5, 6]
    assert [e["seq"] for e in replayed] == list(range(last + 1, last + 5))
    assert a.publish("tick", {"n": 7}, to="resume").status_code == 200
    live = back.collect(lambda ev: len(ev) >= 5)
    assert [e["data"]["n"] for e in live] == [3, 4, 5, 6, 7]  # live follows, nothing repeated
    time.sleep(0.2)
    assert back.frames.empty()
    back.close()


def test_sse_client_resumes_with_last_event_id_on_a_node_that_never_followed_the_topic(nodes):
    a, b = nodes(2)
    first = Stream(f"{a.http}/sse/story")
    first.next_event("welcome")
    for i in range(3):
        assert a.publish("tick", {"n": i}, to="story").status_code == 200
    seen = [first.next_event("tick") for _ in range(3)]
    assert [json.loads(e.data)["n"] for e in seen] == [0, 1, 2]
    first.close()
    for i in range(3, 6):
        assert b.publish("tick", {"n": i}, to="story").status_code == 200

    back = Stream(f"{b.http}/sse/story", headers={"Last-Event-ID": seen[-1].id})
    welcome = back.next_event("welcome")
    assert welcome.id == ""  # a resumed stream keeps the id it had: no reset
    replay = [back.next() for _ in range(3)]
    assert [(e.event, json.loads(e.data)["n"]) for e in replay] == [
        ("tick", 3), ("tick", 4), ("tick", 5)]
    assert a.publish("tick", {"n": 6}, to="story").status_code == 200
    assert json.loads(back.next_event("tick").data)["n"] == 6
    back.close()
