"""The abuse battery: while well-behaved subscribers (a WebSocket and an SSE stream) receive a
steady stream, other clients send malformed and fragmented frames, invalid UTF-8, huge frames,
slowloris headers, oversized headers and bodies, malformed Engine.IO packets, floods of
messages, connect and say nothing, stop reading, or leave half-open connections behind. The
server stays up, closes each offender with its documented code, the well-behaved clients get
every message meant for them, in order, and memory stays within a bound computed from the
configured limits. A second test holds 5,000 idle connections and checks memory per
connection."""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time

import httpx
import pytest
from httpraw import read_head
from sse_client import Stream
from wsraw import RawClient, frame

from skyrelay.testing import connect, metric, wait_until


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def close_code_of(c: RawClient, timeout: float = 5.0) -> int | None:
    """Reads until the server's close frame (its code) or the end of the connection (None)."""
    c.sock.settimeout(timeout)
    data = c.buf
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Parse frames in `data`; return the code of a close frame.
        while len(data) >= 2:
            op, n = data[0] & 0x0F, data[1] & 0x7F
            at = 2
            if n == 126:
                if len(data) < 4:
                    break
                n, at = struct.unpack("!H", data[2:4])[0], 4
            elif n == 127:
                if len(data) < 10:
                    break
                n, at = struct.unpack("!Q", data[2:10])[0], 10
            if len(data) < at + n:
                break
            if op == 0x8:
                return struct.unpack("!H", data[at:at + 2])[0] if n >= 2 else 1005
            data = data[at + n:]
        try:
            chunk = c.sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return None
        if not chunk:
            return None
        data += chunk
    return None


