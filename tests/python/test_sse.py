"""Server-Sent Events at /sse/<topic>: headers, ids, names, keep-alives, the welcome, token
checks through the connect handler, and replay after Last-Event-ID (exactly the missed events,
or an explicit reset)."""

from __future__ import annotations

import json
import queue
import random
import socket
import threading
import time

import httpx
import pytest
from sse_client import Stream

import skyrelay
from skyrelay.testing import wait_until

# /metrics series this module reads (docs/deployment.md, Metrics).
FRAMES_SENT_SSE = 'skyrelay_sent_frames_total{transport="sse"}'
MESSAGES_SENT_SSE = 'skyrelay_sent_messages_total{transport="sse"}'


@pytest.fixture
def streams():
    opened: list[Stream] = []

    def open_stream(server, path: str = "/sse/a", headers=None) -> Stream:
        s = Stream(f"http://127.0.0.1:{server.port}{path}", headers)
        opened.append(s)
        return s

    yield open_stream
    for s in opened:
        s.close()


def cursor(event_id: str) -> tuple[str, list[list[int]]]:
    """An SSE id read back: the process prefix and, per channel (the "/" broadcasts, then each
    topic in the stream's order), [epoch number, position] (docs/protocol.md)."""
    prefix, *parts = event_id.split("~")
    return prefix, [[int(x) for x in part.split(".")] for part in parts]


def cursor_id(prefix: str, points: list[list[int]]) -> str:
    return prefix + "".join(f"~{n}.{pos}" for n, pos in points)


