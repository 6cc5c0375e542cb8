"""JWT keys from a JWKS URL (JWTAuth(jwks_url=...)) and from single JWKs (JWTKey.from_jwk).

The JWK Set is served by a real HTTP server on 127.0.0.1 that this module starts and stops, and
that counts the requests it answers; tokens are signed here with PyJWT and cryptography, and
verified by the server in C++ over real WebSocket and Socket.IO connections."""

from __future__ import annotations

import json
import logging
import ssl
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt as pyjwt
import pytest
import socketio
import websockets
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

import skyrelay
from skyrelay._jwks import max_age
from skyrelay.auth import JWKSError
from skyrelay.testing import connect, metric, wait_until
from tlscerts import PKI

AUDIENCE = "skyrelay-jwks-tests"
ISSUER = "https://idp.test/"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


K1, K2 = rsa_key(), rsa_key()
EC1 = ec.generate_private_key(ec.SECP256R1())


def public_jwk(private: Any, kid: str, **extra: Any) -> dict[str, Any]:
    algorithm = ECAlgorithm if isinstance(private, ec.EllipticCurvePrivateKey) else RSAAlgorithm
    jwk = json.loads(algorithm.to_jwk(private.public_key()))
    jwk.update(kid=kid, use="sig", **extra)
    jwk.pop("key_ops", None)  # as IdPs publish them: kty, kid, use, alg, n/e or x/y
    return jwk


def token(private: Any, kid: str, *, alg: str = "RS256", sub: str = "ada") -> str:
    now = int(time.time())
    claims = {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "typ": "connect", "iat": now,
              "exp": now + 300}
    return pyjwt.encode(claims, private, algorithm=alg, headers={"kid": kid})


class JWKSHost:
    """A JWK Set on http://127.0.0.1:<port>/jwks.json: the document, its Cache-Control and
    status can be changed while it runs; ``requests`` counts the GETs it answered."""

    def __init__(self, tls: PKI | None = None) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.cache_control: str | None = None
        self.status = 200
        self.body: bytes | None = None  # served instead of the document when set
        self.requests = 0
        self._lock = threading.Lock()
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                with host._lock:
                    host.requests += 1
                    body = host.body if host.body is not None else \
                        json.dumps(host.document).encode()
                    status, cache_control = host.status, host.cache_control
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if cache_control:
                    self.send_header("Cache-Control", cache_control)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that refused our certificate: expected in the TLS test

        self._server = Server(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls.cert, tls.key)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}/jwks.json"
        self.running = True

    def serve(self, *jwks: dict[str, Any]) -> None:
        with self._lock:
            self.document = {"keys": list(jwks)}

    def stop(self) -> None:
        if self.running:
            self.running = False
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)


@pytest.fixture
def jwks_host():
    host = JWKSHost()
    host.serve(public_jwk(K1, "k1", alg="RS256"))
    yield host
    host.stop()


def jwks_auth(host: JWKSHost, **kw: Any) -> skyrelay.JWTAuth:
    options: dict[str, Any] = dict(issuers=[ISSUER], audiences=[AUDIENCE], leeway=0,
                                   required=True)
    options.update(kw)
    return skyrelay.JWTAuth(jwks_url=host.url, **options)


def ws_url(server: skyrelay.Server) -> str:
    return f"ws://127.0.0.1:{server.port}/ws"


def accepted(server: skyrelay.Server, t: str) -> bool:
    """Whether a JSON-protocol WebSocket with this token opens (False: refused with 401)."""
    try:
        client = connect(ws_url(server), headers={"Authorization": f"Bearer {t}"})
    except websockets.exceptions.InvalidStatus as exc:
        assert exc.response.status_code == 401
        return False
    client.close()
    return True


def refusal_code(server: skyrelay.Server, t: str) -> str:
    with pytest.raises(websockets.exceptions.InvalidStatus) as err:
        connect(ws_url(server), headers={"Authorization": f"Bearer {t}"})
    assert err.value.response.status_code == 401
    return json.loads(err.value.response.body)["code"]


