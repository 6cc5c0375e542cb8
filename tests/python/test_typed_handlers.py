"""Typed handlers: a data parameter annotated with a pydantic model is validated before the
handler runs; invalid payloads get ``invalid_payload`` naming the field; models sent out are
written by pydantic. Real servers, real clients (websockets through skyrelay.testing,
python-socketio, the Flask facade's test client)."""

from __future__ import annotations

import logging
import queue
import subprocess
import sys
import textwrap
import threading
from typing import TYPE_CHECKING, Optional

import pytest
from pydantic import BaseModel, ConfigDict, Field, field_validator

from skyrelay.testing import ResponseError

if TYPE_CHECKING:  # resolvable only by type checkers: the data annotation must not need it
    from skyrelay import Connection


class Target(BaseModel):
    ra: float
    dec: float = Field(ge=-90, le=90)


class Move(BaseModel):
    model_config = ConfigDict(extra="forbid")
    telescope_id: str
    target: Target
    duration_ms: int = 1000


class Status(BaseModel):
    telescope_id: str
    battery: int
    changes: list[str] = []


class Picky(BaseModel):
    name: str

    @field_validator("name")
    @classmethod
    def known(cls, value: str) -> str:
        if value == "boom":
            raise RuntimeError("a validator bug")  # not a ValueError: pydantic lets it through
        if value != "vega":
            raise ValueError("unknown star")
        return value


class Counter:
    """Counts handler calls and keeps what they received, from any thread."""

    def __init__(self) -> None:
        self.calls: list[object] = []
        self.lock = threading.Lock()

    def add(self, value: object) -> None:
        with self.lock:
            self.calls.append(value)


GOOD = {"telescope_id": "seestar-001", "target": {"ra": 83.6, "dec": 22.0}}


def typed_server(factory, counter: Counter, **options):
    def configure(server):
        @server.on("move")
        def move(conn: Connection, data: Move) -> Status:
            counter.add(data)
            return Status(telescope_id=data.telescope_id, battery=85, changes=["target"])

        @server.on("moves")
        def moves(conn: Connection, data: list[Move]) -> int:
            counter.add(data)
            return len(data)

        @server.on("maybe")
        def maybe(conn: Connection, data: Optional[Target]) -> str:
            counter.add(data)
            return "none" if data is None else type(data).__name__

        @server.on("picky")
        def picky(conn: Connection, data: Picky) -> str:
            counter.add(data)
            return data.name

        @server.on("plain")
        def plain(conn, data):
            counter.add(data)
            return data

        @server.on("as_dict")
        def as_dict(conn, data: dict):
            counter.add(data)
            return data

        @server.on("async_move")
        async def async_move(conn: Connection, data: Move) -> Move:
            counter.add(data)
            return data

        @server.on("status_please")
        def status_please(conn, data):
            conn.emit("status", Status(telescope_id="seestar-001", battery=85))
            server.emit("statuses", [Status(telescope_id="a", battery=1),
                                     Status(telescope_id="b", battery=2)], to=conn)
            return [Status(telescope_id="c", battery=3)]

    return factory(configure, **options)


# -- JSON protocol ------------------------------------------------------------------------------

def test_a_valid_payload_reaches_the_handler_as_a_model(skyrelay_server_factory, skyrelay_client):
    counter = Counter()
    server = typed_server(skyrelay_server_factory, counter)
    client = skyrelay_client(server)
    answer = client.request("move", GOOD)
    assert answer == {"telescope_id": "seestar-001", "battery": 85, "changes": ["target"]}
    (got,) = counter.calls
    assert isinstance(got, Move) and isinstance(got.target, Target)
    assert (got.target.ra, got.duration_ms) == (83.6, 1000)
    assert client.request("moves", [GOOD, GOOD]) == 2
    assert all(isinstance(m, Move) for m in counter.calls[1])
    assert client.request("maybe", None) == "none"
    assert client.request("maybe", {"ra": 1, "dec": 2}) == "Target"
    assert client.request("async_move", GOOD)["target"] == {"ra": 83.6, "dec": 22.0}
    assert isinstance(counter.calls[-1], Move)


