"""Connection and room limits: each refusal is a clear answer (HTTP 503 with a JSON body, or a
too_many_rooms error frame), is counted, and frees nothing it should not; slots come back when
connections end."""

from __future__ import annotations

import json
import socket
import time

import pytest

from skyrelay.testing import ResponseError, connect, metric, wait_until


def refused_answer(port: int) -> tuple[int, dict, dict]:
    """Opens a raw TCP connection and reads what the server says without being asked."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), fields, json.loads(body)


def test_connections_per_ip(skyrelay_server_factory):
    server = skyrelay_server_factory(max_connections_per_ip=4, limit_loopback=True)
    url = f"ws://127.0.0.1:{server.port}/ws"
    clients = [connect(url) for _ in range(4)]
    try:
        # (Read with a raw socket: the answer comes before the request is read, which the
        # websockets client sometimes trips over while it is still sending its handshake.)
        status, fields, body = refused_answer(server.port)
        assert status == 503 and fields["Retry-After"] == "1"
        assert body == {"error": "too_many_connections",
                        "message": "too many connections from this address"}
        assert metric(server, 'skyrelay_connections_refused_total{limit="per_ip"}') == 1
        for c in clients:  # the admitted ones are untouched
            assert c.ping()["type"] == "pong"
        clients.pop().close()
        wait_until(lambda: server.connection_count == 3)
        clients.append(connect(url))  # the slot came back
        assert clients[-1].ping()["type"] == "pong"
    finally:
        for c in clients:
            c.close()


def test_total_connections_count_every_kind(skyrelay_server_factory):
    server = skyrelay_server_factory(max_connections=3)
    ws = connect(f"ws://127.0.0.1:{server.port}/ws")
    sse = socket.create_connection(("127.0.0.1", server.port))
    sse.sendall(b"GET /sse/a HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"event: welcome" in sse.recv(65536)
    idle_http = socket.create_connection(("127.0.0.1", server.port))  # no request yet
    try:
        # (No /metrics request while full: it would be a connection too.)
        wait_until(lambda: server.connection_count == 2)
        status, _, body = refused_answer(server.port)
        assert status == 503 and body["message"] == "the server is at its connection limit"
        sse.close()  # its slot comes back: a new connection is admitted

        def admitted():
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return s.recv(65536).startswith(b"HTTP/1.1 200")
        wait_until(admitted)
        idle_http.close()
        assert ws.ping()["type"] == "pong"
        assert metric(server, 'skyrelay_connections_refused_total{limit="total"}') >= 1
    finally:
        ws.close()
        sse.close()
        idle_http.close()


def test_rooms_per_connection(skyrelay_server_factory, skyrelay_client):
    server = skyrelay_server_factory(max_rooms_per_connection=3)
    c = skyrelay_client(server)
    c.subscribe("a", "b")
    c.send({"type": "subscribe", "topics": ["c", "d"], "id": 7})  # all or nothing
    err = c.expect_frame("error")
    assert (err["code"], err["ref"]) == ("too_many_rooms", 7)
    assert "3 topics" in err["message"]
    assert server.rooms(c.sid) == ["a", "b"]
    c.subscribe("c")
    c.subscribe("a", "b", "c")  # nothing new: fine
    c.send({"type": "subscribe", "topic": "d"})
    assert c.expect_frame("error")["code"] == "too_many_rooms"
    assert server.join(c.sid, "d") is False  # the application's joins obey it too
    c.unsubscribe("a")
    assert server.join(c.sid, "d") is True
    assert server.rooms(c.sid) == ["b", "c", "d"]
    assert c.ping()["type"] == "pong"


def test_inbound_rate_per_connection(skyrelay_server_factory, skyrelay_client):
    """The default token bucket (10 messages/s, burst 20): the 21st message in a burst is
    refused with rate_limited (a request gets it as its response), pings are never limited,
    tokens come back with time, and other connections are not affected."""
    server = skyrelay_server_factory()
    got = []
    server.on("n", lambda conn, data: got.append(data))
    server.on("ask", lambda conn, data: data)
    a, b = skyrelay_client(server), skyrelay_client(server)
    for i in range(20):
        a.emit("n", i)
    a.send({"type": "event", "event": "n", "data": 20, "id": "over"})
    err = a.expect_frame("error")
    assert (err["code"], err["ref"]) == ("rate_limited", "over")
    assert "retry in" in err["message"]
    with pytest.raises(ResponseError) as refused:
        a.request("ask", 1)
    assert refused.value.code == "rate_limited"
    assert a.ping()["type"] == "pong"  # pings are free
    assert b.request("ask", "b") == "b"  # the limit is per connection
    wait_until(lambda: len(got) == 20)
    assert got == list(range(20))
    time.sleep(0.25)  # 10/s: two tokens back
    assert a.request("ask", 2) == 2
    assert metric(server, 'skyrelay_drops_total{reason="rate_limited"}') == 2


def test_an_event_can_have_its_own_rate(skyrelay_server_factory, skyrelay_client):
    def configure(server):
        server.on("telemetry", lambda conn, data: None, rate=(1000, 500))
        server.on("ask", lambda conn, data: data)

    server = skyrelay_server_factory(configure, inbound_rate=1, inbound_burst=2)
    c = skyrelay_client(server)
    for i in range(300):  # far past the connection's own limit, within the event's
        c.emit("telemetry", i)
    assert c.request("ask", 1) == 1
    assert c.request("ask", 2) == 2
    with pytest.raises(ResponseError):
        c.request("ask", 3)  # the connection's bucket (burst 2) is spent
    c.expect_nothing(0.2, "error")  # no telemetry event was refused


def test_no_inbound_limit(skyrelay_server_factory, skyrelay_client):
    server = skyrelay_server_factory(inbound_rate=0)
    server.on("ask", lambda conn, data: data)
    c = skyrelay_client(server)
    for i in range(100):
        c.emit("ask", i)
    assert c.request("ask", "last") == "last"
    with pytest.raises(ValueError):
        server.on("x", lambda conn, data: None, rate=(1, 0))


def test_new_connections_per_second_per_ip(skyrelay_server_factory):
    server = skyrelay_server_factory(new_connections_per_ip=(2, 5), limit_loopback=True)
    for _ in range(5):  # the burst
        with connect(f"ws://127.0.0.1:{server.port}/ws") as c:
            assert c.ping()["type"] == "pong"
    status, _, body = refused_answer(server.port)
    assert status == 503 and "slow down" in body["message"]
    time.sleep(0.6)  # 2 per second: one back
    with connect(f"ws://127.0.0.1:{server.port}/ws") as c:
        assert c.ping()["type"] == "pong"
    assert metric(server, 'skyrelay_connections_refused_total{limit="new_per_ip"}') == 1


def test_loopback_is_exempt_from_per_ip_limits_by_default(skyrelay_server_factory):
    """Behind a reverse proxy on the same host every client comes from 127.0.0.1."""
    server = skyrelay_server_factory(max_connections_per_ip=2, new_connections_per_ip=(1, 1))
    clients = [connect(f"ws://127.0.0.1:{server.port}/ws") for _ in range(5)]
    try:
        assert all(c.ping()["type"] == "pong" for c in clients)
    finally:
        for c in clients:
            c.close()
