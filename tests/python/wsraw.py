"""A deliberately minimal WebSocket client over a plain socket, for sending what well-behaved
clients never send (bad frames, no pong replies) and for reading exactly what the server wrote.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0,
          masked: bool = True) -> bytes:
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    n = len(payload)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n <= 0xFFFF:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class RawClient:
    def __init__(self, port: int, path: str = "/ws", *, rcvbuf: int | None = None,
                 timeout: float = 5.0, headers: dict[str, str] | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n".encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during handshake")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        self.status = int(head.split(b" ")[1])
        self.head = head.decode("latin-1")  # the response head, for its header fields
        self.last_rsv = 0  # the RSV bits of the last frame read (0x40: RSV1)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_text(self, text: str) -> None:
        self.send(frame(0x1, text.encode()))

    def send_json(self, message: dict) -> None:
        self.send_text(json.dumps(message))

    def send_pong(self, payload: bytes = b"") -> None:
        self.send(frame(0xA, payload))

    def send_close(self, code: int = 1000, reason: str = "") -> None:
        self.send(frame(0x8, struct.pack("!H", code) + reason.encode()))

    def _fill(self, n: int, deadline: float) -> bool:
        while len(self.buf) < n:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except (TimeoutError, socket.timeout):
                return False
            except ConnectionResetError:
                return False
            if not chunk:
                return False
            self.buf += chunk
        return True

    def read_frame(self, timeout: float = 5.0) -> tuple[int, bytes] | None:
        """The next frame as (opcode, payload), or None on EOF or timeout."""
        deadline = time.monotonic() + timeout
        if not self._fill(2, deadline):
            return None
        b0, b1 = self.buf[0], self.buf[1]
        n, pos = b1 & 0x7F, 2
        if n == 126:
            if not self._fill(4, deadline):
                return None
            n, pos = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            if not self._fill(10, deadline):
                return None
            n, pos = struct.unpack("!Q", self.buf[2:10])[0], 10
        if not self._fill(pos + n, deadline):
            return None
        payload = self.buf[pos:pos + n]
        self.buf = self.buf[pos + n:]
        self.last_rsv = b0 & 0x70
        return b0 & 0x0F, payload

    def read_until_close(self, timeout: float = 5.0) -> tuple[int | None, list[tuple[int, bytes]]]:
        """Reads frames until a close frame (returns its code) or EOF/timeout (code None)."""
        frames = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            f = self.read_frame(max(0.01, deadline - time.monotonic()))
            if f is None:
                return None, frames
            if f[0] == 0x8:
                code = struct.unpack("!H", f[1][:2])[0] if len(f[1]) >= 2 else 1005
                return code, frames
            frames.append(f)
        return None, frames

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
