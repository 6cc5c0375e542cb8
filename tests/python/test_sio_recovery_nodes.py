"""Socket.IO connection state recovery across nodes on the Redis broker (issue 15 item 2), with
the official client (socket.io-client, tests/js/sio_recovery_client.mjs) and two skyrelay
processes (tests/python/redis_node.py) on a real redis-server.

What they pin down (docs/architecture.md, "Socket.IO recovery across nodes"): a client whose
node was SIGKILLed and who comes back on another node gets exactly what it missed, in order,
with ``socket.recovered`` true; when that cannot be proven (the window passed, the record was
taken, a pid it was never given) it gets ``recovered`` false, the explicit reset: never a
silent hole and never anyone else's events.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from test_redis_broker import WAIT, Node, started  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "tests/js/sio_recovery_client.mjs"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (ROOT / "node_modules/socket.io-client").is_dir(),
    reason="needs node and socket.io-client (make node_modules/.stamp)")


class SioClient:
    """A socket.io-client socket in a node process: what it prints, line by line."""

    def __init__(self, port: int, room: str, pid: str | None = None,
                 offset: str | None = None) -> None:
        args = ["node", str(CLIENT), f"http://127.0.0.1:{port}", room]
        if pid is not None:
            args += [pid, offset or "1"]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(x) for x in self.proc.stdout],
                         daemon=True).start()
        self.seen: list[dict] = []

    def next(self, key: str) -> dict:
        """The next happening of kind `key` ("connect", "event", ...), at most WAIT away;
        every happening read on the way is kept in `seen`."""
        deadline = time.monotonic() + WAIT
        while True:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                raise AssertionError(f"client said: {line!r}") from None
            self.seen.append(item)
            if key in item:
                return item[key]

    def ticks(self) -> list[int]:
        """The `n` of every "tick" event seen so far."""
        return [x["event"]["args"][0]["n"] for x in self.seen
                if "event" in x and x["event"]["name"] == "tick"]

    def command(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.command("quit")
                self.proc.wait(timeout=5)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture
def clients():
    made: list[SioClient] = []
    try:
        yield made
    finally:
        for c in made:
            c.stop()


def publish(node: Node, n: int, room: str) -> None:
    r = node.publish("tick", {"n": n}, to=room)
    assert r.status_code == 200, r.text


def event_args(client: SioClient) -> list:
    """The arguments of the next "tick" event, its offset (the last one) cut to its local
    count: with cross-node recovery an offset is "<n>.<version>.<direct>.<pos>..."."""
    while True:
        e = client.next("event")
        if e["name"] == "tick":
            args = list(e["args"])
            assert isinstance(args[-1], str) and args[-1].count(".") >= 3, args
            args[-1] = args[-1].split(".")[0]
            return args


def test_a_killed_nodes_socket_resumes_on_another_node(started, clients, redis_server):
    a = Node(redis_server.url, "--recovery", "30")
    started.append(a)
    b = Node(redis_server.url, "--recovery", "30")
    started.append(b)
    client = SioClient(a.port, "r")
    clients.append(client)
    first = client.next("connect")
    assert first["recovered"] is False and first["pid"]
    for n in (1, 2, 3):
        publish(b, n, "r")  # from the other node, through Redis
    for n in (1, 2, 3):
        assert event_args(client) == [{"n": n}, str(n)]  # the offset, last
    a.proc.kill()  # SIGKILL: the node says nothing to anyone
    a.proc.wait(timeout=WAIT)
    assert client.next("disconnect") in ("transport close", "transport error")
    for n in (4, 5):  # missed: published while the client has no node
        publish(b, n, "r")
    client.command(f"move http://127.0.0.1:{b.port}")
    back = client.next("connect")
    # The same socket, on B: exactly what it missed, in order, then what comes live.
    assert back["recovered"] is True
    assert back["pid"] == first["pid"] and back["id"] == first["id"]
    assert event_args(client) == [{"n": 4}, "4"]
    assert event_args(client) == [{"n": 5}, "5"]
    publish(b, 6, "r")
    assert event_args(client) == [{"n": 6}, "6"]
    assert client.ticks() == [1, 2, 3, 4, 5, 6]
    assert b.metric("skyrelay_sio_cross_node_resumes_total") == 1
    # The record was taken: the same pid and offset presented again get a new socket.
    again = SioClient(b.port, "r", pid=first["pid"], offset="3.2.0.0.3")
    clients.append(again)
    got = again.next("connect")
    assert got["recovered"] is False and got["pid"] != first["pid"]


def test_a_cut_socket_resumes_on_its_own_node_with_the_new_offsets(started, clients,
                                                                   redis_server):
    a = Node(redis_server.url, "--recovery", "30")
    started.append(a)
    client = SioClient(a.port, "own")
    clients.append(client)
    first = client.next("connect")
    publish(a, 1, "own")
    assert event_args(client) == [{"n": 1}, "1"]
    client.command("cut")
    assert client.next("disconnect") == "transport close"
    publish(a, 2, "own")  # before or after the resume: once either way
    back = client.next("connect")
    assert back["recovered"] is True and back["pid"] == first["pid"]
    publish(a, 3, "own")
    assert event_args(client) == [{"n": 2}, "2"]
    assert event_args(client) == [{"n": 3}, "3"]
    assert client.ticks() == [1, 2, 3]
    assert a.metric("skyrelay_sio_cross_node_resumes_total") == 0


def test_a_socket_whose_window_passed_gets_a_new_socket(started, clients, redis_server):
    # A window of 1 s: the record of A's socket is gone from Redis once it has passed.
    a = Node(redis_server.url, "--recovery", "1")
    started.append(a)
    b = Node(redis_server.url, "--recovery", "1")
    started.append(b)
    client = SioClient(a.port, "w")
    clients.append(client)
    first = client.next("connect")
    publish(b, 1, "w")
    assert event_args(client) == [{"n": 1}, "1"]
    a.proc.kill()
    a.proc.wait(timeout=WAIT)
    assert client.next("disconnect") in ("transport close", "transport error")
    publish(b, 2, "w")
    time.sleep(1.5)  # past the window: not a timing assertion, the state being tested
    client.command(f"move http://127.0.0.1:{b.port}")
    back = client.next("connect")
    assert back["recovered"] is False
    assert back["pid"] and back["pid"] != first["pid"]
    publish(b, 3, "w")
    assert event_args(client) == [{"n": 3}, "1"]  # the new socket's first event
    assert client.ticks() == [1, 3]  # 2 only behind the explicit reset


def test_a_socket_whose_history_is_gone_gets_a_new_socket(started, clients, redis_server):
    import redis  # redis-py, only to remove the room's stream as its TTL would

    a = Node(redis_server.url, "--recovery", "30")
    started.append(a)
    b = Node(redis_server.url, "--recovery", "30")
    started.append(b)
    c = Node(redis_server.url, "--recovery", "30")  # never saw the room: it reads Redis
    started.append(c)
    client = SioClient(a.port, "t")
    clients.append(client)
    first = client.next("connect")
    publish(b, 1, "t")
    assert event_args(client) == [{"n": 1}, "1"]
    a.proc.kill()
    a.proc.wait(timeout=WAIT)
    assert client.next("disconnect") in ("transport close", "transport error")
    for n in (2, 3):
        publish(b, n, "t")
    r = redis.Redis(host=redis_server.host, port=redis_server.port)
    try:
        streams = [k for k in r.scan_iter(match="*{r1:/t}:s", count=1000)]
        assert len(streams) == 1, streams
        r.delete(streams[0])
    finally:
        r.close()
    client.command(f"move http://127.0.0.1:{c.port}")
    back = client.next("connect")
    assert back["recovered"] is False and back["pid"] != first["pid"]
    publish(b, 4, "t")
    assert event_args(client) == [{"n": 4}, "1"]
    assert client.ticks() == [1, 4]
    assert c.metric('skyrelay_sio_cross_node_refusals_total{reason="trimmed"}') == 1


def test_an_emit_by_sid_missed_while_its_node_was_dead_refuses_the_resume(started, clients,
                                                                         redis_server):
    a = Node(redis_server.url, "--recovery", "30")
    started.append(a)
    b = Node(redis_server.url, "--recovery", "30")
    started.append(b)
    client = SioClient(a.port, "d")
    clients.append(client)
    first = client.next("connect")
    publish(b, 1, "d")
    assert event_args(client) == [{"n": 1}, "1"]
    a.proc.kill()
    a.proc.wait(timeout=WAIT)
    assert client.next("disconnect") in ("transport close", "transport error")
    # To the socket itself: node channels have no stream, the counter says it was missed.
    publish(b, 2, first["id"])
    client.command(f"move http://127.0.0.1:{b.port}")
    back = client.next("connect")
    assert back["recovered"] is False and back["pid"] != first["pid"]
    publish(b, 3, "d")
    assert event_args(client) == [{"n": 3}, "1"]
    assert client.ticks() == [1, 3]
    assert b.metric('skyrelay_sio_cross_node_refusals_total{reason="direct"}') == 1


def test_a_forged_pid_gets_a_new_socket_and_nobody_elses_events(started, clients,
                                                                redis_server):
    a = Node(redis_server.url, "--recovery", "30")
    started.append(a)
    b = Node(redis_server.url, "--recovery", "30")
    started.append(b)
    victim = SioClient(a.port, "secret")
    clients.append(victim)
    v = victim.next("connect")
    publish(b, 1, "secret")
    assert event_args(victim) == [{"n": 1}, "1"]
    # Claims with what another user might know or guess: the victim's sid, a pid of the right
    # length, the victim's pid with one more character; on the victim's node and the other.
    # And the victim's sid with a secret of the right shape (looked up in Redis: no record).
    forged = [v["id"], "A" * len(v["pid"]), v["pid"] + "x", v["id"] + "." + "B" * 22]
    thieves = []
    for i, pid in enumerate(forged):
        node = a if i % 2 == 0 else b
        thief = SioClient(node.port, "lobby", pid=pid, offset="0")
        clients.append(thief)
        got = thief.next("connect")
        assert got["recovered"] is False, pid
        assert got["pid"] != pid and got["id"] != v["id"]
        thieves.append(thief)
    publish(b, 2, "secret")
    publish(b, 100, "lobby")
    assert event_args(victim) == [{"n": 2}, "2"]
    for thief in thieves:
        # Its own room's event, as a new socket's first; the victim's room's never.
        assert event_args(thief) == [{"n": 100}, "1"]
        assert thief.ticks() == [100]
    assert victim.ticks() == [1, 2]
    assert b.metric('skyrelay_sio_cross_node_refusals_total{reason="unknown"}') == 1
    assert b.metric("skyrelay_sio_cross_node_resumes_total") == 0