# -- JWTKey.from_jwk --------------------------------------------------------------------------

def test_from_jwk_makes_rsa_ec_and_oct_keys_that_verify_real_tokens(skyrelay_server_factory,
                                                                    sio_clients):
    secret = b"a-shared-secret-of-48-bytes-for-hs384-tokens!!!!"
    oct_jwk = {"kty": "oct", "kid": "h1", "alg": "HS384",
               "k": pyjwt.utils.base64url_encode(secret).decode()}
    rsa_key_ = skyrelay.JWTKey.from_jwk(public_jwk(K1, "r1"))  # no alg: RS256 by type
    ec_key_ = skyrelay.JWTKey.from_jwk(json.dumps(public_jwk(EC1, "e1")))  # JSON text
    oct_key = skyrelay.JWTKey.from_jwk(oct_jwk)
    assert (rsa_key_.type, rsa_key_.kid, rsa_key_.algorithms) == ("public_pem", "r1", ("RS256",))
    assert (ec_key_.type, ec_key_.kid, ec_key_.algorithms) == ("public_pem", "e1", ("ES256",))
    assert (oct_key.type, oct_key.kid, oct_key.algorithms, oct_key.material) == \
        ("hmac", "h1", ("HS384",), secret)
    assert rsa_key_.material.startswith(b"-----BEGIN PUBLIC KEY-----")

    server = skyrelay_server_factory(jwt=skyrelay.JWTAuth(
        [rsa_key_, ec_key_, oct_key], issuers=[ISSUER], audiences=[AUDIENCE], required=True))
    assert accepted(server, token(K1, "r1"))
    assert accepted(server, token(EC1, "e1", alg="ES256"))
    assert accepted(server, token(secret, "h1", alg="HS384"))
    # Each key verifies only its own tokens and algorithm.
    assert refusal_code(server, token(K2, "r1")) == "bad_signature"
    assert refusal_code(server, token(secret, "h1", alg="HS256")) == "alg_not_allowed"
    client = sio_clients()
    client.connect(f"http://127.0.0.1:{server.port}", auth={"token": token(EC1, "e1", alg="ES256")},
                   transports=["websocket"], wait_timeout=10)
    assert client.connected


@pytest.mark.parametrize("jwk, message", [
    (public_jwk(K1, "enc", alg="RSA-OAEP") | {"use": "enc"}, "use 'enc'"),
    (public_jwk(K1, "ops") | {"key_ops": ["encrypt"]}, "key_ops"),
    (json.loads(RSAAlgorithm.to_jwk(K1)) | {"kid": "priv"}, "private key"),
    (json.loads(OKPAlgorithm.to_jwk(ed25519.Ed25519PrivateKey.generate().public_key()))
     | {"kid": "ed"}, "'OKP' is not supported"),
    (public_jwk(ec.generate_private_key(ec.SECP384R1()), "p384"), "'ES384' is not supported"),
    (public_jwk(K1, "rs512", alg="RS512"), "'RS512' is not supported"),
    ({"kty": "RSA", "kid": "broken", "n": "AQAB"}, "JWK 'broken'"),
    ({"kty": "oct", "kid": 7, "k": "c2VjcmV0"}, "kid must be a string"),
])
def test_from_jwk_refuses_keys_the_verifier_cannot_or_must_not_use(jwk, message):
    with pytest.raises(ValueError, match=message):
        skyrelay.JWTKey.from_jwk(jwk)


def test_from_jwk_refuses_what_is_not_a_jwk():
    with pytest.raises(ValueError, match="not JSON"):
        skyrelay.JWTKey.from_jwk("{not json")
    with pytest.raises(TypeError):
        skyrelay.JWTKey.from_jwk(["kty", "RSA"])  # type: ignore[arg-type]


# -- a JWKS URL ---------------------------------------------------------------------------------

