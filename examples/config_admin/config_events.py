"""The config admin service's Socket.IO side: the `/admin` and `/client` namespaces and the
broadcasts that follow a change in the store (README.md lists every event and payload).

Rooms (each inside its namespace):
- `/admin` `admins`: every admin socket (its size is the admins connected, on every node);
  `platform:<id>`, `feature:<id>`, `package:<id>`: admins that asked for one entity's details
  (`subscribe_entity_updates`).
- `/client` `clients`: every client socket; `client:<key>`: the sockets of one client (the
  token's `sub`). Changes reach clients through these rooms: the store says which clients a
  change affects, so moving a client to another package needs no room changes on any node.
"""

from __future__ import annotations

import os
import time
from typing import Any, Literal

from flask import request
from pydantic import BaseModel, ConfigDict, Field

from skyrelay import BrokerUnavailable
from skyrelay.flask import (ConnectionRefusedError, SocketIO, connection, emit, join_room,
                            leave_room)

from config_store import NotFound, Store, now_iso

ADMIN_NS, CLIENT_NS = "/admin", "/client"
ADMINS_ROOM, CLIENTS_ROOM = "admins", "clients"
MAX_METRICS = 32  # metric names in one report_metrics


def client_room(key: str) -> str:
    return f"client:{key}"


def entity_room(entity_type: str, entity_id: int) -> str:
    return f"{entity_type}:{entity_id}"


# -- payloads the clients send (validated before a handler runs: invalid_payload) -------------

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EntityRef(_Strict):
    entity_type: Literal["platform", "feature", "package"]
    entity_id: int = Field(ge=1)


class FeedRequest(_Strict):
    limit: int = Field(20, ge=1, le=100)
    before_id: int | None = Field(None, ge=1)


class Announcement(_Strict):
    message: str = Field(min_length=1, max_length=1000)
    level: Literal["info", "warning", "critical"] = "info"
    audience: Literal["all", "admins", "clients"] = "all"
    package_id: int | None = Field(None, ge=1)  # clients of this package only


class ConfigCheck(_Strict):
    config_version: int | None = None


class FeatureCheck(_Strict):
    feature: str = Field(min_length=1, max_length=100)


class MetricsReport(_Strict):
    metrics: dict[str, float] = Field(max_length=MAX_METRICS)


class Heartbeat(_Strict):
    client_time: str | None = Field(None, max_length=64)


class Notifier:
    """Sends what follows a change: to every admin, to the clients the change affects, and to
    the admins that follow the entity. Safe from any thread (REST routes and handlers)."""

    def __init__(self, socketio: SocketIO, store: Store) -> None:
        self.socketio = socketio
        self.store = store

    def to_clients(self, event: str, payload: Any, keys: list[str] | None) -> None:
        """To the clients named by key; None is every client. An empty list is nobody (the
        server's `to=[]` would be the whole namespace)."""
        if keys is None:
            self.socketio.emit(event, payload, namespace=CLIENT_NS)
        elif keys:
            self.socketio.emit(event, payload, to=[client_room(k) for k in keys],
                               namespace=CLIENT_NS)

    def admins(self, event: str, payload: Any) -> None:
        self.socketio.emit(event, payload, namespace=ADMIN_NS)

    def notify_admins(self, level: str, message: str, **data: Any) -> None:
        self.admins("admin_notification", {"level": level, "message": message, "data": data,
                                           "timestamp": now_iso()})

    def entity_changed(self, entity_type: str, action: str, entity: dict, changes: dict,
                       clients: list[str], actor: str, version: int) -> None:
        """`platform_update`, `feature_update` or `package_update` to every admin and to the
        affected clients; `entity_update` (with the changes and who made them) to the admins
        that follow the entity; an `admin_notification`. `version` (the store's after the
        change) orders them: two changes committed on two threads or instances may be sent
        in the other order."""
        stamp = now_iso()
        payload = {"type": action, f"{entity_type}_id": entity["id"], "data": entity,
                   "timestamp": stamp, "config_version": version}
        self.admins(f"{entity_type}_update", payload)
        self.to_clients(f"{entity_type}_update", payload, clients)
        self.socketio.emit("entity_update", {
            "entity_type": entity_type, "entity_id": entity["id"], "action": action,
            "changes": changes, "actor": actor, "data": entity, "timestamp": stamp,
            "config_version": version},
            to=entity_room(entity_type, entity["id"]), namespace=ADMIN_NS)
        verb = {"toggle": "toggled"}.get(action, "updated")
        self.notify_admins("info", f"{actor} {verb} {entity_type} {entity['key']}",
                           entity_type=entity_type, entity_id=entity["id"],
                           changed=sorted(changes), clients_notified=len(clients))

    def config_sync(self, reason: str, keys: list[str] | None) -> None:
        """Tells clients to refresh: each gets its own view (package, platforms, features)."""
        for key in keys if keys is not None else [c["key"] for c in self.store.clients()]:
            self.to_clients("config_sync", {"reason": reason, "timestamp": now_iso(),
                                            **self.store.client_view(key)}, [key])


