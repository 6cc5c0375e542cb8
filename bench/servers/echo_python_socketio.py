"""python-socketio AsyncServer on aiohttp, the async peer of run_handlers.py: an ``echo`` event
answered through its ack (the handler's return value)."""

from __future__ import annotations

import argparse

import socketio
from aiohttp import web

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
args = p.parse_args()
sio = socketio.AsyncServer(async_mode="aiohttp")
app = web.Application()
sio.attach(app)


@sio.on("echo")
async def echo(sid, data):
    return data


print("READY", flush=True)
web.run_app(app, host="127.0.0.1", port=args.port, print=None)
