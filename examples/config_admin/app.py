"""Configuration admin service: a Flask app whose admins change platforms, feature flags and
packages over REST, while admin dashboards (`/admin`) and client apps (`/client`) get the
changes live over Socket.IO, through skyrelay's Flask-SocketIO facade. README.md has the
events, the payloads, the REST API and the decisions.

    .venv/bin/python examples/config_admin/app.py                  # prints tokens to try
    .venv/bin/python examples/config_admin/app.py --redis redis://127.0.0.1:6379/0 \\
        --jwt-secret "$SECRET" --port 5001                          # one of several instances
"""

from __future__ import annotations

import argparse
import functools
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any, Literal, TypeVar

import jwt  # PyJWT: the REST API checks the same tokens the Socket.IO handshake does
from flask import Flask, g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

sys.path.insert(0, str(Path(__file__).resolve().parent))

import skyrelay  # noqa: E402
from skyrelay.flask import SocketIO  # noqa: E402

from config_events import ADMIN_NS, CLIENT_NS, Notifier, register  # noqa: E402
from config_store import NotFound, Store  # noqa: E402

# Who may connect where (checked in C++ at the handshake, docs/api.md "Authorization"):
# admins and support staff see the dashboard; only admins change things or announce.
NAMESPACE_ROLES = {ADMIN_NS: ["admin", "support"], CLIENT_NS: ["client"]}
READ_ROLES, WRITE_ROLES = ("admin", "support"), ("admin",)
TOKEN_HOURS = 8.0


def make_token(secret: str, sub: str, roles: list[str], hours: float = TOKEN_HOURS) -> str:
    """An HS256 token for trying the service out (a deployment gets its tokens from its
    identity provider): `sub` is the admin's name, or the client's key for role `client`."""
    return jwt.encode({"sub": sub, "roles": roles, "exp": int(time.time() + hours * 3600)},
                      secret, algorithm="HS256")


# -- REST payloads ------------------------------------------------------------------------------

