"""The continuity rule under load: a producer in another process publishes 100,000 events while
SSE, JSON-protocol and Socket.IO subscribers drop and come back at random moments. Every
subscriber ends with every event exactly once and in order between explicit resets; those that
stay away longer than the history covers get an explicit reset, never a silent gap."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from sse_client import Stream

from skyrelay.testing import connect, metric, wait_until

TOTAL = 100_000
HISTORY = 60_000
LAG = 70_000
LAST = TOTAL - 1
BATCH = 1000
# The producer stays at most this far ahead of the slowest subscriber that is not away on
# purpose: a third of what history holds, so that reading slowly on a busy machine is never
# taken for a long absence.
AHEAD = 20_000
TOKEN = "continuity"
ROOT = Path(__file__).resolve().parents[2]

PRODUCER = textwrap.dedent("""
    import sys, time
    from skyrelay import Producer
    url, total = sys.argv[1], int(sys.argv[2])
    with Producer(url, token="continuity", batch_size=1000) as producer:
        for start in range(0, total, 1000):
            if not sys.stdin.readline():  # the test grants each batch
                sys.exit("no grant for the batch at %d" % start)
            with producer.batch() as batch:
                for n in range(start, min(total, start + 1000)):
                    batch.emit("e", {"n": n}, to="stream")
            time.sleep(0.1)  # paced, so that subscribers come and go while it runs
