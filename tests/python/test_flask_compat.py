"""Flask-SocketIO's contract as its own test suite exercises it (test_socketio.py in its
repository, run from a scratch folder: docs/socketio.md), one test per area, through
``socketio.test_client(app)`` over real connections."""

from __future__ import annotations

import json

import pytest
import requests

flask = pytest.importorskip("flask")

from skyrelay.flask import (  # noqa: E402
    ConnectionRefusedError, SocketIO, disconnect, emit, send)
from skyrelay.testing import wait_until  # noqa: E402


@pytest.fixture
def make():
    made: list[SocketIO] = []

    def factory(**options):
        app = flask.Flask(__name__)
        app.config["SECRET_KEY"] = "compat-secret"
        socketio = SocketIO(app, **options)
        made.append(socketio)
        return app, socketio

    yield factory
    for socketio in made:
        socketio.stop()


def request_view() -> dict:
    request = flask.request
    return {"args": request.args.to_dict(flat=False),
            "headers": {h: v for h, v in request.headers.items()
                        if h not in ("Host", "Content-Type", "Content-Length")}}


def test_test_client_handlers_see_the_query_and_headers_it_was_given(make):
    app, socketio = make()

    @socketio.on("connect")
    def connect():
        send(json.dumps(request_view()))

    @socketio.on("look")
    def look(data):
        return {"view": request_view(), "event": [flask.request.event["message"],
                                                  list(flask.request.event["args"])]}

    client = socketio.test_client(app, query_string="?foo=bar&foo=baz",
                                  headers={"Authorization": "Bearer x", "X-Trace": "7"})
    expected = {"args": {"foo": ["bar", "baz"]},
                "headers": {"Authorization": "Bearer x", "X-Trace": "7"}}
    assert [json.loads(m["args"]) for m in client.get_received()] == [expected]
    assert client.emit("look", 5, callback=True) == {"view": expected, "event": ["look", [5]]}
    bare = socketio.test_client(app)
    assert [json.loads(m["args"]) for m in bare.get_received()] == [{"args": {},
                                                                     "headers": {}}]


def test_send_json_and_argument_shapes(make):
    app, socketio = make()

    @socketio.on("message")
    def message(text):
        send(text)

    @socketio.on("json")
    def on_json(data):
        send(data, json=True)

    @socketio.on("shapes")
    def shapes():
        emit("two", 1, "b")
        emit("pair", (3, "d"))  # a tuple is several arguments, as in python-socketio

    client = socketio.test_client(app)
    client.send("plain")
    client.send({"a": "b"}, json=True)
    client.emit("shapes")
    assert client.get_received() == [
        {"name": "message", "args": "plain", "namespace": "/"},
        {"name": "json", "args": {"a": "b"}, "namespace": "/"},
        {"name": "two", "args": [1, "b"], "namespace": "/"},
        {"name": "pair", "args": [3, "d"], "namespace": "/"}]


def test_broadcast_from_a_handler_and_the_test_clients_broadcast_keyword(make):
    app, socketio = make()

    @socketio.on("shout")
    def shout(data):
        emit("heard", data, broadcast=True, include_self=data.get("self", True))

    @socketio.on("connect", namespace="/other")
    def other():
        pass

    one, two = socketio.test_client(app), socketio.test_client(app)
    elsewhere = socketio.test_client(app, namespace="/other")
    one.emit("shout", {"n": 1}, broadcast=True)  # accepted and ignored, as there
    for client in (one, two):
        assert client.get_received() == [{"name": "heard", "args": [{"n": 1}], "namespace": "/"}]
    one.emit("shout", {"n": 2, "self": False})
    assert one.get_received() == []
    assert two.get_received()[0]["args"] == [{"n": 2, "self": False}]
    assert elsewhere.get_received("/other") == []


def test_catch_all_event_and_namespace_handlers(make):
    app, socketio = make()

    @socketio.on("*")
    def catch_all(event, data):
        emit("caught", (event, data))

    @socketio.on("anywhere", namespace="*")
    def anywhere(data):
        emit("seen", [flask.request.namespace, data])

    client = socketio.test_client(app)
    client.emit("never registered", {"x": 1})
    assert client.get_received() == [
        {"name": "caught", "args": ["never registered", {"x": 1}], "namespace": "/"}]
    far = socketio.test_client(app, namespace="/far")
    far.emit("anywhere", 2, namespace="/far")
    assert far.get_received("/far") == [{"name": "seen", "args": [["/far", 2]],
                                         "namespace": "/far"}]


