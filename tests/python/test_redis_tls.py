"""The Redis broker over TLS (`rediss://`), against a real redis-server that speaks TLS only
(redis_fixture.py's ``tls=True``): two nodes publish and deliver over it; mutual TLS; and the
refusals, each with a clear /health reason: a CA that did not sign the server's certificate, a
name the certificate does not carry, a missing client certificate, plaintext to a TLS port, and
a CA file that does not exist (refused at start)."""

from __future__ import annotations

import time

import pytest

import skyrelay
from test_redis_broker import WAIT, JsonClient, Node, follow, started  # noqa: F401


def _node(started: list[Node], url: str) -> Node:
    node = Node(url)
    started.append(node)
    return node


def _settled(node: Node) -> dict:
    """/health once the broker connected, or after WAIT with its last reason."""
    deadline = time.monotonic() + WAIT
    health = node.health()
    while health["status"] != "ok" and time.monotonic() < deadline:
        time.sleep(0.05)
        health = node.health()
    return health


def _refused(node: Node) -> str:
    """The broker's /health reason once the node tried to connect (it never gets ok)."""
    deadline = time.monotonic() + WAIT
    health = node.health()
    while ("reason" not in health["broker"] or health["broker"]["reason"].startswith(
            "connecting")) and time.monotonic() < deadline:
        time.sleep(0.05)
        health = node.health()
    assert health["status"] == "degraded"
    r = node.publish("x", 1, to="room")
    assert r.status_code == 503 and r.json()["error"] == "broker_unavailable"
    return health["broker"]["reason"]


def test_two_nodes_publish_and_deliver_over_tls(redis_server_factory, started):
    server = redis_server_factory(tls=True)  # --port 0: nothing but TLS is served
    assert server.url.startswith("rediss://")
    a, b = _node(started, server.url), _node(started, server.url)
    assert _settled(a)["status"] == "ok" and _settled(b)["status"] == "ok"
    client = JsonClient(b.port)
    client.subscribe("tls-room")
    follow(a, client, "tls-room")
    for i in range(20):
        assert a.publish("tick", i, to="tls-room").status_code == 200
    got = client.collect(lambda ev: sum(e["event"] == "tick" for e in ev) == 20)
    assert [e["data"] for e in got if e["event"] == "tick"] == list(range(20))
    client.close()


def test_mutual_tls_needs_the_client_certificate(redis_server_factory, started):
    server = redis_server_factory(tls="mutual")
    assert "cert=" in server.url
    good = _node(started, server.url)
    assert _settled(good)["status"] == "ok"
    assert good.publish("x", 1, to="room").status_code == 200
    without = _node(started, f"rediss://127.0.0.1:{server.port}/0?ca={server.pki.ca}")
    reason = _refused(without)
    assert "certificate required" in reason


def test_a_wrong_ca_is_refused_with_a_clear_reason(redis_server_factory, started):
    server = redis_server_factory(tls=True)
    node = _node(started, f"rediss://127.0.0.1:{server.port}/0?ca={server.pki.other_ca}")
    assert "certificate verify failed" in _refused(node)


def test_a_name_the_certificate_lacks_is_refused_and_sni_names_it(redis_server_factory,
                                                                  started):
    server = redis_server_factory(tls=True)
    base = f"rediss://127.0.0.1:{server.port}/0?ca={server.pki.ca}"
    wrong = _node(started, base + "&sni=cache.example.org")
    assert "certificate verify failed" in _refused(wrong)
    right = _node(started, base + "&sni=localhost")  # the certificate's DNS name
    assert _settled(right)["status"] == "ok"


def test_verify_none_connects_without_checking(redis_server_factory, started):
    server = redis_server_factory(tls=True)
    node = _node(started, f"rediss://127.0.0.1:{server.port}/0?verify=none")
    assert _settled(node)["status"] == "ok"
    assert node.publish("x", 1, to="room").status_code == 200


def test_plaintext_to_a_tls_port_says_so(redis_server_factory, started):
    server = redis_server_factory(tls=True)
    node = _node(started, f"redis://127.0.0.1:{server.port}/0")
    assert "rediss://" in _refused(node)


def test_tls_files_that_cannot_be_read_fail_the_start(tmp_path):
    missing = tmp_path / "no-such-ca.pem"
    with pytest.raises(ValueError, match="no-such-ca.pem"):
        skyrelay.Server(port=0, broker=f"rediss://127.0.0.1:1/0?ca={missing}").start()
    with pytest.raises(ValueError, match="rediss://"):
        skyrelay.Server(port=0, broker=f"redis://127.0.0.1:1/0?ca={missing}").start()
