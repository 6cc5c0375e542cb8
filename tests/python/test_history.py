"""History and replay over the JSON protocol: `subscribe` with `since` and `epoch`.

The continuity rule: a client that comes back within the history window receives exactly the
events it missed, in order and without duplicates; otherwise its `subscribed` reply says
`recovered: false` with a `reset` reason, and it knows it must reload. Never a silent gap.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

import skyrelay
from skyrelay.testing import metric, wait_until


def drain_seqs(client, event, until_seq, timeout=10.0):
    """Reads `event` frames until seq `until_seq`; returns the seqs seen."""
    seqs = []
    deadline = time.monotonic() + timeout
    while not seqs or seqs[-1] < until_seq:
        assert time.monotonic() < deadline, f"stuck at {seqs[-1:]} waiting for {until_seq}"
        seqs.append(client.expect_event(event)["seq"])
    return seqs


def left_while(server, skyrelay_client, missed: int):
    """A client subscribes to "w" and leaves; `missed` events "t" go to "w" while it is away.
    Returns a new client (not subscribed yet) and the epoch the first one was given."""
    c = skyrelay_client(server)
    epoch = c.subscribe("w")["epoch"]
    c.close()
    for i in range(missed):
        server.emit("t", i, to="w")
    return skyrelay_client(server), epoch


def test_coming_back_replays_exactly_the_missed_events(skyrelay_server, skyrelay_client):
    first = skyrelay_client()
    reply = first.subscribe("well")
    epoch = reply["epoch"]
    for i in range(1, 4):
        skyrelay_server.emit("t", {"i": i}, to="well")
    assert drain_seqs(first, "t", 3) == [1, 2, 3]
    first.close()

    for i in range(4, 9):  # published while the client is away
        skyrelay_server.emit("t", {"i": i}, to="well")

    back = skyrelay_client()
    reply = back.subscribe("well", since=3, epoch=epoch)
    assert reply["recovered"] is True
    assert (reply["seq"], reply["epoch"]) == (8, epoch)
    assert "reset" not in reply
    replayed = [back.expect_event("t") for _ in range(5)]
    assert [f["seq"] for f in replayed] == [4, 5, 6, 7, 8]
    assert [f["data"]["i"] for f in replayed] == [4, 5, 6, 7, 8]
    assert all(f["topic"] == "well" and f["ts"] for f in replayed)
    skyrelay_server.emit("t", {"i": 9}, to="well")
    assert back.expect_event("t")["seq"] == 9  # live follows the replay, nothing repeated
    back.expect_nothing(0.2, "event")


def test_up_to_date_client_gets_no_replay(skyrelay_server, skyrelay_client):
    c = skyrelay_client()
    epoch = c.subscribe("w")["epoch"]
    skyrelay_server.emit("t", 1, to="w")
    assert c.expect_event("t")["seq"] == 1
    reply = c.subscribe("w", since=1, epoch=epoch)
    assert (reply["recovered"], reply["seq"]) == (True, 1)
    c.expect_nothing(0.2, "event")


def test_lost_history_is_an_explicit_reset(skyrelay_server_factory, skyrelay_client):
    server = skyrelay_server_factory(history_size=5)
    back, epoch = left_while(server, skyrelay_client, missed=20)
    reply = back.subscribe("w", since=0, epoch=epoch)
    assert reply["recovered"] is False
    assert reply["reset"] == "history_gap"
    assert reply["seq"] == 20
    back.expect_nothing(0.2, "event")  # no partial replay
    server.emit("t", 20, to="w")
    assert back.expect_event("t")["seq"] == 21
    # The last 5 (17..21) are still there for a client that saw seq 16, not for one at 15.
    other = skyrelay_client(server)
    assert other.subscribe("w", since=15, epoch=epoch)["reset"] == "history_gap"
    reply = other.subscribe("w", since=16, epoch=epoch)
    assert reply["recovered"] is True
    assert drain_seqs(other, "t", 21) == [17, 18, 19, 20, 21]


def test_history_expires_by_age(skyrelay_server_factory, skyrelay_client):
    server = skyrelay_server_factory(history_ttl=0.3)
    c = skyrelay_client(server)
    epoch = c.subscribe("w")["epoch"]
    server.emit("t", 1, to="w")
    assert c.expect_event("t")["seq"] == 1
    server.emit("t", 2, to="w")
    assert metric(server, "skyrelay_history_entries") == 2
    wait_until(lambda: metric(server, "skyrelay_history_entries") == 0, timeout=5)
    reply = c.subscribe("w", since=1, epoch=epoch)
    assert (reply["recovered"], reply["reset"]) == (False, "history_gap")


def test_another_epoch_is_a_reset(skyrelay_server_factory, skyrelay_client):
    """A restarted server numbers its topics afresh: an old seq means nothing there."""
    old = skyrelay_server_factory()
    c = skyrelay_client(old)
    epoch = c.subscribe("w")["epoch"]
    old.emit("t", 1, to="w")
    old.stop()
    new = skyrelay_server_factory()
    new.emit("t", 1, to="w")
    new.emit("t", 2, to="w")
    back = skyrelay_client(new)
    reply = back.subscribe("w", since=1, epoch=epoch)
    assert reply["recovered"] is False
    assert reply["reset"] == "epoch_changed"
    assert reply["epoch"] != epoch and reply["seq"] == 2


def test_a_seq_from_the_future_is_a_reset(skyrelay_server, skyrelay_client):
    c = skyrelay_client()
    epoch = c.subscribe("w")["epoch"]
    reply = c.subscribe("w", since=5, epoch=epoch)
    assert (reply["recovered"], reply["reset"], reply["seq"]) == (False, "ahead", 0)


def test_replay_larger_than_the_outbox_is_a_reset(skyrelay_server_factory, skyrelay_client):
    server = skyrelay_server_factory(outbox_max_frames=64)
    back, epoch = left_while(server, skyrelay_client, missed=100)
    reply = back.subscribe("w", since=0, epoch=epoch)
    assert (reply["recovered"], reply["reset"]) == (False, "history_gap")
    assert back.ping()["type"] == "pong"  # still connected, not cut as a slow consumer
    # A shorter replay fits.
    reply = back.subscribe("w", since=60, epoch=epoch)
    assert reply["recovered"] is True
    assert drain_seqs(back, "t", 100) == list(range(61, 101))


def test_resume_needs_one_topic_and_its_epoch(skyrelay_server, skyrelay_client):
    c = skyrelay_client()
    c.send({"type": "subscribe", "topics": ["a", "b"], "since": 1, "epoch": "x", "id": 1})
    err = c.expect_frame("error")
    assert (err["code"], err["ref"]) == ("bad_message", 1)
    c.send({"type": "subscribe", "topic": "a", "since": 1, "id": 2})
    err = c.expect_frame("error")
    assert err["code"] == "bad_message" and "epoch" in err["message"]
    assert skyrelay_server.rooms(c.sid) == []


def test_events_to_several_rooms_or_everyone_are_not_in_a_topics_sequence(skyrelay_server,
                                                                          skyrelay_client):
    c = skyrelay_client()
    epoch = c.subscribe("w")["epoch"]
    c.close()
    skyrelay_server.emit("one", 1, to="w")
    skyrelay_server.emit("two-rooms", 2, to=["w", "v"])
    skyrelay_server.emit("everyone", 3)
    skyrelay_server.emit("one", 4, to="w")
    back = skyrelay_client()
    assert back.subscribe("w", since=0, epoch=epoch)["recovered"] is True
    got = [back.expect_frame("event") for _ in range(2)]
    assert [(f["event"], f["seq"]) for f in got] == [("one", 1), ("one", 2)]
    back.expect_nothing(0.2, "event")


def test_recovery_window_longer_than_history_is_refused():
    with pytest.raises(ValueError, match="history"):
        skyrelay.Server(port=0, recovery_window=300, history_ttl=120)
    with pytest.raises(ValueError, match="history"):
        skyrelay.Server(port=0, recovery_window=10, history_size=0)


def test_subscribers_that_come_and_go_under_load_see_every_seq_once(skyrelay_server_factory,
                                                                   skyrelay_client):
    """A publisher streams to a topic while clients drop and come back at random moments,
    resuming from the last seq they saw: each ends with exactly 1..N."""
    # Room for every backlog: a client reads its events slowly, one at a time, here.
    server = skyrelay_server_factory(history_size=4000, outbox_max_frames=8192)
    total = 3000
    done = threading.Event()

    def publish():
        for i in range(total):
            server.emit("t", i, to="w")
            if i % 10 == 0:
                time.sleep(0.002)
        done.set()

    rng = random.Random(7)
    publisher = threading.Thread(target=publish)
    clients = 3
    seen = {k: [] for k in range(clients)}
    positions = {}
    for k in range(clients):
        c = skyrelay_client(server)
        positions[k] = (c, 0, c.subscribe("w")["epoch"])
    publisher.start()
    deadline = time.monotonic() + 60
    try:
        while not done.is_set() and time.monotonic() < deadline:
            k = rng.randrange(clients)
            c, last, epoch = positions[k]
            # Read a few events, then drop without unsubscribing.
            for _ in range(rng.randrange(1, 40)):
                f = c.expect_event("t")
                seen[k].append(f["seq"])
            c.close()
            time.sleep(rng.uniform(0, 0.02))
            c = skyrelay_client(server)
            reply = c.subscribe("w", since=seen[k][-1], epoch=epoch)
            assert reply["recovered"] is True, reply
            positions[k] = (c, seen[k][-1], epoch)
    finally:
        publisher.join(timeout=60)
    assert done.is_set()
    for k in range(clients):
        c = positions[k][0]
        while not seen[k] or seen[k][-1] < total:
            seen[k].append(c.expect_event("t")["seq"])
        assert seen[k] == list(range(1, total + 1)), k
