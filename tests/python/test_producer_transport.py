"""The producer's transport (issue 17 item 2): proxy settings as requests and httpx read them
(HTTP_PROXY/HTTPS_PROXY/ALL_PROXY, NO_PROXY, trust_env=False, proxy=, credentials in the proxy
URL), absolute-form requests for http and CONNECT tunnels for https, retries through a proxy,
and a bounded pool of keep-alive connections with requests really in flight at once. Through
a real forward proxy on 127.0.0.1 (forward_proxy.py) to a real server and a real client."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from forward_proxy import ForwardProxy
from skyrelay import AsyncProducer, Producer, PublishError
from skyrelay.testing import connect, metric
from tlscerts import PKI

TOKEN = "t0ken-for-producer-transport"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def no_proxy_settings(monkeypatch):
    """Each test starts with no proxy in the environment (either case)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def server(skyrelay_server_factory):
    return skyrelay_server_factory(publish_token=TOKEN)


@pytest.fixture
def proxy():
    with ForwardProxy() as p:
        yield p


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_http_goes_through_the_environments_proxy_in_absolute_form(server, skyrelay_client,
                                                                    monkeypatch):
    client = skyrelay_client(server)
    client.subscribe("WELL-1")
    with ForwardProxy(user="ops", password="p@ss word") as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://ops:p%40ss%20word@127.0.0.1:{proxy.port}")
        with Producer(server.http_url, token=TOKEN) as producer:
            for i in range(3):
                assert producer.emit("reading", i, to="WELL-1").seq == i + 1
    target = f"http://127.0.0.1:{server.port}/api/publish"
    assert proxy.request_lines == [f"POST {target}"] * 3
    # The credentials of the URL, percent-decoded, on every forwarded request.
    assert set(proxy.credentials) == {proxy._expected}
    assert proxy.connections == 1  # kept alive through the proxy
    assert [client.expect("reading") for _ in range(3)] == [0, 1, 2]


def test_no_proxy_and_trust_env_false_go_direct(server, skyrelay_client, proxy, monkeypatch):
    client = skyrelay_client(server)
    client.subscribe("t")
    monkeypatch.setenv("http_proxy", proxy.url)
    monkeypatch.setenv("no_proxy", "example.org,127.0.0.1")
    with Producer(server.http_url, token=TOKEN) as producer:
        producer.emit("e", "bypassed", to="t")
    monkeypatch.delenv("no_proxy")
    monkeypatch.setenv("no_proxy", "10.0.0.0/8, 127.0.0.0/24")  # ranges, as requests reads them
    with Producer(server.http_url, token=TOKEN) as producer:
        producer.emit("e", "in range", to="t")
    monkeypatch.delenv("no_proxy")
    with Producer(server.http_url, token=TOKEN, trust_env=False) as producer:
        producer.emit("e", "untrusted", to="t")
    with Producer(server.http_url, token=TOKEN, proxy="") as producer:
        producer.emit("e", "no proxy", to="t")
    assert proxy.request_lines == []
    # ALL_PROXY is the fallback for a scheme without its own variable.
    monkeypatch.delenv("http_proxy")
    monkeypatch.setenv("ALL_PROXY", proxy.url)
    with Producer(server.http_url, token=TOKEN) as producer:
        producer.emit("e", "all", to="t")
    assert len(proxy.request_lines) == 1
    assert [client.expect("e") for _ in range(5)] == ["bypassed", "in range", "untrusted",
                                                      "no proxy", "all"]


def test_an_explicit_proxy_wins_over_the_environment(server, skyrelay_client, proxy,
                                                     monkeypatch):
    client = skyrelay_client(server)
    client.subscribe("t")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead_port()}")
    with Producer(server.http_url, token=TOKEN, proxy=proxy.url, retries=0) as producer:
        producer.emit("e", 1, to="t")
    assert proxy.request_lines == [f"POST http://127.0.0.1:{server.port}/api/publish"]
    assert client.expect("e") == 1
    with pytest.raises(ValueError, match="only http:// proxies"):
        Producer(server.http_url, proxy="socks5://127.0.0.1:1080")
    monkeypatch.setenv("HTTP_PROXY", "https://user:secret@proxy.example:3128")
    with pytest.raises(ValueError) as err:
        Producer(server.http_url)
    assert "secret" not in str(err.value)  # the password stays out of the message


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_server(skyrelay_server_factory, pki):
    server = skyrelay_server_factory(publish_token=TOKEN, ssl_certfile=pki.cert,
                                     ssl_keyfile=pki.key)
    assert server.http_url.startswith("https://")
    return server


