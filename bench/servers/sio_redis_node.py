"""python-socketio's AsyncServer (ASGI on uvicorn) as one node of several sharing a Redis
through its AsyncRedisManager (run_redis.py): sio.emit() to everyone; with --publisher 1 this
node publishes, the others only deliver what the manager hands them."""

from __future__ import annotations

import asyncio
import json

import socketio
import uvicorn

from common import gated_async, parse_args, payload

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


async def node(server: uvicorn.Server):
    async def send(seq: int) -> None:
        await sio.emit("tick", json.loads(payload(seq)))

    await gated_async(send, lambda: len(connected), args)
    server.should_exit = True


async def main():
    config = uvicorn.Config(socketio.ASGIApp(sio), host="127.0.0.1", port=args.port,
                            log_level="error", ws="websockets")
    server = uvicorn.Server(config)
    await asyncio.gather(server.serve(), node(server))


asyncio.run(main())