def test_keys_from_the_jwks_verify_websocket_and_socketio_tokens(jwks_host, skyrelay_server_factory,
                                                               sio_clients):
    # As Keycloak publishes it: an encryption key beside the signing key, and an OKP key the
    # verifier does not take; both are skipped.
    jwks_host.serve(public_jwk(K1, "k1", alg="RS256"),
                    public_jwk(K2, "enc1", alg="RSA-OAEP") | {"use": "enc"},
                    json.loads(OKPAlgorithm.to_jwk(ed25519.Ed25519PrivateKey.generate()
                                                   .public_key())) | {"kid": "ed1"})
    server = skyrelay_server_factory(jwt=jwks_auth(jwks_host))
    assert jwks_host.requests == 1  # fetched once, at start
    assert accepted(server, token(K1, "k1"))
    assert refusal_code(server, token(K2, "enc1")) == "unknown_key"  # enc keys never verify
    client = sio_clients()
    client.connect(f"http://127.0.0.1:{server.port}", auth={"token": token(K1, "k1")},
                   transports=["websocket"], wait_timeout=10)
    assert client.connected
    assert metric(server, "skyrelay_jwks_keys") == 1
    assert metric(server, "skyrelay_jwks_refreshes_total") == 1
    assert metric(server, "skyrelay_jwks_refresh_failures_total") == 0
    assert metric(server, "skyrelay_jwks_last_success_timestamp_seconds") > time.time() - 60


def test_static_keys_stay_beside_the_jwks_keys(jwks_host, skyrelay_server_factory):
    secret = b"an-internal-publisher-secret-of-32+b"
    server = skyrelay_server_factory(jwt=jwks_auth(
        jwks_host, keys=[skyrelay.JWTKey.hmac("internal", secret)]))
    assert accepted(server, token(secret, "internal", alg="HS256"))
    assert accepted(server, token(K1, "k1"))
    assert metric(server, "skyrelay_jwks_keys") == 2


def test_rotation_by_unknown_kid_brings_the_new_key_and_drops_the_old(jwks_host,
                                                                      skyrelay_server_factory):
    # The schedule is far away: only a token with the new kid can bring the new document.
    server = skyrelay_server_factory(jwt=jwks_auth(jwks_host, jwks_refresh_bounds=(600, 600),
                                                   jwks_refetch_interval=0.2))
    assert accepted(server, token(K1, "k1"))
    jwks_host.serve(public_jwk(K2, "k2", alg="RS256"))  # k2 added, k1 removed
    # The first k2 token is refused (the documented code) and asks for a refetch.
    assert refusal_code(server, token(K2, "k2")) == "unknown_key"
    assert wait_until(lambda: accepted(server, token(K2, "k2")), 10)
    # One fetch brought k2 (k2 tokens refused while it ran may have asked for one more).
    assert jwks_host.requests in (2, 3)
    assert metric(server, "skyrelay_jwks_unknown_kid_refetches_total") >= 1
    assert refusal_code(server, token(K1, "k1")) == "unknown_key"


def test_scheduled_refresh_follows_max_age_and_removed_keys_stop_verifying(
        jwks_host, skyrelay_server_factory):
    jwks_host.cache_control = "public, max-age=1"
    jwks_host.serve(public_jwk(K1, "k1", alg="RS256"), public_jwk(K2, "k2", alg="RS256"))
    server = skyrelay_server_factory(jwt=jwks_auth(jwks_host, jwks_refresh_bounds=(0.5, 600),
                                                   jwks_refetch_interval=600))
    t0 = time.monotonic()
    assert accepted(server, token(K1, "k1"))
    jwks_host.serve(public_jwk(K2, "k2", alg="RS256"))  # k1 revoked
    # k1's tokens still name a known kid, so nothing asks for a refetch: the schedule does it.
    assert wait_until(lambda: not accepted(server, token(K1, "k1")), 10)
    assert time.monotonic() - t0 >= 0.9  # not before max-age
    assert accepted(server, token(K2, "k2"))
    assert metric(server, "skyrelay_jwks_unknown_kid_refetches_total") == 0
    # max-age=0 is clamped to the lower bound (0.5 s): a handful of fetches, not a storm.
    jwks_host.cache_control = "max-age=0"
    before, t1 = jwks_host.requests, time.monotonic()
    time.sleep(2.2)
    fetched, elapsed = jwks_host.requests - before, time.monotonic() - t1
    assert 1 <= fetched <= elapsed / 0.5 + 2, (fetched, elapsed)


