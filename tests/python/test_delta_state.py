"""Keyed states with delta updates (docs/api.md "Delta updates"): a JSON-protocol client
(websockets), a Socket.IO client (python-socketio) and an SSE client (httpx-sse) each rebuild
the state from what they receive (full update, then deltas) and end equal to ``State.get()``,
under random updates from several threads, joining mid-stream, resuming after a reset and
asking for a full update; and the state's bounds."""

from __future__ import annotations

import json
import queue
import random
import socket
import threading

import engineio
import pytest
import socketio
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import skyrelay
from skyrelay.testing import metric, wait_until
from sse_client import Stream
from wsraw import RawClient

# /metrics series this module reads (docs/deployment.md, Metrics).
CLOSED_SOCKETIO = 'skyrelay_connections_closed_total{transport="socketio"}'

ROOM = "telescopes"
EVENT = "status_update"


class Copy:
    """A client's copy of the state, rebuilt from the payloads it receives in order."""

    def __init__(self) -> None:
        self.state: dict[str, dict] = {}
        self.fulls = 0  # full-update payloads applied
        self.deltas = 0
        self.errors: list[str] = []

    def apply(self, p: dict) -> None:
        key = p["telescope_id"]
        if p["full_update"]:
            if p["index"] == 0:
                self.state = {}
            self.fulls += 1
            if key is not None:
                self.state[key] = dict(p["status"])
            return
        if not self.fulls:
            self.errors.append(f"a delta before the full update: {p}")
        self.deltas += 1
        if p.get("removed"):
            self.state.pop(key, None)
            return
        assert sorted(p["changes"]) == sorted(p["status"])
        self.state.setdefault(key, {}).update(p["status"])


def make_state(server: skyrelay.Server, **options):
    return server.state(ROOM, event=EVENT, key_name="telescope_id", fields_name="status",
                        **options)


@pytest.fixture
def server(skyrelay_server_factory):
    def configure(s: skyrelay.Server) -> None:
        make_state(s)

        @s.on("join")
        def join(conn, room):
            conn.join(room)
            return True

    # Deep outboxes: the test's clients read slower than four threads update.
    return skyrelay_server_factory(configure, outbox_max_frames=200_000,
                                   outbox_max_bytes=64 * 1024 * 1024, inbound_rate=1000.0,
                                   inbound_burst=1000)


class JSONClient:
    """A websockets client on a thread: subscribes to ROOM and applies each status_update
    until the "done" event."""

    def __init__(self, url: str, since: tuple[int, str] | None = None,
                 subscribe: bool = True) -> None:
        self.ws = connect(url)
        assert json.loads(self.ws.recv(timeout=5))["type"] == "welcome"
        if subscribe:  # else the path (/ws/<topic>) subscribed it
            msg = {"type": "subscribe", "topic": ROOM}
            if since is not None:
                msg.update(since=since[0], epoch=since[1])
            self.ws.send(json.dumps(msg))
        self.copy = Copy()
        self.reply: dict | None = None
        self.seq = 0
        self.epoch = ""
        self.others: queue.Queue = queue.Queue()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for _ in range(1_000_000):
            try:
                frame = json.loads(self.ws.recv(timeout=30))
            except (ConnectionClosed, TimeoutError):
                return
            if frame["type"] == "subscribed":
                self.reply = frame
                self.epoch = frame["epoch"]
            elif frame["type"] == "event" and frame["event"] == EVENT:
                self.seq = frame["seq"]
                self.copy.apply(frame["data"])
            elif frame["type"] == "event" and frame["event"] == "done":
                self.seq = frame["seq"]  # resumes go on after it
                self.done.set()
                return
            else:
                self.others.put(frame)

    def close(self) -> None:
        self.ws.close()
        self.thread.join(10)


def sse_copy(stream: Stream, copy: Copy) -> str:
    """Applies the stream's status_update events until "done"; returns the last event id."""
    last = ""
    for _ in range(1_000_000):
        sse = stream.next(30)
        last = sse.id or last
        if sse.event == EVENT:
            copy.apply(json.loads(sse.data))
        elif sse.event == "done":
            return last
    raise AssertionError("no done event")


class _OrderedEngineIO(engineio.Client):
    """Runs the message handler in the read loop, in arrival order (the stock client starts a
    thread per message, which may reorder them)."""

    def _trigger_event(self, event, *args, **kwargs):
        kwargs.pop("run_async", None)
        return super()._trigger_event(event, *args, **kwargs)


class OrderedSioClient(socketio.Client):
    def _engineio_client_class(self):
        return _OrderedEngineIO


