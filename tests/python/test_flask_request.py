"""The Flask facade's handlers see the real handshake as a Flask request: query string, headers,
cookies, remote address, the signed cookie session and Flask-Login's current_user, with real
python-socketio clients; sync handlers run on a pool in order per client; the protocol logs."""

from __future__ import annotations

import logging
import threading

import pytest
import requests
import socketio as sio_client

flask = pytest.importorskip("flask")
flask_login = pytest.importorskip("flask_login")

from skyrelay.flask import SocketIO, emit  # noqa: E402
from skyrelay.testing import wait_until  # noqa: E402


def serve(socketio: SocketIO, app) -> str:
    """Runs ``socketio.run(app)`` (the user's own call) on a thread; returns the base URL."""
    thread = threading.Thread(target=socketio.run, kwargs={"app": app, "host": "127.0.0.1",
                                                            "port": 0}, daemon=True)
    thread.start()
    assert wait_until(lambda: socketio.server is not None and socketio.server.running, 10)
    return f"http://127.0.0.1:{socketio.server.port}"


@pytest.fixture
def stop_after():
    started: list[SocketIO] = []
    clients: list[sio_client.Client] = []
    yield started, clients
    for client in clients:
        client.disconnect()
    for socketio in started:
        socketio.stop()


def client_for(clients, url: str, **kwargs) -> sio_client.Client:
    client = sio_client.Client(reconnection=False)
    clients.append(client)
    kwargs.setdefault("wait_timeout", 10)
    client.connect(url, **kwargs)
    return client


def snapshot() -> dict:
    request = flask.request
    return {"args": request.args.to_dict(flat=False), "key": request.headers.get("X-Api-Key"),
            "cookie": request.cookies.get("flavour"), "remote": request.remote_addr,
            "path": request.path, "sid": request.sid}


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_query_headers_cookies_and_address_in_connect_and_event_handlers(stop_after, transport):
    started, clients = stop_after
    app = flask.Flask(__name__)
    socketio = SocketIO(app)
    seen = {}

    @socketio.on("connect")
    def connect(auth):
        seen["connect"] = snapshot()
        if flask.request.args.get("token") != "abc":
            return False

    @socketio.on("look")
    def look(data):
        return snapshot()

    started.append(socketio)
    url = serve(socketio, app)
    client = client_for(clients, url + "?token=abc&tag=x&tag=y",
                        headers={"X-Api-Key": "k-123", "Cookie": "flavour=mint; other=1"},
                        transports=[transport])
    seen_in_event = client.call("look", 1, timeout=10)
    for view in (seen["connect"], seen_in_event):
        assert view["args"]["token"] == ["abc"] and view["args"]["tag"] == ["x", "y"]
        # The real handshake's query, Engine.IO's own parameters included (as Flask-SocketIO).
        assert view["args"]["EIO"] == ["4"]
        assert view["key"] == "k-123" and view["cookie"] == "mint"
        assert view["remote"] == "127.0.0.1" and view["path"] == "/socket.io/"
    assert seen_in_event["sid"] == client.get_sid()
    # A handshake without the token is refused by the same connect handler.
    with pytest.raises(sio_client.exceptions.ConnectionError):
        client_for(clients, url + "?token=nope", transports=[transport])


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_the_request_scheme_is_what_a_trusted_proxy_says(stop_after, transport):
    # Behind a proxy that ends TLS, a connect handler's request is https (is_secure, https://
    # links from url_for) when the proxy is trusted; the same header from any other peer is
    # the client's own word, ignored.
    started, clients = stop_after
    for trusted, scheme in (("127.0.0.1", "https"), ("192.0.2.1", "http")):
        app = flask.Flask(__name__)
        app.add_url_rule("/page", "page", lambda: "")
        socketio = SocketIO(app, trusted_proxies=[trusted])
        seen = {}

        @socketio.on("connect")
        def connect(auth):
            request = flask.request
            seen.update(scheme=request.scheme, secure=request.is_secure,
                        link=flask.url_for("page", _external=True))

        started.append(socketio)
        url = serve(socketio, app)
        client_for(clients, url, headers={"X-Forwarded-Proto": "https"}, transports=[transport])
        assert wait_until(lambda: "link" in seen, 10)
        assert seen == {"scheme": scheme, "secure": scheme == "https",
                        "link": f"{scheme}://127.0.0.1:{socketio.server.port}/page"}


