"""Bad input gets a clear error, never a crash, and never disturbs other clients."""

from __future__ import annotations

import http.client
import json
import socket
import struct
import threading

import pytest

from wsraw import RawClient, frame


@pytest.fixture
def bystander(skyrelay_server, skyrelay_client):
    """A well-behaved client in room "calm" that must receive every event, in order."""
    c = skyrelay_client()
    c.subscribe("calm")
    return c


def check_bystander(server, client, n=20):
    for i in range(n):
        server.emit("calm_event", i, to="calm")
    assert [client.expect("calm_event") for _ in range(n)] == list(range(n))


@pytest.mark.parametrize("text, code", [
    ("not json", "bad_json"),
    ("{\"type\": \"subscribe\", ", "bad_json"),
    ("[1, 2]", "bad_message"),
    ("42", "bad_message"),
    ('{"topic": "x"}', "unknown_type"),
    ('{"type": "teleport"}', "unknown_type"),
    ('{"type": "subscribe", "topic": 5}', "bad_message"),
    ('{"type": "subscribe", "topic": ""}', "bad_message"),
    ('{"type": "subscribe", "topic": "' + "t" * 257 + '"}', "bad_message"),
    ('{"type": "request", "event": "x"}', "bad_message"),
    ('{"type": "event", "event": 3}', "bad_message"),
    ("", "bad_json"),
    ("null", "bad_message"),
    ('"subscribe"', "bad_message"),
    ('{"type": 5}', "unknown_type"),
    ('{"type": null}', "unknown_type"),
    ('{"type": "subscribe"}', "bad_message"),
    ('{"type": "subscribe", "topics": []}', "bad_message"),
    ('{"type": "subscribe", "topics": "a"}', "bad_message"),
    ('{"type": "subscribe", "topics": ["a", 2]}', "bad_message"),
    ('{"type": "subscribe", "topics": [' + ",".join(['"t"'] * 65) + "]}", "bad_message"),
    ('{"type": "subscribe", "topic": "a", "since": -1}', "bad_message"),
    ('{"type": "subscribe", "topic": "a", "since": "3"}', "bad_message"),
    ('{"type": "unsubscribe", "topic": null}', "bad_message"),
    ('{"type": "ping", "id": {"x": 1}}', "bad_message"),
    ('{"type": "ping", "id": 1.5}', "bad_message"),
    ('{"type": "request", "id": "1"}', "bad_message"),
    ('{"type": "request", "id": "1", "event": ""}', "bad_message"),
    ('{"type": "event"}', "bad_message"),
    ('{"type": "event", "event": ["x"]}', "bad_message"),
])
def test_bad_messages_get_error_frames(skyrelay_server, skyrelay_client, bystander, text, code):
    c = skyrelay_client()
    c.send(text)
    err = c.expect_frame("error")
    assert err["code"] == code
    assert err["message"]
    assert c.ping()["type"] == "pong"  # still usable
    check_bystander(skyrelay_server, bystander)
    assert f'skyrelay_errors_total{{code="{code}"}}' in skyrelay_server.metrics_text()


def test_error_ref_carries_request_id(skyrelay_server, skyrelay_client):
    c = skyrelay_client()
    c.send({"type": "teleport", "id": "abc"})
    assert c.expect_frame("error")["ref"] == "abc"


def test_binary_frame_is_refused_but_connection_stays(skyrelay_server, skyrelay_client, bystander):
    c = skyrelay_client()
    c.send(b"\x00\x01\x02")
    assert c.expect_frame("error")["code"] == "binary_not_supported"
    assert c.ping()["type"] == "pong"
    check_bystander(skyrelay_server, bystander)


@pytest.mark.parametrize("name, data, code", [
    ("invalid utf-8", frame(0x1, b"\xc0\xaf"), 1007),
    ("unmasked", frame(0x1, b"{}", masked=False), 1002),
    ("rsv bits", frame(0x1, b"{}", rsv=0x40), 1002),
    ("unknown opcode", frame(0x3, b""), 1002),
    ("continuation first", frame(0x0, b"x"), 1002),
    ("fragmented ping", frame(0x9, b"", fin=False), 1002),
])
def test_framing_violations_close_with_code(skyrelay_server, bystander, name, data, code):
    raw = RawClient(skyrelay_server.port)
    assert raw.status == 101
    raw.send(data)
    got, frames = raw.read_until_close()
    raw.close()
    assert got == code, (name, frames)
    check_bystander(skyrelay_server, bystander)


def test_client_ping_frames_get_pongs(skyrelay_server):
    raw = RawClient(skyrelay_server.port)
    raw.send(frame(0x9, b"hi"))
    for _ in range(5):
        f = raw.read_frame()
        assert f is not None
        if f[0] == 0xA:
            assert f[1] == b"hi"
            break
    else:
        pytest.fail("no pong")
    raw.close()


