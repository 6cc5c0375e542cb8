"""``skyrelay run module:attr`` and ``--workers N``: real processes on one port (SO_REUSEPORT),
real clients over fresh TCP connections, Engine.IO polling sessions handed between workers,
supervision (restart, give up, SIGTERM) and the command's user errors."""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import socketio
import websockets.sync.client

import skyrelay

HERE = Path(__file__).parent
SERVING = re.compile(r"serving on http://127\.0\.0\.1:(\d+)(?: with \d+ workers \(pids ([\d ]+)\))?")
RESTARTED = re.compile(r"worker (\d+) \(pid (\d+)\) exited with code (-?\d+); restarted as pid (\d+)")


class Run:
    """``python -m skyrelay.cli run ...`` in tests/python, its output read by threads."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "skyrelay.cli", "run", *args],
                                     cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.stdout: queue.Queue[str] = queue.Queue()
        self.stderr: queue.Queue[str] = queue.Queue()
        for stream, q in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            threading.Thread(target=self._pump, args=(stream, q), daemon=True).start()
        self.port = 0
        self.pids: list[int] = []

    @staticmethod
    def _pump(stream, q: queue.Queue[str]) -> None:
        for line in stream:
            q.put(line)
        q.put("")  # end of stream

    def serving(self, timeout: float = 60.0) -> Run:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.stdout.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if not line:
                break
            if m := SERVING.search(line):
                self.port = int(m.group(1))
                self.pids = [int(p) for p in (m.group(2) or "").split()]
                return self
        raise AssertionError(f"not serving; stderr: {self.read_stderr()}")

    def stderr_line(self, pattern: re.Pattern[str], timeout: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.stderr.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if m := pattern.search(line):
                return m
        raise AssertionError(f"no stderr line like {pattern.pattern}")

    def read_stderr(self) -> str:
        lines = []
        while True:
            try:
                lines.append(self.stderr.get(timeout=0.5))
            except queue.Empty:
                return "".join(lines)
            if not lines[-1]:
                return "".join(lines)

    def finish(self, timeout: float = 30.0) -> tuple[int, str]:
        """Waits for the exit; (exit code, stderr)."""
        code = self.proc.wait(timeout)
        return code, self.read_stderr()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def health(port: int) -> dict:
    """GET /health over a fresh connection (Connection: close)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/health", headers={"Connection": "close"})
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def worker_metrics(port: int, pids: list[int], attempts: int = 200) -> dict[int, str]:
    """Each worker's /metrics text, by pid: /health then /metrics on one keep-alive connection
    (one worker answers both), over fresh connections until every pid answered."""
    texts: dict[int, str] = {}
    for _ in range(attempts):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", "/health")
            pid = json.loads(conn.getresponse().read())["pid"]
            conn.request("GET", "/metrics", headers={"Connection": "close"})
            texts[pid] = conn.getresponse().read().decode()
        finally:
            conn.close()
        if set(texts) == set(pids):
            break
    return texts