def login_app():
    app = flask.Flask(__name__)
    app.config["SECRET_KEY"] = "test-secret"
    login = flask_login.LoginManager(app)
    users = {"ada": "pw-ada"}
    api_keys = {"key-bob": "bob"}

    class User(flask_login.UserMixin):
        def __init__(self, name: str) -> None:
            self.id = name

    @login.user_loader
    def load(user_id):
        return User(user_id) if user_id in users else None

    @login.request_loader
    def from_header(request):
        name = api_keys.get(request.headers.get("X-Api-Key", ""))
        return User(name) if name else None

    @app.post("/login")
    def do_login():
        name = flask.request.form["name"]
        if users.get(name) != flask.request.form["password"]:
            return "no", 401
        flask_login.login_user(User(name))
        flask.session["theme"] = "dark"
        return "ok"

    return app


def test_flask_login_current_user_and_the_session_cookie_of_a_login_view(stop_after):
    started, clients = stop_after
    app = login_app()
    socketio = SocketIO(app)

    @socketio.on("connect")
    def connect():
        if not flask_login.current_user.is_authenticated:
            return False

    @socketio.on("me")
    def me():
        return {"user": flask_login.current_user.id, "theme": flask.session.get("theme"),
                "count": flask.session.get("count", 0)}

    @socketio.on("count")
    def count():
        flask.session["count"] = flask.session.get("count", 0) + 1  # the managed session

    started.append(socketio)
    url = serve(socketio, app)
    with pytest.raises(sio_client.exceptions.ConnectionError):
        client_for(clients, url)  # no session cookie: not logged in
    http = requests.Session()
    assert http.post(url + "/login", data={"name": "ada", "password": "bad"},
                     timeout=10).status_code == 401
    assert http.post(url + "/login", data={"name": "ada", "password": "pw-ada"},
                     timeout=10).status_code == 200
    cookie = "; ".join(f"{k}={v}" for k, v in http.cookies.items())
    assert "session=" in cookie
    for transport in ("websocket", "polling"):
        first = client_for(clients, url, headers={"Cookie": cookie}, transports=[transport])
        assert first.call("me", timeout=10) == {"user": "ada", "theme": "dark", "count": 0}
        first.emit("count")
        first.emit("count")
        assert first.call("me", timeout=10)["count"] == 2  # kept for this client
        second = client_for(clients, url, headers={"Cookie": cookie}, transports=[transport])
        assert second.call("me", timeout=10)["count"] == 0  # its own copy of the cookie's
    # Flask-Login's request_loader reads the handshake's headers.
    bob = client_for(clients, url, headers={"X-Api-Key": "key-bob"})
    assert bob.call("me", timeout=10)["user"] == "bob"


def test_async_handlers_run_on_a_pool_in_order_per_client(stop_after):
    started, clients = stop_after
    app = flask.Flask(__name__)
    socketio = SocketIO(app)  # async_handlers=True is the default, as in Flask-SocketIO
    lock = threading.Lock()
    order: dict[str, list[int]] = {}
    threads: set[str] = set()
    other_ran = threading.Event()

    @socketio.on("step")
    def step(n):
        with lock:
            order.setdefault(flask.request.sid, []).append(n)
            threads.add(threading.current_thread().name)

    @socketio.on("wait_for_other")
    def wait_for_other():
        # Only returns True if another client's handler runs meanwhile: handlers of
        # different clients run in parallel.
        return other_ran.wait(10)

    @socketio.on("other")
    def other():
        other_ran.set()

    started.append(socketio)
    url = serve(socketio, app)
    a = client_for(clients, url)
    b = client_for(clients, url)
    answer: list = []
    waiter = threading.Thread(target=lambda: answer.append(a.call("wait_for_other",
                                                                  timeout=15)))
    waiter.start()
    b.emit("other")
    waiter.join(15)
    assert answer == [True]
    for n in range(15):  # within the default inbound burst (20)
        a.emit("step", n)
        b.emit("step", n)
    assert wait_until(lambda: sum(map(len, order.values())) == 30, 10)
    assert order == {a.get_sid(): list(range(15)), b.get_sid(): list(range(15))}
    assert all(name.startswith("skyrelay-flask-handler") for name in threads)


