"""sse-starlette on uvicorn: the Python SSE peer. Each subscriber of GET /sse/bench gets an
EventSourceResponse fed by its own asyncio.Queue; the publisher puts every message into every
queue (the usual way to fan out with sse-starlette). The queues are bounded like skyrelay's
outboxes (1,024 messages) and drop their oldest message when full, counted and reported at
the end, so an overloaded run measures sustained delivery rather than growing memory.

--fast runs uvicorn on uvloop with httptools (what `uvicorn[standard]` adds); without it, on
the asyncio loop with h11 (uvicorn's pure-Python choices).
"""

from __future__ import annotations

import asyncio
import logging
import sys

import uvicorn
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.routing import Route

from common import parse_args, payload, publish_async

QUEUE_MAX = 1024

fast = "--fast" in sys.argv
if fast:
    sys.argv.remove("--fast")
args = parse_args()
# Once the load client has gone, asyncio warns on every write to its closed sockets (until the
# publisher stops): thousands of lines of noise in the log.
logging.getLogger("asyncio").setLevel(logging.ERROR)
queues: set[asyncio.Queue] = set()
dropped = 0


async def bench_stream(request):
    queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE_MAX)

    async def events():
        queues.add(queue)
        try:
            while True:
                seq, data = await queue.get()
                yield ServerSentEvent(data=data, event="tick", id=str(seq))
        finally:
            queues.discard(queue)

    return EventSourceResponse(events())


def fan_out(seq: int) -> None:
    """Puts message `seq` into every stream's queue, dropping the oldest of a full one."""
    global dropped
    item = (seq, payload(seq))
    for q in queues:
        if q.full():
            q.get_nowait()
            dropped += 1
        q.put_nowait(item)


async def publisher(server: uvicorn.Server) -> None:
    await publish_async(fan_out, lambda: len(queues), args)
    print(f"sse-starlette: {dropped} messages dropped from full queues", file=sys.stderr,
          flush=True)
    server.should_exit = True


async def main() -> None:
    app = Starlette(routes=[Route("/sse/bench", bench_stream)])
    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="error",
                            access_log=False, http="httptools" if fast else "h11",
                            timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    await asyncio.gather(server.serve(), publisher(server))


if fast:  # serve() runs on the loop it is called from: start that loop as uvloop
    import uvloop

    uvloop.run(main())
else:
    asyncio.run(main())
