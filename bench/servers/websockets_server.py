"""python `websockets` (asyncio) with websockets.broadcast(): the peer we compare against."""

from __future__ import annotations

import asyncio
import ssl

from websockets.asyncio.server import broadcast, serve

from common import parse_args, payload, publish_async

args = parse_args()
clients: set = set()


async def handler(ws):
    clients.add(ws)
    try:
        await ws.wait_closed()
    finally:
        clients.discard(ws)


def tls_context() -> ssl.SSLContext | None:
    """With --certfile/--keyfile: Python's server-side TLS context (TLS 1.2 and 1.3, the
    ssl module's defaults otherwise), as one would hand to websockets for wss."""
    if not args.certfile:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.certfile, args.keyfile)
    return ctx


async def main():
    async with serve(handler, "127.0.0.1", args.port, compression=None, max_queue=None,
                     ping_interval=None, ssl=tls_context()):
        await publish_async(lambda seq: broadcast(clients, payload(seq)), lambda: len(clients),
                            args)


asyncio.run(main())
