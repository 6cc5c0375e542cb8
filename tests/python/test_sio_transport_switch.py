"""Socket.IO deliveries while the transport changes under them.

A socket without recovery delivers straight into its session's WebSocket outbox once there is
one (sio_socket::set_wire), and through the session (the long-polling queue) before. These
tests publish while a client upgrades from long-polling to WebSocket, and while one of two
sockets on a session ends, and check that each event arrives exactly once and in order.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time

import socketio

from skyrelay.testing import wait_until
from httpraw import EioPolling
from wsraw import RawClient

MAX_EVENTS = 20_000  # bounds the publishing loop, whatever the client does
AFTER_UPGRADE = 300  # events still published once the upgrade is done


class UpgradingClient:
    """A raw Engine.IO v4 client in "/" that starts on long-polling and upgrades to WebSocket
    when told, keeping every tick it receives on either transport, in arrival order."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.ticks: list[int] = []
        self.polling = EioPolling(port)
        self.sid = self.polling.sid
        self.polling.post("40")
        self.ws: RawClient | None = None

    def _packet(self, text: str) -> None:
        if text.startswith("42"):
            event, n = json.loads(text[2:])
            assert event == "tick"
            self.ticks.append(n)
        elif text == "2":  # the server's ping
            self.send("3")
        else:
            assert text == "6" or text.startswith("40{"), text  # noop, CONNECT's answer

    def send(self, text: str) -> None:
        if self.ws:
            self.ws.send_text(text)
        else:
            self.polling.post(text)

    def poll(self) -> None:
        for record in self.polling.get():
            self._packet(record)

    def upgrade(self) -> None:
        """The probe, then "5": from here on the session's packets come over the WebSocket."""
        ws = RawClient(self.port, f"/socket.io/?EIO=4&transport=websocket&sid={self.sid}")
        assert ws.status == 101
        ws.send_text("2probe")
        assert ws.read_frame(timeout=10) == (1, b"3probe")
        ws.send_text("5")
        self.ws = ws

    def read_ws(self, until: int, timeout: float = 10.0) -> None:
        """WebSocket frames until the tick `until` - 1 or the timeout."""
        deadline = time.monotonic() + timeout
        while (not self.ticks or self.ticks[-1] < until - 1) and time.monotonic() < deadline:
            f = self.ws.read_frame(timeout=max(0.1, deadline - time.monotonic()))
            assert f is not None and f[0] == 1, f
            self._packet(f[1].decode())


def publish_until(server, upgraded: threading.Event, sent: list[int]) -> None:
    """Publishes "tick" 0, 1, 2, ... to "/" until AFTER_UPGRADE events after `upgraded`."""
    n, stop_at = 0, None
    deadline = time.monotonic() + 10
    while n < MAX_EVENTS and time.monotonic() < deadline and (stop_at is None or n < stop_at):
        if stop_at is None and upgraded.is_set():
            stop_at = n + AFTER_UPGRADE
        server.emit("tick", n)
        n += 1
        if n % 8 == 0:
            time.sleep(0.001)  # leaves polling room to drain (its queue is bounded)
    sent.append(n)


def test_events_racing_the_upgrade_arrive_once_in_order(skyrelay_server_factory):
    server = skyrelay_server_factory(None)
    for attempt in range(5):  # several upgrades, each with its own timing
        client = UpgradingClient(server.port)
        assert wait_until(lambda: server.connection_count == 1, timeout=5)
        upgraded = threading.Event()
        sent: list[int] = []
        publisher = threading.Thread(target=publish_until, args=(server, upgraded, sent))
        publisher.start()
        try:
            while not client.ticks:  # some ticks over polling first (bounded by poll's wait)
                client.poll()
            over_polling = len(client.ticks)
            client.upgrade()
            upgraded.set()
            publisher.join(20)
            assert sent and sent[0] < MAX_EVENTS
            client.read_ws(until=sent[0])
        finally:
            upgraded.set()
            publisher.join(20)
            if client.ws:
                client.ws.close()
        assert wait_until(lambda: server.connection_count == 0, timeout=5)
        # Every tick once, in order, although it came over polling, then (after "5") from
        # the polling queue moved into the WebSocket, then straight into the WebSocket.
        assert client.ticks == list(range(sent[0])), (attempt, over_polling, sent)
        assert 0 < over_polling < sent[0]  # some over each transport


