"""Socket.IO connection state recovery with per-socket offsets (docs/protocol.md): each event a
socket is sent carries, as its last argument, the count of events that socket has been sent
("1", "2", ...), whatever room, broadcast or direct emit it came from; a resume from offset n
replays exactly the events after n that the socket kept, else opens a new socket.

Real sockets on 127.0.0.1: raw Engine.IO/Socket.IO over WebSocket (wsraw) where the test must
choose the offset it resumes from, python-socketio where a stock client is enough."""

from __future__ import annotations

import json
import queue
import socket
from typing import Any

from wsraw import RawClient

from skyrelay.testing import metric, wait_until

# /metrics series this module reads (docs/deployment.md, Metrics).
CLOSED_SOCKETIO = 'skyrelay_connections_closed_total{transport="socketio"}'


def sio_ws(port: int, payload: dict[str, Any] | None = None) -> tuple[RawClient, bytes]:
    """A Socket.IO socket in "/" over a raw WebSocket: the client and the CONNECT answer."""
    c = RawClient(port, "/socket.io/?EIO=4&transport=websocket")
    assert c.read_frame()[1].startswith(b"0{")
    c.send_text("40" + (json.dumps(payload) if payload is not None else ""))
    return c, c.read_frame()[1]


def read_event(c: RawClient) -> list[Any]:
    """The next EVENT's array (name first), skipping Engine.IO pings (answered)."""
    for _ in range(50):
        frame = c.read_frame(timeout=5)
        assert frame is not None, "no event"
        data = frame[1]
        if data == b"2":
            c.send_text("3")
            continue
        assert data.startswith(b"42["), data
        return json.loads(data[2:])
    raise AssertionError("only pings")


def drop(server: Any, c: RawClient) -> None:
    """Cuts the TCP connection without a goodbye: the socket is kept for recovery."""
    closed = metric(server, CLOSED_SOCKETIO)
    c.sock.shutdown(socket.SHUT_RDWR)
    c.close()
    assert wait_until(lambda: metric(server, CLOSED_SOCKETIO) > closed)


def limit_hits(server: Any, limit: str) -> float:
    return metric(server, f'skyrelay_limit_hits_total{{limit="{limit}"}}')


def test_offsets_count_the_events_of_each_socket(skyrelay_server_factory):
    """Rooms, several rooms at once, broadcasts and direct emits all take the socket's next
    offset; two sockets in different rooms count their own events."""
    server = skyrelay_server_factory(recovery_window=30)
    a, hello_a = sio_ws(server.port)
    b, hello_b = sio_ws(server.port)
    sid_a, sid_b = json.loads(hello_a[2:])["sid"], json.loads(hello_b[2:])["sid"]
    server.join(sid_a, "red")
    server.join(sid_a, "blue")
    server.join(sid_b, "blue")
    server.emit("e", 1, to="red")             # a only
    server.emit("e", 2, to=["red", "blue"])   # a once, b
    server.emit("e", 3)                       # everyone
    server.emit("e", 4, to=sid_a)             # a alone
    assert [read_event(a) for _ in range(4)] == [
        ["e", 1, "1"], ["e", 2, "2"], ["e", 3, "3"], ["e", 4, "4"]]
    assert [read_event(b) for _ in range(2)] == [["e", 2, "1"], ["e", 3, "2"]]
    a.close()
    b.close()


