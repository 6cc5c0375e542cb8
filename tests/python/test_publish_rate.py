"""The publish API's budget per publisher on one process (``Server(publish_rate=...)``); the
budget shared by several nodes is in test_redis_state.py."""

from __future__ import annotations

import httpx
import pytest

from skyrelay import Server
from skyrelay.testing import metric

TOKEN = "rate-t0ken"


@pytest.fixture
def server():
    srv = Server(port=0, publish_token=TOKEN, publish_rate=(0.001, 3))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def publish(server: Server, body: dict) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{server.port}/api/publish", json=body, timeout=10,
                      headers={"Authorization": f"Bearer {TOKEN}"})


def test_a_publisher_over_its_budget_gets_429_and_publishes_nothing(server):
    assert publish(server, {"event": "a"}).status_code == 200
    assert publish(server, {"events": [{"event": "b"}, {"event": "c"}]}).status_code == 200
    before = metric(server, "skyrelay_publications_total")
    refused = publish(server, {"event": "d"})
    assert refused.status_code == 429
    body = refused.json()
    assert body["error"] == "rate_limited" and body["retry_after"] > 900  # 1 event at 0.001/s
    assert int(refused.headers["Retry-After"]) >= 900
    assert metric(server, "skyrelay_publications_total") == before
    assert metric(server, "skyrelay_publish_rate_limited_total") == 1
    # A refused request with a bad token is a 401, not counted against the budget.
    bad = httpx.post(f"http://127.0.0.1:{server.port}/api/publish", json={"event": "x"},
                     headers={"Authorization": "Bearer nope"}, timeout=10)
    assert bad.status_code == 401
    assert metric(server, "skyrelay_publish_rate_limited_total") == 1


def test_a_batch_larger_than_the_burst_needs_a_full_bucket(server):
    big = {"events": [{"event": "e"}] * 10}
    assert publish(server, big).status_code == 200  # costs the whole burst (3), not 10
    assert publish(server, {"event": "e"}).status_code == 429


def test_no_budget_by_default_and_bad_settings_are_refused():
    srv = Server(port=0, publish_token=TOKEN)
    srv.start()
    try:
        for _ in range(30):
            assert publish(srv, {"event": "e"}).status_code == 200
        assert srv.cluster() is None and "cluster" not in srv.health()  # one process
    finally:
        srv.stop()
    with pytest.raises(ValueError):
        Server(publish_rate=(0, 5))
    with pytest.raises(ValueError):
        Server(publish_rate=(1, 0.5))
    with pytest.raises(TypeError):
        Server(publish_rate=5)
    with pytest.raises(ValueError):
        Server(cluster_state_ttl=0.1)
