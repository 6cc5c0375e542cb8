"""skyrelay.RateLimiter: the limiter from Python (exact waits, the key bound, threads), a Flask
app served on skyrelay's WSGI mount and a FastAPI app on uvicorn, both on 127.0.0.1 and hit
over real HTTP."""

from __future__ import annotations

import math
import socket
import threading
import time

import pytest

import skyrelay
from skyrelay import _core
from skyrelay.ratelimit import Decision, RateLimiter

pytestmark = pytest.mark.timeout(90)


# ---- the limiter ------------------------------------------------------------------------------


def test_exported_lazily_from_the_package():
    assert skyrelay.RateLimiter is RateLimiter
    assert "RateLimiter" in skyrelay.__all__


def test_burst_then_denied_with_a_decision_that_is_false():
    limiter = RateLimiter(rate=1, burst=3)
    got = [limiter.acquire("alice") for _ in range(4)]
    assert [d.allowed for d in got] == [True, True, True, False]
    # Real time passes between calls, so a few microseconds' worth of refill shows.
    assert [d.remaining for d in got] == pytest.approx([2.0, 1.0, 0.0, 0.0], abs=0.01)
    assert all(got[:3]) and not got[3]  # truthiness is `allowed`, not tuple non-emptiness
    assert got[0].retry_after == 0.0
    assert 0.9 < got[3].retry_after <= 1.0
    allowed, retry_after, remaining = got[3]  # still unpacks as a tuple
    assert allowed is False and retry_after == got[3].retry_after
    assert remaining == got[3].remaining == pytest.approx(0, abs=0.01)
    assert limiter.acquire("bob").allowed  # another key, another bucket
    assert len(limiter) == 2


def test_cost_fractional_and_zero():
    limiter = RateLimiter(rate=0.001, burst=10)
    assert limiter.acquire("k", cost=7).remaining == pytest.approx(3, abs=1e-3)
    denied = limiter.acquire("k", cost=4)
    assert not denied and denied.remaining == pytest.approx(3, abs=1e-3)
    assert limiter.acquire("k", cost=2.5)  # the 3 were not touched by the refusal
    peek = limiter.acquire("k", cost=0)
    assert peek.allowed and peek.remaining == pytest.approx(0.5, abs=1e-3)