def test_error_handlers_and_what_the_test_client_raises(make):
    app, socketio = make()
    caught: list[tuple[str, str]] = []

    @socketio.on_error()
    def root_errors(exc):
        if isinstance(exc, AssertionError):
            caught.append(("/", flask.request.event["message"]))
            return "handled /"
        raise exc

    @socketio.on_error("/ns")
    def ns_errors(exc):
        caught.append(("/ns", type(exc).__name__))
        return "handled /ns"

    @socketio.on_error_default
    def default_errors(exc):
        caught.append(("default", type(exc).__name__))
        return "handled by default"

    @socketio.on("fail")
    def fail(kind):
        raise AssertionError() if kind == "assert" else KeyError(kind)

    @socketio.on("fail", namespace="/ns")
    def fail_ns(kind):
        raise ValueError(kind)

    @socketio.on("fail", namespace="/spare")
    def fail_spare(kind):
        raise ValueError(kind)

    @socketio.on("unsendable")
    def unsendable():
        return {"not json": object()}

    client = socketio.test_client(app)
    assert client.emit("fail", "assert", callback=True) == "handled /"
    client.emit("fail", "assert")
    with pytest.raises(KeyError):  # re-raised by the error handler, raised by emit()
        client.emit("fail", "key")
    answer = client.emit("fail", "key", callback=True)  # answered: handler_error
    assert answer["error"]["code"] == "handler_error"
    with pytest.raises(TypeError):
        client.emit("unsendable", callback=True)
    ns = socketio.test_client(app, namespace="/ns")
    assert ns.emit("fail", "v", namespace="/ns", callback=True) == "handled /ns"
    spare = socketio.test_client(app, namespace="/spare")
    assert spare.emit("fail", "v", namespace="/spare", callback=True) == "handled by default"
    assert caught == [("/", "fail"), ("/", "fail"), ("/ns", "ValueError"),
                      ("default", "ValueError")]


def test_managed_session_lives_in_the_environ_and_unmanaged_stays_the_cookies(make):
    app, socketio = make()

    @app.route("/session")
    def set_session():
        flask.session["foo"] = "bar"
        return ""

    @socketio.on("set")
    def set_value(value):
        seen = dict(flask.session)
        flask.session["a"] = value
        return seen

    http = app.test_client()
    http.get("/session")
    client = socketio.test_client(app, flask_test_client=http)
    assert client.emit("set", "b", callback=True) == {"foo": "bar"}
    saved = socketio.server.environ[client.eio_sid]["saved_session"]
    assert saved == {"foo": "bar", "a": "b"}
    assert client.emit("set", "c", callback=True) == {"foo": "bar", "a": "b"}
    other = socketio.test_client(app, flask_test_client=http)  # its own copy
    assert other.emit("set", "z", callback=True) == {"foo": "bar"}
    socketio.manage_session = False
    unmanaged = socketio.test_client(app, flask_test_client=http)
    assert unmanaged.emit("set", "x", callback=True) == {"foo": "bar"}
    assert unmanaged.emit("set", "y", callback=True) == {"foo": "bar"}  # the cookie's again
    # The environ goes with the client's last socket.
    eio_sid = client.eio_sid
    client.disconnect()
    assert eio_sid not in socketio.server.environ


def test_delayed_init_app_takes_the_options_and_builds_the_server():
    app = flask.Flask(__name__)
    socketio = SocketIO(ping_timeout=7, allow_upgrades=False)
    assert socketio.server is None

    @socketio.on("connect")
    def connect():
        send({"connected": "foo"}, json=True)

    socketio.init_app(app, cookie="foo")
    assert socketio.server is not None and not socketio.server.running
    eio = socketio.server.eio  # python-engineio's settings, as Flask-SocketIO code reads them
    assert (eio.allow_upgrades, eio.cookie, eio.ping_timeout) == (False, "foo", 7.0)
    client = socketio.test_client(app)
    try:
        assert client.get_received() == [{"name": "json", "args": {"connected": "foo"},
                                           "namespace": "/"}]
        url = f"{socketio.server.http_url}/socket.io/?EIO=4&transport=polling"
        handshake = requests.get(url, timeout=10)
        assert handshake.cookies.get("foo") == json.loads(handshake.text[1:])["sid"]
        assert json.loads(handshake.text[1:])["pingTimeout"] == 7000
        assert json.loads(handshake.text[1:])["upgrades"] == []
    finally:
        socketio.stop()


