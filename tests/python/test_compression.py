"""permessage-deflate (RFC 7692), opt-in per transport (issue 16, item 4): the real websockets
client (it offers the extension by default), a raw socket client for the bits on the wire (RSV1,
a decompression bomb, RSV1 without negotiation), and socket.io-client in node over WebSocket
(its `ws` transport offers the extension by default). Every read is bounded."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from wsraw import RawClient, frame

from skyrelay.testing import metric, stop_process, wait_until

HERE = Path(__file__).parent
OFFER = {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}


def telemetry(n: int = 0) -> dict:
    """A ~1 KB status object, as the telemetry apps publish."""
    return {"well": "WELL-001", "n": n, "status": "ok",
            "sensors": {f"sensor_{i}": {"value": 1000 + 37 * i, "unit": "kPa", "ok": True}
                        for i in range(24)}}


def inflate(payload: bytes) -> bytes:
    """A permessage-deflate message's payload inflated, as a client does (RFC 7692 7.2.2)."""
    return zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]


def counter(server, name: str) -> float:
    return metric(server, f"skyrelay_{name}")


def raw_subscribed(server, topic: str, headers=None) -> RawClient:
    """A raw JSON-protocol client past its welcome, subscribed to `topic`."""
    raw = RawClient(server.port, f"/ws/{topic}", headers=headers)
    assert raw.status == 101
    op, first = raw.read_frame()
    assert op == 0x1 and json.loads(first)["type"] == "welcome"
    op, second = raw.read_frame()
    assert op == 0x1 and json.loads(second)["type"] == "subscribed"
    wait_until(lambda: server.room_size(topic) >= 1, timeout=5)
    return raw


def test_off_by_default_the_offer_is_declined(skyrelay_server_factory):
    server = skyrelay_server_factory()
    with connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=5) as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        assert json.loads(ws.recv(timeout=5))["type"] == "welcome"


def test_websockets_negotiates_and_reads_compressed_publications(skyrelay_server_factory):
    server = skyrelay_server_factory(compression=True)
    with connect(f"ws://127.0.0.1:{server.port}/ws/t", open_timeout=5, max_size=None) as ws:
        ext = ws.response.headers["Sec-WebSocket-Extensions"]
        assert ext.startswith("permessage-deflate")
        assert "server_no_context_takeover" in ext and "client_no_context_takeover" in ext
        assert json.loads(ws.recv(timeout=5))["type"] == "welcome"
        assert json.loads(ws.recv(timeout=5))["type"] == "subscribed"
        wait_until(lambda: server.room_size("t") == 1, timeout=5)
        for n in range(3):
            server.emit("status", telemetry(n), to="t")
        for n in range(3):
            frame_ = json.loads(ws.recv(timeout=5))
            assert frame_["event"] == "status" and frame_["data"] == telemetry(n)
        # The client compresses what it sends (websockets: messages of 32 bytes or more);
        # the server inflates it and answers.
        ws.send(json.dumps({"type": "ping", "id": "x" * 200}))
        assert json.loads(ws.recv(timeout=5))["type"] == "pong"
    assert counter(server, "deflate_sent_messages_total") >= 3
    assert counter(server, "inflated_messages_total") >= 1
    before = counter(server, "deflate_uncompressed_bytes_total")
    assert 0 < counter(server, "deflate_compressed_bytes_total") < before / 2


def test_a_publication_is_compressed_once_for_every_compressed_client(skyrelay_server_factory):
    server = skyrelay_server_factory(compression="json")
    compressed = [raw_subscribed(server, "t", OFFER) for _ in range(3)]
    plain = raw_subscribed(server, "t")
    wait_until(lambda: server.room_size("t") == 4, timeout=5)
    try:
        for c in compressed:
            assert "Sec-WebSocket-Extensions: permessage-deflate" in c.head
        assert "Sec-WebSocket-Extensions" not in plain.head
        server.emit("status", telemetry(), to="t")
        texts = []
        for c in compressed:
            op, payload = c.read_frame()
            assert op == 0x1 and c.last_rsv == 0x40  # RSV1: compressed
            texts.append(inflate(payload))
        op, payload = plain.read_frame()
        assert op == 0x1 and plain.last_rsv == 0
        # The same bytes for everyone, compressed or not, and one compression for three.
        assert texts == [payload] * 3
        assert json.loads(payload)["data"] == telemetry()
        wait_until(lambda: counter(server, "deflate_sent_messages_total") == 3, timeout=5)
        assert counter(server, "deflate_compressions_total") == 1
        # A small frame goes as it is, even on a compressed connection (under the threshold).
        server.emit("tiny", 1, to="t")
        op, payload = compressed[0].read_frame()
        assert compressed[0].last_rsv == 0 and json.loads(payload)["data"] == 1
    finally:
        for c in [*compressed, plain]:
            c.close()


def test_an_offer_the_server_cannot_honour_is_declined(skyrelay_server_factory):
    server = skyrelay_server_factory(compression=True)
    small = {"Sec-WebSocket-Extensions": "permessage-deflate; server_max_window_bits=9"}
    with RawClient(server.port, "/ws", headers=small) as raw:
        assert raw.status == 101 and "Sec-WebSocket-Extensions" not in raw.head
    both = {"Sec-WebSocket-Extensions":
            "permessage-deflate; server_max_window_bits=9, permessage-deflate; "
            "server_max_window_bits=\"15\"; client_max_window_bits"}
    with RawClient(server.port, "/ws", headers=both) as raw:
        assert raw.status == 101
        assert ("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
                "client_no_context_takeover; server_max_window_bits=15") in raw.head


