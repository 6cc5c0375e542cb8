"""python-socketio AsyncServer (ASGI) on uvicorn: sio.emit() to everyone. With --broker
redis://... it is one node of several sharing that Redis through its AsyncRedisManager
(run_redis.py, with --gate): node 0 publishes, the others deliver what the manager hands them."""

from __future__ import annotations

import asyncio
import json

import socketio
import uvicorn

from common import gated_async, parse_args, payload, publish_async

args = parse_args()
manager = socketio.AsyncRedisManager(args.broker) if args.broker else None
sio = socketio.AsyncServer(async_mode="asgi", ping_interval=25, ping_timeout=20,
                           client_manager=manager)
connected = set()


@sio.event
async def connect(sid, environ, auth=None):
    connected.add(sid)


@sio.event
async def disconnect(sid, reason=None):
    connected.discard(sid)


async def publisher(server: uvicorn.Server):
    async def send(seq: int) -> None:
        await sio.emit("tick", json.loads(payload(seq)))

    await (gated_async if args.gate else publish_async)(send, lambda: len(connected), args)
    server.should_exit = True


async def main():
    config = uvicorn.Config(socketio.ASGIApp(sio), host="127.0.0.1", port=args.port,
                            log_level="error", ws="websockets")
    server = uvicorn.Server(config)
    await asyncio.gather(server.serve(), publisher(server))


asyncio.run(main())
