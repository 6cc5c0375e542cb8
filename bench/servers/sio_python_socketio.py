"""python-socketio AsyncServer (ASGI) on uvicorn: sio.emit() to everyone."""

from __future__ import annotations

import asyncio
import json
import time

import socketio
import uvicorn

from common import announce, await_clients, parse_args, payload

args = parse_args()
sio = socketio.AsyncServer(async_mode="asgi", ping_interval=25, ping_timeout=20)
connected = set()


@sio.event
async def connect(sid, environ, auth=None):
    connected.add(sid)


@sio.event
async def disconnect(sid, reason=None):
    connected.discard(sid)


async def publisher(server: uvicorn.Server):
    await await_clients(lambda: len(connected), args.clients, args.connect_timeout)
    announce("PUBLISHING")
    start, seq = time.monotonic(), 0
    while (elapsed := time.monotonic() - start) < args.seconds:
        due = int(args.rate * elapsed) + 1
        while seq < due:
            await sio.emit("tick", json.loads(payload(seq)))
            seq += 1
        await asyncio.sleep(max(0.0, start + (int(elapsed * 1000) + 1) / 1000 - time.monotonic()))
    announce(f"DONE {seq}")
    server.should_exit = True


async def main():
    config = uvicorn.Config(socketio.ASGIApp(sio), host="127.0.0.1", port=args.port,
                            log_level="error", ws="websockets")
    server = uvicorn.Server(config)
    await asyncio.gather(server.serve(), publisher(server))


asyncio.run(main())
