"""Connection and server lifecycle: cleanup, heartbeats, graceful stop, metrics."""

from __future__ import annotations

import os
import threading
import time

import pytest

import skyrelay
from skyrelay.testing import connect, metric, wait_until
from wsraw import RawClient, frame

# /metrics series this module reads (docs/deployment.md, Metrics).
CLOSED_JSON = 'skyrelay_connections_closed_total{transport="json"}'
FRAMES_SENT_JSON = 'skyrelay_sent_frames_total{transport="json"}'
MESSAGES_SENT_JSON = 'skyrelay_sent_messages_total{transport="json"}'
OPENED_JSON = 'skyrelay_connections_opened_total{transport="json"}'
OPEN_JSON = 'skyrelay_open_connections{transport="json"}'
WRITE_CALLS_JSON = 'skyrelay_write_calls_total{transport="json"}'


class Reasons:
    """Collects on_disconnect calls: sid -> reason."""

    def __init__(self):
        self.by_sid: dict[str, str] = {}
        self._lock = threading.Lock()

    def install(self, server):
        @server.on_disconnect
        def gone(conn, reason):
            with self._lock:
                self.by_sid[conn.sid] = reason

    def values(self) -> list[str]:
        with self._lock:
            return sorted(self.by_sid.values())


@pytest.fixture
def tracked(skyrelay_server_factory):
    """make(**options) -> (server, reasons), the server stopped after the test."""

    def make(**options):
        reasons = Reasons()
        server = skyrelay_server_factory(reasons.install, **options)
        return server, reasons

    return make


def read_until_opcode(raw, opcode, timeout=10):
    """Frames read until one with ``opcode`` (included); stops early at a close or EOF."""
    frames = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        f = raw.read_frame(timeout=max(0.01, deadline - time.monotonic()))
        if f is None:
            break
        frames.append(f)
        if f[0] in (opcode, 0x8):
            break
    return frames


# -- disconnect cleanup ------------------------------------------------------------------------

def test_client_close_cleans_up(tracked, skyrelay_client):
    server, reasons = tracked()
    c = skyrelay_client(server)
    c.subscribe("a", "b")
    assert server.connection_count == 1
    assert server.room_size("a") == 1 and server.room_size("b") == 1
    sid = c.sid
    c.close()
    assert wait_until(lambda: reasons.by_sid.get(sid) == "client_close")
    assert server.connection_count == 0
    assert server.room_size("a") == 0 and server.room_size("b") == 0
    assert server.health()["rooms"] == 0
    assert server.emit("x", 1, to="a") == 0
    assert metric(server, 'skyrelay_disconnects_total{reason="client_close"}') == 1
    assert metric(server, OPENED_JSON) == 1
    assert metric(server, CLOSED_JSON) == 1
    assert metric(server, OPEN_JSON) == 0


def test_close_frame_from_raw_client_is_answered(tracked):
    server, reasons = tracked()
    raw = RawClient(server.port, "/ws/room")
    assert wait_until(lambda: server.room_size("room") == 1)
    raw.send_close(1000, "bye")
    code, _ = raw.read_until_close(timeout=10)
    assert code == 1000  # the server echoes the close
    assert raw.read_frame(timeout=10) is None  # then ends the TCP connection
    raw.close()
    assert wait_until(lambda: reasons.values() == ["client_close"])
    assert server.connection_count == 0 and server.room_size("room") == 0


def test_abrupt_tcp_close_is_transport_error(tracked):
    server, reasons = tracked()
    raw = RawClient(server.port, "/ws/room")
    assert wait_until(lambda: server.room_size("room") == 1)
    raw.close()  # no close frame
    assert wait_until(lambda: reasons.values() == ["transport_error"])
    assert server.connection_count == 0 and server.room_size("room") == 0
    assert metric(server, 'skyrelay_disconnects_total{reason="transport_error"}') == 1


def test_server_disconnect(tracked, skyrelay_client):
    server, reasons = tracked()
    c = skyrelay_client(server)
    assert server.disconnect(c.sid, "bye now")
    assert c.expect_closed() == (4002, "bye now")
    assert wait_until(lambda: reasons.by_sid.get(c.sid) == "server_disconnect")
    assert not server.disconnect(c.sid)
    assert server.connection_count == 0


# -- heartbeats --------------------------------------------------------------------------------

def test_silent_peer_is_pinged_then_closed_with_4000(tracked):
    server, reasons = tracked(heartbeat_interval=0.3, heartbeat_timeout=0.3)
    with RawClient(server.port, "/ws/hb") as raw:  # never answers pings
        frames = read_until_opcode(raw, 0x8)
    opcodes = [op for op, _ in frames]
    assert 0x9 in opcodes, opcodes  # the server pinged first
    assert opcodes[-1] == 0x8, opcodes
    assert opcodes.index(0x9) < len(opcodes) - 1
    assert int.from_bytes(frames[-1][1][:2], "big") == 4000
    assert wait_until(lambda: reasons.values() == ["heartbeat_timeout"])
    assert server.connection_count == 0 and server.room_size("hb") == 0
    assert metric(server, 'skyrelay_disconnects_total{reason="heartbeat_timeout"}') == 1


