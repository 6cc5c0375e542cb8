"""Engine.IO admission (issue 13): polling sessions hold an admission slot from the handshake
to their end, new sessions per IP are rate limited, a packet's buffered binary attachments are
capped; a duplicate or flooding Socket.IO CONNECT costs no token verification; connection state
recovery goes through the connect handler and the role checks again. Real sockets on 127.0.0.1;
every loop is bounded."""

from __future__ import annotations

import base64
import json
import os
import queue
import socket
import subprocess
import sys
from typing import Any


from test_auth import jwt_auth, rs256_token, token
from wsraw import RawClient

from skyrelay.testing import metric, wait_until

# /metrics series this module reads (docs/deployment.md, Metrics).
CLOSED_SOCKETIO = 'skyrelay_connections_closed_total{transport="socketio"}'

HANDSHAKE = b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n"


def hits(server: Any, limit: str) -> float:
    return metric(server, f'skyrelay_limit_hits_total{{limit="{limit}"}}')


def read_response(s: socket.socket, buf: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response (Content-Length framed) from `s`; `buf` keeps what follows it."""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(262144)
        assert chunk, "the server hung up"
        buf += chunk
    head, _, _ = bytes(buf).partition(b"\r\n\r\n")
    del buf[:len(head) + 4]
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(buf) < length:
        chunk = s.recv(262144)
        assert chunk, "the server hung up"
        buf += chunk
    body = bytes(buf[:length])
    del buf[:length]
    return int(lines[0].split(" ")[1]), headers, body


def pipelined_handshakes(port: int, n: int) -> tuple[socket.socket, list[tuple[int, dict, bytes]]]:
    """n Engine.IO handshakes sent at once on one keep-alive connection, and their answers."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(HANDSHAKE * n)
    buf = bytearray()
    return s, [read_response(s, buf) for _ in range(n)]


def request(s: socket.socket, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
    s.sendall(f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
              f"Content-Type: text/plain\r\n\r\n".encode() + body)
    status, _, data = read_response(s, bytearray())
    return status, data


def sid_of(open_body: bytes) -> str:
    assert open_body.startswith(b"0{"), open_body
    return json.loads(open_body[1:])["sid"]


# -- admission slots ----------------------------------------------------------------------

def test_pipelined_handshakes_on_one_connection_stop_at_the_per_ip_cap(skyrelay_server_factory):
    server = skyrelay_server_factory(limit_loopback=True, max_connections_per_ip=40,
                                     new_sessions_per_ip=(1000.0, 10000.0))
    s, answers = pipelined_handshakes(server.port, 3000)
    try:
        statuses = [a[0] for a in answers]
        # The connection holds one slot; each session one more, up to 40 from this address.
        assert statuses.count(200) == 39
        assert statuses[:39] == [200] * 39
        assert set(statuses[39:]) == {503}
        status, headers, body = answers[-1]
        assert headers["retry-after"] == "1"
        assert json.loads(body) == {"error": "too_many_connections",
                                    "message": "too many connections from this address"}
        assert hits(server, "sessions_per_ip") == 3000 - 39
        # The connection itself is still served.
        assert request(s, "GET", "/health")[0] == 200
    finally:
        s.close()


def test_new_sessions_per_ip_rate(skyrelay_server_factory):
    server = skyrelay_server_factory(limit_loopback=True, new_sessions_per_ip=(0.01, 5.0))
    assert hits(server, "new_sessions_per_ip") == 0  # present from the start
    s, answers = pipelined_handshakes(server.port, 3000)
    s.close()
    statuses = [a[0] for a in answers]
    assert statuses.count(200) == 5
    assert set(statuses[5:]) == {429}
    assert json.loads(answers[-1][2])["error"] == "rate_limited"
    assert answers[-1][1]["retry-after"] == "1"
    assert hits(server, "new_sessions_per_ip") == 2995


def test_loopback_is_exempt_from_the_session_rate_unless_limited(skyrelay_server_factory):
    server = skyrelay_server_factory(new_sessions_per_ip=(0.01, 5.0))
    s, answers = pipelined_handshakes(server.port, 50)
    s.close()
    assert [a[0] for a in answers] == [200] * 50


def test_sessions_count_against_max_connections_and_come_back(skyrelay_server_factory):
    server = skyrelay_server_factory(max_connections=6)
    s, answers = pipelined_handshakes(server.port, 8)
    try:
        assert [a[0] for a in answers] == [200] * 5 + [503] * 3
        assert json.loads(answers[-1][2])["message"] == "the server is at its connection limit"
        assert hits(server, "sessions_total") == 3
        # Every slot is taken: a JSON-protocol WebSocket is refused at accept.
        refused = RawClient(server.port, "/ws")
        assert refused.status == 503
        refused.close()
        # Sessions that end give their slots back.
        for status, _, body in answers[:5]:
            assert request(s, "POST", f"/socket.io/?EIO=4&transport=polling&sid={sid_of(body)}",
                           b"1") == (200, b"ok")
        def admitted() -> bool:
            client = RawClient(server.port, "/ws")
            client.close()
            return client.status == 101
        assert wait_until(admitted, 5)
    finally:
        s.close()


def test_a_session_that_times_out_gives_its_slot_back(skyrelay_server_factory):
    server = skyrelay_server_factory(max_connections=3, connect_timeout=0.3)
    s, answers = pipelined_handshakes(server.port, 3)
    s.close()
    assert [a[0] for a in answers] == [200, 200, 503]

    # No CONNECT within connect_timeout: both sessions end, and their slots are free again.
    def two_more_sessions() -> bool:
        try:
            s, answers = pipelined_handshakes(server.port, 2)
        except (AssertionError, OSError):
            return False  # refused at accept while the slots are still taken
        s.close()
        return [a[0] for a in answers] == [200, 200]
    assert wait_until(two_more_sessions, 5)


def test_an_upgraded_session_holds_one_slot_not_two(skyrelay_server_factory):
    server = skyrelay_server_factory(max_connections=3)
    polling, answers = pipelined_handshakes(server.port, 1)
    sid = sid_of(answers[0][2])
    assert request(polling, "POST", f"/socket.io/?EIO=4&transport=polling&sid={sid}",
                   b"40") == (200, b"ok")
    status, data = request(polling, "GET", f"/socket.io/?EIO=4&transport=polling&sid={sid}")
    assert data.startswith(b"40{"), data
    ws = RawClient(server.port, f"/socket.io/?EIO=4&transport=websocket&sid={sid}")
    assert ws.status == 101
    ws.send_text("2probe")
    assert ws.read_frame() == (1, b"3probe")
    ws.send_text("5")
    polling.close()
    # Left: the WebSocket's slot only. Two more connections fit under max_connections=3.
    extra: list[socket.socket] = []
    try:
        def two_fit() -> bool:
            for c in extra:
                c.close()
            extra.clear()
            for _ in range(2):
                c = socket.create_connection(("127.0.0.1", server.port), timeout=5)
                extra.append(c)
                if request(c, "GET", "/health")[0] != 200:
                    return False
            return True
        assert wait_until(two_fit, 5)
        # ... and the session still works over its WebSocket.
        server.emit("tick", 1)
        assert ws.read_frame()[1].startswith(b'42["tick",1')
    finally:
        for c in extra:
            c.close()
        ws.close()


# -- attachments --------------------------------------------------------------------------

def binary_announcement(n: int) -> str:
    holders = ",".join(json.dumps({"_placeholder": True, "num": i}) for i in range(n))
    return f"5{n}-[\"upload\",{holders}]"


def test_more_attachments_than_the_cap_close_the_websocket_with_1009(skyrelay_server_factory):
    server = skyrelay_server_factory()
    ws = RawClient(server.port, "/socket.io/?EIO=4&transport=websocket")
    assert ws.read_frame()[1].startswith(b"0{")
    ws.send_text("40")
    assert ws.read_frame()[1].startswith(b"40{")
    ws.send_text("4" + binary_announcement(63))
    code, _ = ws.read_until_close()
    assert code == 1009
    assert hits(server, "attachments") == 1
    ws.close()


RSS_SERVER = """
import sys, time
from skyrelay import Server
server = Server(port=0, max_attachments=64, max_body_size=6_000_000).start()
print(server.port, flush=True)
sys.stdin.read()  # until the test closes it
server.stop()
"""


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_63_large_attachments_are_refused_before_memory_grows(tmp_path):
    """Default max_attachment_bytes (1 MiB): a session announcing 63 attachments of 1 MB each
    (63 MB if they were all kept) is closed at the second; the server's RSS stays flat."""
    proc = subprocess.Popen([sys.executable, "-c", RSS_SERVER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(HANDSHAKE)
        sid = sid_of(read_response(s, bytearray())[2])
        target = f"/socket.io/?EIO=4&transport=polling&sid={sid}"
        assert request(s, "POST", target, b"40") == (200, b"ok")
        assert request(s, "GET", target)[1].startswith(b"40{")
        before = rss_kib(proc.pid)
        part = b"b" + base64.b64encode(os.urandom(1_000_000))
        assert request(s, "POST", target, b"4" + binary_announcement(63).encode()) == (200, b"ok")
        statuses = []
        for _ in range(21):  # 3 attachments a POST, 63 in all
            statuses.append(request(s, "POST", target, b"\x1e".join([part] * 3))[0])
        after = rss_kib(proc.pid)
        # The first POST is taken (then the session ends); the rest find no session.
        assert statuses[0] == 200 and set(statuses[1:]) == {400}
        assert after - before < 20 * 1024, (before, after)
        s.close()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as m:
            status, text = request(m, "GET", "/metrics")
        assert b'skyrelay_limit_hits_total{limit="attachment_bytes"} 1' in text
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# -- Socket.IO CONNECT --------------------------------------------------------------------

def sio_ws(port: int, payload: dict[str, Any] | None = None,
           nsp: str = "") -> tuple[RawClient, bytes]:
    c = RawClient(port, "/socket.io/?EIO=4&transport=websocket")
    assert c.read_frame()[1].startswith(b"0{")
    c.send_text("40" + (nsp + "," if nsp and payload is not None else nsp) +
                (json.dumps(payload) if payload is not None else ""))
    return c, c.read_frame()[1]


def test_a_duplicate_connect_is_refused_before_its_token_is_verified(skyrelay_server_factory):
    server = skyrelay_server_factory(jwt=jwt_auth())
    c, answer = sio_ws(server.port, {"token": token()})
    assert answer.startswith(b"40{")
    sid = json.loads(answer[2:])["sid"]
    refused = metric(server, "skyrelay_auth_refused_total")
    c.send_text("40" + json.dumps({"token": "not-a-jwt"}))
    answer = c.read_frame()[1]
    assert answer.startswith(b"44"), answer
    assert json.loads(answer[2:]) == {"message": "Unable to connect",
                                      "data": {"code": "already_connected"}}
    # The bad token was never looked at, and the socket is still connected.
    assert metric(server, "skyrelay_auth_refused_total") == refused
    server.emit("tick", 1, to=sid)
    assert c.read_frame()[1].startswith(b'42["tick",1')
    c.close()


def test_a_connect_flood_is_rate_limited_before_verification(skyrelay_server_factory):
    server = skyrelay_server_factory(jwt=jwt_auth(), inbound_rate=0.01, inbound_burst=20)
    good = rs256_token()
    bad = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")  # a broken signature
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.sendall(HANDSHAKE)
    sid = sid_of(read_response(s, bytearray())[2])
    target = f"/socket.io/?EIO=4&transport=polling&sid={sid}"
    body = "\x1e".join(["40" + json.dumps({"token": bad})] * 1000).encode()
    refused = metric(server, "skyrelay_auth_refused_total")
    limited = hits(server, "inbound_rate")
    assert request(s, "POST", target, body) == (200, b"ok")
    packets: list[bytes] = []
    for _ in range(1000):  # polls until every CONNECT is answered
        status, answer = request(s, "GET", target)
        assert status == 200
        packets += answer.split(b"\x1e")
        if len(packets) >= 1000:
            break
    assert len(packets) == 1000
    errors = [json.loads(p[2:])["data"]["code"] for p in packets]
    # 20 verified (and refused for the signature), the other 980 refused by the rate.
    assert errors.count("bad_signature") == 20
    assert errors.count("rate_limited") == 980
    assert metric(server, "skyrelay_auth_refused_total") - refused == 20
    assert hits(server, "inbound_rate") - limited == 980
    s.close()


# -- connection state recovery ------------------------------------------------------------

def dropped(server: Any, payload: dict[str, Any]) -> tuple[str, str, str]:
    """(sid, pid, last offset) of a Socket.IO socket whose TCP connection then died."""
    c, hello = sio_ws(server.port, payload)
    assert hello.startswith(b"40{"), hello
    info = json.loads(hello[2:])
    server.emit("tick", 1)
    data = c.read_frame()[1]
    assert data.startswith(b'42["tick",1,'), data
    offset = json.loads(data[2:])[2]
    drop(server, c)
    return info["sid"], info["pid"], offset


def drop(server: Any, c: RawClient) -> None:
    """Cuts the TCP connection without a goodbye: the socket is kept for recovery."""
    closed = metric(server, CLOSED_SOCKETIO)
    c.sock.shutdown(socket.SHUT_RDWR)
    c.close()
    assert wait_until(lambda: metric(server, CLOSED_SOCKETIO) > closed)


def test_recovery_runs_the_connect_handler_again(skyrelay_server_factory):
    seen: queue.Queue = queue.Queue()
    revoked = {"now": False}

    def configure(server: Any) -> None:
        @server.on("connect")
        def on_connect(conn):
            seen.put(("connect", conn.sid, conn.recovered))
            if conn.recovered:
                assert conn.state.get("kept") == "yes"
            conn.state["kept"] = "yes"
            return not revoked["now"]

        @server.on("disconnect")
        def on_disconnect(conn, reason):
            seen.put(("disconnect", conn.sid, reason))

    server = skyrelay_server_factory(configure, recovery_window=30)
    sid, pid, offset = dropped(server, {})
    assert seen.get(timeout=5) == ("connect", sid, False)
    # Accepted again: the same socket comes back, and the handler knew it was a recovery.
    server.emit("missed", 2)
    c, answer = sio_ws(server.port, {"pid": pid, "offset": offset})
    assert json.loads(answer[2:])["sid"] == sid
    assert seen.get(timeout=5) == ("connect", sid, True)
    assert c.read_frame()[1].startswith(b'42["missed",2')
    drop(server, c)
    # Refused by the handler: the pid resumes nothing, and the old socket ends.
    revoked["now"] = True
    c, answer = sio_ws(server.port, {"pid": pid, "offset": offset})
    assert answer.startswith(b"44"), answer
    assert json.loads(answer[2:])["message"] == "Connection refused"
    assert seen.get(timeout=5) == ("connect", sid, True)
    assert seen.get(timeout=5)[:2] == ("disconnect", sid)
    server.emit("later", 3, to=sid)
    assert c.read_frame(timeout=0.5) is None
    c.close()


def test_recovery_rechecks_roles_and_rooms(skyrelay_server_factory):
    def configure(server: Any) -> None:
        @server.on("connect")
        def on_connect(conn):
            if "ops" in conn.roles:
                conn.join("ops-alerts")
            conn.join("lobby")

    server = skyrelay_server_factory(configure, jwt=jwt_auth(), recovery_window=30,
                                     room_roles={"ops-*": ["ops"]},
                                     namespace_roles={"/admin": ["admin"]},
                                     namespaces=["/", "/admin"])
    sid, pid, offset = dropped(server, {"token": token(roles=["ops"])})
    assert server.rooms(sid) == ["lobby", "ops-alerts"]
    # The same user comes back without the "ops" role: resumed, but out of "ops-alerts", and
    # nothing of that room is replayed.
    server.emit("alert", "secret", to="ops-alerts")
    server.emit("hello", "all", to="lobby")
    c, answer = sio_ws(server.port, {"token": token(roles=[]), "pid": pid, "offset": offset})
    assert json.loads(answer[2:])["sid"] == sid
    data = c.read_frame()[1]
    assert data.startswith(b'42["hello","all"'), data
    assert server.rooms(sid) == ["lobby"]
    server.emit("alert", "again", to="ops-alerts")
    assert c.read_frame(timeout=0.5) is None
    c.close()
    # A namespace whose role the new token lacks: refused, the pid resumes nothing.
    sid, pid, offset = dropped_in(server, "/admin", token(roles=["admin"]))
    c, answer = sio_ws(server.port, {"token": token(roles=[]), "pid": pid, "offset": offset},
                       nsp="/admin")
    assert answer.startswith(b"44/admin,"), answer
    assert json.loads(answer.split(b",", 1)[1])["data"] == {"code": "forbidden"}
    c.close()


def dropped_in(server: Any, nsp: str, bearer: str) -> tuple[str, str, str]:
    c, hello = sio_ws(server.port, {"token": bearer}, nsp=nsp)
    assert hello.startswith(f"40{nsp},".encode()), hello
    info = json.loads(hello.split(b",", 1)[1])
    server.emit("tick", 1, namespace=nsp)
    data = c.read_frame()[1]
    offset = json.loads(data.split(b",", 1)[1])[2]
    drop(server, c)
    return info["sid"], info["pid"], offset
