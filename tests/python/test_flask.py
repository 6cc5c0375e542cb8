"""Flask-SocketIO application code running on skyrelay with only its import line changed."""

from __future__ import annotations

import importlib
import json
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import socketio as sio_client

pytest.importorskip("flask")


@pytest.fixture
def chat():
    sys.modules.pop("flask_chat_app", None)
    mod = importlib.import_module("flask_chat_app")
    yield mod
    mod.socketio.stop()


def test_only_the_import_line_is_ours():
    import ast

    tree = ast.parse((Path(__file__).parent / "flask_chat_app.py").read_text())
    imports = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert imports == ["flask", "skyrelay.flask"]  # flask_socketio -> skyrelay.flask
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert "skyrelay" not in names


def test_test_client_flow(chat):
    client = chat.socketio.test_client(chat.app, auth={"token": "secret"})
    assert client.is_connected()
    received = client.get_received()
    assert received == [{"name": "server_status", "args": [{"online": 1}], "namespace": "/"}]
    ack = client.emit("subscribe", "AAPL", callback=True)
    assert ack["subscribed"] == "AAPL"
    assert ack["rooms"][0] == next(iter(chat.online)) and "AAPL" in ack["rooms"]
    assert client.get_received() == [
        {"name": "snapshot", "args": [{"symbol": "AAPL", "price": 189.5}], "namespace": "/"}]
    assert client.emit("add", 2, 3, callback=True) == 5
    assert client.emit("boom", callback=True) == {"error": "kaboom"}
    # Background task broadcasting to the room.
    task = chat.socketio.start_background_task(chat.ticker, 0.05, 3)
    task.join(5)
    prices = [m["args"][0]["price"] for m in client.get_received() if m["name"] == "price"]
    assert len(prices) == 3 and prices == sorted(prices)
    client.emit("unsubscribe", "AAPL")
    client.get_received()
    chat.socketio.start_background_task(chat.ticker, 0.01, 2).join(5)
    assert client.get_received() == []
    client.disconnect()
    assert not client.is_connected()
    deadline = time.monotonic() + 5
    while chat.online and time.monotonic() < deadline:
        time.sleep(0.02)
    assert chat.online == set()


def test_several_arguments_and_binary_to_a_room(chat):
    alice = chat.socketio.test_client(chat.app, auth={"token": "secret"})
    bob = chat.socketio.test_client(chat.app, auth={"token": "secret"})
    for c in (alice, bob):
        c.emit("subscribe", "AAPL", callback=True)
        c.get_received()
    blob = bytes(range(256)) * 4
    alice.emit("share", "AAPL", "chart.png", blob)
    deadline = time.monotonic() + 5
    got = []
    while not got and time.monotonic() < deadline:
        got = bob.get_received()
        time.sleep(0.02)
    assert len(got) == 1 and (got[0]["name"], got[0]["namespace"]) == ("shared", "/")
    name, data, meta = got[0]["args"]
    assert (name, data) == ("chart.png", blob)
    assert isinstance(meta["from"], str) and len(meta["from"]) == 16
    assert alice.get_received() == []  # include_self=False
    # The server-level form, with several arguments, to the room.
    chat.socketio.emit("quote", "AAPL", 190.25, b"\x01\x02", to="AAPL")
    for c in (alice, bob):
        deadline = time.monotonic() + 5
        got = []
        while not got and time.monotonic() < deadline:
            got = c.get_received()
            time.sleep(0.02)
        assert got == [{"name": "quote", "namespace": "/", "args": ["AAPL", 190.25, b"\x01\x02"]}]
    alice.disconnect()
    bob.disconnect()


def test_refused_connection_and_namespace_class(chat):
    # As Flask-SocketIO's test client: a refused connection is not an exception.
    refused = chat.socketio.test_client(chat.app, auth={"token": "wrong"})
    assert not refused.is_connected()
    admin = chat.socketio.test_client(chat.app, namespace="/admin", auth={"token": "secret"})
    who = admin.emit("whoami", callback=True, namespace="/admin")
    assert who["namespace"] == "/admin" and len(who["sid"]) == 16
    admin.disconnect(namespace="/admin")


def test_flask_routes_and_real_clients_share_the_port(chat):
    client = chat.socketio.test_client(chat.app, auth={"token": "secret"})  # starts the server
    port = chat.socketio.server.port
    body = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/prices", timeout=5).read())
    assert body == chat.prices
    errors = []
    refused = sio_client.Client(reconnection=False)
    refused.on("connect_error", lambda data: errors.append(data))
    with pytest.raises(sio_client.exceptions.ConnectionError):
        refused.connect(f"http://127.0.0.1:{port}", auth={"token": "nope"}, wait_timeout=5,
                        transports=["polling"])
    assert errors == [{"message": "unauthorized", "data": {"hint": "send a token"}}]
    client.disconnect()
