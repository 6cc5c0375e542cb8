"""The app that test_workers.py serves with ``skyrelay run workers_app:server --workers N``:
every answer names the worker process that gave it."""

from __future__ import annotations

import os

import skyrelay

# A short ping interval: python-engineio's polling client drops its Engine.IO close packet when
# disconnect() comes while its write loop is still posting (the loop sees the state change and
# leaves), and its pending poll then ends only at the server's next ping. With one new TCP
# connection per request (test_workers' polling clients) that race is common; at the default
# 25 s it cost a test 25 s now and then.
server = skyrelay.Server("127.0.0.1", 0, drain_timeout=1.0, ping_interval=3.0)


@server.on("echo")
def echo(conn, data):
    # An event back to this client, then the ack: both from the worker holding the session.
    conn.emit("echoed", {"pid": os.getpid(), "data": data})
    return {"pid": os.getpid(), "data": data}


@server.on("size")
def size(conn, data):
    return {"pid": os.getpid(), "size": len(data)}


not_a_server = object()


@server.on("join")
def join(conn, room):
    conn.join(room)
    return {"pid": os.getpid()}


@server.on("shout")
def shout(conn, data):
    # To a room whose members may sit on any worker: only a shared broker reaches them all.
    server.emit("shouted", {"pid": os.getpid(), "n": data["n"]}, to=data["room"])
    return {"pid": os.getpid()}
