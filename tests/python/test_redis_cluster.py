"""skyrelay nodes on a Redis Cluster (issue 15, item 7): ``broker="redis+cluster://..."`` with
the fixture's 3 masters on 127.0.0.1, real skyrelay processes (tests/python/redis_node.py) and
real JSON-protocol clients.

- Rooms whose hash slots are on different masters: every node's members (JSON protocol, and
  an SSE stream) get every event of each room once and in the room's order.
- A publication to two rooms on two masters reaches a member of both once, and each room's
  own members once.
- A master restarted empty: the nodes discover the cluster again, catch up, and say the
  restart with an explicit reset (seq back to 1); publishing works again, never silence.
- /health says the broker is a connected Redis.
- Cluster state on a cluster: room sizes and /health's "cluster" block count every node; an
  idempotent publish retried on another node gets the first answer, also after the key's
  slot moved to another master (MOVED followed); the publish_rate budget is one across nodes.
  The keys are on a master other than the first seed.
- The Socket.IO manager bridge, opt-in on a cluster: python-socketio's RedisManager pointed at
  one master (not the first seed, where the nodes subscribe) reaches both nodes' members once
  and in order; the lease lives on its slot's master; an enter_room then an emit reaches the
  new member.
"""

from __future__ import annotations

import json
import queue
import time

import httpx
import pytest
import redis
import socketio

import skyrelay

from skyrelay.testing import wait_until
from sse_client import Stream
from test_redis_broker import TOKEN, WAIT, JsonClient, Node, sse_collect, started  # noqa: F401
from test_redis_state import Node as StateNode
from test_redis_state import events_of


def owner_port(cluster, room: str) -> int:
    """The port of the master serving room `room` of namespace "/" (its tag's hash slot): the
    one that does not answer MOVED for the room's key."""
    key = "sr:{r1:/" + room + "}:m"
    for master in cluster.masters:
        try:
            with redis.Redis(host=master.host, port=master.port) as r:
                r.exists(key)
            return master.port
        except redis.exceptions.ResponseError as e:  # redis-py's MovedError: another's slot
            assert "Moved" in type(e).__name__ or str(e).startswith("MOVED"), e
    raise AssertionError(f"no master serves {room}")


def rooms_on_every_master(cluster) -> dict[int, str]:
    """One room name per master (by port)."""
    found: dict[int, str] = {}
    for i in range(200):
        room = f"room-{i}"
        found.setdefault(owner_port(cluster, room), room)
        if len(found) == len(cluster.masters):
            return found
    raise AssertionError("no room name found for every master")


def publish(node: Node, event: str, data, to) -> httpx.Response:
    return httpx.post(f"{node.http}/api/publish", json={"event": event, "data": data, "to": to},
                      timeout=10, headers={"Authorization": f"Bearer {TOKEN}"})


def follow_all(publisher: Node, clients: list[JsonClient], rooms: list[str],
               wanted: dict | None = None) -> None:
    """Publishes `probe` to every room until every client has one of each of its rooms
    (`wanted[client]`, else `rooms`): every node follows the rooms then. The probes are
    dropped from the clients' events."""
    wanted = wanted or {}
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for room in rooms:
            assert publish(publisher, "probe", 0, room).status_code == 200
        time.sleep(0.1)
        for c in clients:
            while not c.frames.empty():
                frame = c.frames.get()
                assert frame is not None, "the connection closed"
                if frame["type"] == "event":
                    c.events.append(frame)
        if all({e["topic"] for e in c.events if e["event"] == "probe"} >= set(wanted.get(c, rooms))
               for c in clients):
            for c in clients:
                c.events.clear()
            return
    raise AssertionError("the nodes did not follow the rooms in time")


def fenced(client: JsonClient, fences: int) -> list[dict]:
    """The client's events until `fences` `fence` events came (the fences left out)."""
    events = client.collect(lambda ev: sum(e["event"] == "fence" for e in ev) >= fences)
    return [e for e in events if e["event"] != "fence"]


