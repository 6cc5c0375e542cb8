"""JWT authentication at the handshake of every transport (Server(jwt=JWTAuth(...))), with real
clients on 127.0.0.1: websockets for the JSON protocol, python-socketio, httpx for SSE and the
publish API. Tokens are made here with PyJWT; the server verifies them in C++."""

from __future__ import annotations

import base64
import json
import queue
import time
from typing import Any

import httpx
import jwt as pyjwt
import pytest
import socketio
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sse_client import Stream
from wsraw import RawClient

import skyrelay
from skyrelay.testing import connect, metric, wait_until

# /metrics series this module reads (docs/deployment.md, Metrics).
CLOSED_SOCKETIO = 'skyrelay_connections_closed_total{transport="socketio"}'

SECRET = b"s3cret-" * 6  # 42 bytes: enough for HS256
ISSUER = "https://issuer.test"
AUDIENCE = "skyrelay-tests"
STATIC_PUBLISH_TOKEN = "static-publish-token"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PUBLIC_PEM = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def token(kind: str | None = "connect", *, sub: str = "ada", roles=("ops", "dev"),
          exp_in: float = 300, aud: Any = AUDIENCE, iss: str = ISSUER, alg: str = "HS256",
          key: Any = SECRET, kid: str = "k1", **extra: Any) -> str:
    payload: dict[str, Any] = {"sub": sub, "roles": list(roles), "iss": iss,
                               "exp": int(time.time() + exp_in), "iat": int(time.time()),
                               **extra}
    if aud is not None:
        payload["aud"] = aud
    if kind is not None:
        payload["typ"] = kind
    return pyjwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def rs256_token(**kw: Any) -> str:
    return token(alg="RS256", key=RSA_KEY, kid="k2", **kw)


