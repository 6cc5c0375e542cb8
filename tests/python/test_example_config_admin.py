"""examples/config_admin (issue 16, S3): the seed's `/admin` and `/client` Socket.IO contract on
skyrelay's Flask facade, with real clients: python-socketio on both namespaces, socket.io-client
from node, httpx on the REST API, and two app processes on one real redis-server.

Negative checks ("nobody else got it") use a round trip on the same connection as a barrier:
with the in-process (memory) broker an emit is queued to its recipients before the REST call
returns, and one connection's frames arrive in order, so an event that was sent would be in
the queue before the barrier's answer.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import pytest
import socketio

from skyrelay.testing import stop_process

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "examples" / "config_admin"
SECRET = "config-admin-test-secret-0123456789abcdef"
WAIT = 10.0  # bound on every wait (not a speed assertion)


def load_app():
    spec = importlib.util.spec_from_file_location("example_config_admin_app", APP_DIR / "app.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


mod = load_app()


def token(role: str, sub: str, secret: str = SECRET) -> str:
    return mod.make_token(secret, sub, [role])


class Client:
    """A python-socketio client on one namespace that records every event as (name, data)."""

    def __init__(self, port: int, namespace: str, tok: str | None,
                 header: bool = False) -> None:
        self.namespace = namespace
        self.events: queue.Queue = queue.Queue()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("*", lambda event, *args: self.events.put((event, args[0] if args else None)),
                    namespace=namespace)
        self.sio.connect(f"http://127.0.0.1:{port}", namespaces=[namespace],
                         auth={"token": tok} if tok and not header else None,
                         headers={"Authorization": f"Bearer {tok}"} if header else None,
                         transports=["websocket"], wait_timeout=WAIT)

    def expect(self, event: str) -> dict:
        """The data of the next `event`; other events before it are dropped."""
        deadline = time.monotonic() + WAIT
        while True:
            name, data = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if name == event:
                return data

    def call(self, event: str, data=None):
        return self.sio.call(event, data, namespace=self.namespace, timeout=WAIT)

    def drain(self) -> list[tuple[str, dict]]:
        """Everything received so far, after a round trip on this connection."""
        self.call("heartbeat" if self.namespace == "/client" else "admin_connect")
        got = []
        while not self.events.empty():
            got.append(self.events.get_nowait())
        return [(n, d) for n, d in got if n not in ("heartbeat_ack", "admin_connected")]

    def close(self) -> None:
        self.sio.disconnect()


def refusal(port: int, namespace: str, tok: str | None) -> dict:
    errors = []
    sio = socketio.Client(reconnection=False)
    sio.on("connect_error", lambda data: errors.append(data), namespace=namespace)
    with pytest.raises(socketio.exceptions.ConnectionError):
        sio.connect(f"http://127.0.0.1:{port}", namespaces=[namespace],
                    auth={"token": tok} if tok else None, transports=["websocket"],
                    wait_timeout=WAIT)
    sio.disconnect()
    return errors[0]


@pytest.fixture
def service(tmp_path):
    app, sio = mod.create_app(str(tmp_path / "store.sqlite3"), SECRET)
    starter = sio.test_client(app, namespace="/admin", auth={"token": token("admin", "boot")})
    starter.disconnect()
    clients: list[Client] = []

    class Service:
        port = sio.server.port
        url = f"http://127.0.0.1:{sio.server.port}"

        @staticmethod
        def connect(namespace: str, tok: str) -> Client:
            client = Client(Service.port, namespace, tok)
            clients.append(client)
            return client

        @staticmethod
        def rest(method: str, path: str, body=None, tok: str | None = None) -> httpx.Response:
            headers = {"Authorization": f"Bearer {tok or token('admin', 'alice')}"}
            return httpx.request(method, Service.url + path, json=body, headers=headers,
                                 timeout=WAIT)

    yield Service
    for client in clients:
        client.close()
    sio.stop()


def ids(service, kind: str) -> dict[str, int]:
    return {e["key"]: e["id"] for e in service.rest("GET", f"/api/{kind}").json()}


def test_namespaces_and_roles(service):
    """A client token is refused on /admin and an admin token on /client, at the handshake;
    support staff see /admin but may not announce; unknown clients are refused."""
    assert refusal(service.port, "/admin", token("client", "acme"))["data"]["code"] == "forbidden"
    assert refusal(service.port, "/client", token("admin", "alice"))["data"]["code"] == \
        "forbidden"
    assert refusal(service.port, "/admin", None)["data"]["code"] == "token_required"
    assert refusal(service.port, "/client", token("client", "acme", "x" * 40))["data"][
        "code"] == "bad_signature"
    assert refusal(service.port, "/client", token("client", "nobody")) == {
        "message": "unknown client", "data": {"code": "unknown_client"}}

    admin = service.connect("/admin", token("admin", "alice"))
    welcome = admin.expect("admin_connected")
    assert welcome["user"] == "alice" and welcome["can_broadcast"] is True
    # The token in a header (non-browser clients) identifies the client just the same.
    by_header = Client(service.port, "/client", token("client", "globex"), header=True)
    assert by_header.expect("client_connected")["client"] == "globex"
    assert by_header.call("config_check")["package"]["key"] == "basic"
    by_header.close()
    support = service.connect("/admin", token("support", "bob"))
    assert support.expect("admin_connected")["can_broadcast"] is False
    answer = support.call("broadcast_announcement", {"message": "hello"})
    assert answer["error"]["code"] == "forbidden"
    assert support.call("request_dashboard_update")["summary"]["clients"] == 3
    # REST: reads for support, writes for admins only.
    assert service.rest("GET", "/api/platforms", tok=token("support", "bob")).status_code == 200
    denied = service.rest("POST", "/api/platforms/1/toggle", tok=token("support", "bob"))
    assert denied.status_code == 403 and denied.json()["error"] == "forbidden"
    assert service.rest("GET", "/api/platforms", tok=token("client", "acme")).status_code == 403
    assert service.rest("GET", "/api/platforms", tok="garbage").status_code == 401
    odd = jwt.encode({"sub": "alice", "roles": "admin", "exp": int(time.time()) + 60}, SECRET)
    assert service.rest("GET", "/api/platforms", tok=odd).status_code == 401
    expired = jwt.encode({"sub": "alice", "roles": ["admin"], "exp": int(time.time()) - 120},
                         SECRET)
    assert service.rest("GET", "/api/platforms", tok=expired).status_code == 401
    assert refusal(service.port, "/admin", expired)["data"]["code"] == "expired"
    assert httpx.get(service.url + "/api/platforms").json()["error"] == "unauthorized"


def test_platform_update_reaches_admins_and_the_clients_of_its_packages(service):
    admin = service.connect("/admin", token("admin", "alice"))
    acme = service.connect("/client", token("client", "acme"))        # pro: web, ios, android
    globex = service.connect("/client", token("client", "globex"))    # basic: web only
    connected = acme.expect("client_connected")
    assert connected["client"] == "acme" and connected["package"]["key"] == "pro"
    assert {f["key"] for f in connected["features"]} == {"dark_mode", "export_csv",
                                                         "beta_dashboard"}
    platforms = ids(service, "platforms")

    changed = service.rest("PATCH", f"/api/platforms/{platforms['ios']}",
                           {"config": {"min_version": "17.0"}, "name": "iOS app"})
    assert changed.status_code == 200 and changed.json()["clients_notified"] == 2
    update = admin.expect("platform_update")
    assert update["type"] == "update" and update["platform_id"] == platforms["ios"]
    assert update["data"]["config"] == {"min_version": "17.0"}
    assert update["data"]["name"] == "iOS app"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", update["timestamp"])
    assert acme.expect("platform_update") == update
    note = admin.expect("admin_notification")
    assert note["message"] == "alice updated platform ios"
    assert note["data"]["changed"] == ["config", "name"]

    toggled = service.rest("POST", f"/api/platforms/{platforms['ios']}/toggle").json()
    assert toggled["changes"] == {"enabled": {"old": True, "new": False}}
    second = admin.expect("platform_update")
    assert second["type"] == "toggle" and second["config_version"] == update["config_version"] + 1
    assert acme.expect("platform_update")["data"]["enabled"] is False
    assert not [e for e in globex.drain() if e[0] == "platform_update"]  # no ios in basic

    # The web platform is in every package: globex gets that one.
    service.rest("POST", f"/api/platforms/{platforms['web']}/toggle")
    assert globex.expect("platform_update")["platform_id"] == platforms["web"]
    # A change that changes nothing is not broadcast.
    same = service.rest("PATCH", f"/api/platforms/{platforms['web']}", {"enabled": False})
    assert same.json()["changes"] == {} and same.json()["clients_notified"] == 0
    assert not [e for e in admin.drain() if e[0] == "platform_update"
                and e[1]["platform_id"] == platforms["web"] and e[1]["type"] == "update"]


def test_feature_update_only_for_clients_whose_package_has_it(service):
    acme = service.connect("/client", token("client", "acme"))          # pro
    globex = service.connect("/client", token("client", "globex"))      # basic
    initech = service.connect("/client", token("client", "initech"))    # enterprise
    features, packages = ids(service, "features"), ids(service, "packages")
    clients = ids(service, "clients")

    service.rest("POST", f"/api/features/{features['sso']}/toggle")  # enterprise only
    update = initech.expect("feature_update")
    assert update["type"] == "toggle" and update["feature_id"] == features["sso"]
    assert update["data"]["key"] == "sso" and update["data"]["enabled"] is False
    assert not [e for e in acme.drain() + globex.drain() if e[0] == "feature_update"]

    # Moving acme to enterprise: a config_sync with its new view, and sso's changes from then on.
    moved = service.rest("PUT", f"/api/clients/{clients['acme']}/package",
                         {"package_id": packages["enterprise"]})
    assert moved.status_code == 200
    sync = acme.expect("config_sync")
    assert sync["reason"] == "package_changed" and sync["package"]["key"] == "enterprise"
    assert "sso" in {f["key"] for f in sync["features"]}
    service.rest("PATCH", f"/api/features/{features['sso']}", {"enabled": True})
    assert acme.expect("feature_update")["data"]["enabled"] is True
    assert initech.expect("feature_update")["type"] == "update"
    assert not [e for e in globex.drain() if e[0] in ("feature_update", "config_sync")]

    # A package change goes to that package's clients: basic gains export_csv.
    service.rest("PATCH", f"/api/packages/{packages['basic']}",
                 {"features": ["dark_mode", "export_csv"], "price_cents": 1200})
    update = globex.expect("package_update")
    assert set(update) == {"type", "package_id", "data", "timestamp", "config_version"}
    assert update["type"] == "update" and update["package_id"] == packages["basic"]
    assert update["data"]["features"] == ["dark_mode", "export_csv"]
    assert update["data"]["price_cents"] == 1200
    assert globex.call("feature_check", {"feature": "export_csv"})["available"] is True
    assert not [e for e in acme.drain() + initech.drain() if e[0] == "package_update"]


def test_subscribe_entity_updates_joins_a_room_per_entity(service):
    first = service.connect("/admin", token("admin", "alice"))
    second = service.connect("/admin", token("support", "bob"))
    platforms, features = ids(service, "platforms"), ids(service, "features")
    answer = first.call("subscribe_entity_updates",
                        {"entity_type": "platform", "entity_id": platforms["android"]})
    assert answer["room"] == f"platform:{platforms['android']}"
    assert answer["data"]["key"] == "android"
    second.call("subscribe_entity_updates",
                {"entity_type": "feature", "entity_id": features["dark_mode"]})

    service.rest("PATCH", f"/api/platforms/{platforms['android']}", {"config": {"store": "play"}})
    detail = first.expect("entity_update")
    assert detail["entity_type"] == "platform" and detail["entity_id"] == platforms["android"]
    assert detail["changes"] == {"config": {"old": {}, "new": {"store": "play"}}}
    assert detail["actor"] == "alice" and detail["action"] == "update"
    assert second.expect("platform_update")["platform_id"] == platforms["android"]
    assert not [e for e in second.drain() if e[0] == "entity_update"]

    service.rest("POST", f"/api/features/{features['dark_mode']}/toggle")
    assert second.expect("entity_update")["entity_id"] == features["dark_mode"]
    assert not [e for e in first.drain() if e[0] == "entity_update"]

    first.call("unsubscribe_entity_updates",
               {"entity_type": "platform", "entity_id": platforms["android"]})
    service.rest("POST", f"/api/platforms/{platforms['android']}/toggle")
    first.expect("platform_update")
    assert not [e for e in first.drain() if e[0] == "entity_update"]

    # Bad requests are answered, in the ack and as an error event.
    missing = first.call("subscribe_entity_updates", {"entity_type": "package", "entity_id": 99})
    assert missing["error"]["code"] == "not_found"
    assert first.expect("error")["error"]["code"] == "not_found"
    invalid = first.call("subscribe_entity_updates", {"entity_type": "user", "entity_id": 1})
    assert invalid["error"]["code"] == "invalid_payload"
    assert invalid["error"]["errors"][0]["loc"] == ["entity_type"]
    first.sio.emit("subscribe_entity_updates", {"entity_id": 0}, namespace="/admin")
    assert first.expect("error")["error"]["code"] == "invalid_payload"


def test_client_checks_metrics_and_heartbeat(service):
    acme = service.connect("/client", token("client", "acme"))
    version = acme.expect("client_connected")["config_version"]
    status = acme.call("config_check", {"config_version": version})
    assert status["up_to_date"] is True and status["package"]["key"] == "pro"
    assert acme.call("config_check", {"config_version": version - 1})["up_to_date"] is False
    assert acme.call("config_check")["up_to_date"] is None
    acme.sio.emit("config_check", {"config_version": version}, namespace="/client")
    assert acme.expect("config_status")["up_to_date"] is True

    assert acme.call("feature_check", {"feature": "export_csv"}) | {"timestamp": 0} == {
        "feature": "export_csv", "available": True, "enabled": True, "timestamp": 0}
    assert acme.call("feature_check", {"feature": "sso"})["available"] is False  # not in pro
    assert acme.call("feature_check", {"feature": "no_such"})["available"] is False
    features = ids(service, "features")
    service.rest("POST", f"/api/features/{features['export_csv']}/toggle")
    assert acme.call("feature_check", {"feature": "export_csv"})["enabled"] is False
    assert acme.call("config_check", {"config_version": version})["up_to_date"] is False

    assert acme.call("report_metrics", {"metrics": {"sessions": 12, "errors": 0.5}})[
        "accepted"] == 2
    assert acme.call("report_metrics", {"metrics": {"x": "many"}})["error"]["code"] == \
        "invalid_payload"
    too_many = {f"m{i}": i for i in range(40)}
    assert acme.call("report_metrics", {"metrics": too_many})["error"]["code"] == \
        "invalid_payload"
    beat = acme.call("heartbeat", {"client_time": "2026-12-06T10:00:00Z"})
    assert beat["client_time"] == "2026-12-06T10:00:00Z" and beat["server_time"]

    admin = service.connect("/admin", token("admin", "alice"))
    dashboard = admin.call("request_dashboard_update")
    assert dashboard["summary"]["metric_reports"] == 1
    assert dashboard["connected"] == {"admins": 1, "clients": 1}
    assert dashboard["recent_activity"][0]["action"] == "feature.toggle"
    feed = admin.call("request_activity_feed", {"limit": 2})
    assert [i["action"] for i in feed["items"]] == ["feature.toggle", "store.created"]
    older = admin.call("request_activity_feed", {"before_id": feed["items"][0]["id"]})
    assert [i["action"] for i in older["items"]] == ["store.created"]
    metrics = admin.call("request_system_metrics")
    assert metrics["node"]["connections"] == 2 and metrics["node"]["status"] == "ok"


def test_announcements_reach_their_audience_only(service):
    admin = service.connect("/admin", token("admin", "alice"))
    support = service.connect("/admin", token("support", "bob"))
    acme = service.connect("/client", token("client", "acme"))
    globex = service.connect("/client", token("client", "globex"))
    everyone = [admin, support, acme, globex]

    def announced(client: Client) -> list[str]:
        return [d["message"] for n, d in client.drain() if n == "announcement"]

    sent = admin.call("broadcast_announcement", {"message": "maintenance at 2am",
                                                 "level": "warning"})
    assert sent["audience"] == "all"
    first = acme.expect("announcement")
    assert first["from"] == "alice" and first["level"] == "warning" and first["id"] == sent["id"]
    assert [announced(c) for c in everyone] == [["maintenance at 2am"]] * 2 + [[]] + [
        ["maintenance at 2am"]]

    admin.call("broadcast_announcement", {"message": "admins only", "audience": "admins"})
    assert [announced(c) for c in everyone] == [["admins only"]] * 2 + [[], []]

    basic = ids(service, "packages")["basic"]
    answer = admin.call("broadcast_announcement", {"message": "basic users", "audience":
                                                   "clients", "package_id": basic})
    assert answer["clients"] == 1
    assert [announced(c) for c in everyone] == [[], [], [], ["basic users"]]
    missing = admin.call("broadcast_announcement", {"message": "x", "package_id": 99})
    assert missing["error"]["code"] == "not_found"
    assert admin.call("broadcast_announcement", {"message": ""})["error"]["code"] == \
        "invalid_payload"
    assert [announced(c) for c in everyone] == [[]] * 4
    log = service.rest("GET", "/api/activity?limit=3").json()
    assert [e["details"]["message"] for e in log] == ["basic users", "admins only",
                                                      "maintenance at 2am"]

    # One client's notification: that client's sockets only.
    acme_id = ids(service, "clients")["acme"]
    sent = service.rest("POST", f"/api/clients/{acme_id}/notify",
                        {"message": "invoice due", "level": "warning"})
    assert sent.status_code == 200 and sent.json()["client"] == "acme"
    note = acme.expect("client_notification")
    assert note["message"] == "invoice due" and note["from"] == "alice"
    assert not [e for c in (admin, support, globex) for e in c.drain()
                if e[0] == "client_notification"]
    assert service.rest("POST", "/api/clients/99/notify", {"message": "x"}).status_code == 404


def test_admins_get_system_status_on_an_interval(tmp_path):
    app, sio = mod.create_app(str(tmp_path / "store.sqlite3"), SECRET, status_interval=0.2)
    sio.test_client(app, namespace="/admin", auth={"token": token("admin", "x")}).disconnect()
    admin = Client(sio.server.port, "/admin", token("support", "bob"))
    client = Client(sio.server.port, "/client", token("client", "acme"))
    try:
        status = admin.expect("system_status")
        assert status["status"] == "ok" and status["node"] == os.getpid()
        assert status["cluster_connections"] is None  # one process, no Redis
        later = admin.expect("system_status")
        assert later["timestamp"] > status["timestamp"]
        assert not [e for e in client.drain() if e[0] == "system_status"]
    finally:
        admin.close()
        client.close()
        sio.stop()


def test_rest_api_answers_bad_input(service):
    bad = service.rest("PATCH", "/api/features/1", {"enabled": "maybe", "colour": "red"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_payload"
    assert "enabled" in bad.json()["message"] and "colour" in bad.json()["message"]
    assert service.rest("PATCH", "/api/features/99", {"enabled": True}).status_code == 404
    unknown = service.rest("PATCH", "/api/packages/1", {"features": ["teleport"]})
    assert unknown.status_code == 404 and "teleport" in unknown.json()["message"]
    assert service.rest("PUT", "/api/clients/1/package", {"package_id": 99}).status_code == 404
    assert service.rest("POST", "/api/config-sync", {"client": "nobody"}).status_code == 404
    assert service.rest("GET", "/api/packages").json()[0]["features"] == ["dark_mode"]


@pytest.mark.skipif(shutil.which("node") is None
                    or not (ROOT / "node_modules/socket.io-client").is_dir(),
                    reason="needs node and node_modules (make node_modules/.stamp)")
def test_socket_io_client_from_node(service):
    """The seed's front end: socket.io-client's defaults (polling, then WebSocket)."""
    node = subprocess.Popen(["node", str(Path(__file__).parent / "config_admin_client.mjs"),
                             service.url, token("client", "initech")],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        lines = iter(node.stdout.readline, "")
        connected = json.loads(next(lines))
        assert connected["step"] == "connected" and connected["client"] == "initech"
        assert len(connected["features"]) == 5
        feature = json.loads(next(lines))
        assert feature["step"] == "feature" and feature["available"] is True
        assert service.rest("POST", "/api/config-sync", {"client": "initech"}).json() == {
            "synced": "initech"}
        sync = json.loads(next(lines))
        assert sync["step"] == "sync" and sync["reason"] == "forced"
        assert node.wait(WAIT) == 0
    finally:
        stop_process(node)


def start_instance(db: Path, *options: str) -> tuple[subprocess.Popen, int, list[str]]:
    """Runs app.py as the README does; returns the process, its port and what it printed."""
    env = {k: v for k, v in os.environ.items() if k != "CONFIG_ADMIN_SECRET"}
    proc = subprocess.Popen([sys.executable, str(APP_DIR / "app.py"), "--port", "0",
                             "--db", str(db), *options], stdout=subprocess.PIPE, text=True,
                            cwd=db.parent, env={**env, "PYTHONUNBUFFERED": "1"})
    printed = []
    for line in iter(proc.stdout.readline, ""):
        printed.append(line)
        found = re.search(r"serving on http://127\.0\.0\.1:(\d+)", line)
        if found:
            return proc, int(found.group(1)), printed
    stop_process(proc)
    raise AssertionError("the instance did not start")


def test_the_readme_command_prints_tokens_that_work(tmp_path):
    proc, port, printed = start_instance(tmp_path / "demo.sqlite3")
    try:
        tokens = {parts[1]: parts[2] for parts in (line.split() for line in printed)
                  if len(parts) == 3 and parts[0] in ("admin", "support", "client")}
        assert set(tokens) == {"alice", "bob", "acme", "globex", "initech"}
        admin = Client(port, "/admin", tokens["alice"])
        assert admin.expect("admin_connected")["user"] == "alice"
        assert refusal(port, "/admin", tokens["acme"])["data"]["code"] == "forbidden"
        admin.close()
    finally:
        stop_process(proc)
    assert proc.returncode == 0  # SIGTERM stops it gracefully


def test_two_instances_on_one_redis(tmp_path, redis_server):
    """A REST change on instance A reaches the admins and the affected client on instance B."""
    db = tmp_path / "shared.sqlite3"
    procs = []
    try:
        options = ("--redis", redis_server.url, "--jwt-secret", SECRET)
        a, port_a, _ = start_instance(db, *options)
        procs.append(a)
        b, port_b, _ = start_instance(db, *options)
        procs.append(b)
        admin_b = Client(port_b, "/admin", token("admin", "carol"))
        initech_b = Client(port_b, "/client", token("client", "initech"))
        initech_b.expect("client_connected")
        headers = {"Authorization": f"Bearer {token('admin', 'alice')}"}
        features = {f["key"]: f["id"] for f in httpx.get(
            f"http://127.0.0.1:{port_a}/api/features", headers=headers, timeout=WAIT).json()}
        httpx.post(f"http://127.0.0.1:{port_a}/api/features/{features['audit_log']}/toggle",
                   headers=headers, timeout=WAIT).raise_for_status()
        update = initech_b.expect("feature_update")
        assert update["feature_id"] == features["audit_log"] and update["type"] == "toggle"
        assert admin_b.expect("feature_update") == update
        # An announcement made on B reaches a client on A; B's dashboard counts both nodes.
        globex_a = Client(port_a, "/client", token("client", "globex"))
        globex_a.expect("client_connected")
        admin_b.call("broadcast_announcement", {"message": "from B", "audience": "clients"})
        assert globex_a.expect("announcement")["message"] == "from B"
        deadline = time.monotonic() + WAIT
        while admin_b.call("request_dashboard_update")["connected"]["clients"] != 2:
            assert time.monotonic() < deadline, "B's dashboard never counted A's client"
            time.sleep(0.2)
        for client in (admin_b, initech_b, globex_a):
            client.close()
    finally:
        for proc in procs:
            stop_process(proc)
