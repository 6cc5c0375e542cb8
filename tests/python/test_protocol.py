"""Every message of the skyrelay JSON protocol, with the websockets client."""

from __future__ import annotations

import datetime
import json

import pytest

import skyrelay
from skyrelay.testing import ResponseError


def without_position(reply):
    """A subscribed reply without its seq and epoch, which other tests check."""
    assert isinstance(reply.get("seq"), int) and isinstance(reply.get("epoch"), str), reply
    return {k: v for k, v in reply.items() if k not in ("seq", "epoch")}


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
    a = c.subscribe("A")
    assert a == {"type": "subscribed", "topic": "A", "seq": 0, "epoch": a["epoch"]}
    c.send({"type": "subscribe", "topics": ["B", "C"], "id": 7})
    bc = c.expect_frame("subscribed")
    assert bc == {"type": "subscribed", "topics": ["B", "C"], "id": 7,
                  "positions": {"B": {"seq": 0, "epoch": bc["positions"]["B"]["epoch"]},
                                "C": {"seq": 0, "epoch": bc["positions"]["C"]["epoch"]}}}
    assert len({a["epoch"], bc["positions"]["B"]["epoch"], bc["positions"]["C"]["epoch"]}) == 3
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
    assert "bad azimuth" not in err.value.message  # the log has it (Server(debug=True): both)
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
    assert without_position(c.expect_frame("subscribed")) == {"type": "subscribed",
                                                              "topic": "WELL 001"}
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


def test_single_topic_forms_echo_ids_and_are_idempotent(skyrelay_server, skyrelay_client):
    c = skyrelay_client()
    c.send({"type": "subscribe", "topic": "A", "id": "s-1"})
    first = c.expect_frame("subscribed")
    assert without_position(first) == {"type": "subscribed", "topic": "A", "id": "s-1"}
    c.send({"type": "subscribe", "topic": "A", "id": 2})  # again: still one membership
    again = c.expect_frame("subscribed")
    assert without_position(again) == {"type": "subscribed", "topic": "A", "id": 2}
    assert again["epoch"] == first["epoch"]
    assert skyrelay_server.room_size("A") == 1
    assert skyrelay_server.emit("once", "x", to="A") == 1
    assert c.expect("once") == "x"
    c.expect_nothing(0.2, "event")
    c.send({"type": "unsubscribe", "topic": "A", "id": "u-1"})
    assert c.expect_frame("unsubscribed") == {"type": "unsubscribed", "topic": "A", "id": "u-1"}
    assert skyrelay_server.room_size("A") == 0
    assert skyrelay_server.emit("gone", "x", to="A") == 0
    assert c.ping()["type"] == "pong"
    c.expect_nothing(0.2, "event")


def test_subscribe_reports_the_topics_position(skyrelay_server, skyrelay_client):
    c = skyrelay_client()
    skyrelay_server.emit("before", 1, to="hist")  # nobody subscribed yet: kept in history
    skyrelay_server.emit("before", 2, to="hist")
    reply = c.subscribe("hist")
    assert reply["seq"] == 2 and reply["epoch"]
    assert "recovered" not in reply
    skyrelay_server.emit("after", 3, to="hist")
    assert c.expect_event("after")["seq"] == 3


def test_events_stop_after_unsubscribe_but_other_members_keep_them(skyrelay_server,
                                                                   skyrelay_client):
    leaver, stayer = skyrelay_client(), skyrelay_client()
    leaver.subscribe("feed")
    stayer.subscribe("feed")
    for i in range(3):
        skyrelay_server.emit("f", i, to="feed")
    assert [leaver.expect("f") for _ in range(3)] == [0, 1, 2]
    leaver.unsubscribe("feed")
    for i in range(3, 6):
        skyrelay_server.emit("f", i, to="feed")
    assert [stayer.expect("f") for _ in range(6)] == list(range(6))
    assert leaver.ping()["type"] == "pong"  # sent after the emits, answered after them too
    leaver.expect_nothing(0.2, "event")


def test_pong_ts_is_iso8601_utc(skyrelay_server, skyrelay_client):
    c = skyrelay_client()
    ts = c.ping()["ts"]
    # e.g. 2026-11-22T13:15:25.249Z: date, "T", time with milliseconds, "Z".
    date, _, clock = ts.partition("T")
    assert len(date) == 10 and clock.endswith("Z") and len(clock) == len("13:15:25.249Z"), ts
    assert iso(ts).tzinfo == datetime.timezone.utc


def test_handler_gets_connection_and_data_in_arrival_order(skyrelay_server_factory,
                                                           skyrelay_client):
    # 21 messages at once from one connection: more than the default burst of 20.
    skyrelay_server = skyrelay_server_factory(inbound_burst=100)
    got = []

    @skyrelay_server.on("n")
    def n(conn, data):
        got.append((conn.sid, data))

    @skyrelay_server.on("done")
    def done(conn, data):
        return len(got)

    a, b = skyrelay_client(skyrelay_server), skyrelay_client(skyrelay_server)
    for i in range(20):
        a.emit("n", i)
    b.emit("n", None)  # "data" omitted or null both arrive as None
    b.send({"type": "event", "event": "n"})
    assert a.request("done") >= 20
    assert b.request("done") == 22
    assert [d for sid, d in got if sid == a.sid] == list(range(20))
    assert [d for sid, d in got if sid == b.sid] == [None, None]