@pytest.fixture
def cluster_nodes(redis_cluster, started):  # noqa: F811 - the fixture of test_redis_broker
    def start(n: int) -> list[Node]:
        for _ in range(n):
            started.append(Node(redis_cluster.url))
        return started[-n:]
    return start


def test_rooms_on_every_master_reach_every_node_once_in_order(redis_cluster, cluster_nodes):
    rooms = list(rooms_on_every_master(redis_cluster).values())
    nodes = cluster_nodes(3)
    for node in nodes:
        health = node.health()
        assert health["status"] == "ok", health
        assert health["broker"]["kind"] == "redis"
        # No Socket.IO manager bridge on a cluster by default (it would cross hash slots).
        assert "skyrelay_manager_received_messages_total" not in httpx.get(f"{node.http}/metrics").text
    clients = [JsonClient(n.port) for n in nodes]
    for c in clients:
        for room in rooms:
            c.subscribe(room)
    streams = [Stream(f"{n.http}/sse/{rooms[-1]}") for n in nodes]  # SSE on one room too
    follow_all(nodes[0], clients, rooms)
    per_room = 20
    for i in range(per_room):
        for k, room in enumerate(rooms):
            r = publish(nodes[(i + k) % len(nodes)], "tick", {"n": i}, room)
            assert r.status_code == 200, r.text
    for room in rooms:
        assert publish(nodes[0], "fence", 0, room).status_code == 200
    for c in clients:
        events = fenced(c, len(rooms))
        for room in rooms:
            got = [e for e in events if e["topic"] == room]
            assert [e["data"]["n"] for e in got] == list(range(per_room)), (room, got)
            seqs = [e["seq"] for e in got]
            assert seqs == list(range(seqs[0], seqs[0] + per_room))  # Redis's order, no hole
        assert len(events) == per_room * len(rooms)
        c.close()
    for stream in streams:
        got = sse_collect(stream, lambda g: any(e.event == "fence" for e in g))
        ticks = [json.loads(e.data)["n"] for e in got if e.event == "tick"]
        assert ticks == list(range(per_room)), ticks
        stream.close()


def test_one_publication_to_rooms_on_two_masters_reaches_each_member_once(redis_cluster,
                                                                         cluster_nodes):
    a, b = list(rooms_on_every_master(redis_cluster).values())[:2]
    nodes = cluster_nodes(2)
    both, only_a = JsonClient(nodes[1].port), JsonClient(nodes[1].port)
    only_b = JsonClient(nodes[0].port)
    both.subscribe(a)
    both.subscribe(b)
    only_a.subscribe(a)
    only_b.subscribe(b)
    follow_all(nodes[0], [both, only_a, only_b], [a, b], {only_a: [a], only_b: [b]})
    for i in range(10):
        r = publish(nodes[i % 2], "multi", {"n": i}, [a, b])
        assert r.status_code == 200, r.text
    for room in (a, b):
        assert publish(nodes[0], "fence", 0, room).status_code == 200
    for client in (both, only_a, only_b):
        events = fenced(client, 2 if client is both else 1)
        assert [e["data"]["n"] for e in events] == list(range(10)), events
        client.close()
    # The rooms' logs advanced on the node that delivered through the other slot's copy: a
    # resume from before the publications replays them (or says why it cannot).
    late = JsonClient(nodes[1].port)
    frame = late.subscribe(b)
    assert frame["seq"] >= 11  # a probe at least, the 10 publications and the fence
    late.close()


