"""The whole /metrics exposition, read by prometheus_client's own parser after real traffic on
every transport: the Prometheus naming conventions hold for every family, the traffic carries
a `transport` label, and skyrelay_build_info and the process_* families are there and agree
with prometheus_client's own process collector."""

from __future__ import annotations

import json
import queue
import re
import time
from typing import Any

import httpx
import pytest
import socketio
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.samples import Sample
from sse_client import Stream

import skyrelay
from skyrelay.testing import wait_until

TOKEN = "metrics-format-token"
TRANSPORTS = ("json", "socketio", "polling", "sse", "publish")
NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def scrape(server: skyrelay.Server) -> str:
    answer = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return answer.text


def families(text: str) -> dict[str, Any]:
    """The exposition's families by name; each name once."""
    out: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        assert family.name not in out, f"{family.name} announced twice"
        out[family.name] = family
    return out


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition: (name, sorted labels) -> value."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]


def sio_client(server: skyrelay.Server, transport: str, clients: list) -> socketio.Client:
    events: queue.Queue = queue.Queue()
    client = socketio.Client(reconnection=False)
    client.on("tick", lambda data: events.put(data))
    client.connect(f"http://127.0.0.1:{server.port}", transports=[transport], wait_timeout=5)
    clients.append(client)
    client.events = events  # type: ignore[attr-defined]
    return client


@pytest.fixture
def traffic(skyrelay_server_factory, skyrelay_client):
    """A server after JSON-protocol, Socket.IO (WebSocket and polling), SSE and publish API
    traffic, each client still connected: (server, the JSON client)."""
    server = skyrelay_server_factory(publish_token=TOKEN)
    clients: list[socketio.Client] = []
    json_client = skyrelay_client(server)
    json_client.subscribe("t")
    assert json_client.ping()["type"] == "pong"
    sio_ws = sio_client(server, "websocket", clients)
    sio_poll = sio_client(server, "polling", clients)
    stream = Stream(f"http://127.0.0.1:{server.port}/sse/t")
    try:
        stream.next_event("welcome")
        answer = httpx.post(f"http://127.0.0.1:{server.port}/api/publish",
                            content=json.dumps({"event": "tick", "data": 1, "to": "t"}),
                            headers={"Authorization": f"Bearer {TOKEN}",
                                     "Content-Type": "application/json"}, timeout=5)
        assert answer.status_code == 200, answer.text
        server.emit("tick", 2)  # everyone: both Socket.IO clients and the two others
        assert json_client.expect("tick") == 1 and json_client.expect("tick") == 2
        assert json.loads(stream.next_event("tick").data) == 1
        assert sio_ws.events.get(timeout=5) == 2
        assert sio_poll.events.get(timeout=5) == 2
        yield server, json_client
    finally:
        stream.close()
        for client in clients:
            client.disconnect()


def test_every_family_follows_the_naming_conventions(traffic):
    server, _ = traffic
    text = scrape(server)
    parsed = families(text)
    assert len(parsed) >= 50
    # The parser names a counter's samples name_total whatever the text says, so the text
    # itself is read for the counters' names, and for HELP and TYPE before every family.
    helped = re.findall(r"^# HELP (\S+) \S", text, re.M)
    typed = re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M)
    assert [name for name, _ in typed] == helped
    for name, kind in typed:
        assert name.endswith("_total") == (kind == "counter"), f"{kind} {name}"
    announced = {name for name, _ in typed}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            sample = re.match(r"[^{ ]+", line).group(0)
            assert sample in announced or re.sub(r"_(bucket|sum|count)$", "", sample) \
                in announced, f"{sample} has no HELP/TYPE"
    for name, family in parsed.items():
        assert NAME.match(name), name
        assert name.startswith(("skyrelay_", "process_")), name
        assert family.documentation, f"{name} has no HELP"
        assert family.type in ("counter", "gauge", "histogram"), (name, family.type)
        for sample in family.samples:
            if family.type == "counter":
                # the parser takes _total off a counter's family name, not off its samples
                assert sample.name == name + "_total", f"counter {sample.name} lacks _total"
            elif family.type == "gauge":
                assert sample.name == name and not name.endswith("_total"), sample.name
            else:
                assert sample.name in (name + "_bucket", name + "_sum", name + "_count")
            # Base units, and the unit last (before _total): skyrelay_received_bytes_total,
            # never skyrelay_bytes_in_total.
            stem = sample.name.removesuffix("_total")
            for unit in ("bytes", "seconds"):
                if unit in stem.split("_") and family.type != "histogram":
                    assert stem.endswith("_" + unit), f"{sample.name}: the unit goes last"
            for word in ("milliseconds", "kilobytes", "megabytes", "_ms_"):
                assert word not in sample.name + "_", f"{sample.name}: not a base unit"
    # The transport is a label, not part of a family's name.
    for name in parsed:
        assert not re.search(r"publish_api|_ws_|_sse_|_polling_|_in_total|_out_total", name), \
            name