@pytest.fixture
def tls_client(tls_server, pki):
    with connect(f"wss://127.0.0.1:{tls_server.port}/ws", ssl=pki.client_context()) as client:
        yield client


def test_https_goes_through_a_connect_tunnel(tls_server, tls_client, pki, monkeypatch):
    server, client = tls_server, tls_client
    client.subscribe("t")
    with ForwardProxy(user="ops", password="pw") as proxy:
        monkeypatch.setenv("HTTPS_PROXY", f"http://ops:pw@127.0.0.1:{proxy.port}")
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead_port()}")  # not for https
        tunnel = f"CONNECT 127.0.0.1:{server.port}"
        with Producer(server.http_url, token=TOKEN, verify=str(pki.ca)) as producer:
            assert producer.emit("e", "sync", to="t").seq == 1
            assert producer.emit("e", "again", to="t").seq == 2
        assert proxy.request_lines == [tunnel]  # one tunnel, kept alive

        async def publish():
            async with AsyncProducer(server.http_url, token=TOKEN,
                                     verify=pki.client_context()) as producer:
                return await asyncio.gather(*(producer.emit("e", f"async {i}", to="t")
                                              for i in range(3)))

        assert sorted(p.seq for p in asyncio.run(publish())) == [3, 4, 5]
        assert set(proxy.request_lines) == {tunnel} and len(proxy.request_lines) <= 4
        assert set(proxy.credentials) == {proxy._expected}
        # A CA that signed nothing of ours: refused at once, not retried.
        with Producer(server.http_url, token=TOKEN, verify=str(pki.other_ca), retries=5,
                      backoff=5) as producer:
            with pytest.raises(PublishError, match="CERTIFICATE_VERIFY_FAILED"):
                producer.emit("e", "untrusted", to="t")
    got = [client.expect("e") for _ in range(5)]
    assert got[:2] == ["sync", "again"] and sorted(got[2:]) == ["async 0", "async 1", "async 2"]
    client.expect_nothing(0.2, "event")


def test_a_proxy_that_wants_credentials_answers_407_without_retries(server, monkeypatch):
    with ForwardProxy(user="ops", password="pw") as proxy:
        with Producer(server.http_url, token=TOKEN, proxy=proxy.url, retries=3) as producer:
            with pytest.raises(PublishError) as err:
                producer.emit("e", 1)
        assert err.value.status == 407
        with Producer(server.http_url.replace("http:", "https:"), token=TOKEN,
                      proxy=f"http://ops:wrong@127.0.0.1:{proxy.port}", retries=3) as producer:
            with pytest.raises(PublishError) as err:
                producer.emit("e", 1)
        assert (err.value.status, err.value.code) == (407, "proxy_refused")
        assert len(proxy.request_lines) == 2  # one try each
    assert metric(server, 'skyrelay_received_messages_total{transport="publish"}') == 0


def test_a_lost_answer_through_the_proxy_is_retried_and_published_once(server,
                                                                      skyrelay_client):
    client = skyrelay_client(server)
    client.subscribe("t")
    with ForwardProxy(cut_first_answer=True) as proxy:
        with Producer(server.http_url, token=TOKEN, proxy=proxy.url, backoff=0.01) as producer:
            result = producer.emit("once", 1, to="t")
    assert len(proxy.request_lines) == 2  # the same request (same key) twice
    assert result.duplicate is True and result.seq == 1
    assert client.expect("once") == 1
    client.expect_nothing(0.3, "event")

    async def publish():
        async with AsyncProducer(server.http_url, token=TOKEN, proxy=proxy.url,
                                 backoff=0.01) as producer:
            return await producer.emit("twice?", 2, to="t")

    with ForwardProxy(cut_first_answer=True) as proxy:
        result = asyncio.run(publish())
    assert len(proxy.request_lines) == 2
    assert result.duplicate is True and result.seq == 2
    assert client.expect("twice?") == 2
    client.expect_nothing(0.3, "event")


def test_async_emits_are_in_flight_at_once_up_to_max_connections(server, skyrelay_client):
    client = skyrelay_client(server)
    client.subscribe("t")
    with ForwardProxy(hold=4) as proxy:

        async def publish():
            async with AsyncProducer(server.http_url, token=TOKEN, proxy=proxy.url,
                                     max_connections=4) as producer:
                return await asyncio.gather(*(producer.emit("e", i, to="t")
                                              for i in range(12)))

        results = asyncio.run(publish())
    # Four requests waited for each other at the proxy: they were sent at the same time.
    assert proxy.max_in_flight == 4
    assert proxy.connections == 4  # the pool's bound, each connection reused
    assert sorted(p.seq for p in results) == list(range(1, 13))
    assert sorted(client.expect("e") for _ in range(12)) == list(range(12))