def test_a_restarted_master_ends_in_a_reset_and_delivery_goes_on(redis_cluster, cluster_nodes):
    by_port = rooms_on_every_master(redis_cluster)
    nodes = cluster_nodes(2)
    master = redis_cluster.masters[0]
    room = by_port[master.port]
    other = next(r for p, r in by_port.items() if p != master.port)
    client = JsonClient(nodes[1].port)
    client.subscribe(room)
    client.subscribe(other)
    follow_all(nodes[0], [client], [room, other])
    for i in range(3):
        assert publish(nodes[0], "tick", {"n": i}, room).status_code == 200
    master.restart()  # empty, with its nodes.conf: the same slots
    deadline = time.monotonic() + WAIT
    n = 3
    while True:  # refused (503) while the nodes find the master again: published nothing
        r = publish(nodes[0], "tick", {"n": n}, room)
        if r.status_code == 200 and all(x.health()["status"] == "ok" for x in nodes):
            break
        assert r.status_code in (200, 503), r.text
        if r.status_code == 200:
            n += 1
        assert time.monotonic() < deadline, "the cluster did not come back"
        time.sleep(0.05)
    assert publish(nodes[0], "fence", 0, room).status_code == 200
    assert publish(nodes[0], "fence", 0, other).status_code == 200
    frames = []
    deadline = time.monotonic() + WAIT
    while sum(f.get("event") == "fence" for f in frames) < 2:
        try:
            frame = client.frames.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(
                f"not every fence came: {frames} {[x.health() for x in nodes]}") from None
        assert frame is not None, "the connection closed"
        frames.append(frame)
    ticks = [f for f in frames if f.get("event") == "tick"]
    assert [f["data"]["n"] for f in ticks] == list(range(n + 1)), ticks
    # The restarted master lost the room's sequence: the client is told (a reset frame for the
    # room) before the first event of the new sequence, which starts at seq 1 again.
    resets = [i for i, f in enumerate(frames) if f["type"] == "reset" and f.get("topic") == room]
    assert resets, frames
    first_new = next(i for i, f in enumerate(frames) if f.get("event") == "tick" and f["seq"] == 1)
    assert resets[0] < first_new
    assert max(x.metric("skyrelay_broker_redis_reconnects_total") for x in nodes) >= 1
    client.close()


@pytest.mark.parametrize("url, words", [
    ("redis+cluster://127.0.0.1:1/2", "no database number"),
    ("redis+cluster://127.0.0.1:1?prefix=a{b}", "no { or }"),
    ("rediss+cluster://127.0.0.1:1", "scheme"),
])
def test_a_bad_cluster_url_is_refused_at_start(url, words):
    server = skyrelay.Server(port=0, broker=url)
    try:
        with pytest.raises(ValueError, match=words):
            server.start()
    finally:
        server.stop()


def test_the_manager_bridge_is_opt_in_on_a_cluster():
    from skyrelay.options import manager_channels
    assert manager_channels(None, "redis+cluster://127.0.0.1:1") == []
    assert manager_channels(["socketio"], "redis+cluster://127.0.0.1:1") == ["socketio"]
    assert manager_channels(None, "redis://127.0.0.1:1") == ["socketio", "flask-socketio"]


# Cluster-wide state on a cluster (issue 15 item 4 on redis+cluster://): the nodes'
# shared-state connection routes each call to the master of its key's slot.

def slot_owner(cluster, key: str):
    """The master (a RedisServer) serving `key`'s hash slot, as the cluster itself says."""
    with redis.Redis(host=cluster.masters[0].host, port=cluster.masters[0].port) as r:
        slot = r.execute_command("CLUSTER", "KEYSLOT", key)
        for first, last, master, *_ in r.execute_command("CLUSTER", "SLOTS"):
            if first <= slot <= last:
                return next(m for m in cluster.masters if m.port == master[1])
    raise AssertionError(f"no master serves {key}")


def url_without_first(cluster, owner) -> str:
    """The cluster's URL with `owner` as its last seed: the first seed is another master, so
    a node reaches `owner` only through the slot map."""
    order = [m for m in cluster.masters if m is not owner] + [owner]
    return "redis+cluster://" + ",".join(f"{m.host}:{m.port}" for m in order)


def move_slot(cluster, key: str, target) -> None:
    """Moves `key`'s (empty) slot to master `target`, by the documented resharding steps."""
    source = slot_owner(cluster, key)
    assert source is not target
    conns = {m.port: redis.Redis(host=m.host, port=m.port) for m in cluster.masters}
    try:
        slot = conns[source.port].execute_command("CLUSTER", "KEYSLOT", key)
        assert conns[source.port].execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
        ids = {p: c.execute_command("CLUSTER", "MYID").decode() for p, c in conns.items()}
        conns[target.port].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING",
                                           ids[source.port])
        conns[source.port].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING",
                                           ids[target.port])
        for port in [target.port, source.port] + [p for p in conns
                                                  if p not in (target.port, source.port)]:
            conns[port].execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target.port])
    finally:
        for c in conns.values():
            c.close()
    assert wait_until(lambda: slot_owner(cluster, key) is target, timeout=WAIT)


