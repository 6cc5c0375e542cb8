"""JWT authentication settings: which keys sign tokens, and what a token must say.

Pass them as ``Server(jwt=JWTAuth(...))``. Tokens are verified in the C++ core at every
handshake (JSON-protocol WebSocket, Server-Sent Events, Socket.IO CONNECT) before any Python
handler runs, and by the publish API; see docs/api.md, "Authentication". Keys may also come
from an identity provider's JWKS URL (``JWTAuth(jwks_url=...)``, skyrelay/_jwks.py), and one
JWK at a time from :meth:`JWTKey.from_jwk`; see docs/security.md.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._jwks import JWKSError, JWKSSource

__all__ = ["JWKSError", "JWTAuth", "JWTKey"]

_HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
_PUBLIC_ALGORITHMS = ("RS256", "ES256")
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth")


def _pyjwt() -> Any:
    """PyJWT with its cryptography backend, or an ImportError that says what to install."""
    try:
        import jwt
        from jwt.algorithms import has_crypto
    except ImportError as exc:
        raise ImportError("JWK keys need PyJWT: pip install skyrelay[jwt]") from exc
    if not has_crypto:
        raise ImportError("RSA and EC JWKs need PyJWT's crypto backend: "
                          "pip install skyrelay[jwt]")
    return jwt


def _jwk_dict(jwk: Mapping[str, Any] | str | bytes) -> dict[str, Any]:
    if isinstance(jwk, (str, bytes, bytearray)):
        try:
            jwk = json.loads(jwk)
        except ValueError:
            raise ValueError("a JWK is a JSON object; this text is not JSON") from None
    if not isinstance(jwk, Mapping):
        raise TypeError(f"a JWK is a dict or JSON text, not {type(jwk).__name__}")
    return dict(jwk)


def _check_jwk_use(jwk: dict[str, Any], kid: str) -> None:
    """Refuses keys meant for something else than verifying signatures (RFC 7517 4.2, 4.3),
    and asymmetric private keys (a verifier needs only the public part)."""
    if jwk.get("kty") != "oct" and any(m in jwk for m in _PRIVATE_MEMBERS):
        raise ValueError(f"JWK {kid!r} is a private key: give the server its public part")
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise ValueError(f"JWK {kid!r} has use {use!r}: only signature keys (\"sig\") verify")
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise ValueError(f"JWK {kid!r} has key_ops {ops!r} without \"verify\"")


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

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any] | str | bytes,
                 algorithm: str | None = None) -> JWTKey:
        """A key from a JSON Web Key (RFC 7517), as a dict or JSON text, parsed by PyJWT
        (``pip install skyrelay[jwt]``).

        ``kid`` comes from the JWK (``""`` when absent); the algorithm from ``algorithm``,
        else the JWK's ``alg``, else the key type (RSA: RS256, EC P-256: ES256, oct: HS256).
        The verifier takes RSA (2048 bits or more) for RS256, EC P-256 for ES256 and ``oct``
        secrets for HS256/384/512; other types (OKP, other curves, RS384...) are ValueError,
        and so are keys with ``use`` other than ``"sig"``, ``key_ops`` without ``"verify"``,
        and RSA/EC private keys.
        """
        data = _jwk_dict(jwk)
        kid = data.get("kid", "")
        if not isinstance(kid, str):
            raise ValueError(f"JWK kid must be a string, not {kid!r}")
        _check_jwk_use(data, kid)
        kty = data.get("kty")
        if kty not in ("RSA", "EC", "oct"):
            raise ValueError(f"JWK {kid!r}: key type {kty!r} is not supported "
                             f"(RSA, EC P-256 and oct are)")
        jwt = _pyjwt()
        try:
            parsed = jwt.PyJWK(data, algorithm=algorithm)
        except (jwt.exceptions.PyJWKError, jwt.exceptions.InvalidKeyError, KeyError,
                ValueError, TypeError) as exc:
            raise ValueError(f"JWK {kid!r}: {exc or type(exc).__name__}") from None
        alg = parsed.algorithm_name
        if kty == "oct":
            return cls.hmac(kid, parsed.key, (alg,))
        from cryptography.hazmat.primitives import serialization
        pem = parsed.key.public_bytes(serialization.Encoding.PEM,
                                      serialization.PublicFormat.SubjectPublicKeyInfo)
        if alg not in _PUBLIC_ALGORITHMS:
            raise ValueError(f"JWK {kid!r}: algorithm {alg!r} is not supported "
                             f"({', '.join(_PUBLIC_ALGORITHMS)} are)")
        return cls.public_pem(kid, pem, (alg,))


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
    - ``jwks_url``: an identity provider's JWK Set (https, or http to a loopback host). Its
      signing keys join ``keys``; they are fetched when the server starts (the start fails if
      that fetch fails) and kept fresh while it runs (docs/security.md):
      ``jwks_refresh`` seconds between fetches when the response has no Cache-Control
      max-age, a max-age clamped to ``jwks_refresh_bounds``; a token with an unknown ``kid``
      triggers a fetch, at most one per ``jwks_refetch_interval`` seconds; each fetch gives up
      after ``jwks_timeout`` seconds; ``jwks_ssl_context`` replaces the default TLS context
      (the system CAs) for a private CA.
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
    jwks_url: str | None = None
    _jwks: Any = field(default=None, repr=False, compare=False)

    def __init__(self, keys: Iterable[JWTKey] = (), *, issuers: Iterable[str] | str = (),
                 audiences: Iterable[str] | str = (), leeway: float = 30,
                 required: bool = False, kind_claim: str = "typ",
                 connect_kind: str = "connect", publish_kind: str = "publish",
                 require_kind: bool = True, jwks_url: str | None = None,
                 jwks_refresh: float = 300, jwks_refresh_bounds: tuple[float, float] = (60, 3600),
                 jwks_refetch_interval: float = 10, jwks_timeout: float = 5,
                 jwks_ssl_context: ssl.SSLContext | None = None) -> None:
        keys = tuple(keys)
        if not keys and jwks_url is None:
            raise ValueError("JWTAuth needs at least one key or a jwks_url")
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
        set_(self, "jwks_url", jwks_url)
        set_(self, "_jwks", None)
        if jwks_url is not None:
            low, high = (float(v) for v in jwks_refresh_bounds)
            if not (0 < low <= high) or jwks_refresh <= 0 or jwks_refetch_interval < 0 \
                    or jwks_timeout <= 0:
                raise ValueError("jwks_refresh and jwks_timeout must be > 0, "
                                 "jwks_refresh_bounds (low, high) with 0 < low <= high, and "
                                 "jwks_refetch_interval >= 0")
            set_(self, "_jwks", JWKSSource(
                jwks_url, static_keys=keys, refresh=jwks_refresh,
                refresh_bounds=(low, high), refetch_interval=jwks_refetch_interval,
                timeout=jwks_timeout, ssl_context=jwks_ssl_context))

    def _start(self) -> None:
        """Server.start: with a jwks_url, the first fetch (JWKSError if it fails) and the
        refresher thread; nothing otherwise."""
        if self._jwks is not None:
            self._jwks.start()

    def _stop(self) -> None:
        """Server.stop: the refresher ends when no running server uses this JWTAuth."""
        if self._jwks is not None:
            self._jwks.stop()

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
            # With a JWKS URL the verifier reads this set, which _jwks.py fills.
            "key_set": self._jwks.key_set if self._jwks is not None else None,
        }
