"""Fan-out to 1,000 concurrent clients: every client gets every broadcast, in order, once."""

from __future__ import annotations

import asyncio
import json
import resource

import pytest
import websockets

from skyrelay.testing import wait_until

CLIENTS = 1000
BROADCASTS = 50


@pytest.fixture(autouse=True)
def enough_file_descriptors():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 8192) if hard != resource.RLIM_INFINITY else 8192
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))



async def open_clients(url: str, n: int):
    sem = asyncio.Semaphore(100)  # bounded connect concurrency

    async def one():
        async with sem:
            ws = await websockets.connect(url, compression=None, max_queue=None, open_timeout=30)
            welcome = json.loads(await ws.recv())
            assert welcome["type"] == "welcome"
            return ws

    return await asyncio.gather(*(one() for _ in range(n)))


async def events_until(ws, event: str, timeout: float) -> list[str]:
    """Names of the events received before the first `event` one (which is consumed)."""
    seen = []
    async with asyncio.timeout(timeout):
        while True:
            msg = json.loads(await ws.recv())
            if msg.get("type") != "event":
                continue
            if msg["event"] == event:
                return seen
            seen.append(msg["event"])


async def collect(ws, event: str, count: int, timeout: float) -> list:
    got = []
    async with asyncio.timeout(timeout):
        while len(got) < count:
            msg = json.loads(await ws.recv())
            if msg.get("type") == "event" and msg["event"] == event:
                got.append(msg)
    return got


def run_clients(server, path, scenario):
    async def main():
        clients = await open_clients(f"ws://127.0.0.1:{server.port}{path}", CLIENTS)
        try:
            return await scenario(clients)
        finally:
            await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)

    return asyncio.run(main())


def test_every_client_receives_every_room_broadcast(skyrelay_server):
    server = skyrelay_server

    async def scenario(clients):
        for ws in clients:  # the /ws/<topic> subscription confirmation
            assert json.loads(await ws.recv())["type"] == "subscribed"
        assert server.room_size("fleet") == CLIENTS
        loop = asyncio.get_running_loop()
        receivers = [loop.create_task(collect(ws, "pos", BROADCASTS, 60)) for ws in clients]
        for i in range(BROADCASTS):
            assert server.emit("pos", {"i": i}, to="fleet") == CLIENTS
        return await asyncio.gather(*receivers)

    results = run_clients(server, "/ws/fleet", scenario)
    assert len(results) == CLIENTS
    for frames in results:
        assert [f["data"]["i"] for f in frames] == list(range(BROADCASTS))
        assert [f["seq"] for f in frames] == list(range(1, BROADCASTS + 1))
    assert wait_until(lambda: server.connection_count == 0)
    assert server.room_size("fleet") == 0
    assert server.health()["connections"] == 0


def test_broadcast_to_everyone_and_overlapping_rooms(skyrelay_server):
    server = skyrelay_server

    async def scenario(clients):
        # Even clients join "even", every third joins "third"; some are in both.
        for i, ws in enumerate(clients):
            topics = [t for t, member in (("even", i % 2 == 0), ("third", i % 3 == 0)) if member]
            if topics:
                await ws.send(json.dumps({"type": "subscribe", "topics": topics}))
                assert json.loads(await ws.recv())["type"] == "subscribed"
        loop = asyncio.get_running_loop()
        everyone = [loop.create_task(collect(ws, "all", 3, 60)) for ws in clients]
        for i in range(3):
            assert server.emit("all", i) == CLIENTS
        await asyncio.gather(*everyone)
        expected = sum(1 for i in range(CLIENTS) if i % 2 == 0 or i % 3 == 0)
        targeted = [loop.create_task(collect(ws, "some", 1, 30))
                    for i, ws in enumerate(clients) if i % 2 == 0 or i % 3 == 0]
        assert server.emit("some", "x", to=["even", "third"]) == expected
        await asyncio.gather(*targeted)
        # Nobody got it twice, and non-members got nothing: the next event is a broadcast.
        assert server.emit("after", 1) == CLIENTS
        extras = await asyncio.gather(*(events_until(ws, "after", 30) for ws in clients))
        return extras, everyone

    extras, everyone = run_clients(server, "/ws", scenario)
    for task in everyone:
        assert [f["data"] for f in task.result()] == [0, 1, 2]
    assert extras == [[]] * CLIENTS  # no duplicate "some", nothing for non-members
