"""The threads a server starts carry names (`top -H`, `ps -L`, perf, gdb, py-spy show them):
the core's I/O threads, its dispatcher, the log pump and the asyncio loop it starts for async
handlers. Read back from /proc, the kernel's own record of each thread's name."""

from __future__ import annotations

import json
import os

import websockets.sync.client

import skyrelay
from skyrelay.testing import wait_until


def thread_names() -> list[str]:
    names = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                names.append(f.read().strip())
        except FileNotFoundError:  # ended meanwhile
            pass
    return names


def test_a_servers_threads_are_named_and_go_with_it():
    server = skyrelay.Server("127.0.0.1", 0, io_threads=2)

    @server.on("ping")
    async def ping(conn, data):
        return data

    with server:
        # The core's threads are named by the thread that starts them, before start() returns;
        # the log pump names itself as it begins.
        names = thread_names()
        for name in ("skyrelay-io-0", "skyrelay-io-1", "skyrelay-disp"):
            assert names.count(name) == 1, names
        assert wait_until(lambda: thread_names().count("skyrelay-log") == 1, 5), thread_names()
        assert "skyrelay-async" not in names  # started with the first async handler
        with websockets.sync.client.connect(server.url) as ws:
            json.loads(ws.recv(timeout=5))  # welcome
            ws.send(json.dumps({"type": "request", "id": "1", "event": "ping", "data": 7}))
            assert '"data":7' in ws.recv(timeout=5)
        assert wait_until(lambda: "skyrelay-async" in thread_names(), 5), thread_names()
    assert wait_until(lambda: not any(n.startswith("skyrelay-") for n in thread_names()), 5), \
        thread_names()


def test_a_long_name_is_cut_to_what_the_kernel_keeps():
    import threading

    from skyrelay import _core

    seen: list[str] = []

    def run() -> None:
        _core.name_this_thread("skyrelay-a-much-longer-name")
        with open(f"/proc/self/task/{threading.get_native_id()}/comm") as f:
            seen.append(f.read().strip())

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert seen == ["skyrelay-a-much"]
