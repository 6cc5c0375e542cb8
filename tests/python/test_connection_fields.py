"""A Connection makes its rarely used fields on first use (docs/benchmarks.md, "Socket.IO under
4 KB per idle connection"): what handlers see is what they saw when every field was made up
front."""

from __future__ import annotations

import json

from skyrelay.connection import Connection

HEADERS = [("Host", "127.0.0.1:1"), ("X-Trace", "a=b; c"), ("Accept", ""), ("x-trace", "last")]


def test_headers_read_back_lower_cased_and_the_last_of_a_name_wins():
    conn = Connection(None, "sid", headers=HEADERS)
    assert conn.headers == {"host": "127.0.0.1:1", "x-trace": "last", "accept": ""}
    assert conn.headers is conn.headers  # made once, then the same dict
    conn.headers["added"] = "1"
    assert conn.headers["added"] == "1"


def test_headers_from_any_iterable_and_with_a_nul():
    conn = Connection(None, "sid", headers=iter(HEADERS[:2]))
    assert conn.headers == {"host": "127.0.0.1:1", "x-trace": "a=b; c"}
    conn = Connection(None, "sid", headers=[("A", "x\0y"), ("B\0", "z")])
    assert conn.headers == {"a": "x\0y", "b\0": "z"}
    assert Connection(None, "sid").headers == {}


def test_state_params_claims_and_roles_are_per_connection_and_settable():
    a, b = Connection(None, "a"), Connection(None, "b")
    a.state["n"] = 1
    a.params["id"] = "x"
    assert a.state == {"n": 1} and b.state == {} and a.state is a.state
    assert a.params == {"id": "x"} and b.params == {}
    assert a.claims == {} and a.roles == [] and a.user is None
    a.claims["k"] = 1
    a.roles.append("r")
    assert b.claims == {} and b.roles == []
    shared = {"kept": True}
    b.state = shared
    assert b.state is shared
    b.roles = ["admin"]
    b.params = {"p": "1"}
    assert b.roles == ["admin"] and b.params == {"p": "1"}


def test_claims_give_user_and_roles():
    claims = {"sub": "alice", "roles": ["ops", "viewer"], "exp": 1}
    for given in (claims, json.dumps(claims)):
        conn = Connection(None, "sid", claims=given)
        assert conn.claims == claims
        assert conn.user == "alice"
        assert conn.roles == ["ops", "viewer"]
    conn = Connection(None, "sid", claims={"sub": 7})
    assert conn.user is None and conn.roles == []


def test_an_empty_connect_payload_reads_as_a_fresh_dict():
    from skyrelay.connection import EMPTY_AUTH

    a, b = Connection(None, "a", auth=EMPTY_AUTH), Connection(None, "b", auth=EMPTY_AUTH)
    assert a.auth == {} and a.auth is a.auth
    a.auth["k"] = 1
    assert b.auth == {}
    assert Connection(None, "c").auth is None
    assert Connection(None, "d", auth={"token": "t"}).auth == {"token": "t"}
