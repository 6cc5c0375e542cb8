"""Readiness and liveness apart (issue 17 item 6): GET /health/ready and /health/live answer 200
or 503 with each check's detail, and /health keeps answering 200 with "ready" and "live".
Real sockets: an httpx client, a websockets client whose event blocks a sync handler, and a
real redis-server (tests/python/redis_fixture.py) killed and started again.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

import skyrelay
from skyrelay.testing import wait_until

WAIT = 15.0  # bound on every wait for a state to change


def probe(server: skyrelay.Server, path: str) -> tuple[int, dict]:
    r = httpx.get(server.http_url + path, timeout=5)
    return r.status_code, r.json()


def test_probes_answer_200_with_their_checks():
    with skyrelay.Server(port=0) as server:
        status, live = probe(server, "/health/live")
        assert status == 200 and live["status"] == "ok"
        io = live["checks"]["io_threads"]
        assert io["status"] == "ok" and io["threads"] >= 1 and io["stuck"] == 0
        assert io["timeout_s"] == 10.0
        status, ready = probe(server, "/health/ready")
        assert status == 200 and ready["status"] == "ok"
        assert set(ready["checks"]) == {"dispatcher", "broker", "server"}
        assert ready["checks"]["dispatcher"] == {"status": "ok", "queued": 0, "stalled_s": 0.0,
                                                 "timeout_s": 10.0}
        assert ready["checks"]["broker"] == {"status": "ok", "kind": "memory"}
        assert ready["checks"]["server"] == {"status": "ok", "state": "running"}
        # The old route: still 200 with its fields, plus the two verdicts.
        status, health = probe(server, "/health")
        assert status == 200 and health["status"] == "ok"
        assert health["ready"] is True and health["live"] is True
        assert "uptime_s" in health and "connections" in health
        assert server.readiness() == (True, ready)


def test_probe_paths_move_or_turn_off():
    with skyrelay.Server(port=0, liveness_path="/livez", readiness_path=None) as server:
        assert probe(server, "/livez")[0] == 200
        assert httpx.get(server.http_url + "/health/ready").status_code == 404
        assert httpx.get(server.http_url + "/health/live").status_code == 404
        assert probe(server, "/health")[0] == 200
    with pytest.raises(ValueError):
        skyrelay.Server(port=0, dispatcher_stall_timeout=0)


def test_a_blocked_sync_handler_fails_readiness_not_liveness():
    release = threading.Event()
    entered = threading.Event()
    server = skyrelay.Server(port=0, dispatcher_stall_timeout=0.5)

    @server.on("block")
    def block(conn, data):
        entered.set()
        release.wait(WAIT)  # bounded: the test releases it long before

    @server.on("after")
    def after(conn, data):
        pass

    server.start()
    try:
        with ws_connect(server.url) as ws:
            json.loads(ws.recv())  # welcome
            ws.send(json.dumps({"type": "event", "event": "block", "data": {}}))
            assert entered.wait(WAIT)
            # Running, nothing waiting: not wedged yet.
            assert probe(server, "/health/ready")[0] == 200
            ws.send(json.dumps({"type": "event", "event": "after", "data": {}}))
            assert wait_until(lambda: probe(server, "/health/ready")[0] == 503, WAIT)
            status, ready = probe(server, "/health/ready")
            dispatcher = ready["checks"]["dispatcher"]
            assert ready["status"] == "fail" and dispatcher["status"] == "fail"
            assert dispatcher["queued"] == 1 and dispatcher["stalled_s"] >= 0.5
            assert ready["checks"]["broker"]["status"] == "ok"
            # The I/O threads answer all along: alive, and /health says so with 200.
            assert probe(server, "/health/live")[0] == 200
            status, health = probe(server, "/health")
            assert status == 200 and health["status"] == "degraded"
            assert health["ready"] is False and health["live"] is True
            release.set()
            assert wait_until(lambda: probe(server, "/health/ready")[0] == 200, WAIT)
            assert probe(server, "/health")[1]["status"] == "ok"
    finally:
        release.set()
        server.stop()


def test_readiness_fails_while_the_server_drains():
    server = skyrelay.Server(port=0, drain_timeout=3.0)
    server.start()
    stopper = None
    try:
        # A WebSocket that never answers the close frame holds the drain for drain_timeout.
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        raw.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    b"Sec-WebSocket-Version: 13\r\n\r\n")
        assert b"101" in raw.recv(4096)
        with httpx.Client(base_url=server.http_url, timeout=5) as http:
            assert http.get("/health/ready").status_code == 200  # keep-alive connection
            stopper = threading.Thread(target=server.stop)
            stopper.start()
            assert wait_until(lambda: not server.running, WAIT)
            r = http.get("/health/ready")
            assert r.status_code == 503
            assert r.json()["checks"]["server"] == {"status": "fail", "state": "stopping"}
        raw.close()
    finally:
        if stopper is not None:
            stopper.join(WAIT)
        server.stop()


def test_a_killed_redis_fails_readiness_until_it_is_back(redis_server):
    with skyrelay.Server(port=0, broker=redis_server.url) as server:
        assert wait_until(lambda: probe(server, "/health/ready")[0] == 200, WAIT)
        assert probe(server, "/health/ready")[1]["checks"]["broker"]["kind"] == "redis"
        redis_server.stop()
        assert wait_until(lambda: probe(server, "/health/ready")[0] == 503, WAIT)
        status, ready = probe(server, "/health/ready")
        broker = ready["checks"]["broker"]
        assert broker["status"] == "fail" and broker["reason"]
        assert ready["checks"]["dispatcher"]["status"] == "ok"
        assert probe(server, "/health/live")[0] == 200  # Redis is no reason to restart
        redis_server.restart()
        t0 = time.monotonic()
        assert wait_until(lambda: probe(server, "/health/ready")[0] == 200, WAIT)
        assert time.monotonic() - t0 < WAIT