def unsigned_token() -> str:
    """alg "none": header and payload, an empty signature."""
    def b64(obj: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return (f"{b64({'alg': 'none', 'typ': 'JWT'})}."
            f"{b64({'sub': 'mallory', 'typ': 'connect', 'aud': AUDIENCE, 'iss': ISSUER, 'exp': int(time.time()) + 300})}.")


# Each refused token and the code the server answers with.
REFUSED = {
    "missing": (None, "token_required"),
    "garbage": ("not-a-jwt", "malformed"),
    "bad_signature": (lambda: token(key=b"another-secret-that-is-long-enough-32"), "bad_signature"),
    "expired": (lambda: token(exp_in=-60), "expired"),
    "wrong_audience": (lambda: token(aud="someone-else"), "wrong_audience"),
    "wrong_issuer": (lambda: token(iss="https://evil.test"), "wrong_issuer"),
    "publish_kind": (lambda: token("publish"), "wrong_kind"),
    "no_kind": (lambda: token(None), "wrong_kind"),
    "alg_none": (unsigned_token, "alg_none"),
    "unknown_kid": (lambda: token(kid="k9"), "unknown_key"),
}


def refused_token(case: str) -> str | None:
    made = REFUSED[case][0]
    return made() if callable(made) else made


def jwt_auth(**kw: Any) -> skyrelay.JWTAuth:
    options: dict[str, Any] = dict(issuers=[ISSUER], audiences=[AUDIENCE], leeway=0,
                                   required=True)
    options.update(kw)
    return skyrelay.JWTAuth(
        keys=[skyrelay.JWTKey.hmac("k1", SECRET, ["HS256"]),
              skyrelay.JWTKey.public_pem("k2", RSA_PUBLIC_PEM, ["RS256"])],
        **options)


@pytest.fixture
def auth_server(skyrelay_server_factory):
    """A server that checks tokens, and records what its handlers saw."""
    seen: dict[str, Any] = {"connects": queue.Queue(), "disconnects": queue.Queue()}

    def make(**jwt_options: Any) -> skyrelay.Server:
        def configure(server: skyrelay.Server) -> None:
            @server.on("connect")
            def on_connect(conn):
                seen["connects"].put((conn.transport, conn.user, conn.roles, conn.claims))

            @server.on("disconnect")
            def on_disconnect(conn, reason):
                seen["disconnects"].put((conn.transport, conn.user, reason))

            @server.on("whoami")
            def whoami(conn, data):
                return {"user": conn.user, "roles": conn.roles, "claims": conn.claims,
                        "transport": conn.transport}

        server = skyrelay_server_factory(configure, jwt=jwt_auth(**jwt_options),
                                         publish_token=STATIC_PUBLISH_TOKEN)
        server.seen = seen
        return server

    return make


@pytest.fixture
def streams():
    opened: list[Stream] = []

    def open_stream(url: str, headers: dict[str, str] | None = None) -> Stream:
        s = Stream(url, headers)
        opened.append(s)
        return s

    yield open_stream
    for s in opened:
        s.close()


def ws_url(server: skyrelay.Server, query: str = "") -> str:
    return f"ws://127.0.0.1:{server.port}/ws/news{query}"


def bearer(t: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {t}"}


# -- the JSON protocol over WebSocket ---------------------------------------------------------

@pytest.mark.parametrize("how", ["header", "query", "rs256"])
def test_websocket_accepts_a_valid_token_and_handlers_see_its_claims(auth_server, how):
    server = auth_server()
    t = rs256_token() if how == "rs256" else token()
    if how == "query":
        client = connect(ws_url(server, f"?token={t}"))
    else:
        client = connect(ws_url(server), headers=bearer(t))
    try:
        transport, user, roles, claims = server.seen["connects"].get(timeout=5)
        assert (transport, user, roles) == ("websocket", "ada", ["ops", "dev"])
        assert claims["iss"] == ISSUER and claims["typ"] == "connect"
        me = client.request("whoami")
        assert me["user"] == "ada" and me["roles"] == ["ops", "dev"]
        assert me["claims"]["aud"] == AUDIENCE and me["claims"]["sub"] == "ada"
        # The topic in the path was joined as usual.
        assert server.rooms(client.sid) == ["news"]
    finally:
        client.close()
    assert server.seen["disconnects"].get(timeout=5) == ("websocket", "ada", "client_close")


@pytest.mark.parametrize("case", list(REFUSED))
def test_websocket_refuses_bad_tokens_with_401_before_the_upgrade(auth_server, case):
    server = auth_server()
    t = refused_token(case)
    with pytest.raises(websockets.exceptions.InvalidStatus) as err:
        connect(ws_url(server), headers=bearer(t) if t else None)
    response = err.value.response
    assert response.status_code == 401
    body = json.loads(response.body)
    assert body["error"] == "unauthorized" and body["code"] == REFUSED[case][1], body
    assert body["message"]
    expected = 'Bearer realm="skyrelay"' + ("" if t is None else ', error="invalid_token"')
    assert response.headers["WWW-Authenticate"] == expected
    # No Python handler ran, and nothing is connected.
    assert server.seen["connects"].empty()
    assert server.connection_count == 0
    assert metric(server, "skyrelay_auth_refused_total") == 1


def test_websocket_bad_token_in_the_query_is_refused_too(auth_server):
    server = auth_server()
    with pytest.raises(websockets.exceptions.InvalidStatus) as err:
        connect(ws_url(server, f"?token={token(exp_in=-5)}"))
    assert err.value.response.status_code == 401
    assert json.loads(err.value.response.body)["code"] == "expired"


def test_optional_tokens_let_anonymous_clients_in_but_still_check_presented_ones(auth_server):
    server = auth_server(required=False)
    anonymous = connect(ws_url(server))
    try:
        assert anonymous.request("whoami") == {"user": None, "roles": [], "claims": {},
                                               "transport": "websocket"}
    finally:
        anonymous.close()
    with pytest.raises(websockets.exceptions.InvalidStatus) as err:
        connect(ws_url(server), headers=bearer(token(aud="someone-else")))
    assert json.loads(err.value.response.body)["code"] == "wrong_audience"


def test_kindless_tokens_connect_when_the_policy_allows_it(auth_server):
    server = auth_server(require_kind=False)
    client = connect(ws_url(server), headers=bearer(token(None)))
    try:
        assert client.request("whoami")["user"] == "ada"
    finally:
        client.close()
    # ... but they never publish.
    r = httpx.post(f"http://127.0.0.1:{server.port}/api/publish",
                   json={"event": "e", "data": 1}, headers=bearer(token(None)), timeout=5)
    assert r.status_code == 401 and r.json()["code"] == "wrong_kind"


def test_websocket_closes_with_4003_when_the_token_expires(auth_server):
    server = auth_server()
    client = connect(ws_url(server), headers=bearer(token(exp_in=2)))
    try:
        opened = time.monotonic()
        assert client.ping()["type"] == "pong"  # open and working until then
        code, reason = client.expect_closed(timeout=8)
        assert (code, reason) == (4003, "token expired")
        assert 0.5 < time.monotonic() - opened < 4.5
    finally:
        client.close()
    server.seen["connects"].get(timeout=5)
    assert server.seen["disconnects"].get(timeout=5) == ("websocket", "ada", "token_expired")
    assert metric(server, 'skyrelay_disconnects_total{reason="token_expired"}') == 1


def test_connections_that_end_first_are_not_touched_by_their_expiry(auth_server):
    """A connection closed before its token's end leaves no timer that fires later."""
    server = auth_server()
    client = connect(ws_url(server), headers=bearer(token(exp_in=1)))
    client.close()
    assert server.seen["disconnects"].get(timeout=5)[2] == "client_close"
    time.sleep(1.5)
    assert server.seen["disconnects"].empty()
    assert metric(server, 'skyrelay_disconnects_total{reason="token_expired"}') == 0


# -- Server-Sent Events -----------------------------------------------------------------------

@pytest.mark.parametrize("how", ["header", "query"])
def test_sse_accepts_a_valid_token(auth_server, streams, how):
    server = auth_server()
    base = f"http://127.0.0.1:{server.port}/sse/news"
    t = token(sub="grace", roles=["viewer"])
    s = streams(f"{base}?token={t}") if how == "query" else streams(base, bearer(t))
    assert s.status == 200
    s.next_event("welcome")
    assert server.seen["connects"].get(timeout=5)[:3] == ("sse", "grace", ["viewer"])
    assert wait_until(lambda: server.room_size("news") == 1)
    server.emit("tick", {"n": 1}, to="news")
    assert json.loads(s.next_event("tick").data) == {"n": 1}


@pytest.mark.parametrize("case", ["missing", "bad_signature", "expired", "wrong_audience",
                                  "publish_kind", "alg_none"])
def test_sse_refuses_bad_tokens_with_401(auth_server, case):
    server = auth_server()
    t = refused_token(case)
    r = httpx.get(f"http://127.0.0.1:{server.port}/sse/news",
                  headers=bearer(t) if t else None, timeout=5)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"] == "unauthorized" and r.json()["code"] == REFUSED[case][1]
    assert r.headers["www-authenticate"].startswith('Bearer realm="skyrelay"')
    assert server.seen["connects"].empty()


def test_sse_stream_ends_when_the_token_expires(auth_server, streams):
    server = auth_server()
    s = streams(f"http://127.0.0.1:{server.port}/sse/news", bearer(token(exp_in=2)))
    s.next_event("welcome")
    opened = time.monotonic()
    expired = s.next_event("token_expired", timeout=8)
    assert json.loads(expired.data) == {"code": "token_expired", "message": "token expired"}
    assert s.events.get(timeout=5) is None  # then the stream ends
    assert time.monotonic() - opened < 4.5
    assert server.seen["disconnects"].get(timeout=5) == ("sse", "ada", "token_expired")


# -- Socket.IO ------------------------------------------------------------------------------

def write_loop_idle(client: socketio.Client) -> bool:
    """Whether the python-engineio client's write loop is parked waiting for packets to send.

    Over polling, that client's `disconnect()` queues its goodbye and leaves the `connected`
    state at once; a write loop still busy with an earlier POST then sees the state change and
    ends without sending the goodbye (python-engineio 4.x), so the server only learns of the
    disconnect by its ping timeout. A test that asserts a polling client's goodbye waits first
    for the write loop to be idle (the stdlib queue keeps its waiting getters in `_waiters`).
    """
    return len(client.eio.queue.not_empty._waiters) > 0


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
def test_socketio_accepts_a_valid_token_in_the_connect_payload(auth_server, sio_clients,
                                                               transports):
    server = auth_server()
    client = sio_clients()
    client.connect(f"http://127.0.0.1:{server.port}", auth={"token": token(sub="linus")},
                   transports=transports, wait_timeout=10)
    transport, user, roles, claims = server.seen["connects"].get(timeout=5)
    assert (transport, user, roles) == ("socket.io", "linus", ["ops", "dev"])
    me = client.call("whoami", None, timeout=5)
    assert me["user"] == "linus" and me["claims"]["typ"] == "connect"
    assert wait_until(lambda: write_loop_idle(client), 10)
    client.disconnect()
    assert server.seen["disconnects"].get(timeout=5) == ("socket.io", "linus", "client_close")


@pytest.mark.parametrize("case", ["missing", "garbage", "bad_signature", "expired",
                                  "wrong_audience", "publish_kind", "alg_none"])
def test_socketio_refuses_bad_tokens_with_connect_error(auth_server, sio_clients, case):
    server = auth_server()
    client = sio_clients()
    errors: list[Any] = []
    client.on("connect_error", lambda data: errors.append(data))
    t = refused_token(case)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(f"http://127.0.0.1:{server.port}", auth={"token": t} if t else None,
                       transports=["websocket"], wait_timeout=5)
    assert len(errors) == 1
    assert errors[0]["data"] == {"code": REFUSED[case][1]}
    assert isinstance(errors[0]["message"], str) and errors[0]["message"]
    assert server.seen["connects"].empty()
    assert metric(server, "skyrelay_auth_refused_total") == 1


def test_socketio_token_must_be_a_string(auth_server, sio_clients):
    server = auth_server()
    client = sio_clients()
    errors: list[Any] = []
    client.on("connect_error", lambda data: errors.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(f"http://127.0.0.1:{server.port}", auth={"token": 12},
                       transports=["websocket"], wait_timeout=5)
    assert errors[0]["data"] == {"code": "malformed"}


def test_socketio_socket_is_disconnected_when_the_token_expires(auth_server, sio_clients):
    server = auth_server()
    client = sio_clients()
    got: queue.Queue = queue.Queue()
    client.on("token_expired", lambda data: got.put(("token_expired", data)))
    client.on("disconnect", lambda *args: got.put(("disconnect", args)))
    client.connect(f"http://127.0.0.1:{server.port}", auth={"token": token(exp_in=2)},
                   transports=["websocket"], wait_timeout=10)
    opened = time.monotonic()
    assert client.call("whoami", None, timeout=5)["user"] == "ada"
    assert got.get(timeout=8) == ("token_expired",
                                  {"code": "token_expired", "message": "token expired"})
    event, args = got.get(timeout=5)
    assert event == "disconnect"
    assert time.monotonic() - opened < 4.5
    assert server.seen["disconnects"].get(timeout=5) == ("socket.io", "ada", "token_expired")


def test_socketio_recovery_gives_a_socket_back_only_to_the_same_user(skyrelay_server_factory):
    """Connection state recovery with tokens: a dropped socket is resumed (same sid) by a
    CONNECT whose token has the same sub, and never handed to another user."""
    server = skyrelay_server_factory(jwt=jwt_auth(), recovery_window=30)
    path = "/socket.io/?EIO=4&transport=websocket"

    def sio_connect(payload: dict[str, Any]) -> tuple[RawClient, dict[str, Any]]:
        c = RawClient(server.port, path)
        op, data = c.read_frame()
        assert data.startswith(b"0{"), data
        c.send_text("40" + json.dumps(payload))
        op, data = c.read_frame()
        assert data.startswith(b"40{"), data
        return c, json.loads(data[2:])

    def connected_then_dropped(sub: str) -> tuple[str, str, str]:
        """(sid, pid, offset of the last event seen) of a socket whose TCP connection died."""
        c, hello = sio_connect({"token": token(sub=sub)})
        assert wait_until(lambda: server.connection_count >= 1)
        server.emit("tick", 1)
        op, data = c.read_frame()
        assert data.startswith(b'42["tick",1,'), data
        offset = json.loads(data[2:])[2]
        closed = metric(server, CLOSED_SOCKETIO)
        c.sock.shutdown(2)  # no goodbye: the transport is lost, the socket kept for recovery
        c.close()
        assert wait_until(lambda: metric(server, CLOSED_SOCKETIO) > closed)
        time.sleep(0.2)
        return hello["sid"], hello["pid"], offset

    # Another user presenting the pid gets a fresh socket; the dropped one is ended.
    sid, pid, offset = connected_then_dropped("ada")
    thief, hello = sio_connect({"token": token(sub="mallory"), "pid": pid, "offset": offset})
    assert hello["sid"] != sid
    thief.close()
    # The same user, with a new token, resumes the socket.
    sid, pid, offset = connected_then_dropped("ada")
    back, hello = sio_connect({"token": token(sub="ada"), "pid": pid, "offset": offset})
    assert hello["sid"] == sid
    back.close()
    # A resume without a valid token is refused like any CONNECT.
    sid, pid, offset = connected_then_dropped("ada")
    c = RawClient(server.port, path)
    c.read_frame()
    c.send_text("40" + json.dumps({"pid": pid, "offset": offset, "token": token(exp_in=-60)}))
    op, data = c.read_frame()
    assert data.startswith(b"44") and json.loads(data[2:])["data"] == {"code": "expired"}
    c.close()


# -- the publish API ----------------------------------------------------------------------

def publish(server: skyrelay.Server, bearer_token: str | None) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{server.port}/api/publish",
                      json={"event": "news", "data": {"x": 1}, "to": "news"},
                      headers=bearer(bearer_token) if bearer_token else None, timeout=5)


def test_publish_token_publishes_and_connect_token_does_not(auth_server):
    server = auth_server()
    listener = connect(ws_url(server), headers=bearer(token()))
    try:
        r = publish(server, token("publish", sub="worker"))
        assert r.status_code == 200, r.text
        assert listener.expect("news") == {"x": 1}
        r = publish(server, token("connect"))
        assert r.status_code == 401
        assert r.json() == {"error": "unauthorized", "code": "wrong_kind",
                            "message": '"typ" must be "publish" to publish'}
        listener.expect_nothing(within=0.3, type="event")
    finally:
        listener.close()


@pytest.mark.parametrize("case", ["missing", "bad_signature", "expired", "wrong_audience",
                                  "alg_none"])
def test_publish_api_refuses_bad_publish_tokens(auth_server, case):
    server = auth_server()
    t = refused_token(case)
    if case != "missing" and case != "alg_none":
        # The same failures, on tokens that are otherwise publish tokens.
        t = {"bad_signature": lambda: token("publish", key=b"another-secret-that-is-long-enough-32"),
             "expired": lambda: token("publish", exp_in=-60),
             "wrong_audience": lambda: token("publish", aud="someone-else")}[case]()
    r = publish(server, t)
    assert r.status_code == 401
    assert r.json()["code"] == REFUSED[case][1]


def test_static_publish_token_keeps_working_alongside_jwt(auth_server):
    server = auth_server()
    assert publish(server, STATIC_PUBLISH_TOKEN).status_code == 200
    # Anything else is taken as a JWT.
    r = publish(server, STATIC_PUBLISH_TOKEN + "x")
    assert r.status_code == 401 and r.json()["code"] == "malformed"


def test_publish_api_is_on_with_jwt_alone(skyrelay_server_factory):
    server = skyrelay_server_factory(jwt=jwt_auth())
    assert publish(server, token("publish")).status_code == 200
    r = publish(server, None)
    assert r.status_code == 401 and r.json()["code"] == "token_required"


def test_publish_token_cannot_connect_anywhere(auth_server, sio_clients, streams):
    server = auth_server()
    t = token("publish")
    with pytest.raises(websockets.exceptions.InvalidStatus) as err:
        connect(ws_url(server), headers=bearer(t))
    assert json.loads(err.value.response.body)["code"] == "wrong_kind"
    r = httpx.get(f"http://127.0.0.1:{server.port}/sse/news?token={t}", timeout=5)
    assert r.status_code == 401 and r.json()["code"] == "wrong_kind"
    errors: list[Any] = []
    client = sio_clients()
    client.on("connect_error", lambda data: errors.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(f"http://127.0.0.1:{server.port}", auth={"token": t},
                       transports=["polling"], wait_timeout=5)
    assert errors[0]["data"] == {"code": "wrong_kind"}
    assert server.seen["connects"].empty()


# -- configuration ----------------------------------------------------------------------------

def test_keys_that_do_not_fit_are_refused_at_construction():
    with pytest.raises(ValueError, match="at least 32 bytes"):
        skyrelay.Server(port=0, jwt=skyrelay.JWTAuth([skyrelay.JWTKey.hmac("k", b"short")]))
    with pytest.raises(ValueError, match="PEM"):
        skyrelay.Server(port=0, jwt=skyrelay.JWTAuth(
            [skyrelay.JWTKey.public_pem("k", "not a pem", ["RS256"])]))
    with pytest.raises(ValueError, match="not one of"):
        skyrelay.JWTKey.hmac("k", SECRET, ["RS256"])
    with pytest.raises(ValueError):
        skyrelay.JWTAuth([])
    with pytest.raises(TypeError):
        skyrelay.Server(port=0, jwt={"keys": []})


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
def test_socketio_takes_the_token_from_an_authorization_header_too(auth_server, sio_clients,
                                                                   transports):
    """Non-browser clients may send the token as a header of the Engine.IO handshake; a token
    in the CONNECT payload wins over it."""
    server = auth_server()
    client = sio_clients()
    client.connect(f"http://127.0.0.1:{server.port}", headers=bearer(token(sub="hdr")),
                   transports=transports, wait_timeout=10)
    assert client.call("whoami", None, timeout=5)["user"] == "hdr"
    both = sio_clients()
    both.connect(f"http://127.0.0.1:{server.port}", headers=bearer(token(sub="hdr")),
                 auth={"token": token(sub="payload")}, transports=transports, wait_timeout=10)
    assert both.call("whoami", None, timeout=5)["user"] == "payload"
    refused = sio_clients()
    errors: list[Any] = []
    refused.on("connect_error", lambda data: errors.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        refused.connect(f"http://127.0.0.1:{server.port}",
                        headers=bearer(token(exp_in=-60)), transports=transports,
                        wait_timeout=5)
    assert errors[0]["data"] == {"code": "expired"}