def raw_get(port: int, target: str, headers: str = "") -> bytes:
    """One HTTP request on a raw socket; returns what arrives in 0.5 s (or until close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode())
        sock.settimeout(0.5)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except TimeoutError:
            pass
        return data


def test_stream_headers_welcome_and_chunked_framing(skyrelay_server):
    data = raw_get(skyrelay_server.port, "/sse/WELL%20001")
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    fields = dict(line.split(": ", 1) for line in lines[1:])
    assert fields["Content-Type"] == "text/event-stream; charset=utf-8"
    assert fields["Cache-Control"] == "no-cache, no-transform"
    assert fields["X-Accel-Buffering"] == "no"
    assert fields["Transfer-Encoding"] == "chunked"
    # One chunk: its size line, then exactly that many bytes, then CRLF.
    size_line, _, rest = body.partition(b"\r\n")
    size = int(size_line, 16)
    chunk = rest[:size]
    assert rest[size:size + 2] == b"\r\n"
    text = chunk.decode()
    assert text.startswith("retry: 3000\n\n")
    block = text.split("\n\n")[1].split("\n")
    assert block[0].startswith("id: ") and block[1] == "event: welcome"
    welcome = json.loads(block[2].removeprefix("data: "))
    assert welcome["topics"] == ["WELL 001"] and welcome["keepalive_ms"] == 15000
    assert len(welcome["sid"]) == 16


def test_events_of_the_streams_topics_and_broadcasts(skyrelay_server, streams):
    s = streams(skyrelay_server, "/sse/a?topics=b,c%2Cd")
    welcome = s.next_event("welcome")
    assert json.loads(welcome.data)["topics"] == ["a", "b", "c,d"]
    prefix, start = cursor(welcome.id)
    assert len(start) == 4  # the broadcasts, a, b, c,d
    wait_until(lambda: skyrelay_server.room_size("c,d") == 1)
    skyrelay_server.emit("tick", {"n": 1}, to="a")
    skyrelay_server.emit("tick", {"n": 2}, to="c,d")
    skyrelay_server.emit("elsewhere", 0, to="z")   # not one of its topics
    skyrelay_server.emit("everyone", [1, 2])       # a broadcast reaches every stream
    skyrelay_server.emit("chat", 1, namespace="/chat")  # but not another namespace's
    got = [s.next() for _ in range(3)]
    assert [(e.event, json.loads(e.data)) for e in got] == [
        ("tick", {"n": 1}), ("tick", {"n": 2}), ("everyone", [1, 2])]
    # Each event moves its own channel's position by one, and only that one.
    expect = [list(p) for p in start]
    for e, channel in zip(got, [1, 3, 0]):
        expect[channel][1] += 1
        assert e.id == cursor_id(prefix, expect)
    with pytest.raises(queue.Empty):
        s.next(timeout=0.3)


def test_multiline_data_and_hostile_event_names(skyrelay_server, streams):
    s = streams(skyrelay_server)
    s.next_event("welcome")
    wait_until(lambda: skyrelay_server.room_size("a") == 1)
    skyrelay_server.emit("pretty", b'{\n  "x": 1,\r\n  "y": [\r2]\n}', to="a")
    skyrelay_server.emit("evil\nevent: injected\ndata: x", {"ok": True}, to="a")
    pretty = s.next()
    assert pretty.event == "pretty"
    assert json.loads(pretty.data) == {"x": 1, "y": [2]}
    evil = s.next()
    assert evil.event == "evil event: injected data: x"  # one field: no injected event
    assert json.loads(evil.data) == {"ok": True}


def test_keepalive_comments(skyrelay_server_factory):
    server = skyrelay_server_factory(sse_keepalive=0.2)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /sse/a HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        deadline = time.monotonic() + 5
        while data.count(b": keep-alive\n\n") < 2 and time.monotonic() < deadline:
            data += sock.recv(65536)
        assert data.count(b": keep-alive\n\n") >= 2


def test_resume_after_last_event_id_replays_exactly_the_missed(skyrelay_server, streams):
    s = streams(skyrelay_server, "/sse/w?topics=v")
    s.next_event("welcome")
    wait_until(lambda: skyrelay_server.room_size("v") == 1)
    for i in range(3):
        skyrelay_server.emit("t", i, to="w")
    seen = [s.next() for _ in range(3)]
    s.close()
    wait_until(lambda: skyrelay_server.room_size("w") == 0)
    for i in range(3, 7):  # while it is away
        skyrelay_server.emit("t", i, to="w" if i % 2 else "v")
    skyrelay_server.emit("x", "broadcast")
    skyrelay_server.emit("t", 99, to="elsewhere")
    back = streams(skyrelay_server, "/sse/w?topics=v", headers={"Last-Event-ID": seen[-1].id})
    welcome = back.next_event("welcome")
    assert welcome.id == ""  # a resumed stream keeps the id it had
    replay = [back.next() for _ in range(5)]
    assert [json.loads(e.data) for e in replay] == [3, 4, 5, 6, "broadcast"]
    # The cursor: broadcasts, w, v; each replayed event moves its channel on by one.
    prefix, before = cursor(seen[-1].id)
    moved = [cursor(e.id)[1] for e in replay]
    assert [[p[1] - b[1] for p, b in zip(m, before)] for m in moved] == [
        [0, 1, 0], [0, 1, 1], [0, 2, 1], [0, 2, 2], [1, 2, 2]]
    skyrelay_server.emit("t", 7, to="w")
    assert json.loads(back.next().data) == 7  # live follows the replay, nothing repeated
    # The query parameter works as the header does (EventSource cannot set headers).
    again = streams(skyrelay_server, f"/sse/w?topics=v&last_event_id={replay[2].id}")
    again.next_event("welcome")
    assert [json.loads(again.next().data) for _ in range(3)] == [6, "broadcast", 7]


def test_the_welcome_id_covers_a_drop_before_the_first_event(skyrelay_server, streams):
    s = streams(skyrelay_server, "/sse/w")
    welcome = s.next_event("welcome")
    assert welcome.id
    s.close()
    skyrelay_server.emit("t", "missed", to="w")
    back = streams(skyrelay_server, "/sse/w", headers={"Last-Event-ID": welcome.id})
    back.next_event("welcome")
    assert json.loads(back.next().data) == "missed"


@pytest.mark.parametrize("last_id, reason", [
    ("gap", "history_gap"), ("other-epoch", "epoch_changed"), ("future", "ahead"),
    ("garbage", "bad_id"), ("old-form", "epoch_changed"), ("other-topics", "bad_id")])
def test_a_resume_that_cannot_be_honoured_is_a_reset(skyrelay_server_factory, streams,
                                                     last_id, reason):
    server = skyrelay_server_factory(history_size=3)
    s = streams(server, "/sse/w")
    welcome = s.next_event("welcome")
    prefix, start = cursor(welcome.id)
    s.close()
    for i in range(10):
        server.emit("t", i, to="w")
    ahead = [start[0], [start[1][0], start[1][1] + 1000]]
    header = {"gap": welcome.id, "other-epoch": cursor_id("zzzzzzzz", start),
              "future": cursor_id(prefix, ahead), "garbage": "not an id",
              # What servers before per-channel cursors wrote: "<epoch>-<n>".
              "old-form": f"{prefix}-1207",
              # A cursor of another stream (broadcasts and two topics) for this one-topic URL.
              "other-topics": cursor_id(prefix, start + [[1, 0]])}[last_id]
    back = streams(server, "/sse/w", headers={"Last-Event-ID": header})
    w = back.next_event("welcome")
    reset = back.next()
    assert reset.event == "reset" and json.loads(reset.data) == {"reason": reason}
    current = cursor_id(prefix, [start[0], [start[1][0], start[1][1] + 10]])
    assert w.id == current  # the position to go on from, after reloading
    server.emit("t", 10, to="w")
    live = back.next()
    after = cursor_id(prefix, [start[0], [start[1][0], start[1][1] + 11]])
    assert json.loads(live.data) == 10 and live.id == after


def test_a_two_topic_stream_resumes_with_exactly_what_it_missed_on_each(
        skyrelay_server_factory):
    """Two publishers send to a, to b and to both at once while a stream on a and b drops
    and comes back with Last-Event-ID: it ends with every event once, each topic in order."""
    server = skyrelay_server_factory(history_size=5000)
    per_publisher = 300
    topics_of = [["a"], ["b"], ["a", "b"]]

    def publish(k: int) -> None:
        for i in range(per_publisher):
            to = topics_of[i % 3]
            server.emit("e", {"k": k, "i": i}, to=to if len(to) > 1 else to[0])
            if i % 20 == 0:
                time.sleep(0.005)

    got: list[tuple[int, int]] = []
    last_id = None
    rng = random.Random(3)
    first = Stream(f"http://127.0.0.1:{server.port}/sse/a?topics=b")
    last_id = first.next_event("welcome").id
    wait_until(lambda: server.room_size("b") == 1)
    threads = [threading.Thread(target=publish, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    stream = first
    deadline = time.monotonic() + 60
    try:
        while len(got) < 2 * per_publisher and time.monotonic() < deadline:
            for _ in range(rng.randint(20, 120)):
                try:
                    e = stream.next(timeout=2)
                except queue.Empty:
                    break
                assert e.event != "reset", e.data
                if e.event == "e":
                    data = json.loads(e.data)
                    got.append((data["k"], data["i"]))
                    last_id = e.id
            stream.close()
            stream = Stream(f"http://127.0.0.1:{server.port}/sse/a?topics=b",
                            {"Last-Event-ID": last_id})
            assert stream.next_event("welcome").id == ""  # resumed: no reset, no new id
    finally:
        stream.close()
        for t in threads:
            t.join(30)
    assert sorted(got) == [(k, i) for k in range(2) for i in range(per_publisher)]
    for k in range(2):
        for topic in ("a", "b"):
            seq = [i for kk, i in got if kk == k and topic in topics_of[i % 3]]
            assert seq == sorted(seq), (k, topic)


def test_a_reset_when_one_topics_history_lost_some(skyrelay_server_factory, streams):
    server = skyrelay_server_factory(history_size=3)
    s = streams(server, "/sse/a?topics=b")
    welcome = s.next_event("welcome")
    wait_until(lambda: server.room_size("b") == 1)
    server.emit("t", 0, to="b")
    seen = s.next()
    s.close()
    wait_until(lambda: server.room_size("b") == 0)
    server.emit("t", 1, to="b")  # b still holds everything after `seen`
    for i in range(5):
        server.emit("t", i, to="a")  # a keeps 3 of 5
    back = streams(server, "/sse/a?topics=b", headers={"Last-Event-ID": seen.id})
    w = back.next_event("welcome")
    reset = back.next()
    assert reset.event == "reset" and json.loads(reset.data) == {"reason": "history_gap"}
    prefix, now = cursor(w.id)
    _, before = cursor(welcome.id)
    assert [p[1] - b[1] for p, b in zip(now, before)] == [0, 5, 2]  # where it goes on from


def test_bad_requests_get_4xx_with_a_message(skyrelay_server_factory):
    server = skyrelay_server_factory(cors_allowed_origins=["https://app.example"])
    base = f"http://127.0.0.1:{server.port}"
    cases = [
        ("POST", "/sse/a", {}, 405, "method_not_allowed"),
        ("GET", "/sse/a?topics=b,,c", {}, 400, "bad_topic"),
        ("GET", "/sse/" + "x" * 257, {}, 400, "bad_topic"),
        ("GET", "/sse?topics=" + ",".join(f"t{i}" for i in range(65)), {}, 400,
         "too_many_topics"),
        ("GET", "/sse/a", {"Origin": "https://evil.example"}, 403, "origin_not_allowed"),
        ("GET", "/sse/a", {"Origin": "null"}, 403, "origin_not_allowed"),
        ("GET", "/sse/a", {"Last-Event-ID": "x" * 4097}, 400, "bad_last_event_id"),
    ]
    for method, path, headers, status, code in cases:
        r = httpx.request(method, base + path, headers=headers, timeout=5)
        assert r.status_code == status, (path, r.text)
        assert r.json()["error"] == code and r.json()["message"]
    # An allowed origin gets its CORS header.
    with httpx.stream("GET", base + "/sse/a", headers={"Origin": "https://app.example"},
                      timeout=5) as r:
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://app.example"
    assert server.connection_count == 0 or wait_until(lambda: server.connection_count == 0)


def test_connect_handler_guards_streams_and_sees_them_go(skyrelay_server_factory, streams):
    gone = queue.Queue()

    def configure(server):
        @server.on_connect
        def check(conn):
            if "token=good" not in conn.query:
                raise skyrelay.ConnectionRefused("a token is required", status=401)
            assert conn.transport == "sse" and conn.path == "/sse/private"

        @server.on_disconnect
        def left(conn, reason):
            gone.put((conn.transport, reason))

    server = skyrelay_server_factory(configure)
    r = httpx.get(f"http://127.0.0.1:{server.port}/sse/private?token=bad", timeout=5)
    assert r.status_code == 401 and r.json()["message"] == "a token is required"
    s = streams(server, "/sse/private?token=good")
    s.next_event("welcome")
    wait_until(lambda: server.room_size("private") == 1)
    s.close()
    assert gone.get(timeout=5) == ("sse", "client_close")
    wait_until(lambda: server.room_size("private") == 0)


def test_a_stream_that_stops_reading_does_not_hold_up_others(skyrelay_server_factory, streams):
    server = skyrelay_server_factory(outbox_max_frames=64)
    fast = streams(server, "/sse/feed")
    fast.next_event("welcome")
    stalled = socket.create_connection(("127.0.0.1", server.port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(b"GET /sse/feed HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        wait_until(lambda: server.room_size("feed") == 2)
        # Paced in batches that the reading stream keeps up with; the stalled one's kernel
        # buffers fill, then its outbox, and it is cut.
        payload = "x" * 16000
        got = []
        for batch in range(40):
            for i in range(batch * 50, batch * 50 + 50):
                server.emit("t", {"i": i, "pad": payload}, to="feed")
            got += [json.loads(fast.next().data)["i"] for _ in range(50)]
        assert got == list(range(2000))
        wait_until(lambda: server.room_size("feed") == 1)  # the stalled one was cut (4001)
    finally:
        stalled.close()


def test_server_stop_ends_streams_cleanly(skyrelay_server_factory):
    server = skyrelay_server_factory()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /sse/a HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        assert b"event: welcome" in first
        server.stop()
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
        assert (first + rest).endswith(b"0\r\n\r\n")  # the terminating chunk, then close


def test_answers_to_a_stream_are_refused_and_the_stream_stays_sse(skyrelay_server_factory):
    # respond and send_error are the JSON protocol's answers (a response or an error frame). A
    # stream sends no requests and has no frame for them: the core refuses them for an SSE sid
    # (False, nothing written) rather than putting WebSocket frame bytes into the event stream.
    server = skyrelay_server_factory(client_topics=["a"])
    core = server._core
    url = f"http://127.0.0.1:{server.port}/sse/a"
    with httpx.Client(timeout=httpx.Timeout(5.0)) as client, \
            client.stream("GET", url) as response:
        assert response.status_code == 200
        chunks = response.iter_bytes()
        body = b""
        for _ in range(50):  # bounded: each read waits at most the 5 s timeout
            if b"event: welcome" in body and body.endswith(b"\n\n"):
                break
            body += next(chunks)
        welcome = body.split(b"event: welcome\n", 1)[1].split(b"\n", 1)[0]
        sid = json.loads(welcome.removeprefix(b"data: "))["sid"]
        assert core.respond(sid, "7", True, "{}", "") is False
        assert core.respond(sid, "7", False, "bad_request", "no") is False
        assert core.send_error(sid, "bad_request", "no") is False
        assert server.emit("after", {"n": 1}, to="a") == 1
        for _ in range(50):
            if b"event: after" in body and body.endswith(b"\n\n"):
                break
            body += next(chunks)
    # Only SSE fields and comments, in UTF-8 text: no frame header (0x81), no answer's JSON.
    text = body.decode("utf-8")
    assert "\x81" not in text and "bad_request" not in text and '"response"' not in text
    for block in filter(None, text.split("\n\n")):
        for line in block.split("\n"):
            assert line.startswith(("id: ", "event: ", "data: ", "retry: ", ":")), line
    assert 'event: after\ndata: {"n":1}\n\n' in text


def scraped(port: int, name: str) -> float:
    """One sample of /metrics, read over HTTP as Prometheus does."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split(" ", 1)[1])
    raise AssertionError(f"{name} missing from /metrics")


