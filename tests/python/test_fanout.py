"""Fan-out to 1,000 concurrent clients: every client gets every broadcast, in order, once.

All clients live in one asyncio event loop (the ``websockets`` asyncio client) inside the test;
the server runs in the same process, so 1,000 clients need about 2,000 file descriptors.
"""

from __future__ import annotations

import asyncio
import collections
import json
import resource
import threading

import pytest
import websockets

from skyrelay.testing import wait_until

CLIENTS = 1000
BROADCASTS = 50
CONNECT_CONCURRENCY = 100
TIMEOUT = 60  # seconds for any one phase; a loaded 2-core machine needs far less


@pytest.fixture(autouse=True)
def enough_file_descriptors():
    """Raises the soft RLIMIT_NOFILE to the hard limit for the test, then restores it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else hard
    if want < 2 * CLIENTS + 200:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is too low for {CLIENTS} clients")
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def counted_server(skyrelay_server_factory):
    """A server that counts on_disconnect reasons."""
    reasons = collections.Counter()
    lock = threading.Lock()

    def configure(server):
        @server.on_disconnect
        def gone(conn, reason):
            with lock:
                reasons[reason] += 1

    server = skyrelay_server_factory(configure)
    server.disconnect_reasons = reasons
    return server


async def recv_json(ws) -> dict:
    return json.loads(await ws.recv())


async def open_clients(url: str, n: int) -> list:
    """Opens n connections (at most CONNECT_CONCURRENCY handshakes at a time), each past its
    welcome frame. On failure every connection opened so far is closed."""
    sem = asyncio.Semaphore(CONNECT_CONCURRENCY)
    opened = []

    async def one():
        async with sem:
            ws = await websockets.connect(url, compression=None, max_queue=None,
                                          open_timeout=TIMEOUT, close_timeout=5)
            opened.append(ws)
            welcome = await recv_json(ws)
            assert welcome["type"] == "welcome"
            return ws

    try:
        async with asyncio.timeout(TIMEOUT):
            return await asyncio.gather(*(one() for _ in range(n)))
    except BaseException:
        await asyncio.gather(*(ws.close() for ws in opened), return_exceptions=True)
        raise


async def events_until(ws, marker: str) -> list[dict]:
    """Every event frame received before the first event named ``marker`` (consumed)."""
    frames = []
    while True:
        msg = await recv_json(ws)
        if msg.get("type") != "event":
            continue
        if msg["event"] == marker:
            return frames
        frames.append(msg)


async def gather_all(coros, timeout: float = TIMEOUT) -> list:
    async with asyncio.timeout(timeout):
        return await asyncio.gather(*coros)


def run_clients(server, path: str, scenario, n: int = CLIENTS):
    """Runs ``scenario(clients)`` with n clients connected to ``path``; closes them all."""

    async def main():
        clients = await open_clients(f"ws://127.0.0.1:{server.port}{path}", n)
        try:
            return await scenario(clients)
        finally:
            async with asyncio.timeout(TIMEOUT):
                await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)

    return asyncio.run(main())


def assert_all_gone(server, n: int, *rooms: str) -> None:
    assert wait_until(lambda: server.connection_count == 0, timeout=20), server.connection_count
    for room in rooms:
        assert server.room_size(room) == 0, room
    assert server.health()["connections"] == 0
    assert server.health()["rooms"] == 0
    assert wait_until(lambda: server.disconnect_reasons["client_close"] == n, timeout=20), \
        server.disconnect_reasons
    assert set(server.disconnect_reasons) == {"client_close"}


def test_every_client_receives_every_room_broadcast_once_in_order(counted_server):
    server = counted_server

    async def scenario(clients):
        # /ws/<topic> subscribes on connect: the welcome is followed by "subscribed".
        for ws in clients:
            reply = await recv_json(ws)
            assert (reply["type"], reply["topic"], reply["seq"]) == ("subscribed", "fleet", 0)
        assert server.room_size("fleet") == CLIENTS
        assert server.connection_count == CLIENTS
        receivers = [asyncio.create_task(events_until(ws, "end")) for ws in clients]
        for i in range(BROADCASTS):
            assert server.emit("pos", {"i": i}, to="fleet") == CLIENTS
        assert server.emit("end", None, to="fleet") == CLIENTS
        return await gather_all(receivers)

    results = run_clients(server, "/ws/fleet", scenario)
    assert len(results) == CLIENTS
    for frames in results:
        # Exactly once and in order: nothing missing, nothing repeated, nothing else.
        assert [f["event"] for f in frames] == ["pos"] * BROADCASTS
        assert [f["data"]["i"] for f in frames] == list(range(BROADCASTS))
        assert [f["seq"] for f in frames] == list(range(1, BROADCASTS + 1))
        assert {f["topic"] for f in frames} == {"fleet"}
    assert_all_gone(server, CLIENTS, "fleet")


def test_concurrent_publishers_keep_room_order(counted_server):
    """Several threads emitting to one room at once: each client sees seq 1..N without a step
    back, and each publisher's own events in the order it emitted them."""
    server = counted_server
    publishers, per_publisher, n_clients = 4, 50, 200

    def publish(p):
        for i in range(per_publisher):
            server.emit("tick", [p, i], to="race")

    async def scenario(clients):
        for ws in clients:
            assert (await recv_json(ws))["type"] == "subscribed"
        receivers = [asyncio.create_task(events_until(ws, "end")) for ws in clients]
        threads = [threading.Thread(target=publish, args=(p,)) for p in range(publishers)]
        for t in threads:
            t.start()
        # Join without blocking the loop that reads the frames.
        await asyncio.to_thread(lambda: [t.join(TIMEOUT) for t in threads])
        assert not any(t.is_alive() for t in threads)
        server.emit("end", None, to="race")
        return await gather_all(receivers)

    results = run_clients(server, "/ws/race", scenario, n=n_clients)
    total = publishers * per_publisher
    for frames in results:
        assert [f["seq"] for f in frames] == list(range(1, total + 1))
        for p in range(publishers):
            assert [f["data"][1] for f in frames if f["data"][0] == p] == list(range(per_publisher))
    assert_all_gone(server, n_clients, "race")