def test_threads_share_the_blocking_pool(server, skyrelay_client):
    client = skyrelay_client(server)
    client.subscribe("t")
    with ForwardProxy(hold=3) as proxy, \
            Producer(server.http_url, token=TOKEN, proxy=proxy.url,
                     max_connections=3) as producer:
        threads = [threading.Thread(target=lambda i=i: producer.emit("e", i, to="t"))
                   for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert proxy.max_in_flight == 3 and proxy.connections == 3
    assert sorted(client.expect("e") for _ in range(6)) == list(range(6))


def test_a_batch_keeps_its_order_across_requests(server, skyrelay_client):
    """The promise: one batch's requests go one after another, each published in order,
    whatever max_connections is."""
    client = skyrelay_client(server)
    client.subscribe("t")

    async def publish():
        async with AsyncProducer(server.http_url, token=TOKEN, batch_size=5,
                                 max_connections=4) as producer:
            return await producer.emit_many({"event": "e", "data": i, "to": "t"}
                                            for i in range(23))

    results = asyncio.run(publish())
    assert [p.seq for p in results] == list(range(1, 24))
    assert [client.expect("e") for _ in range(23)] == list(range(23))
    assert metric(server, 'skyrelay_received_messages_total{transport="publish"}') == 5


def test_bad_settings_fail_early(server):
    with pytest.raises(ValueError, match="max_connections"):
        Producer(server.http_url, max_connections=0)
    with pytest.raises(ValueError, match="control characters"):
        Producer(server.http_url, token="abc\r\nX-Injected: 1")
    with Producer(server.http_url, token=TOKEN) as producer:
        with pytest.raises(ValueError, match="control characters"):
            producer.emit("e", 1, idempotency_key="k\nX: y")
    assert metric(server, 'skyrelay_received_messages_total{transport="publish"}') == 0


def test_an_async_producer_outlives_its_event_loop(server, skyrelay_client):
    """Notebooks and scripts call asyncio.run more than once with one producer: the second
    loop gets fresh connections instead of the first loop's dead ones."""
    client = skyrelay_client(server)
    client.subscribe("t")
    producer = AsyncProducer(server.http_url, token=TOKEN, retries=0)
    first = asyncio.run(producer.emit("e", 1, to="t"))
    second = asyncio.run(producer.emit("e", 2, to="t"))
    asyncio.run(producer.close())
    assert (first.seq, second.seq) == (1, 2)
    assert [client.expect("e") for _ in range(2)] == [1, 2]


def test_a_stale_kept_alive_connection_is_replaced_without_a_retry(server, skyrelay_client):
    """The peer closed the idle connection without a `Connection: close`: the next request
    finds it dead and goes again at once on a new one, even with retries=0."""
    client = skyrelay_client(server)
    client.subscribe("t")
    with ForwardProxy(close_after_answer=True) as proxy:
        with Producer(server.http_url, token=TOKEN, proxy=proxy.url, retries=0) as producer:
            assert [producer.emit("e", i, to="t").seq for i in range(3)] == [1, 2, 3]

        async def publish():
            async with AsyncProducer(server.http_url, token=TOKEN, proxy=proxy.url,
                                     retries=0, max_connections=1) as producer:
                return [(await producer.emit("e", i, to="t")).seq for i in range(3, 6)]

        assert asyncio.run(publish()) == [4, 5, 6]
    assert proxy.connections == 6
    assert [client.expect("e") for _ in range(6)] == list(range(6))


def test_chunked_answers_are_read(server, skyrelay_client):
    client = skyrelay_client(server)
    client.subscribe("t")
    with ForwardProxy(chunked=True) as proxy:
        with Producer(server.http_url, token=TOKEN, proxy=proxy.url, retries=0) as producer:
            assert [producer.emit("e", i, to="t").seq for i in range(2)] == [1, 2]

        async def publish():
            async with AsyncProducer(server.http_url, token=TOKEN, proxy=proxy.url,
                                     retries=0) as producer:
                return (await producer.emit("e", 2, to="t")).seq

        assert asyncio.run(publish()) == 3
    assert proxy.connections == 2  # kept alive after chunked answers
    assert [client.expect("e") for _ in range(3)] == [0, 1, 2]
