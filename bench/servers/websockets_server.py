"""python `websockets` (asyncio) with websockets.broadcast(): the peer we compare against."""

from __future__ import annotations

import asyncio
import ssl
import time

from websockets.asyncio.server import broadcast, serve

from common import announce, await_clients, parse_args, payload

args = parse_args()
clients: set = set()


async def handler(ws):
    clients.add(ws)
    try:
        await ws.wait_closed()
    finally:
        clients.discard(ws)


async def publisher():
    await await_clients(lambda: len(clients), args.clients, args.connect_timeout)
    announce("PUBLISHING")
    start = time.monotonic()
    seq = 0
    while (elapsed := time.monotonic() - start) < args.seconds:
        due = int(args.rate * elapsed) + 1
        while seq < due:
            broadcast(clients, payload(seq))
            seq += 1
        await asyncio.sleep(max(0.0, start + (int(elapsed * 1000) + 1) / 1000 - time.monotonic()))
    announce(f"DONE {seq}")


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
        await publisher()


asyncio.run(main())