def test_a_flood_of_unknown_kids_costs_at_most_one_fetch_per_interval(jwks_host,
                                                                      skyrelay_server_factory):
    interval = 2.0
    server = skyrelay_server_factory(jwt=jwks_auth(jwks_host, jwks_refresh_bounds=(600, 600),
                                                   jwks_refetch_interval=interval))
    started = time.monotonic()
    codes = {refusal_code(server, token(K1, uuid.uuid4().hex)) for _ in range(40)}
    assert codes == {"unknown_key"}
    flood_took = time.monotonic() - started
    if flood_took < interval * 0.8:
        # Within the interval of the start's fetch: no fetch yet, however many kids came.
        assert jwks_host.requests == 1
    assert wait_until(lambda: jwks_host.requests == 2, interval + 5)
    time.sleep(interval * 0.5)
    assert jwks_host.requests == 2  # the whole flood rode on one fetch
    assert metric(server, "skyrelay_jwks_unknown_kid_tokens_total") == 40
    assert metric(server, "skyrelay_jwks_unknown_kid_refetches_total") == 1
    # Another made-up kid later costs one more fetch, not more.
    refusal_code(server, token(K1, "again"))
    assert wait_until(lambda: jwks_host.requests == 3, interval + 5)
    assert accepted(server, token(K1, "k1"))


def test_when_the_jwks_server_is_down_the_last_keys_stay_and_failures_count(
        jwks_host, skyrelay_server_factory, caplog):
    jwks_host.cache_control = "max-age=1"
    server = skyrelay_server_factory(jwt=jwks_auth(jwks_host, jwks_refresh_bounds=(0.5, 600),
                                                   jwks_refetch_interval=0.5))
    jwks_host.stop()
    with caplog.at_level(logging.WARNING, logger="skyrelay.jwks"):
        assert wait_until(lambda: metric(server, "skyrelay_jwks_refresh_failures_total") >= 1, 10)
        assert accepted(server, token(K1, "k1"))  # the last good set
        # An unknown kid asks for a fetch that fails too: refused, keys unchanged.
        assert refusal_code(server, token(K2, "k2")) == "unknown_key"
        assert accepted(server, token(K1, "k1"))
    assert metric(server, "skyrelay_jwks_keys") == 1
    assert metric(server, "skyrelay_jwks_refreshes_total") == 1
    assert any(r.name == "skyrelay.jwks" and jwks_host.url in r.getMessage()
               and "keeping the 1 keys" in r.getMessage() for r in caplog.records)


def test_a_bad_document_later_keeps_the_last_good_keys(jwks_host, skyrelay_server_factory):
    jwks_host.cache_control = "max-age=1"
    server = skyrelay_server_factory(jwt=jwks_auth(jwks_host, jwks_refresh_bounds=(0.5, 600)))
    jwks_host.serve(public_jwk(K2, "only-enc") | {"use": "enc"})  # no signing key left
    assert wait_until(lambda: metric(server, "skyrelay_jwks_refresh_failures_total") >= 1, 10)
    assert accepted(server, token(K1, "k1"))


@pytest.mark.parametrize("setup, message", [
    (lambda host: setattr(host, "status", 500), "HTTP 500"),
    (lambda host: setattr(host, "body", b"<html>login</html>"), "not JSON"),
    (lambda host: setattr(host, "body", b'{"keys": {}}'), "not a JWK Set"),
    (lambda host: host.serve(public_jwk(K1, "e") | {"use": "enc"}), "no usable signing key"),
    (lambda host: host.stop(), "refused"),
])
def test_start_fails_clearly_when_the_first_fetch_fails(jwks_host, setup, message):
    setup(jwks_host)
    server = skyrelay.Server(port=0, jwt=jwks_auth(jwks_host))
    with pytest.raises(JWKSError, match=message) as err:
        server.start()
    assert jwks_host.url in str(err.value)
    assert isinstance(err.value, ConnectionError)
    assert not server.running


