"""Every message of the skyrelay JSON protocol, with the websockets client."""

from __future__ import annotations

import datetime

import pytest

import skyrelay
from skyrelay.testing import ResponseError


def iso(ts: str) -> datetime.datetime:
    assert ts.endswith("Z"), ts
    return datetime.datetime.fromisoformat(ts[:-1] + "+00:00")


def test_welcome_is_first_and_sids_are_unique(skyrelay_server, skyrelay_client):
    a, b = skyrelay_client(), skyrelay_client()
    for c in (a, b):
        assert c.welcome["type"] == "welcome"
        assert c.welcome["heartbeat_ms"] == 30000
        assert len(c.sid) == 16
    assert a.sid != b.sid


def test_subscribe_unsubscribe_forms_and_id_echo(skyrelay_server, skyrelay_client):
    c = skyrelay_client()
    assert c.subscribe("A") == {"type": "subscribed", "topic": "A"}
    c.send({"type": "subscribe", "topics": ["B", "C"], "id": 7})
    assert c.expect_frame("subscribed") == {"type": "subscribed", "topics": ["B", "C"], "id": 7}
    assert skyrelay_server.rooms(c.sid) == ["A", "B", "C"]

    skyrelay_server.emit("e", 1, to="B")
    assert c.expect("e") == 1
    assert c.unsubscribe("B") == {"type": "unsubscribed", "topic": "B"}
    skyrelay_server.emit("e", 2, to="B")
    skyrelay_server.emit("e", 3, to="C")
    assert c.expect("e") == 3  # nothing from B came first
    c.send({"type": "unsubscribe", "topics": ["A", "never-joined"], "id": "u"})
    assert c.expect_frame("unsubscribed") == {
        "type": "unsubscribed", "topics": ["A", "never-joined"], "id": "u"}
    assert skyrelay_server.rooms(c.sid) == ["C"]


def test_ping_pong(skyrelay_server, skyrelay_client):
    c = skyrelay_client()
    before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)
    pong = c.ping()
    assert before < iso(pong["ts"]) < before + datetime.timedelta(seconds=60)
    c.send({"type": "ping", "id": "p-1"})
    assert c.expect_frame("pong")["id"] == "p-1"


def test_event_reaches_handler_with_connection(skyrelay_server, skyrelay_client):
    got = []

    @skyrelay_server.on("hello")
    def hello(conn, data):
        got.append((conn.sid, data))
        conn.emit("hello_back", {"you": conn.sid})

    c = skyrelay_client()
    c.emit("hello", {"n": [1, 2.5, None, "x"]})
    assert c.expect("hello_back") == {"you": c.sid}
    assert got == [(c.sid, {"n": [1, 2.5, None, "x"]})]


def test_request_response_and_errors(skyrelay_server, skyrelay_client):
    @skyrelay_server.on("add")
    def add(conn, data):
        return data["a"] + data["b"]

    @skyrelay_server.on("refuse")
    def refuse(conn, data):
        raise skyrelay.RequestError("not_allowed", "no way")

    @skyrelay_server.on("crash")
    def crash(conn, data):
        raise ValueError("bad azimuth")

    @skyrelay_server.on("nothing")
    def nothing(conn, data):
        pass

    c = skyrelay_client()
    assert c.request("add", {"a": 2, "b": 3}) == 5
    assert c.request("nothing") is None
    with pytest.raises(ResponseError) as err:
        c.request("refuse")
    assert (err.value.code, err.value.message) == ("not_allowed", "no way")
    with pytest.raises(ResponseError) as err:
        c.request("crash")
    assert err.value.code == "handler_error"
    assert "bad azimuth" in err.value.message
    with pytest.raises(ResponseError) as err:
        c.request("no_such_event")
    assert err.value.code == "unknown_event"
    # Integer ids come back as integers.
    c.send({"type": "request", "id": 99, "event": "add", "data": {"a": 1, "b": 1}})
    assert c.expect_frame("response") == {"type": "response", "id": 99, "ok": True, "data": 2}


def test_unknown_event_gets_error_frame(skyrelay_server, skyrelay_client):
    c = skyrelay_client()
    c.emit("nobody_listens", {})
    err = c.expect_frame("error")
    assert err["code"] == "unknown_event"
    assert c.ping()["type"] == "pong"


def test_async_handler(skyrelay_server, skyrelay_client):
    import asyncio

    @skyrelay_server.on("slow_add")
    async def slow_add(conn, data):
        await asyncio.sleep(0.01)
        return sum(data)

    c = skyrelay_client()
    assert c.request("slow_add", [1, 2, 3]) == 6


def test_path_topic_subscribes_on_connect(skyrelay_server, skyrelay_client):
    c = skyrelay_client(path="/ws/WELL%20001")
    assert c.expect_frame("subscribed") == {"type": "subscribed", "topic": "WELL 001"}
    skyrelay_server.emit("telemetry_update", {"flow": 1}, to="WELL 001")
    frame = c.expect_event("telemetry_update")
    assert frame["topic"] == "WELL 001"
    assert frame["seq"] == 1


def test_event_frames_topic_seq_and_ts(skyrelay_server, skyrelay_client):
    c = skyrelay_client()
    c.subscribe("r1", "r2")
    for i in range(3):
        skyrelay_server.emit("tick", i, to="r1")
    frames = [c.expect_event("tick") for _ in range(3)]
    assert [f["seq"] for f in frames] == [1, 2, 3]
    assert all(f["topic"] == "r1" for f in frames)
    iso(frames[0]["ts"])
    skyrelay_server.emit("multi", None, to=["r1", "r2"])
    skyrelay_server.emit("everyone", None)
    skyrelay_server.emit("direct", None, to=c.sid)
    for name in ("multi", "everyone", "direct"):
        f = c.expect_event(name)
        assert "topic" not in f and "seq" not in f, f
    c.expect_nothing(0.2, "event")  # "multi" arrived once although c is in both rooms
