"""The dispatcher hands events to Python handlers in batches (one GIL acquisition per batch,
the batch's async handlers handed to the loop with one wake-up): what that must not change.

Each test first blocks the handler of a first event until the client has sent everything
else, so that the rest waits in the dispatcher's queue and is handed over in batches (of at
most 64) rather than one by one. Real clients: python-socketio and websockets."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
import socketio
import websockets.sync.client

from skyrelay import RequestError
from skyrelay.testing import wait_until

COUNT = 300  # several batches' worth
CLIENTS = 3


def _server(factory, register):
    # The per-connection inbound limit would refuse a burst of COUNT events.
    return factory(register, inbound_rate=1e6, inbound_burst=1e6)


def _gate():
    """A first handler call that waits until the test opens the gate (bounded)."""
    gate = threading.Event()
    first = threading.Event()

    def hold():
        if not first.is_set():
            first.set()
            gate.wait(10)

    return gate, first, hold


def test_order_per_connection_across_batches(skyrelay_server_factory, sio_clients):
    gate, first, hold = _gate()
    seen: dict[str, list[int]] = {}
    lock = threading.Lock()

    def register(server):
        @server.on("n")
        def n(conn, data):
            hold()
            with lock:
                seen.setdefault(conn.sid, []).append(data)

    server = _server(skyrelay_server_factory, register)
    clients = []
    for _ in range(CLIENTS):
        c = sio_clients()
        c.connect(server.http_url, transports=["websocket"])
        clients.append(c)
    clients[0].emit("n", -1)  # the event that holds the dispatcher
    assert first.wait(5)
    for i in range(COUNT):
        for c in clients:
            c.emit("n", i)
    # More than one batch waits behind the held event (the gauge counts a batch in hand too).
    assert wait_until(lambda: _queued(server) > 2 * 64, timeout=5)
    gate.set()
    assert wait_until(lambda: sum(len(v) for v in seen.values()) == CLIENTS * COUNT + 1,
                      timeout=15)
    for c in clients:
        got = seen[c.get_sid("/")]
        expected = ([-1] if c is clients[0] else []) + list(range(COUNT))
        assert got == expected  # arrival order, nothing lost or repeated


def _queued(server) -> float:
    for line in server.metrics_text().splitlines():
        if line.startswith("skyrelay_dispatch_queue_length "):
            return float(line.split()[1])
    raise AssertionError("no skyrelay_dispatch_queue_length on /metrics")


def _burst_with_acks(client, count):
    """Emits `count` events asking for acks without waiting; returns the answers by index."""
    answers: dict[int, object] = {}
    done = threading.Event()

    def callback_for(i):
        def cb(*args):
            answers[i] = args[0] if len(args) == 1 else list(args)
            if len(answers) == count:
                done.set()
        return cb

    for i in range(count):
        client.emit("n", i, callback=callback_for(i))
    return answers, done


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_raising_handler_drops_nothing_else_in_its_batch(skyrelay_server_factory,
                                                           sio_clients, kind):
    gate, first, hold = _gate()

    def answer(data):
        if data % 7 == 3:
            raise ValueError("boom")
        if data % 7 == 5:
            raise RequestError("odd_one", f"refused {data}")
        return data * 2

    def register(server):
        @server.on("hold")
        def held(conn, data):
            hold()

        if kind == "sync":
            @server.on("n")
            def n(conn, data):
                return answer(data)
        else:
            @server.on("n")
            async def n(conn, data):
                await asyncio.sleep(0)
                return answer(data)

    server = _server(skyrelay_server_factory, register)
    client = sio_clients()
    client.connect(server.http_url, transports=["websocket"])
    client.emit("hold", 0)
    assert first.wait(5)
    answers, done = _burst_with_acks(client, COUNT)
    gate.set()
    assert done.wait(15), f"{len(answers)} of {COUNT} acks"
    for i in range(COUNT):
        got = answers[i]
        if i % 7 == 3:
            assert got["error"]["code"] == "handler_error" and got["error"]["event"] == "n"
        elif i % 7 == 5:
            assert got["error"] == {"code": "odd_one", "message": f"refused {i}", "event": "n"}
        else:
            assert got == i * 2


def test_async_handlers_start_in_arrival_order_and_ack(skyrelay_server_factory, sio_clients):
    gate, first, hold = _gate()
    started: list[int] = []
    loops: set[int] = set()

    def register(server):
        @server.on("hold")
        def held(conn, data):
            hold()

        @server.on("n")
        async def n(conn, data):
            started.append(data)  # before any await: the order the tasks start in
            loops.add(id(asyncio.get_running_loop()))
            await asyncio.sleep(0.001 * (data % 3))  # finishes out of order
            return {"n": data, "bin": bytes([data % 256])}

    server = _server(skyrelay_server_factory, register)
    client = sio_clients()
    client.connect(server.http_url, transports=["websocket"])
    client.emit("hold", 0)
    assert first.wait(5)
    answers, done = _burst_with_acks(client, COUNT)
    gate.set()
    assert done.wait(15), f"{len(answers)} of {COUNT} acks"
    assert started == list(range(COUNT))
    assert len(loops) == 1
    assert all(answers[i] == {"n": i, "bin": bytes([i % 256])} for i in range(COUNT))


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_json_protocol_requests_in_batches(skyrelay_server_factory, kind):
    gate, first, hold = _gate()
    order: list[int] = []

    def answer(data):
        order.append(data)
        if data % 5 == 2:
            raise RequestError("two", "no twos")
        if data % 5 == 4:
            raise KeyError("four")
        return {"double": data * 2}

    def register(server):
        @server.on("hold")
        def held(conn, data):
            hold()
            return True

        if kind == "sync":
            @server.on("n")
            def n(conn, data):
                return answer(data)
        else:
            @server.on("n")
            async def n(conn, data):
                return answer(data)

    server = _server(skyrelay_server_factory, register)
    with websockets.sync.client.connect(server.url) as ws:
        json.loads(ws.recv(timeout=5))  # welcome
        ws.send(json.dumps({"type": "request", "id": "hold", "event": "hold", "data": 0}))
        assert first.wait(5)
        for i in range(COUNT):
            ws.send(json.dumps({"type": "request", "id": str(i), "event": "n", "data": i}))
        gate.set()
        responses = {}
        while len(responses) < COUNT + 1:
            m = json.loads(ws.recv(timeout=10))
            if m.get("type") == "response":
                responses[m["id"]] = m
    assert responses["hold"]["ok"] is True
    assert order == list(range(COUNT))
    for i in range(COUNT):
        r = responses[str(i)]
        if i % 5 == 2:
            assert r["ok"] is False and r["error"] == {"code": "two", "message": "no twos"}
        elif i % 5 == 4:
            assert r["ok"] is False and r["error"]["code"] == "handler_error"
        else:
            assert r == {"type": "response", "id": str(i), "ok": True, "data": {"double": i * 2}}


# Values a handler may return, written in C++ when they are plain (bindings/py_json.cpp) and by
# Python otherwise: the wire text must be what json.dumps writes either way.
ANSWERS = [
    {"a": 1.0, "b": -0.0, "c": 1e16, "d": 1e-7, "e": 0.1, "f": 2 ** 63 - 1, "g": -2 ** 63},
    ["tab\there", "quote\" back\\slash", "\x00\x01\x1f\x7f", "é中😀", "\u2028"],
    {"nested": [[[{"x": None, "y": True, "z": False}]]], "empty": {}, "list": []},
    ("a", "tuple"),
    2 ** 70,  # beyond 64 bits: Python writes it
    "plain text",
]


def test_answers_are_written_as_json_dumps_writes_them(skyrelay_server_factory):
    def register(server):
        @server.on("answer")
        def answer(conn, i):
            return ANSWERS[i]

    server = _server(skyrelay_server_factory, register)
    with websockets.sync.client.connect(server.url) as ws:
        json.loads(ws.recv(timeout=5))  # welcome
        for i, value in enumerate(ANSWERS):
            ws.send(json.dumps({"type": "request", "id": str(i), "event": "answer", "data": i}))
            raw = ws.recv(timeout=5)
            expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
            assert f'"data":{expected}' in raw, raw
    # And as Socket.IO acks (arguments: a tuple is several of them).
    client = socketio.Client(reconnection=False)
    try:
        client.connect(server.http_url, transports=["websocket"])
        for i, value in enumerate(ANSWERS):
            got = client.call("answer", i, timeout=5)
            if isinstance(value, tuple):  # several arguments
                assert list(got) == list(value)
            else:
                assert got == value
    finally:
        client.disconnect()


def test_answers_that_are_not_json_still_fail_cleanly(skyrelay_server_factory):
    def register(server):
        @server.on("bad")
        def bad(conn, data):
            return {"x": float("nan")} if data == "nan" else {1: "int key"}

    server = _server(skyrelay_server_factory, register)
    with websockets.sync.client.connect(server.url) as ws:
        json.loads(ws.recv(timeout=5))
        ws.send(json.dumps({"type": "request", "id": "1", "event": "bad", "data": "nan"}))
        r = json.loads(ws.recv(timeout=5))
        assert r["ok"] is False and r["error"]["code"] == "handler_error"
        ws.send(json.dumps({"type": "request", "id": "2", "event": "bad", "data": "key"}))
        r = json.loads(ws.recv(timeout=5))
        assert r == {"type": "response", "id": "2", "ok": True, "data": {"1": "int key"}}