@pytest.mark.parametrize("payload, field, words", [
    ({**GOOD, "target": {"ra": "north", "dec": 1}}, "target.ra", "valid number"),
    ({"target": GOOD["target"]}, "telescope_id", "Field required"),
    ({**GOOD, "speed": 3}, "speed", "Extra inputs are not permitted"),
    ({**GOOD, "target": {"ra": 1, "dec": 91}}, "target.dec", "less than or equal to 90"),
    ("move please", "(payload)", "Input should be an object"),
    (None, "(payload)", "Input should be an object"),
])
def test_an_invalid_request_is_refused_naming_the_field(skyrelay_server_factory, skyrelay_client,
                                                        payload, field, words):
    counter = Counter()
    server = typed_server(skyrelay_server_factory, counter)
    client = skyrelay_client(server)
    with pytest.raises(ResponseError) as caught:
        client.request("move", payload)
    assert caught.value.code == "invalid_payload"
    assert caught.value.message.startswith("invalid payload for 'move': ")
    assert f"{field}: " in caught.value.message and words in caught.value.message
    with pytest.raises(ResponseError) as caught:
        client.request("async_move", payload)
    assert caught.value.code == "invalid_payload"
    assert counter.calls == []  # neither handler ran
    assert client.request("move", GOOD)["battery"] == 85  # the connection goes on
    assert len(counter.calls) == 1


def test_an_invalid_event_gets_an_error_frame(skyrelay_server_factory, skyrelay_client):
    counter = Counter()
    server = typed_server(skyrelay_server_factory, counter)
    client = skyrelay_client(server)
    client.emit("move", {**GOOD, "target": {"dec": 1}})
    frame = client.expect_frame("error")
    assert frame["code"] == "invalid_payload"
    assert "target.ra: Field required" in frame["message"]
    client.emit("moves", [GOOD, {**GOOD, "duration_ms": "long"}])
    assert "1.duration_ms: " in client.expect_frame("error")["message"]
    assert counter.calls == []
    # Both refusals are counted on /metrics with the other error codes.
    assert 'skyrelay_errors_total{code="invalid_payload"} 2' in server.metrics_text()


def test_a_hostile_payload_gets_a_bounded_answer(skyrelay_server_factory, skyrelay_client):
    counter = Counter()
    server = typed_server(skyrelay_server_factory, counter)
    client = skyrelay_client(server)
    # Thousands of failing items: ten are named, the rest counted.
    with pytest.raises(ResponseError) as caught:
        client.request("moves", [{"target": "x"}] * 2000)
    message = caught.value.message
    assert caught.value.code == "invalid_payload" and len(message) <= 1024
    assert "0.telescope_id: Field required" in message
    assert message.endswith(" more)") and "(and " in message
    # A field name of 20,000 characters (an extra key) is clipped in the path.
    with pytest.raises(ResponseError) as caught:
        client.request("move", {**GOOD, "k" * 20_000: 1})
    assert len(caught.value.message) <= 1024 and "k" * 61 + "..." in caught.value.message
    assert "k" * 65 not in caught.value.message
    # A deeply nested value where a number belongs.
    deep: object = 1
    for _ in range(100):
        deep = [deep]
    with pytest.raises(ResponseError) as caught:
        client.request("move", {**GOOD, "target": {"ra": deep, "dec": 0}})
    assert "target.ra: " in caught.value.message
    assert counter.calls == []
    assert client.ping()["type"] == "pong"


def test_app_validators_refuse_and_their_bugs_answer_handler_error(skyrelay_server_factory,
                                                                    skyrelay_client,
                                                                    sio_clients):
    counter = Counter()
    server = typed_server(skyrelay_server_factory, counter)
    client = skyrelay_client(server)
    assert client.request("picky", {"name": "vega"}) == "vega"
    with pytest.raises(ResponseError) as caught:
        client.request("picky", {"name": "sol"})
    assert caught.value.code == "invalid_payload"
    assert "name: Value error, unknown star" in caught.value.message
    with pytest.raises(ResponseError) as caught:
        client.request("picky", {"name": "boom"})
    assert caught.value.code == "handler_error"  # logged with its traceback, generic text
    sio = sio_clients()
    sio.connect(f"http://127.0.0.1:{server.port}", transports=["websocket"], wait_timeout=5)
    assert sio.call("picky", {"name": "boom"}, timeout=5)["error"]["code"] == "handler_error"
    assert len(counter.calls) == 1


