"""trusted_proxies (issue 17, item 4): behind a trusted reverse proxy the client's address comes
from X-Forwarded-For (or Forwarded), for per-IP limits, conn.remote and REMOTE_ADDR; from any
other peer the header is ignored.

Both sides run on loopback: the server trusts 127.0.0.1 only, and raw sockets bound to source
127.0.0.2 (or .5) play an untrusted client that forges the header. Real clients
(python-socketio) connect from 127.0.0.1 with the header a proxy would add."""

from __future__ import annotations

import json
import socket
import threading

import pytest
import socketio

from fromaddr import open_from, request, ws_open, xff

import skyrelay
from skyrelay.testing import metric, wait_until

TRUSTED = "127.0.0.1"
UNTRUSTED = "127.0.0.2"


@pytest.fixture
def make_server():
    servers: list[skyrelay.Server] = []

    def make(what=lambda conn: conn.remote, **options) -> tuple[skyrelay.Server, list[tuple]]:
        options.setdefault("trusted_proxies", [TRUSTED])
        server = skyrelay.Server(port=0, client_topics="*", **options)
        seen: list[tuple] = []

        @server.on_connect
        def record(conn):
            seen.append((conn.transport, what(conn)))

        servers.append(server.start())
        return server, seen

    yield make
    for server in servers:
        server.stop()


def test_conn_remote_is_the_forwarded_client_only_from_a_trusted_proxy(make_server):
    server, seen = make_server()
    s, status, _ = ws_open(server.port, TRUSTED, xff("198.51.100.1, 203.0.113.9"))
    assert status == 101
    assert wait_until(lambda: len(seen) == 1)
    assert seen[0] == ("websocket", "203.0.113.9:0")
    # The same header from anyone else is the client's own word: ignored.
    u, status, _ = ws_open(server.port, UNTRUSTED, xff("203.0.113.9"))
    assert status == 101
    assert wait_until(lambda: len(seen) == 2)
    assert seen[1] == ("websocket", f"{UNTRUSTED}:{u.getsockname()[1]}")
    s.close()
    u.close()


def test_per_ip_limits_count_forwarded_clients(make_server):
    server, _ = make_server(max_connections_per_ip=2)
    port = server.port
    held = [ws_open(port, TRUSTED, xff("203.0.113.9")) for _ in range(2)]
    assert [status for _, status, _ in held] == [101, 101]
    # Every client arrives from 127.0.0.1, which is exempt from per-IP limits; the forwarded
    # address is not, so its third connection is refused.
    s, status, raw = ws_open(port, TRUSTED, xff("203.0.113.9"))
    assert status == 503 and b"too many connections from this address" in raw
    assert metric(server, 'skyrelay_connections_refused_total{limit="per_ip"}') == 1
    s.close()
    # Another client behind the same proxy is not affected.
    other, status, _ = ws_open(port, TRUSTED, xff("203.0.113.10"))
    assert status == 101
    # From an untrusted peer the header is ignored: 127.0.0.2 is loopback, exempt.
    forged = [ws_open(port, UNTRUSTED, xff("203.0.113.9")) for _ in range(3)]
    assert [status for _, status, _ in forged] == [101, 101, 101]
    # The loopback exemption applies to the resolved address: a local client behind the proxy.
    local = [ws_open(port, TRUSTED, xff("127.0.0.9")) for _ in range(3)]
    assert [status for _, status, _ in local] == [101, 101, 101]
    # A closed connection gives its client's slot back.
    held[0][0].close()

    def reconnects() -> bool:
        s, status, _ = ws_open(port, TRUSTED, xff("203.0.113.9"))
        held.append((s, status, b""))
        return status == 101

    assert wait_until(reconnects, timeout=5, interval=0.1)
    for s, _, _ in held + forged + local + [(other, 0, b"")]:
        s.close()


