"""Flask-SocketIO-style application code, as users write it. The only skyrelay-specific line
is the import (test_flask.py checks that by comparing with the flask_socketio spelling)."""

from flask import Flask, jsonify, request

from skyrelay.flask import (ConnectionRefusedError, Namespace, SocketIO, emit, join_room,
                            leave_room, rooms)

app = Flask(__name__)
socketio = SocketIO(app, cors_allowed_origins="*", ping_interval=5, ping_timeout=5)

prices = {"AAPL": 189.5, "MSFT": 411.0}
online = set()


@app.route("/prices")
def list_prices():
    return jsonify(prices)


@socketio.on("connect")
def handle_connect(auth):
    if not auth or auth.get("token") != "secret":
        raise ConnectionRefusedError("unauthorized", {"hint": "send a token"})
    online.add(request.sid)
    emit("server_status", {"online": len(online)})


@socketio.on("disconnect")
def handle_disconnect(reason):
    online.discard(request.sid)


@socketio.on("subscribe")
def handle_subscribe(symbol):
    join_room(symbol)
    emit("snapshot", {"symbol": symbol, "price": prices.get(symbol)})
    return {"subscribed": symbol, "rooms": rooms()}


@socketio.on("unsubscribe")
def handle_unsubscribe(symbol):
    leave_room(symbol)


@socketio.on("share")
def handle_share(symbol, name, blob):
    """Several arguments and binary, to everyone else in a room."""
    emit("shared", name, blob, {"from": request.sid}, to=symbol, include_self=False)


@socketio.event
def add(a, b):
    return a + b


@socketio.on("boom")
def boom():
    raise ValueError("kaboom")


@socketio.on_error_default
def on_error(exc):
    return {"error": str(exc)}


class Admin(Namespace):
    def on_connect(self):
        pass

    def on_whoami(self):
        return {"sid": request.sid, "namespace": request.namespace}


socketio.on_namespace(Admin("/admin"))


def ticker(period: float, rounds: int):
    """The classic background thread: broadcast every `period` seconds."""
    for _ in range(rounds):
        socketio.sleep(period)
        for symbol in prices:
            prices[symbol] = round(prices[symbol] * 1.001, 3)
            socketio.emit("price", {"symbol": symbol, "price": prices[symbol]}, to=symbol)