class SioClient:
    """A python-socketio client joined to ROOM through the app's "join" event, applying each
    status_update in the order it arrives, until "done"."""

    def __init__(self, url: str) -> None:
        self.copy = Copy()
        self.done = threading.Event()
        self.client = OrderedSioClient(reconnection=False)
        self.client.on(EVENT, self.copy.apply)
        self.client.on("done", lambda *_: self.done.set())
        self.client.connect(url, transports=["websocket"])
        # The ack comes through the same read loop: every payload before it is applied.
        assert self.client.call("join", ROOM, timeout=10) is True

    def close(self) -> None:
        self.client.disconnect()


def hammer(state, joined: threading.Event, threads: int = 4, per_thread: int = 300,
           keys: int = 10) -> tuple[list[threading.Thread], threading.Event]:
    """Updates from `threads` threads; the first one pauses a third of the way through until
    `joined` is set (at most 30 s), so that clients joining then join mid-stream."""
    started = threading.Event()

    def run(seed: int) -> None:
        rng = random.Random(seed)
        for n in range(per_thread):
            if seed == 0 and n == per_thread // 3:
                started.set()
                joined.wait(30)
            key = f"seestar-{rng.randrange(keys):03d}"
            if rng.random() < 0.1:
                state.remove(key)
            else:
                state.update(key, {f"f{rng.randrange(4)}": rng.randrange(3),
                                   "battery_capacity": rng.randrange(80, 83)})

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    return workers, started


def test_three_transports_rebuild_the_state_under_concurrent_updates(server):
    state = make_state(server)
    state.update("seestar-000", {"battery_capacity": 85, "temp": 23.5, "gain": 100})
    early_json = JSONClient(server.url)
    early_sse = Stream(f"{server.http_url}/sse/{ROOM}")
    early_sio = SioClient(server.http_url)
    joined = threading.Event()
    workers, started = hammer(state, joined)
    assert started.wait(30)
    # Clients that come mid-stream: a full update first, then every delta after it.
    late_json = JSONClient(f"{server.url}/{ROOM}", subscribe=False)
    late_sse = Stream(f"{server.http_url}/sse/{ROOM}")
    late_sio = SioClient(server.http_url)
    joined.set()
    for w in workers:
        w.join()
    server.emit("done", {}, to=ROOM)  # after every delta, in the room's order
    copies = []
    for c in (early_json, late_json):
        assert c.done.wait(30)
        copies.append(c.copy)
    for stream in (early_sse, late_sse):
        copy = Copy()
        sse_copy(stream, copy)
        copies.append(copy)
    for c in (early_sio, late_sio):
        assert c.done.wait(30)
        copies.append(c.copy)
        c.close()
    want = state.get()
    assert want and len(want) <= 10
    for copy in copies:
        assert copy.errors == []
        assert copy.fulls >= 1
        assert copy.state == want
    assert copies[0].deltas > 100  # the early ones saw the stream as deltas
    assert all(c.deltas > 50 for c in copies[1::2])  # the late ones joined mid-stream
    for c in (early_json, late_json):
        c.close()
    for stream in (early_sse, late_sse):
        stream.close()


def test_only_changed_fields_are_sent_and_an_unchanged_update_sends_nothing(server):
    state = make_state(server)
    client = JSONClient(f"{server.url}/{ROOM}", subscribe=False)
    assert state.update("seestar-001", {"battery_capacity": 85, "temp": 23.5, "gain": 100}) == 1
    assert state.update("seestar-001", {"battery_capacity": 84, "temp": 23.5, "gain": 100.0}) == 1
    assert state.update("seestar-001", b'{"gain": 100, "temp": 23.5}') == 0
    client.ws.send(json.dumps({"type": "ping"}))
    assert client.others.get(timeout=5)["type"] == "pong"  # queued after anything sent above
    assert client.copy.fulls == 1 and client.copy.deltas == 2
    assert client.copy.state == state.get() == {
        "seestar-001": {"battery_capacity": 84, "temp": 23.5, "gain": 100}}
    assert state.get("seestar-001")["battery_capacity"] == 84
    assert state.get("nope") is None
    client.close()


def test_json_resume_replays_deltas_or_sends_the_full_update_after_a_reset(
        skyrelay_server_factory):
    server = skyrelay_server_factory(make_state, history_size=8)
    state = make_state(server)
    state.update("a", {"x": 1})
    first = JSONClient(server.url)
    state.update("a", {"x": 2})
    server.emit("done", {}, to=ROOM)
    assert first.done.wait(10)
    seq, epoch, kept = first.seq, first.epoch, first.copy
    first.close()
    assert epoch
    # Within history: the missed deltas, applied to the copy the client kept.
    state.update("b", {"y": 1})
    back = JSONClient(server.url, since=(seq, epoch))
    server.emit("done", {}, to=ROOM)
    assert back.done.wait(10)
    assert back.reply["recovered"] is True and "reset" not in back.reply
    assert back.copy.fulls == 0 and back.copy.deltas == 1
    for key, fields in back.copy.state.items():
        kept.state.setdefault(key, {}).update(fields)
    assert kept.state == state.get()
    back.close()
    # Past history (a reset): the full update, with the keys removed meanwhile gone.
    state.remove("a")
    for i in range(20):
        state.update("b", {"y": i + 2})
    again = JSONClient(server.url, since=(seq, epoch))
    server.emit("done", {}, to=ROOM)
    assert again.done.wait(10)
    assert again.reply["recovered"] is False and again.reply["reset"] == "history_gap"
    assert again.copy.fulls == 1 and again.copy.state == state.get() == {"b": {"y": 21}}
    again.close()