def test_publish_api_requests_are_admitted_per_forwarded_client(make_server):
    # One new connection per request (as nginx's default upstream HTTP/1.0 does): the rate of
    # new connections per IP is the forwarded client's.
    server, _ = make_server(publish_token="secret", new_connections_per_ip=(0.01, 2))
    body = json.dumps({"event": "tick", "to": "t", "data": 1}).encode()
    headers = {"Authorization": "Bearer secret", "Content-Type": "application/json",
               "Connection": "close"}

    def publish(source: str, client: str) -> int:
        with open_from(source, server.port) as s:
            return request(s, "POST", "/api/publish", {**headers, **xff(client)}, body)[0]

    assert [publish(TRUSTED, "203.0.113.30") for _ in range(3)] == [200, 200, 503]
    assert metric(server, 'skyrelay_connections_refused_total{limit="new_per_ip"}') == 1
    assert publish(TRUSTED, "203.0.113.31") == 200
    assert [publish(UNTRUSTED, "203.0.113.30") for _ in range(3)] == [200, 200, 200]


def test_wsgi_remote_addr_follows_each_request_on_a_kept_alive_connection(make_server):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{environ['REMOTE_ADDR']} {environ['REMOTE_PORT']}".encode()]

    server, _ = make_server(wsgi_app=app)
    with open_from(TRUSTED, server.port) as s:
        # An upstream keep-alive connection carries one client, then another, then the proxy.
        assert request(s, "GET", "/", xff("203.0.113.40"))[2] == b"203.0.113.40 0"
        assert request(s, "GET", "/", xff("198.51.100.7, 203.0.113.41"))[2] == b"203.0.113.41 0"
        assert request(s, "GET", "/")[2] == f"{TRUSTED} {s.getsockname()[1]}".encode()
    with open_from(UNTRUSTED, server.port) as s:
        answer = request(s, "GET", "/", xff("203.0.113.40"))[2]
        assert answer == f"{UNTRUSTED} {s.getsockname()[1]}".encode()



def test_wsgi_url_scheme_is_what_the_trusted_proxy_says(make_server):
    # A proxy that ends TLS says so in X-Forwarded-Proto (or Forwarded's proto=): the app's
    # wsgi.url_scheme, and so Flask's request.scheme and url_for(_external=True), follow it,
    # as gunicorn's forwarded_allow_ips and uvicorn's --forwarded-allow-ips do.
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["wsgi.url_scheme"].encode()]

    server, _ = make_server(wsgi_app=app)
    with open_from(TRUSTED, server.port) as s:
        assert request(s, "GET", "/", {"X-Forwarded-Proto": "https"})[2] == b"https"
        # Each request on a kept-alive upstream connection says for itself.
        assert request(s, "GET", "/")[2] == b"http"
        assert request(s, "GET", "/", {"X-Forwarded-Proto": "HTTPS", **xff("203.0.113.4")})[2] \
            == b"https"
        # The nearest proxy's word is the last value; a word other than http/https is ignored.
        assert request(s, "GET", "/", {"X-Forwarded-Proto": "https, http"})[2] == b"http"
        assert request(s, "GET", "/", {"X-Forwarded-Proto": "javascript"})[2] == b"http"
    with open_from(UNTRUSTED, server.port) as s:
        # A client that connects directly cannot make itself look secure.
        assert request(s, "GET", "/", {"X-Forwarded-Proto": "https"})[2] == b"http"

    forwarded, _ = make_server(wsgi_app=app, proxy_header="forwarded")
    with open_from(TRUSTED, forwarded.port) as s:
        assert request(s, "GET", "/", {"Forwarded": "for=203.0.113.4;proto=https"})[2] == b"https"
        # In Forwarded mode X-Forwarded-Proto is not read.
        assert request(s, "GET", "/", {"X-Forwarded-Proto": "https"})[2] == b"http"


