"""Socket.IO v5 with python-socketio's asyncio client (aiohttp), the client FastAPI and other
asyncio users run, over each transport: events, binary, acks both ways, and both ways of
ending a session, with the time each ending takes (the threaded client is test_socketio.py's)."""

from __future__ import annotations

import asyncio
import queue
import time

import pytest
import socketio

import skyrelay
from skyrelay.testing import wait_until

TRANSPORTS = {
    "websocket": ["websocket"],
    "polling": ["polling"],
    "upgrade": ["polling", "websocket"],
}


@pytest.fixture
def server(skyrelay_server_factory):
    disconnects: queue.Queue = queue.Queue()

    def configure(server: skyrelay.Server) -> None:
        @server.on("connect")
        def on_connect(conn):
            conn.emit("auth", conn.auth)

        @server.on("message")
        def message(conn, data):
            conn.emit("message-back", data)

        @server.on("echo_ack")
        async def echo_ack(conn, data):
            await asyncio.sleep(0)
            return data

        @server.on("disconnect")
        def on_disconnect(conn, reason):
            disconnects.put((conn.sid, reason))

    # The default heartbeat (25 s): an ending that waited for a ping would show.
    server = skyrelay_server_factory(configure)
    server.disconnects = disconnects
    return server


async def _connect(server, transport: str, got: asyncio.Queue) -> socketio.AsyncClient:
    """A client on `transport` that the connect handler has answered (its "auth" event, which
    echoes the client's auth, is taken from `got`)."""
    client = socketio.AsyncClient(reconnection=False)
    for event in ("auth", "message-back"):
        async def put(*args, event=event):
            await got.put((event, args))
        client.on(event, put)

    async def gone(*args):
        await got.put(("disconnect", args))

    client.on("disconnect", gone)
    await client.connect(f"http://127.0.0.1:{server.port}", transports=TRANSPORTS[transport],
                         auth={"token": "t1"}, wait_timeout=10)
    assert await asyncio.wait_for(got.get(), 5) == ("auth", ({"token": "t1"},))
    return client


async def _disconnect(client: socketio.AsyncClient) -> None:
    """disconnect() once every packet queued has been posted and answered. python-engineio's
    asyncio client (4.x) drops what is still queued when disconnect() finds a POST in flight:
    its write loop ends on the state it set, so over polling the close packet never leaves and
    the client waits for the next ping (25 s) to end its GET; any server would see the same.
    (A server that answered posts late made this common: test_tls.py, delayed ACK.)"""
    await asyncio.wait_for(client.eio.queue.join(), 5)
    await client.disconnect()


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_events_binary_and_acks(server, transport):
    async def run() -> None:
        got: asyncio.Queue = asyncio.Queue()
        client = await _connect(server, transport, got)
        try:
            await client.emit("message", {"x": [1, "2", {"3": True}]})
            assert await asyncio.wait_for(got.get(), 5) == (
                "message-back", ({"x": [1, "2", {"3": True}]},))
            await client.emit("message", {"blob": b"\x00\x01\xff", "more": [b"\x02"]})
            assert await asyncio.wait_for(got.get(), 5) == (
                "message-back", ({"blob": b"\x00\x01\xff", "more": [b"\x02"]},))
            # An async handler's return value is the ack, binary included.
            assert await client.call("echo_ack", {"n": 5}, timeout=5) == {"n": 5}
            assert await client.call("echo_ack", b"\x09\x08", timeout=5) == b"\x09\x08"
            # The server asks, the client's coroutine answers.

            async def question(n):
                return n * 2

            client.on("question", question)
            sid = client.get_sid("/")
            answer = await asyncio.to_thread(server.call, "question", 21, to=sid, timeout=5)
            assert answer == 42
            if transport == "upgrade":
                for _ in range(100):
                    if client.transport() == "websocket":
                        break
                    await asyncio.sleep(0.05)
                assert client.transport() == "websocket"
        finally:
            await _disconnect(client)

    asyncio.run(run())


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_a_client_disconnect_ends_the_session_at_once(server, transport):
    async def run() -> float:
        got: asyncio.Queue = asyncio.Queue()
        client = await _connect(server, transport, got)
        sid = client.get_sid("/")
        started = time.monotonic()
        await _disconnect(client)
        took = time.monotonic() - started
        assert server.disconnects.get(timeout=5) == (sid, "client_close")
        return took

    # Nothing waits for the 25 s heartbeat: the client's close reaches the server, and over
    # polling its pending GET is answered (python-socketio waits for it before returning).
    assert asyncio.run(run()) < 5


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_a_server_disconnect_reaches_the_client(server, transport):
    async def run() -> None:
        got: asyncio.Queue = asyncio.Queue()
        client = await _connect(server, transport, got)
        sid = client.get_sid("/")
        assert await asyncio.to_thread(server.disconnect, sid)
        event, args = await asyncio.wait_for(got.get(), 5)
        assert event == "disconnect"
        assert args == (socketio.AsyncClient.reason.SERVER_DISCONNECT,)
        assert server.disconnects.get(timeout=5) == (sid, "server_disconnect")
        await client.disconnect()  # no-op on a gone session; must not hang
        assert wait_until(lambda: not client.connected, timeout=5)

    asyncio.run(run())