def test_sse_last_event_id_resume_and_gap(skyrelay_server_factory):
    server = skyrelay_server_factory(make_state, history_size=4)
    state = make_state(server)
    state.update("a", {"x": 1})
    stream = Stream(f"{server.http_url}/sse/{ROOM}")
    copy = Copy()
    state.update("a", {"x": 2})
    server.emit("done", {}, to=ROOM)
    last_id = sse_copy(stream, copy)
    stream.close()
    assert copy.fulls == 1 and copy.deltas == 1 and copy.state == state.get()
    # Within history: only the missed delta, applied to the copy the client kept.
    state.update("a", {"x": 3})
    back = Stream(f"{server.http_url}/sse/{ROOM}", headers={"Last-Event-ID": last_id})
    server.emit("done", {}, to=ROOM)
    fulls_before = copy.fulls
    sse_copy(back, copy)
    back.close()
    assert copy.fulls == fulls_before and copy.deltas == 2
    assert copy.state == state.get() == {"a": {"x": 3}}
    # Past history (four events kept): a reset event, then the full update.
    state.update("b", {"y": 1})
    for i in range(10):
        state.update("a", {"x": 10 + i})
    gap = Stream(f"{server.http_url}/sse/{ROOM}", headers={"Last-Event-ID": last_id})
    assert json.loads(gap.next_event("reset").data)["reason"] == "history_gap"
    server.emit("done", {}, to=ROOM)
    fresh = Copy()
    sse_copy(gap, fresh)
    gap.close()
    assert fresh.fulls == 2 and fresh.state == state.get() == {"a": {"x": 19}, "b": {"y": 1}}


def test_full_update_on_request(server):
    state = make_state(server)
    state.update("a", {"x": 1})
    state.update("b", {"y": 2})
    client = JSONClient(f"{server.url}/{ROOM}", subscribe=False)
    client.ws.send(json.dumps({"type": "request", "id": "r1", "event": "request_full_update",
                               "data": {"room": ROOM}}))
    response = client.others.get(timeout=5)
    assert response["type"] == "response" and response["ok"] is True
    assert response["data"] == {"room": ROOM, "payloads": 2}
    assert client.copy.fulls == 4  # the subscribe's full update, then the requested one
    assert client.copy.state == state.get()
    client.ws.send(json.dumps({"type": "request", "id": "r2", "event": "request_full_update",
                               "data": {"room": "elsewhere"}}))
    refused = client.others.get(timeout=5)
    assert refused["ok"] is False and refused["error"]["code"] == "not_member"
    # From Python, to one member.
    sid = server.room_members(ROOM)[0]
    assert state.send_full(sid) == 2
    with pytest.raises(ValueError):
        state.send_full("nobody")
    client.close()
    # Socket.IO: the request event with an ack.
    sio = OrderedSioClient(reconnection=False)
    got: queue.Queue = queue.Queue()
    sio.on(EVENT, got.put)
    sio.connect(server.http_url, transports=["websocket"])
    assert sio.call("join", ROOM, timeout=10) is True
    assert sio.call("request_full_update", {"room": ROOM}, timeout=10) == {
        "room": ROOM, "payloads": 2}
    fulls = [got.get(timeout=5) for _ in range(4)]  # the join's, then the requested one
    assert all(p["full_update"] for p in fulls)
    assert [p["index"] for p in fulls] == [0, 1, 0, 1]
    sio.disconnect()


def test_bounds_are_refused_and_counted(skyrelay_server):
    state = skyrelay_server.state("small", event="s", max_keys=2, max_key_bytes=64)
    state.update("a", {"v": 1})
    state.update("b", {"v": 1})
    with pytest.raises(skyrelay.StateLimitExceeded) as over:
        state.update("c", {"v": 1})
    assert over.value.limit == "max_keys"
    with pytest.raises(skyrelay.StateLimitExceeded) as big:
        state.update("a", {"text": "x" * 100})
    assert big.value.limit == "max_key_bytes"
    with pytest.raises(ValueError):
        state.update("a", b"[1, 2]")
    assert state.get() == {"a": {"v": 1}, "b": {"v": 1}}
    assert state.remove("b") is True and state.remove("b") is False
    metrics = skyrelay_server.metrics_text()
    assert 'skyrelay_state_refused_total{limit="max_keys"} 1' in metrics
    assert 'skyrelay_state_refused_total{limit="max_key_bytes"} 1' in metrics
    assert "skyrelay_state_keys 1" in metrics
    # One state per (room, event): the same object, or an error for other options.
    assert skyrelay_server.state("small", event="s", max_keys=2, max_key_bytes=64) is state
    with pytest.raises(ValueError):
        skyrelay_server.state("small", event="s", max_keys=3, max_key_bytes=64)
    with pytest.raises(ValueError):
        skyrelay_server.state("small", event="t", key_name="changes")