def test_handler_sees_the_same_connection_object_each_time(skyrelay_server, skyrelay_client):
    conns = []

    @skyrelay_server.on("who")
    def who(conn, data):
        conns.append(conn)
        conn.state["calls"] = conn.state.get("calls", 0) + 1
        return conn.state["calls"]

    c = skyrelay_client()
    assert [c.request("who") for _ in range(3)] == [1, 2, 3]
    assert conns[0] is conns[1] is conns[2]
    assert conns[0].sid == c.sid


def test_event_handler_errors_send_nothing_and_keep_the_connection(skyrelay_server,
                                                                   skyrelay_client):
    @skyrelay_server.on("boom")
    def boom(conn, data):
        raise RuntimeError("ignored for plain events")

    c = skyrelay_client()
    c.emit("boom", 1)
    assert c.ping()["type"] == "pong"
    c.expect_nothing(0.2)


def test_request_ids_and_errors_in_responses(skyrelay_server, skyrelay_client):
    @skyrelay_server.on("refuse")
    def refuse(conn, data):
        raise skyrelay.RequestError("out_of_range", f"azimuth {data} is out of range")

    c = skyrelay_client()
    c.send({"type": "request", "id": "r-7", "event": "refuse", "data": 400})
    assert c.expect_frame("response") == {
        "type": "response", "id": "r-7", "ok": False,
        "error": {"code": "out_of_range", "message": "azimuth 400 is out of range"}}
    c.send({"type": "request", "id": 8, "event": "missing"})
    frame = c.expect_frame("response")
    assert frame["id"] == 8 and frame["ok"] is False
    assert frame["error"]["code"] == "unknown_event" and "missing" in frame["error"]["message"]
    c.expect_nothing(0.2, "error")  # a failed request gets a response, not an error frame


def test_unknown_event_error_frame_has_null_ref(skyrelay_server, skyrelay_client):
    c = skyrelay_client()
    c.emit("nobody_listens", {})
    err = c.expect_frame("error")
    assert err["code"] == "unknown_event"
    assert err["ref"] is None
    assert "nobody_listens" in err["message"]


@pytest.mark.parametrize("path, topic", [
    ("/ws/plain", "plain"),
    ("/ws/caf%C3%A9", "café"),
    ("/ws/a%2Fb", "a/b"),
    ("/ws/sat%3Aiss?x=1", "sat:iss"),
])
def test_path_topics_are_percent_decoded(skyrelay_server, skyrelay_client, path, topic):
    c = skyrelay_client(path=path)
    assert without_position(c.expect_frame("subscribed")) == {"type": "subscribed",
                                                              "topic": topic}
    assert skyrelay_server.rooms(c.sid) == [topic]
    skyrelay_server.emit("hi", topic, to=topic)
    assert c.expect_event("hi")["topic"] == topic


def test_path_topic_subscribed_follows_welcome(skyrelay_server):
    from wsraw import RawClient

    raw = RawClient(skyrelay_server.port, "/ws/first")
    try:
        frames = [raw.read_frame() for _ in range(2)]
        assert [json.loads(f[1])["type"] for f in frames] == ["welcome", "subscribed"]
    finally:
        raw.close()


def test_seq_is_per_room_and_shared_by_members(skyrelay_server, skyrelay_client):
    a, b = skyrelay_client(), skyrelay_client()
    a.subscribe("r1", "r2")
    b.subscribe("r1")
    for room in ("r1", "r1", "r2", "r1", "r2"):
        skyrelay_server.emit("tick", room, to=room)
    skyrelay_server.emit("tick", "list-of-one", to=["r2"])
    got = [a.expect_event("tick") for _ in range(6)]
    assert [(f["topic"], f["seq"]) for f in got] == [
        ("r1", 1), ("r1", 2), ("r2", 1), ("r1", 3), ("r2", 2), ("r2", 3)]
    assert [(f["topic"], f["seq"]) for f in (b.expect_event("tick") for _ in range(3))] == [
        ("r1", 1), ("r1", 2), ("r1", 3)]


def test_event_ts_is_the_publish_time_in_utc(skyrelay_server, skyrelay_client):
    c = skyrelay_client()
    before = datetime.datetime.now(datetime.timezone.utc)
    skyrelay_server.emit("now", None)
    after = datetime.datetime.now(datetime.timezone.utc)
    ts = iso(c.expect_event("now")["ts"])
    # Millisecond resolution: allow for the truncation, and for clock granularity.
    slack = datetime.timedelta(milliseconds=50)
    assert before - slack <= ts <= after + slack
