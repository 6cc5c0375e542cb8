"""A slow consumer never slows the others or costs them data; its own fate follows the policy.

The slow consumer is a raw socket that completes the WebSocket handshake, shrinks its receive
buffer and then stops reading. Once the kernel buffers between it and the server are full (a few
MB on loopback), its outbox fills up and the overflow policy applies. The test publishes in
batches smaller than the outbox and waits for the fast clients to receive each batch, so they
never fall behind by more than one batch: whatever happens to them is caused by the server,
not by the pace of the test.
"""

from __future__ import annotations

import json
import threading

import pytest

from skyrelay.testing import metric, wait_until
from wsraw import RawClient

# /metrics series this module reads (docs/deployment.md, Metrics).
MESSAGES_RECEIVED_JSON = 'skyrelay_received_messages_total{transport="json"}'

OUTBOX_FRAMES = 64
OUTBOX_BYTES = 64 * 1024
BATCH = 32  # events per batch: half the outbox
PAD = "x" * 700  # ~0.8 KiB frames: 64 of them stay under 64 KiB, so the frame bound binds
MAX_EVENTS = 25_000  # ~20 MB: far more than the kernel buffers a stalled socket can absorb
FAST_CLIENTS = 3

DROPS_SLOW = 'skyrelay_drops_total{reason="slow_consumer"}'
DROPS_OLDEST = 'skyrelay_drops_total{reason="drop_oldest"}'


@pytest.fixture
def server(skyrelay_server_factory):
    reasons: dict[str, str] = {}
    lock = threading.Lock()

    def configure(srv):
        @srv.on_disconnect
        def gone(conn, reason):
            with lock:
                reasons[conn.sid] = reason

    srv = skyrelay_server_factory(configure, outbox_max_frames=OUTBOX_FRAMES,
                                  outbox_max_bytes=OUTBOX_BYTES)
    srv.disconnect_reasons = reasons
    return srv


@pytest.fixture
def stalled(server):
    """A client of /ws/<room> that never reads (until the test reads for it)."""
    opened = []

    def make(room):
        raw = RawClient(server.port, f"/ws/{room}", rcvbuf=4096, timeout=10)
        opened.append(raw)
        assert raw.status == 101
        assert wait_until(lambda: server.room_size(room) == 1)
        return raw

    yield make
    for raw in opened:
        raw.close()


def fast_clients(skyrelay_client, server, room):
    clients = [skyrelay_client(server, path=f"/ws/{room}", timeout=30)
               for _ in range(FAST_CLIENTS)]
    for c in clients:
        assert c.expect_frame("subscribed")["topic"] == room
    return clients


def publish_until(server, fast, room, done, *, policy=None, extra_batches=4, start=0):
    """Publishes batches of BATCH events ({"i": n}, n counting on from ``start``, the number
    of events the room had before) to ``room`` until ``done()`` holds, then ``extra_batches``
    more. After each batch every fast client must have received exactly that batch, in order.
    Returns the total number of events the room has had."""
    sent = start
    left = None
    while left is None or left > 0:
        assert sent - start < MAX_EVENTS, "the stalled client never overflowed its outbox"
        for _ in range(BATCH):
            server.emit("tick", {"i": sent, "pad": PAD}, to=room, policy=policy)
            sent += 1
        for c in fast:
            got = [c.expect_event("tick", timeout=30) for _ in range(BATCH)]
            assert [f["data"]["i"] for f in got] == list(range(sent - BATCH, sent))
            assert [f["seq"] for f in got] == list(range(sent - BATCH + 1, sent + 1))
        if left is None and done():
            left = extra_batches
        elif left is not None:
            left -= 1
    return sent


def stalled_outbox_full(server):
    """A ``done`` for publish_until: true once two batches in a row each cost the stalled client
    exactly BATCH drop_oldest drops. Its outbox was then full and its writer took nothing while
    the fast clients read a whole batch: the kernel buffers in between are full too."""
    history = [metric(server, DROPS_OLDEST)]

    def done():
        history.append(metric(server, DROPS_OLDEST))
        steps = [b - a for a, b in zip(history, history[1:])]
        return steps[-2:] == [BATCH, BATCH]

    return done


def read_frames(raw, stop=lambda msg: False, timeout=30):
    """Reads the raw client's JSON frames until ``stop(msg)`` holds for one (it is kept), or a
    close frame, EOF or timeout. Returns (event frames, other frames, close code or None)."""
    events, others = [], []
    for _ in range(MAX_EVENTS + 100):
        f = raw.read_frame(timeout=timeout)
        if f is None:
            break
        opcode, payload = f
        if opcode == 0x8:
            return events, others, int.from_bytes(payload[:2], "big")
        if opcode != 0x1:
            continue
        msg = json.loads(payload)
        (events if msg.get("type") == "event" else others).append(msg)
        if stop(msg):
            break
    return events, others, None


