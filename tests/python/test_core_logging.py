"""The C++ core's log records through Python's logging (issue 17 item 6): a connection's life,
refusals and limits, captured with a real logging.Handler on the `skyrelay.core` loggers while
real clients (websockets, httpx, python-socketio) connect over 127.0.0.1. Also: overflow of the
bounded queue is counted on /metrics, and a logger at WARNING gets (and costs) no info record.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import httpx
import jwt as pyjwt
import pytest
import socketio
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from fromaddr import ws_open, xff

import skyrelay
from skyrelay.testing import wait_until

WAIT = 10.0


class Capture(logging.Handler):
    """Keeps every record it is handed; `gate`, when set, holds emit() until it opens."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.lock_ = threading.Lock()
        self.gate: threading.Event | None = None
        self.blocked = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.gate is not None and not self.gate.is_set():
            self.blocked.set()
            self.gate.wait(WAIT)
        with self.lock_:
            self.records.append(record)

    def events(self, event: str) -> list[logging.LogRecord]:
        with self.lock_:
            return [r for r in self.records if getattr(r, "event", None) == event]

    def wait_for(self, event: str, n: int = 1, **fields) -> list[logging.LogRecord]:
        def found() -> list[logging.LogRecord]:
            return [r for r in self.events(event)
                    if all(getattr(r, k, None) == v for k, v in fields.items())]
        assert wait_until(lambda: len(found()) >= n, WAIT), (event, fields, self.records)
        return found()


@pytest.fixture
def capture():
    logger = logging.getLogger("skyrelay.core")
    handler = Capture()
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # keep pytest's own capture out of the counts
    yield handler
    if handler.gate is not None:
        handler.gate.set()
    logger.removeHandler(handler)
    logger.setLevel(old_level)
    logger.propagate = old_propagate


def metric(server: skyrelay.Server, name: str) -> float:
    for line in httpx.get(server.http_url + "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not on /metrics")


def test_a_websocket_connection_logs_open_and_close(capture):
    with skyrelay.Server(port=0) as server:
        with ws_connect(server.url) as ws:
            sid = json.loads(ws.recv())["sid"]
            local_port = ws.socket.getsockname()[1]
            ws.close(code=1000, reason="bye")
        opened = capture.wait_for("connection_open", sid=sid)[0]
        assert opened.name == "skyrelay.core.connection" and opened.levelno == logging.INFO
        assert opened.transport == "websocket"
        assert opened.remote == f"127.0.0.1:{local_port}"
        assert opened.getMessage().startswith(f"connection_open sid={sid} transport=websocket")
        assert abs(opened.created - time.time()) < WAIT  # the core's time, not 1970
        closed = capture.wait_for("connection_close", sid=sid)[0]
        assert closed.code == 1000 and closed.reason == "client_close"
        assert closed.created >= opened.created


def test_sse_and_socketio_connections_log_their_transport(capture):
    with skyrelay.Server(port=0, client_topics="*") as server:
        with httpx.stream("GET", server.http_url + "/sse/news", timeout=5) as r:
            assert r.status_code == 200
            capture.wait_for("connection_open", transport="sse")
        capture.wait_for("connection_close", transport="sse")
        client = socketio.Client()
        client.connect(server.http_url, transports=["websocket"], wait_timeout=5)
        try:
            opened = capture.wait_for("connection_open", transport="socketio")[0]
            assert opened.remote.startswith("127.0.0.1:")
        finally:
            client.disconnect()
        capture.wait_for("connection_close", transport="socketio")


def test_an_auth_refusal_is_logged(capture):
    secret = b"s" * 32
    auth = skyrelay.JWTAuth([skyrelay.JWTKey.hmac("k1", secret, ["HS256"])], required=True)
    with skyrelay.Server(port=0, jwt=auth) as server:
        with pytest.raises(InvalidStatus):
            ws_connect(server.url + "?token=not-a-jwt", open_timeout=5)
        refused = capture.wait_for("auth_refused")[0]
        assert refused.name == "skyrelay.core.auth" and refused.levelno == logging.INFO
        assert refused.status == 401 and refused.remote.startswith("127.0.0.1:")
        assert refused.path == "/ws"  # never the query string: it carries the token
        assert "not-a-jwt" not in refused.getMessage()
        assert refused.code  # the refusal's stable code
        claims = {"sub": "ada", "typ": "connect", "exp": int(time.time()) + 60}
        token = pyjwt.encode(claims, secret, algorithm="HS256", headers={"kid": "k1"})
        with ws_connect(server.url + "?token=" + token, open_timeout=5) as ws:
            json.loads(ws.recv())
        assert len(capture.events("auth_refused")) == 1


def test_an_origin_refusal_is_logged(capture):
    with skyrelay.Server(port=0) as server:
        with pytest.raises(InvalidStatus):
            ws_connect(server.url, origin="http://evil.example", open_timeout=5)
        refused = capture.wait_for("auth_refused", code="origin_not_allowed")[0]
        assert refused.status == 403


