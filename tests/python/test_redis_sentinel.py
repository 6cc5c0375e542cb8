"""The Redis broker behind Sentinel (`redis+sentinel://`), with real processes on 127.0.0.1: a
master, a replica (--replicaof) and one sentinel (quorum 1, down-after 1000 ms). Two nodes find
the master through the sentinel (the URL names a dead sentinel first: it is skipped); the master
is killed with SIGKILL; the sentinel promotes the replica; the nodes ask again, reconnect to the
new master, and publishing works again. Events published meanwhile are refused (503) or
delivered; the client ends with every accepted event once and in order."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from redis_fixture import _free_port
from test_redis_broker import WAIT, JsonClient, Node, follow, started  # noqa: F401

FAILOVER_WAIT = 30.0  # bound on the failover and the nodes' return (not a speed assertion)


def _command(port: int, *parts: str) -> bytes:
    """One RESP command on a plain socket; the reply's bytes as far as one read gets them."""
    payload = b"*%d\r\n" % len(parts) + b"".join(
        b"$%d\r\n%s\r\n" % (len(p.encode()), p.encode()) for p in parts)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        return s.recv(65536)


def _wait_for(predicate, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_nodes_follow_the_master_through_a_failover(redis_server_factory,
                                                    redis_sentinel_factory, started):
    master = redis_server_factory()
    replica = redis_server_factory("--replicaof", "127.0.0.1", str(master.port))
    _wait_for(lambda: b"master_link_status:up" in _command(replica.port, "INFO", "replication"),
              "the replica's link")
    sentinel = redis_sentinel_factory(master)
    _wait_for(lambda: str(replica.port).encode() in _command(sentinel.port, "SENTINEL",
                                                             "replicas", "mymaster"),
              "the sentinel to know the replica")
    dead = _free_port()  # nothing listens there: the nodes go on to the next sentinel
    url = f"redis+sentinel://127.0.0.1:{dead},127.0.0.1:{sentinel.port}/mymaster/0"
    a, b = Node(url), Node(url)
    started += [a, b]
    for node in (a, b):
        _wait_for(lambda: node.health()["status"] == "ok", "the node to find the master")
    client = JsonClient(b.port)
    client.subscribe("fo")
    follow(a, client, "fo")
    accepted = []
    for i in range(10):
        assert a.publish("tick", i, to="fo").status_code == 200
        accepted.append(i)
    assert _command(master.port, "WAIT", "1", "2000") == b":1\r\n"  # the replica has them

    os.kill(master.pid, signal.SIGKILL)
    refused = 0
    after = 0  # accepted since the failover
    deadline = time.monotonic() + FAILOVER_WAIT
    i = 10
    while after < 10:
        assert time.monotonic() < deadline, "the nodes did not publish again after the failover"
        r = a.publish("tick", i, to="fo")
        if r.status_code == 200:
            accepted.append(i)
            after += refused > 0
        else:
            assert r.status_code == 503 and r.json()["error"] == "broker_unavailable"
            refused += 1
            time.sleep(0.05)
        i += 1
    assert refused > 0  # the failover was seen: publishes were refused while it ran
    assert b"master" in _command(replica.port, "ROLE")  # promoted; the nodes publish there
    got = client.collect(lambda ev: {e["data"] for e in ev if e["event"] == "tick"}
                         >= set(accepted))
    ticks = [e["data"] for e in got if e["event"] == "tick"]
    assert ticks == sorted(set(ticks))  # once each, in order
    assert set(accepted) <= set(ticks)
    for node in (a, b):
        assert node.health()["status"] == "ok"
    client.close()


def test_an_unknown_master_name_is_a_clear_degraded_reason(redis_server_factory,
                                                         redis_sentinel_factory, started):
    master = redis_server_factory()
    sentinel = redis_sentinel_factory(master)
    node = Node(f"redis+sentinel://127.0.0.1:{sentinel.port}/no-such-master")
    started.append(node)
    _wait_for(lambda: "sentinel" in node.health()["broker"].get("reason", ""),
              "a reason naming the sentinel")
    health = node.health()
    assert health["status"] == "degraded"
    assert "no-such-master" in health["broker"]["reason"]
    assert node.publish("x", 1, to="room").status_code == 503