def test_frames_out_counts_one_frame_per_sse_event(skyrelay_server_factory, streams):
    # Each stream writes its own `id:` line in front of the shared event block; the two go out
    # as one frame, so skyrelay_sent_frames_total{transport="sse"} counts events, live and replayed alike.
    server = skyrelay_server_factory(sse_keepalive=60.0)  # no keep-alive comment meanwhile
    port = server.port
    live = streams(server, "/sse/a")
    start = live.next_event("welcome").id
    wait_until(lambda: server.room_size("a") == 1)
    frames0 = scraped(port, FRAMES_SENT_SSE)
    messages0 = scraped(port, MESSAGES_SENT_SSE)
    n = 20
    for i in range(n):
        server.emit("tick", {"i": i}, to="a")
    server.emit("everyone", 1)
    got = [live.next() for _ in range(n + 1)]
    assert [e.event for e in got] == ["tick"] * n + ["everyone"]
    assert len({e.id for e in got}) == n + 1  # each event its own id line
    wait_until(lambda: scraped(port, FRAMES_SENT_SSE) - frames0 >= n + 1)
    assert scraped(port, FRAMES_SENT_SSE) - frames0 == n + 1
    assert scraped(port, MESSAGES_SENT_SSE) - messages0 == n + 1
    # A stream that resumes from the welcome's id is replayed all of them, one frame each.
    frames1 = scraped(port, FRAMES_SENT_SSE)
    again = streams(server, "/sse/a", {"Last-Event-ID": start})
    again.next_event("welcome")
    replayed = [again.next() for _ in range(n + 1)]
    assert [(e.event, e.data, e.id) for e in replayed] == [(e.event, e.data, e.id) for e in got]
    wait_until(lambda: scraped(port, FRAMES_SENT_SSE) - frames1 >= n + 1)
    assert scraped(port, FRAMES_SENT_SSE) - frames1 == n + 1