def test_without_async_handlers_every_handler_runs_on_one_thread(stop_after):
    started, clients = stop_after
    app = flask.Flask(__name__)
    socketio = SocketIO(app, async_handlers=False)
    threads: list[str] = []

    @socketio.on("step")
    def step(n):
        threads.append(threading.current_thread().name)
        return n

    started.append(socketio)
    url = serve(socketio, app)
    a = client_for(clients, url)
    b = client_for(clients, url)
    for n in range(3):
        assert a.call("step", n, timeout=10) == n and b.call("step", n, timeout=10) == n
    assert len(set(threads)) == 1 and not threads[0].startswith("skyrelay-flask-handler")


def test_logger_and_engineio_logger_log_the_protocol(stop_after, caplog):
    started, clients = stop_after
    app = flask.Flask(__name__)
    quiet = SocketIO(app)
    assert quiet._log is None
    socketio = SocketIO(app, logger=True, engineio_logger=True)

    @socketio.on("hello")
    def hello(data):
        emit("hi", data)

    started.append(socketio)
    caplog.set_level(logging.INFO)
    url = serve(socketio, app)
    client = client_for(clients, url)
    got = threading.Event()
    client.on("hi", lambda data: got.set())
    client.emit("hello", {"n": 1})
    assert got.wait(10)
    eio_sid = client.eio.sid
    client.disconnect()
    assert wait_until(lambda: any("no socket left" in r.getMessage() for r in caplog.records), 10)
    by_logger: dict[str, list[str]] = {}
    for record in caplog.records:
        by_logger.setdefault(record.name, []).append(record.getMessage())
    sio, eio = by_logger["skyrelay.socketio"], by_logger["skyrelay.engineio"]
    assert any("received event 'hello'" in m and "{'n': 1}" in m for m in sio)
    assert any("emitting event 'hi'" in m for m in sio)
    assert any("connect to namespace /" in m for m in sio)
    assert any("disconnect from namespace /" in m for m in sio)
    assert any(m.startswith(eio_sid) and "opened from 127.0.0.1" in m for m in eio)


class _StoredSession(dict, flask.sessions.SessionMixin):
    def __init__(self, sid: str, data: dict) -> None:
        super().__init__(data)
        self.sid = sid
        self.modified = False

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.modified = True


class _ServerSideSessions(flask.sessions.SessionInterface):
    """A server-side session store (as Flask-Session keeps one), in a dict."""

    def __init__(self) -> None:
        self.store: dict[str, dict] = {}
        self.lock = threading.Lock()

    def open_session(self, app, request):
        sid = request.cookies.get("sid") or f"s{len(self.store) + 1}"
        with self.lock:
            return _StoredSession(sid, self.store.get(sid, {}))

    def save_session(self, app, session, response):
        with self.lock:
            self.store[session.sid] = dict(session)
        response.set_cookie("sid", session.sid)


def test_unmanaged_server_side_session_is_shared_with_http_views(stop_after):
    started, clients = stop_after
    app = flask.Flask(__name__)
    app.session_interface = _ServerSideSessions()
    socketio = SocketIO(app, manage_session=False)

    @app.get("/visit")
    def visit():
        flask.session["via"] = "http"
        return "ok"

    @app.get("/read")
    def read():
        return dict(flask.session)

    @socketio.on("note")
    def note(value):
        seen = dict(flask.session)
        flask.session["note"] = value  # saved to the store after the handler
        return seen

    started.append(socketio)
    url = serve(socketio, app)
    http = requests.Session()
    assert http.get(url + "/visit", timeout=10).text == "ok"
    client = client_for(clients, url, headers={"Cookie": f"sid={http.cookies['sid']}"})
    assert client.call("note", "from socket", timeout=10) == {"via": "http"}
    assert http.get(url + "/read", timeout=10).json() == {"via": "http", "note": "from socket"}
    assert client.call("note", "again", timeout=10) == {"via": "http", "note": "from socket"}
