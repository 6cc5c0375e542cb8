"""JWT authentication settings: which keys sign tokens, and what a token must say.

Pass them as ``Server(jwt=JWTAuth(...))``. Tokens are verified in the C++ core at every
handshake (JSON-protocol WebSocket, Server-Sent Events, Socket.IO CONNECT) before any Python
handler runs, and by the publish API; see docs/api.md, "Authentication".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

_HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
_PUBLIC_ALGORITHMS = ("RS256", "ES256")


def _as_bytes(value: str | bytes, what: str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")


def _algorithms(algorithms: Iterable[str] | str, allowed: tuple[str, ...]) -> list[str]:
    algs = [algorithms] if isinstance(algorithms, str) else list(algorithms)
    if not algs:
        raise ValueError("a key needs at least one algorithm")
    for alg in algs:
        if alg not in allowed:
            raise ValueError(f"algorithm {alg!r} is not one of {', '.join(allowed)}")
    return algs


@dataclass(frozen=True)
class JWTKey:
    """One verification key. Make it with :meth:`hmac` or :meth:`public_pem`.

    ``kid`` is matched against the token header's ``kid`` (a token without ``kid`` is tried
    against every key). Each key lists the algorithms it may verify; a token whose ``alg`` is
    not among them is refused before any cryptography.
    """

    type: str
    kid: str
    material: bytes = field(repr=False)
    algorithms: tuple[str, ...]

    @classmethod
    def hmac(cls, kid: str, secret: str | bytes,
             algorithms: Iterable[str] | str = ("HS256",)) -> JWTKey:
        """A shared secret for HS256, HS384 or HS512; at least as many bytes as the largest
        hash output (32 for HS256, 64 for HS512)."""
        return cls("hmac", str(kid), _as_bytes(secret, "secret"),
                   tuple(_algorithms(algorithms, _HMAC_ALGORITHMS)))

    @classmethod
    def public_pem(cls, kid: str, pem: str | bytes,
                   algorithms: Iterable[str] | str = ("RS256",)) -> JWTKey:
        """A PEM public key (``-----BEGIN PUBLIC KEY-----``): RSA of 2048 bits or more for
        RS256, or EC P-256 for ES256."""
        return cls("public_pem", str(kid), _as_bytes(pem, "pem"),
                   tuple(_algorithms(algorithms, _PUBLIC_ALGORITHMS)))


@dataclass(frozen=True)
class JWTAuth:
    """What the server asks of a token.

    - ``keys``: the :class:`JWTKey` s that may sign tokens.
    - ``issuers``: accepted ``iss`` values (empty: any).
    - ``audiences``: this server's audiences; a token's ``aud`` must name one. Empty: tokens
      that carry ``aud`` at all are refused (RFC 7519 4.1.3).
    - ``leeway``: seconds of clock skew allowed on ``exp``, ``nbf`` and ``iat``. A connection
      is ended ``leeway`` seconds after its token's ``exp``.
    - ``required``: refuse connections without a token. When False, a connection may come
      without one (``conn.user`` is None), but a token that is presented must be valid.
    - ``kind_claim``: the payload claim naming the token's kind (``"typ"``). Connect tokens
      say ``connect_kind`` (``"connect"``), publish tokens ``publish_kind`` (``"publish"``).
    - ``require_kind``: when False, a token without the kind claim counts as a connect token
      (never as a publish token).
    """

    keys: tuple[JWTKey, ...]
    issuers: tuple[str, ...] = ()
    audiences: tuple[str, ...] = ()
    leeway: int = 30
    required: bool = False
    kind_claim: str = "typ"
    connect_kind: str = "connect"
    publish_kind: str = "publish"
    require_kind: bool = True

    def __init__(self, keys: Iterable[JWTKey], *, issuers: Iterable[str] | str = (),
                 audiences: Iterable[str] | str = (), leeway: float = 30,
                 required: bool = False, kind_claim: str = "typ",
                 connect_kind: str = "connect", publish_kind: str = "publish",
                 require_kind: bool = True) -> None:
        keys = tuple(keys)
        if not keys:
            raise ValueError("JWTAuth needs at least one key")
        for key in keys:
            if not isinstance(key, JWTKey):
                raise TypeError(f"keys must be JWTKey objects, not {type(key).__name__}")
        if leeway < 0:
            raise ValueError("leeway must be >= 0")
        if not kind_claim or not connect_kind or not publish_kind or connect_kind == publish_kind:
            raise ValueError("kind_claim, connect_kind and publish_kind must be non-empty, and "
                             "the two kinds different")

        def strings(value: Iterable[str] | str) -> tuple[str, ...]:
            return (value,) if isinstance(value, str) else tuple(str(v) for v in value)

        set_ = object.__setattr__
        set_(self, "keys", keys)
        set_(self, "issuers", strings(issuers))
        set_(self, "audiences", strings(audiences))
        set_(self, "leeway", int(leeway))
        set_(self, "required", bool(required))
        set_(self, "kind_claim", str(kind_claim))
        set_(self, "connect_kind", str(connect_kind))
        set_(self, "publish_kind", str(publish_kind))
        set_(self, "require_kind", bool(require_kind))

    def _options(self) -> dict[str, Any]:
        """The form the C++ core reads (server_config::jwt)."""
        return {
            "keys": [(k.type, k.kid, k.material, list(k.algorithms)) for k in self.keys],
            "issuers": list(self.issuers),
            "audiences": list(self.audiences),
            "leeway_s": self.leeway,
            "required": self.required,
            "kind_claim": self.kind_claim,
            "connect_kind": self.connect_kind,
            "publish_kind": self.publish_kind,
            "require_kind": self.require_kind,
        }