""")


class Record:
    """What one subscriber saw: checked for continuity as it goes."""

    def __init__(self, name: str, lag_at: int | None = None) -> None:
        self.name = name
        # Once past this n the subscriber stays away, once, for longer than history covers.
        self.lag_at = lag_at
        self.prev: int | None = None
        self.seen: set[int] = set()
        self.events = 0
        self.drops = 0
        self.resets: list[str] = []
        self.errors: list[str] = []
        self.done = False
        self.at = -1  # the last n read, whatever came before: the subscriber's progress
        self.away = False  # staying away on purpose (the producer does not wait for it then)
        self.ready = threading.Event()  # subscribed for the first time

    def event(self, n: int) -> None:
        if n in self.seen:
            self.errors.append(f"duplicate {n}")
        self.seen.add(n)
        if self.prev is not None and n != self.prev + 1:
            self.errors.append(f"silent gap {self.prev} -> {n}")
        self.prev = n
        self.at = n
        self.events += 1
        self.done = n == LAST

    def reset(self, reason: str) -> None:
        self.resets.append(reason)
        self.prev = None  # continuity restarts after an explicit reset

    def lag_once(self, server, since: float, deadline: float) -> None:
        """Past `lag_at` (the first time only): away while more events go by than history
        holds, LAG after `since` publications."""
        if self.lag_at is None or self.prev is None or self.prev < self.lag_at:
            return
        self.lag_at = None
        self.away = True
        wait_until(lambda: published(server) >= min(since + LAG, TOTAL),
                   deadline - time.monotonic(), 0.05)
        self.away = False


def published(server) -> float:
    return metric(server, "skyrelay_publications_total")


def json_subscriber(server, rec: Record, rng: random.Random) -> None:
    """Subscribes to "stream" over the JSON protocol, drops every few thousand events, and
    resumes with since + epoch. With the record's `lag_at`, stays away once for longer than
    history covers."""
    url = f"ws://127.0.0.1:{server.port}/ws"
    epoch: str | None = None
    seq: int | None = None
    deadline = time.monotonic() + 120
    while not rec.done and time.monotonic() < deadline:
        with connect(url, timeout=30) as c:
            if seq is None:
                epoch = c.subscribe("stream")["epoch"]
                rec.ready.set()
            else:
                reply = c.subscribe("stream", since=seq, epoch=epoch)
                if not reply["recovered"]:
                    rec.reset(reply["reset"])
                    epoch = reply["epoch"]
            budget = rng.randint(500, 6000)
            for _ in range(budget):
                frame = c.expect_event("e", timeout=30)
                seq = frame["seq"]
                rec.event(frame["data"]["n"])
                if rec.done:
                    return
            rec.drops += 1
            start = published(server)
        rec.lag_once(server, start, deadline)


def sse_subscriber(server, rec: Record, rng: random.Random) -> None:
    """The same over Server-Sent Events, resuming with Last-Event-ID."""
    last_id: str | None = None
    deadline = time.monotonic() + 120
    while not rec.done and time.monotonic() < deadline:
        headers = {"Last-Event-ID": last_id} if last_id else {}
        stream = Stream(f"http://127.0.0.1:{server.port}/sse/stream", headers)
        try:
            welcome = stream.next_event("welcome", timeout=30)
            rec.ready.set()
            if welcome.id:
                last_id = welcome.id
            budget = rng.randint(500, 6000)
            for _ in range(budget):
                sse = stream.next(timeout=30)
                if sse.event == "reset":
                    rec.reset(json.loads(sse.data)["reason"])
                    continue
                last_id = sse.id
                rec.event(json.loads(sse.data)["n"])
                if rec.done:
                    return
            rec.drops += 1
            start = published(server)
        finally:
            stream.close()
        rec.lag_once(server, start, deadline)


@pytest.mark.timeout(240)
def test_hundred_thousand_events_with_subscribers_coming_and_going(skyrelay_server_factory):
    def configure(server):
        @server.on("connect")
        def join_stream(conn):  # Socket.IO clients follow "stream" too
            if conn.transport == "socket.io":
                conn.join("stream")

    # History holds 60,000 events: a subscriber that reads slowly on a busy machine still
    # resumes; the laggards stay away for 70,000.
    server = skyrelay_server_factory(configure, publish_token=TOKEN, history_size=HISTORY,
                                     history_ttl=120, recovery_window=60,
                                     outbox_max_frames=65536, outbox_max_bytes=32 << 20)
    url = f"http://127.0.0.1:{server.port}"
    records = {name: Record(name, lag_at=0 if name.endswith("laggard") else None)
               for name in ("json", "json-laggard", "sse", "sse-laggard")}
    errors: list[BaseException] = []

    def guarded(fn, *args):
        def run():
            try:
                fn(*args)
            except BaseException as exc:  # reported below, with the record
                errors.append(exc)
        return threading.Thread(target=run, daemon=True)

    threads = [
        guarded(json_subscriber, server, records["json"], random.Random(1)),
        guarded(json_subscriber, server, records["json-laggard"], random.Random(2)),
        guarded(sse_subscriber, server, records["sse"], random.Random(3)),
        guarded(sse_subscriber, server, records["sse-laggard"], random.Random(4)),
    ]
    node = subprocess.Popen(["node", str(ROOT / "tests/python/sio_continuity.mjs"), url,
                             str(LAST), "7"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    sio_at = [-1]
    sio_err_lines: list[str] = []

    def read_node_progress() -> None:
        for line in node.stderr:
            if line.startswith("AT "):
                sio_at[0] = int(line[3:])
            else:
                sio_err_lines.append(line)

    def slowest() -> int:
        present = [r.at for r in records.values() if not r.away]
        return min(present + [sio_at[0]])

    producer = None
    try:
        assert node.stderr.readline().strip() == "READY"  # connected, in "stream"
        progress = threading.Thread(target=read_node_progress, daemon=True)
        progress.start()
        for t in threads:
            t.start()
        # Everyone subscribed before the first event.
        for rec in records.values():
            assert rec.ready.wait(30), (rec.name, errors)
        producer = subprocess.Popen([sys.executable, "-c", PRODUCER, url, str(TOTAL)],
                                    stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for start in range(0, TOTAL, BATCH):
            if not wait_until(lambda: slowest() >= start - AHEAD, 60, 0.01):
                errors.append(AssertionError(f"no subscriber progress at {start}: "
                                             f"{slowest()}, sio at {sio_at[0]}"))
                break
            producer.stdin.write("go\n")
            producer.stdin.flush()
        producer.stdin.close()
        assert producer.wait(timeout=60) == 0, producer.stderr.read()
        for t in threads:
            t.join(150)
        sio_out = node.stdout.read()
        node.wait(timeout=30)
        progress.join(10)
        sio_err = "".join(sio_err_lines)
    finally:
        for proc in (node, producer):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert not errors, (errors, [(r.name, r.events, r.prev, r.resets, r.drops)
                                 for r in records.values()])
    assert published(server) == TOTAL
    for rec in records.values():
        assert rec.done, (rec.name, rec.events, rec.prev)
        assert rec.errors == [], (rec.name, rec.errors[:5])
        assert rec.drops >= 5, (rec.name, rec.drops)  # it really came and went
    # Short absences always recover; a long one is an explicit reset, for each protocol.
    assert records["json"].resets == [] and records["sse"].resets == []
    assert records["json-laggard"].resets == ["history_gap"]
    assert records["sse-laggard"].resets == ["history_gap"]
    assert records["json"].events == TOTAL and records["sse"].events == TOTAL
    sio = json.loads(sio_out.strip().splitlines()[-1])
    assert sio["errors"] == [], (sio, sio_err[-2000:])
    # Every drop recovered (the last one may come so late that the stream ends on frames
    # already read before the reconnect).
    assert sio["drops"] >= 5 and sio["recovered"] >= sio["drops"] - 1 and sio["resets"] == 0, sio
    assert sio["events"] == TOTAL
