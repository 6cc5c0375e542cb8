"""What an idle connection gives up to hold less memory, and that nothing of it is missed once
the connection speaks again (docs/benchmarks.md, "Where an idle connection's memory goes"):
the Engine.IO session keeps its handshake's headers packed (every namespace's connect hook
still sees them); a JSON-protocol WebSocket and an SSE stream
whose 101 response and welcome were given back keep writing; a Socket.IO session made its
connect timer only until the first CONNECT and its outbox and polling queue on first use."""

from __future__ import annotations

import json
import queue
import time

import httpx
import socketio
from websockets.sync.client import connect as ws_connect

import skyrelay
from skyrelay.testing import wait_until


def test_every_namespace_connect_hook_sees_the_handshake_headers(skyrelay_server_factory):
    seen: queue.Queue = queue.Queue()

    def hook(nsp: str):
        def on_connect(conn):
            seen.put((nsp, dict(conn.headers), conn.query))
        return on_connect

    def configure(server: skyrelay.Server) -> None:
        for nsp in ("/", "/later"):
            server.on("connect", namespace=nsp)(hook(nsp))

    server = skyrelay_server_factory(configure)
    client = socketio.Client(reconnection=False)
    headers = {"X-Trace": "trace-7", "X-Empty-Next": "", "X-Long": "v" * 300}
    try:
        client.connect(f"http://127.0.0.1:{server.port}", transports=["websocket"],
                       headers=headers, namespaces=["/", "/later"], wait_timeout=5)
        first, second = seen.get(timeout=5), seen.get(timeout=5)
    finally:
        client.disconnect()
    assert {first[0], second[0]} == {"/", "/later"}
    for _, got, query in (first, second):
        assert got["x-trace"] == "trace-7"
        assert got["x-empty-next"] == ""
        assert got["x-long"] == "v" * 300
        assert "EIO=4" in query
    assert first[1] == second[1]


def test_a_json_websocket_keeps_writing_after_its_handshake_buffers_went_back(
        skyrelay_server_factory):
    server = skyrelay_server_factory(None, client_topics=["idle"])
    with ws_connect(f"ws://127.0.0.1:{server.port}/ws/idle", open_timeout=5) as ws:
        types = sorted(json.loads(ws.recv(timeout=5))["type"] for _ in range(2))
        assert types == ["subscribed", "welcome"]
        for round_ in range(3):
            time.sleep(0.2)  # idle: nothing queued, nothing kept
            big = "b" * (20_000 * (round_ + 1))
            assert server.emit("big", big, to="idle") == 1
            for i in range(50):
                server.emit("n", i, to="idle")
            assert json.loads(ws.recv(timeout=5))["data"] == big
            assert [json.loads(ws.recv(timeout=5))["data"] for _ in range(50)] == list(range(50))
            ws.send(json.dumps({"type": "ping"}))
            assert json.loads(ws.recv(timeout=5))["type"] == "pong"


def test_an_sse_stream_keeps_writing_after_its_head_went_back(skyrelay_server_factory):
    server = skyrelay_server_factory(None, client_topics=["idle"])
    with httpx.Client(timeout=5) as http, \
            http.stream("GET", f"http://127.0.0.1:{server.port}/sse/idle") as res:
        assert res.status_code == 200
        lines = res.iter_lines()
        data = []

        def next_data():
            for line in lines:
                if line.startswith("data:"):
                    return json.loads(line[5:])
            raise AssertionError("stream ended")

        next_data()  # the welcome
        assert wait_until(lambda: server.room_size("idle") == 1)
        for round_ in range(3):
            time.sleep(0.2)
            server.emit("n", {"round": round_, "pad": "p" * 5000}, to="idle")
            data.append(next_data()["round"])
        assert data == [0, 1, 2]


def test_socketio_over_polling_then_websocket_after_idle(skyrelay_server_factory):
    got: queue.Queue = queue.Queue()
    server = skyrelay_server_factory(None)
    client = socketio.Client(reconnection=False)
    client.on("tick", lambda data: got.put(data))
    try:
        client.connect(f"http://127.0.0.1:{server.port}", transports=["polling", "websocket"],
                       wait_timeout=5)
        assert wait_until(lambda: client.transport() == "websocket")
        for i in range(3):
            time.sleep(0.2)
            server.emit("tick", i)
            assert got.get(timeout=5) == i
    finally:
        client.disconnect()
