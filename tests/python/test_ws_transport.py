"""One WebSocket transport, two protocols on it (issue 14, item 3): `/ws` speaks the JSON protocol
through its handler (net/json_ws_handler), `/socket.io/` Engine.IO through its own (eio_session).
The framing, its limits, ping/pong heartbeats and the close handshake belong to the transport
(net/ws_session), so they must answer alike on both endpoints; and the JSON protocol, now a
handler, must answer as it did. Real clients on 127.0.0.1: websockets for the JSON protocol, a raw
socket client (wsraw.py) for what well-behaved clients never send. Every read is bounded."""

from __future__ import annotations

import contextlib
import json
import struct
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from wsraw import RawClient, frame

from skyrelay.testing import metric, wait_until

ENDPOINTS = {"json": "/ws", "engineio": "/socket.io/?EIO=4&transport=websocket"}


@contextlib.contextmanager
def opened(server, kind: str) -> Iterator[RawClient]:
    """A raw client on `kind`'s endpoint, past the protocol's first message; closed on exit."""
    raw = RawClient(server.port, ENDPOINTS[kind])
    try:
        assert raw.status == 101
        op, first = raw.read_frame()
        assert op == 0x1
        if kind == "json":
            assert json.loads(first)["type"] == "welcome"
        else:
            assert first.startswith(b"0{"), first  # the Engine.IO open packet
        yield raw
    finally:
        raw.close()


def echo_of_size(kind: str, n: int) -> tuple[bytes, bytes]:
    """A text message of exactly `n` bytes that the protocol answers, and the start of its
    answer: a padded JSON-protocol ping (pong) or an Engine.IO ping packet ("3" + its data)."""
    if kind == "json":
        text = json.dumps({"type": "ping", "id": ""})
        return text.replace('""', '"' + "x" * (n - len(text)) + '"').encode(), b'{"type":"pong"'
    return b"2" + b"x" * (n - 1), b"3" + b"x" * (n - 1)


def limit_hits(server, limit: str) -> float:
    return metric(server, f'skyrelay_limit_hits_total{{limit="{limit}"}}')


@pytest.mark.parametrize("kind", ENDPOINTS)
def test_max_message_size_is_the_transports_for_both_handlers(skyrelay_server_factory, kind):
    server = skyrelay_server_factory(max_message_size=1024)
    with opened(server, kind) as raw:
        message, answer = echo_of_size(kind, 1024)
        raw.send(frame(0x1, message))
        op, reply = raw.read_frame()
        assert op == 0x1 and reply.startswith(answer), reply[:40]
        before = limit_hits(server, "message_size")
        message, _ = echo_of_size(kind, 1025)
        raw.send(frame(0x1, message))
        code, frames = raw.read_until_close()
        assert code == 1009, frames  # docs/protocol.md: over max_message_size
        assert frames == []  # the handler never saw it
        assert wait_until(lambda: limit_hits(server, "message_size") == before + 1, 5)


@pytest.mark.parametrize("kind", ENDPOINTS)
@pytest.mark.parametrize("name, data, code", [
    ("fragments over the limit", frame(0x1, b"2" + b"x" * 700, fin=False) +
     frame(0x0, b"x" * 700), 1009),
    ("declared 1 GiB", bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 1 << 30) + b"mask", 1009),
    ("invalid UTF-8", frame(0x1, b"2\xc0\xaf"), 1007),
    ("unmasked", frame(0x1, b"2", masked=False), 1002),
    ("reserved opcode", frame(0x3, b""), 1002),
    ("RSV bit without an extension", frame(0x1, b"2", rsv=0x40), 1002),
    ("control frame too long", frame(0x9, b"p" * 126), 1002),
])
def test_framing_violations_close_alike(skyrelay_server_factory, kind, name, data, code):
    server = skyrelay_server_factory(max_message_size=1024)
    with opened(server, kind) as raw:
        raw.send(data)
        got, frames = raw.read_until_close()
        assert got == code, (name, frames)


@pytest.mark.parametrize("kind", ENDPOINTS)
def test_pings_and_close_are_answered_by_the_transport(skyrelay_server, kind):
    with opened(skyrelay_server, kind) as raw:
        raw.send(frame(0x9, b"are you there"))
        assert raw.read_frame() == (0xA, b"are you there")
        raw.send_close(1000, "bye")
        code, frames = raw.read_until_close()
        assert code == 1000, frames
        assert raw.read_frame(timeout=5) is None  # then the server hangs up


@pytest.mark.parametrize("kind", ENDPOINTS)
def test_heartbeat_ping_then_4000_for_both_handlers(skyrelay_server_factory, kind):
    server = skyrelay_server_factory(heartbeat_interval=0.3, heartbeat_timeout=0.3)
    with opened(server, kind) as raw:
        first = raw.read_frame(timeout=5)
        assert first == (0x9, b""), first  # the transport's ping when the peer is quiet
        code, frames = raw.read_until_close(timeout=5)  # no pong: the peer is taken for dead
        assert code == 4000, frames