def counter(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert m, name
    return float(m.group(1))


@pytest.fixture
def two_workers():
    run = Run("workers_app:server", "--port", "0", "--workers", "2", "--allow-memory-broker")
    try:
        yield run.serving()
    finally:
        run.stop()


def test_two_workers_answer_on_one_port(two_workers):
    assert len(two_workers.pids) == 2
    seen = {health(two_workers.port)["pid"] for _ in range(60)}
    # The kernel spreads new connections over both (60 connections on one: p = 2**-59).
    assert seen == set(two_workers.pids)
    assert {health(two_workers.port)["worker"] for _ in range(60)} == {0, 1}


def polling_client() -> tuple[socketio.Client, queue.Queue]:
    """A python-socketio client on long-polling with keep-alive off: every request of its
    session is a new TCP connection, which the kernel gives to either worker."""
    session = requests.Session()
    session.headers["Connection"] = "close"
    client = socketio.Client(reconnection=False, http_session=session)
    events: queue.Queue = queue.Queue()
    client.on("echoed", events.put)
    return client, events


def test_workers_on_redis_deliver_each_emit_to_every_worker_s_clients(redis_server):
    """--workers 2 --broker redis://: an emit made by a handler on one worker reaches the room's
    members on both workers, once each and in one order (Redis's), WebSocket and long-polling
    alike."""
    run = Run("workers_app:server", "--port", "0", "--workers", "2",
              "--broker", redis_server.url).serving()
    clients: list[tuple[socketio.Client, queue.Queue, int]] = []
    try:
        for i in range(40):  # SO_REUSEPORT spreads new connections: until both workers hold some
            got: queue.Queue = queue.Queue()
            client = socketio.Client(reconnection=False)
            client.on("shouted", got.put)
            client.connect(f"http://127.0.0.1:{run.port}",
                           transports=["polling"] if i % 2 else ["websocket"], wait_timeout=10)
            pid = client.call("join", "crowd", timeout=10)["pid"]
            clients.append((client, got, pid))
            if len(clients) >= 4 and {p for _, _, p in clients} == set(run.pids):
                break
        assert {p for _, _, p in clients} == set(run.pids), "one worker held every client"
        total = max(20, len(clients))
        for n in range(total):  # every client shouts in turn, so both workers publish
            client = clients[n % len(clients)][0]
            client.call("shout", {"room": "crowd", "n": n}, timeout=10)
        orders = []
        for _, got, pid in clients:
            events = [got.get(timeout=10) for _ in range(total)]
            assert sorted(e["n"] for e in events) == list(range(total)), pid
            assert {e["pid"] for e in events} == set(run.pids), "both workers published"
            orders.append([e["n"] for e in events])
        assert all(order == orders[0] for order in orders), "one order on both workers"
        time.sleep(0.3)  # a duplicate would have arrived by now
        assert all(got.empty() for _, got, _ in clients)
    finally:
        for client, _, _ in clients:
            client.disconnect()
        run.stop()


def test_fifty_polling_clients_across_workers(two_workers):
    url = f"http://127.0.0.1:{two_workers.port}"

    def session(n: int) -> tuple[str, set[int]]:
        client, events = polling_client()
        client.connect(url, transports=["polling"], wait_timeout=20)
        try:
            pids = set()
            for k in range(3):
                ack = client.call("echo", {"n": n, "k": k}, timeout=20)
                assert ack["data"] == {"n": n, "k": k}
                event = events.get(timeout=20)
                assert event["data"] == {"n": n, "k": k} and event["pid"] == ack["pid"]
                pids.add(ack["pid"])
            return client.eio.sid, pids
        finally:
            client.disconnect()

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(session, range(50)))
    for sid, pids in results:
        # A session lives in one worker, whichever worker each of its requests reached.
        assert len(pids) == 1
        assert re.fullmatch(r"[01]\.[A-Za-z0-9_-]{16}", sid)
        assert int(sid.split(".")[0]) == two_workers.pids.index(next(iter(pids)))
    assert set().union(*(pids for _, pids in results)) == set(two_workers.pids)
    texts = worker_metrics(two_workers.port, two_workers.pids)
    assert set(texts) == set(two_workers.pids)
    sent = sum(counter(t, 'skyrelay_worker_handoffs_total{result="sent"}') for t in texts.values())
    received = sum(counter(t, 'skyrelay_worker_handoffs_total{result="received"}')
                   for t in texts.values())
    failed = sum(counter(t, 'skyrelay_worker_handoffs_total{result="failed"}')
                 for t in texts.values())
    assert sent > 0 and received == sent and failed == 0


def test_large_polling_posts_are_handed_over(two_workers):
    # 100 kB bodies travel beside the connection in a memfd (over the datagram's 32 KiB).
    url = f"http://127.0.0.1:{two_workers.port}"
    blob = os.urandom(100_000)
    for _ in range(6):
        client, _ = polling_client()
        client.connect(url, transports=["polling"], wait_timeout=20)
        try:
            for _ in range(2):
                assert client.call("size", blob, timeout=20)["size"] == len(blob)
        finally:
            client.disconnect()
    texts = worker_metrics(two_workers.port, two_workers.pids)
    assert sum(counter(t, 'skyrelay_worker_handoffs_total{result="failed"}')
               for t in texts.values()) == 0


