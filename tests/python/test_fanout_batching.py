"""Batched writes (issue 18): a connection that falls behind gets many frames per socket write,
and that changes nothing a client or /metrics can see but the number of writes.

The client is a raw socket with a small receive buffer that stops reading while the server
publishes to two channels in turn (its room and a broadcast to everyone), so its frames pile up
in the outbox and leave in large gathered writes. Then it reads everything.
"""

from __future__ import annotations

import json

import pytest

from skyrelay.testing import metric, wait_until
from wsraw import RawClient

SENT_JSON = 'skyrelay_sent_messages_total{transport="json"}'
WRITES_JSON = 'skyrelay_write_calls_total{transport="json"}'
LATENCY_COUNT = "skyrelay_publish_to_write_seconds_count"
DROPS_OLDEST = 'skyrelay_drops_total{reason="drop_oldest"}'
PAD = "x" * 400


def read_events(raw, want: int, timeout: float = 30) -> list[dict]:
    """The raw client's event frames, until `want` of them (or EOF/timeout)."""
    events = []
    while len(events) < want:
        f = raw.read_frame(timeout=timeout)
        if f is None:
            break
        opcode, payload = f
        if opcode == 0x1:
            msg = json.loads(payload)
            if msg.get("type") == "event":
                events.append(msg)
    return events


@pytest.fixture
def server(skyrelay_server_factory):
    return skyrelay_server_factory(outbox_max_frames=100_000, outbox_max_bytes=256 << 20)


def test_batched_writes_keep_the_order_across_publications_and_channels(server):
    raw = RawClient(server.port, "/ws/feed", rcvbuf=4096, timeout=10)
    try:
        assert raw.status == 101
        assert wait_until(lambda: server.room_size("feed") == 1)
        # Past the welcome and subscribed frames, so that the counts below are the events'.
        assert json.loads(raw.read_frame()[1])["type"] == "welcome"
        assert json.loads(raw.read_frame()[1])["type"] == "subscribed"
        sent0, writes0, timed0 = (metric(server, SENT_JSON), metric(server, WRITES_JSON),
                                  metric(server, LATENCY_COUNT))
        # ~9 MB: more than the kernel's buffers take (up to ~4 MB on loopback), so the outbox
        # holds the rest and writes it in batches once the client reads.
        n = 20_000
        for i in range(n):
            if i % 2:
                server.emit("tick", {"i": i, "pad": PAD})  # everyone: the broadcast channel
            else:
                server.emit("tick", {"i": i, "pad": PAD}, to="feed")
        events = read_events(raw, n)
        # Every event once, in the order of publication, whatever its channel.
        assert [e["data"]["i"] for e in events] == list(range(n))
        room = [e["seq"] for e in events if e.get("topic") == "feed"]
        assert room == list(range(1, n // 2 + 1))  # the room's own numbering, gap-free
        # Counted per frame, however many a write carried. Each write before the socket filled
        # may have carried one frame (at most ~4 MB of them); the rest left in batches.
        assert wait_until(lambda: metric(server, SENT_JSON) - sent0 == n)
        assert metric(server, LATENCY_COUNT) - timed0 == n
        writes = metric(server, WRITES_JSON) - writes0
        assert 0 < writes < n / 2, writes
    finally:
        raw.close()


def test_drops_under_batched_writes_are_counted_exactly(skyrelay_server_factory):
    server = skyrelay_server_factory(outbox_max_frames=64, outbox_max_bytes=1 << 20)
    raw = RawClient(server.port, "/ws/feed", rcvbuf=4096, timeout=10)
    try:
        assert raw.status == 101
        assert wait_until(lambda: server.room_size("feed") == 1)
        n = 20_000  # ~9 MB: far more than the kernel buffers and the outbox hold
        for i in range(n):
            server.emit("tick", {"i": i, "pad": PAD}, to="feed", policy="drop_oldest")
        drops = metric(server, DROPS_OLDEST)
        assert drops > 0
        events = read_events(raw, n - int(drops), timeout=10)
        seqs = [e["seq"] for e in events]
        assert seqs[-1] == n  # the newest is never the one dropped
        assert all(a < b for a, b in zip(seqs, seqs[1:]))
        assert [e["data"]["i"] for e in events] == [s - 1 for s in seqs]
        assert len(seqs) + drops == n  # every event either delivered or counted as dropped
        assert server.connection_count == 1
    finally:
        raw.close()
