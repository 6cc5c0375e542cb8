"""The Python API: lifecycle, handlers, connections, emit targets and payloads, HTTP endpoints."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import enum
import json
import threading
import urllib.error
import urllib.request
import uuid

import pytest

import skyrelay
from skyrelay.testing import connect


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
    import websockets

    with pytest.raises(websockets.exceptions.InvalidStatus) as err:
        skyrelay_client(server, path="/ws?x=1")
    assert err.value.response.status_code == 401
    assert server.connection_count == 0
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
    import websockets

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
    for name in ("skyrelay_connections 1", "skyrelay_messages_in_total", "skyrelay_bytes_in_total",
                 "skyrelay_messages_out_total", "skyrelay_bytes_out_total",
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
