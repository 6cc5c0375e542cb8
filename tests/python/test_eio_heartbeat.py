"""Engine.IO's heartbeat: the server pings every pingInterval and ends a session whose client
has not answered a ping within pingTimeout, over each transport (over WebSocket the pings ride
on the transport's own heartbeat timer, docs/architecture.md "Heartbeats").

The bounds checked are the ones the server can never miss however loaded the machine: no ping
before its interval has passed, no close before interval + timeout. Upper bounds are left to the
waits' timeouts."""

from __future__ import annotations

import json
import queue
import socket
import time

import skyrelay
from wsraw import RawClient

from test_eio_admission import HANDSHAKE, read_response, request, sid_of

INTERVAL = 0.6  # s; well above the grid's tick (interval / 16)
TIMEOUT = 0.3   # below the interval: the old timer pinged every pingTimeout instead


def server_with_log(factory, **options) -> tuple[skyrelay.Server, queue.Queue]:
    disconnects: queue.Queue = queue.Queue()

    def configure(server: skyrelay.Server) -> None:
        @server.on("disconnect")
        def on_disconnect(conn, reason):
            disconnects.put((conn.sid, reason))

    server = factory(configure, ping_interval=INTERVAL, ping_timeout=TIMEOUT, **options)
    return server, disconnects


def answer_pings(ws: RawClient, n: int, since: float) -> list[float]:
    """Reads until `n` pings have come over `ws`, answering each; their times after `since`."""
    pings: list[float] = []
    while len(pings) < n:
        frame = ws.read_frame(timeout=10)
        assert frame is not None, "no ping within 10 s"
        if frame[1] == b"2":
            pings.append(time.monotonic() - since)
            ws.send_text("3")
    return pings


def open_ws(port: int) -> tuple[RawClient, float, str]:
    started = time.monotonic()
    ws = RawClient(port, "/socket.io/?EIO=4&transport=websocket")
    assert ws.status == 101
    opcode, data = ws.read_frame()
    assert data.startswith(b"0{"), data
    opened = json.loads(data[1:])
    assert opened["pingInterval"] == int(INTERVAL * 1000)
    assert opened["pingTimeout"] == int(TIMEOUT * 1000)
    ws.send_text("40")
    answer = ws.read_frame()[1]
    assert answer.startswith(b"40{"), answer
    return ws, started, json.loads(answer[2:])["sid"]


def test_websocket_pings_come_every_interval_and_answered_keep_the_session(
        skyrelay_server_factory):
    server, disconnects = server_with_log(skyrelay_server_factory)
    ws, started, _ = open_ws(server.port)
    try:
        pings = answer_pings(ws, 4, started)
        # The k-th ping cannot leave before k intervals since the session opened.
        for k, at in enumerate(pings, 1):
            assert at >= k * INTERVAL, pings
        # Answered, the session outlived several interval + timeout spans and still works.
        assert disconnects.empty()
        server.emit("tick", 1)
        while True:
            frame = ws.read_frame(timeout=5)
            assert frame is not None
            if frame[1] != b"2":
                break
            ws.send_text("3")
        assert frame[1].startswith(b'42["tick",1'), frame
    finally:
        ws.close()


def test_a_silent_websocket_client_is_closed_after_interval_and_timeout(
        skyrelay_server_factory):
    server, disconnects = server_with_log(skyrelay_server_factory)
    ws, started, sid = open_ws(server.port)
    try:
        first_ping = None
        while True:  # reads (and never answers) until the server ends the connection
            frame = ws.read_frame(timeout=10)
            if frame is None or frame[0] == 0x8:
                break
            if frame[1] == b"2" and first_ping is None:
                first_ping = time.monotonic() - started
        closed = time.monotonic() - started
        assert first_ping is not None and first_ping >= INTERVAL
        assert closed >= INTERVAL + TIMEOUT, (first_ping, closed)
        assert disconnects.get(timeout=10) == (sid, "heartbeat_timeout")
    finally:
        ws.close()


def test_polling_pings_come_every_interval_and_a_silent_client_is_closed(
        skyrelay_server_factory):
    server, disconnects = server_with_log(skyrelay_server_factory)
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        started = time.monotonic()
        s.sendall(HANDSHAKE)
        sid = sid_of(read_response(s, bytearray())[2])
        target = f"/socket.io/?EIO=4&transport=polling&sid={sid}"
        assert request(s, "POST", target, b"40") == (200, b"ok")
        assert request(s, "GET", target)[1].startswith(b"40{")
        # Three pings, each answered: each comes no sooner than its interval.
        for k in range(1, 4):
            status, body = request(s, "GET", target)
            assert (status, body) == (200, b"2"), (status, body)
            assert time.monotonic() - started >= k * INTERVAL
            assert request(s, "POST", target, b"3") == (200, b"ok")
        assert disconnects.empty()
        # The fourth is not answered: the session ends, and no sooner than its timeout.
        status, body = request(s, "GET", target)
        assert (status, body) == (200, b"2"), (status, body)
        pinged = time.monotonic()
        reason = disconnects.get(timeout=10)
        assert reason[1] == "heartbeat_timeout", reason
        assert time.monotonic() - started >= 4 * INTERVAL + TIMEOUT
        assert pinged - started >= 4 * INTERVAL
    finally:
        s.close()


def test_an_upgraded_session_is_pinged_over_its_websocket(skyrelay_server_factory):
    server, disconnects = server_with_log(skyrelay_server_factory)
    polling = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    polling.sendall(HANDSHAKE)
    sid = sid_of(read_response(polling, bytearray())[2])
    target = f"/socket.io/?EIO=4&transport=polling&sid={sid}"
    assert request(polling, "POST", target, b"40") == (200, b"ok")
    assert request(polling, "GET", target)[1].startswith(b"40{")
    ws = RawClient(server.port, f"/socket.io/?EIO=4&transport=websocket&sid={sid}")
    try:
        ws.send_text("2probe")
        assert ws.read_frame() == (1, b"3probe")
        ws.send_text("5")
        upgraded = time.monotonic()
        polling.close()
        pings = answer_pings(ws, 3, upgraded)
        assert disconnects.empty()
        # Then silent: ended by the heartbeat.
        while True:
            frame = ws.read_frame(timeout=10)
            if frame is None or frame[0] == 0x8:
                break
        assert disconnects.get(timeout=10)[1] == "heartbeat_timeout"
    finally:
        ws.close()
