"""What every benchmark server shares: arguments, the payload, and the paced publisher loop
(publish() on a thread, publish_async() on an asyncio loop).

Each message is ~100 bytes of JSON: {"t": <CLOCK_MONOTONIC ns at publish>, "seq": n, "pad": ...}.
The publisher sends in 1 ms ticks, so a rate above what the server can deliver saturates it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

PAD = "x" * 60


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--rate", type=float, required=True, help="messages per second")
    p.add_argument("--seconds", type=float, required=True, help="publishing time (bounded)")
    p.add_argument("--connect-timeout", type=float, default=60.0)
    # I/O threads of a server that has them (skyrelay_server.py; run_model_check.py sets 2).
    p.add_argument("--io-threads", type=int, default=1)
    # TLS (wss / https), for run_tls.py: a PEM certificate (chain) and its unencrypted key.
    p.add_argument("--certfile", help="serve TLS with this PEM certificate (chain)")
    p.add_argument("--keyfile", help="the certificate's PEM key (with --certfile)")
    # Several nodes on one broker (run_redis.py): this node's share of --clients, whether it
    # publishes, and the broker URL. A node with --gate says READY once its share is connected
    # and waits for a line on stdin (the driver's GO, when every node is READY) before it
    # publishes; a node that does not publish serves until --seconds have passed after GO.
    p.add_argument("--broker", help="the broker URL (skyrelay) or Redis URL (python-socketio)")
    p.add_argument("--local-clients", type=int, help="clients of this node (default --clients)")
    p.add_argument("--publisher", type=int, default=1, help="0: this node only serves")
    p.add_argument("--gate", action="store_true", help="READY, then wait for GO on stdin")
    # skyrelay's write path (run_lightload.py): Server(io_uring=...), "auto" or "off".
    p.add_argument("--io-uring", choices=("auto", "off"), help="skyrelay: the io_uring option")
    args = p.parse_args()
    if bool(args.certfile) != bool(args.keyfile):
        p.error("--certfile and --keyfile go together")
    args.seconds = min(args.seconds, 120.0)
    return args


def payload(seq: int) -> str:
    return json.dumps({"t": time.monotonic_ns(), "seq": seq, "pad": PAD}, separators=(",", ":"))


def announce(what: str) -> None:
    print(what, flush=True)


def ticks(rate: float, seconds: float):
    """For `seconds`, on a 1 ms grid: yields how many messages are due in all by then (at
    `rate` per second) and the monotonic time to wake up next (when behind, one goes straight
    on): the first 1 ms tick at which another message is due, so that below 1,000 msg/s the
    publisher wakes once per message rather than every millisecond (each wake-up is CPU of the
    server under test, the same rule as bench/servers/ws_node.mjs)."""
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(rate * elapsed) + 1
        next_ms = max(int(elapsed * 1000) + 1, math.ceil(due * 1000 / rate))
        yield due, start + next_ms / 1000


def publish(send, count, args: argparse.Namespace) -> int:
    """Waits until ``count()`` reaches --clients, says PUBLISHING, then calls ``send(seq)`` at
    --rate for --seconds, sleeping between the ticks, and says DONE; returns how many it sent.
    A server whose publisher runs on a thread of its own uses this."""
    wait_for_clients(count, args.clients, args.connect_timeout)
    announce("PUBLISHING")
    seq = 0
    for due, next_tick in ticks(args.rate, args.seconds):
        while seq < due:
            send(seq)
            seq += 1
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    announce(f"DONE {seq}")
    return seq


async def publish_async(send, count, args: argparse.Namespace) -> int:
    """publish() on an asyncio loop: it awaits between the ticks (even when behind), so the
    loop serves the connections in between. ``send`` may be a coroutine function."""
    import asyncio

    awaited = asyncio.iscoroutinefunction(send)
    await await_clients(count, args.clients, args.connect_timeout)
    announce("PUBLISHING")
    seq = 0
    for due, next_tick in ticks(args.rate, args.seconds):
        while seq < due:
            if awaited:
                await send(seq)
            else:
                send(seq)
            seq += 1
        await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
    announce(f"DONE {seq}")
    return seq


def gated(send, count, args: argparse.Namespace) -> int:
    """A node of several (--gate): waits for its share of the clients, says READY, waits for the
    driver's GO line, then publishes like publish() (--publisher 1) or only serves for
    --seconds; says DONE either way and returns how many it sent."""
    wait_for_clients(count, args.local_clients or args.clients, args.connect_timeout)
    announce("READY")
    sys.stdin.readline()
    if args.publisher:
        return publish(send, lambda: args.clients, args)
    announce("PUBLISHING")  # the driver reads it from the publisher only; harmless here
    time.sleep(args.seconds)
    announce("DONE 0")
    return 0


async def gated_async(send, count, args: argparse.Namespace) -> int:
    """gated() on an asyncio loop (stdin is read on a thread, the loop keeps serving)."""
    import asyncio

    await await_clients(count, args.local_clients or args.clients, args.connect_timeout)
    announce("READY")
    await asyncio.to_thread(sys.stdin.readline)
    if args.publisher:
        return await publish_async(send, lambda: args.clients, args)
    announce("PUBLISHING")
    await asyncio.sleep(args.seconds)
    announce("DONE 0")
    return 0


def wait_for_clients(count, wanted: int, timeout: float) -> None:
    """Blocks until ``count()`` reaches ``wanted`` (exits with an error after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while count() < wanted:
        if time.monotonic() > deadline:
            fail(f"only {count()} of {wanted} clients connected")
        time.sleep(0.05)


async def await_clients(count, wanted: int, timeout: float) -> None:
    """The asyncio form of wait_for_clients."""
    import asyncio

    deadline = time.monotonic() + timeout
    while count() < wanted:
        if time.monotonic() > deadline:
            fail(f"only {count()} of {wanted} clients connected")
        await asyncio.sleep(0.05)


def fail(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
    sys.exit(1)