def test_unannotated_handlers_are_unchanged(skyrelay_server_factory, skyrelay_client):
    counter = Counter()
    server = typed_server(skyrelay_server_factory, counter)
    client = skyrelay_client(server)
    assert client.request("plain", {**GOOD, "speed": 3}) == {**GOOD, "speed": 3}
    assert type(counter.calls[-1]) is dict
    # `data: dict` names no model: not validated, a list goes through as before.
    assert client.request("as_dict", [1, 2]) == [1, 2]
    assert counter.calls[-1] == [1, 2]
    assert not server._registry.payload_type(server._registry.handlers[("/", "plain")])
    assert not server._registry.payload_type(server._registry.handlers[("/", "as_dict")])


def test_models_sent_out_arrive_as_their_json(skyrelay_server_factory, skyrelay_client):
    server = typed_server(skyrelay_server_factory, Counter())
    client = skyrelay_client(server)
    assert client.request("status_please") == [
        {"telescope_id": "c", "battery": 3, "changes": []}]
    assert client.expect("status") == {"telescope_id": "seestar-001", "battery": 85,
                                       "changes": []}
    assert client.expect("statuses") == [{"telescope_id": "a", "battery": 1, "changes": []},
                                         {"telescope_id": "b", "battery": 2, "changes": []}]
    client.subscribe("scope")
    assert server.emit("nested", {"status": Status(telescope_id="d", battery=4)},
                       to="scope") == 1
    assert client.expect("nested") == {"status": {"telescope_id": "d", "battery": 4,
                                                  "changes": []}}


def test_a_model_writing_nan_is_refused(skyrelay_server):
    class Loose(BaseModel):
        model_config = ConfigDict(ser_json_inf_nan="constants")
        x: float

    with pytest.raises(ValueError, match="NaN or Infinity"):
        skyrelay_server.emit("x", Loose(x=float("nan")))
    assert skyrelay_server.emit("x", Loose(x=1.5)) == 0  # nobody listens; it was encoded


def test_an_unresolvable_annotation_is_left_unvalidated_with_a_warning(skyrelay_server, caplog):
    namespace: dict[str, object] = {}
    exec(textwrap.dedent("""
        from __future__ import annotations
        def handler(conn, data: NotImported):
            return data
    """), namespace)
    with caplog.at_level(logging.WARNING, logger="skyrelay"):
        skyrelay_server.on("unresolved", namespace["handler"])
    assert "NotImported" in caplog.text and "not validated" in caplog.text
    assert skyrelay_server._registry.payload_types == {}


# -- Socket.IO ----------------------------------------------------------------------------------

def test_socketio_ack_and_error_event(skyrelay_server_factory, sio_clients):
    counter = Counter()
    server = typed_server(skyrelay_server_factory, counter)
    client = sio_clients()
    errors: queue.Queue = queue.Queue()
    client.on("error", errors.put)
    client.connect(f"http://127.0.0.1:{server.port}", transports=["websocket"], wait_timeout=5)
    assert client.call("move", GOOD, timeout=5) == {
        "telescope_id": "seestar-001", "battery": 85, "changes": ["target"]}
    assert isinstance(counter.calls[-1], Move)
    ack = client.call("move", {**GOOD, "target": {"ra": 1, "dec": "up"}}, timeout=5)
    error = ack["error"]
    assert (error["code"], error["event"], error["count"]) == ("invalid_payload", "move", 1)
    assert error["errors"][0]["loc"] == ["target", "dec"]
    assert error["errors"][0]["type"] == "float_parsing"
    assert "target.dec: " in error["message"]
    # No ack asked for: an `error` event carries the same object.
    client.emit("move", {**GOOD, "extra": True})
    got = errors.get(timeout=5)["error"]
    assert got["errors"] == [{"loc": ["extra"], "msg": "Extra inputs are not permitted",
                              "type": "extra_forbidden"}]
    # Several arguments for one model: refused as a whole.
    ack = client.call("move", (GOOD, GOOD), timeout=5)
    assert ack["error"]["errors"][0]["loc"] == []
    assert len(counter.calls) == 1
    assert client.call("status_please", timeout=5) == [
        {"telescope_id": "c", "battery": 3, "changes": []}]
    # A model among several arguments, next to binary: each argument in its own form.
    pairs: queue.Queue = queue.Queue()
    client.on("pair", lambda *args: pairs.put(args))
    assert server.emit("pair", args=[Status(telescope_id="e", battery=5),
                                     {"frame": b"\x00\x01"}]) == 1
    assert pairs.get(timeout=5) == ({"telescope_id": "e", "battery": 5, "changes": []},
                                    {"frame": b"\x00\x01"})