def test_conn_scheme_is_what_the_trusted_proxy_says_on_every_transport(make_server):
    # The handshake's scheme, as the WSGI app's wsgi.url_scheme: what the trusted proxy says
    # its client used, else the connection's own; a client's own header is ignored.
    server, seen = make_server(what=lambda conn: conn.scheme)
    https = {"X-Forwarded-Proto": "https"}
    ws = [ws_open(server.port, TRUSTED, https)[0], ws_open(server.port, TRUSTED)[0],
          ws_open(server.port, UNTRUSTED, https)[0]]
    assert wait_until(lambda: len(seen) == 3)
    assert sorted(seen) == [("websocket", "http"), ("websocket", "http"), ("websocket", "https")]
    streams = []
    for source in (TRUSTED, UNTRUSTED):
        s = open_from(source, server.port)
        s.sendall(b"GET /sse/news HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"X-Forwarded-Proto: https\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        streams.append(s)
    assert wait_until(lambda: len(seen) == 5)
    assert sorted(seen[3:]) == [("sse", "http"), ("sse", "https")]
    # Socket.IO: the Engine.IO handshake's scheme, for every CONNECT of the session.
    for source in (TRUSTED, UNTRUSTED):
        with open_from(source, server.port) as s:
            body = request(s, "GET", "/socket.io/?EIO=4&transport=polling", https)[2]
            sid = json.loads(body[1:])["sid"]
            assert request(s, "POST", f"/socket.io/?EIO=4&transport=polling&sid={sid}",
                           {"Content-Type": "text/plain;charset=UTF-8"}, b"40")[2] == b"ok"
            assert wait_until(lambda: len(seen) == (6 if source == TRUSTED else 7))
    assert seen[5:] == [("socket.io", "https"), ("socket.io", "http")]
    sio = socketio.Client(reconnection=False)  # from 127.0.0.1, as a proxy would connect
    sio.connect(f"http://127.0.0.1:{server.port}", transports=["websocket"],
                headers=https, wait_timeout=5)
    try:
        assert wait_until(lambda: len(seen) == 8)
        assert seen[7] == ("socket.io", "https")
    finally:
        sio.disconnect()
    for s in ws + streams:
        s.close()


def test_socketio_over_polling_and_websocket(make_server):
    server, seen = make_server()
    url = f"http://127.0.0.1:{server.port}"
    for transport, client in (("polling", "203.0.113.21"), ("websocket", "2001:db8::22")):
        sio = socketio.Client(reconnection=False)
        sio.connect(url, transports=[transport], headers=xff(client), wait_timeout=5)
        try:
            assert wait_until(lambda: any(t == "socket.io" and r.startswith(client + ":")
                                          for t, r in seen)), seen
        finally:
            sio.disconnect()
    assert ("socket.io", "2001:db8::22:0") in seen
    # A forged header on a polling handshake from an untrusted peer: the peer's address.
    with open_from(UNTRUSTED, server.port) as s:
        status, _, body = request(s, "GET", "/socket.io/?EIO=4&transport=polling",
                                  xff("203.0.113.23"))
        assert status == 200 and body.startswith(b"0")
        sid = json.loads(body[1:])["sid"]
        status, _, body = request(s, "POST", f"/socket.io/?EIO=4&transport=polling&sid={sid}",
                                  {"Content-Type": "text/plain;charset=UTF-8"}, b"40")
        assert (status, body) == (200, b"ok")
        peer = f"{UNTRUSTED}:{s.getsockname()[1]}"
        assert wait_until(lambda: ("socket.io", peer) in seen), seen


def test_socketio_sessions_count_against_the_forwarded_client(make_server):
    # An Engine.IO polling session takes a slot of its own, as its client's.
    server, _ = make_server(new_sessions_per_ip=(0.01, 2))

    def handshake(client: str) -> int:
        with open_from(TRUSTED, server.port) as s:
            return request(s, "GET", "/socket.io/?EIO=4&transport=polling", xff(client))[0]

    assert [handshake("203.0.113.50") for _ in range(3)] == [200, 200, 429]
    assert handshake("203.0.113.51") == 200


def test_sse_streams(make_server):
    server, seen = make_server()
    streams = []
    for source, header in ((TRUSTED, xff("203.0.113.60")), (UNTRUSTED, xff("203.0.113.60"))):
        s = open_from(source, server.port)
        extra = "".join(f"{k}: {v}\r\n" for k, v in header.items())
        s.sendall(f"GET /sse/news HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode())
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        streams.append(s)
    assert wait_until(lambda: len(seen) == 2)
    assert ("sse", "203.0.113.60:0") in seen
    assert ("sse", f"{UNTRUSTED}:{streams[1].getsockname()[1]}") in seen
    for s in streams:
        s.close()


def test_a_malformed_header_from_a_trusted_proxy_is_the_proxy_and_counted(make_server):
    server, seen = make_server()
    s, status, _ = ws_open(server.port, TRUSTED, xff("203.0.113.9, not-an-address"))
    assert status == 101
    assert wait_until(lambda: len(seen) == 1)
    assert seen[0] == ("websocket", f"{TRUSTED}:{s.getsockname()[1]}")
    assert metric(server, "skyrelay_forwarded_header_invalid_total") == 1
    # A client's junk left of what its proxy appended is never read, and not counted.
    t, status, _ = ws_open(server.port, TRUSTED, xff("not-an-address, 203.0.113.9"))
    assert wait_until(lambda: len(seen) == 2)
    assert seen[1] == ("websocket", "203.0.113.9:0")
    assert metric(server, "skyrelay_forwarded_header_invalid_total") == 1
    s.close()
    t.close()


def test_forwarded_header_mode_and_networks(make_server):
    server, seen = make_server(trusted_proxies=["127.0.0.0/30"], proxy_header="forwarded")
    forwarded = {"Forwarded": 'for=198.51.100.1, for="[2001:db8:cafe::17]:4711";proto=http'}
    a, _, _ = ws_open(server.port, "127.0.0.2", forwarded)  # inside 127.0.0.0/30: trusted
    assert wait_until(lambda: len(seen) == 1)
    assert seen[0] == ("websocket", "2001:db8:cafe::17:4711")
    # In this mode X-Forwarded-For is a client's header like any other.
    b, _, _ = ws_open(server.port, TRUSTED, xff("203.0.113.9"))
    assert wait_until(lambda: len(seen) == 2)
    assert seen[1] == ("websocket", f"{TRUSTED}:{b.getsockname()[1]}")
    # 127.0.0.5 is outside the network.
    c, _, _ = ws_open(server.port, "127.0.0.5", forwarded)
    assert wait_until(lambda: len(seen) == 3)
    assert seen[2] == ("websocket", f"127.0.0.5:{c.getsockname()[1]}")
    for s in (a, b, c):
        s.close()


def test_specs_are_checked_when_the_server_is_made():
    with pytest.raises(ValueError, match=r'"10.0.0.1/8" has host bits set: the network is '
                                         r"10.0.0.0/8"):
        skyrelay.Server(trusted_proxies=["127.0.0.1", "10.0.0.1/8"])
    with pytest.raises(ValueError, match='"nginx" is not an IPv4 or IPv6 address'):
        skyrelay.Server(trusted_proxies="nginx")
    with pytest.raises(ValueError, match="proxy_header"):
        skyrelay.Server(trusted_proxies=["127.0.0.1"], proxy_header="x-real-ip")
    with pytest.raises(TypeError, match="trusted_proxies entry"):
        skyrelay.Server(trusted_proxies=[3232235777])
    import ipaddress
    server = skyrelay.Server(trusted_proxies=[ipaddress.ip_network("10.0.0.0/8"), "::1", "*"])
    assert server._options["trusted_proxies"] == (["10.0.0.0/8", "::1", "*"], "x-forwarded-for")
    assert skyrelay.Server(trusted_proxies=[])._options["trusted_proxies"] is None


def test_handshakes_from_many_threads_keep_their_own_clients(make_server):
    # Several proxies' connections at once: each connection's client is its own request's.
    server, seen = make_server()
    sockets: list[socket.socket] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        s, status, _ = ws_open(server.port, TRUSTED, xff(f"203.0.113.{100 + i}"))
        assert status == 101
        with lock:
            sockets.append(s)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert wait_until(lambda: len(seen) == 8)
    assert sorted(r for _, r in seen) == sorted(f"203.0.113.{100 + i}:0" for i in range(8))
    for s in sockets:
        s.close()