def test_a_dropped_socket_in_several_rooms_gets_exactly_what_it_missed(skyrelay_server_factory):
    server = skyrelay_server_factory(recovery_window=30)
    c, hello = sio_ws(server.port)
    info = json.loads(hello[2:])
    sid = info["sid"]
    for room in ("red", "blue", "green"):
        server.join(sid, room)
    server.emit("e", 0, to="red")
    server.emit("e", 1, to=sid)
    first = [read_event(c), read_event(c)]
    assert first == [["e", 0, "1"], ["e", 1, "2"]]
    drop(server, c)
    # Missed: every kind of target, one publication to two of its rooms (once), and a room it
    # is not in (not at all).
    server.emit("e", 2, to="blue")
    server.emit("e", 3, to=["red", "green"])
    server.emit("e", 4, to="elsewhere")
    server.emit("e", 5, to=sid)
    server.emit("e", 6)
    server.emit("e", 7, to="green")
    c, answer = sio_ws(server.port, {"pid": info["pid"], "offset": "2"})
    assert json.loads(answer[2:])["sid"] == sid
    got = [read_event(c) for _ in range(5)]
    assert got == [["e", 2, "3"], ["e", 3, "4"], ["e", 5, "5"], ["e", 6, "6"], ["e", 7, "7"]]
    # Nothing more was replayed, and live events go on from the next offset.
    server.emit("e", 8, to="red")
    assert read_event(c) == ["e", 8, "8"]
    c.close()


def sent_31_kept_24(skyrelay_server_factory):
    """A socket that saw offset 1, dropped, and was sent 30 more (offsets 2..31). A socket keeps
    outbox_max_frames + history_size events, 16 + 8 here: 8..31. The server and the socket's
    CONNECT answer."""
    server = skyrelay_server_factory(recovery_window=30, history_size=8, outbox_max_frames=16)
    c, hello = sio_ws(server.port)
    info = json.loads(hello[2:])
    server.emit("e", 0)
    assert read_event(c) == ["e", 0, "1"]
    drop(server, c)
    for n in range(1, 31):
        server.emit("e", n)
    return server, info


def test_a_resume_from_an_offset_no_longer_kept_opens_a_new_socket(skyrelay_server_factory):
    server, info = sent_31_kept_24(skyrelay_server_factory)
    hits = limit_hits(server, "recovery")
    c, answer = sio_ws(server.port, {"pid": info["pid"], "offset": "1"})
    fresh = json.loads(answer[2:])
    assert fresh["sid"] != info["sid"] and fresh["pid"] != info["pid"]
    assert limit_hits(server, "recovery") == hits + 1
    # The new socket counts from 1 again.
    server.emit("e", "new")
    assert read_event(c) == ["e", "new", "1"]
    c.close()


def test_a_resume_from_the_oldest_kept_offset_recovers(skyrelay_server_factory):
    server, info = sent_31_kept_24(skyrelay_server_factory)
    # Offsets 8..31 are kept: a client that saw up to 7 misses nothing that was dropped.
    c, answer = sio_ws(server.port, {"pid": info["pid"], "offset": "7"})
    assert json.loads(answer[2:])["sid"] == info["sid"]
    assert [read_event(c) for _ in range(24)] == [["e", n, str(n + 1)] for n in range(7, 31)]
    c.close()


def test_a_resume_from_an_offset_never_sent_opens_a_new_socket(skyrelay_server_factory):
    server = skyrelay_server_factory(recovery_window=30)
    c, hello = sio_ws(server.port)
    info = json.loads(hello[2:])
    server.emit("e", 0)
    assert read_event(c) == ["e", 0, "1"]
    drop(server, c)
    c, answer = sio_ws(server.port, {"pid": info["pid"], "offset": "5"})
    assert json.loads(answer[2:])["sid"] != info["sid"]
    c.close()


def test_a_socket_without_recovery_sees_no_offset_argument(skyrelay_server_factory,
                                                            sio_clients):
    server = skyrelay_server_factory()
    got: queue.Queue = queue.Queue()
    client = sio_clients()
    client.on("e", lambda *args: got.put(args))
    client.connect(f"http://127.0.0.1:{server.port}", transports=["websocket"])
    server.emit("e", {"n": 1})
    server.emit("e", [3], to=client.get_sid("/"))  # direct
    assert got.get(timeout=5) == ({"n": 1},)
    assert got.get(timeout=5) == ([3],)
    c, hello = sio_ws(server.port)  # raw: the exact text on the wire
    assert "pid" not in json.loads(hello[2:])
    server.emit("e", 4)
    assert c.read_frame(timeout=5)[1] == b'42["e",4]'
    c.close()
