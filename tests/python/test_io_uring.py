"""The io_uring write path (Server(io_uring="auto"), the default): a publication to many
WebSocket clients goes out through io_uring submissions of up to 64 sends per flush of an I/O
thread, and every client receives every message once and in order; io_uring="off" (the escape
hatch) writes through epoll only; a bad value is refused. Where the kernel (or a seccomp
filter) refuses io_uring, the "auto" server silently writes through epoll: the tests that need
the ring skip, saying so.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

import skyrelay
from skyrelay.testing import metric

THREADS = "skyrelay_io_uring_threads"
SUBMISSIONS = "skyrelay_io_uring_submissions_total"
SENDS = "skyrelay_io_uring_sends_total"
CLIENTS = 200
MESSAGES = 20


async def _fan_out(server: skyrelay.Server, clients: int, messages: int) -> list[list[int]]:
    """`clients` WebSocket subscribers of room "r"; `messages` publications, one at a time
    (each waits for every client: one flush per publication); what each client received."""
    url = f"ws://127.0.0.1:{server.port}/ws/r"
    conns = [await websockets.connect(url, compression=None) for _ in range(clients)]
    try:
        for ws in conns:  # /ws/<topic>: a welcome, then "subscribed"
            assert json.loads(await ws.recv())["type"] == "welcome"
            assert json.loads(await ws.recv())["type"] == "subscribed"
        assert server.room_size("r") == clients
        got: list[list[int]] = [[] for _ in conns]
        for n in range(messages):
            assert server.emit("tick", {"n": n}, to="r") == clients
            async with asyncio.timeout(20):
                for i, ws in enumerate(conns):
                    got[i].append(await _next_event(ws))
        return got
    finally:
        await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)


async def _next_event(ws) -> int:
    """The "n" of the next event frame (other frames, such as pings, are skipped)."""
    while True:
        frame = json.loads(await ws.recv())
        if frame.get("type") == "event":
            return frame["data"]["n"]


def test_publications_go_out_through_the_ring_whole_and_in_order(skyrelay_server_factory):
    server = skyrelay_server_factory(io_threads=1, io_uring="auto")
    sends0, subs0 = metric(server, SENDS), metric(server, SUBMISSIONS)
    got = asyncio.run(_fan_out(server, CLIENTS, MESSAGES))
    assert got == [list(range(MESSAGES))] * CLIENTS
    if metric(server, THREADS) == 0:
        pytest.skip("io_uring is unavailable here (no liburing in the build, or the kernel or "
                    "a seccomp filter refuses it): the server wrote through epoll")
    sends = metric(server, SENDS) - sends0
    submissions = metric(server, SUBMISSIONS) - subs0
    # Every delivery's write went through the ring (each publication waits for all clients,
    # so every loop is idle when the next starts). A publication's recipients may be split
    # over several flushes (the I/O thread drains while the publisher is still handing out),
    # so a submission carries one send or more (test_uring_writer.cpp checks one flush → one
    # submission).
    assert sends >= CLIENTS * MESSAGES, sends
    assert 1 <= submissions <= sends, (submissions, sends)


def test_off_writes_through_epoll_only(skyrelay_server_factory):
    server = skyrelay_server_factory(io_threads=1, io_uring="off")
    sends0 = metric(server, SENDS)  # process-wide: other servers of this run count there too
    got = asyncio.run(_fan_out(server, 20, 5))
    assert got == [list(range(5))] * 20
    assert metric(server, THREADS) == 0
    assert metric(server, SENDS) == sends0
    text = server.metrics_text()
    assert f"\n{THREADS} 0\n" in text  # exposed, at 0, when off


def test_the_default_is_auto(skyrelay_server_factory):
    probe = skyrelay_server_factory(io_threads=1, io_uring="auto")
    asyncio.run(_fan_out(probe, 2, 1))
    if metric(probe, THREADS) == 0:
        pytest.skip("io_uring is unavailable here: an \"auto\" server writes through epoll")
    server = skyrelay_server_factory(io_threads=1)  # no io_uring argument
    sends0 = metric(server, SENDS)
    got = asyncio.run(_fan_out(server, 20, 5))
    assert got == [list(range(5))] * 20
    assert metric(server, THREADS) == 1  # this server's one I/O thread writes through a ring
    assert metric(server, SENDS) - sends0 >= 20 * 5


@pytest.mark.parametrize("bad", ["on", "", "AUTO", None, 1])
def test_a_bad_value_is_refused(bad):
    with pytest.raises(ValueError, match="io_uring must be 'auto' or 'off'"):
        skyrelay.Server(port=0, io_uring=bad)
