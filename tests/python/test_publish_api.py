"""POST /api/publish and skyrelay.Producer: one event or a batch, token-protected, idempotent,
with clear 4xx errors; the Producer's serialization, batching, retries and async form."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import enum
import json
import socket
import threading
import uuid

import httpx
import pytest

import skyrelay
from skyrelay import AsyncProducer, Producer, PublishError
from skyrelay.testing import metric

from httpraw import read_head

# /metrics series this module reads (docs/deployment.md, Metrics).
MESSAGES_RECEIVED_PUBLISH = 'skyrelay_received_messages_total{transport="publish"}'

TOKEN = "t0ken-for-tests"


@pytest.fixture
def server(skyrelay_server_factory):
    return skyrelay_server_factory(publish_token=TOKEN)


def post(server, body, token=TOKEN, headers=None, content_type="application/json"):
    h = {"Content-Type": content_type, **(headers or {})}
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(f"http://127.0.0.1:{server.port}/api/publish", content=data, headers=h,
                      timeout=5)


def test_one_event_reaches_subscribers_with_its_id_and_seq(server, skyrelay_client):
    c = skyrelay_client(server)
    c.subscribe("WELL-001")
    r = post(server, {"event": "telemetry_update", "data": {"flow": 41.7}, "to": "WELL-001"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["duplicate"] is False
    published = body["published"]
    assert (published["topic"], published["seq"], published["delivered"]) == ("WELL-001", 1, 1)
    assert published["id"].rsplit(":", 1)[1].isdigit()
    # The topic's epoch: with the seq, what a JSON-protocol subscribe resumes from (`since`).
    assert published["epoch"] == c.subscribe("WELL-001")["epoch"]
    frame = c.expect_event("telemetry_update")
    assert (frame["data"], frame["seq"]) == ({"flow": 41.7}, 1)
    # Without "to", everyone; "skip" leaves connections out.
    other = skyrelay_client(server)
    r = post(server, {"event": "news", "data": "all", "skip": [c.sid]})
    assert r.json()["published"]["delivered"] == 1
    assert "topic" not in r.json()["published"]
    assert other.expect("news") == "all"
    c.expect_nothing(0.2, "event")


def test_a_batch_publishes_in_order_and_answers_each(server, skyrelay_client):
    c = skyrelay_client(server)
    c.subscribe("a", "b")
    events = [{"event": "e", "data": i, "to": "a" if i % 2 else "b"} for i in range(10)]
    r = post(server, {"events": events})
    assert r.status_code == 200
    published = r.json()["published"]
    assert [p["topic"] for p in published] == ["b", "a"] * 5
    assert [p["seq"] for p in published] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    ids = [int(p["id"].rsplit(":", 1)[1]) for p in published]
    assert ids == sorted(ids) and len(set(ids)) == 10
    assert [c.expect("e") for _ in range(10)] == list(range(10))


def test_a_repeated_idempotency_key_publishes_nothing(server, skyrelay_client):
    c = skyrelay_client(server)
    c.subscribe("a")
    body = {"events": [{"event": "e", "data": 1, "to": "a"}], "idempotency_key": "k-1"}
    first = post(server, body)
    again = post(server, body)
    by_header = post(server, {"events": [{"event": "e", "data": 1, "to": "a"}]},
                     headers={"Idempotency-Key": "k-1"})
    assert first.json()["duplicate"] is False
    for r in (again, by_header):
        assert r.json() == {**first.json(), "duplicate": True}
    assert c.expect("e") == 1
    c.expect_nothing(0.3, "event")
    assert post(server, {**body, "idempotency_key": "k-2"}).json()["duplicate"] is False
    assert c.expect("e") == 1


def test_the_same_key_with_another_request_is_409(server, skyrelay_client):
    c = skyrelay_client(server)
    c.subscribe("a")
    first = post(server, {"event": "e", "data": {"x": 1, "y": 2}, "to": "a"},
                 headers={"Idempotency-Key": "k-body"})
    assert first.status_code == 200 and c.expect("e") == {"x": 1, "y": 2}
    # Spelled otherwise, it is the same request: a duplicate.
    same = post(server, '{ "to":"a", "data":{"y":2,"x":1}, "event":"e", '
                        '"idempotency_key":"k-body" }')
    assert same.status_code == 200 and same.json() == {**first.json(), "duplicate": True}
    for other in ({"event": "e", "data": {"x": 1, "y": 3}, "to": "a"},
                  {"event": "e", "data": {"x": 1, "y": 2}, "to": "b"},
                  {"events": [{"event": "e", "data": {"x": 1, "y": 2}, "to": "a"}]}):
        r = post(server, other, headers={"Idempotency-Key": "k-body"})
        assert r.status_code == 409, r.text
        assert r.json()["error"] == "idempotency_key_reused"
        assert "different body" in r.json()["message"]
    c.expect_nothing(0.2, "event")
    # The Producer does not retry it: retrying cannot help.
    with Producer(f"http://127.0.0.1:{server.port}", token=TOKEN, retries=3) as producer:
        with pytest.raises(PublishError) as err:
            producer.emit("e", {"x": 9}, to="a", idempotency_key="k-body")
    assert (err.value.status, err.value.code) == (409, "idempotency_key_reused")
    assert metric(server, MESSAGES_RECEIVED_PUBLISH) == 6


def test_a_refused_request_leaves_its_key_free(server, skyrelay_client):
    c = skyrelay_client(server)
    c.subscribe("a")
    key = {"Idempotency-Key": "k-retry"}
    good = {"event": "e", "data": 1, "to": "a"}
    assert post(server, {"event": "e", "to": ""}, headers=key).status_code == 400
    assert post(server, {"events": [good, {"event": 5}]}, headers=key).status_code == 400
    assert post(server, good, token="wrong", headers=key).status_code == 401
    assert post(server, good, headers=key, content_type="text/plain").status_code == 415
    c.expect_nothing(0.1, "event")
    r = post(server, good, headers=key)
    assert r.status_code == 200 and r.json()["duplicate"] is False
    assert c.expect("e") == 1


def test_keys_are_scoped_to_the_publisher(skyrelay_server_factory, skyrelay_client):
    jwt = pytest.importorskip("jwt")
    secret = b"publisher-scope-secret-" * 2

    def publish_token(**claims):
        payload = {"typ": "publish", "exp": int(__import__("time").time()) + 300, **claims}
        return jwt.encode(payload, secret, algorithm="HS256", headers={"kid": "k"})

    server = skyrelay_server_factory(
        publish_token=TOKEN,
        jwt=skyrelay.JWTAuth(keys=[skyrelay.JWTKey.hmac("k", secret, ["HS256"])]))
    c = skyrelay_client(server)
    c.subscribe("a")
    key = {"Idempotency-Key": "shared-key"}
    alice, bob = publish_token(sub="alice"), publish_token(sub="bob")
    anon1, anon2 = publish_token(jti="1"), publish_token(jti="2")  # no sub
    answers = {}
    for name, token in (("static", TOKEN), ("alice", alice), ("bob", bob), ("anon1", anon1),
                        ("anon2", anon2)):
        r = post(server, {"event": "e", "data": name, "to": "a"}, token=token, headers=key)
        assert r.status_code == 200, (name, r.text)
        assert r.json()["duplicate"] is False, name
        assert c.expect("e") == name
        answers[name] = r.json()
    # Each publisher's repeat is its own duplicate; a new token of the same sub is the same
    # publisher.
    for name, token in (("static", TOKEN), ("alice", publish_token(sub="alice", jti="x")),
                        ("bob", bob), ("anon1", anon1)):
        r = post(server, {"event": "e", "data": name, "to": "a"}, token=token, headers=key)
        assert r.json() == {**answers[name], "duplicate": True}, name
    c.expect_nothing(0.2, "event")
    # Alice cannot read Bob's answer by replaying his key and body: hers is a conflict.
    r = post(server, {"event": "e", "data": "bob", "to": "a"}, token=alice, headers=key)
    assert r.status_code == 409 and r.json()["error"] == "idempotency_key_reused"


@pytest.mark.parametrize("body, code, fragment", [
    (b"{not json", "bad_json", "not valid JSON"),
    ([1, 2], "bad_request", "object"),
    ({"data": 1}, "bad_request", "event"),
    ({"event": ""}, "bad_request", "event"),
    ({"event": "e", "to": ""}, "bad_request", "to"),
    ({"event": "e", "to": ["x"] * 65}, "bad_request", "64"),
    ({"event": "e", "policy": "sometimes"}, "bad_request", "policy"),
    ({"event": "e", "namespace": "chat"}, "bad_request", "namespace"),
    ({"event": "e", "colour": "red"}, "bad_request", "colour"),
    ({"events": []}, "bad_request", "1 to 1000"),
    ({"events": [{"event": "e"}] * 1001}, "bad_request", "1 to 1000"),
    ({"events": [{"event": "e"}, {"event": 5}]}, "bad_request", "events[1]"),
    ({"events": [{"event": "e"}], "extra": 1}, "bad_request", "extra"),
    ({"event": "e", "idempotency_key": "k" * 201}, "bad_request", "200"),
    ({"event": "e", "data": json.loads("[" * 128 + "]" * 128)}, "bad_request", "128"),
])
def test_bad_bodies_get_400_with_a_message(server, skyrelay_client, body, code, fragment):
    c = skyrelay_client(server)
    c.subscribe("x")
    r = post(server, body)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == code and fragment in r.json()["message"]
    c.expect_nothing(0.1, "event")  # nothing of a refused request is published


def test_auth_method_type_and_size(server, skyrelay_server_factory):
    assert post(server, {"event": "e"}, token=None).status_code == 401
    r = post(server, {"event": "e"}, token="wrong")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"] == "unauthorized"
    assert post(server, {"event": "e"}, token=TOKEN + "x").status_code == 401
    assert post(server, {"event": "e"}, content_type="text/plain").status_code == 415
    assert httpx.get(f"http://127.0.0.1:{server.port}/api/publish").status_code == 405
    big = {"event": "e", "data": "x" * 1_100_000}
    assert post(server, big).status_code == 413
    # The 413 comes from the HTTP layer before the route, like any oversized body.
    assert metric(server, "skyrelay_publish_refused_total") == 5
    # Without a token configured the API is off.
    off = skyrelay_server_factory()
    r = post(off, {"event": "e"})
    assert r.status_code == 403 and r.json()["error"] == "publish_disabled"


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Reading:
    well: str
    at: datetime.datetime


def test_producer_serializes_scientific_types(server, skyrelay_client):
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    c = skyrelay_client(server)
    c.subscribe("lab")
    at = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.timezone.utc)
    frame = pd.DataFrame({"well": ["W1", "W2"], "flow": [1.5, 2.5]})
    with Producer(f"http://127.0.0.1:{server.port}", token=TOKEN) as producer:
        values = [
            np.arange(3, dtype=np.int64),
            {"mean": np.float32(1.5), "n": np.int64(7), "ok": np.bool_(True)},
            frame.iloc[1],
            frame,
            Reading("W1", at),
            {"colour": Colour.RED, "id": uuid.UUID(int=1), "tags": {"a"}},
            {"blob": b"\x00\x01"},
        ]
        for v in values:
            result = producer.emit("sample", v, to="lab")
            assert result.topic == "lab" and result.delivered == 1
    got = [c.expect("sample") for _ in values]
    assert got == [
        [0, 1, 2],
        {"mean": 1.5, "n": 7, "ok": True},
        {"well": "W2", "flow": 2.5},
        [{"well": "W1", "flow": 1.5}, {"well": "W2", "flow": 2.5}],
        {"well": "W1", "at": "2026-11-22T12:00:00+00:00"},
        {"colour": "red", "id": "00000000-0000-0000-0000-000000000001", "tags": ["a"]},
        {"blob": "AAE="},
    ]
    # NaN is null by default; nan="error" refuses it, naming where it was, before sending.
    with Producer(f"http://127.0.0.1:{server.port}", token=TOKEN, nan="error") as producer:
        with pytest.raises(ValueError, match=r"data\[1\] is nan, which is not JSON"):
            producer.emit("bad", [1.0, float("nan")], to="lab")
    c.expect_nothing(0.2, "event")


def test_producer_batches_in_requests_of_batch_size(server, skyrelay_client):
    c = skyrelay_client(server)
    c.subscribe("t")
    with Producer(f"http://127.0.0.1:{server.port}", token=TOKEN, batch_size=100) as producer:
        with producer.batch() as batch:
            for i in range(250):
                batch.emit("e", i, to="t")
        assert [p.seq for p in batch.results] == list(range(1, 251))
        more = producer.emit_many({"event": "e", "data": i, "to": "t"} for i in range(250, 260))
        assert [p.seq for p in more] == list(range(251, 261))
    assert metric(server, MESSAGES_RECEIVED_PUBLISH) == 4  # 100 + 100 + 50 + 10
    assert [c.expect("e") for _ in range(260)] == list(range(260))


def test_producer_errors_and_retries(server, skyrelay_server_factory):
    with Producer(f"http://127.0.0.1:{server.port}", token="nope") as producer:
        with pytest.raises(PublishError) as err:
            producer.emit("e", 1)
    assert (err.value.status, err.value.code) == (401, "unauthorized")
    with Producer(f"http://127.0.0.1:{server.port}", token=TOKEN) as producer:
        with pytest.raises(PublishError) as err:
            producer.emit("e", 1, policy="sometimes")
        assert err.value.status == 400 and "policy" in str(err.value)
    # Nothing listens: retried, then a clear error.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    with Producer(f"http://127.0.0.1:{free_port}", retries=2, backoff=0.01) as producer:
        with pytest.raises(PublishError, match="cannot reach"):
            producer.emit("e", 1)
    with pytest.raises(ValueError):
        Producer("ftp://host")


def test_producer_retry_after_a_lost_answer_publishes_once(server, skyrelay_client):
    """The first answer is lost on the way back (a proxy cuts the connection once the request
    is through): the retry carries the same key, so the event is published exactly once."""
    c = skyrelay_client(server)
    c.subscribe("t")
    cut_first = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def proxy():
        for _ in range(2):
            client, _ = listener.accept()
            upstream = socket.create_connection(("127.0.0.1", server.port))
            request = b""
            while b"\r\n\r\n" not in request or not request.endswith(b"}"):
                request += client.recv(65536)
            upstream.sendall(request)
            answer = upstream.recv(65536)
            if not cut_first.is_set():
                cut_first.set()
                client.close()  # the answer never arrives
            else:
                client.sendall(answer)
                client.close()
            upstream.close()

    t = threading.Thread(target=proxy, daemon=True)
    t.start()
    with Producer(f"http://127.0.0.1:{port}", token=TOKEN, backoff=0.01) as producer:
        result = producer.emit("once", 1, to="t")
    t.join(5)
    listener.close()
    assert result.duplicate is True and result.seq == 1
    assert c.expect("once") == 1
    c.expect_nothing(0.3, "event")


def test_async_producer(server, skyrelay_client):
    c = skyrelay_client(server)
    c.subscribe("t")

    async def main():
        async with AsyncProducer(f"http://127.0.0.1:{server.port}", token=TOKEN) as producer:
            one = await producer.emit("e", 0, to="t")
            async with producer.batch() as batch:
                for i in range(1, 4):
                    batch.emit("e", i, to="t")
            return one, batch.results

    one, rest = asyncio.run(main())
    assert one.seq == 1 and [p.seq for p in rest] == [2, 3, 4]
    assert [c.expect("e") for _ in range(4)] == [0, 1, 2, 3]


def test_token_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("SKYRELAY_TOKEN", TOKEN)
    with Producer(f"127.0.0.1:{server.port}") as producer:
        assert producer.emit("e").delivered == 0
    assert skyrelay.Producer is Producer


def test_expect_100_continue_gets_its_interim_answer(server):
    # A client that sends "Expect: 100-continue" holds its body back until the server says go
    # (libcurl for bodies over 1 KiB in its older versions, over 1 MiB now); without the
    # interim answer it stalls a second per request before sending anyway.
    body = json.dumps({"event": "e", "data": {"x": "a" * 3000}, "to": "news"}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=3) as s:
        head = (f"POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"Expect: 100-continue\r\n\r\n").encode()
        s.sendall(head)
        assert read_head(s) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(body)
        answer = read_head(s)
        assert answer.startswith(b"HTTP/1.1 200 OK"), answer
        # The connection stays usable: a second request, without the header, gets no 100.
        small = json.dumps({"event": "e", "data": 1, "to": "news"}).encode()
        rest = answer.partition(b"\r\n\r\n")[2]
        length = int(answer.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(rest) < length:
            rest += s.recv(4096)
        s.sendall((f"POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                   f"Content-Type: application/json\r\n"
                   f"Content-Length: {len(small)}\r\n\r\n").encode() + small)
        second = read_head(s)
        assert second.startswith(b"HTTP/1.1 200 OK"), second


def test_expect_100_continue_over_the_body_limit_is_413_at_once(skyrelay_server_factory):
    # A declared body over max_body_size is refused on its head: no 100, the body never sent.
    server = skyrelay_server_factory(publish_token=TOKEN, max_body_size=1024)
    with socket.create_connection(("127.0.0.1", server.port), timeout=3) as s:
        head = (f"POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                f"Content-Type: application/json\r\nContent-Length: 5000\r\n"
                f"Expect: 100-continue\r\n\r\n").encode()
        s.sendall(head)
        answer = read_head(s)
        assert answer.startswith(b"HTTP/1.1 413 "), answer


def _answer(s: socket.socket, data: bytes = b"") -> tuple[bytes, bytes, bytes]:
    """One answer off `s` (after `data` already read): its head, its body (Content-Length)
    and whatever came after it."""
    data = read_head(s, data)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(rest) < length:
        chunk = s.recv(65536)
        assert chunk, "closed in the middle of an answer"
        rest += chunk
    return head, rest[:length], rest[length:]


def _post_head(body_length: int | None) -> bytes:
    framing = (f"Content-Length: {body_length}" if body_length is not None
               else "Transfer-Encoding: chunked")
    return (f"POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\n{framing}\r\n\r\n").encode()


def test_a_body_is_read_however_it_arrives(server, skyrelay_client):
    # The body is parsed from what came with the head when it is all there, and read on when it
    # is not: with its head, behind it in pieces, chunked in one write or across several, and
    # followed in the same write by the next request.
    c = skyrelay_client(server)
    c.subscribe("news")
    bodies = [json.dumps({"event": "e", "data": {"n": n, "pad": "p" * 40 * n}, "to": "news"})
              .encode() for n in range(6)]
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        # 0 and 1 pipelined in one write, each with its head.
        s.sendall(_post_head(len(bodies[0])) + bodies[0] + _post_head(len(bodies[1])) + bodies[1])
        head, _, rest = _answer(s)
        assert head.startswith(b"HTTP/1.1 200 OK"), head
        head, _, rest = _answer(s, rest)
        assert head.startswith(b"HTTP/1.1 200 OK"), head
        # 2: the head with half the body, the other half later.
        half = len(bodies[2]) // 2
        s.sendall(_post_head(len(bodies[2])) + bodies[2][:half])
        threading.Event().wait(0.05)
        s.sendall(bodies[2][half:])
        head, _, rest = _answer(s, rest)
        assert head.startswith(b"HTTP/1.1 200 OK"), head
        # 3: chunked, in one write.
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (bodies[3][:7], bodies[3][7:]))
        s.sendall(_post_head(None) + chunked + b"0\r\n\r\n")
        head, _, rest = _answer(s, rest)
        assert head.startswith(b"HTTP/1.1 200 OK"), head
        # 4: chunked, a chunk's size line split from its data and the end coming last.
        s.sendall(_post_head(None) + b"%x\r" % len(bodies[4]))
        threading.Event().wait(0.05)
        s.sendall(b"\n" + bodies[4] + b"\r\n")
        threading.Event().wait(0.05)
        s.sendall(b"0\r\n\r\n")
        head, _, rest = _answer(s, rest)
        assert head.startswith(b"HTTP/1.1 200 OK"), head
        # 5: the head alone, then the whole body.
        s.sendall(_post_head(len(bodies[5])))
        threading.Event().wait(0.05)
        s.sendall(bodies[5])
        head, _, rest = _answer(s, rest)
        assert head.startswith(b"HTTP/1.1 200 OK"), head
        assert rest == b""
    for n in range(6):  # each body whole, in order
        assert c.expect("e") == {"n": n, "pad": "p" * 40 * n}


def test_a_chunked_body_over_the_limit_is_413(skyrelay_server_factory):
    server = skyrelay_server_factory(publish_token=TOKEN, max_body_size=1024)
    big = b"x" * 3000
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(_post_head(None) + b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big))
        answer = read_head(s)
        assert answer.startswith(b"HTTP/1.1 413 "), answer