class _Patch(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlatformPatch(_Patch):
    name: str | None = Field(None, min_length=1, max_length=100)
    enabled: bool | None = None
    config: dict[str, Any] | None = None


class FeaturePatch(_Patch):
    name: str | None = Field(None, min_length=1, max_length=100)
    description: str | None = Field(None, max_length=1000)
    enabled: bool | None = None


class PackagePatch(_Patch):
    name: str | None = Field(None, min_length=1, max_length=100)
    price_cents: int | None = Field(None, ge=0)
    platforms: list[str] | None = Field(None, max_length=100)  # platform keys
    features: list[str] | None = Field(None, max_length=1000)  # feature keys


class Assignment(_Patch):
    package_id: int = Field(ge=1)


class ClientNotice(_Patch):
    message: str = Field(min_length=1, max_length=1000)
    level: Literal["info", "warning", "critical"] = "info"


class SyncRequest(_Patch):
    client: str | None = None  # one client's key; none: every client


def _error(status: int, code: str, message: str):
    return jsonify({"error": code, "message": message}), status


Body = TypeVar("Body", bound=BaseModel)


def _body(model: type[Body]) -> Body:
    return model.model_validate(request.get_json(silent=True) or {})


def create_app(db_path: str, secret: str, *, message_queue: str | None = None,
               demo: bool = True, status_interval: float = 30.0,
               **socketio_options: Any) -> tuple[Flask, SocketIO]:
    """The Flask app and its SocketIO (not started: `socketio.run(app)` serves both). Admins
    get `system_status` every `status_interval` seconds (0: never)."""
    store = Store(db_path)
    store.init(demo=demo)
    app = Flask(__name__)
    key = skyrelay.JWTKey.hmac("config-admin", secret.encode(), ["HS256"])
    options: dict[str, Any] = {
        "jwt": skyrelay.JWTAuth(keys=[key], required=True, require_kind=False),
        "namespace_roles": NAMESPACE_ROLES, "namespaces": [ADMIN_NS, CLIENT_NS],
        "json_protocol": False, "sse": False}  # a Socket.IO service only
    if message_queue:
        options["message_queue"] = message_queue
    options.update(socketio_options)
    socketio = SocketIO(app, **options)
    notifier = Notifier(socketio, store)
    register(socketio, store, notifier, status_interval)
    _routes(app, store, notifier, secret)
    app.extensions["config_admin"] = store
    return app, socketio


def _routes(app: Flask, store: Store, notifier: Notifier, secret: str) -> None:
    def require(roles: tuple[str, ...]):
        def decorator(view):
            @functools.wraps(view)
            def checked(*args: Any, **kwargs: Any):
                header = request.headers.get("Authorization", "")
                if not header.startswith("Bearer "):
                    return _error(401, "unauthorized", "send Authorization: Bearer <token>")
                try:
                    claims = jwt.decode(header[7:], secret, algorithms=["HS256"], leeway=30,
                                        options={"require": ["exp", "sub"]})
                except jwt.InvalidTokenError as exc:
                    return _error(401, "unauthorized", str(exc))
                held = claims.get("roles", [])
                if not isinstance(claims["sub"], str) or not isinstance(held, list):
                    return _error(401, "unauthorized", "sub must be a string, roles a list")
                if not set(map(str, held)) & set(roles):
                    return _error(403, "forbidden", f"needs one of the roles {list(roles)}")
                g.actor = claims["sub"]
                try:
                    return view(*args, **kwargs)
                except ValidationError as exc:
                    return _error(400, "invalid_payload", "; ".join(
                        f"{'.'.join(map(str, e['loc'])) or '(body)'}: {e['msg']}"
                        for e in exc.errors()[:10]))
                except NotFound as exc:
                    return _error(404, "not_found", str(exc))

            return checked
        return decorator

    lists = {"platforms": store.platforms, "features": store.features,
             "packages": store.packages, "clients": store.clients}
    patches: dict[str, type[_Patch]] = {"platform": PlatformPatch, "feature": FeaturePatch,
                                       "package": PackagePatch}

    @app.get("/api/<any(platforms, features, packages, clients):kind>")
    @require(READ_ROLES)
    def list_entities(kind: str):
        return jsonify(lists[kind]())

    @app.get("/api/activity")
    @require(READ_ROLES)
    def activity():
        limit = min(max(request.args.get("limit", 50, type=int), 1), 500)
        return jsonify(store.activity(limit, request.args.get("before_id", type=int)))

    def change(entity_type: str, entity_id: int, fields: dict[str, Any], action: str):
        entity, changes, clients, version = store.change(entity_type, entity_id, fields,
                                                         g.actor, action)
        if changes:  # nothing changed, nothing broadcast
            notifier.entity_changed(entity_type, action, entity, changes, clients, g.actor,
                                    version)
        return jsonify({"data": entity, "changes": changes, "clients_notified": len(clients)
                        if changes else 0})

    @app.patch("/api/<any(platform, feature, package):kind>s/<int:entity_id>")
    @require(WRITE_ROLES)
    def update_entity(kind: str, entity_id: int):
        fields = _body(patches[kind]).model_dump(exclude_none=True)
        return change(kind, entity_id, fields, "update")

    @app.post("/api/<any(platform, feature):kind>s/<int:entity_id>/toggle")
    @require(WRITE_ROLES)
    def toggle_entity(kind: str, entity_id: int):
        return change(kind, entity_id, {}, "toggle")

    @app.put("/api/clients/<int:client_id>/package")
    @require(WRITE_ROLES)
    def assign(client_id: int):
        body = _body(Assignment)
        client = store.assign_package(client_id, body.package_id, g.actor)
        notifier.config_sync("package_changed", [client["key"]])
        notifier.notify_admins("info", f"{g.actor} moved client {client['key']} to package "
                               f"{body.package_id}", client=client["key"],
                               package_id=body.package_id,
                               old_package_id=client["old_package_id"])
        return jsonify(client)

    @app.post("/api/clients/<int:client_id>/notify")
    @require(WRITE_ROLES)
    def notify_client(client_id: int):
        body = _body(ClientNotice)
        key = next((c["key"] for c in store.clients() if c["id"] == client_id), None)
        if key is None:
            raise NotFound("client", client_id)
        entry = store.log(g.actor, "client.notify", {"client": key, **body.model_dump()},
                          "client", client_id)
        notifier.to_clients("client_notification", {
            "id": entry["id"], **body.model_dump(), "from": g.actor,
            "timestamp": entry["timestamp"]}, [key])
        return jsonify({"id": entry["id"], "client": key})

    @app.post("/api/config-sync")
    @require(WRITE_ROLES)
    def force_sync():
        body = _body(SyncRequest)
        if body.client is not None:
            store.client_view(body.client)  # 404 for an unknown client
        store.log(g.actor, "config.sync", {"client": body.client})
        notifier.config_sync("forced", None if body.client is None else [body.client])
        return jsonify({"synced": body.client or "all"})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--db", default="config_admin.sqlite3",
                        help="the SQLite file (created with demo data when new); instances "
                             "on one machine share it")
    parser.add_argument("--jwt-secret", default=os.environ.get("CONFIG_ADMIN_SECRET"),
                        help="HS256 secret of every token, 32 bytes or more (default "
                             "$CONFIG_ADMIN_SECRET, else a random one, printed tokens)")
    parser.add_argument("--redis", default=None, metavar="URL",
                        help="Redis for several instances (skyrelay's broker), redis://...")
    parser.add_argument("--print-token", metavar="ROLE:SUB",
                        help="print a token (admin:alice, support:bob, client:acme) and exit")
    args = parser.parse_args(argv)
    if args.print_token:
        if not args.jwt_secret:
            parser.error("--print-token needs --jwt-secret or $CONFIG_ADMIN_SECRET")
        role, _, sub = args.print_token.partition(":")
        print(make_token(args.jwt_secret, sub or role, [role]))
        return
    secret = args.jwt_secret or secrets.token_urlsafe(32)
    app, socketio = create_app(args.db, secret, message_queue=args.redis)
    if not args.jwt_secret:
        print("tokens for this run (random secret):")
        for role, sub in (("admin", "alice"), ("support", "bob"), ("client", "acme"),
                          ("client", "globex"), ("client", "initech")):
            print(f"  {role:8} {sub:8} {make_token(secret, sub, [role])}")
    print(f"config admin on http://{args.host}:{args.port} (Socket.IO /admin and /client)",
          flush=True)
    socketio.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