@pytest.fixture
def state_nodes():
    nodes: list[StateNode] = []

    def start(url: str, n: int, **options) -> list[StateNode]:
        for _ in range(n):
            nodes.append(StateNode(url, **options))
        return nodes[-n:]

    try:
        yield start
    finally:
        for node in nodes:
            node.stop()


def test_room_size_and_health_count_every_node_on_a_cluster(redis_cluster, state_nodes):
    owner = slot_owner(redis_cluster, "sr:{state}:nodes")
    url = url_without_first(redis_cluster, owner)
    a, b = state_nodes(url, 2, cluster_state_ttl=1.0)
    for node, members in ((a, 2), (b, 3)):
        for _ in range(members):
            node.client("lobby")
    assert wait_until(lambda: a.room_size("lobby") == 5, timeout=WAIT)
    assert wait_until(lambda: b.room_size("lobby") == 5, timeout=WAIT)
    assert a.room_size("nobody") == 0
    assert wait_until(lambda: a.health()["cluster"]["nodes"] == 2
                      and a.health()["cluster"]["connections"] == 5, timeout=WAIT)
    assert b.health()["cluster"]["status"] == "ok"
    # The reports are on the master of the {state} slot, which is not the first seed.
    with redis.Redis(host=owner.host, port=owner.port) as r:
        assert r.zcard("sr:{state}:nodes") == 2
    assert a.metric("skyrelay_cluster_nodes") == 2


def test_an_idempotent_retry_on_another_node_gets_the_first_answer_on_a_cluster(
        redis_cluster, state_nodes):
    first_seed = redis_cluster.masters[0]
    key = next(k for k in (f"k-{i}" for i in range(200))
               if slot_owner(redis_cluster, f"sr:idem:13:publish_token{k}") is not first_seed)
    a, b = state_nodes(redis_cluster.url, 2)
    watcher = b.client("orders")
    body = {"event": "order", "data": {"n": 1}, "to": "orders"}
    first = a.publish(body, key=key)
    assert first.status_code == 200, first.text
    assert first.json()["duplicate"] is False
    retry = b.publish(body, key=key)
    assert retry.status_code == 200, retry.text
    assert retry.json() == {**first.json(), "duplicate": True}
    other = b.publish({**body, "data": {"n": 2}}, key=key)
    assert other.status_code == 409 and other.json()["error"] == "idempotency_key_reused"
    assert b.publish({"event": "end", "to": "orders"}).status_code == 200
    got = events_of(watcher, "end")
    assert [(e["event"], e.get("data")) for e in got] == [("order", {"n": 1}), ("end", None)]
    assert a.metric("skyrelay_cluster_redirects_total") == 0  # the map was right


def test_a_moved_slot_is_followed_by_the_shared_state(redis_cluster, state_nodes):
    a, b = state_nodes(redis_cluster.url, 2)
    assert a.publish({"event": "warm", "to": "r"}).status_code == 200  # maps read
    key = "moved-1"
    full = f"sr:idem:13:publish_token{key}"
    source = slot_owner(redis_cluster, full)
    target = next(m for m in redis_cluster.masters if m is not source)
    move_slot(redis_cluster, full, target)  # the nodes' maps are stale now
    body = {"event": "order", "data": {"n": 1}, "to": "orders"}
    first = a.publish(body, key=key)
    assert first.status_code == 200, first.text
    retry = b.publish(body, key=key)
    assert retry.status_code == 200, retry.text
    assert retry.json() == {**first.json(), "duplicate": True}
    for node in (a, b):
        assert node.metric("skyrelay_cluster_redirects_total") >= 1
    with redis.Redis(host=target.host, port=target.port) as r:
        assert r.exists(full) == 1  # on the slot's new master


