"""The HTTP API of the ESP telemetry example: a Flask app that skyrelay serves on its port
(``Server(wsgi_app=...)``) for every path its built-in routes do not take.

- POST /api/v1/auth/login (anyone): {username, password} -> {access_token, token_type,
  expires_in}; after 5 failures for a username, one try every 5 s (429)
- POST /api/v1/telemetry/ingest (roles device, operator, admin): one reading or a list -> 201
- GET /api/v1/wells/<well_id>/telemetry and .../alerts (any token): the latest stored rows
  (?limit=, at most 1000)
- GET /metrics (anyone): the seed's metrics, then skyrelay's (whose own path app.py moves
  to /skyrelay/metrics)

The wells' SSE streams (/api/v1/sse/stream/<well_id>) are skyrelay's, declared in app.py.

Errors are JSON: ``{"error": <kind>, "message": <text>}`` with a 4xx status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import flask
import skyrelay
from skyrelay.ratelimit import Decision

from .readings import InvalidReading, parse
from .realtime import WELL_ID
from .tokens import TokenError

if TYPE_CHECKING:
    from app import EspTelemetry

INGEST_ROLES = {"device", "operator", "admin"}
MAX_BATCH = 500  # readings in one ingest request
MAX_LIMIT = 1000  # rows one read returns
# Failed logins per username: 5 in a row, then one try every 5 s (429 meanwhile, for the
# right password too), so guessing a password stays slow. Successful logins cost nothing.
FAILED_LOGINS = (0.2, 5)


class ApiError(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


def build_flask(app: EspTelemetry) -> flask.Flask:
    web = flask.Flask("esp_telemetry")
    failures = skyrelay.RateLimiter(*FAILED_LOGINS, max_keys=10_000)

    @web.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return {"error": exc.error, "message": exc.message}, exc.status

    @web.post("/api/v1/auth/login")
    def login():
        body = _json()
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise ApiError(400, "ValidationError", "username and password are required")
        key = username[:128]
        if failures.acquire(key, cost=0).remaining < 1:
            return _too_many(failures.acquire(key))
        token = app.tokens.login(username, password)
        if token is None:
            failures.acquire(key)
            raise ApiError(401, "AuthenticationError", "invalid username or password")
        return {"access_token": token, "token_type": "Bearer", "expires_in": app.tokens.ttl_s}

    @web.post("/api/v1/telemetry/ingest")
    def ingest():
        _claims(app, INGEST_ROLES)
        body = _json(allow_list=True)
        readings = body if isinstance(body, list) else [body]
        if not 0 < len(readings) <= MAX_BATCH:
            raise ApiError(400, "ValidationError", f"send 1 to {MAX_BATCH} readings")
        parsed = []
        for index, raw in enumerate(readings):  # all or nothing: check them all first
            try:
                parsed.append(parse(raw))
            except InvalidReading as exc:
                prefix = f"reading {index}: " if isinstance(body, list) else ""
                raise ApiError(400, "ValidationError", prefix + str(exc)) from None
        results = [app.record(reading) for reading in parsed]
        return ({"ingested": results} if isinstance(body, list) else results[0]), 201

    @web.get("/api/v1/wells/<well_id>/telemetry")
    def telemetry(well_id: str):
        _claims(app)
        return {"well_id": _well(well_id),
                "readings": app.store.readings(well_id, _limit())}

    @web.get("/api/v1/wells/<well_id>/alerts")
    def alerts(well_id: str):
        _claims(app)
        return {"well_id": _well(well_id), "alerts": app.store.alerts(well_id, _limit())}

    @web.get("/metrics")
    def metrics():
        text = app.metrics.exposition(app.server.metrics_text)
        return flask.Response(text, mimetype="text/plain; version=0.0.4")

    return web


def _too_many(decision: Decision):
    body = {"error": "RateLimitError",
            "message": f"too many failed logins; retry in {decision.retry_after:.1f} s"}
    return body, 429, {"Retry-After": decision.retry_after_header}


def _json(allow_list: bool = False) -> Any:
    body = flask.request.get_json(silent=True)
    if not isinstance(body, dict) and not (allow_list and isinstance(body, list)):
        raise ApiError(400, "ValidationError", "the body must be a JSON object"
                       + (" or a list of them" if allow_list else ""))
    return body


def _claims(app: EspTelemetry, roles: set[str] | None = None) -> dict:
    header = flask.request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "AuthenticationError", "a Bearer token is required")
    try:
        claims = app.tokens.verify(token.strip())
    except TokenError:
        raise ApiError(401, "AuthenticationError",
                       "Invalid or expired authentication token") from None
    held = claims.get("roles")
    if roles is not None and not (isinstance(held, list) and roles & set(map(str, held))):
        raise ApiError(403, "AuthorizationError", f"needs one of the roles {sorted(roles)}")
    return claims


def _well(well_id: str) -> str:
    if not WELL_ID.fullmatch(well_id):
        raise ApiError(400, "ValidationError", "well_id must be 1-64 letters, digits, "
                       "'.', '_' or '-'")
    return well_id


def _limit() -> int:
    raw = flask.request.args.get("limit", "100")
    if not raw.isdigit() or not 0 < int(raw) <= MAX_LIMIT:
        raise ApiError(400, "ValidationError", f"limit must be 1 to {MAX_LIMIT}")
    return int(raw)
