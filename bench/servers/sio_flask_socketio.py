"""Flask-SocketIO in threading mode (simple-websocket): socketio.emit() to everyone."""

from __future__ import annotations

import json
import os
import threading

from flask import Flask
from flask_socketio import SocketIO

from common import parse_args, payload, publish

args = parse_args()
app = Flask(__name__)
socketio = SocketIO(app, async_mode="threading")
connected = set()
lock = threading.Lock()


@socketio.on("connect")
def connect(auth=None):
    from flask import request

    with lock:
        connected.add(request.sid)


def publisher():
    publish(lambda seq: socketio.emit("tick", json.loads(payload(seq))),
            lambda: len(connected), args)
    os._exit(0)


threading.Thread(target=publisher, daemon=True).start()
socketio.run(app, host="127.0.0.1", port=args.port, allow_unsafe_werkzeug=True,
             log_output=False)