def status_loop(socketio: SocketIO, store: Store, interval: float) -> None:
    """Sends `system_status` to every admin every `interval` seconds (with several instances
    each reports itself, `node`); returns within half a second once the server stops. The
    first admin connection starts it (`register`)."""
    due = time.monotonic() + interval
    while (server := socketio.server) is not None and server.running:
        time.sleep(min(0.5, max(0.0, due - time.monotonic())))
        if time.monotonic() < due or not server.running:
            continue
        due += interval
        cluster = server.cluster()
        try:
            socketio.emit("system_status", {
                "status": server.health().get("status"), "node": os.getpid(),
                "connections": server.connection_count,
                "cluster_connections": cluster.get("connections") if cluster else None,
                "config_version": store.summary()["config_version"], "timestamp": now_iso()},
                namespace=ADMIN_NS)
        except BrokerUnavailable:
            pass  # Redis away: /health says degraded; the next report tries again


def register(socketio: SocketIO, store: Store, notifier: Notifier,
             status_interval: float = 30.0) -> None:
    """Registers every handler of both namespaces on `socketio`; the first admin to connect
    starts `status_loop` (none with `status_interval` 0)."""
    started = time.time()
    status_task: list[Any] = []  # the status thread, once started (handlers run one at a time)

    def rooms_size(room: str, namespace: str) -> int | None:
        server = socketio.server
        try:
            return server.room_size(room, namespace=namespace) if server else None
        except BrokerUnavailable:
            return None  # Redis away: the dashboard shows "unknown"

    def reply(event: str, payload: dict) -> dict:
        emit(event, payload)
        return payload  # the ack too, for clients that ask for one

    def refuse(code: str, message: str) -> dict:
        """A refusal of the app's own (`not_found`): an `error` event, the shape skyrelay
        gives an invalid payload, and the same as the ack. (A raised RequestError would
        answer only a client that asked for an ack.)"""
        answer = {"error": {"code": code, "message": message,
                            "event": request.event["message"]}}
        emit("error", answer)
        return answer

    # -- /admin ------------------------------------------------------------------------------

    def admin_welcome() -> dict:
        conn = connection()
        join_room(ADMINS_ROOM)
        return reply("admin_connected", {
            "sid": request.sid, "user": conn.user, "roles": conn.roles,
            "can_broadcast": "admin" in conn.roles,
            "config_version": store.summary()["config_version"], "timestamp": now_iso()})

    @socketio.on("connect", namespace=ADMIN_NS)
    def on_admin_connect(auth=None):  # the namespace's roles were checked before this runs
        admin_welcome()
        if status_interval > 0 and not (status_task and status_task[0].is_alive()):
            status_task[:] = [socketio.start_background_task(status_loop, socketio, store,
                                                             status_interval)]

    @socketio.on("admin_connect", namespace=ADMIN_NS)
    def admin_connect(data=None):
        return admin_welcome()

    @socketio.on("request_dashboard_update", namespace=ADMIN_NS)
    def dashboard(data=None):
        return reply("dashboard_update", {
            "summary": store.summary(), "platforms": store.platforms(),
            "features": store.features(), "packages": store.packages(),
            "connected": {"admins": rooms_size(ADMINS_ROOM, ADMIN_NS),
                          "clients": rooms_size(CLIENTS_ROOM, CLIENT_NS)},
            "recent_activity": store.activity(10), "timestamp": now_iso()})

    @socketio.on("request_activity_feed", namespace=ADMIN_NS)
    def activity_feed(data: FeedRequest | None = None):
        data = data or FeedRequest()
        return reply("activity_feed", {"items": store.activity(data.limit, data.before_id),
                                       "timestamp": now_iso()})

    @socketio.on("subscribe_entity_updates", namespace=ADMIN_NS)
    def subscribe_entity(data: EntityRef):
        try:
            entity = store.entity(data.entity_type, data.entity_id)
        except NotFound as exc:
            return refuse("not_found", str(exc))
        room = entity_room(data.entity_type, data.entity_id)
        join_room(room)
        return reply("entity_subscribed", {"entity_type": data.entity_type,
                                           "entity_id": data.entity_id, "room": room,
                                           "data": entity, "timestamp": now_iso()})

    @socketio.on("unsubscribe_entity_updates", namespace=ADMIN_NS)
    def unsubscribe_entity(data: EntityRef):
        leave_room(entity_room(data.entity_type, data.entity_id))
        return reply("entity_unsubscribed", {"entity_type": data.entity_type,
                                             "entity_id": data.entity_id,
                                             "timestamp": now_iso()})

    @socketio.on("broadcast_announcement", namespace=ADMIN_NS, roles=["admin"])
    def announce(data: Announcement):
        user = connection().user or "?"
        keys = None
        if data.package_id is not None:
            try:
                store.entity("package", data.package_id)
            except NotFound as exc:
                return refuse("not_found", str(exc))
            keys = store.clients_of_package(data.package_id)
        entry = store.log(user, "announcement", data.model_dump())
        payload = {"id": entry["id"], **data.model_dump(), "from": user,
                   "timestamp": entry["timestamp"]}
        if data.audience in ("all", "admins"):
            notifier.admins("announcement", payload)
        if data.audience in ("all", "clients"):
            notifier.to_clients("announcement", payload, keys)
        return {"id": entry["id"], "audience": data.audience,
                "clients": None if keys is None else len(keys)}

    @socketio.on("request_system_metrics", namespace=ADMIN_NS)
    def system_metrics(data=None):
        server = socketio.server
        assert server is not None
        health = server.health()
        return reply("system_metrics", {
            "node": {"pid": os.getpid(), "uptime_s": round(time.time() - started, 1),
                     "connections": server.connection_count, "broker": server.broker,
                     "status": health.get("status")},
            "cluster": server.cluster(), "store": store.summary(), "timestamp": now_iso()})

    # -- /client -----------------------------------------------------------------------------

    def client_key() -> str:
        return connection().state["client"]

    @socketio.on("connect", namespace=CLIENT_NS)
    def on_client_connect(auth=None):
        conn = connection()
        try:
            view = store.client_view(conn.user or "")
        except NotFound:
            raise ConnectionRefusedError("unknown client", {"code": "unknown_client"}) from None
        conn.state["client"] = view["client"]
        join_room(CLIENTS_ROOM)
        join_room(client_room(view["client"]))
        emit("client_connected", {"sid": request.sid, **view, "timestamp": now_iso()})

    @socketio.on("client_connect", namespace=CLIENT_NS)
    def client_connect(data=None):
        return reply("client_connected", {"sid": request.sid,
                                          **store.client_view(client_key()),
                                          "timestamp": now_iso()})

    @socketio.on("config_check", namespace=CLIENT_NS)
    def config_check(data: ConfigCheck | None = None):
        view = store.client_view(client_key())
        known = data.config_version if data else None
        return reply("config_status", {
            **view, "up_to_date": None if known is None else known == view["config_version"],
            "timestamp": now_iso()})

    @socketio.on("feature_check", namespace=CLIENT_NS)
    def feature_check(data: FeatureCheck):
        view = store.client_view(client_key())
        flag = next((f for f in view["features"] if f["key"] == data.feature), None)
        # A feature outside the client's package is unavailable, whether it exists or not.
        return reply("feature_status", {
            "feature": data.feature, "available": flag is not None,
            "enabled": bool(flag and flag["enabled"]), "timestamp": now_iso()})

    @socketio.on("report_metrics", namespace=CLIENT_NS)
    def report_metrics(data: MetricsReport):
        store.add_metrics(client_key(), data.metrics)
        return reply("metrics_received", {"accepted": len(data.metrics),
                                          "timestamp": now_iso()})

    @socketio.on("heartbeat", namespace=CLIENT_NS)
    def heartbeat(data: Heartbeat | None = None):
        return reply("heartbeat_ack", {"client_time": data.client_time if data else None,
                                       "server_time": now_iso()})