# The live peers below get a longer pong timeout than the silent one above, so that a loaded
# machine delaying an answer cannot fail them; a silent peer still sees only one ping.
LIVE_HEARTBEAT = {"heartbeat_interval": 0.3, "heartbeat_timeout": 1.0}


def test_peer_answering_pings_stays_connected(tracked):
    server, reasons = tracked(**LIVE_HEARTBEAT)
    pings = 0
    with RawClient(server.port) as raw:
        # A peer that does not answer is closed interval + timeout after it went silent,
        # having seen one ping; this one answers each ping and so keeps getting new ones.
        deadline = time.monotonic() + 30
        while pings < 4 and time.monotonic() < deadline:
            f = raw.read_frame(timeout=5)
            assert f is not None and f[0] != 0x8, f
            if f[0] == 0x9:
                pings += 1
                raw.send_pong(f[1])
        assert pings == 4
        raw.send_json({"type": "ping"})
        frames = read_until_opcode(raw, 0x1)
        assert frames and frames[-1][0] == 0x1 and b'"pong"' in frames[-1][1], frames
    assert wait_until(lambda: reasons.values() == ["transport_error"])  # our abrupt close


def test_websockets_client_answers_pings_and_stays(tracked):
    server, reasons = tracked(**LIVE_HEARTBEAT)
    with connect(server.url) as c:  # websockets answers pings by itself
        # Nothing is published, so every frame counted is one of the server's pings. Three of
        # them mean the client answered at least two (a silent one sees one, then 4000).
        assert wait_until(lambda: metric(server, FRAMES_SENT_JSON) >= 3, timeout=30)
        assert not c.closed
        assert c.ping()["type"] == "pong"
        assert server.connection_count == 1
        assert reasons.by_sid == {}
    assert wait_until(lambda: reasons.values() == ["client_close"])


# -- graceful stop -----------------------------------------------------------------------------

def test_graceful_stop_sends_1001_and_is_bounded(skyrelay_server_factory, skyrelay_client):
    reasons = Reasons()
    drain = 0.5
    server = skyrelay_server_factory(reasons.install, drain_timeout=drain)
    nice = skyrelay_client(server)
    nice.subscribe("r")
    stubborn = RawClient(server.port, "/ws/r")  # never answers the close frame
    assert wait_until(lambda: server.room_size("r") == 2)
    assert server.emit("last", "words", to="r") == 2
    start = time.monotonic()
    server.stop()
    elapsed = time.monotonic() - start
    # Bounded by drain_timeout (plus a wide margin for a loaded machine), not by the stubborn
    # client: the server's own close-handshake wait is 2 s.
    assert elapsed < drain + 3.0, elapsed
    assert nice.expect("last") == "words"  # queued frames still go out before the close
    assert nice.expect_closed()[0] == 1001
    code, frames = stubborn.read_until_close(timeout=10)
    stubborn.close()
    assert code == 1001
    assert any(b'"last"' in payload for _, payload in frames)
    assert wait_until(lambda: reasons.values() == ["server_shutdown", "server_shutdown"])
    assert reasons.by_sid[nice.sid] == "server_shutdown"
    assert not server.running


def test_stop_is_bounded_with_a_stalled_writer(skyrelay_server_factory):
    """A client that stopped reading holds a write in flight that can never finish: stop()
    still returns after drain_timeout, and the client is reported as server_shutdown."""
    reasons = Reasons()
    drain = 0.5
    server = skyrelay_server_factory(reasons.install, drain_timeout=drain)
    stalled = RawClient(server.port, "/ws/flood", rcvbuf=4096)
    assert wait_until(lambda: server.room_size("flood") == 1)
    pad = "x" * 4000
    # ~12 MB: more than the kernel buffers take, so the server's write stays pending. With
    # drop_oldest the client stays connected however far behind it is.
    for i in range(3000):
        server.emit("flood", {"i": i, "pad": pad}, to="flood", policy="drop_oldest")
    assert wait_until(lambda: metric(server, 'skyrelay_drops_total{reason="drop_oldest"}') > 0)
    start = time.monotonic()
    server.stop()
    elapsed = time.monotonic() - start
    stalled.close()
    assert elapsed < drain + 3.0, elapsed
    assert wait_until(lambda: reasons.values() == ["server_shutdown"])


def test_stop_without_clients_is_quick_and_idempotent():
    server = skyrelay.Server(port=0, drain_timeout=30).start()
    start = time.monotonic()
    server.stop()
    assert time.monotonic() - start < 10.0  # nothing to drain: no wait for drain_timeout
    server.stop()
    assert not server.running