def test_a_redis_broker_is_refused():
    server = skyrelay.Server(port=0, broker="redis://127.0.0.1:6379")
    with pytest.raises(ValueError, match="memory broker"):
        server.state(ROOM)


def _sio_raw(port: int, auth: dict | None = None) -> tuple[RawClient, dict]:
    """A Socket.IO socket in "/" over a raw WebSocket (to choose the offset it resumes from):
    the client and the CONNECT answer's data."""
    c = RawClient(port, "/socket.io/?EIO=4&transport=websocket")
    assert c.read_frame()[1].startswith(b"0{")
    c.send_text("40" + (json.dumps(auth) if auth is not None else ""))
    answer = c.read_frame()[1]
    assert answer.startswith(b"40{"), answer
    return c, json.loads(answer[2:])


def _sio_events(c: RawClient, copy: Copy, until: str = "done") -> str:
    """Applies status_update events until `until`; returns the last offset seen."""
    offset = ""
    for _ in range(10_000):
        frame = c.read_frame(timeout=5)
        assert frame is not None, "no event"
        if frame[1] == b"2":
            c.send_text("3")
            continue
        name, *args = json.loads(frame[1][2:])
        offset = args[-1]
        if name == EVENT:
            copy.apply(args[0])
        elif name == until:
            return offset
    raise AssertionError("no done event")


def test_socketio_recovery_replays_deltas_and_a_failed_one_gets_the_full_update(
        skyrelay_server_factory):
    def configure(s: skyrelay.Server) -> None:
        make_state(s)
        s.on("connect", lambda conn: conn.join(ROOM))

    server = skyrelay_server_factory(configure, recovery_window=30, history_size=8,
                                     outbox_max_frames=16)
    state = make_state(server)
    state.update("a", {"x": 1})
    c, info = _sio_raw(server.port)
    copy = Copy()
    server.emit("done", {}, to=ROOM)
    offset = _sio_events(c, copy)
    assert copy.fulls == 1 and copy.state == {"a": {"x": 1}}
    c.sock.shutdown(socket.SHUT_RDWR)  # cut without a goodbye: the socket is kept
    c.close()
    assert wait_until(lambda: metric(server, CLOSED_SOCKETIO) >= 1)
    # Recovered: the socket's own buffer replays the deltas it missed, no full update.
    state.update("a", {"x": 2})
    state.update("b", {"y": 1})
    server.emit("done", {}, to=ROOM)
    c, back = _sio_raw(server.port, {"pid": info["pid"], "offset": offset})
    assert back["sid"] == info["sid"]
    offset = _sio_events(c, copy)
    assert copy.fulls == 1 and copy.deltas == 2 and copy.state == state.get()
    c.sock.shutdown(socket.SHUT_RDWR)
    c.close()
    assert wait_until(lambda: metric(server, CLOSED_SOCKETIO) >= 2)
    # Failed (more missed than the socket keeps): a new socket, joined again by the connect
    # handler, gets the full update.
    state.remove("b")
    for i in range(30):
        state.update("a", {"x": 10 + i})
    c, fresh = _sio_raw(server.port, {"pid": info["pid"], "offset": offset})
    assert fresh["sid"] != info["sid"]
    server.emit("done", {}, to=ROOM)
    again = Copy()
    _sio_events(c, again)
    assert again.fulls == 1 and again.deltas == 0
    assert again.state == state.get() == {"a": {"x": 39}}
    c.close()


def test_updates_before_start_are_the_initial_state(skyrelay_server_factory):
    def setup(server):
        state = server.state("fleet", event="status_update")
        assert state.update("a", {"x": 1}) == 0
        state.update("a", {"y": 2})
        state.update("b", '{"z": 3}')
        assert state.remove("b") and not state.remove("c")
        assert state.get() == {"a": {"x": 1, "y": 2}}
        with pytest.raises(ValueError):
            state.update("c", "[1]")

    server = skyrelay_server_factory(setup)
    state = server.state("fleet", event="status_update")
    assert state.get() == {"a": {"x": 1, "y": 2}}
    assert state.update("a", {"x": 1}) == 0  # already so in C++
