"""TLS on the one port (Server(ssl_certfile=..., ssl_keyfile=...)): wss, https SSE, /health,
/metrics, the publish API and Socket.IO (polling and WebSocket) with real clients that verify a
CA made here; plain HTTP, silent and untrusting clients fail cleanly and are counted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import socket
import ssl
import threading
import time

import httpx
import pytest
import requests
import socketio
import websockets
from httpx_sse import connect_sse
from httpraw import read_head
from tlscerts import PKI
from websockets.asyncio.client import connect as async_connect

import skyrelay
from skyrelay.testing import metric, wait_until

# /metrics series this module reads (docs/deployment.md, Metrics).
CLOSED_JSON = 'skyrelay_connections_closed_total{transport="json"}'
CLOSED_SSE = 'skyrelay_connections_closed_total{transport="sse"}'
FRAMES_SENT_JSON = 'skyrelay_sent_frames_total{transport="json"}'
WRITE_CALLS_JSON = 'skyrelay_write_calls_total{transport="json"}'

PUBLISH_TOKEN = "tls-publish-token"
HS_SECRET = b"tls-secret-" * 4


class _Loop:
    """One asyncio loop on a thread of its own, shared by every WSS client below."""

    loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def run(cls, coro, timeout: float = 30):
        if cls.loop is None:
            cls.loop = asyncio.new_event_loop()
            threading.Thread(target=cls.loop.run_forever, daemon=True).start()
        return asyncio.run_coroutine_threadsafe(coro, cls.loop).result(timeout)


class WSS:
    """A blocking face on the asyncio websockets client. (websockets' own sync client reads on
    a background thread while the caller writes, which on one ssl.SSLSocket races inside
    OpenSSL: about one handshake in a few hundred lost its request under TLS 1.3, when the
    session tickets arrived while it was being written. Every call here runs on one loop.)"""

    def __init__(self, url: str, **kwargs) -> None:
        kwargs.pop("open_timeout", None)
        async def open_():
            return await async_connect(url, open_timeout=10, **kwargs)

        self.ws = _Loop.run(open_())

    def recv(self, timeout: float = 5):
        return _Loop.run(asyncio.wait_for(self.ws.recv(), timeout))

    def send(self, message) -> None:
        _Loop.run(self.ws.send(message))

    def close(self) -> None:
        _Loop.run(self.ws.close())

    @property
    def close_code(self):
        return self.ws.close_code

    def __enter__(self) -> WSS:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


ws_connect = WSS


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def server(skyrelay_server_factory, pki):
    def configure(server: skyrelay.Server) -> None:
        @server.on("connect")
        def on_connect(conn):
            conn.emit("hello", {"transport": conn.transport})

    # The default handshake_timeout: a client of the suite's own process may stall for a few
    # hundred milliseconds on a busy machine (a 0.3 s timeout here once cut a python-socketio
    # polling handshake); the test of the timeout makes a server of its own.
    return skyrelay_server_factory(configure, ssl_certfile=pki.cert, ssl_keyfile=pki.key,
                                   publish_token=PUBLISH_TOKEN)


def https(server) -> str:
    return f"https://127.0.0.1:{server.port}"


def test_urls_say_tls(server):
    assert server.url == f"wss://127.0.0.1:{server.port}/ws"
    assert server.http_url == https(server)


def test_wss_welcome_subscribe_and_event(server, pki):
    with ws_connect(f"wss://127.0.0.1:{server.port}/ws", ssl=pki.client_context(),
                    open_timeout=5) as ws:
        welcome = json.loads(ws.recv(timeout=5))
        assert welcome["type"] == "welcome"
        assert json.loads(ws.recv(timeout=5))["event"] == "hello"
        ws.send(json.dumps({"type": "subscribe", "topic": "WELL-001"}))
        assert json.loads(ws.recv(timeout=5))["type"] == "subscribed"
        assert server.emit("telemetry_update", {"flow": 41.7}, to="WELL-001") == 1
        frame = json.loads(ws.recv(timeout=5))
        assert (frame["event"], frame["topic"], frame["data"]) == (
            "telemetry_update", "WELL-001", {"flow": 41.7})
        # Many events at once go out gathered; every one arrives, in order.
        for i in range(200):
            server.emit("n", i, to="WELL-001")
        assert [json.loads(ws.recv(timeout=5))["data"] for _ in range(200)] == list(range(200))
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=5))["type"] == "pong"
    assert wait_until(lambda: metric(server, CLOSED_JSON) == 1)


def test_wss_topic_path_and_large_frames(server, pki):
    with ws_connect(f"wss://127.0.0.1:{server.port}/ws/big", ssl=pki.client_context(),
                    open_timeout=5) as ws:
        types = [json.loads(ws.recv(timeout=5))["type"] for _ in range(3)]
        assert sorted(types) == ["event", "subscribed", "welcome"]
        blob = "x" * 200_000  # spans many TLS records
        server.emit("blob", blob, to="big")
        assert json.loads(ws.recv(timeout=5))["data"] == blob
        # A client message larger than one read buffer.
        ws.send(json.dumps({"type": "ping", "id": "y" * 30_000}))
        assert json.loads(ws.recv(timeout=5))["type"] == "pong"


def test_wss_reads_while_it_writes_and_after_idling(server, pki):
    # OpenSSL reads and writes the socket itself (net::tls_socket): a client message that
    # spans several records arrives while a burst of events is being written on the same TLS
    # session, and both come through whole, also after the connection went idle (its record
    # buffers given back) and again.
    with ws_connect(f"wss://127.0.0.1:{server.port}/ws/duplex", ssl=pki.client_context(),
                    open_timeout=5) as ws:
        assert sorted(json.loads(ws.recv(timeout=5))["type"] for _ in range(3)) == [
            "event", "subscribed", "welcome"]
        for round_ in range(3):
            time.sleep(0.2)
            for i in range(300):
                server.emit("n", {"i": i, "pad": "p" * 100}, to="duplex")
            ws.send(json.dumps({"type": "ping", "id": "z" * 40_000}))
            got = [json.loads(ws.recv(timeout=5)) for _ in range(301)]
            assert [g["data"]["i"] for g in got if g["type"] == "event"] == list(range(300))
            assert [g["type"] for g in got].count("pong") == 1


def test_https_health_metrics_and_publish_api(server, pki):
    with httpx.Client(verify=pki.client_context(), timeout=5) as client:
        health = client.get(https(server) + "/health")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        assert "skyrelay_tls_handshakes_failed_total" in client.get(https(server) +
                                                                    "/metrics").text
        with ws_connect(f"wss://127.0.0.1:{server.port}/ws/WELL-002", ssl=pki.client_context(),
                        open_timeout=5) as ws:
            for _ in range(3):
                ws.recv(timeout=5)
            r = client.post(https(server) + "/api/publish",
                            json={"event": "telemetry_update", "data": {"p": 1},
                                  "to": "WELL-002"},
                            headers={"Authorization": f"Bearer {PUBLISH_TOKEN}"})
            assert r.status_code == 200, r.text
            assert r.json()["published"]["delivered"] == 1
            assert json.loads(ws.recv(timeout=5))["data"] == {"p": 1}
        # Keep-alive: several requests on one TLS connection.
        for _ in range(3):
            assert client.get(https(server) + "/health").status_code == 200


def test_https_sse_receives_events(server, pki):
    events: queue.Queue = queue.Queue()
    with httpx.Client(verify=pki.client_context(), timeout=httpx.Timeout(5, read=10)) as client:
        with connect_sse(client, "GET", https(server) + "/sse/WELL-003") as source:
            assert source.response.status_code == 200
            it = source.iter_sse()
            assert next(sse for sse in it if sse.data).event == "welcome"
            server.emit("telemetry_update", {"flow": 7}, to="WELL-003")
            while True:
                sse = next(it)
                if sse.event == "telemetry_update":
                    events.put(json.loads(sse.data))
                    break
    assert events.get_nowait() == {"flow": 7}
    assert wait_until(lambda: metric(server, CLOSED_SSE) == 1)


def test_socketio_over_https_polling(server, pki):
    session = requests.Session()
    session.verify = str(pki.ca)
    session.trust_env = False  # REQUESTS_CA_BUNDLE would replace our CA
    client = socketio.Client(reconnection=False, http_session=session)
    got: queue.Queue = queue.Queue()
    client.on("hello", lambda data: got.put(("hello", data)))
    client.on("news", lambda data: got.put(("news", data)))
    client.connect(https(server), transports=["polling"], wait_timeout=10)
    try:
        assert got.get(timeout=5) == ("hello", {"transport": "socket.io"})
        server.emit("news", {"n": 1})
        assert got.get(timeout=5) == ("news", {"n": 1})
    finally:
        client.disconnect()


@pytest.mark.parametrize("transports", [["websocket"], ["polling", "websocket"]])
def test_socketio_over_https(server, pki, transports):
    # python-socketio's asyncio client (aiohttp) over wss, as WSS above: its threaded client
    # reads the WebSocket on one thread while another writes, on one ssl.SSLSocket. About one
    # connection in 30 then read end of stream right after the upgrade to wss (its recv returned
    # b'' though the server had not closed; the server then read a connection cut without
    # close_notify). Never over plain HTTP, in 150 tries.
    import aiohttp

    async def run() -> None:
        context = ssl.create_default_context(cafile=str(pki.ca))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
            client = socketio.AsyncClient(reconnection=False, http_session=http)
            got: asyncio.Queue = asyncio.Queue()

            async def on_hello(data):
                await got.put(("hello", data))

            async def on_news(data):
                await got.put(("news", data))

            client.on("hello", on_hello)
            client.on("news", on_news)
            await client.connect(https(server), transports=transports, wait_timeout=10)
            try:
                assert await asyncio.wait_for(got.get(), 5) == ("hello", {"transport": "socket.io"})
                if transports == ["polling", "websocket"]:
                    for _ in range(100):
                        if client.transport() == "websocket":
                            break
                        await asyncio.sleep(0.05)
                    assert client.transport() == "websocket"
                await asyncio.to_thread(server.emit, "news", {"n": 1})
                assert await asyncio.wait_for(got.get(), 5) == ("news", {"n": 1})
            finally:
                await client.disconnect()

    _Loop.run(run(), timeout=60)


def test_plain_http_to_the_tls_port_fails_cleanly(server, pki):
    before = metric(server, "skyrelay_tls_handshakes_failed_total")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{server.port}/health", timeout=3)
    # A plain WebSocket handshake fails the same way.
    with socket.create_connection(("127.0.0.1", server.port), timeout=3) as s:
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  b"Sec-WebSocket-Version: 13\r\n\r\n")
        data = b""
        try:
            while chunk := s.recv(4096):
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        assert b"101" not in data
    assert wait_until(lambda: metric(server, "skyrelay_tls_handshakes_failed_total")
                      >= before + 2)
    # The server keeps serving.
    assert httpx.get(https(server) + "/health", verify=pki.client_context(),
                     timeout=5).status_code == 200


def test_silent_client_is_dropped_after_the_handshake_timeout(skyrelay_server_factory, pki):
    server = skyrelay_server_factory(ssl_certfile=pki.cert, ssl_keyfile=pki.key,
                                     handshake_timeout=0.3)
    before = metric(server, "skyrelay_tls_handshakes_failed_total")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        start = time.monotonic()
        assert s.recv(1) == b""  # closed by the server, not by our timeout
        elapsed = time.monotonic() - start
    assert 0.2 < elapsed < 2.5, elapsed
    assert wait_until(lambda: metric(server, "skyrelay_tls_handshakes_failed_total")
                      == before + 1)


def test_client_trusting_another_ca_fails_verification(server, pki):
    with pytest.raises(ssl.SSLCertVerificationError):
        with ws_connect(f"wss://127.0.0.1:{server.port}/ws",
                        ssl=pki.client_context(pki.other_ca), open_timeout=5):
            pass
    with pytest.raises(httpx.ConnectError):
        httpx.get(https(server) + "/health", verify=pki.client_context(pki.other_ca), timeout=5)
    assert wait_until(lambda: metric(server, "skyrelay_tls_handshakes_failed_total") >= 2)
    assert httpx.get(https(server) + "/health", verify=pki.client_context(),
                     timeout=5).status_code == 200


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_1_1_is_refused(server, pki):
    ctx = pki.client_context()
    try:
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    except ValueError:
        pytest.skip("this OpenSSL cannot offer TLS 1.1")
    with pytest.raises((ssl.SSLError, OSError)):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1"):
                pass


def test_alpn_http11(server, pki):
    ctx = pki.client_context()
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.selected_alpn_protocol() == "http/1.1"
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_jwt_over_wss(skyrelay_server_factory, pki):
    import jwt as pyjwt

    auth = skyrelay.JWTAuth(keys=[skyrelay.JWTKey.hmac("k1", HS_SECRET, ["HS256"])],
                            required=True)
    server = skyrelay_server_factory(ssl_certfile=pki.cert, ssl_keyfile=pki.key, jwt=auth)
    token = pyjwt.encode({"sub": "ada", "typ": "connect", "exp": int(time.time()) + 300},
                         HS_SECRET,
                         algorithm="HS256", headers={"kid": "k1"})
    with ws_connect(f"wss://127.0.0.1:{server.port}/ws", ssl=pki.client_context(),
                    additional_headers={"Authorization": f"Bearer {token}"},
                    open_timeout=5) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "welcome"
    with pytest.raises(Exception) as refused:
        with ws_connect(f"wss://127.0.0.1:{server.port}/ws", ssl=pki.client_context(),
                        open_timeout=5):
            pass
    assert "401" in str(refused.value)


def test_missing_or_bad_files_raise(pki, tmp_path):
    with pytest.raises(FileNotFoundError, match="certificate"):
        skyrelay.Server(port=0, ssl_certfile=tmp_path / "nope.pem", ssl_keyfile=pki.key)
    with pytest.raises(ValueError, match="both"):
        skyrelay.Server(port=0, ssl_certfile=pki.cert)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    server = skyrelay.Server(port=0, ssl_certfile=garbage, ssl_keyfile=pki.key)
    with pytest.raises(ValueError, match="certificate"):
        server.start()
    assert not server.running
    server = skyrelay.Server(port=0, ssl_certfile=pki.cert, ssl_keyfile=pki.wrong_key)
    with pytest.raises(ValueError, match="key"):
        server.start()
    assert not server.running


def test_plain_server_is_unchanged(skyrelay_server):
    assert skyrelay_server.url.startswith("ws://")
    assert httpx.get(skyrelay_server.http_url + "/health", timeout=5).status_code == 200
    assert metric(skyrelay_server, "skyrelay_tls_handshakes_failed_total") == 0


def test_fan_out_to_many_wss_clients_and_graceful_stop(skyrelay_server_factory, pki):
    server = skyrelay_server_factory(ssl_certfile=pki.cert, ssl_keyfile=pki.key)
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(ws_connect(f"wss://127.0.0.1:{server.port}/ws/fan",
                                                  ssl=pki.client_context(), open_timeout=10))
                   for _ in range(30)]
        for ws in clients:
            for _ in range(2):  # welcome, subscribed
                ws.recv(timeout=5)
        for i in range(300):
            server.emit("tick", {"i": i}, to="fan")
        for ws in clients:
            assert [json.loads(ws.recv(timeout=10))["data"]["i"] for _ in range(300)] == \
                list(range(300))
        # Batching survives TLS: far fewer writes than frames.
        frames = metric(server, FRAMES_SENT_JSON)
        writes = metric(server, WRITE_CALLS_JSON)
        assert frames >= 30 * 300 and writes < frames
        start = time.monotonic()
        server.stop()
        assert time.monotonic() - start < 3
        for ws in clients:
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    ws.recv(timeout=5)
            assert ws.close_code == 1001


def test_connection_limit_closes_tls_connections(skyrelay_server_factory, pki):
    server = skyrelay_server_factory(ssl_certfile=pki.cert, ssl_keyfile=pki.key,
                                     max_connections=1)
    with ws_connect(f"wss://127.0.0.1:{server.port}/ws", ssl=pki.client_context(),
                    open_timeout=5) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "welcome"
        with pytest.raises(httpx.ConnectError):
            httpx.get(https(server) + "/health", verify=pki.client_context(), timeout=5)
        assert metric(server, 'skyrelay_connections_refused_total{limit="total"}') >= 1
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=5))["type"] == "pong"


def test_abrupt_tls_disconnects_leave_the_server_serving(server, pki):
    # Clients that vanish mid-handshake, mid-request and mid-stream.
    for cut in range(3):
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        if cut == 0:
            raw.sendall(b"\x16\x03\x01\x00\x05garbage")
            raw.close()
            continue
        tls = pki.client_context().wrap_socket(raw, server_hostname="127.0.0.1")
        if cut == 1:
            tls.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # no end of header
        else:
            tls.sendall(b"GET /sse/cut HTTP/1.1\r\nHost: x\r\n\r\n")
            tls.recv(100)
        raw.close()
    for i in range(50):
        server.emit("e", i, to="cut")
    assert httpx.get(https(server) + "/health", verify=pki.client_context(),
                     timeout=5).json()["status"] == "ok"


def test_refused_handshake_over_wss(skyrelay_server_factory, pki):
    def configure(server: skyrelay.Server) -> None:
        @server.on("connect")
        def on_connect(conn):
            raise skyrelay.ConnectionRefused("not today", status=403)

    server = skyrelay_server_factory(configure, ssl_certfile=pki.cert, ssl_keyfile=pki.key)
    with pytest.raises(websockets.InvalidStatus) as refused:
        ws_connect(f"wss://127.0.0.1:{server.port}/ws", ssl=pki.client_context())
    assert refused.value.response.status_code == 403
    assert metric(server, "skyrelay_handshakes_rejected_total") == 1


def test_flask_facade_over_tls(pki):
    flask = pytest.importorskip("flask")
    from skyrelay.flask import SocketIO
    from skyrelay.flask import emit as flask_emit

    app = flask.Flask(__name__)

    @app.get("/scheme")
    def scheme():
        return flask.request.scheme

    socketio = SocketIO(app, ssl_certfile=str(pki.cert), ssl_keyfile=str(pki.key))

    @socketio.on("ping_me")
    def ping_me(data):
        flask_emit("pong_you", data)

    client = socketio.test_client(app)
    try:
        client.emit("ping_me", {"n": 1})
        assert wait_until(lambda: any(m["name"] == "pong_you" for m in client.queue.get("/", [])),
                          5)
        server = socketio.server
        assert server.tls and server.http_url.startswith("https://")
        r = httpx.get(server.http_url + "/scheme", verify=pki.client_context(), timeout=5)
        assert r.text == "https"
    finally:
        client.disconnect()
        socketio.stop()


def _server_side_nodelay(client: socket.socket) -> int:
    """TCP_NODELAY of the server's end of `client`'s connection: the server runs in this
    process, so its socket is one of our descriptors (found by its two addresses)."""
    import os

    want = (client.getpeername(), client.getsockname())
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            s = socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM)
        except OSError:
            continue
        with s:
            try:
                if (s.getsockname(), s.getpeername()) != want:
                    continue
            except OSError:
                continue
            return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    raise AssertionError("the server's end of the connection was not found")


HEALTH = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def test_answers_are_not_held_for_a_delayed_ack(server, pki):
    # Plain HTTP answers went out with Nagle's algorithm on. Over TLS the first answer on a
    # connection followed the session tickets and waited for the client's delayed ACK (40 ms
    # on Linux), which made python-socketio's asyncio polling client lose its close packet
    # (docs/deployment.md, TLS). Every accepted connection has TCP_NODELAY from the start.
    context = pki.client_context()
    best = float("inf")
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                started = time.monotonic()
                tls.sendall(HEALTH)
                assert read_head(tls).startswith(b"HTTP/1.1 200")
                best = min(best, time.monotonic() - started)
                assert _server_side_nodelay(tls) != 0
    # A fixed 40 ms timer against a few milliseconds: the best of five is far from either edge.
    assert best < 0.025, f"the first answer on a new TLS connection took {best * 1000:.1f} ms"


def test_plain_http_answers_have_nodelay_too(skyrelay_server_factory):
    server = skyrelay_server_factory()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(HEALTH)
        assert read_head(s).startswith(b"HTTP/1.1 200")
        assert _server_side_nodelay(s) != 0


def test_the_wsgi_app_sees_https(skyrelay_server_factory, pki):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["wsgi.url_scheme"].encode()]

    server = skyrelay_server_factory(wsgi_app=app, ssl_certfile=pki.cert, ssl_keyfile=pki.key)
    answer = httpx.get(https(server) + "/page", verify=pki.client_context(), timeout=5)
    assert answer.status_code == 200
    assert answer.text == "https"


def test_connections_see_https(skyrelay_server_factory, pki):
    # Connection.scheme (and so the Flask facade's request) on a TLS port, with no proxy.
    schemes: queue.Queue = queue.Queue()

    def configure(server: skyrelay.Server) -> None:
        server.on_connect(lambda conn: schemes.put((conn.transport, conn.scheme)))

    server = skyrelay_server_factory(configure, ssl_certfile=pki.cert, ssl_keyfile=pki.key)
    with ws_connect(f"wss://127.0.0.1:{server.port}/ws", ssl=pki.client_context(),
                    open_timeout=5):
        assert schemes.get(timeout=5) == ("websocket", "https")
    session = requests.Session()
    session.verify = str(pki.ca)
    session.trust_env = False  # REQUESTS_CA_BUNDLE would replace our CA
    client = socketio.Client(reconnection=False, http_session=session)
    client.connect(https(server), transports=["polling"], wait_timeout=10)
    try:
        assert schemes.get(timeout=5) == ("socket.io", "https")
    finally:
        client.disconnect()