def test_port_is_reusable_after_stop():
    first = skyrelay.Server(port=0, drain_timeout=0.5).start()
    port = first.port
    c = connect(first.url)
    raw = RawClient(port)  # still connected (and silent) when the server stops
    first.stop()
    assert c.expect_closed()[0] == 1001
    c.close()
    raw.close()
    for _ in range(2):
        server = skyrelay.Server(port=port).start()
        try:
            assert server.port == port
            with connect(server.url) as c2:
                assert c2.ping()["type"] == "pong"
        finally:
            server.stop()


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def test_repeated_start_stop_leaks_no_threads():
    def cycle(i):
        server = skyrelay.Server(port=0, io_threads=2, drain_timeout=1, client_topics="*")
        seen = []

        @server.on("echo")
        def echo(conn, data):
            return data

        @server.on("aecho")
        async def aecho(conn, data):  # runs on the server's own asyncio loop thread
            return data

        @server.on_disconnect
        def gone(conn, reason):
            seen.append(reason)

        with server:
            with connect(server.url) as c:
                c.subscribe("x")
                assert c.request("echo", i) == i
                assert c.request("aecho", i) == i
            assert wait_until(lambda: seen == ["client_close"])
            with connect(server.url):
                pass
        assert not server.running

    cycle(-1)  # warm-up: imports and lazily created process-wide threads
    baseline_py, baseline_os = threading.active_count(), _os_threads()
    for i in range(20):
        cycle(i)
    # Client reader threads end shortly after their connection; give them time.
    assert wait_until(lambda: threading.active_count() <= baseline_py, timeout=10), \
        [t.name for t in threading.enumerate()]
    assert wait_until(lambda: _os_threads() <= baseline_os, timeout=10), \
        (_os_threads(), baseline_os)


# -- metrics -----------------------------------------------------------------------------------

def test_connection_and_disconnect_counters(tracked, skyrelay_client):
    server, reasons = tracked(max_message_size=1024)
    polite = [skyrelay_client(server) for _ in range(2)]
    dropped = RawClient(server.port)
    kicked = skyrelay_client(server)
    broken = RawClient(server.port)
    big = RawClient(server.port)
    assert wait_until(lambda: server.connection_count == 6)
    assert metric(server, OPEN_JSON) == 6
    assert metric(server, OPENED_JSON) == 6
    assert metric(server, CLOSED_JSON) == 0

    for c in polite:
        c.close()
    dropped.close()
    server.disconnect(kicked.sid)
    broken.send(frame(0x1, b"{}", masked=False))  # clients must mask: 1002
    big.send(frame(0x1, b"x" * 2048))  # over max_message_size: 1009
    assert broken.read_until_close(timeout=10)[0] == 1002
    assert big.read_until_close(timeout=10)[0] == 1009
    assert kicked.expect_closed()[0] == 4002
    for raw in (dropped, broken, big):
        raw.close()

    expected = {"client_close": 2, "transport_error": 1, "server_disconnect": 1,
                "protocol_error": 1, "message_too_big": 1}
    assert wait_until(lambda: server.connection_count == 0)
    assert wait_until(lambda: len(reasons.by_sid) == 6), reasons.by_sid
    assert sorted(reasons.values()) == sorted(r for r, n in expected.items() for _ in range(n))
    for reason, n in expected.items():
        assert metric(server, f'skyrelay_disconnects_total{{reason="{reason}"}}') == n, reason
    for reason in ("heartbeat_timeout", "slow_consumer", "server_shutdown"):
        assert metric(server, f'skyrelay_disconnects_total{{reason="{reason}"}}') == 0, reason
    assert metric(server, OPENED_JSON) == 6
    assert metric(server, CLOSED_JSON) == 6
    assert metric(server, OPEN_JSON) == 0


def test_gathered_writes_visible_in_metrics(skyrelay_server, skyrelay_client):
    c = skyrelay_client()
    c.subscribe("burst")
    assert c.ping()["type"] == "pong"
    # One reply, one write: frames and write calls both count it.
    assert metric(skyrelay_server, FRAMES_SENT_JSON) >= 1
    assert metric(skyrelay_server, WRITE_CALLS_JSON) >= 1
    frames_before = metric(skyrelay_server, FRAMES_SENT_JSON)
    writes_before = metric(skyrelay_server, WRITE_CALLS_JSON)
    n = 500
    for i in range(n):
        skyrelay_server.emit("b", i, to="burst")
    assert [c.expect("b") for _ in range(n)] == list(range(n))
    frames = metric(skyrelay_server, FRAMES_SENT_JSON) - frames_before
    writes = metric(skyrelay_server, WRITE_CALLS_JSON) - writes_before
    assert frames >= n
    assert 0 < writes < frames  # several frames per write under a burst
    assert metric(skyrelay_server, MESSAGES_SENT_JSON) >= n
    assert metric(skyrelay_server, "skyrelay_publish_to_write_seconds_count") >= n
