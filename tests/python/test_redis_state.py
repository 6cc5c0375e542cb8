"""Cluster-wide state on Redis (issue 15 item 4), with a real redis-server from the fixture and
real skyrelay node processes (tests/python/redis_state_node.py):

- ``server.room_size`` read on any node sums the members on every node; a SIGKILLed node's
  members drop out once its report's TTL passes; /health counts the alive nodes and their
  connections.
- An idempotent publish retried on another node is published once and answered with the
  first node's receipt; the same key with another body is refused there too.
- The publish API's ``publish_rate`` budget is one budget across nodes (429 ``rate_limited``);
  with Redis unreachable the API answers 503 ``broker_unavailable`` (nothing published).
- The publish API never holds its I/O thread on Redis: while a stopped (SIGSTOP) Redis leaves
  a request with a shared budget or an idempotency key parked, a WebSocket ping and /health on
  the same I/O thread are answered; the request then gets 503 ``broker_unavailable``.
- ``RateLimiter(redis=...)`` shares its buckets between processes, and falls back to its own
  buckets while Redis does not answer.
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
from websockets.sync.client import connect as ws_connect

from skyrelay import RateLimiter
from skyrelay.testing import stop_process, wait_until
from test_redis_broker import start_node_process

# /metrics series this module reads (docs/deployment.md, Metrics).
MESSAGES_RECEIVED_PUBLISH = 'skyrelay_received_messages_total{transport="publish"}'

HERE = Path(__file__).parent
TOKEN = "node-t0ken"
WAIT = 15.0  # bound on every wait (not a speed assertion)


class Node:
    """A skyrelay process on the Redis broker (redis_state_node.py)."""

    def __init__(self, redis_url: str, **options) -> None:
        self.proc, _, self.port = start_node_process("redis_state_node.py", redis_url,
                                                     json.dumps(options))
        self.http = f"http://127.0.0.1:{self.port}"
        self.clients: list = []

    def publish(self, body: dict, key: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return httpx.post(f"{self.http}/api/publish", json=body, headers=headers, timeout=10)

    def health(self) -> dict:
        return httpx.get(f"{self.http}/health", timeout=5).json()

    def metric(self, name: str) -> float:
        for line in httpx.get(f"{self.http}/metrics", timeout=5).text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"{name} missing from /metrics")

    def client(self, *topics: str):
        """A JSON-protocol connection subscribed to ``topics`` (kept open until stop)."""
        ws = ws_connect(f"ws://127.0.0.1:{self.port}/ws", open_timeout=10).__enter__()
        assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
        for topic in topics:
            ws.send(json.dumps({"type": "subscribe", "topic": topic}))
            assert json.loads(ws.recv(timeout=10))["type"] == "subscribed"
        self.clients.append(ws)
        return ws

    def room_size(self, room: str) -> int:
        """server.room_size(room) on this node, through a request of a connection of its own."""
        with ws_connect(f"ws://127.0.0.1:{self.port}/ws", open_timeout=10) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
            ws.send(json.dumps({"type": "request", "id": "1", "event": "room_size",
                                "data": {"room": room}}))
            answer = json.loads(ws.recv(timeout=10))
        assert answer["type"] == "response" and answer["ok"], answer
        return answer["data"]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        for ws in self.clients:
            ws.close()
        stop_process(self.proc, grace=15)


@pytest.fixture
def nodes(redis_server):
    started: list[Node] = []

    def start(n: int, **options) -> list[Node]:
        for _ in range(n):
            started.append(Node(redis_server.url, **options))
        return started[-n:]

    try:
        yield start
    finally:
        for node in started:
            node.stop()


def events_of(ws, until_event: str) -> list[dict]:
    """The event frames ``ws`` receives up to and including the one named ``until_event``."""
    out = []
    deadline = time.monotonic() + WAIT
    while True:
        frame = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if frame["type"] != "event":
            continue
        out.append(frame)
        if frame["event"] == until_event:
            return out


def test_room_size_sums_every_node_and_drops_a_killed_one(nodes):
    a, b, c = nodes(3, cluster_state_ttl=1.0)
    for node, members in ((a, 2), (b, 1), (c, 3)):
        for _ in range(members):
            node.client("lobby")
    b.client("other")
    # Each node's report is at most ttl/5 old: every node reads all six soon.
    assert wait_until(lambda: a.room_size("lobby") == 6, timeout=WAIT)
    assert wait_until(lambda: c.room_size("lobby") == 6, timeout=WAIT)
    assert b.room_size("other") == 1 and b.room_size("nobody") == 0
    # 7 subscribers (the room_size probes come and go): /health speaks for the cluster.
    assert wait_until(lambda: a.health()["cluster"]["nodes"] == 3
                      and a.health()["cluster"]["connections"] == 7, timeout=WAIT)
    health = a.health()
    assert health["cluster"]["status"] == "ok" and len(health["cluster"]["node"]) >= 8
    assert wait_until(lambda: a.health()["connections"] == 2, timeout=WAIT)  # its own
    assert a.metric("skyrelay_cluster_nodes") == 3
    assert a.metric("skyrelay_cluster_connections") == 7
    assert c.metric("skyrelay_cluster_rooms_reported") == 1
    assert c.metric("skyrelay_cluster_rooms_unreported") == 0

    c.kill()  # its report is not withdrawn: it expires
    assert wait_until(lambda: a.room_size("lobby") == 3, timeout=WAIT)
    assert b.room_size("lobby") == 3
    assert wait_until(lambda: b.health()["cluster"]["nodes"] == 2, timeout=WAIT)


def test_rooms_over_the_bound_are_counted_not_reported(nodes):
    a, b = nodes(2, cluster_state_ttl=1.0, cluster_rooms_max=2)
    a.client("big", "small-1", "small-2")
    a.client("big", "small-1")
    a.client("big")
    # The largest two rooms are reported; the third is counted as left out.
    assert wait_until(lambda: a.metric("skyrelay_cluster_rooms_unreported") == 1, timeout=WAIT)
    assert a.metric("skyrelay_cluster_rooms_reported") == 2
    assert wait_until(lambda: b.room_size("big") == 3, timeout=WAIT)
    assert b.room_size("small-1") == 2
    assert b.room_size("small-2") == 0  # not reported: only a's own reads count it
    assert a.room_size("small-2") == 1


def test_an_idempotent_publish_retried_on_another_node_is_published_once(nodes):
    a, b = nodes(2)
    watcher = b.client("orders")
    body = {"event": "order", "data": {"n": 1}, "to": "orders"}
    first = a.publish(body, key="k-1")
    assert first.status_code == 200, first.text
    assert first.json()["duplicate"] is False
    retry = b.publish(body, key="k-1")
    assert retry.status_code == 200, retry.text
    assert retry.json() == {**first.json(), "duplicate": True}  # a's receipt, a's id
    other = b.publish({**body, "data": {"n": 2}}, key="k-1")
    assert other.status_code == 409 and other.json()["error"] == "idempotency_key_reused"
    assert b.publish({"event": "end", "to": "orders"}).status_code == 200
    got = events_of(watcher, "end")
    assert [(e["event"], e.get("data")) for e in got] == [("order", {"n": 1}), ("end", None)]


def test_the_publish_rate_is_one_budget_across_nodes(nodes, redis_server):
    a, b = nodes(2, publish_rate=[0.001, 3])
    assert a.publish({"event": "e", "to": "r"}).status_code == 200
    assert b.publish({"events": [{"event": "e", "to": "r"}] * 2}).status_code == 200
    refused = [a.publish({"event": "e", "to": "r"}), b.publish({"event": "e", "to": "r"})]
    for r in refused:
        assert r.status_code == 429, r.text
        assert r.json()["error"] == "rate_limited" and r.json()["retry_after"] > 0
        assert int(r.headers["Retry-After"]) >= 1
    assert a.metric("skyrelay_publish_rate_limited_total") == 1
    published = sum(n.metric("skyrelay_broker_redis_publishes_total") for n in (a, b))
    assert published == 3  # the refused ones published nothing

    redis_server.stop()  # the shared budget cannot be read: nothing is published
    down = a.publish({"event": "e", "to": "r"})
    assert down.status_code == 503 and down.json()["error"] == "broker_unavailable"


@pytest.mark.parametrize("options, key", [({"publish_rate": [1000, 1000]}, None), ({}, "k-stall")],
                         ids=["shared-budget", "idempotency-key"])
def test_a_publish_waiting_on_a_stopped_redis_stalls_no_other_client(nodes, redis_server,
                                                                     options, key):
    (node,) = nodes(1, io_threads=1, **options)  # one I/O thread: every client shares it
    assert node.publish({"event": "warm", "to": "r"}, key=None if key is None else "k-warm"
                        ).status_code == 200  # Redis is there, its scripts are loaded
    ws = node.client()
    answers: queue.Queue = queue.Queue()
    before = node.metric(MESSAGES_RECEIVED_PUBLISH)
    os.kill(redis_server.pid, signal.SIGSTOP)  # connected but silent: each call waits its timeout
    try:
        sender = threading.Thread(target=lambda: answers.put(
            node.publish({"event": "e", "to": "r"}, key=key)))
        sender.start()
        # The request is in the server (counted) before the others ask; with a blocked I/O
        # thread this read itself would wait for the publish's answer.
        assert wait_until(lambda: node.metric(MESSAGES_RECEIVED_PUBLISH) > before,
                          timeout=WAIT)
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=WAIT))["type"] == "pong"
        assert node.health()["status"] in ("ok", "degraded")
        # Answered while the publish still waits on Redis (its call gives up after 1 s).
        assert answers.empty(), "the publish answered before the other clients were served"
        sender.join(timeout=WAIT)
        stalled = answers.get(timeout=WAIT)
    finally:
        os.kill(redis_server.pid, signal.SIGCONT)
    assert stalled.status_code == 503 and stalled.json()["error"] == "broker_unavailable"
    # Redis back: the same request (key included) is published.
    assert wait_until(lambda: node.publish({"event": "e", "to": "r"}, key=key).status_code
                      == 200, timeout=WAIT)


def test_rate_limiter_shares_buckets_between_processes(redis_server):
    workers = [subprocess.Popen([sys.executable, str(HERE / "ratelimit_worker.py"),
                                 redis_server.url, "user:7", "5"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for _ in range(2)]
    try:
        for w in workers:
            assert w.stdout.readline().strip() == "ready"
        for w in workers:
            w.stdin.write("go\n")
            w.stdin.flush()
        results = [json.loads(w.stdout.readline()) for w in workers]
    finally:
        for w in workers:
            stop_process(w)
    # One bucket of 5 between the two processes (each alone would have allowed its 5).
    assert sum(r["allowed"] for r in results) == 5
    assert [r["fallbacks"] for r in results] == [0, 0]


def test_rate_limiter_on_redis_keeps_its_semantics_and_falls_back(redis_server):
    one = RateLimiter(rate=0.5, burst=2, redis=redis_server.url, name="api")
    two = RateLimiter(rate=0.5, burst=2, redis=redis_server.url, name="api")
    other = RateLimiter(rate=0.5, burst=2, redis=redis_server.url, name="search")
    assert one.shared and not RateLimiter(1, 1).shared
    assert one.acquire("k") and two.acquire("k", 0.5)
    denied = one.acquire("k", 1)
    assert not denied and 0 < denied.retry_after <= 2.0 and denied.remaining == pytest.approx(0.5, abs=0.05)
    assert other.acquire("k", 2)  # another name: other buckets
    assert two.reset("k") and one.acquire("k", 2)
    with pytest.raises(ValueError):
        one.acquire("k", 3)  # more than burst could never pass
    with pytest.raises(ValueError):
        RateLimiter(1, 1, name="x")  # a name is for shared limiters
    with pytest.raises(ValueError):
        RateLimiter(1, 1, redis="http://127.0.0.1:1")

    redis_server.stop()
    # Redis does not answer: this process's own buckets, counted.
    assert one.acquire("k2") and one.acquire("k2") and not one.acquire("k2")
    assert one.stats()["redis_fallbacks"] == 3
