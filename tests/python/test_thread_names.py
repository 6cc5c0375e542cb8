"""The threads a server starts carry names (`top -H`, `ps -L`, perf, gdb, py-spy show them):
the core's I/O threads, its dispatcher, the log pump and the asyncio loop it starts for async
handlers. Read back from /proc, the kernel's own record of each thread's name."""

from __future__ import annotations

import json
import os
import threading
from collections import Counter

import httpx
import pytest
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


CORE = ("skyrelay-io-0", "skyrelay-io-1", "skyrelay-disp", "skyrelay-log", "skyrelay-async")


def test_a_servers_threads_are_named_and_go_with_it():
    # Counted against what the process had before: servers of earlier tests may keep threads.
    before = Counter(thread_names())
    server = skyrelay.Server("127.0.0.1", 0, io_threads=2)

    @server.on("ping")
    async def ping(conn, data):
        return data

    def added() -> Counter:
        now = Counter(thread_names())
        return Counter({n: now[n] - before[n] for n in CORE})

    with server:
        # The core's threads are named by the thread that starts them, before start() returns;
        # the log pump names itself as it begins.
        for name in ("skyrelay-io-0", "skyrelay-io-1", "skyrelay-disp"):
            assert added()[name] == 1, thread_names()
        assert wait_until(lambda: added()["skyrelay-log"] == 1, 5), thread_names()
        assert added()["skyrelay-async"] == 0  # started with the first async handler
        with websockets.sync.client.connect(server.url) as ws:
            json.loads(ws.recv(timeout=5))  # welcome
            ws.send(json.dumps({"type": "request", "id": "1", "event": "ping", "data": 7}))
            assert '"data":7' in ws.recv(timeout=5)
        assert wait_until(lambda: added()["skyrelay-async"] == 1, 5), thread_names()
    assert wait_until(lambda: not any(added().values()), 5), thread_names()


def test_the_wsgi_apps_threads_have_their_own_name():
    # Linux gives a new thread the name of the thread that started it: without a name of their
    # own, the pool's threads would pass for the core's.
    seen: list[str] = []

    def app(environ, start_response):
        with open(f"/proc/self/task/{threading.get_native_id()}/comm") as f:
            seen.append(f.read().strip())
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    with skyrelay.Server("127.0.0.1", 0, wsgi_app=app) as server:
        assert httpx.get(server.http_url + "/", timeout=5).text == "ok"
    assert seen == ["skyrelay-wsgi"]


def test_a_long_name_is_cut_to_what_the_kernel_keeps():
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


def test_a_thread_started_from_a_named_one_takes_its_own_python_name():
    # What start_background_task and skyrelay's pools rely on: without os_named the child
    # would show the parent's name (Linux copies it), here a dispatcher's.
    from skyrelay import _core
    from skyrelay._threads import os_named

    seen: dict[str, str] = {}

    def child() -> None:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm") as f:
            seen[threading.current_thread().name] = f.read().strip()

    def parent() -> None:
        _core.name_this_thread("skyrelay-disp")
        plain = threading.Thread(target=child, name="plain")
        plain.start()
        plain.join()
        named = threading.Thread(target=os_named(child))
        named.start()
        named.join()
        seen["named's Python name"] = named.name

    t = threading.Thread(target=parent)
    t.start()
    t.join()
    assert seen["plain"] == "skyrelay-disp"  # inherited: the reason for os_named
    python_name = seen.pop("named's Python name")
    assert python_name.endswith("(child)")  # the target's name, not the wrapper's
    assert seen[python_name] == python_name[:15]


def test_a_background_task_started_from_a_handler_has_its_own_name():
    # The facade's start_background_task, called where handlers run (a thread named
    # skyrelay-disp here): the task's thread shows its Python name, not the dispatcher's.
    flask = pytest.importorskip("flask")
    from skyrelay import _core
    from skyrelay.flask import SocketIO

    socketio = SocketIO(flask.Flask(__name__))
    seen: list[tuple[str, str]] = []

    def task() -> None:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm") as f:
            seen.append((threading.current_thread().name, f.read().strip()))

    def handler() -> None:
        _core.name_this_thread("skyrelay-disp")
        socketio.start_background_task(task).join(5)

    t = threading.Thread(target=handler)
    t.start()
    t.join()
    assert len(seen) == 1, seen
    python_name, os_name = seen[0]
    assert python_name.endswith("(task)") and os_name == python_name[:15], seen