def test_a_socket_ended_on_a_shared_session_gets_nothing_more(skyrelay_server_factory):
    """Two namespaces on one WebSocket session: the one the server disconnects gets nothing
    more, the other keeps getting everything, in order, through the same transport."""

    def configure(server) -> None:
        server.on("connect", lambda conn: None, namespace="/other")

    server = skyrelay_server_factory(configure)
    client = socketio.Client(reconnection=False)
    got: dict[str, list[int]] = {"/": [], "/other": []}
    done: dict[str, queue.Queue] = {"/": queue.Queue(), "/other": queue.Queue()}
    gone: queue.Queue = queue.Queue()
    for nsp in got:
        client.on("tick", got[nsp].append, namespace=nsp)
        client.on("end", done[nsp].put, namespace=nsp)
    client.on("disconnect", lambda *args: gone.put(args), namespace="/other")
    client.connect(f"http://127.0.0.1:{server.port}", transports=["websocket"],
                   namespaces=["/", "/other"], wait_timeout=10)
    try:
        assert wait_until(lambda: server.connection_count >= 2, timeout=5)
        for n in range(100):
            server.emit("tick", n, namespace="/other")
            server.emit("tick", n)
        server.emit("end", 100, namespace="/other")
        assert done["/other"].get(timeout=10) == 100
        assert server.disconnect(client.get_sid("/other"))
        gone.get(timeout=5)
        assert wait_until(lambda: server.connection_count == 1, timeout=5)
        for n in range(100, 200):
            server.emit("tick", n, namespace="/other")
            server.emit("tick", n)
        server.emit("end", 200, namespace="/other")
        server.emit("end", 200)
        assert done["/"].get(timeout=10) == 200
        assert got["/"] == list(range(200))
        assert got["/other"] == list(range(100))
        assert done["/other"].empty()
        assert client.connected  # the session and its "/" socket go on
    finally:
        client.disconnect()


def _upgrade_status(port: int, sid: str) -> tuple[int, str]:
    """The status line and body of a WebSocket probe for polling session ``sid``."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall((f"GET /socket.io/?EIO=4&transport=websocket&sid={sid} HTTP/1.1\r\n"
                      f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            assert chunk, data
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length: *(\d+)", head)
        while length and len(rest) < int(length.group(1)):
            rest += sock.recv(4096)
    head, body = head.decode(), rest.decode()
    return int(head.split()[1]), body


def test_allow_upgrades_false_keeps_polling_sessions_on_polling(skyrelay_server_factory):
    server = skyrelay_server_factory(allow_upgrades=False)
    server.on("echo", lambda conn, data: data)
    # The open packet offers no upgrade, and a probe that asks anyway is refused.
    polling = EioPolling(server.port)
    body = polling.request("GET", "/socket.io/?EIO=4&transport=polling")
    assert json.loads(body[1:])["upgrades"] == []
    status, answer = _upgrade_status(server.port, polling.sid)
    assert status == 400 and json.loads(answer) == {"code": 3, "message": "Bad request"}
    # The session is still whole on polling after the refused probe.
    polling.post("40")
    assert any(r.startswith("40{") for r in polling.get())
    # python-socketio offered both transports stays on polling and works.
    client = socketio.Client(reconnection=False)
    client.connect(f"http://127.0.0.1:{server.port}", transports=["polling", "websocket"],
                   wait_timeout=10)
    try:
        assert client.call("echo", {"n": 1}, timeout=10) == {"n": 1}
        time.sleep(0.3)  # the client would have probed by now
        assert client.transport() == "polling"
    finally:
        client.disconnect()
    # A session opened over WebSocket directly is unaffected.
    ws = socketio.Client(reconnection=False)
    ws.connect(f"http://127.0.0.1:{server.port}", transports=["websocket"], wait_timeout=10)
    try:
        assert ws.transport() == "websocket" and ws.call("echo", 2, timeout=10) == 2
    finally:
        ws.disconnect()


def test_upgrades_are_offered_by_default(skyrelay_server_factory):
    server = skyrelay_server_factory()
    polling = EioPolling(server.port)
    body = polling.request("GET", "/socket.io/?EIO=4&transport=polling")
    assert json.loads(body[1:])["upgrades"] == ["websocket"]
    assert _upgrade_status(server.port, polling.sid)[0] == 101
