"""Publishing through the Redis broker without waiting for Redis on the I/O thread: a real
redis-server (the fixture's), a real skyrelay server in this process, real HTTP clients.

- While Redis is stalled (SIGSTOP), a publish API request waits for its receipt, and the same
  node's only I/O thread goes on answering /health; when Redis goes on, the receipt carries
  Redis's seq.
- The queue of publications waiting for Redis is bounded (``?publish_queue=``): one more is
  answered 503 ``broker_busy`` at once and counted on /metrics; Python's ``emit`` waits for a
  place instead; the ones that waited land, in order.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest

import skyrelay

TOKEN = "pub-t0ken"
WAIT = 15.0  # bound on every wait (not a speed assertion)


def _publish(port: int, event: str, to: str) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{port}/api/publish", json={"event": event, "to": to},
                      headers={"Authorization": f"Bearer {TOKEN}"}, timeout=WAIT)


def _metric(port: int, name: str) -> float:
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not on /metrics")


def _wait_up(server: skyrelay.Server) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if httpx.get(f"http://127.0.0.1:{server.port}/health", timeout=5).json()["status"] == "ok":
            return
        time.sleep(0.02)
    pytest.fail("the node never reached redis")


def _wait(pred, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not pred():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def stalled_node(redis_server):
    """A node with one I/O thread and a publish queue of 2, and a way to stall its Redis."""
    server = skyrelay.Server(port=0, broker=redis_server.url + "?publish_queue=2",
                             publish_token=TOKEN, io_threads=1)
    server.start()
    stopped = []

    def stall() -> None:
        os.kill(redis_server.pid, signal.SIGSTOP)
        stopped.append(True)

    def resume() -> None:
        os.kill(redis_server.pid, signal.SIGCONT)
        stopped.clear()

    try:
        _wait_up(server)
        yield server, stall, resume
    finally:
        if stopped:
            os.kill(redis_server.pid, signal.SIGCONT)
        server.stop()


def test_io_thread_answers_while_a_publish_waits_for_redis(stalled_node):
    server, stall, resume = stalled_node
    assert _publish(server.port, "e", "room").json()["published"]["seq"] == 1
    stall()
    answers: list[httpx.Response] = []
    waiting = threading.Thread(target=lambda: answers.append(_publish(server.port, "e", "room")))
    waiting.start()
    _wait(lambda: _metric(server.port, "skyrelay_broker_redis_pending_publications") == 1,
          "the publication to be queued")
    # The one I/O thread is free: it serves /health while the publish waits for Redis.
    health = httpx.get(f"http://127.0.0.1:{server.port}/health", timeout=5)
    assert health.status_code == 200
    assert not answers
    resume()
    waiting.join(WAIT)
    assert answers and answers[0].status_code == 200
    receipt = answers[0].json()["published"]
    assert (receipt["topic"], receipt["seq"]) == ("room", 2)
    assert receipt["epoch"]


def test_full_publish_queue_is_answered_503_broker_busy(stalled_node):
    server, stall, resume = stalled_node
    stall()
    answers: dict[int, httpx.Response] = {}
    threads = []
    for i in range(2):
        t = threading.Thread(target=lambda i=i: answers.__setitem__(
            i, _publish(server.port, f"e{i}", "room")))
        t.start()
        threads.append(t)
        # One at a time, so their order is known.
        _wait(lambda: _metric(server.port, "skyrelay_broker_redis_pending_publications") == i + 1,
              "the publication to be queued")
    refused = _publish(server.port, "e2", "room")
    assert refused.status_code == 503
    assert refused.json()["error"] == "broker_busy"
    assert "0 of 1 events were published" in refused.json()["message"]
    assert _metric(server.port, "skyrelay_broker_redis_publish_refused_total") == 1
    # emit has no receipt to wait for, but waits for a place in the full queue (flow control,
    # up to 5 s, then BrokerUnavailable); it returns once Redis goes on.
    emitted = threading.Event()
    emitter = threading.Thread(target=lambda: (server.emit("e3", 1, to="room"), emitted.set()))
    emitter.start()
    assert not emitted.wait(0.05)
    resume()
    for t in [*threads, emitter]:
        t.join(WAIT)
    assert emitted.is_set()
    assert [answers[i].json()["published"]["seq"] for i in range(2)] == [1, 2]
    assert _publish(server.port, "e4", "room").json()["published"]["seq"] == 4
    _wait(lambda: _metric(server.port, "skyrelay_broker_redis_pending_publications") == 0,
          "the queue to empty")


def test_batch_past_the_queue_bound_says_how_many_were_published(stalled_node):
    """A batch is not atomic: with 2 places, a batch of 3 sends 2, is refused the third, and
    answers once the 2 have their outcome, saying so; nothing after the refusal is sent."""
    server, stall, resume = stalled_node
    stall()
    answers: list[httpx.Response] = []
    body = {"events": [{"event": f"b{i}", "to": "room"} for i in range(3)]}
    sender = threading.Thread(target=lambda: answers.append(httpx.post(
        f"http://127.0.0.1:{server.port}/api/publish", json=body, timeout=WAIT,
        headers={"Authorization": f"Bearer {TOKEN}"})))
    sender.start()
    _wait(lambda: _metric(server.port, "skyrelay_broker_redis_publish_refused_total") == 1,
          "the third event to be refused")
    assert not answers  # the two sent wait for Redis
    resume()
    sender.join(WAIT)
    assert answers[0].status_code == 503
    assert answers[0].json()["error"] == "broker_busy"
    assert answers[0].json()["message"].startswith("2 of 3 events were published")
    assert _publish(server.port, "after", "room").json()["published"]["seq"] == 3
