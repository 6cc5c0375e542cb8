"""The bytes of one Socket.IO publication on both Engine.IO transports, read raw.

A publication is encoded once as a WebSocket frame whose bare Engine.IO message sits behind
the header. A WebSocket client must get that frame, a long-polling client the bare message
alone (no header byte in front), for every header length (7-bit, 16-bit and 64-bit) and for
a binary event's attachments.
"""

from __future__ import annotations

import base64
import json
import time

import pytest

from httpraw import EioPolling
from wsraw import RawClient


class Polling(EioPolling):
    """A minimal Engine.IO v4 long-polling client."""

    def records(self, count: int, timeout: float = 10.0) -> list[str]:
        """The next `count` packets (pings answered and left out), over as many GETs as it
        takes."""
        got: list[str] = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            for record in self.get():
                if record == "2":
                    self.post("3")
                elif record != "6":
                    got.append(record)
        assert len(got) == count, got
        return got


def ws_messages(client: RawClient, count: int) -> list[tuple[int, bytes]]:
    """The next `count` data frames as (opcode, payload), Engine.IO pings answered."""
    got: list[tuple[int, bytes]] = []
    for _ in range(count + 20):
        if len(got) == count:
            break
        f = client.read_frame(timeout=10)
        assert f is not None, "no frame"
        if f == (1, b"2"):
            client.send_text("3")
        else:
            got.append(f)
    assert len(got) == count, got
    return got


@pytest.fixture
def both_transports(skyrelay_server_factory):
    server = skyrelay_server_factory()
    ws = RawClient(server.port, "/socket.io/?EIO=4&transport=websocket")
    assert ws.status == 101
    opcode, open_packet = ws.read_frame()
    assert opcode == 1 and open_packet.startswith(b"0{")
    ws.send_text("40")
    assert ws_messages(ws, 1)[0][1].startswith(b'40{"sid":')
    polling = Polling(server.port)
    polling.post("40")
    assert polling.records(1)[0].startswith('40{"sid":')
    yield server, ws, polling
    ws.close()


# One payload for each WebSocket header length: 7-bit, 16-bit and 64-bit.
@pytest.mark.parametrize("size", [10, 300, 70_000])
def test_one_publication_is_a_frame_on_websocket_and_bare_on_polling(both_transports, size):
    server, ws, polling = both_transports
    data = {"text": "x" * size, "n": size}
    assert server.emit("news", data) == 2
    [(opcode, on_ws)] = ws_messages(ws, 1)
    [on_polling] = polling.records(1)
    assert opcode == 1
    assert on_ws.decode() == on_polling  # the same bare message, no header on polling
    assert on_polling.startswith("42")
    assert json.loads(on_polling[2:]) == ["news", data]


def test_a_binary_publication_keeps_its_attachment_on_both_transports(both_transports):
    server, ws, polling = both_transports
    blob = bytes(range(256)) * 300  # 76,800 bytes: a 64-bit length header on WebSocket
    assert server.emit("blob", {"name": "b.bin", "body": blob}) == 2
    (op_text, packet), (op_bin, attachment) = ws_messages(ws, 2)
    text_record, binary_record = polling.records(2)
    assert (op_text, op_bin) == (1, 2)
    assert packet.decode() == text_record
    assert text_record.startswith("451-")
    event = json.loads(text_record[len("451-"):])
    assert event == ["blob", {"name": "b.bin", "body": {"_placeholder": True, "num": 0}}]
    assert attachment == blob
    assert binary_record.startswith("b")
    assert base64.b64decode(binary_record[1:]) == blob
