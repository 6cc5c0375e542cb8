"""Every configured limit: each refusal is a clear answer (an HTTP status with a JSON body, a
close code, or an error frame), is counted in skyrelay_limit_hits_total{limit} (read here from
GET /metrics) as well as in its own family, and frees nothing it should not; slots come back
when connections end. The idle timeout closes keep-alive HTTP connections and silent
WebSockets."""

from __future__ import annotations

import json
import socket
import time

import pytest

from httpraw import read_to_close
from wsraw import RawClient, frame

from skyrelay import Server
from skyrelay.testing import ResponseError, connect, metric, wait_until

# The label of every configured limit in skyrelay_limit_hits_total (docs/architecture.md).
LIMITS = ("message_size", "header_size", "body_size", "handshake_timeout", "idle_timeout",
          "outbox", "connections_total", "connections_per_ip", "new_connections_per_ip",
          "rooms_per_connection", "inbound_rate", "sessions_total", "sessions_per_ip",
          "new_sessions_per_ip", "attachments", "attachment_bytes", "write_timeout",
          "recovery")


def scrape(port: int) -> dict[str, float]:
    """Every sample of GET /metrics, by name with its labels."""
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    head, _, body = read_to_close(port, request).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    samples = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, v = line.rpartition(" ")
            samples[name] = float(v)
    return samples


def hits(port: int, limit: str) -> float:
    return scrape(port)[f'skyrelay_limit_hits_total{{limit="{limit}"}}']


def http_exchange(s: socket.socket, request: bytes) -> bytes:
    """Sends one request on a kept-alive connection and reads one response (Content-Length)."""
    s.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, "the server hung up"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        body += s.recv(65536)
    return head


def refused_answer(port: int) -> tuple[int, dict, dict]:
    """Opens a raw TCP connection and reads what the server says without being asked."""
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    head, _, body = read_to_close(port, request).partition(b"\r\n\r\n")
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
        assert metric(server, 'skyrelay_limit_hits_total{limit="connections_per_ip"}') == 1
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
        assert metric(server, 'skyrelay_limit_hits_total{limit="connections_total"}') >= 1
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
    """A token bucket of burst 20: the 21st message in a burst is refused with rate_limited (a
    request gets it as its response), pings are never limited, tokens come back with time, and
    other connections are not affected. (At 1 message/s rather than the default 10: the burst
    and the refused request, two round trips, must fit between two refills on a busy machine.)"""
    server = skyrelay_server_factory(inbound_rate=1, inbound_burst=20)
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
    time.sleep(1.05)  # 1/s: one token back
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
    # 1 per second: the burst of five and the refused one must fit between two refills.
    server = skyrelay_server_factory(new_connections_per_ip=(1, 5), limit_loopback=True)
    for _ in range(5):  # the burst
        with connect(f"ws://127.0.0.1:{server.port}/ws") as c:
            assert c.ping()["type"] == "pong"
    status, _, body = refused_answer(server.port)
    assert status == 503 and "slow down" in body["message"]
    time.sleep(1.05)  # 1 per second: one back
    with connect(f"ws://127.0.0.1:{server.port}/ws") as c:
        assert c.ping()["type"] == "pong"
    assert metric(server, 'skyrelay_connections_refused_total{limit="new_per_ip"}') == 1
    assert hits(server.port, "new_connections_per_ip") == 1


def test_loopback_is_exempt_from_per_ip_limits_by_default(skyrelay_server_factory):
    """Behind a reverse proxy on the same host every client comes from 127.0.0.1."""
    server = skyrelay_server_factory(max_connections_per_ip=2, new_connections_per_ip=(1, 1))
    clients = [connect(f"ws://127.0.0.1:{server.port}/ws") for _ in range(5)]
    try:
        assert all(c.ping()["type"] == "pong" for c in clients)
    finally:
        for c in clients:
            c.close()


def test_every_limit_has_a_series_from_zero(skyrelay_server):
    samples = scrape(skyrelay_server.port)
    series = {k for k in samples if k.startswith("skyrelay_limit_hits_total{")}
    assert series == {f'skyrelay_limit_hits_total{{limit="{name}"}}' for name in LIMITS}
    assert all(samples[k] == 0 for k in series)