def slowloris(port: int, results: list) -> None:
    """Sends a request header one byte at a time, never finishing it."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(0.1)
    start = time.monotonic()
    header = b"GET /ws HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 1000
    try:
        for b in header:
            s.sendall(bytes([b]))
            try:
                if s.recv(1024) == b"":
                    break  # the server hung up
            except TimeoutError:
                pass
            except ConnectionResetError:
                break
            if time.monotonic() - start > 10:
                break
    except (BrokenPipeError, ConnectionResetError):
        pass
    results.append(time.monotonic() - start)
    s.close()


# Malformed frames, each with the close code it must get (RFC 6455 and docs/protocol.md).
OFFENDERS = [
    ("unmasked", frame(0x1, b"{}", masked=False), 1002),
    ("reserved bits", frame(0x1, b"{}", rsv=0x40), 1002),
    ("unknown opcode", frame(0x3, b""), 1002),
    ("non-minimal length", bytes([0x81, 0x80 | 126, 0, 5]) + b"\x00" * 4 + b"hello", 1002),
    ("length with the top bit set", bytes([0x81, 0xFF]) + struct.pack("!Q", 1 << 63) + b"mask",
     1002),
    ("control frame too long", frame(0x9, b"p" * 126), 1002),
    ("fragmented ping", frame(0x9, b"", fin=False), 1002),
    ("continuation first", frame(0x0, b"x"), 1002),
    ("new message inside a fragmented one", frame(0x1, b"{", fin=False) + frame(0x1, b"}"), 1002),
    ("a ping inside a fragmented message, then a bad continuation",
     frame(0x1, b'{"type":', fin=False) + frame(0x9, b"hi") + frame(0x1, b'"ping"}'), 1002),
    ("invalid UTF-8", frame(0x1, b"\xff\xfe\xfd"), 1007),
    ("invalid UTF-8 across fragments", frame(0x1, b'"\xe2\x82', fin=False) + frame(0x0, b'\x28"'),
     1007),
    ("declared 4 EiB", bytes([0x81, 0xFF]) + struct.pack("!Q", 1 << 62) + b"mask", 1009),
    ("over max_message_size", frame(0x1, b"x" * 5000), 1009),
    ("over max_message_size in fragments",
     frame(0x1, b"x" * 3000, fin=False) + frame(0x0, b"x" * 3000), 1009),
]

LIMITS = dict(handshake_timeout=1.0, heartbeat_interval=0.5, heartbeat_timeout=0.5,
              max_connections_per_ip=0, max_message_size=4096, max_header_size=4096,
              max_body_size=4096, outbox_max_bytes=128 * 1024, outbox_max_frames=256,
              history_size=100)
BULK = "x" * 16_000  # the payload of the topic nobody reads
MAX_CONNECTIONS_AT_ONCE = 150  # what the battery opens at most at one time (see below)


def memory_bound() -> int:
    """What the server may hold, from its configured limits: per connection a full outbox and
    a message being reassembled, plus the history of the two topics, plus a fixed allowance for
    the interpreter's and the server's threads and allocator arenas."""
    per_connection = LIMITS["outbox_max_bytes"] + LIMITS["max_message_size"] + 16 * 1024
    history = LIMITS["history_size"] * (len(BULK) + 256) * 2
    return 64 * 1024 * 1024 + MAX_CONNECTIONS_AT_ONCE * per_connection + history


@pytest.mark.timeout(150)
def test_the_server_shrugs_off_abuse_and_loses_nothing(skyrelay_server_factory):
    server = skyrelay_server_factory(**LIMITS)
    server.on("noop", lambda conn, data: None)
    port = server.port
    base_rss = rss_bytes()
    peak_rss = [base_rss]
    good = connect(f"ws://127.0.0.1:{port}/ws")
    good.subscribe("feed")
    sse = Stream(f"http://127.0.0.1:{port}/sse/feed")
    sse.next_event("welcome")
    wait_until(lambda: server.room_size("feed") == 2)
    total = 2000
    stop = threading.Event()

    def publish():
        for i in range(total):
            server.emit("tick", {"i": i}, to="feed")
            time.sleep(0.002)
        stop.set()

    codes: dict[str, list] = {name: [] for name, _, _ in OFFENDERS}
    reassembled: list[bool] = []
    slow: list[float] = []
    half_open: list[RawClient] = []
    http_answers: dict[str, list] = {"431": [], "413": [], "eio_400": [], "eio_413": []}
    mute_closed: list[bool] = []
    stalled_gone: list[bool] = []
    flood_refused: list[int] = []
    flood_served: list[bool] = []

    def abuse():
        rounds = 0
        while not stop.is_set() and rounds < 100:
            rounds += 1
            for name, data, _ in OFFENDERS:
                c = RawClient(port)
                c.send(data)
                codes[name].append(close_code_of(c))
                c.sock.close()
            # A valid fragmented request with a ping between its fragments is answered.
            with RawClient(port) as c:
                assert json.loads(c.read_frame()[1])["type"] == "welcome"
                c.send(frame(0x1, b'{"type":"pi', fin=False) + frame(0x9, b"mid") +
                       frame(0x0, b'ng","id":', fin=False) + frame(0x0, b'"frag"}'))
                control, answer = c.read_frame(), c.read_frame()
                pong = json.loads(answer[1]) if answer else {}
                reassembled.append(control == (0xA, b"mid") and
                                   (pong.get("type"), pong.get("id")) == ("pong", "frag"))

    def http_abuse():
        for _ in range(20):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 8000 + b"\r\n\r\n")
                http_answers["431"].append(read_head(s).split(b" ")[1])
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"POST /anything HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
                http_answers["413"].append(read_head(s).split(b" ")[1])
            # Engine.IO: a session, then a malformed polling payload and one over the body limit.
            url = f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling"
            sid = json.loads(httpx.get(url, timeout=5).text[1:])["sid"]
            r = httpx.post(f"{url}&sid={sid}", content=b"\x00\xffnot a packet", timeout=5)
            http_answers["eio_400"].append(r.status_code)
            # (Raw, headers only: the server answers 413 on the Content-Length alone.)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n"
                          f"Host: x\r\nContent-Length: 10000\r\n\r\n".encode())
                http_answers["eio_413"].append(int(read_head(s).split(b" ")[1]))
            if stop.is_set():
                break

    def say_nothing():
        # Connect, send nothing: each is cut at the handshake timeout without an answer.
        socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(20)]
        for s in socks:
            try:
                mute_closed.append(s.recv(1) == b"")
            except (TimeoutError, ConnectionResetError):
                mute_closed.append(False)
            s.close()

    def stop_reading():
        # A WebSocket subscriber and an SSE stream that stop reading while their topic gets
        # 16 KB events: once the kernel buffers are full their outboxes overflow and they are
        # closed as slow consumers; nobody else notices.
        ws = RawClient(port, "/ws/bulk", rcvbuf=4096, timeout=10)
        stream = socket.socket()
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stream.connect(("127.0.0.1", port))
        stream.sendall(b"GET /sse/bulk HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(lambda: server.room_size("bulk") == 2)
        for i in range(2000):  # at most 32 MB
            server.emit("bulk", BULK, to="bulk")
            if server.room_size("bulk") == 0:
                break
            time.sleep(0.0005)
        stalled_gone.append(wait_until(lambda: server.room_size("bulk") == 0, timeout=10))
        ws.close()
        stream.close()

    def flood():
        # As fast as the server answers: batches of 100 events, each followed by a ping whose
        # pong says every reply before it arrived (a flooder that does not read its
        # rate_limited replies is cut as a slow consumer instead, as any non-reader is).
        with connect(f"ws://127.0.0.1:{port}/ws") as c:
            for batch in range(200):
                for i in range(100):
                    c.send({"type": "event", "event": "noop", "data": i})
                c.send({"type": "ping"})
                c.expect_frame("pong", timeout=10)
                flood_refused.append(sum(1 for f in c.received()
                                         if f.get("code") == "rate_limited"))
                if stop.is_set():
                    break
            flood_served.append(c.ping()["type"] == "pong")  # still served after its flood

    def leave_half_open():
        for _ in range(50):  # handshake, then silence: no reads, no pongs
            half_open.append(RawClient(port))

    threads = [threading.Thread(target=f) for f in
               (publish, abuse, http_abuse, say_nothing, stop_reading, flood, leave_half_open)]
    threads += [threading.Thread(target=slowloris, args=(port, slow)) for _ in range(30)]
    for t in threads:
        t.start()
    seen, seen_sse = [], []
    deadline = time.monotonic() + 60
    try:
        while len(seen) < total and time.monotonic() < deadline:
            seen.append(good.expect_event("tick", timeout=10)["data"]["i"])
            if len(seen) % 50 == 0:
                peak_rss[0] = max(peak_rss[0], rss_bytes())
        while len(seen_sse) < total and time.monotonic() < deadline:
            seen_sse.append(json.loads(sse.next_event("tick", timeout=10).data)["i"])
        for t in threads:
            t.join(60)
        peak_rss[0] = max(peak_rss[0], rss_bytes())

        assert seen == list(range(total))  # every message, in order, exactly once
        assert seen_sse == list(range(total))
        for name, _, expected in OFFENDERS:
            assert codes[name] and set(codes[name]) == {expected}, (name, set(codes[name]))
        assert reassembled and all(reassembled)
        # Slowloris headers were cut by the handshake timeout, not kept open.
        assert len(slow) == 30 and max(slow) < 5.0, max(slow)
        assert http_answers["431"] and set(http_answers["431"]) == {b"431"}
        assert http_answers["413"] and set(http_answers["413"]) == {b"413"}
        assert http_answers["eio_400"] and set(http_answers["eio_400"]) == {400}
        assert http_answers["eio_413"] and set(http_answers["eio_413"]) == {413}
        assert mute_closed == [True] * 20
        assert stalled_gone == [True]
        # The flood met the inbound rate limit, was told so, and was still served afterwards.
        assert flood_served == [True] and sum(flood_refused) > 1000, sum(flood_refused)
        assert metric(server, 'skyrelay_limit_hits_total{limit="inbound_rate"}') == \
            sum(flood_refused)
        for limit in ("message_size", "header_size", "body_size", "handshake_timeout", "outbox"):
            assert metric(server, f'skyrelay_limit_hits_total{{limit="{limit}"}}') > 0, limit
        assert metric(server, 'skyrelay_disconnects_total{reason="slow_consumer"}') == 2
        # Half-open connections were closed by the heartbeat.
        wait_until(lambda: server.connection_count == 2, timeout=10)
        assert metric(server, 'skyrelay_disconnects_total{reason="heartbeat_timeout"}') >= 50
        assert good.ping()["type"] == "pong"
        # Both ends live in this process: the bound covers the server's configured limits
        # and the test's own threads.
        assert peak_rss[0] - base_rss < memory_bound(), (peak_rss[0] - base_rss, memory_bound())
    finally:
        stop.set()
        for c in half_open:
            c.sock.close()
        good.close()
        sse.close()


@pytest.mark.timeout(180)
def test_five_thousand_idle_connections(skyrelay_server_factory):
    """5,000 idle WebSocket connections cost little memory each, and a broadcast still reaches
    every one of them and the subscriber that is actually listening."""
    server = skyrelay_server_factory(max_connections_per_ip=0)
    port = server.port
    before = rss_bytes()
    idle = []
    try:
        for _ in range(5000):
            idle.append(RawClient(port))
        wait_until(lambda: server.connection_count == 5000, timeout=30)
        per_connection = (rss_bytes() - before) / 5000
        # Both ends live in this process (the client sockets are tiny Python objects).
        # About 4 KiB measured here; the bound leaves room for allocator noise.
        assert per_connection < 16 * 1024, per_connection
        with connect(f"ws://127.0.0.1:{port}/ws") as good:
            assert server.emit("hello", "everyone") == 5001
            assert good.expect("hello") == "everyone"
            for c in idle[::500]:  # a sample of the idle ones got it too
                c.sock.settimeout(5)
                data = c.buf
                while b"everyone" not in data:
                    data += c.sock.recv(65536)
    finally:
        for c in idle:
            c.sock.close()
    wait_until(lambda: server.connection_count == 0, timeout=30)
