"""skyrelay in its Socket.IO conformance profile: the test-only app the official
socket.io-protocol test suite expects (see docs/socketio.md, "Conformance").

    .venv/bin/python tests/conformance/sio_app.py --port 3000

Timers as the suite requires (pingInterval 300 ms, pingTimeout 200 ms, connectTimeout 1 s),
connection state recovery off, and the suite's handlers on "/" and "/custom". The raw
Engine.IO echo endpoint at /engine.io/ serves the engine.io-protocol suite.
"""

from __future__ import annotations

import argparse

import skyrelay


def build(port: int) -> skyrelay.Server:
    server = skyrelay.Server("127.0.0.1", port, ping_interval=0.3, ping_timeout=0.2,
                             connect_timeout=1.0, namespaces=["/", "/custom"],
                             engineio_echo_path="/engine.io/")

    @server.on("connect")
    def on_connect(conn):
        conn.emit("auth", conn.auth)

    @server.on("message")
    def message(conn, data):
        args = data if isinstance(data, list) else [data]
        server._socketio.emit(conn.sid, "message-back", args)

    @server.on("message-with-ack")
    def message_with_ack(conn, data):
        return tuple(data) if isinstance(data, list) else data

    @server.on("connect", namespace="/custom")
    def on_custom_connect(conn):
        conn.emit("auth", conn.auth)

    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args()
    build(args.port).run()


if __name__ == "__main__":
    main()