def test_one_jwtauth_serves_two_servers_and_stops_with_the_last(jwks_host):
    auth = jwks_auth(jwks_host, jwks_refetch_interval=0.1)
    a = skyrelay.Server(port=0, jwt=auth).start()
    b = skyrelay.Server(port=0, jwt=auth).start()
    try:
        assert jwks_host.requests == 1  # one source, one fetch
        assert accepted(a, token(K1, "k1")) and accepted(b, token(K1, "k1"))
        a.stop()
        jwks_host.serve(public_jwk(K2, "k2", alg="RS256"))
        assert wait_until(lambda: accepted(b, token(K2, "k2")), 10)  # b's refresher still runs
    finally:
        a.stop()
        b.stop()
    threads = [t for t in threading.enumerate() if t.name == "skyrelay-jwks"]
    assert not threads


def test_jwks_options_are_checked():
    for url in ("http://idp.example.com/jwks.json", "ftp://127.0.0.1/jwks", "", "/jwks.json"):
        with pytest.raises((ValueError, TypeError)):
            skyrelay.JWTAuth(jwks_url=url)
    skyrelay.JWTAuth(jwks_url="https://idp.example.com/.well-known/jwks.json")
    skyrelay.JWTAuth(jwks_url="http://localhost:8080/realms/demo/protocol/openid-connect/certs")
    with pytest.raises(ValueError):
        skyrelay.JWTAuth(jwks_url="https://idp.test/jwks", jwks_refresh_bounds=(10, 5))
    with pytest.raises(ValueError, match="at least one key or a jwks_url"):
        skyrelay.JWTAuth()


@pytest.mark.parametrize("header, age, expected", [
    ("public, max-age=600", None, 600.0),
    ("max-age=600, must-revalidate", "100", 500.0),
    ('max-age="30"', None, 30.0),
    ("no-cache", None, 0.0),
    ("private", None, None),
    (None, None, None),
    ("s-maxage=5", None, None),
])
def test_max_age_reads_cache_control(header, age, expected):
    assert max_age(header, age) == expected


def test_socketio_refuses_unknown_kid_with_the_documented_code(jwks_host,
                                                              skyrelay_server_factory,
                                                              sio_clients):
    server = skyrelay_server_factory(jwt=jwks_auth(jwks_host))
    client = sio_clients()
    errors: list[Any] = []
    client.on("connect_error", lambda data: errors.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(f"http://127.0.0.1:{server.port}", auth={"token": token(K2, "nope")},
                       transports=["websocket"], wait_timeout=5)
    assert errors and errors[0]["data"] == {"code": "unknown_key"}


def test_https_jwks_uses_the_system_cas_unless_given_a_context(tmp_path):
    pki = PKI(tmp_path)
    host = JWKSHost(tls=pki)
    host.serve(public_jwk(K1, "k1", alg="RS256"))
    try:
        # urllib's defaults: our test CA is not among the system's, so the first fetch fails.
        untrusting = skyrelay.Server(port=0, jwt=jwks_auth(host))
        with pytest.raises(JWKSError, match="CERTIFICATE_VERIFY_FAILED|certificate verify"):
            untrusting.start()
        context = ssl.create_default_context(cafile=str(pki.ca))
        server = skyrelay.Server(port=0, jwt=jwks_auth(host, jwks_ssl_context=context)).start()
        try:
            assert accepted(server, token(K1, "k1"))
        finally:
            server.stop()
    finally:
        host.stop()


def test_from_jwk_without_pyjwt_names_the_extra_to_install():
    # A fresh interpreter where PyJWT cannot be imported (sys.modules entry None).
    code = ("import sys; sys.modules['jwt'] = None\n"
            "import skyrelay\n"
            "try:\n"
            "    skyrelay.JWTKey.from_jwk({'kty': 'oct', 'k': 'c2VjcmV0'})\n"
            "except ImportError as exc:\n"
            "    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert "pip install skyrelay[jwt]" in out.stdout, out.stderr
