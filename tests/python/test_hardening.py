"""Web hardening (issue 13, item 4): CORS never combines "*" with credentials; the WSGI bridge
drops request headers with "_" and refuses response headers that could split the response; a
write that stays pending is cut as a slow consumer; a handler's exception text stays in the
server log unless debug=True; static files hide dotfiles; every response says nosniff.

HTTP is spoken over raw sockets where the exact bytes matter (paths that a client library would
normalise, headers it would refuse to send, responses it would refuse to parse)."""

from __future__ import annotations

import json
import logging
import socket
import time

import httpx
import pytest

import skyrelay
from skyrelay.testing import metric, wait_until
from httpraw import read_head, read_to_close
from wsraw import RawClient

ORIGIN = "https://app.example"


def get(port: int, target: str, headers: str = "", method: str = "GET") -> bytes:
    return read_to_close(port, (f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                           f"{headers}Connection: close\r\n\r\n").encode("latin-1"))


def parse(response: bytes) -> tuple[int, dict[str, list[str]], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields.setdefault(name.strip().lower(), []).append(value.strip())
    return int(lines[0].split(" ")[1]), fields, body


# -- CORS ---------------------------------------------------------------------------------------

def cors_of(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


def sse_head(server, origin: str, path: str = "/sse/a") -> httpx.Response:
    with httpx.stream("GET", f"http://127.0.0.1:{server.port}{path}",
                      headers={"Origin": origin}, timeout=5) as r:
        return r


def eio_requests(server, origin: str) -> list[httpx.Response]:
    """An Engine.IO polling handshake, a poll, a POST and a preflight, from `origin`."""
    base = f"http://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=polling"
    h = {"Origin": origin}
    first = httpx.get(base, headers=h, timeout=5)
    assert first.status_code == 200, first.text
    sid = json.loads(first.text[1:])["sid"]
    post = httpx.post(f"{base}&sid={sid}", content="40", headers=h, timeout=5)
    poll = httpx.get(f"{base}&sid={sid}", headers=h, timeout=5)
    preflight = httpx.request("OPTIONS", base, timeout=5,
                              headers={**h, "Access-Control-Request-Method": "POST",
                                       "Access-Control-Request-Headers": "content-type"})
    return [first, post, poll, preflight]


@pytest.mark.parametrize("origins", ["*", ["*"], [ORIGIN, "*"]])
def test_a_wildcard_origin_never_allows_credentials(skyrelay_server_factory, origins):
    server = skyrelay_server_factory(cors_allowed_origins=origins)
    for origin in ("https://anywhere.example", ORIGIN):
        for r in [sse_head(server, origin), *eio_requests(server, origin)]:
            assert r.status_code in (200, 204), (r.request.method, r.status_code)
            assert cors_of(r).get("access-control-allow-origin") == "*", r.request.url
            assert "access-control-allow-credentials" not in r.headers, r.request.url


def test_listed_origins_are_echoed_with_credentials(skyrelay_server_factory):
    server = skyrelay_server_factory(cors_allowed_origins=[ORIGIN])
    for r in [sse_head(server, ORIGIN), *eio_requests(server, ORIGIN)]:
        assert cors_of(r)["access-control-allow-origin"] == ORIGIN
        assert cors_of(r)["access-control-allow-credentials"] == "true"
        assert "Origin" in r.headers["vary"]
    plain = skyrelay_server_factory(cors_allowed_origins=[ORIGIN], cors_credentials=False)
    for r in [sse_head(plain, ORIGIN), *eio_requests(plain, ORIGIN)]:
        assert cors_of(r)["access-control-allow-origin"] == ORIGIN
        assert "access-control-allow-credentials" not in r.headers


def test_asking_for_credentials_with_a_wildcard_is_an_error():
    with pytest.raises(ValueError, match="cors_credentials"):
        skyrelay.Server(port=0, cors_allowed_origins="*", cors_credentials=True)
    with pytest.raises(ValueError, match="cors_credentials"):
        skyrelay.Server(port=0, cors_allowed_origins=["https://a.example", "*"],
                        cors_credentials=True)
    # The default and an explicit False are fine with "*".
    skyrelay.Server(port=0, cors_allowed_origins="*")
    skyrelay.Server(port=0, cors_allowed_origins="*", cors_credentials=False)


def test_the_flask_facade_passes_the_rule_on():
    flask = pytest.importorskip("flask")
    from skyrelay.flask import SocketIO

    app = flask.Flask(__name__)
    with pytest.raises(ValueError, match="cors_credentials"):
        SocketIO(app, cors_allowed_origins="*", cors_credentials=True)._build("127.0.0.1", 0)
    socketio = SocketIO(app, cors_allowed_origins="*")
    server = socketio._build("127.0.0.1", 0)
    server.start()
    try:
        for r in eio_requests(server, "https://anywhere.example"):
            assert cors_of(r)["access-control-allow-origin"] == "*"
            assert "access-control-allow-credentials" not in r.headers
    finally:
        server.stop()


def test_cors_headers_only_where_the_setting_governs(skyrelay_server_factory, tmp_path):
    """/health, /metrics, static files and the publish API carry no CORS headers: a page of
    another origin cannot read them, and cannot publish (its preflight gets 405)."""
    (tmp_path / "page.html").write_text("<p>hi</p>")
    server = skyrelay_server_factory(cors_allowed_origins="*", static_dir=str(tmp_path),
                                     publish_token="tok")
    base = f"http://127.0.0.1:{server.port}"
    h = {"Origin": "https://anywhere.example"}
    for r in (httpx.get(f"{base}/health", headers=h), httpx.get(f"{base}/metrics", headers=h),
              httpx.get(f"{base}/page.html", headers=h),
              httpx.post(f"{base}/api/publish", json={"event": "e"}, timeout=5,
                         headers={**h, "Authorization": "Bearer tok"})):
        assert r.status_code == 200, r.request.url
        assert cors_of(r) == {}, r.request.url
    preflight = httpx.request("OPTIONS", f"{base}/api/publish", timeout=5,
                              headers={**h, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 405
    assert cors_of(preflight) == {}


# -- the WSGI bridge ----------------------------------------------------------------------------

def flask_app():
    flask = pytest.importorskip("flask")
    app = flask.Flask(__name__)

    @app.get("/seen")
    def seen():
        env = flask.request.environ
        return {"forwarded_for": flask.request.headers.get("X-Forwarded-For"),
                "http": sorted(k for k in env if k.startswith("HTTP_"))}

    @app.get("/header")
    def header():
        # Werkzeug checks values for CR and LF but not names, nor other control characters.
        resp = flask.make_response("body")
        resp.headers[flask.request.args["name"]] = flask.request.args.get("value", "v")
        return resp

    @app.get("/fine")
    def fine():
        resp = flask.make_response("fine")
        resp.headers["X-Fine"] = "tab\tinside, caf\u00e9"
        return resp

    def with_raw_header(wsgi):
        """Middleware (where raw header lists are written by hand) adding ?raw=... as a value,
        past Werkzeug's own checks."""
        def middleware(environ, start_response):
            if not environ["PATH_INFO"].startswith("/raw"):
                return wsgi(environ, start_response)
            from urllib.parse import parse_qs
            value = parse_qs(environ["QUERY_STRING"])["v"][0]
            start_response("200 OK", [("Content-Type", "text/plain"), ("X-Raw", value)])
            return [b"raw"]
        return middleware

    app.wsgi_app = with_raw_header(app.wsgi_app)
    return app


@pytest.fixture
def wsgi_server(skyrelay_server_factory):
    return skyrelay_server_factory(wsgi_app=flask_app())


def test_request_headers_with_underscores_never_reach_the_app(wsgi_server):
    port = wsgi_server.port
    status, _, body = parse(get(port, "/seen", "X_Forwarded_For: 6.6.6.6\r\n"
                                               "X-Forwarded-For: 1.2.3.4\r\n"
                                               "X-Real_IP: 6.6.6.6\r\nX-Custom: ok\r\n"))
    assert status == 200
    seen = json.loads(body)
    assert seen["forwarded_for"] == "1.2.3.4"
    assert "HTTP_X_REAL_IP" not in seen["http"] and "HTTP_X_CUSTOM" in seen["http"]
    # Alone, it does not pass for the real header either.
    _, _, body = parse(get(port, "/seen", "X_Forwarded_For: 6.6.6.6\r\n"))
    assert json.loads(body)["forwarded_for"] is None


@pytest.mark.parametrize("target", [
    "/header?name=X-A%0D%0ASet-Cookie:%20evil%3D1",  # a name that would add a header
    "/header?name=X-A%0ASet-Cookie:%20evil%3D1",
    "/header?name=X%20A",
    "/header?name=X:A",
    "/header?name=X%01A",
    "/header?name=X-A&value=a%00b",
    "/header?name=X-A&value=a%0Bb",
    "/raw?v=a%0D%0ASet-Cookie:%20evil%3D1",               # a value that would split it
    "/raw?v=a%0D%0A%0D%0AHTTP/1.1%20200%20OK%0D%0A%0D%0Aevil",
    "/raw?v=a%0Aevil:%201",
    "/raw?v=a%0Devil:%201",
])
def test_a_response_header_that_could_split_the_response_is_a_500(wsgi_server, target, caplog):
    with caplog.at_level(logging.ERROR, logger="skyrelay"):
        response = get(wsgi_server.port, target)
    status, fields, body = parse(response)
    assert status == 500, response
    assert response.count(b"HTTP/1.1") == 1
    assert b"evil" not in response and "set-cookie" not in fields and "x-a" not in fields
    assert body == b"Internal Server Error"
    assert any("WSGI app failed" in r.getMessage() and r.exc_info for r in caplog.records)
    # The connection and the server are fine: a good answer comes next, byte for byte.
    status, fields, body = parse(get(wsgi_server.port, "/fine"))
    assert status == 200 and body == b"fine"
    assert fields["x-fine"] == ["tab\tinside, caf\u00e9".encode().decode("latin-1")]


def test_the_core_refuses_a_splitting_header_the_bridge_let_through(wsgi_server, monkeypatch):
    """The last line: with the bridge's own check switched off, http_reply still never writes
    a header with CR or LF, nor a 1xx status."""
    import skyrelay.wsgi

    monkeypatch.setattr(skyrelay.wsgi, "check_response",
                        lambda status, headers: (int(str(status).split()[0]), list(headers)))
    for target in ("/raw?v=a%0D%0ASet-Cookie:%20evil%3D1", "/header?name=X-A%0D%0AX-B"):
        response = get(wsgi_server.port, target)
        status, fields, body = parse(response)
        assert status == 500, response
        assert response.count(b"HTTP/1.1") == 1 and b"evil" not in response
        assert "x-b" not in fields and "x-raw" not in fields
        assert json.loads(body)["error"] == "bad_response"


# -- write timeout ------------------------------------------------------------------------------

PAD = "x" * 700
BATCH = 32


class StalledSSE:
    """An SSE client that reads the response header, then nothing more."""

    def __init__(self, port: int, topic: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(f"GET /sse/{topic} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            assert chunk
            head += chunk
        assert head.startswith(b"HTTP/1.1 200")

    def close(self) -> None:
        self.sock.close()


class StalledSocketIO:
    """A Socket.IO client over WebSocket that connects to "/", then reads nothing more."""

    def __init__(self, port: int) -> None:
        self.raw = RawClient(port, "/socket.io/?EIO=4&transport=websocket", rcvbuf=4096,
                             timeout=10)
        assert self.raw.status == 101
        assert self.raw.read_frame()[1].startswith(b"0{")  # Engine.IO open
        self.raw.send_text("40")
        assert self.raw.read_frame()[1].startswith(b"40{")  # Socket.IO CONNECT answered

    def close(self) -> None:
        self.raw.close()


def pump_until_cut(server, fast, reasons, **emit) -> int:
    """Publishes batches of BATCH events until a connection has ended; after each batch the
    fast client must have received exactly that batch. Returns the number of events sent."""
    sent = 0
    deadline = time.monotonic() + 60
    while not reasons:
        assert time.monotonic() < deadline and sent < 100_000, "the stalled client stayed"
        for _ in range(BATCH):
            server.emit("tick", {"i": sent, "pad": PAD}, **emit)
            sent += 1
        got = [fast.expect_event("tick", timeout=30) for _ in range(BATCH)]
        assert [f["data"]["i"] for f in got] == list(range(sent - BATCH, sent))
    return sent


@pytest.mark.parametrize("transport", ["websocket", "sse", "socket.io"])
def test_a_write_pending_past_write_timeout_cuts_the_slow_consumer(skyrelay_server_factory,
                                                                   skyrelay_client, transport):
    reasons: dict[str, str] = {}

    def configure(srv):
        srv.on_disconnect(lambda conn, reason: reasons.__setitem__(conn.sid, reason))

    server = skyrelay_server_factory(configure, write_timeout=1.0)
    # drop_oldest keeps the stalled client's outbox from overflowing: only the write deadline
    # can end it.
    if transport == "socket.io":
        slow = StalledSocketIO(server.port)
        emit = {"policy": "drop_oldest"}  # to everyone in "/"
    else:
        server.set_room_policy("feed", "drop_oldest")
        slow = RawClient(server.port, "/ws/feed", rcvbuf=4096, timeout=10) \
            if transport == "websocket" else StalledSSE(server.port, "feed")
        emit = {"to": "feed"}
        assert wait_until(lambda: server.room_size("feed") == 1)
    fast = skyrelay_client(server, path="/ws/feed", timeout=30)
    assert fast.expect_frame("subscribed")["topic"] == "feed"

    sent = pump_until_cut(server, fast, reasons, **emit)
    # The stalled one was cut for its write, counted as a slow consumer; the fast one is fine.
    assert wait_until(lambda: list(reasons.values()) == ["slow_consumer"]), reasons
    assert fast.sid not in reasons
    assert metric(server, 'skyrelay_limit_hits_total{limit="write_timeout"}') == 1
    assert metric(server, 'skyrelay_disconnects_total{reason="slow_consumer"}') == 1
    assert server.emit("tick", {"i": sent}, **emit) == 1
    assert fast.expect("tick")["i"] == sent
    assert fast.ping()["type"] == "pong"
    slow.close()


def test_write_timeout_leaves_readers_alone(skyrelay_server_factory, skyrelay_client):
    """A client that reads, however much it is sent, is never cut by the write deadline."""
    server = skyrelay_server_factory(write_timeout=1.0)
    c = skyrelay_client(server, path="/ws/bulk", timeout=30)
    c.expect_frame("subscribed")
    big = "y" * 60_000
    for i in range(60):
        server.emit("bulk", {"i": i, "pad": big}, to="bulk")
        assert c.expect("bulk")["i"] == i
    assert metric(server, 'skyrelay_limit_hits_total{limit="write_timeout"}') == 0
    assert c.ping()["type"] == "pong"


# -- handler errors and debug -------------------------------------------------------------------

SECRET_TEXT = "password=hunter2 in /srv/app/settings.py"


def failing_handlers(server):
    @server.on("crash")
    def crash(conn, data):
        raise ValueError(SECRET_TEXT)

    @server.on("opaque")
    def opaque(conn, data):
        return object()

    @server.on("refuse")
    def refuse(conn, data):
        raise skyrelay.RequestError("not_allowed", "you may not")

    @server.on("crash", namespace="/io")
    def crash_io(conn, data):
        raise KeyError(SECRET_TEXT)

    @server.on("refuse", namespace="/io")
    def refuse_io(conn, data):
        raise skyrelay.RequestError("not_allowed", "you may not")


def logged_traceback(caplog) -> bool:
    return any(r.exc_info and SECRET_TEXT in "".join(
        logging.Formatter().formatException(r.exc_info).splitlines())
        for r in caplog.records if r.name == "skyrelay")


@pytest.mark.parametrize("debug", [False, True])
def test_json_protocol_handler_errors(skyrelay_server_factory, skyrelay_client, caplog, debug):
    server = skyrelay_server_factory(failing_handlers, debug=debug)
    c = skyrelay_client(server)
    with caplog.at_level(logging.ERROR, logger="skyrelay"):
        c.send({"type": "request", "id": "1", "event": "crash"})
        err = c.expect_frame("response")["error"]
        assert wait_until(lambda: logged_traceback(caplog))
    assert err["code"] == "handler_error"
    if debug:
        assert err["message"] == f"ValueError: {SECRET_TEXT}"
    else:
        assert err["message"] == "the handler failed; the server log has the details"
    c.send({"type": "request", "id": "2", "event": "opaque"})
    err = c.expect_frame("response")["error"]
    assert err["code"] == "handler_error"
    assert ("object" in err["message"]) is debug
    # The application's own refusal is an intended answer: code and message as raised.
    c.send({"type": "request", "id": "3", "event": "refuse"})
    assert c.expect_frame("response")["error"] == {"code": "not_allowed",
                                                   "message": "you may not"}
    # A plain event has no answer: nothing is sent, the log has it, the connection stays.
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="skyrelay"):
        c.emit("crash", 1)
        assert wait_until(lambda: logged_traceback(caplog))
    c.expect_nothing(0.2)
    assert c.ping()["type"] == "pong"


@pytest.mark.parametrize("debug", [False, True])
def test_socketio_acks_carry_handler_error(skyrelay_server_factory, sio_clients, caplog, debug):
    server = skyrelay_server_factory(failing_handlers, debug=debug)
    client = sio_clients()
    client.connect(f"http://127.0.0.1:{server.port}", namespaces=["/io"], transports=["polling"])
    with caplog.at_level(logging.ERROR, logger="skyrelay"):
        ack = client.call("crash", 1, namespace="/io", timeout=10)
        assert wait_until(lambda: logged_traceback(caplog))
    message = f"KeyError: {SECRET_TEXT!r}" if debug else \
        "the handler failed; the server log has the details"
    assert ack == {"error": {"code": "handler_error", "message": message, "event": "crash"}}
    assert client.call("refuse", namespace="/io", timeout=10) == {
        "error": {"code": "not_allowed", "message": "you may not", "event": "refuse"}}
    # Without an ack nothing goes back; the socket stays.
    received = []
    client.on("*", lambda *a: received.append(a), namespace="/io")
    client.emit("crash", 2, namespace="/io")
    assert client.call("refuse", namespace="/io", timeout=10)["error"]["code"] == "not_allowed"
    assert received == []


def test_flask_facade_takes_debug():
    flask = pytest.importorskip("flask")
    from skyrelay.flask import SocketIO

    for debug in (False, True):
        app = flask.Flask(__name__)
        socketio = SocketIO(app, debug=debug)

        @socketio.on("crash")
        def crash(data):
            raise ValueError(SECRET_TEXT)

        client = socketio.test_client(app)
        try:
            ack = client.emit("crash", 1, callback=True)
            assert ack["error"]["code"] == "handler_error"
            assert (SECRET_TEXT in ack["error"]["message"]) is debug
        finally:
            client.disconnect()
            socketio.stop()


def test_flask_run_debug_sets_it_unless_the_constructor_said(monkeypatch):
    flask = pytest.importorskip("flask")
    from skyrelay.flask import SocketIO

    monkeypatch.setattr(skyrelay.Server, "run", lambda self: None)  # not serve until Ctrl+C
    for options, run_debug, expected in (({}, True, True), ({}, False, False),
                                         ({"debug": False}, True, False), ({}, None, False)):
        socketio = SocketIO(flask.Flask(__name__), **options)
        kwargs = {} if run_debug is None else {"debug": run_debug}
        socketio.run(port=0, **kwargs)
        assert socketio.server.debug is expected, (options, run_debug)


def test_fastapi_integration_takes_debug():
    pytest.importorskip("fastapi")
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from skyrelay.fastapi import SkyRelay
    from skyrelay.testing import ResponseError, connect

    for debug in (False, True):
        app = FastAPI()
        relay = SkyRelay(app, port=0, debug=debug)
        relay.server.on("crash", lambda conn, data: 1 / 0)
        with TestClient(app), connect(relay.server.url) as ws:
            with pytest.raises(ResponseError) as err:
                ws.request("crash")
            assert err.value.code == "handler_error"
            assert ("ZeroDivisionError" in err.value.message) is debug


# -- static files and nosniff -------------------------------------------------------------------

@pytest.fixture
def static_server(skyrelay_server_factory, tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "a" / ".hidden").mkdir(parents=True)
    (tmp_path / ".env").write_text("SECRET=1")
    (tmp_path / ".git" / "config").write_text("[core]")
    (tmp_path / "a" / ".hidden" / "x.txt").write_text("hidden")
    (tmp_path / "a" / "shown.txt").write_text("shown")
    (tmp_path / "index.html").write_text("<h1>home</h1>")
    return skyrelay_server_factory(static_dir=str(tmp_path), publish_token="tok")


@pytest.mark.parametrize("target", [
    "/.env", "/.git/config", "/.git/", "/.git", "/a/.hidden/x.txt", "/%2eenv", "/%2Eenv",
    "/%2egit/config", "/a/%2ehidden/x.txt", "/a%2f.hidden%2fx.txt", "/a/%2Ehidden%2Fx.txt",
    "/./.env", "/a/./shown.txt", "/a/.hidden/../shown.txt", "/a/%2e/shown.txt",
])
def test_dotfiles_and_dot_folders_are_not_served(static_server, target):
    for method in ("GET", "HEAD"):
        status, fields, body = parse(get(static_server.port, target, method=method))
        assert status == 404, (method, target)
        assert fields["x-content-type-options"] == ["nosniff"]
        assert b"SECRET" not in body and b"core" not in body and b"hidden" not in body
        if method == "GET":
            assert json.loads(body)["error"] == "not_found"
    # Their neighbours are served.
    status, _, body = parse(get(static_server.port, "/a/shown.txt"))
    assert (status, body) == (200, b"shown")


def test_every_response_says_nosniff(static_server):
    port = static_server.port

    def header(response: bytes) -> list[str]:
        return parse(response)[1].get("x-content-type-options", [])

    publish = ("POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\n"
               "Content-Type: application/json\r\nContent-Length: 13\r\n"
               "Connection: close\r\n\r\n{\"event\":\"e\"}").encode()
    responses = {
        "static": get(port, "/index.html"),
        "static HEAD": get(port, "/index.html", method="HEAD"),
        "skyrelay.js": get(port, "/skyrelay.js"),
        "404": get(port, "/missing"),
        "405": get(port, "/health", method="DELETE"),
        "health": get(port, "/health"),
        "metrics": get(port, "/metrics"),
        "publish 200": read_to_close(port, publish),
        "publish 401": read_to_close(port, publish.replace(b"Bearer tok", b"Bearer bad")),
        "eio handshake": get(port, "/socket.io/?EIO=4&transport=polling"),
        "eio error": get(port, "/socket.io/?EIO=3&transport=polling"),
        "ws refused": get(port, "/ws", "Origin: https://evil.example\r\nUpgrade: websocket\r\n"
                                       "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
    }
    for what, response in responses.items():
        assert response.startswith(b"HTTP/1.1 "), what
        assert header(response) == ["nosniff"], what
    assert parse(responses["publish 200"])[0] == 200
    assert parse(responses["publish 401"])[0] == 401
    assert parse(responses["static"])[0] == 200
    # An event stream says it in its header block.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /sse/a HTTP/1.1\r\nHost: x\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(1)
            assert chunk
            head += chunk
    assert parse(head)[1]["x-content-type-options"] == ["nosniff"]


def test_a_refused_stream_and_the_wsgi_app_say_nosniff(skyrelay_server_factory):
    flask = pytest.importorskip("flask")
    app = flask.Flask(__name__)
    app.get("/page")(lambda: "page")

    @app.get("/own")
    def own():
        resp = flask.make_response("own")
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp

    def configure(server):
        @server.on_connect
        def refuse(conn):
            raise skyrelay.ConnectionRefused("no", status=403)

    server = skyrelay_server_factory(configure, wsgi_app=app)
    refused = get(server.port, "/sse/a")
    assert parse(refused)[0] == 403
    assert parse(refused)[1]["x-content-type-options"] == ["nosniff"]
    page = get(server.port, "/page")
    assert parse(page)[2] == b"page"
    assert parse(page)[1]["x-content-type-options"] == ["nosniff"]
    # The app's own header is kept, not doubled.
    assert parse(get(server.port, "/own"))[1]["x-content-type-options"] == ["nosniff"]



HEAD_PATHS = [
    "/health",                                     # served
    "/no/such/file",                               # 404 with a JSON error
    "/socket.io/?EIO=4&transport=polling&sid=xx",  # an unknown Engine.IO session (400)
    "/api/publish",                                # the publish API takes POST only (405)
    "/ws/a",                                       # a WebSocket path without Upgrade
]


@pytest.mark.parametrize("path", HEAD_PATHS)
def test_answers_to_head_have_no_body(skyrelay_server_factory, path):
    # An answer to HEAD is the head a GET would get, without the body (RFC 9110, 9.3.2).
    # Error answers used to carry their JSON body, which a keep-alive client reads as the
    # start of its next answer.
    server = skyrelay_server_factory(publish_token="t")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head, _, rest = read_head(s).partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        assert status in (200, 400, 404, 405, 426), head
        length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))
        assert length > 0
        if b"connection: close" in head.lower():  # 426: nothing may follow the head
            while chunk := s.recv(65536):
                rest += chunk
            assert rest == b""
            return
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        # What follows the HEAD's head is the GET's answer, not a body.
        head2, _, rest = read_head(s, rest).partition(b"\r\n\r\n")
        assert head2.startswith(b"HTTP/1.1 %d " % status), (head, head2)
        while len(rest) < length:
            rest += s.recv(65536)
        if path != "/health":  # its body holds the uptime, whose digits vary
            assert len(rest) == length  # the Content-Length HEAD announced is GET's
