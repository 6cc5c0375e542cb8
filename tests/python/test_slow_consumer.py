"""A slow consumer never slows the others or costs them data; its own fate follows the policy."""

from __future__ import annotations

import json
import time

import pytest

from skyrelay.testing import metric, wait_until
from wsraw import RawClient

EVENTS = 600
PAYLOAD = {"pad": "x" * 16000}  # enough to fill the kernel socket buffers (several MB)




@pytest.fixture
def small_outbox_server(skyrelay_server_factory):
    reasons = {}

    def configure(server):
        @server.on_disconnect
        def gone(conn, reason):
            reasons[conn.sid] = reason

    server = skyrelay_server_factory(configure, outbox_max_frames=64, outbox_max_bytes=1024 * 1024)
    server.disconnect_reasons = reasons
    return server


def stalled_client(server, room):
    """A client that completes the handshake and then does not read."""
    raw = RawClient(server.port, f"/ws/{room}", rcvbuf=4096)
    assert raw.status == 101
    return raw


def fast_clients(skyrelay_client, server, room, n=3):
    clients = [skyrelay_client(server, path=f"/ws/{room}") for _ in range(n)]
    for c in clients:
        c.expect_frame("subscribed")
    return clients


def sids(server):
    return set(server.disconnect_reasons)


def test_slow_consumer_is_disconnected_and_others_get_everything(small_outbox_server,
                                                                 skyrelay_client):
    server = small_outbox_server
    slow = stalled_client(server, "feed")
    fast = fast_clients(skyrelay_client, server, "feed")
    for i in range(EVENTS):
        server.emit("tick", {"i": i, **PAYLOAD}, to="feed")
        if i % 50 == 0:
            time.sleep(0.01)  # let the fast readers keep up; the stalled one cannot
    for c in fast:
        assert [c.expect("tick")["i"] for _ in range(EVENTS)] == list(range(EVENTS))
    assert wait_until(lambda: "slow_consumer" in server.disconnect_reasons.values())
    assert metric(server, 'skyrelay_drops_total{reason="slow_consumer"}') > 0
    assert metric(server, 'skyrelay_disconnects_total{reason="slow_consumer"}') == 1
    # The stalled client, when it finally reads, finds a 4001 close after what was written.
    code, _ = slow.read_until_close(timeout=10)
    slow.close()
    assert code in (4001, None)  # None: the server gave up waiting and cut the TCP connection
    assert all(c.ping()["type"] == "pong" for c in fast)


@pytest.mark.parametrize("how", ["per_emit", "room_policy"])
def test_drop_oldest_keeps_slow_consumer_and_drops_visibly(small_outbox_server, skyrelay_client,
                                                            how):
    server = small_outbox_server
    slow = stalled_client(server, "positions")
    fast = fast_clients(skyrelay_client, server, "positions")
    policy = "drop_oldest" if how == "per_emit" else None
    if how == "room_policy":
        server.set_room_policy("positions", "drop_oldest")
    for i in range(EVENTS):
        server.emit("pos", {"i": i, **PAYLOAD}, to="positions", policy=policy)
        if i % 50 == 0:
            time.sleep(0.01)
    # Fast clients finish while the slow one is still stalled.
    for c in fast:
        assert [c.expect("pos")["i"] for _ in range(EVENTS)] == list(range(EVENTS))
    assert metric(server, 'skyrelay_drops_total{reason="drop_oldest"}') > 0
    assert server.connection_count == 4
    # Now the slow client reads: increasing seqs with gaps, no duplicates, the latest present.
    seqs = []
    while True:
        f = slow.read_frame(timeout=2)
        if f is None:
            break
        msg = json.loads(f[1])
        if msg.get("type") == "event":
            seqs.append(msg["seq"])
            if msg["seq"] == EVENTS:
                break
    slow.close()
    assert seqs, "the slow client received nothing"
    assert seqs == sorted(set(seqs))
    assert seqs[-1] == EVENTS
    assert len(seqs) < EVENTS
    assert server.disconnect_reasons == {} or "slow_consumer" not in server.disconnect_reasons.values()
