"""Users, logins and HS256 access tokens for the ESP telemetry example.

skyrelay checks the tokens of Socket.IO and SSE clients itself, in C++, at the handshake
(``Server(jwt=...)``). This module issues those tokens (``POST /api/v1/auth/login``) and
checks the ones that come with HTTP requests to the app's own routes (the ingest API), which
skyrelay's handshake never sees. A real deployment would take its tokens from its identity
provider; the claims are the same: ``sub`` (the user id), ``username``, ``roles``, ``exp``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field

import skyrelay

TOKEN_TTL_S = 3600  # the seed's tokens live an hour


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenError(Exception):
    """A token that is missing, malformed, badly signed or expired."""


@dataclass
class User:
    user_id: str
    username: str
    roles: list[str]
    salt: bytes
    digest: bytes

    def check(self, password: str) -> bool:
        return hmac.compare_digest(_hash(password, self.salt), self.digest)


def _hash(password: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 100_000)


@dataclass
class Tokens:
    """Signs and checks HS256 tokens with one secret, and holds the users who may log in."""

    secret: bytes
    ttl_s: int = TOKEN_TTL_S
    users: dict[str, User] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.secret) < 32:
            raise ValueError("the token secret must be at least 32 bytes (HS256)")

    def jwt_auth(self) -> skyrelay.JWTAuth:
        """skyrelay's handshake check for the same tokens: every client must present one."""
        key = skyrelay.JWTKey.hmac("esp", self.secret, ["HS256"])
        return skyrelay.JWTAuth(keys=[key], required=True, require_kind=False, leeway=5)

    def add_user(self, username: str, password: str, roles: list[str]) -> User:
        salt = secrets.token_bytes(16)
        user = User(f"user-{len(self.users) + 1}", username, list(roles), salt,
                    _hash(password, salt))
        self.users[username] = user
        return user

    def login(self, username: str, password: str) -> str | None:
        """A token for the user, or None when the name or the password is wrong."""
        user = self.users.get(username)
        if user is None:
            _hash(password, b"\0" * 16)  # the same work as a real check: no timing hint
            return None
        if not user.check(password):
            return None
        return self.issue(user.user_id, user.username, user.roles)

    def issue(self, user_id: str, username: str, roles: list[str],
              ttl_s: float | None = None) -> str:
        now = int(time.time())
        claims = {"sub": user_id, "username": username, "roles": list(roles), "iat": now,
                  "exp": now + int(self.ttl_s if ttl_s is None else ttl_s)}
        signed = _b64(b'{"alg":"HS256","typ":"JWT"}') + "." + \
            _b64(json.dumps(claims, separators=(",", ":")).encode())
        return signed + "." + _b64(self._mac(signed))

    def verify(self, token: str) -> dict:
        """The claims of a valid, unexpired token; raises TokenError otherwise."""
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("malformed token")
        try:
            header = json.loads(_unb64(parts[0]))
            claims = json.loads(_unb64(parts[1]))
            mac = _unb64(parts[2])
        except (ValueError, binascii.Error) as exc:
            raise TokenError("malformed token") from exc
        if not isinstance(header, dict) or header.get("alg") != "HS256":
            raise TokenError("unsupported algorithm")
        if not hmac.compare_digest(mac, self._mac(parts[0] + "." + parts[1])):
            raise TokenError("bad signature")
        exp = claims.get("exp") if isinstance(claims, dict) else None
        if not isinstance(exp, (int, float)) or exp <= time.time():
            raise TokenError("token expired")
        return claims

    def _mac(self, signed: str) -> bytes:
        return hmac.new(self.secret, signed.encode(), hashlib.sha256).digest()
