"""Connection and server lifecycle: cleanup, heartbeats, graceful stop, metrics."""

from __future__ import annotations

import threading
import time

import pytest

import skyrelay
from skyrelay.testing import connect, metric, wait_until
from wsraw import RawClient




class Reasons:
    def __init__(self):
        self.by_sid = {}
        self.event = threading.Event()

    def install(self, server):
        @server.on_disconnect
        def gone(conn, reason):
            self.by_sid[conn.sid] = reason
            self.event.set()


@pytest.fixture
def tracked(skyrelay_server_factory):
    reasons = Reasons()

    def make(**options):
        server = skyrelay_server_factory(reasons.install, **options)
        return server, reasons

    return make


def test_client_close_cleans_up(tracked, skyrelay_client):
    server, reasons = tracked()
    c = skyrelay_client(server)
    c.subscribe("a", "b")
    assert server.connection_count == 1 and server.room_size("a") == 1
    sid = c.sid
    c.close()
    assert wait_until(lambda: reasons.by_sid.get(sid) == "client_close")
    assert server.connection_count == 0
    assert server.room_size("a") == 0 and server.room_size("b") == 0
    assert server.health()["rooms"] == 0
    assert metric(server, 'skyrelay_disconnects_total{reason="client_close"}') == 1
    assert metric(server, "skyrelay_connections_opened_total") == 1
    assert metric(server, "skyrelay_connections_closed_total") == 1


def test_abrupt_tcp_close_is_transport_error(tracked):
    server, reasons = tracked()
    raw = RawClient(server.port, "/ws/room")
    assert wait_until(lambda: server.room_size("room") == 1)
    raw.close()  # no close frame
    assert wait_until(lambda: "transport_error" in reasons.by_sid.values())
    assert server.connection_count == 0 and server.room_size("room") == 0


def test_server_disconnect(tracked, skyrelay_client):
    server, reasons = tracked()
    c = skyrelay_client(server)
    assert server.disconnect(c.sid, "bye now")
    code, reason = c.expect_closed()
    assert (code, reason) == (4002, "bye now")
    assert wait_until(lambda: reasons.by_sid.get(c.sid) == "server_disconnect")
    assert not server.disconnect(c.sid)


def test_dead_peer_is_closed_by_heartbeat(tracked):
    server, reasons = tracked(heartbeat_interval=0.3, heartbeat_timeout=0.3)
    raw = RawClient(server.port)  # never answers pings
    opcodes = []
    code = None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        f = raw.read_frame(timeout=1)
        if f is None:
            break
        opcodes.append(f[0])
        if f[0] == 0x8:
            code = int.from_bytes(f[1][:2], "big")
            break
    raw.close()
    assert 0x9 in opcodes, opcodes  # the server pinged first
    assert code == 4000
    assert wait_until(lambda: "heartbeat_timeout" in reasons.by_sid.values())


def test_live_peer_survives_heartbeats(tracked):
    server, reasons = tracked(heartbeat_interval=0.2, heartbeat_timeout=0.2)
    c = connect(server.url)  # websockets answers pings by itself
    try:
        time.sleep(1.2)  # several heartbeat periods
        assert c.ping()["type"] == "pong"
        assert not c.closed
        assert reasons.by_sid == {}
    finally:
        c.close()


def test_graceful_stop_sends_1001_and_is_bounded(skyrelay_server_factory, skyrelay_client):
    reasons = Reasons()
    server = skyrelay_server_factory(reasons.install, drain_timeout=0.5)
    nice = skyrelay_client(server)
    nice.subscribe("r")
    stubborn = RawClient(server.port)  # never answers the close frame
    server.emit("last", "words", to="r")
    start = time.monotonic()
    server.stop()
    elapsed = time.monotonic() - start
    assert elapsed < 4.0
    assert nice.expect("last") == "words"  # queued frames still go out before the close
    assert nice.expect_closed()[0] == 1001
    code, _ = stubborn.read_until_close(timeout=5)
    stubborn.close()
    assert code == 1001
    assert set(reasons.by_sid.values()) == {"server_shutdown"}
    assert len(reasons.by_sid) == 2


def test_port_is_reusable_after_stop():
    first = skyrelay.Server(port=0).start()
    port = first.port
    c = connect(first.url)
    first.stop()
    c.close()
    second = skyrelay.Server(port=port).start()
    try:
        assert second.port == port
        with connect(second.url) as c2:
            assert c2.ping()["type"] == "pong"
    finally:
        second.stop()


def test_repeated_start_stop_leaks_no_threads():
    baseline = threading.active_count()
    for _ in range(20):
        with skyrelay.Server(port=0, io_threads=2) as server:
            with connect(server.url) as c:
                c.subscribe("x")
    assert wait_until(lambda: threading.active_count() <= baseline + 1, timeout=5)


def test_gathered_writes_visible_in_metrics(skyrelay_server, skyrelay_client):
    c = skyrelay_client()
    c.subscribe("burst")
    for i in range(500):
        skyrelay_server.emit("b", i, to="burst")
    assert [c.expect("b") for _ in range(500)] == list(range(500))
    frames = metric(skyrelay_server, "skyrelay_frames_out_total")
    writes = metric(skyrelay_server, "skyrelay_write_calls_total")
    assert frames >= 500
    assert 0 < writes < frames  # several frames per write under a burst
    assert metric(skyrelay_server, "skyrelay_publish_to_write_seconds_count") >= 500
    assert metric(skyrelay_server, "skyrelay_messages_out_total") >= 500