def http_request(port: int, raw: bytes) -> tuple[int, dict, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(raw)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                head, body = data.split(b"\r\n\r\n", 1)
                length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]
                if length and len(body) >= length[0]:
                    break
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    headers = {k.strip().lower().decode(): v.strip().decode()
               for k, v in (line.split(b":", 1) for line in lines[1:])}
    return int(lines[0].split(b" ")[1]), headers, body


def upgrade_request(path="/ws", key="dGhlIHNhbXBsZSBub25jZQ==", version="13"):
    lines = [f"GET {path} HTTP/1.1", "Host: x", "Upgrade: websocket", "Connection: Upgrade"]
    if key:
        lines.append(f"Sec-WebSocket-Key: {key}")
    lines.append(f"Sec-WebSocket-Version: {version}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_http_errors_are_json(skyrelay_server, bystander):
    port = skyrelay_server.port
    status, _, body = http_request(port, upgrade_request(key=None))
    assert status == 400 and json.loads(body)["error"] == "bad_handshake"
    status, headers, body = http_request(port, upgrade_request(version="8"))
    assert status == 426 and headers["sec-websocket-version"] == "13"
    assert json.loads(body)["error"] == "unsupported_version"
    status, _, body = http_request(port, upgrade_request(path="/elsewhere"))
    assert status == 404 and "error" in json.loads(body)
    status, _, body = http_request(port, b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 426 and json.loads(body)["error"] == "upgrade_required"
    status, _, body = http_request(port, b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert status == 405 and json.loads(body)["error"] == "method_not_allowed"
    status, _, body = http_request(port, b"BLAH\x01 / nonsense\r\n\r\n")
    assert status == 400 and "error" in json.loads(body)
    big = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    status, _, body = http_request(port, big)
    assert status == 431 and json.loads(body)["error"] == "header_too_large"
    check_bystander(skyrelay_server, bystander)


def test_refused_handshake_bodies(skyrelay_server_factory):
    import skyrelay

    def configure(server):
        @server.on_connect
        def connect(conn):
            if conn.query == "token=ok":
                return None
            if conn.query == "token=expired":
                raise skyrelay.ConnectionRefused("token expired", status=401)
            return False

    server = skyrelay_server_factory(configure)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    status, _, body = http_request(server.port, upgrade_request(path="/ws?token=expired"))
    assert status == 401
    assert json.loads(body) == {"error": "connection_refused", "message": "token expired"}
    status, _, _ = http_request(server.port, upgrade_request(path="/ws?token=nope"))
    assert status == 403
    raw = RawClient(server.port, "/ws?token=ok")
    assert raw.status == 101
    raw.close()
    conn.close()


def test_error_ref_is_null_without_id_and_carries_integer_ids(skyrelay_server, skyrelay_client):
    c = skyrelay_client()
    c.send({"type": "subscribe", "topic": 5, "id": 12})
    assert c.expect_frame("error")["ref"] == 12
    c.send({"type": "request", "event": "x"})  # a request without an id
    err = c.expect_frame("error")
    assert (err["code"], err["ref"]) == ("bad_message", None)
    c.send("nonsense")
    assert c.expect_frame("error")["ref"] is None


def test_rejected_subscribe_joins_nothing(skyrelay_server, skyrelay_client):
    c = skyrelay_client()
    c.send({"type": "subscribe", "topics": ["fine", ""]})
    assert c.expect_frame("error")["code"] == "bad_message"
    assert skyrelay_server.rooms(c.sid) == []
    assert skyrelay_server.emit("e", 1, to="fine") == 0


def test_longest_topic_is_accepted(skyrelay_server, skyrelay_client):
    c = skyrelay_client()
    topic = "t" * 256
    reply = c.subscribe(topic)
    assert (reply["type"], reply["topic"], reply["seq"]) == ("subscribed", topic, 0)
    skyrelay_server.emit("e", 1, to=topic)
    assert c.expect_event("e")["topic"] == topic


def test_message_at_the_limit_passes_one_byte_more_closes(skyrelay_server_factory,
                                                         skyrelay_client):
    server = skyrelay_server_factory(max_message_size=1024)
    calm = skyrelay_client(server)
    calm.subscribe("calm")

    def ping_of_size(n):
        text = json.dumps({"type": "ping", "pad": ""})
        return text.replace('""', '"' + "x" * (n - len(text)) + '"')

    ok = skyrelay_client(server)
    ok.send(ping_of_size(1024))
    assert ok.expect_frame("pong")
    big = skyrelay_client(server)
    big.send(ping_of_size(1025))
    code, _ = big.expect_closed()
    assert code == 1009
    big.expect_nothing(0.1, "pong")
    assert ok.ping()
    check_bystander(server, calm)


def test_default_limit_is_64_kib(skyrelay_server, skyrelay_client, bystander):
    """A message just under 64 KiB passes; a frame over it closes 1009, bystanders unharmed."""
    c = skyrelay_client()
    c.send(json.dumps({"type": "ping", "pad": "x" * (64 * 1024 - 40)}))
    assert c.expect_frame("pong")
    c.send("x" * (64 * 1024 + 1))
    assert c.expect_closed()[0] == 1009
    check_bystander(skyrelay_server, bystander)


def test_fragments_count_towards_the_limit(skyrelay_server_factory, skyrelay_client):
    server = skyrelay_server_factory(max_message_size=1024)
    calm = skyrelay_client(server)
    calm.subscribe("calm")
    raw = RawClient(server.port)
    try:
        raw.send(frame(0x1, b'{"type":"ping","pad":"' + b"x" * 600, fin=False))
        raw.send(frame(0x0, b"y" * 600 + b'"}'))
        code, frames = raw.read_until_close()
        assert code == 1009, frames
    finally:
        raw.close()
    check_bystander(server, calm)


def test_huge_declared_length_closes_before_any_payload(skyrelay_server, bystander):
    raw = RawClient(skyrelay_server.port)
    try:
        # A header announcing 1 GiB and no payload: refused on the header alone.
        raw.send(bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 1 << 30) + b"\x00\x00\x00\x00")
        code, _ = raw.read_until_close()
        assert code == 1009
    finally:
        raw.close()
    check_bystander(skyrelay_server, bystander)


def test_fragmented_text_is_reassembled(skyrelay_server):
    raw = RawClient(skyrelay_server.port)
    try:
        assert json.loads(raw.read_frame()[1])["type"] == "welcome"
        raw.send(frame(0x1, b'{"type":"pi', fin=False))
        raw.send(frame(0x9, b"mid"))  # a control frame may come between fragments
        raw.send(frame(0x0, b'ng","id":', fin=False))
        raw.send(frame(0x0, b'"frag"}'))
        got = [raw.read_frame() for _ in range(2)]
        assert got[0] == (0xA, b"mid")
        pong = json.loads(got[1][1])
        assert (pong["type"], pong["id"]) == ("pong", "frag")
    finally:
        raw.close()


@pytest.mark.parametrize("name, frames, code", [
    ("invalid utf-8 across fragments",
     [frame(0x1, b'"\xe2\x82', fin=False), frame(0x0, b'\x28"')], 1007),
    ("close reason not utf-8", [frame(0x8, struct.pack("!H", 1000) + b"\xff")], 1007),
    ("close payload of one byte", [frame(0x8, b"\x03")], 1002),
    ("reserved close code", [frame(0x8, struct.pack("!H", 1005))], 1002),
    ("control frame too long", [frame(0x9, b"p" * 126)], 1002),
    ("new message inside a fragmented one",
     [frame(0x1, b"{", fin=False), frame(0x1, b"}")], 1002),
    ("non-minimal length", [bytes([0x81, 0x80 | 126, 0, 5]) + b"\x00" * 4 + b"hello"], 1002),
])
def test_more_framing_violations(skyrelay_server, bystander, name, frames, code):
    raw = RawClient(skyrelay_server.port)
    try:
        for f in frames:
            raw.send(f)
        got, seen = raw.read_until_close()
        assert got == code, (name, seen)
    finally:
        raw.close()
    check_bystander(skyrelay_server, bystander)


def test_close_codes_map_to_disconnect_reasons(skyrelay_server):
    reasons = {}
    done = threading.Event()

    @skyrelay_server.on_disconnect
    def gone(conn, reason):
        reasons[conn.sid] = reason
        if len(reasons) == 3:
            done.set()

    sids = []
    for data, expected in ((b"x" * (64 * 1024 + 1), 1009), (b"\xc0\xaf", 1007),
                           (b"", 1002)):
        raw = RawClient(skyrelay_server.port)
        sids.append(json.loads(raw.read_frame()[1])["sid"])
        raw.send(frame(0x1, data, masked=expected != 1002))
        assert raw.read_until_close()[0] == expected
        raw.close()  # the server then ends the connection, keeping the reason it gave
    assert done.wait(10), reasons
    assert [reasons[sid] for sid in sids] == [
        "message_too_big", "protocol_error", "protocol_error"]


@pytest.mark.parametrize("path", ["/ws/%ZZ", "/ws/bad%0", "/ws/%00", "/ws/" + "t" * 257])
def test_bad_topic_in_path_is_400(skyrelay_server, path):
    status, _, body = http_request(skyrelay_server.port, upgrade_request(path=path))
    assert status == 400 and json.loads(body)["error"] == "bad_topic"


def test_more_http_errors(skyrelay_server, bystander):
    port = skyrelay_server.port
    status, _, body = http_request(port, b"GET /no/such/page HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 404 and json.loads(body)["error"] == "not_found"
    status, _, body = http_request(port, upgrade_request(key="short"))
    assert status == 400 and json.loads(body)["error"] == "bad_handshake"
    big = upgrade_request().replace(b"\r\n\r\n", b"\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n")
    status, _, body = http_request(port, big)
    assert status == 431 and "error" in json.loads(body)
    status, _, body = http_request(port, b"DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 405 and "error" in json.loads(body)
    status, _, body = http_request(port, b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n")
    assert status == 400 and "error" in json.loads(body)
    check_bystander(skyrelay_server, bystander)