def test_bad_arguments():
    with pytest.raises(ValueError):
        RateLimiter(rate=0, burst=1)
    with pytest.raises(ValueError):
        RateLimiter(rate=1, burst=-1)
    with pytest.raises(ValueError):
        RateLimiter(rate=float("nan"), burst=1)
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ValueError):
            RateLimiter(rate=1, burst=1, max_keys=bad)
    limiter = RateLimiter(rate=1, burst=2)
    with pytest.raises(ValueError):
        limiter.acquire("k", cost=3)  # could never pass
    with pytest.raises(ValueError):
        limiter.acquire("k", cost=-1)
    with pytest.raises(TypeError):
        limiter.acquire(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        limiter.acquire(b"k")  # type: ignore[arg-type]
    assert len(limiter) == 0
    assert repr(limiter) == "RateLimiter(rate=1, burst=2, max_keys=100000)"
    assert (limiter.rate, limiter.burst, limiter.max_keys) == (1.0, 2.0, 100_000)


def test_reset_and_unicode_keys():
    limiter = RateLimiter(rate=0.001, burst=1)
    assert limiter.acquire("café ☕")
    assert not limiter.acquire("café ☕")
    assert limiter.acquire("cafe ☕")  # a different string, a different bucket
    assert limiter.reset("café ☕") is True
    assert limiter.reset("café ☕") is False
    assert limiter.acquire("café ☕")


def test_retry_after_header_rounds_up_to_whole_seconds():
    assert Decision(False, 0.000001, 0).retry_after_header == "1"
    assert Decision(False, 1.0, 0).retry_after_header == "1"
    assert Decision(False, 1.2, 0).retry_after_header == "2"
    assert Decision(False, 59.99, 0).retry_after_header == "60"


def test_waiting_retry_after_is_enough_on_the_real_clock():
    limiter = RateLimiter(rate=20, burst=2)  # a token every 50 ms
    for _ in range(3):  # three rounds: drain, wait what we were told, pass
        while limiter.acquire("k"):
            pass
        denied = limiter.acquire("k")
        assert not denied and 0 < denied.retry_after <= 0.05
        time.sleep(denied.retry_after)
        assert limiter.acquire("k").allowed


def test_retry_after_exact_through_the_binding():
    # The binding's explicit-time entry point: the wait is exact to the nanosecond.
    core = _core.RateLimiter(3.0, 1.0)
    t0 = 10**12
    assert core.acquire_at("k", 1, t0) == (True, 0, 0.0)
    allowed, wait_ns, _ = core.acquire_at("k", 1, t0)
    assert (allowed, wait_ns) == (False, 333_333_334)  # ceil(1e9 / 3)
    assert core.acquire_at("k", 1, t0 + wait_ns - 1) == (False, 1, pytest.approx(1, abs=1e-8))
    assert core.acquire_at("k", 1, t0 + wait_ns)[0] is True


def test_max_keys_bounds_memory_and_counts_drops():
    limiter = RateLimiter(rate=1, burst=5, max_keys=50)
    for i in range(5000):
        assert limiter.acquire(f"client-{i}")
        assert len(limiter) <= 50
    stats = limiter.stats()
    assert stats["keys"] == len(limiter) <= 50
    assert stats["expired"] + stats["evicted"] == 5000 - stats["keys"]
    assert stats["evicted"] > 0  # no bucket had time to refill fully (5 s)


def test_sweep_drops_refilled_buckets():
    limiter = RateLimiter(rate=100, burst=1)  # refills in 10 ms
    for i in range(20):
        limiter.acquire(f"k{i}")
    assert len(limiter) == 20
    time.sleep(0.05)
    assert limiter.sweep() == 20
    assert len(limiter) == 0 and limiter.stats()["expired"] == 20


def test_threads_hammering_shared_keys_get_exactly_the_burst():
    """Four threads drain eight shared keys at once. The refill is negligible (one token in
    1,000 s), so each key must pass exactly `burst` times in all, and each remaining-count
    from `burst - 1` down to 0 must be handed out exactly once: two threads never get the
    same token. acquire releases the GIL, so the threads can be inside it together; which thread
wins which token is up to the scheduler, so only the totals are checked."""
    burst, keys, threads, calls = 400, 8, 4, 2000
    limiter = RateLimiter(rate=0.001, burst=burst)
    start = threading.Barrier(threads)
    results: list[list[tuple[int, float]]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def hammer(t: int) -> None:
        try:
            start.wait(timeout=30)
            for i in range(calls):
                k = (i * 5 + t * 3) % keys
                d = limiter.acquire(f"key-{k}")
                if d:
                    results[t].append((k, d.remaining))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    pool = [threading.Thread(target=hammer, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join(timeout=60)
    assert not any(th.is_alive() for th in pool) and not errors
    per_key: dict[int, list[float]] = {}
    for rows in results:
        for k, remaining in rows:
            per_key.setdefault(k, []).append(remaining)
    assert sorted(per_key) == list(range(keys))
    assert sum(len(rows) for rows in results) == keys * burst  # 8,000 calls, 3,200 passed
    for k, rems in per_key.items():
        assert sorted(math.floor(r + 1e-6) for r in rems) == list(range(burst)), k


# ---- Flask on skyrelay's WSGI mount ---------------------------------------------------------

flask = pytest.importorskip("flask")
requests = pytest.importorskip("requests")


@pytest.fixture
def flask_site():
    app = flask.Flask("ratelimit_test")
    by_address = RateLimiter(rate=2, burst=3)            # a token every 500 ms
    by_user = RateLimiter(rate=0.001, burst=2)
    views = {"n": 0}

    @app.get("/limited")
    @by_address.flask()
    def limited():
        views["n"] += 1
        return {"ok": True}

    @app.get("/user")
    @by_user.flask(key=lambda request: request.headers.get("X-User"))
    def user():
        return {"user": flask.request.headers.get("X-User")}

    @app.post("/upload")
    @by_user.flask(key=lambda request: "upload:" + request.headers["X-User"], cost=2)
    def upload():
        return "stored"

    @app.get("/free")
    def free():
        return "free"

    with skyrelay.Server(host="127.0.0.1", port=0, wsgi_app=app) as server:
        yield f"http://127.0.0.1:{server.port}", views, by_address


def test_flask_burst_then_429_with_retry_after_then_passes_after_waiting(flask_site):
    base, views, limiter = flask_site
    with requests.Session() as http:
        for _ in range(3):
            r = http.get(base + "/limited", timeout=10)
            assert r.status_code == 200 and r.json() == {"ok": True}
        r = http.get(base + "/limited", timeout=10)
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "1"  # under half a second, rounded up
        assert r.headers["Content-Type"].startswith("application/json")
        body = r.json()
        assert body["error"] == "rate_limited"
        assert 0 < body["retry_after"] <= 0.5
        assert r.headers["Retry-After"] == str(math.ceil(body["retry_after"]))
        assert views["n"] == 3  # the refused request never reached the view
        # The bucket is keyed by the client address that skyrelay handed to the app.
        assert len(limiter) == 1 and not limiter.acquire("127.0.0.1", cost=0.9)
        # Other routes are not limited.
        assert http.get(base + "/free", timeout=10).status_code == 200
        time.sleep(body["retry_after"])
        r = http.get(base + "/limited", timeout=10)
        assert r.status_code == 200 and views["n"] == 4


def test_flask_custom_key_cost_and_exemption(flask_site):
    base, _, _ = flask_site
    with requests.Session() as http:
        alice = {"X-User": "alice"}
        assert [http.get(base + "/user", headers=alice, timeout=10).status_code
                for _ in range(3)] == [200, 200, 429]
        # Another key passes while alice waits.
        r = http.get(base + "/user", headers={"X-User": "bob"}, timeout=10)
        assert r.status_code == 200 and r.json() == {"user": "bob"}
        # No X-User: the key function returns None and the request is not limited.
        assert all(http.get(base + "/user", timeout=10).status_code == 200 for _ in range(6))
        # cost=2 on a burst of 2: one upload, then 429 (a separate "upload:" bucket).
        assert http.post(base + "/upload", headers=alice, timeout=10).text == "stored"
        r = http.post(base + "/upload", headers=alice, timeout=10)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 1000  # 2 tokens, 0.001/s


def test_flask_async_view():
    pytest.importorskip("asgiref")  # Flask runs async views through asgiref
    app = flask.Flask("ratelimit_async")
    limiter = RateLimiter(rate=0.001, burst=1)

    @app.get("/a")
    @limiter.flask()
    async def a():
        return "async ok"

    with app.test_client() as client:
        assert client.get("/a").text == "async ok"
        assert client.get("/a").status_code == 429


# ---- FastAPI on uvicorn -----------------------------------------------------------------------


@pytest.fixture
def fastapi_site():
    fastapi = pytest.importorskip("fastapi")
    uvicorn = pytest.importorskip("uvicorn")
    from fastapi import Depends, FastAPI

    app = FastAPI()
    by_address = RateLimiter(rate=2, burst=3)
    by_user = RateLimiter(rate=0.001, burst=2)
    calls = {"items": 0}

    @app.get("/items", dependencies=[Depends(by_address.fastapi())])
    async def items():
        calls["items"] += 1
        return {"items": [1, 2, 3]}

    def user_key(request: fastapi.Request) -> str | None:
        return request.headers.get("x-user")

    @app.get("/me")
    def me(decision: Decision | None = Depends(by_user.fastapi(key=user_key))):
        return {"remaining": None if decision is None else decision.remaining}

    async def tenant_key(request: fastapi.Request) -> str:
        return "tenant:" + request.query_params.get("tenant", "none")

    @app.get("/report")
    async def report(decision=Depends(by_user.fastapi(key=tenant_key, cost=2))):
        return {"allowed": decision.allowed}

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.02)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}", calls, by_address
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


def test_fastapi_burst_then_429_with_retry_after_then_passes_after_waiting(fastapi_site):
    httpx = pytest.importorskip("httpx")
    base, calls, limiter = fastapi_site
    with httpx.Client(base_url=base, timeout=10) as http:
        for _ in range(3):
            r = http.get("/items")
            assert r.status_code == 200 and r.json() == {"items": [1, 2, 3]}
        r = http.get("/items")
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1"
        detail = r.json()["detail"]
        assert detail["error"] == "rate_limited" and 0 < detail["retry_after"] <= 0.5
        assert calls["items"] == 3
        assert len(limiter) == 1 and not limiter.acquire("127.0.0.1", cost=0.9)
        time.sleep(detail["retry_after"])
        assert http.get("/items").status_code == 200 and calls["items"] == 4


def test_fastapi_custom_keys_decision_and_exemption(fastapi_site):
    httpx = pytest.importorskip("httpx")
    base, _, _ = fastapi_site
    with httpx.Client(base_url=base, timeout=10) as http:
        alice = {"x-user": "alice"}
        first = http.get("/me", headers=alice)
        assert first.status_code == 200 and first.json()["remaining"] == pytest.approx(1, abs=1e-3)
        assert http.get("/me", headers=alice).json()["remaining"] == pytest.approx(0, abs=1e-3)
        r = http.get("/me", headers=alice)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 999
        # Another key passes.
        assert http.get("/me", headers={"x-user": "bob"}).status_code == 200
        # No key: exempt, and the dependency gives None.
        assert [http.get("/me").json() for _ in range(4)] == [{"remaining": None}] * 4
        # An async key function and cost=2: one report per tenant.
        assert http.get("/report", params={"tenant": "acme"}).json() == {"allowed": True}
        assert http.get("/report", params={"tenant": "acme"}).status_code == 429
        assert http.get("/report", params={"tenant": "initech"}).status_code == 200


@pytest.mark.parametrize("text, rate, burst", [
    ("100/minute", 100 / 60, 100), ("10 per second", 10, 10), ("1000 per 2 hours", 1000 / 7200, 1000),
    ("5/Day", 5 / 86400, 5), ("2 per 10 seconds", 0.2, 2), ("  7 / minutes ", 7 / 60, 7),
])
def test_limits_package_notation(text, rate, burst):
    from skyrelay._rate_text import parse_rate

    assert parse_rate(text) == (pytest.approx(rate), burst)
    limiter = RateLimiter(text)
    assert (limiter.rate, limiter.burst) == (pytest.approx(rate), burst)


def test_limits_notation_as_a_bucket():
    limiter = RateLimiter("3/minute")              # 3 at once, then one every 20 s
    assert all(limiter.acquire("k") for _ in range(3))
    denied = limiter.acquire("k")
    assert not denied and 19.9 < denied.retry_after <= 20.0
    assert RateLimiter("3/minute", burst=1).burst == 1   # burst= still sets the size
    for bad in ("3/fortnight", "per minute", "3 minute", "0/second", "10/second;100/minute", "-1/s"):
        with pytest.raises(ValueError):
            RateLimiter(bad)
    with pytest.raises(TypeError):
        RateLimiter(5)                              # a numeric rate needs its burst
