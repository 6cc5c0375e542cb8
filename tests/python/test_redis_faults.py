"""Faults of the Redis broker (issue 15 items 2 and 6), with a real redis-server and real
nodes (tests/python/redis_node.py), clients of every transport:

- Redis restarted empty: the hub itself tells every member of a channel whose sequence
  restarted (a JSON-protocol `reset` frame, an SSE `reset` event whose id resumes on any node,
  a Socket.IO socket with recovery ended so that its client reconnects unrecovered); an open
  SSE stream keeps every broadcast.
- Socket.IO joins and `/ws/<topic>` topics are warmed: they start where Redis stands.
- A node partitioned from Redis (a TCP proxy cut, then healed) is degraded meanwhile and
  catches up; a deaf node (its subscriber connection stalled) notices by itself; a slow client
  ends with every event in order or an explicit disconnect, and the others are unaffected.
- 100,000 events across 3 nodes: every client ends with every event exactly once and in
  order, or with an explicit reset.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time

import httpx
import pytest
import socketio
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from skyrelay.testing import stop_process, wait_until
from sse_client import Stream
from tcpproxy import Proxy
from test_redis_broker import HERE, WAIT, JsonClient, nodes, warm_up  # noqa: F401

RECOVERY = ("--recovery", "30")


def all_frames(c: JsonClient, last: int, also=None) -> list[dict]:
    """Every frame of `c` (events and resets) until the tick `last` (and, with `also`, the
    event named also[0] with data n == also[1]) arrived (bounded)."""
    got: list[dict] = list(c.events)
    c.events.clear()
    want = {("tick", last)} | ({tuple(also)} if also else set())
    for f in got:
        if f["type"] == "event" and isinstance(f.get("data"), dict):
            want.discard((f["event"], f["data"].get("n")))
    deadline = time.monotonic() + WAIT
    while want:
        frame = c.frames.get(timeout=max(0.01, deadline - time.monotonic()))
        assert frame is not None, "the connection closed"
        got.append(frame)
        if frame["type"] == "event" and isinstance(frame.get("data"), dict):
            want.discard((frame["event"], frame["data"].get("n")))
    return got


def ticks_of(frames: list[dict]) -> list[int]:
    return [f["data"]["n"] for f in frames if f["type"] == "event" and f["event"] == "tick"]


def wait_health(node, status: str) -> None:
    deadline = time.monotonic() + WAIT
    while node.health()["status"] != status and time.monotonic() < deadline:
        time.sleep(0.05)
    assert node.health()["status"] == status


def publish_retrying(node, event: str, data, to: str | None = None) -> dict:
    """Publishes through the HTTP API, again while the node answers 503 (nothing published)."""
    deadline = time.monotonic() + WAIT
    while True:
        r = node.publish(event, data, to=to)
        if r.status_code == 200:
            return r.json()["published"]
        assert r.status_code == 503 and r.json()["error"] == "broker_unavailable", r.text
        assert time.monotonic() < deadline, "the broker did not come back"
        time.sleep(0.05)


class SioWatcher:
    """A python-socketio client that reconnects by itself, joined to `room` on every connect
    (redis_node.py's connect handler), recording its ticks and its connects/disconnects."""

    def __init__(self, port: int, room: str) -> None:
        self.client = socketio.Client(reconnection=True, reconnection_delay=0.1,
                                      reconnection_delay_max=0.5)
        self.log: queue.Queue = queue.Queue()  # ("tick", n), ("probe", x), ("connect"|...)
        self.client.on("tick", lambda d, *_: self.log.put(("tick", d["n"])))
        self.client.on("probe", lambda d, *_: self.log.put(("probe", d)))
        self.client.on("connect", lambda: self.log.put(("connect", None)))
        self.client.on("disconnect", lambda *_: self.log.put(("disconnect", None)))
        self.client.connect(f"http://127.0.0.1:{port}", auth={"room": room},
                            transports=["websocket"], wait_timeout=10)
        self.probes = self  # warm_up looks at .probes.empty()

    def empty(self) -> bool:
        return not any(kind == "probe" for kind, _ in list(self.log.queue))

    def until(self, pred) -> list[tuple[str, object]]:
        got: list[tuple[str, object]] = []
        deadline = time.monotonic() + WAIT
        while not pred(got):
            got.append(self.log.get(timeout=max(0.01, deadline - time.monotonic())))
        return got


def test_redis_restarted_empty_every_member_gets_an_explicit_reset(nodes, redis_server):
    a, b = nodes(2, *RECOVERY)
    ja, jb = JsonClient(a.port), JsonClient(b.port)
    old_epoch = ja.subscribe("z")["epoch"]
    jb.subscribe("z")
    stream = Stream(f"{b.http}/sse/z")
    sio = SioWatcher(a.port, "z")
    try:
        warm_up(a, "z", [ja, jb], [stream], [sio])
        for i in range(10):
            publish_retrying((a, b)[i % 2], "tick", {"n": i}, to="z")
            publish_retrying((a, b)[i % 2], "bc", {"n": i})  # to everyone: the "/" broadcasts
        early = [all_frames(c, 9) for c in (ja, jb)]
        redis_server.restart()  # an empty Redis: every sequence starts again
        for n in (a, b):
            wait_health(n, "ok")
        new_epoch = None
        for i in range(10, 20):
            p = publish_retrying((a, b)[i % 2], "tick", {"n": i}, to="z")
            new_epoch = p["epoch"]
            publish_retrying((a, b)[i % 2], "bc", {"n": i})
        assert new_epoch != old_epoch

        for c, first in zip((ja, jb), early):
            frames = first + all_frames(c, 19, also=("bc", 19))
            # The topic's reset comes between the old sequence's last event and the new one's
            # first, with where the topic stands now.
            resets = [i for i, f in enumerate(frames) if f["type"] == "reset" and "topic" in f]
            assert len(resets) == 1, frames
            reset = frames[resets[0]]
            assert reset == {"type": "reset", "topic": "z", "reason": "epoch_changed", "seq": 0,
                             "epoch": new_epoch}
            before, after = frames[:resets[0]], frames[resets[0] + 1:]
            assert max(ticks_of(before)) < min(ticks_of(after))
            assert [f["seq"] for f in after if f.get("event") == "tick"][0] == 1
            assert sorted(ticks_of(frames)) == ticks_of(frames)
            assert set(range(10, 20)) <= set(ticks_of(after))
            # The broadcasts' sequence restarted too: said once, without a topic.
            assert {"type": "reset", "reason": "epoch_changed"} in frames
            bcs = [f["data"]["n"] for f in frames if f.get("event") == "bc"]
            assert bcs == sorted(set(bcs)) and set(range(10, 20)) <= set(bcs)

        # SSE: every tick and every broadcast, once and in order, with a reset for each
        # restarted channel; the id after it resumes on the other node.
        got = []
        deadline = time.monotonic() + WAIT
        while not (any(e.event == "tick" and json.loads(e.data)["n"] == 19 for e in got) and
                   any(e.event == "bc" and json.loads(e.data)["n"] == 19 for e in got)):
            got.append(stream.next(max(0.01, deadline - time.monotonic())))
        ticks = [json.loads(e.data)["n"] for e in got if e.event == "tick"]
        bcs = [json.loads(e.data)["n"] for e in got if e.event == "bc"]
        assert [n for n in ticks if n >= 0] == list(range(20))
        assert [n for n in bcs if n >= 0] == list(range(20))  # the known gap is closed
        reasons = [json.loads(e.data) for e in got if e.event == "reset"]
        assert {"reason": "epoch_changed", "topic": "z"} in reasons
        assert {"reason": "epoch_changed"} in reasons
        assert all(e.id for e in got if e.event == "reset")
        last_id = [e for e in got if e.event in ("tick", "bc")][-1].id
        back = Stream(f"{a.http}/sse/z", headers={"Last-Event-ID": last_id})
        try:
            assert back.next_event("welcome").id == ""  # resumed: no reset
            publish_retrying(b, "tick", {"n": 20}, to="z")
            nxt = back.next()
            assert (nxt.event, json.loads(nxt.data)["n"]) == ("tick", 20)
        finally:
            back.close()

        # Socket.IO with recovery: no packet says "reset"; the socket's transport ends and it
        # cannot be resumed past the hole, so the client connects again, unrecovered.
        def back_after_drop(g):
            return ("disconnect", None) in g and ("connect", None) in g[
                g.index(("disconnect", None)):]

        log = sio.until(back_after_drop)
        ticks = [n for kind, n in log if kind == "tick"]
        assert ticks == sorted(set(ticks))  # in order, nothing twice, up to the drop
        # python-socketio calls the connect handler before its reconnect sets `connected`.
        assert wait_until(lambda: sio.client.connected, timeout=WAIT)
    finally:
        for c in (ja, jb):
            c.close()
        stream.close()
        sio.client.disconnect()


def test_socketio_joins_and_ws_topics_start_where_redis_stands(nodes):
    a, b = nodes(2, *RECOVERY)
    receipts = [publish_retrying(a, "tick", {"n": i}, to="w") for i in range(3)]
    # b never followed "w": the /ws/<topic> handshake is warmed before its subscribe.
    ws = ws_connect(f"ws://127.0.0.1:{b.port}/ws/w", open_timeout=10).__enter__()
    try:
        assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
        reply = json.loads(ws.recv(timeout=10))
        assert reply == {"type": "subscribed", "topic": "w", "seq": 3,
                         "epoch": receipts[-1]["epoch"]}
        # A Socket.IO join on b (by the connect handler) of a room b never followed: warmed,
        # so no reset follows (a socket with recovery would be ended by one).
        publish_retrying(a, "tick", {"n": 0}, to="w2")
        sio = SioWatcher(b.port, "w2")
        try:
            publish_retrying(a, "tick", {"n": 3}, to="w")
            publish_retrying(a, "tick", {"n": 1}, to="w2")
            got = json.loads(ws.recv(timeout=10))
            assert (got["type"], got["data"], got["seq"]) == ("event", {"n": 3}, 4)
            log = sio.until(lambda g: ("tick", 1) in g)
            assert ("disconnect", None) not in log and log.count(("tick", 1)) == 1
            assert ("tick", 0) not in log  # published before the join
            assert sio.client.connected
        finally:
            sio.client.disconnect()
    finally:
        ws.close()


def test_a_node_partitioned_from_redis_is_degraded_then_catches_up(nodes, redis_server):
    proxy = Proxy(redis_server.port)
    try:
        (a,) = nodes(1)
        (b,) = nodes(1, url=f"redis://127.0.0.1:{proxy.port}/0")
        jb = JsonClient(b.port)
        jb.subscribe("p")
        stream = Stream(f"{b.http}/sse/p")
        try:
            warm_up(a, "p", [jb], [stream], [])
            for i in range(10):
                publish_retrying(a, "tick", {"n": i}, to="p")
            first = all_frames(jb, 9)
            proxy.cut(refuse_for=3.0)  # the partition: connections dropped, new ones refused
            wait_health(b, "degraded")
            assert "redis" in b.health()["broker"]["reason"].lower()
            assert b.publish("tick", {"n": -1}, to="p").status_code == 503
            for i in range(10, 40):  # published on a while b cannot hear
                publish_retrying(a, "tick", {"n": i}, to="p")
            wait_health(b, "ok")  # healed: it reconnects by itself
            frames = first + all_frames(jb, 39)
            assert [n for n in ticks_of(frames) if n >= 0] == list(range(40))
            assert not any(f["type"] == "reset" for f in frames)  # caught up, not reset
            got = []
            deadline = time.monotonic() + WAIT
            while not any(e.event == "tick" and json.loads(e.data)["n"] == 39 for e in got):
                got.append(stream.next(max(0.01, deadline - time.monotonic())))
            assert [json.loads(e.data)["n"] for e in got if e.event == "tick"
                    and json.loads(e.data)["n"] >= 0] == list(range(40))
            assert b.metric("skyrelay_broker_redis_gaps_caught_up_total") >= 1
            assert b.metric("skyrelay_broker_redis_reconnects_total") >= 1
        finally:
            jb.close()
            stream.close()
    finally:
        proxy.close()


def test_a_deaf_node_notices_by_itself_and_catches_up(nodes, redis_server):
    proxy = Proxy(redis_server.port)
    try:
        (a,) = nodes(1)
        (b,) = nodes(1, url=f"redis://127.0.0.1:{proxy.port}/0")
        jb = JsonClient(b.port)
        jb.subscribe("d")
        try:
            warm_up(a, "d", [jb], [], [])
            before = b.metric("skyrelay_broker_redis_reconnects_total")
            proxy.stall_subscribers()  # commands flow; the subscriber connection hears nothing
            for i in range(20):
                publish_retrying(a, "tick", {"n": i}, to="d")
            # It notices by itself (its own heartbeat stops coming back): degraded, saying so.
            reasons = []
            deadline = time.monotonic() + WAIT
            while not any("deaf" in r for r in reasons) and time.monotonic() < deadline:
                reasons.append(b.health()["broker"].get("reason", ""))
                time.sleep(0.05)
            assert any("deaf" in r for r in reasons), reasons[-5:]
            proxy.stall_subscribers(False)
            wait_health(b, "ok")
            assert b.metric("skyrelay_broker_redis_reconnects_total") > before
            frames = all_frames(jb, 19)
            assert [n for n in ticks_of(frames) if n >= 0] == list(range(20))
        finally:
            jb.close()
    finally:
        proxy.close()


def burst(client: JsonClient, topic: str, first: int, count: int, rate: float = 0) -> None:
    client.ws.send(json.dumps({"type": "event", "event": "burst", "data": {
        "topic": topic, "first": first, "count": count, "rate": rate}}))


def wait_bursts(node_list, firsts: list[int], timeout: float) -> None:
    """Waits for each node's `burst done <first>` line (bounded)."""
    deadline = time.monotonic() + timeout
    for node, first in zip(node_list, firsts):
        while True:
            line = node.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            assert not line.startswith("burst failed"), line
            if line.strip() == f"burst done {first}":
                break


def test_a_slow_client_ends_in_order_or_explicitly_and_the_others_are_unaffected(nodes):
    a, b = nodes(2)
    fast = [JsonClient(n.port) for n in (a, b)]
    for c in fast:
        c.subscribe("s")
    slow = ws_connect(f"ws://127.0.0.1:{b.port}/ws/s", open_timeout=10,
                      max_queue=1, ping_interval=None).__enter__()
    try:
        warm_up(a, "s", fast, [], [])
        total = 20_000
        burst(fast[0], "s", 0, total)  # node a emits them from inside its process
        wait_bursts([a], [0], 120)
        for c in fast:  # the others: every event, once, in order
            frames = all_frames(c, total - 1)
            assert [n for n in ticks_of(frames) if n >= 0] == list(range(total))
        # The client that did not read: a prefix in order, then either the rest or an
        # explicit end: the outbox overflowed (close code 4001, slow consumer), or a write
        # stayed pending past write_timeout (the connection cut, no close frame).
        ns = []
        code = None
        try:
            while len(ns) < total + 2:
                frame = json.loads(slow.recv(timeout=WAIT))
                if frame["type"] == "event" and frame["event"] == "tick":
                    ns.append(frame["data"]["n"])
                    if ns[-1] == total - 1:
                        break
        except ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else None
        assert ns == list(range(len(ns))), "a prefix, in order"
        assert len(ns) == total or code in (4001, None), (len(ns), code)
    finally:
        for c in fast:
            c.close()
        slow.close()


def contiguous_segments(got: list[int], order: list[int], ends_explicitly: bool,
                        resets: list[int]) -> None:
    """`got`, cut at `resets` (indexes into got where an explicit reset came), is made of
    contiguous runs of `order` (nothing left out, repeated or reordered inside a run); the
    last run reaches the end of `order` unless the client's connection ended explicitly."""
    where = {n: i for i, n in enumerate(order)}
    cuts = [0, *resets, len(got)]
    for start, end in zip(cuts, cuts[1:]):
        run = got[start:end]
        if not run:
            continue
        first = where[run[0]]
        assert run == order[first:first + len(run)], "a silent gap, repeat or reorder"
    if not ends_explicitly:
        assert got and got[-1] == order[-1], "ended silently before the last event"


# The 100,000-event test publishes in ROUNDS rounds, each node emitting its part of a round at
# PACE events a second (about 17 s for the 100,000 on an idle machine), and starts a round only
# once every client has the `mark` event published after the one before (or has ended): the
# publishers wait for the slowest reader. Before, they emitted all 100,000 at PACE regardless,
# and on a busy 2-core machine (CI's, or this one with burners above the test's priority)
# deliveries fell seconds behind: the Python clients (six in one process, behind one GIL), or
# the nodes' own writers when the nodes were the ones starved. The nodes then ended the
# clients as slow consumers (outbox overflow, close 4001), which they must do and the test
# accepts, but often all three JSON-protocol clients, leaving no whole JSON stream to check
# Redis's order against. Paced by the marks, a client is at most about a round (~10,000
# frames, ~1.2 MB) behind, and ROUND_OUTBOX gives this test's nodes the room for that (the
# default, 1,024 frames, is a sixth of a second at this rate): a client that keeps reading,
# however slowly, is not ended. The assertions are unchanged: every client has every event
# once and in Redis's order, or an explicit reset or end; and each transport has a client
# with the whole stream. The slow-consumer end itself is
# test_a_slow_client_ends_in_order_or_explicitly_and_the_others_are_unaffected's.
PACE = 2000
ROUNDS = 10
ROUND_OUTBOX = ("--outbox", "32768", str(16 << 20))  # frames, bytes: three rounds and more
# Bounds, not speed assertions: on the whole stream (sio_counter.mjs has the same), and after
# the last mark (the ticks still to come then were in the nodes' publish queues), so that a
# lost event fails with this test's message, before pytest-timeout.
STREAM_DEADLINE = 150.0
AFTER_LAST_MARK = WAIT


@pytest.mark.timeout(STREAM_DEADLINE + 60)
def test_100k_events_across_3_nodes_every_client_exactly_once_in_order_or_reset(nodes):
    cluster = nodes(3, *ROUND_OUTBOX)
    total = 100_000
    share = -(-total // 3)
    jsons = [JsonClient(n.port) for n in cluster]
    for c in jsons:
        c.subscribe("c")
    streams = [Stream(f"{n.http}/sse/c") for n in cluster]
    # The Socket.IO clients are socket.io-client's, in node (python-socketio's client falls
    # behind here and is ended as a slow consumer).
    sio = subprocess.Popen(["node", str(HERE / "sio_counter.mjs"), "c", str(total),
                            *(str(n.port) for n in cluster)],
                           stdout=subprocess.PIPE, text=True, cwd=HERE)
    assert sio.stdout.readline().strip() == "ready"
    warm_up(cluster[0], "c", jsons, streams, [])
    # What each client got: ticks, and where an explicit reset or end came; and the last
    # `mark` round each has seen.
    results = {}
    marks = {(kind, i): -1 for kind in ("json", "sse", "sio") for i in range(3)}
    deadline = time.monotonic() + STREAM_DEADLINE

    def read_json(i: int, c: JsonClient) -> None:
        got, resets, ended, seqs = [], [], False, []  # seqs: of the ticks and the marks
        until = deadline
        while len(got) < total and time.monotonic() < until:
            try:
                f = c.frames.get(timeout=max(0.01, until - time.monotonic()))
            except queue.Empty:
                break
            if f is None:
                ended = True
                break
            if f["type"] == "reset":
                resets.append(len(got))
            elif f["type"] == "event" and f["event"] == "tick":
                got.append(f["data"]["n"])
                seqs.append(f["seq"])
            elif f["type"] == "event" and f["event"] == "mark":
                marks[("json", i)] = f["data"]["round"]
                seqs.append(f["seq"])
                if f["data"]["last"]:
                    until = min(until, time.monotonic() + AFTER_LAST_MARK)
        results[("json", i)] = (got, resets, ended, seqs)

    def read_sse(i: int, s: Stream) -> None:
        got, resets, ended = [], [], False
        until = deadline
        while len(got) < total and time.monotonic() < until:
            try:
                e = s.events.get(timeout=max(0.01, until - time.monotonic()))
            except queue.Empty:
                break
            if e is None:
                ended = True
                break
            if e.event == "reset":
                resets.append(len(got))
            elif e.event == "tick":
                got.append(json.loads(e.data)["n"])
            elif e.event == "mark":
                mark = json.loads(e.data)
                marks[("sse", i)] = mark["round"]
                if mark["last"]:
                    until = min(until, time.monotonic() + AFTER_LAST_MARK)
        results[("sse", i)] = (got, resets, ended, None)

    def read_sio() -> None:
        index = {n.port: i for i, n in enumerate(cluster)}
        for line in sio.stdout:
            r = json.loads(line)
            if "mark" in r:
                marks[("sio", index[r["port"]])] = r["mark"]
            else:
                results[("sio", index[r["port"]])] = (r["ns"], [], r["ended"], None)

    def diagnosis() -> str:
        """Each client's (ticks, first resets, ended) or last mark, and each node's nonzero
        disconnect, drop, limit and broker counters: what a failure needs to tell a slow
        client from a lost event."""
        got = {f"{k[0]}{k[1]}": (len(results[k][0]), results[k][1][:3], results[k][2])
               if k in results else f"mark {m}" for k, m in sorted(marks.items())}
        counters = [f"node{i} {line}" for i, n in enumerate(cluster)
                    for line in httpx.get(f"{n.http}/metrics", timeout=5).text.split("\n")
                    if any(w in line for w in ("disconnect", "drops", "limit_hits", "resets",
                                               "gaps", "reconnects"))
                    and not line.endswith(" 0")
                    and not line.startswith("#")]
        return f"{got} {counters}"

    def caught_up(r: int) -> None:
        """Waits (bounded) until every client has seen mark `r` or has finished."""
        while any(m < r and key not in results for key, m in marks.items()):
            assert time.monotonic() < deadline, f"not caught up with round {r}: {diagnosis()}"
            time.sleep(0.01)

    readers = [threading.Thread(target=read_json, args=(i, c)) for i, c in enumerate(jsons)]
    readers += [threading.Thread(target=read_sse, args=(i, s)) for i, s in enumerate(streams)]
    readers.append(threading.Thread(target=read_sio))
    try:
        for t in readers:
            t.start()
        firsts = [k * share for k in range(3)]
        ends = [min(first + share, total) for first in firsts]
        step = -(-share // ROUNDS)
        for r in range(ROUNDS):
            starts = [first + r * step for first in firsts]
            for k in range(3):  # each node emits its part from inside itself, all at once
                burst(jsons[k], "c", starts[k], min(step, ends[k] - starts[k]), rate=PACE)
            wait_bursts(cluster, starts, deadline - time.monotonic())
            publish_retrying(cluster[r % 3], "mark", {"round": r, "last": r == ROUNDS - 1},
                             to="c")
            caught_up(r)
        for t in readers:
            t.join(timeout=max(0.0, deadline - time.monotonic()) + 10)
        assert len(results) == 9, diagnosis()
        # Redis's order: a JSON client that got everything, its seq without a hole.
        complete = [r for key, r in results.items() if key[0] == "json" and not r[1]
                    and len(r[0]) == total]
        assert complete, diagnosis()
        order, seqs = complete[0][0], complete[0][3]
        assert sorted(order) == list(range(total))
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        for k in range(3):  # each publisher's events in the order it emitted them
            mine = [n for n in order if firsts[k] <= n < ends[k]]
            assert mine == sorted(mine)
        for key, (got, resets, ended, _) in results.items():
            contiguous_segments(got, order, ended, resets)
        for kind in ("json", "sse", "sio"):  # the promise held in full for each transport
            assert any(key[0] == kind and r[0] == order for key, r in results.items()), (
                kind, diagnosis())
    finally:
        for c in jsons:
            c.close()
        for s in streams:
            s.close()
        stop_process(sio)