def test_a_killed_worker_is_restarted_and_sigterm_stops_all(two_workers):
    victim = two_workers.pids[1]
    # A WebSocket client of each worker sees the graceful stop (1001) at the end.
    os.kill(victim, signal.SIGKILL)
    m = two_workers.stderr_line(RESTARTED)
    assert int(m.group(1)) == 1 and int(m.group(2)) == victim and int(m.group(3)) == -9
    replacement = int(m.group(4))
    seen: set[int] = set()
    for _ in range(600):  # at most about a minute: the replacement imports the app first
        try:
            seen.add(health(two_workers.port)["pid"])
        except (ConnectionError, OSError):
            pass
        if seen == {two_workers.pids[0], replacement}:
            break
        time.sleep(0.1)
    assert seen == {two_workers.pids[0], replacement}
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(websockets.sync.client.connect(
            f"ws://127.0.0.1:{two_workers.port}/ws")) for _ in range(4)]
        for ws in clients:
            assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
        two_workers.proc.send_signal(signal.SIGTERM)
        code, _ = two_workers.finish()
        assert code == 0
        for ws in clients:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    for pid in (*two_workers.pids, replacement):
        assert gone(pid)


def test_too_many_restarts_stop_the_supervisor():
    run = Run("workers_app:server", "--port", "0", "--workers", "2", "--allow-memory-broker",
              "--max-restarts", "1").serving()
    try:
        os.kill(run.pids[0], signal.SIGKILL)
        replacement = int(run.stderr_line(RESTARTED).group(4))
        os.kill(replacement, signal.SIGKILL)
        code, err = run.finish()
        assert code == 1
        assert "restarts within a minute already: stopping" in err
        for pid in (*run.pids, replacement):
            assert gone(pid)
    finally:
        run.stop()


def test_one_process_run_and_version():
    run = Run("workers_app:server", "--port", "0").serving()
    try:
        body = health(run.port)
        assert body["status"] == "ok" and body["pid"] != os.getpid() and "worker" not in body
    finally:
        run.stop()
    assert run.proc.returncode == 0
    out = subprocess.run([sys.executable, "-m", "skyrelay.cli", "--version"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == f"skyrelay {skyrelay.__version__}"


def test_run_finds_the_server_of_flask_and_fastapi_apps():
    run = Run("flask_chat_app:app", "--port", "0").serving()
    try:
        # The Flask app's own routes are served on the port too (its WSGI app).
        conn = http.client.HTTPConnection("127.0.0.1", run.port, timeout=10)
        conn.request("GET", "/prices")
        assert json.loads(conn.getresponse().read()) == {"AAPL": 189.5, "MSFT": 411.0}
        conn.close()
        assert health(run.port)["status"] == "ok"
    finally:
        run.stop()
    run = Run("workers_fastapi_app:app", "--port", "0").serving()
    try:
        assert health(run.port)["status"] == "ok"
        # Honest about what it runs: the ASGI routes are not served here.
        assert "skyrelay server only" in run.stderr.get(timeout=10)
    finally:
        run.stop()


@pytest.mark.parametrize("args, message", [
    (["nope_module:server"], "no module named 'nope_module'"),
    (["workers_app:missing"], "module 'workers_app' has no attribute 'missing'"),
    (["workers_app:not_a_server"], "is not a skyrelay.Server (nor a Flask or FastAPI app wrapped by skyrelay) but a object"),
    (["workers_app"], "expected module:attribute"),
    (["workers_app:server", "--workers", "2"], "with the in-memory broker"),
])
def test_user_errors_are_one_line_and_exit_2(args, message):
    code, err = Run(*args, "--port", "0").finish(60)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_one_line_and_exit_2(workers):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = Run("workers_app:server", "--port", str(port), "--workers", workers,
                        "--allow-memory-broker").finish(60)
    assert code == 2
    assert err.strip() == f"skyrelay run: error: port {port} on 127.0.0.1 is in use"