def test_message_queue_options_say_who_only_writes():
    url = "redis://127.0.0.1:1/0"  # never reached: nothing here publishes
    with_app = SocketIO(flask.Flask(__name__), message_queue=url)
    assert with_app.server_options["client_manager"].write_only is False
    assert with_app.server is not None and with_app.server.broker == url
    later = SocketIO(flask.Flask(__name__))
    later.init_app(later.app, message_queue=url)
    assert later.server_options["client_manager"].write_only is False
    worker = SocketIO(message_queue=url)
    assert worker.server_options["client_manager"].write_only is True
    assert worker.server is None
    script = SocketIO()
    script.init_app(None, message_queue=url)
    assert script.server_options["client_manager"].write_only is True


def test_eio_sid_refusals_and_disconnects(make):
    app, socketio = make()
    gone: list[str] = []

    @socketio.on("connect")
    def connect(auth):
        if auth and auth.get("no"):
            raise ConnectionRefusedError("nope")
        return not (auth and auth.get("false"))

    @socketio.on("disconnect")
    def on_disconnect(reason):
        gone.append(flask.request.sid)

    @socketio.on("leave")
    def leave():
        disconnect()

    one, two = socketio.test_client(app), socketio.test_client(app)
    assert one.eio_sid and one.eio_sid != two.eio_sid
    assert {one.eio_sid, two.eio_sid} <= set(socketio.server.environ)
    for auth in ({"no": 1}, {"false": 1}):
        assert not socketio.test_client(app, auth=auth).is_connected()
    # A refused client's environ does not stay behind (no disconnect handler runs for it).
    assert wait_until(lambda: set(socketio.server.environ) == {one.eio_sid, two.eio_sid}, 10)
    sid = one.sids["/"]
    one.disconnect()
    assert gone == [sid]  # the disconnect handler ran before disconnect() returned
    two.emit("leave")
    assert not two.is_connected()
    with pytest.raises(RuntimeError):
        two.emit("leave")


def test_a_class_based_namespace_error_method_handles_what_the_error_handlers_do_not(make):
    from skyrelay.flask import Namespace

    app, socketio = make()
    seen = []

    @socketio.on_error_default
    def default(exc):
        seen.append(("default", type(exc).__name__))
        if isinstance(exc, KeyError):
            return "default-handled"
        raise exc

    class Orders(Namespace):
        def on_divide(self, data):
            return 1 / data

        def on_lookup(self, data):
            return {}[data]

        def error(self, exc):
            seen.append(("namespace", type(exc).__name__))
            return f"namespace-handled {type(exc).__name__}"

    class Plain(Namespace):
        def on_divide(self, data):
            return 1 / data

    socketio.on_namespace(Orders("/orders"))
    socketio.on_namespace(Plain("/plain"))
    client = socketio.test_client(app, namespace="/orders")
    # The default handler re-raises a ZeroDivisionError: the namespace's error() answers.
    assert client.emit("divide", 0, namespace="/orders", callback=True) == \
        "namespace-handled ZeroDivisionError"
    # The default handler answers a KeyError itself: error() is not called.
    assert client.emit("lookup", "x", namespace="/orders", callback=True) == "default-handled"
    assert seen == [("default", "ZeroDivisionError"), ("namespace", "ZeroDivisionError"),
                    ("default", "KeyError")]
    # Without an error() method what no handler takes reaches the test client, as there.
    plain = socketio.test_client(app, namespace="/plain")
    with pytest.raises(ZeroDivisionError):
        plain.emit("divide", 0, namespace="/plain")
    assert plain.emit("divide", 0, namespace="/plain", callback=True)["error"]["code"] == \
        "handler_error"