def test_the_publish_rate_is_one_budget_across_nodes_on_a_cluster(redis_cluster, state_nodes):
    owner = slot_owner(redis_cluster, "sr:publish_rate:publish_token")
    a, b = state_nodes(url_without_first(redis_cluster, owner), 2, publish_rate=[0.001, 3])
    assert a.publish({"event": "e", "to": "r"}).status_code == 200
    assert b.publish({"events": [{"event": "e", "to": "r"}] * 2}).status_code == 200
    refused = [a.publish({"event": "e", "to": "r"}), b.publish({"event": "e", "to": "r"})]
    for r in refused:
        assert r.status_code == 429, r.text
        assert r.json()["error"] == "rate_limited" and r.json()["retry_after"] > 0
    assert a.metric("skyrelay_publish_rate_limited_total") == 1
    published = sum(n.metric("skyrelay_broker_redis_publishes_total") for n in (a, b))
    assert published == 3
    with redis.Redis(host=owner.host, port=owner.port) as r:
        assert r.exists("sr:publish_rate:publish_token") == 1


def ws_events_until(ws, last: str, skip: str = "probe") -> list[dict]:
    """The event frames of `ws` (`skip` left out) up to and including the first named `last`."""
    return [e for e in events_of(ws, last) if e["event"] != skip]


def test_a_redis_manager_on_one_master_reaches_every_node_on_a_cluster(redis_cluster,
                                                                       state_nodes):
    # The lease key's master is not the first seed: the nodes reach it through the slot map;
    # the manager publishes on that master, the nodes subscribe on the first seed (the
    # cluster bus forwards classic PUBLISH to every node).
    owner = slot_owner(redis_cluster, "sr:manager:leader:socketio")
    a, b = state_nodes(url_without_first(redis_cluster, owner), 2,
                       redis_manager_channels=["socketio"])
    assert wait_until(lambda: sum(n.metric("skyrelay_manager_leased_channels") for n in (a, b)) == 1,
                      timeout=WAIT)
    with redis.Redis(host=owner.host, port=owner.port) as r:
        assert r.get("sr:manager:leader:socketio")  # the lease, on its slot's master
    wa, wb = a.client("r1"), b.client("r1")
    sio = socketio.Client(reconnection=False)
    got: queue.Queue = queue.Queue()
    sio.on("*", lambda event, *args: got.put((event, list(args))))
    sio.connect(f"http://127.0.0.1:{a.port}", transports=["websocket"], wait_timeout=10)
    mgr = socketio.RedisManager(f"redis://{owner.host}:{owner.port}", write_only=True)
    try:
        for ws in (wa, wb):  # both nodes follow r1: a probe reached each member
            deadline = time.monotonic() + WAIT
            while True:
                assert time.monotonic() < deadline, "no probe came"
                mgr.emit("probe", 0, room="r1")
                try:
                    frame = json.loads(ws.recv(timeout=0.2))
                except TimeoutError:
                    continue
                if frame.get("event") == "probe":
                    break
        for i in range(20):
            mgr.emit("tick", {"n": i}, room="r1")
        mgr.emit("end", 0, room="r1")
        for ws in (wa, wb):
            events = ws_events_until(ws, "end")
            assert [e["data"] for e in events] == [{"n": i} for i in range(20)] + [0]
        # enter_room for a Socket.IO sid of node a, then an emit: the leader looks the sid up
        # (its registry key on its own slot's master) and waits for a to apply the join.
        mgr.enter_room(sio.get_sid(), "/", "r2")
        mgr.emit("after", 1, room="r2")
        deadline = time.monotonic() + WAIT
        while True:
            event = got.get(timeout=max(0.01, deadline - time.monotonic()))
            if event[0] != "probe":
                break
        assert event == ("after", [1])
        received = [n.metric("skyrelay_manager_received_messages_total") for n in (a, b)]
        assert received[0] == received[1] > 0
    finally:
        sio.disconnect()