# One offence per limit: what the offender is told, and the series that counts it.

def offend_message_size(server):
    with RawClient(server.port) as raw:
        raw.send(frame(0x1, b"x" * 2000))
        assert raw.read_until_close()[0] == 1009


def offend_header_size(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 4000 + b"\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 431")


def offend_body_size(server):
    # Refused on its Content-Length, before the body is read; an Engine.IO poll too.
    for target in (b"/anything", b"/socket.io/?EIO=4&transport=polling&sid=x"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"POST " + target + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n")
            assert s.recv(65536).startswith(b"HTTP/1.1 413")


def offend_handshake_timeout(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost:")  # and nothing more
        assert s.recv(65536) == b""  # cut at handshake_timeout, without an answer


def offend_rooms_per_connection(server):
    with connect(f"ws://127.0.0.1:{server.port}/ws") as c:
        c.send({"type": "subscribe", "topics": ["a", "b"]})  # (one message: the rate is 1)
        assert c.expect_frame("error")["code"] == "too_many_rooms"


def offend_inbound_rate(server):
    with connect(f"ws://127.0.0.1:{server.port}/ws") as c:
        c.subscribe("a")  # the burst of 1
        c.send({"type": "subscribe", "topic": "a"})
        assert c.expect_frame("error")["code"] == "rate_limited"


def offend_outbox(server):
    # A subscriber that stops reading: once the kernel buffers are full its outbox overflows
    # and it is closed as a slow consumer.
    with RawClient(server.port, "/ws/bulk", rcvbuf=4096) as raw:
        wait_until(lambda: server.room_size("bulk") == 1)
        blob = "x" * 60_000
        for i in range(1000):  # at most 60 MB
            server.emit("bulk", blob, to="bulk")
            if i % 10 == 0 and server.room_size("bulk") == 0:
                break
        wait_until(lambda: server.room_size("bulk") == 0, timeout=10)
    assert metric(server, 'skyrelay_disconnects_total{reason="slow_consumer"}') == 1


@pytest.mark.parametrize("limit, offend", [
    ("message_size", offend_message_size),
    ("header_size", offend_header_size),
    ("body_size", offend_body_size),
    ("handshake_timeout", offend_handshake_timeout),
    ("rooms_per_connection", offend_rooms_per_connection),
    ("inbound_rate", offend_inbound_rate),
    ("outbox", offend_outbox),
], ids=lambda v: v if isinstance(v, str) else "")
def test_each_limit_moves_its_metric(skyrelay_server_factory, limit, offend):
    server = skyrelay_server_factory(max_message_size=1024, max_header_size=2048,
                                     max_body_size=1000, handshake_timeout=0.5,
                                     max_rooms_per_connection=1, inbound_rate=0.01,
                                     inbound_burst=1, outbox_max_bytes=64 * 1024,
                                     outbox_max_frames=16, history_size=0)
    before = scrape(server.port)
    offend(server)
    after = scrape(server.port)
    key = f'skyrelay_limit_hits_total{{limit="{limit}"}}'
    assert after[key] - before[key] >= 1, limit
    if limit not in ("body_size", "outbox"):  # (two requests; every frame that met the full
        # outbox until the close took effect)
        assert after[key] - before[key] == 1, (limit, after[key] - before[key])
    # No other limit moved: each series counts its own limit.
    for other in LIMITS:
        if other != limit:
            k = f'skyrelay_limit_hits_total{{limit="{other}"}}'
            assert after[k] == before[k], (limit, other)
    with connect(f"ws://127.0.0.1:{server.port}/ws") as c:  # and the server serves on
        assert c.ping()["type"] == "pong"


def test_a_silent_websocket_is_closed_at_idle_timeout_with_4004(skyrelay_server_factory):
    """Nothing at all from the peer for idle_timeout: close 4004, reason idle_timeout. A peer
    that sends anything (here unsolicited pongs, which RFC 6455 allows) stays. The heartbeat
    (30 s here) never comes into it: idle_timeout caps the silence it would allow."""
    reasons = []

    def configure(server):
        server.on("disconnect", lambda conn, reason: reasons.append(reason))

    # Chatty speaks every 0.2-0.25 s: a loaded machine may pause it for a second without it
    # ever falling silent for idle_timeout.
    server = skyrelay_server_factory(configure, idle_timeout=1.5)
    silent, chatty = RawClient(server.port), RawClient(server.port)
    try:
        assert silent.read_frame()[0] == 0x1 and chatty.read_frame()[0] == 0x1  # welcomes
        code = None
        for _ in range(50):  # at most ~10 s
            chatty.send_pong()
            f = silent.read_frame(timeout=0.2)
            if f is not None and f[0] == 0x8:
                code = int.from_bytes(f[1][:2], "big")
                assert f[1][2:] == b"idle timeout"
                break
        assert code == 4004
        silent.close()  # (the server ends it at once then, without waiting for a close frame)
        for _ in range(13):  # chatty outlives two more idle periods
            chatty.send_pong()
            time.sleep(0.25)
        chatty.send_json({"type": "ping", "id": "alive"})
        op, payload = chatty.read_frame()
        assert json.loads(payload)["type"] == "pong"
        assert server.connection_count == 1
        assert metric(server, 'skyrelay_disconnects_total{reason="idle_timeout"}') == 1
        assert hits(server.port, "idle_timeout") == 1
        wait_until(lambda: reasons == ["idle_timeout"])
    finally:
        silent.close()
        chatty.close()


def test_a_keep_alive_http_connection_without_a_request_is_closed_at_idle_timeout(
        skyrelay_server_factory):
    server = skyrelay_server_factory(idle_timeout=1.5, handshake_timeout=10)
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        assert http_exchange(s, request).startswith(b"HTTP/1.1 200")
        time.sleep(0.2)  # within the idle window: the connection still serves
        assert http_exchange(s, request).startswith(b"HTTP/1.1 200")
        assert s.recv(1) == b""  # then silence: the server hangs up, without an answer
    assert hits(server.port, "idle_timeout") == 1
    assert hits(server.port, "handshake_timeout") == 0


def test_a_request_begun_after_keep_alive_still_has_only_the_handshake_timeout(
        skyrelay_server_factory):
    """The idle wait ends at the next request's first byte; the rest of that request has
    handshake_timeout, so a slow trickle cannot live on idle_timeout."""
    server = skyrelay_server_factory(idle_timeout=30, handshake_timeout=0.5)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        assert http_exchange(s, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
            b"HTTP/1.1 200")
        s.sendall(b"GET /hea")
        assert s.recv(1) == b""  # (a 10 s socket timeout would raise: 30 s would be too long)
    assert hits(server.port, "handshake_timeout") == 1
    assert hits(server.port, "idle_timeout") == 0


def test_idle_timeout_zero_is_off():
    assert Server(idle_timeout=0)._options["idle_timeout_ms"] == 0
    assert Server()._options["idle_timeout_ms"] == 120_000


def test_a_connect_decision_that_takes_too_long_is_a_handshake_timeout(skyrelay_server_factory):
    """The handshake timeout also bounds the wait for the application's connect handler."""
    def configure(server):
        server.on("connect", lambda conn: time.sleep(1.0))

    server = skyrelay_server_factory(configure, handshake_timeout=0.3)
    with pytest.raises(ConnectionError):
        RawClient(server.port)  # closed during the handshake, without an answer
    wait_until(lambda: hits(server.port, "handshake_timeout") == 1)


def test_an_event_rate_in_the_limits_packages_notation(skyrelay_server_factory, skyrelay_client):
    def configure(server):
        server.on("vote", lambda conn, data: data, rate="3/hour")  # a burst of 3, then 1/20 min

    server = skyrelay_server_factory(configure)
    c = skyrelay_client(server)
    assert [c.request("vote", i) for i in range(3)] == [0, 1, 2]
    with pytest.raises(ResponseError) as refused:
        c.request("vote", 3)
    assert refused.value.code == "rate_limited"
    assert skyrelay_client(server).request("vote", "other") == "other"  # per connection
    for bad in ("3/fortnight", "3 per", "0/second", "10/second;100/minute"):
        with pytest.raises(ValueError):
            server.on("x", lambda conn, data: None, rate=bad)
