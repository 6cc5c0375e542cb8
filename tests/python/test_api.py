"""The Python API: lifecycle, handlers, connections, emit targets and payloads, HTTP endpoints."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import enum
import http
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid

import pytest
from httpraw import read_head

import skyrelay
from skyrelay.testing import connect, metric, wait_until

# /metrics series this module reads (docs/deployment.md, Metrics).
BYTES_RECEIVED_JSON = 'skyrelay_received_bytes_total{transport="json"}'
BYTES_SENT_JSON = 'skyrelay_sent_bytes_total{transport="json"}'
MESSAGES_RECEIVED_JSON = 'skyrelay_received_messages_total{transport="json"}'
MESSAGES_SENT_JSON = 'skyrelay_sent_messages_total{transport="json"}'
OPEN_JSON = 'skyrelay_open_connections{transport="json"}'


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def test_lifecycle_and_port_zero():
    server = skyrelay.Server(port=0)
    with pytest.raises(RuntimeError):
        server.emit("x", 1)  # not started
    with server:
        assert server.running
        assert server.port > 0
        assert server.start() is server  # harmless
        with connect(server.url) as c:
            assert c.ping()["type"] == "pong"
    assert not server.running
    server.stop()  # harmless


def test_address_in_use_is_oserror(skyrelay_server):
    with pytest.raises(OSError):
        skyrelay.Server(port=skyrelay_server.port).start()


def test_connect_handler_sees_handshake_and_can_refuse(skyrelay_server_factory, skyrelay_client):
    seen = {}

    def configure(server):
        @server.on_connect
        def on_connect(conn):
            if conn.headers.get("x-token") != "letmein":
                raise skyrelay.ConnectionRefused("bad token", status=401)
            seen.update(path=conn.path, query=conn.query, remote=conn.remote, sid=conn.sid)
            conn.join("vip")
            conn.emit("hello", "first")  # queued, delivered right after welcome

    server = skyrelay_server_factory(configure)
    import websockets.exceptions

    with pytest.raises(websockets.exceptions.InvalidStatus) as err:
        skyrelay_client(server, path="/ws?x=1")
    assert err.value.response.status_code == 401
    # The session is registered while its handler decides, and removed on the I/O thread
    # after the 401 is written, so the client may read the 401 a moment before that.
    assert wait_until(lambda: server.connection_count == 0, timeout=5)
    c = skyrelay_client(server, path="/ws?x=1", headers={"X-Token": "letmein"})
    assert c.expect("hello") == "first"
    assert seen == {"path": "/ws", "query": "x=1", "remote": seen["remote"], "sid": c.sid}
    assert seen["remote"].startswith("127.0.0.1:")
    assert server.rooms(c.sid) == ["vip"]


def test_async_connect_handler(skyrelay_server_factory, skyrelay_client):
    def configure(server):
        @server.on("connect")
        async def on_connect(conn):
            await asyncio.sleep(0.01)
            return conn.query != "deny"

    server = skyrelay_server_factory(configure)
    assert skyrelay_client(server).ping()["type"] == "pong"
    import websockets.exceptions

    with pytest.raises(websockets.exceptions.InvalidStatus):
        skyrelay_client(server, path="/ws?deny")


def test_connection_object(skyrelay_server, skyrelay_client):
    conns = {}

    @skyrelay_server.on("register")
    def register(conn, data):
        conns[data] = conn
        conn.state["name"] = data
        return conn.sid

    a, b = skyrelay_client(), skyrelay_client()
    assert a.request("register", "a") == a.sid
    assert b.request("register", "b") == b.sid
    ca = conns["a"]
    assert ca.join("r1") and ca.join("r2")
    assert ca.rooms == ["r1", "r2"]
    assert ca.leave("r1") and ca.rooms == ["r2"]
    ca.emit("only_you", 1)
    assert a.expect("only_you") == 1
    b.expect_nothing(0.2, "event")
    assert ca.connected
    ca.disconnect("done")
    assert a.expect_closed()[0] == 4002


def test_emit_targets(skyrelay_server, skyrelay_client):
    a, b, c = skyrelay_client(), skyrelay_client(), skyrelay_client()
    a.subscribe("r1")
    b.subscribe("r1", "r2")
    c.subscribe("r2")
    assert skyrelay_server.emit("e", "room", to="r1") == 2
    assert skyrelay_server.emit("e", "sid", to=c.sid) == 1
    assert skyrelay_server.emit("e", "both", to=["r1", "r2"]) == 3
    assert skyrelay_server.emit("e", "skip", to="r1", skip=a.sid) == 1
    assert skyrelay_server.emit("e", "all", skip=[a.sid, b.sid]) == 1
    assert skyrelay_server.emit("e", "nobody", to="no-such-room") == 0
    assert [a.expect("e") for _ in range(2)] == ["room", "both"]
    assert [b.expect("e") for _ in range(3)] == ["room", "both", "skip"]
    assert [c.expect("e") for _ in range(3)] == ["sid", "both", "all"]
    with pytest.raises(ValueError):
        skyrelay_server.emit("e", 1, policy="sometimes")


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    lat: float
    lon: float


class Opaque:
    pass


def test_emit_payload_types(skyrelay_server, skyrelay_client):
    c = skyrelay_client()
    when = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.timezone.utc)
    u = uuid.UUID(int=1)
    cases = [
        ({"a": [1, 2]}, {"a": [1, 2]}),
        ([1, "x"], [1, "x"]),
        ("plain text", "plain text"),
        (42, 42),
        (2.5, 2.5),
        (None, None),
        (True, True),
        (b'{"pre":"encoded"}', {"pre": "encoded"}),
        (Point(1.5, -2.0), {"lat": 1.5, "lon": -2.0}),
        ({"when": when, "color": Color.RED, "id": u, "tags": {"x"}},
         {"when": when.isoformat(), "color": "red", "id": str(u), "tags": ["x"]}),
        ("é ✓ 🛰", "é ✓ 🛰"),
    ]
    for data, _ in cases:
        skyrelay_server.emit("p", data)
    for _, expected in cases:
        assert c.expect("p") == expected
    skyrelay_server.emit("p", {"o": Opaque()}, default=lambda o: "opaque!")
    assert c.expect("p") == {"o": "opaque!"}
    with pytest.raises(ValueError):
        skyrelay_server.emit("p", b"{not json")
    with pytest.raises(ValueError):
        skyrelay_server.emit("p", float("nan"))
    with pytest.raises(TypeError):
        skyrelay_server.emit("p", Opaque())


def test_json_default_applies_to_responses(skyrelay_server_factory, skyrelay_client):
    def configure(server):
        server.on("get", lambda conn, data: {"o": Opaque()})

    server = skyrelay_server_factory(configure, json_default=lambda o: "custom")
    c = skyrelay_client(server)
    assert c.request("get") == {"o": "custom"}


def test_unserializable_response_is_handler_error(skyrelay_server, skyrelay_client):
    skyrelay_server.on("bad", lambda conn, data: Opaque())
    c = skyrelay_client()
    with pytest.raises(skyrelay.testing.ResponseError) as err:
        c.request("bad")
    assert err.value.code == "handler_error"


def test_emit_from_many_threads(skyrelay_server, skyrelay_client):
    c = skyrelay_client()
    c.subscribe("t")
    threads = [threading.Thread(target=lambda k=k: [skyrelay_server.emit("x", [k, i], to="t")
                                                    for i in range(100)]) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = [c.expect("x") for _ in range(800)]
    for k in range(8):  # per-thread order is preserved
        assert [i for kk, i in got if kk == k] == list(range(100))


def test_emit_from_asyncio_and_handlers_on_callers_loop(skyrelay_client):
    async def main():
        loop = asyncio.get_running_loop()
        server = skyrelay.Server(port=0)  # started inside a running loop: uses it
        handled_on = []

        @server.on("where")
        async def where(conn, data):
            handled_on.append(asyncio.get_running_loop())
            server.emit("from_handler", data, to=conn)
            return "ok"

        server.start()
        try:
            c = await asyncio.to_thread(connect, server.url)
            try:
                server.emit("from_task", 1)
                assert await asyncio.to_thread(c.expect, "from_task") == 1
                assert await asyncio.to_thread(c.request, "where", 5) == "ok"
                assert await asyncio.to_thread(c.expect, "from_handler") == 5
            finally:
                await asyncio.to_thread(c.close)
        finally:
            await asyncio.to_thread(server.stop)
        assert handled_on == [loop]

    asyncio.run(main())


def test_health_and_metrics_endpoints(skyrelay_server, skyrelay_client):
    c = skyrelay_client()
    c.subscribe("room")
    status, ctype, body = get(f"{skyrelay_server.http_url}/health")
    assert status == 200 and ctype == "application/json"
    health = json.loads(body)
    assert health["status"] == "ok" and health["connections"] == 1 and health["rooms"] == 1
    assert health["uptime_s"] >= 0
    c.send("garbage")
    c.expect_frame("error")
    skyrelay_server.emit("m", 1, to="room")
    c.expect("m")
    status, ctype, body = get(f"{skyrelay_server.http_url}/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    text = body.decode()
    for name in ('skyrelay_open_connections{transport="json"} 1',
                 MESSAGES_RECEIVED_JSON,
                 BYTES_RECEIVED_JSON,
                 MESSAGES_SENT_JSON,
                 BYTES_SENT_JSON,
                 'skyrelay_drops_total{reason="drop_oldest"}',
                 'skyrelay_drops_total{reason="slow_consumer"}',
                 'skyrelay_errors_total{code="bad_json"} 1',
                 "skyrelay_publish_to_write_seconds_bucket{le=\"+Inf\"}",
                 "# TYPE skyrelay_publish_to_write_seconds histogram"):
        assert name in text, name


def test_static_files(tmp_path, skyrelay_server_factory):
    (tmp_path / "index.html").write_text("<h1>hi</h1>")
    (tmp_path / "app.js").write_text("export const x = 1;")
    (tmp_path / "sub").mkdir()
    (tmp_path.parent / "secret.txt").write_text("secret")
    server = skyrelay_server_factory(static_dir=tmp_path)
    base = server.http_url
    assert get(f"{base}/") == (200, "text/html; charset=utf-8", b"<h1>hi</h1>")
    status, ctype, body = get(f"{base}/app.js")
    assert (status, ctype) == (200, "text/javascript; charset=utf-8") and b"export" in body
    assert get(f"{base}/missing.css")[0] == 404
    assert get(f"{base}/%2e%2e/secret.txt")[0] == 404
    assert get(f"{base}/sub")[0] == 404  # a directory without index.html


def test_installed_package_ships_stubs_and_private_core():
    from importlib import resources

    import skyrelay._core as core

    files = resources.files("skyrelay")
    assert (files / "py.typed").is_file()
    stub = (files / "_core.pyi").read_text()
    # Every public name of the extension is declared in the stub.
    for name in ("Server", "is_valid_json"):
        assert hasattr(core, name) and name in stub
    for method in ("emit", "join", "leave", "rooms", "respond", "refuse", "metrics_text"):
        assert hasattr(core.Server, method) and f"def {method}(" in stub


def test_run_in_a_thread_returns_when_stopped():
    server = skyrelay.Server(port=0)
    runner = threading.Thread(target=server.run, name="run-under-test", daemon=True)
    runner.start()
    try:
        assert wait_until(lambda: server.running, timeout=10)
        with connect(server.url) as c:
            assert c.ping()["type"] == "pong"
            server.stop()
            assert c.expect_closed()[0] == 1001
        runner.join(timeout=10)
        assert not runner.is_alive(), "run() kept blocking after stop()"
    finally:
        server.stop()


def test_run_stops_gracefully_on_sigint(tmp_path):
    script = tmp_path / "serve.py"
    script.write_text(
        "import skyrelay\n"
        "server = skyrelay.Server(port=0)\n"
        "server.on('hello', lambda conn, data: 'hi')\n"
        "server.run()\n"
        "print('RUN RETURNED', flush=True)\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()  # "skyrelay serving on http://127.0.0.1:PORT ..."
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match, line
        with connect(f"ws://127.0.0.1:{match.group(1)}/ws") as c:
            assert c.request("hello") == "hi"
            proc.send_signal(signal.SIGINT)
            assert c.expect_closed(timeout=10)[0] == 1001
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, out
        assert "RUN RETURNED" in out and "Traceback" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_async_handlers_run_on_the_given_loop(skyrelay_client):
    loop = asyncio.new_event_loop()
    loop_thread = threading.Thread(target=loop.run_forever, name="caller-loop", daemon=True)
    loop_thread.start()
    seen = []
    server = skyrelay.Server(port=0, loop=loop)

    @server.on("where")
    async def where(conn, data):
        await asyncio.sleep(0)
        seen.append((asyncio.get_running_loop(), threading.current_thread().name))
        return data * 2

    @server.on("sync_where")
    def sync_where(conn, data):
        seen.append((None, threading.current_thread().name))
        return data

    server.start()
    try:
        c = skyrelay_client(server)
        assert c.request("where", 21) == 42
        assert c.request("sync_where", 1) == 1
        assert seen[0] == (loop, "caller-loop")
        assert seen[1][1] not in ("caller-loop", threading.current_thread().name)
    finally:
        server.stop()
        loop.call_soon_threadsafe(loop.stop)
        loop_thread.join(timeout=5)
        loop.close()


def test_async_handler_without_a_loop_gets_the_servers_own(skyrelay_server, skyrelay_client):
    @skyrelay_server.on("aio")
    async def aio(conn, data):
        await asyncio.sleep(0.01)
        if data == "fail":
            raise skyrelay.RequestError("nope", "async refusal")
        return threading.current_thread().name

    c = skyrelay_client()
    assert c.request("aio") == "skyrelay-asyncio"
    with pytest.raises(skyrelay.testing.ResponseError) as err:
        c.request("aio", "fail")
    assert (err.value.code, err.value.message) == ("nope", "async refusal")


def test_refusals_status_body_and_no_trace(skyrelay_server_factory, skyrelay_client):
    import websockets

    disconnects = []

    def configure(server):
        @server.on_connect
        def on_connect(conn):
            if conn.query == "mode=false":
                return False
            if conn.query == "mode=401":
                raise skyrelay.ConnectionRefused("nope", 401)
            if conn.query == "mode=429":
                raise skyrelay.ConnectionRefused("slow down", status=429)
            if conn.query == "mode=crash":
                raise KeyError("oops")
            return True

        @server.on_disconnect
        def on_disconnect(conn, reason):
            disconnects.append((conn.sid, reason))

    server = skyrelay_server_factory(configure)
    calm = skyrelay_client(server)
    calm.subscribe("calm")
    expected = {"false": (403, "connection refused"), "401": (401, "nope"),
                "429": (429, "slow down"), "crash": (500, "connect handler failed")}
    for mode, (status, message) in expected.items():
        with pytest.raises(websockets.exceptions.InvalidStatus) as err:
            skyrelay_client(server, path=f"/ws?mode={mode}")
        response = err.value.response
        assert response.status_code == status, mode
        assert json.loads(bytes(response.body)) == {"error": "connection_refused",
                                                     "message": message}
        assert response.headers["Content-Type"] == "application/json"
        # The reason phrase matches the status (not "Forbidden" for everything).
        assert response.reason_phrase == http.HTTPStatus(status).phrase, mode
    # A refused session is removed on the I/O thread after its answer is written.
    assert wait_until(lambda: server.connection_count == 1, timeout=5)
    assert server.health()["connections"] == 1
    assert server.emit("e", 1) == 1  # refused clients are not in the hub
    assert calm.expect("e") == 1
    assert disconnects == []  # the refused never connected, so they never disconnect
    calm.close()
    assert wait_until(lambda: disconnects == [(calm.sid, "client_close")])
    assert server.connection_count == 0


def test_disconnect_reasons_and_4002(skyrelay_server, skyrelay_client):
    reasons = {}
    conns = {}

    @skyrelay_server.on_disconnect
    def gone(conn, reason):
        reasons[conn.sid] = reason

    @skyrelay_server.on("hello")
    def hello(conn, data):
        conns[conn.sid] = conn

    leaving, kicked = skyrelay_client(), skyrelay_client()
    for c in (leaving, kicked):
        c.emit("hello")
    assert wait_until(lambda: len(conns) == 2)
    leaving.close()
    assert wait_until(lambda: reasons.get(leaving.sid) == "client_close")
    conn = conns[kicked.sid]
    assert conn.connected
    assert conn.disconnect("go away") is True
    assert kicked.expect_closed() == (4002, "go away")
    assert wait_until(lambda: reasons.get(kicked.sid) == "server_disconnect")
    assert not conn.connected
    assert conn.disconnect() is False  # already gone
    assert skyrelay_server.disconnect("no-such-sid") is False
    assert skyrelay_server.connection_count == 0


def test_server_join_leave_and_room_size(skyrelay_server, skyrelay_client):
    a, b = skyrelay_client(), skyrelay_client()
    assert skyrelay_server.join(a.sid, "x") and skyrelay_server.join(b.sid, "x")
    assert skyrelay_server.room_size("x") == 2
    assert skyrelay_server.join("no-such-sid", "x") is False
    assert skyrelay_server.emit("e", "both", to="x") == 2
    assert skyrelay_server.leave(b.sid, "x") is True
    assert skyrelay_server.leave(b.sid, "x") is False
    assert skyrelay_server.room_size("x") == 1
    assert skyrelay_server.emit("e", "a only", to="x") == 1
    assert [a.expect("e") for _ in range(2)] == ["both", "a only"]
    assert b.expect("e") == "both"
    b.expect_nothing(0.2, "event")
    a.close()
    assert wait_until(lambda: skyrelay_server.room_size("x") == 0)
    assert skyrelay_server.rooms(a.sid) == []


def test_emit_to_connections_and_mixed_lists(skyrelay_server, skyrelay_client):
    conns = {}

    @skyrelay_server.on("hello")
    def hello(conn, data):
        conns[data] = conn
        return True

    a, b, c = skyrelay_client(), skyrelay_client(), skyrelay_client()
    for name, client in (("a", a), ("b", b), ("c", c)):
        assert client.request("hello", name)
    c.subscribe("room")
    b.subscribe("room")
    assert skyrelay_server.emit("e", "conn", to=conns["a"]) == 1
    assert skyrelay_server.emit("e", "mixed", to=["room", conns["a"], b.sid]) == 3
    assert skyrelay_server.emit("e", "skip conn", to="room", skip=conns["c"]) == 1
    assert skyrelay_server.emit("e", "skip list", skip=[conns["a"], c.sid]) == 1
    assert [a.expect("e") for _ in range(2)] == ["conn", "mixed"]
    assert [b.expect("e") for _ in range(3)] == ["mixed", "skip conn", "skip list"]
    assert [c.expect("e") for _ in range(1)] == ["mixed"]
    for client in (a, b, c):
        client.expect_nothing(0.1, "event")


def test_emit_from_asyncio_tasks(skyrelay_server, skyrelay_client):
    c = skyrelay_client()
    c.subscribe("aio")

    async def producer(k):
        for i in range(50):
            skyrelay_server.emit("t", [k, i], to="aio")
            await asyncio.sleep(0)

    async def main():
        await asyncio.gather(*(asyncio.create_task(producer(k)) for k in range(4)))

    asyncio.run(main())
    got = [c.expect("t") for _ in range(200)]
    for k in range(4):
        assert [i for kk, i in got if kk == k] == list(range(50))
    c.expect_nothing(0.1, "event")


def test_emit_argument_errors(skyrelay_server):
    with pytest.raises(ValueError):
        skyrelay_server.emit("e", float("inf"))
    with pytest.raises(ValueError):
        skyrelay_server.emit("e", {"x": [float("nan")]})
    with pytest.raises(ValueError):
        skyrelay_server.emit("e", b"\xff\xfe")  # not UTF-8
    with pytest.raises(ValueError):
        skyrelay_server.emit("e", bytearray(b"[1, 2"))
    assert skyrelay_server.emit("e", bytearray(b"[1, 2]")) == 0
    assert skyrelay_server.emit("e", memoryview(b'"x"')) == 0


def test_counters_move(skyrelay_server, skyrelay_client):
    def value(sample):
        return metric(skyrelay_server, sample)

    @skyrelay_server.on("fail")
    def fail(conn, data):
        raise RuntimeError("boom")

    c = skyrelay_client()
    in0, out0 = value(MESSAGES_RECEIVED_JSON), value(MESSAGES_SENT_JSON)
    bytes_in0 = value(BYTES_RECEIVED_JSON)
    for _ in range(5):
        c.ping()
    assert value(MESSAGES_RECEIVED_JSON) == in0 + 5
    assert wait_until(lambda: value(MESSAGES_SENT_JSON) >= out0 + 5)
    assert value(BYTES_RECEIVED_JSON) > bytes_in0
    assert value('skyrelay_errors_total{code="bad_json"}') == 0
    c.send("{oops")
    c.expect_frame("error")
    assert value('skyrelay_errors_total{code="bad_json"}') == 1
    c.emit("nobody_listens")
    c.expect_frame("error")
    assert value('skyrelay_errors_total{code="unknown_event"}') == 1
    with pytest.raises(skyrelay.testing.ResponseError):
        c.request("fail")
    assert value('skyrelay_errors_total{code="handler_error"}') == 1
    c.close()
    assert wait_until(lambda: value('skyrelay_disconnects_total{reason="client_close"}') == 1)
    assert value(OPEN_JSON) == 0


def test_health_tracks_connections(skyrelay_server, skyrelay_client):
    clients = [skyrelay_client() for _ in range(3)]
    clients[0].subscribe("a", "b")
    health = json.loads(get(f"{skyrelay_server.http_url}/health")[2])
    assert (health["connections"], health["rooms"]) == (3, 2)
    assert skyrelay_server.health()["connections"] == 3
    clients[0].close()
    assert wait_until(lambda: skyrelay_server.health()["connections"] == 2
                      and skyrelay_server.health()["rooms"] == 0)
    health = json.loads(get(f"{skyrelay_server.http_url}/health")[2])
    assert (health["status"], health["connections"], health["rooms"]) == ("ok", 2, 0)
    assert skyrelay_server.connection_count == 2


def raw_http(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        head, _, body = read_head(s).partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
        length = int(headers.get("content-length", "0"))
        if not request.startswith(b"HEAD"):
            while len(body) < length:
                chunk = s.recv(65536)
                if not chunk:
                    break
                body += chunk
        return int(lines[0].split()[1]), headers, body


def test_static_content_types_head_and_escapes(tmp_path, skyrelay_server_factory):
    root = tmp_path / "www"
    (root / "sub").mkdir(parents=True)
    (root / "style.css").write_text("body{}")
    (root / "data.json").write_text("[1]")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "sub" / "index.html").write_text("sub index")
    (tmp_path / "secret.txt").write_text("secret")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    server = skyrelay_server_factory(static_dir=str(root))
    base = server.http_url
    for name, ctype in (("style.css", "text/css; charset=utf-8"),
                        ("data.json", "application/json"), ("logo.png", "image/png")):
        status, got_type, body = get(f"{base}/{name}")
        assert (status, got_type, body) == (200, ctype, (root / name).read_bytes())
    assert get(f"{base}/sub/") == (200, "text/html; charset=utf-8", b"sub index")
    status, ctype, body = get(f"{base}/")  # no index.html at the root
    assert (status, ctype) == (404, "application/json") and "error" in json.loads(body)
    assert "error" in json.loads(get(f"{base}/nothing.html")[2])
    status, headers, body = raw_http(server.port, b"HEAD /style.css HTTP/1.1\r\nHost: x\r\n"
                                                  b"Connection: close\r\n\r\n")
    assert (status, headers["content-length"], body) == (200, "6", b"")
    for path in ("/../secret.txt", "/sub/../../secret.txt", "/%2e%2e/secret.txt",
                 "/..%2fsecret.txt", "/sub/%2E%2E/%2E%2E/secret.txt", "/link.txt",
                 "//etc/passwd", "/%00", "/%zz"):
        status, _, body = raw_http(server.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n"
                                                f"Connection: close\r\n\r\n".encode())
        assert status in (400, 404), path
        assert b"secret" not in body and b"root:" not in body, path