def test_broadcast_to_everyone_and_overlapping_rooms(counted_server):
    server = counted_server
    # Client i joins "even" when i is even and "third" when i is a multiple of 3 (some: both).
    even = [i % 2 == 0 for i in range(CLIENTS)]
    third = [i % 3 == 0 for i in range(CLIENTS)]

    def expected_events(i):
        names = ["all"] * 3
        if even[i] or third[i]:
            names.append("some")
        if even[i]:
            names.append("ev")
        if third[i]:
            names.append("th")
        return names + ["all"]

    async def scenario(clients):
        for i, ws in enumerate(clients):
            topics = [t for t, member in (("even", even[i]), ("third", third[i])) if member]
            if topics:
                await ws.send(json.dumps({"type": "subscribe", "topics": topics}))
                assert (await recv_json(ws))["type"] == "subscribed"
        assert server.room_size("even") == sum(even)
        assert server.room_size("third") == sum(third)
        receivers = [asyncio.create_task(events_until(ws, "end")) for ws in clients]
        for k in range(3):
            assert server.emit("all", k) == CLIENTS
        union = sum(1 for i in range(CLIENTS) if even[i] or third[i])
        assert server.emit("some", "x", to=["even", "third"]) == union
        assert server.emit("ev", "e", to="even") == sum(even)
        assert server.emit("th", "t", to="third") == sum(third)
        assert server.emit("all", 3) == CLIENTS
        assert server.emit("end", None) == CLIENTS
        return await gather_all(receivers)

    results = run_clients(server, "/ws", scenario)
    for i, frames in enumerate(results):
        # Once each, in order; non-members got nothing of the room publications.
        assert [f["event"] for f in frames] == expected_events(i), i
        by_name = collections.defaultdict(list)
        for f in frames:
            by_name[f["event"]].append(f)
        assert [f["data"] for f in by_name["all"]] == [0, 1, 2, 3]
        # Only a publication to exactly one room carries topic and seq.
        for f in by_name["all"] + by_name["some"]:
            assert "topic" not in f and "seq" not in f, f
        for f in by_name["ev"]:
            assert (f["topic"], f["seq"]) == ("even", 1)
        for f in by_name["th"]:
            assert (f["topic"], f["seq"]) == ("third", 1)
    assert_all_gone(server, CLIENTS, "even", "third")


def test_skip_leaves_out_exactly_the_listed_clients(counted_server):
    server = counted_server
    n = 300

    async def scenario(clients):
        for ws in clients:
            assert (await recv_json(ws))["type"] == "subscribed"
        sids = server.room_members("crowd")
        assert len(sids) == n
        skipped = set(sids[::7])
        receivers = [asyncio.create_task(events_until(ws, "end")) for ws in clients]
        assert server.emit("hello", 1, to="crowd", skip=sorted(skipped)) == n - len(skipped)
        server.emit("end", None, to="crowd")
        return skipped, await gather_all(receivers)

    skipped, results = run_clients(server, "/ws/crowd", scenario, n=n)
    assert sum(1 for frames in results if not frames) == len(skipped)
    for frames in results:
        assert [f["event"] for f in frames] in ([], ["hello"])
    assert_all_gone(server, n, "crowd")


def test_abrupt_mass_disconnect_cleans_up(counted_server):
    """Every client drops its TCP connection without a close frame: all are reported as
    transport_error and nothing is left in the server."""
    server = counted_server

    async def scenario(clients):
        for ws in clients:
            assert (await recv_json(ws))["type"] == "subscribed"
        assert server.room_size("gone") == CLIENTS
        for ws in clients:
            ws.transport.abort()

    run_clients(server, "/ws/gone", scenario)
    assert wait_until(lambda: server.connection_count == 0, timeout=20), server.connection_count
    assert server.room_size("gone") == 0
    assert wait_until(lambda: server.disconnect_reasons["transport_error"] == CLIENTS,
                      timeout=20), server.disconnect_reasons
    assert set(server.disconnect_reasons) == {"transport_error"}
    assert server.emit("late", 1, to="gone") == 0