def test_a_rate_limit_hit_logs_once_per_run(capture):
    with skyrelay.Server(port=0, inbound_rate=1.0, inbound_burst=2.0) as server:
        with ws_connect(server.url) as ws:
            sid = json.loads(ws.recv())["sid"]
            for _ in range(12):
                ws.send(json.dumps({"type": "event", "event": "noise", "data": {}}))
            errors = 0
            while errors < 9:  # about 10 refused (burst 2), each answered with an error
                if json.loads(ws.recv(timeout=5)).get("code") == "rate_limited":
                    errors += 1
            hit = capture.wait_for("rate_limited", sid=sid)[0]
            assert hit.name == "skyrelay.core.limits" and hit.levelno == logging.WARNING
            assert hit.event == "rate_limited" and hit.field_event == "noise"
            assert hit.retry_after_ms > 0
            time.sleep(0.3)  # anything else the pump has would be here by now
            assert len(capture.events("rate_limited")) == 1  # one record, not ten


def test_log_queue_overflow_is_dropped_and_counted(capture):
    capture.gate = threading.Event()  # the handler blocks: the pump stops draining
    with skyrelay.Server(port=0, log_queue_max=4) as server:
        with ws_connect(server.url) as ws:
            json.loads(ws.recv())
        assert capture.blocked.wait(WAIT)  # the pump sits in the handler with its batch
        for _ in range(12):
            with ws_connect(server.url) as ws:
                json.loads(ws.recv())
        # 24 more records (open and close each) for a queue of 4; the first connection's
        # close may sit in the pump's batch or in the queue.
        assert wait_until(lambda: metric(server, "skyrelay_log_records_dropped_total") >= 20,
                          WAIT)
        assert metric(server, "skyrelay_log_records_queued") == 4
        dropped = metric(server, "skyrelay_log_records_dropped_total")
        capture.gate.set()
        assert wait_until(lambda: metric(server, "skyrelay_log_records_queued") == 0, WAIT)
        # Other clients never noticed: the server still serves.
        with ws_connect(server.url) as ws:
            assert json.loads(ws.recv())["type"] == "welcome"
    # Everything not dropped was logged, once: 26 records in all, before the last client.
    logged = [r for r in capture.records[:] if r.event.startswith("connection_")]
    assert len(logged) - 2 == 26 - dropped


def test_a_logger_at_warning_gets_no_info_records(capture):
    logging.getLogger("skyrelay.core").setLevel(logging.WARNING)
    with skyrelay.Server(port=0, log_queue_max=1) as server:
        queue = server._core.log_queue
        assert queue.level("skyrelay.core.connection") == logging.WARNING
        for _ in range(5):
            with ws_connect(server.url) as ws:
                json.loads(ws.recv())
        time.sleep(0.5)
        # Not logged, and not even built: nothing was queued, so nothing overflowed the
        # one-record queue.
        assert capture.events("connection_open") == []
        assert metric(server, "skyrelay_log_records_dropped_total") == 0
        # Levels follow Python's at run time.
        logging.getLogger("skyrelay.core").setLevel(logging.INFO)
        assert wait_until(lambda: queue.level("skyrelay.core.connection") == logging.INFO, WAIT)
        with ws_connect(server.url) as ws:
            json.loads(ws.recv())
        capture.wait_for("connection_open")


def test_a_refusal_behind_a_trusted_proxy_is_logged_with_its_client(capture):
    # A client refused once its proxy's header named it: the same warning as a refusal at
    # accept, with the client's address (not the proxy's).
    with skyrelay.Server(port=0, trusted_proxies=["127.0.0.1"], max_connections_per_ip=1,
                         client_topics="*") as server:
        held, status, _ = ws_open(server.port, "127.0.0.1", xff("203.0.113.9"))
        assert status == 101
        refused_socket, status, _ = ws_open(server.port, "127.0.0.1", xff("203.0.113.9"))
        assert status == 503
        refused = capture.wait_for("connection_refused")[0]
        assert refused.name == "skyrelay.core.limits" and refused.levelno == logging.WARNING
        assert refused.remote == "203.0.113.9:0"
        assert refused.limit == "connections_per_ip"
        held.close()
        refused_socket.close()


def _wakeups(tid: int) -> int:
    with open(f"/proc/self/task/{tid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches")


def test_an_idle_servers_log_pump_sleeps_until_its_level_sync(capture):
    # It used to poll the queue every 100 ms (ten wake-ups a second on a server with nothing to
    # log); now it sleeps until its half-second level sync unless a record wakes it.
    with skyrelay.Server(port=0) as server:
        pump = server._log_pump
        assert pump is not None and pump._thread is not None
        tid = pump._thread.native_id
        assert tid is not None
        time.sleep(0.3)
        before = _wakeups(tid)
        time.sleep(2.0)
        woken = _wakeups(tid) - before
        assert woken <= 7, woken  # two a second, and a margin; the 100 ms poll made ~20
        # and a record still arrives while it sleeps: the first one wakes it
        with ws_connect(server.url) as ws:
            sid = json.loads(ws.recv())["sid"]
            capture.wait_for("connection_open", sid=sid)
