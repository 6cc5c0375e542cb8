"""The plugin's async client fixtures under each way of running async tests: asyncio.run in a
plain test, and anyio's pytest plugin; and their cleanup when a test leaves clients open."""

from __future__ import annotations

pytest_plugins = ["pytester"]

APP = """
import asyncio
import gc
import sys
import warnings

import pytest

seen = {}

def configure(server):
    @server.on("echo")
    async def echo(conn, data):
        return data

    @server.on("join")
    def join(conn, room):
        conn.join(room)
        return room
"""


def test_under_asyncio_run(pytester):
    pytester.makepyfile(APP + """
@pytest.fixture
def server(skyrelay_server_factory):
    return skyrelay_server_factory(configure, client_topics="*")

def test_json_and_socketio(server, skyrelay_async_client, skyrelay_async_sio_client):
    async def main():
        ws = await skyrelay_async_client(server)
        sio = await skyrelay_async_sio_client(server)
        assert await ws.request("echo", {"a": 1}) == {"a": 1}
        assert await sio.call("echo", [2]) == [2]
        await ws.subscribe("news")
        await sio.call("join", "news")
        server.emit("headline", "hi", to="news")
        assert await ws.expect("headline", timeout=2) == "hi"
        assert await sio.expect("headline", timeout=2) == "hi"
        await ws.expect_nothing(0.1)
        await sio.expect_nothing(0.1)
        seen["open"] = (ws, sio)          # left open: the loop's end must close them
        async with await skyrelay_async_client(server) as closed_by_test:
            seen["closed_by_test"] = closed_by_test
        assert closed_by_test.closed

    asyncio.run(main())
    ws, sio = seen["open"]
    assert ws.closed and sio.closed       # aborted when asyncio.run cancelled their tasks

def test_timeouts_fail_with_a_message(server, skyrelay_async_client):
    async def main():
        client = await skyrelay_async_client(server)
        await client.expect("never", timeout=0.2)
    asyncio.run(main())

def test_no_socket_left_behind():
    gc.collect()
""")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error::ResourceWarning",
                                           "-W", "error::pytest.PytestUnraisableExceptionWarning")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*ExpectationTimeout: no an event frame 'never' within 0.2s*"])


def test_under_anyio(pytester):
    pytester.makepyfile(APP + """
@pytest.fixture
def server(skyrelay_server_factory):
    return skyrelay_server_factory(configure, client_topics="*")

@pytest.fixture
def anyio_backend():
    return "asyncio"

@pytest.mark.anyio
async def test_json_and_socketio(server, skyrelay_async_client, skyrelay_async_sio_client):
    ws = await skyrelay_async_client(server)
    sio = await skyrelay_async_sio_client(server, transports=["websocket"])
    await ws.subscribe("a")
    await sio.call("join", "a")
    for n in range(3):
        server.emit("tick", n, to="a")
    assert [await ws.expect("tick") for _ in range(3)] == [0, 1, 2]
    assert [await sio.expect("tick") for _ in range(3)] == [0, 1, 2]
    seen["open"] = (ws, sio)              # left open for the fixture's teardown

@pytest.mark.anyio
async def test_they_were_closed(server):
    ws, sio = seen["open"]
    assert ws.closed and sio.closed

@pytest.mark.anyio
async def test_a_default_server(skyrelay_server, skyrelay_async_client):
    client = await skyrelay_async_client()
    assert client.sid and client.welcome["type"] == "welcome"

def test_no_socket_left_behind():
    gc.collect()
""")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error::ResourceWarning",
                                           "-W", "error::pytest.PytestUnraisableExceptionWarning")
    result.assert_outcomes(passed=4)