# -- the Flask facade ---------------------------------------------------------------------------

def test_flask_facade_typed_handler():
    flask = pytest.importorskip("flask")
    from skyrelay.flask import SocketIO, emit

    app = flask.Flask(__name__)
    socketio = SocketIO(app)
    counter = Counter()

    @socketio.on("move")
    def move(data: Move):
        counter.add(data)
        emit("status", Status(telescope_id=data.telescope_id, battery=50))
        return Status(telescope_id=data.telescope_id, battery=49)

    @socketio.on("untyped")
    def untyped(data):
        counter.add(data)
        return data

    try:
        client = socketio.test_client(app)
        assert client.emit("move", GOOD, callback=True) == {
            "telescope_id": "seestar-001", "battery": 49, "changes": []}
        assert isinstance(counter.calls[-1], Move)
        assert client.get_received() == [{"name": "status", "namespace": "/", "args": [
            {"telescope_id": "seestar-001", "battery": 50, "changes": []}]}]
        ack = client.emit("move", {"telescope_id": 7, "target": GOOD["target"]}, callback=True)
        assert ack["error"]["code"] == "invalid_payload"
        assert ack["error"]["errors"][0]["loc"] == ["telescope_id"]
        client.emit("move", {})
        received = client.get_received()
        assert [m["name"] for m in received] == ["error"]
        assert {e["loc"][0] for e in received[0]["args"][0]["error"]["errors"]} == {
            "telescope_id", "target"}
        assert client.emit("untyped", {"a": 1}, callback=True) == {"a": 1}
        assert len(counter.calls) == 2
        client.disconnect()
    finally:
        socketio.stop()


# -- the FastAPI facade -------------------------------------------------------------------------

def test_fastapi_facade_typed_async_handler_and_emitted_model():
    pytest.importorskip("fastapi")
    import asyncio

    from fastapi import Depends, FastAPI
    from fastapi.testclient import TestClient

    from skyrelay.fastapi import SkyRelay
    from skyrelay.testing import connect

    app = FastAPI()
    relay = SkyRelay(app, port=0)
    loops: list[object] = []

    @relay.server.on("move")
    async def move(conn, data: Move) -> Status:
        loops.append(asyncio.get_running_loop())
        conn.join(data.telescope_id)
        return Status(telescope_id=data.telescope_id, battery=70)

    @app.post("/status")
    async def post_status(status: Status, server=Depends(relay.dependency)):
        return {"delivered": server.emit("status_update", status, to=status.telescope_id)}

    with TestClient(app) as http:
        with connect(relay.server.url) as ws:
            assert ws.request("move", GOOD) == {"telescope_id": "seestar-001", "battery": 70,
                                                "changes": []}
            with pytest.raises(ResponseError) as caught:
                ws.request("move", {**GOOD, "target": None})
            assert caught.value.code == "invalid_payload" and "target: " in caught.value.message
            assert len(loops) == 1
            body = {"telescope_id": "seestar-001", "battery": 69, "changes": ["battery"]}
            assert http.post("/status", json=body).json() == {"delivered": 1}
            assert ws.expect("status_update") == body


# -- without pydantic ---------------------------------------------------------------------------

def test_skyrelay_runs_without_pydantic(tmp_path):
    script = textwrap.dedent("""
        import sys
        sys.modules["pydantic"] = None  # as if it were not installed: importing it fails
        import skyrelay
        from skyrelay.testing import connect

        server = skyrelay.Server(port=0)

        @server.on("echo")
        def echo(conn, data: dict):
            return data

        with server:
            with connect(server.url) as client:
                assert client.request("echo", {"a": [1]}) == {"a": [1]}
        assert server._registry.payload_types == {}
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_answer_does_not_echo_the_input(skyrelay_server_factory, skyrelay_client):
    # The answer carries no input value: what the client sent is not echoed back.
    counter = Counter()
    server = typed_server(skyrelay_server_factory, counter)
    client = skyrelay_client(server)
    secret = "s3cr3t-value"
    with pytest.raises(ResponseError) as caught:
        client.request("move", {**GOOD, "duration_ms": secret})
    assert secret not in caught.value.message
    assert caught.value.code == "invalid_payload" and "duration_ms: " in caught.value.message
