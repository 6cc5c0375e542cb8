"""Flask-SocketIO in threading mode (simple-websocket): socketio.emit() to everyone."""

from __future__ import annotations

import json
import threading
from flask import Flask
from flask_socketio import SocketIO

from common import announce, parse_args, paced, payload, wait_for_clients

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
    wait_for_clients(lambda: len(connected), args.clients, args.connect_timeout)
    announce("PUBLISHING")
    seq = 0
    for n in paced(args.rate, args.seconds):
        for _ in range(n):
            socketio.emit("tick", json.loads(payload(seq)))
            seq += 1
    announce(f"DONE {seq}")
    import os

    os._exit(0)


threading.Thread(target=publisher, daemon=True).start()
socketio.run(app, host="127.0.0.1", port=args.port, allow_unsafe_werkzeug=True,
             log_output=False)
