"""The Python half of one Socket.IO event to a plain sync echo handler, alone: thread CPU time
of ``SocketIOBridge.on_event`` per call, with the core's ``sio_ack_plain`` replaced by a stub
(no network, no dispatcher). For before/after, run it with another build first on PYTHONPATH:

    .venv/bin/python bench/handlers_micro/on_event.py
    PYTHONPATH=/path/to/other/site .venv/bin/python bench/handlers_micro/on_event.py
"""

from __future__ import annotations

import time

import skyrelay


class StubCore:
    """What on_event's answer needs of the core: a running flag and the plain ack."""

    running = True

    def __init__(self) -> None:
        self.acks = 0

    def sio_ack_plain(self, sid: str, ack_id: int, values: list) -> int:
        self.acks += 1
        return 1


def main() -> None:
    server = skyrelay.Server("127.0.0.1", 0)

    @server.on("echo")
    def echo(conn, data):
        return data

    bridge = server._socketio
    stub = StubCore()
    bridge._core = lambda: stub
    args = '[{"seq":1,"pad":"' + "x" * 40 + '"}]'
    n = 200_000
    for _ in range(3):
        t0 = time.thread_time()
        for i in range(n):
            bridge.on_event("sid-1", "echo", args, i, [])
        per = (time.thread_time() - t0) / n
        print(f"{skyrelay.__file__}: {per * 1e9:.0f} ns of thread CPU per event")
    assert stub.acks == 3 * n


if __name__ == "__main__":
    main()
