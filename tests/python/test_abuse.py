"""The abuse battery: while a well-behaved subscriber receives a steady stream, other clients
send malformed and fragmented frames, invalid UTF-8, huge frame headers, slowloris headers,
floods of messages, and leave half-open connections behind. The server stays up, closes each
offender with its documented code, and the well-behaved client gets every message meant for it,
in order. A second test holds 5,000 idle connections and checks memory per connection."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

import pytest
from wsraw import RawClient, frame

from skyrelay.testing import connect, wait_until


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


@pytest.mark.timeout(120)
def test_the_server_shrugs_off_abuse_and_loses_nothing(skyrelay_server_factory):
    server = skyrelay_server_factory(handshake_timeout=1.0, heartbeat_interval=0.5,
                                     heartbeat_timeout=0.5, max_connections_per_ip=0)
    server.on("noop", lambda conn, data: None)
    port = server.port
    good = connect(f"ws://127.0.0.1:{port}/ws")
    good.subscribe("feed")
    total = 2000
    stop = threading.Event()

    def publish():
        for i in range(total):
            server.emit("tick", {"i": i}, to="feed")
            time.sleep(0.002)
        stop.set()

    codes: dict[str, list] = {k: [] for k in ("protocol", "utf8", "huge", "fragments")}
    slow: list[float] = []
    half_open: list[RawClient] = []

    def abuse():
        rounds = 0
        while not stop.is_set() and rounds < 200:
            rounds += 1
            c = RawClient(port)
            c.send(frame(0x1, b"{}", masked=False))  # unmasked: 1002
            codes["protocol"].append(close_code_of(c))
            c.sock.close()
            c = RawClient(port)
            c.send(frame(0x1, b"\xff\xfe\xfd"))  # not UTF-8: 1007
            codes["utf8"].append(close_code_of(c))
            c.sock.close()
            c = RawClient(port)
            c.send(bytes([0x81, 0xFF]) + struct.pack("!Q", 1 << 62) + b"mask")  # 4 EiB: 1009
            codes["huge"].append(close_code_of(c))
            c.sock.close()
            c = RawClient(port)  # a ping inside a fragmented message, then a bad continuation
            c.send(frame(0x1, b'{"type":', fin=False) + frame(0x9, b"hi") +
                   frame(0x1, b'"ping"}'))
            codes["fragments"].append(close_code_of(c))
            c.sock.close()

    def flood():
        with connect(f"ws://127.0.0.1:{port}/ws") as c:
            for i in range(20_000):
                c.send({"type": "event", "event": "noop", "data": i})
                if stop.is_set():
                    break
            assert c.ping()["type"] == "pong"  # still served after its own flood

    def leave_half_open():
        for _ in range(50):  # handshake, then silence: no reads, no pongs
            half_open.append(RawClient(port))

    threads = [threading.Thread(target=publish), threading.Thread(target=abuse),
               threading.Thread(target=flood), threading.Thread(target=leave_half_open)]
    threads += [threading.Thread(target=slowloris, args=(port, slow)) for _ in range(30)]
    for t in threads:
        t.start()
    seen = []
    deadline = time.monotonic() + 60
    while len(seen) < total and time.monotonic() < deadline:
        seen.append(good.expect_event("tick", timeout=10)["data"]["i"])
    for t in threads:
        t.join(60)
    try:
        assert seen == list(range(total))  # every message, in order, exactly once
        for kind, expected in (("protocol", 1002), ("utf8", 1007), ("huge", 1009),
                               ("fragments", 1002)):
            assert codes[kind] and set(codes[kind]) == {expected}, (kind, set(codes[kind]))
        # Slowloris headers were cut by the handshake timeout, not kept open.
        assert len(slow) == 30 and max(slow) < 5.0, max(slow)
        # Half-open connections were closed by the heartbeat.
        wait_until(lambda: server.connection_count == 1, timeout=10)
        assert good.ping()["type"] == "pong"
    finally:
        for c in half_open:
            c.sock.close()
        good.close()


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