def test_traffic_carries_a_transport_label(traffic):
    server, _ = traffic
    text = scrape(server)
    parsed = families(text)
    for name in ("skyrelay_open_connections", "skyrelay_connections_opened",
                 "skyrelay_connections_closed", "skyrelay_received_messages",
                 "skyrelay_received_bytes", "skyrelay_sent_messages", "skyrelay_sent_bytes",
                 "skyrelay_sent_frames", "skyrelay_write_calls"):
        labels = {tuple(s.labels) for s in parsed[name].samples}
        assert labels == {("transport",)}, name
        assert {s.labels["transport"] for s in parsed[name].samples} <= set(TRANSPORTS)

    def open_(transport: str) -> float:
        return value(text, "skyrelay_open_connections", transport=transport)

    # The fixture's clients, each on its own transport, are all still connected.
    assert (open_("json"), open_("socketio"), open_("polling"), open_("sse")) == (1, 1, 1, 1)
    received = {t: value(text, "skyrelay_received_messages_total", transport=t)
                for t in ("json", "socketio", "polling", "publish")}
    assert received["json"] >= 2  # subscribe, ping
    assert received["socketio"] >= 1 and received["polling"] >= 1  # CONNECT packets at least
    assert received["publish"] == 1
    assert value(text, "skyrelay_received_bytes_total", transport="publish") > 20
    assert value(text, "skyrelay_received_bytes_total", transport="polling") > 0
    for transport in ("json", "socketio", "polling", "sse"):
        assert value(text, "skyrelay_sent_messages_total", transport=transport) >= 1, transport
        assert value(text, "skyrelay_sent_bytes_total", transport=transport) > 0, transport
    for transport in ("json", "socketio", "sse"):
        assert value(text, "skyrelay_write_calls_total", transport=transport) >= 1, transport


def test_a_closed_connection_moves_from_open_to_closed(traffic):
    server, json_client = traffic
    before = scrape(server)
    json_client.close()
    assert wait_until(lambda: value(scrape(server), "skyrelay_open_connections",
                                    transport="json") == 0)
    after = scrape(server)
    assert value(after, "skyrelay_connections_closed_total", transport="json") == \
        value(before, "skyrelay_connections_closed_total", transport="json") + 1
    assert value(after, "skyrelay_open_connections", transport="sse") == 1  # untouched


def test_build_info_names_the_version_and_libraries(traffic):
    server, _ = traffic
    info = families(scrape(server))["skyrelay_build_info"]
    assert info.type == "gauge" and len(info.samples) == 1
    sample: Sample = info.samples[0]
    assert sample.value == 1
    assert sample.labels["version"] == skyrelay.__version__
    assert re.fullmatch(r"1\.\d+\.\d+", sample.labels["boost"]), sample.labels
    assert re.match(r"\d+\.\d+\.\d+", sample.labels["openssl"]), sample.labels
    assert re.match(r"(gcc|clang) \d+", sample.labels["compiler"]), sample.labels


def test_process_metrics_agree_with_prometheus_client(traffic):
    server, _ = traffic
    # prometheus_client reads the same process (the engine runs in this one) on its own.
    theirs = {s.name: s.value for f in ProcessCollector(registry=None).collect()
              for s in f.samples}
    text = scrape(server)
    ours = {name: value(text, name) for name in theirs}
    assert set(theirs) == {"process_cpu_seconds_total", "process_resident_memory_bytes",
                           "process_virtual_memory_bytes", "process_open_fds",
                           "process_max_fds", "process_start_time_seconds"}
    assert ours["process_max_fds"] == theirs["process_max_fds"]
    assert abs(ours["process_start_time_seconds"] - theirs["process_start_time_seconds"]) < 1.5
    assert 0 < ours["process_cpu_seconds_total"] < theirs["process_cpu_seconds_total"] + 5
    assert ours["process_resident_memory_bytes"] > 10 * 2**20
    assert ours["process_resident_memory_bytes"] < ours["process_virtual_memory_bytes"]
    assert abs(ours["process_virtual_memory_bytes"] - theirs["process_virtual_memory_bytes"]) \
        < 0.25 * theirs["process_virtual_memory_bytes"]
    assert abs(ours["process_open_fds"] - theirs["process_open_fds"]) <= 8
    assert ours["process_start_time_seconds"] <= time.time()


def test_open_fds_follow_open_connections(skyrelay_server_factory, skyrelay_client):
    server = skyrelay_server_factory()
    fds = lambda: value(scrape(server), "process_open_fds")  # noqa: E731
    before = fds()
    clients = [skyrelay_client(server) for _ in range(20)]
    assert wait_until(lambda: server.connection_count == 20)
    # Both ends are in this process: a descriptor per client on each side, 40 in all (with
    # some slack for descriptors of earlier tests closing meanwhile).
    during = fds()
    assert during >= before + 30, (before, during)
    for client in clients:
        client.close()
    assert wait_until(lambda: server.connection_count == 0)
    assert wait_until(lambda: fds() <= during - 30, timeout=10), (fds(), during)


def test_metrics_path_none_turns_the_route_off(skyrelay_server_factory):
    server = skyrelay_server_factory(metrics_path=None)
    http = f"http://127.0.0.1:{server.port}"
    assert httpx.get(http + "/metrics", timeout=5).status_code == 404
    assert httpx.get(http + "/health", timeout=5).json()["status"] == "ok"
    # The text stays available in process (an app may serve it on a route of its own).
    assert "skyrelay_build_info{" in server.metrics_text()
    moved = skyrelay_server_factory(metrics_path="/internal/prom")
    assert httpx.get(f"http://127.0.0.1:{moved.port}/metrics", timeout=5).status_code == 404
    assert "process_open_fds" in httpx.get(f"http://127.0.0.1:{moved.port}/internal/prom",
                                           timeout=5).text