@pytest.mark.parametrize("compression", [False, True])
def test_rsv1_without_negotiation_closes_1002(skyrelay_server_factory, compression):
    server = skyrelay_server_factory(compression=compression)
    with RawClient(server.port, "/ws") as raw:  # no offer
        raw.read_frame()  # welcome
        raw.send(frame(0x1, deflate(b'{"type":"ping"}'), rsv=0x40))
        code, _ = raw.read_until_close()
        assert code == 1002


def peak_rss_reset() -> bool:
    """Resets this process's peak RSS (VmHWM) where Linux lets it; False if it does not."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def test_a_decompression_bomb_closes_1009_without_the_memory(skyrelay_server_factory):
    # The server runs in this process: its peak memory is this process's.
    server = skyrelay_server_factory(compression=True)
    # 60 MiB of zeros in ~60 KiB of DEFLATE: under max_message_size (64 KiB) as sent.
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(1 << 20)
    bomb = b"".join(c.compress(zeros) for _ in range(60)) + c.flush(zlib.Z_SYNC_FLUSH)
    bomb = bomb[:-4]
    assert len(bomb) < 64 * 1024
    with RawClient(server.port, "/ws", headers=OFFER) as raw, \
            RawClient(server.port, "/ws", headers=OFFER) as other:
        raw.read_frame()
        other.read_frame()
        measured = peak_rss_reset()
        base = peak_rss_kib()
        raw.send(frame(0x2, bomb, rsv=0x40))
        code, _ = raw.read_until_close()
        assert code == 1009
        if measured:  # far less than the 60 MiB the bomb inflates to
            assert peak_rss_kib() - base < 16 * 1024
        # Nobody else is disturbed: the other compressed client still talks.
        other.send(frame(0x1, deflate(json.dumps({"type": "ping", "id": "y" * 300}).encode()),
                         rsv=0x40))
        op, payload = other.read_frame()
        assert other.last_rsv == 0x40  # the answer (over the threshold) comes compressed too
        assert json.loads(inflate(payload))["type"] == "pong"
    assert metric(server, 'skyrelay_inflate_refused_total{reason="too_big"}') == 1
    assert metric(server, 'skyrelay_limit_hits_total{limit="message_size"}') == 1


def test_invalid_compressed_data_closes_1007(skyrelay_server_factory):
    server = skyrelay_server_factory(compression=True)
    with RawClient(server.port, "/ws", headers=OFFER) as raw:
        raw.read_frame()
        raw.send(frame(0x1, b"\xff\xff\xff\xff\xff\xff", rsv=0x40))
        code, _ = raw.read_until_close()
        assert code == 1007
    assert metric(server, 'skyrelay_inflate_refused_total{reason="bad_data"}') == 1


def test_websockets_client_bomb_is_refused(skyrelay_server_factory):
    """The real client compresses a large message itself; the server refuses it inflated."""
    server = skyrelay_server_factory(compression=True)
    with connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=5) as ws:
        ws.recv(timeout=5)
        ws.send(" " * (4 << 20))  # 4 MiB of spaces: ~4 KiB compressed
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd.code == 1009


def test_compression_for_socketio_only_leaves_the_json_protocol_plain(skyrelay_server_factory):
    server = skyrelay_server_factory(compression="socketio")
    with RawClient(server.port, "/ws", headers=OFFER) as raw:
        assert "Sec-WebSocket-Extensions" not in raw.head
    with RawClient(server.port, "/socket.io/?EIO=4&transport=websocket", headers=OFFER) as raw:
        assert "Sec-WebSocket-Extensions: permessage-deflate" in raw.head


def test_bad_compression_option_is_refused():
    import skyrelay

    with pytest.raises(ValueError, match="compression"):
        skyrelay.Server(port=0, compression=["sse"])


@pytest.mark.skipif(shutil.which("node") is None or not (HERE.parent.parent / "node_modules"
                                                          / "socket.io-client").exists(),
                    reason="needs node and socket.io-client (make node_modules/.stamp)")
def test_socket_io_client_over_compressed_websocket(skyrelay_server_factory):
    def configure(server):
        @server.on("echo")
        def echo(conn, data):
            conn.emit("echoed", data)
            conn.emit("blob", {"bytes": bytes(range(256)) * 8})

        @server.on("connect")
        def on_connect(conn):
            conn.join("r")

    server = skyrelay_server_factory(configure, compression=True)
    proc = subprocess.Popen(["node", str(HERE / "sio_deflate_client.mjs"), str(server.port)],
                            stdout=subprocess.PIPE, text=True, cwd=HERE)
    try:
        assert proc.stdout.readline().strip() == "ready"
        wait_until(lambda: server.room_size("r") == 1, timeout=5)
        server.emit("status", telemetry(7), to="r")
        result = json.loads(proc.stdout.readline())
    finally:
        stop_process(proc)
    assert result["compressed"] is True  # the client's ws saw the extension accepted
    assert result["status"] == telemetry(7)
    assert result["echoed"] == {"text": "z" * 4000}
    assert result["blob"] == list(range(256)) * 8
    # Both ways compressed: the status and echo out, the client's 4 KB echo in.
    assert counter(server, "deflate_sent_messages_total") >= 2
    assert counter(server, "inflated_messages_total") >= 1