def test_slow_consumer_is_disconnected_and_others_get_everything(server, stalled,
                                                                 skyrelay_client):
    slow = stalled("feed")
    fast = fast_clients(skyrelay_client, server, "feed")
    sent = publish_until(server, fast, "feed", lambda: metric(server, DROPS_SLOW) > 0)
    # Every fast client got all `sent` events in order (checked batch by batch), the slow
    # one is gone for the stated reason and its lost frames were counted.
    assert wait_until(lambda: list(server.disconnect_reasons.values()) == ["slow_consumer"],
                      timeout=15), server.disconnect_reasons
    assert metric(server, DROPS_SLOW) > 0
    assert metric(server, 'skyrelay_disconnects_total{reason="slow_consumer"}') == 1
    # One overflow, one limit hit: the frames that arrive while its close is under way are
    # dropped (counted above) without counting the limit or asking for the close again.
    assert metric(server, 'skyrelay_limit_hits_total{limit="outbox"}') == 1
    assert metric(server, DROPS_OLDEST) == 0
    assert server.connection_count == FAST_CLIENTS
    assert server.room_size("feed") == FAST_CLIENTS
    assert server.emit("tick", {"i": sent}, to="feed") == FAST_CLIENTS
    for c in fast:
        assert c.expect("tick")["i"] == sent
        assert c.ping()["type"] == "pong"
        assert not c.closed
    # The slow client finds what was written before the overflow: a gap-free prefix of the
    # stream, then the 4001 close, or just EOF when the server gave up waiting for the stalled
    # write and cut the connection.
    assert slow.read_frame()[0] == 0x1  # welcome
    assert slow.read_frame()[0] == 0x1  # subscribed
    events, others, code = read_frames(slow)
    assert code in (4001, None)
    assert others == []
    assert events, "the slow client received nothing before the overflow"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert len(events) < sent


@pytest.mark.parametrize("how", ["per_emit", "room_policy"])
def test_drop_oldest_keeps_slow_consumer_and_drops_visibly(server, stalled, skyrelay_client,
                                                            how):
    slow = stalled("positions")
    fast = fast_clients(skyrelay_client, server, "positions")
    policy = "drop_oldest" if how == "per_emit" else None
    if how == "room_policy":
        server.set_room_policy("positions", "drop_oldest")
    sent = publish_until(server, fast, "positions", stalled_outbox_full(server), policy=policy)
    # The fast clients have every event while the slow one is still stalled and connected.
    drops = metric(server, DROPS_OLDEST)
    assert drops > 0
    assert metric(server, DROPS_SLOW) == 0
    assert server.connection_count == FAST_CLIENTS + 1
    assert server.room_size("positions") == FAST_CLIENTS + 1
    assert server.disconnect_reasons == {}

    # A ping now finds the outbox full: its pong must make room, not end the connection.
    messages_in = metric(server, MESSAGES_RECEIVED_JSON)
    slow.send_json({"type": "ping", "id": "p1"})
    assert wait_until(lambda: metric(server, MESSAGES_RECEIVED_JSON) > messages_in)
    total = publish_until(server, fast, "positions", lambda: True, policy=policy,
                          extra_batches=0, start=sent)
    assert metric(server, DROPS_SLOW) == 0

    # Unstalled: increasing seqs with gaps, no duplicates, the latest event present.
    assert json.loads(slow.read_frame()[1])["type"] == "welcome"
    assert json.loads(slow.read_frame()[1])["type"] == "subscribed"
    events, others, code = read_frames(slow, lambda m: m.get("seq") == total)
    assert code is None, f"closed with {code}"
    seqs = [e["seq"] for e in events]
    assert seqs, "the slow client received nothing"
    assert all(a < b for a, b in zip(seqs, seqs[1:])), "seq out of order or repeated"
    assert seqs[-1] == total
    assert len(seqs) < total  # gaps
    assert [e["data"]["i"] for e in events] == [s - 1 for s in seqs]
    assert [m["type"] for m in others] == ["pong"] and others[0]["id"] == "p1"
    # Every event the slow client missed was counted, and nothing else was.
    assert metric(server, DROPS_OLDEST) == total - len(seqs)

    # Still connected and served, and nobody was disconnected.
    slow.send_json({"type": "ping", "id": "p2"})
    events, others, code = read_frames(slow, lambda m: m.get("type") == "pong")
    assert (events, code) == ([], None)
    assert [(m["type"], m["id"]) for m in others] == [("pong", "p2")]
    assert server.connection_count == FAST_CLIENTS + 1
    assert server.disconnect_reasons == {}