@pytest.mark.parametrize("kind", ENDPOINTS)
def test_a_pong_keeps_the_connection(skyrelay_server_factory, kind):
    server = skyrelay_server_factory(heartbeat_interval=0.3, heartbeat_timeout=0.3)
    with opened(server, kind) as raw:
        for _ in range(3):  # three rounds, each past what the timeout alone would allow
            assert raw.read_frame(timeout=5) == (0x9, b"")
            raw.send_pong()
        message, answer = echo_of_size(kind, 64)
        raw.send(frame(0x1, message))
        op, reply = raw.read_frame()
        while op == 0x9:  # a ping may come first; answer it like the loop above
            raw.send_pong()
            op, reply = raw.read_frame()
        assert op == 0x1 and reply.startswith(answer)


def test_json_protocol_answers_as_before_over_websockets(skyrelay_server_factory):
    """The JSON protocol as a handler: welcome first, /ws/<topic> subscribed next, then every
    client message's answer and error, binary refused, the connection kept after each error."""
    server = skyrelay_server_factory(heartbeat_interval=12.5, inbound_rate=1000.0,
                                     inbound_burst=1000.0)
    server.on("add")(lambda conn, data: data["a"] + data["b"])
    url = f"ws://127.0.0.1:{server.port}/ws/news"
    with connect(url, open_timeout=5, close_timeout=5) as ws:
        def frame_json():
            return json.loads(ws.recv(timeout=5))

        welcome = frame_json()
        assert welcome["type"] == "welcome" and welcome["heartbeat_ms"] == 12500
        assert len(welcome["sid"]) == 16
        subscribed = frame_json()
        assert (subscribed["type"], subscribed["topic"], subscribed["seq"]) == (
            "subscribed", "news", 0)
        assert server.rooms(welcome["sid"]) == ["news"]

        ws.send("{not json")
        assert frame_json()["code"] == "bad_json"
        ws.send(json.dumps({"type": "dance", "id": "d"}))
        err = frame_json()
        assert (err["type"], err["code"], err["ref"]) == ("error", "unknown_type", "d")
        ws.send(b"\x00\x01")
        assert frame_json()["code"] == "binary_not_supported"
        ws.send(json.dumps({"type": "subscribe", "topics": ["a", "b"], "id": 1}))
        assert frame_json()["type"] == "subscribed"
        ws.send(json.dumps({"type": "unsubscribe", "topic": "news"}))
        assert frame_json() == {"type": "unsubscribed", "topic": "news"}
        assert server.rooms(welcome["sid"]) == ["a", "b"]
        ws.send(json.dumps({"type": "request", "id": "r1", "event": "nobody"}))
        response = frame_json()
        assert (response["type"], response["id"], response["ok"]) == ("response", "r1", False)
        assert response["error"]["code"] == "unknown_event"
        ws.send(json.dumps({"type": "request", "id": 5, "event": "add", "data": {"a": 2, "b": 3}}))
        assert frame_json() == {"type": "response", "id": 5, "ok": True, "data": 5}
        server.emit("tick", {"n": 1}, to="b")
        event = frame_json()
        assert (event["type"], event["event"], event["topic"], event["data"]) == (
            "event", "tick", "b", {"n": 1})
        ws.send(json.dumps({"type": "ping", "id": 9}))
        assert frame_json()["type"] == "pong"
        ws.close(1000)
    assert ws.close_code == 1000


def test_json_protocol_rate_limit_and_forbidden_topic(skyrelay_server_factory):
    server = skyrelay_server_factory(inbound_rate=0.001, inbound_burst=2.0,
                                     client_topics=["open.*"])
    with connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=5) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "welcome"
        ws.send(json.dumps({"type": "subscribe", "topic": "secret", "id": "s"}))
        err = json.loads(ws.recv(timeout=5))
        assert (err["code"], err["ref"]) == ("forbidden", "s")
        ws.send(json.dumps({"type": "subscribe", "topic": "open.1"}))
        assert json.loads(ws.recv(timeout=5))["type"] == "subscribed"
        ws.send(json.dumps({"type": "request", "id": "r", "event": "x"}))  # over the burst
        response = json.loads(ws.recv(timeout=5))
        assert (response["type"], response["ok"]) == ("response", False)
        assert response["error"]["code"] == "rate_limited"
        ws.send(json.dumps({"type": "ping"}))  # pings are not rate limited
        assert json.loads(ws.recv(timeout=5))["type"] == "pong"


def test_oversize_message_closes_a_websockets_client_with_1009(skyrelay_server_factory):
    server = skyrelay_server_factory(max_message_size=1024)
    with connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=5,
                 max_size=None) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "welcome"
        ws.send("x" * 1025)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
