"""The Python layer's seams (issue 14): one pure-Python encoding module shared by the server,
the Socket.IO bridge and the HTTP producer; `import skyrelay.producer` loads no C++ extension;
the Socket.IO bridge reaches handlers through the HandlerRegistry, not the Server."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest

import skyrelay._core as core
from skyrelay import encoding

TOKEN = "t0ken-for-seams"


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a fresh interpreter (so sys.modules starts empty)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)


def test_importing_the_producer_loads_no_extension():
    done = run_python("import skyrelay.producer, sys; "
                      "assert 'skyrelay._core' not in sys.modules")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("module", ["skyrelay.encoding", "skyrelay.handlers",
                                    "skyrelay.socketio", "skyrelay.connection"])
def test_the_shared_modules_import_neither_the_extension_nor_the_server(module):
    # socketio.py no longer imports server.py (server.py imports it): no cycle.
    done = run_python(f"import {module}, sys; "
                      f"assert 'skyrelay._core' not in sys.modules, 'core'; "
                      f"assert 'skyrelay.server' not in sys.modules, 'server'")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("module", ["skyrelay.options", "skyrelay.json_bridge"])
def test_the_servers_parts_do_not_import_the_server(module):
    # server.py imports them (its configuration and its JSON-protocol bridge): no cycle.
    done = run_python(f"import {module}, sys; "
                      f"assert 'skyrelay.server' not in sys.modules, 'server'")
    assert done.returncode == 0, done.stderr


def test_the_package_loads_the_server_on_first_use():
    done = run_python("import sys, skyrelay; assert 'skyrelay._core' not in sys.modules; "
                      "server = skyrelay.Server; assert 'skyrelay._core' in sys.modules; "
                      "assert server.__module__ == 'skyrelay.server'")
    assert done.returncode == 0, done.stderr


PUBLISH = """
import json, sys
from skyrelay.producer import Producer
with Producer(sys.argv[1], token=sys.argv[2]) as producer:
    first = producer.emit("reading", {"flow": 41.7, "raw": b"\\x00\\xff"}, to="WELL-7")
    try:
        producer.emit("reading", b'{"flow": NaN}', to="WELL-7")
        refused = None
    except ValueError as err:
        refused = str(err)
    second = producer.emit("reading", b'{"flow": 2}', to="WELL-7")
print(json.dumps({"core": "skyrelay._core" in sys.modules, "refused": refused,
                  "seqs": [first.seq, second.seq], "delivered": first.delivered}))
"""


def test_a_producer_without_the_extension_publishes_to_a_running_server(
        skyrelay_server_factory, skyrelay_client):
    server = skyrelay_server_factory(publish_token=TOKEN)
    client = skyrelay_client(server)
    client.subscribe("WELL-7")
    done = subprocess.run([sys.executable, "-c", PUBLISH, server.http_url, TOKEN],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["core"] is False  # still no extension after publishing
    assert result["seqs"] == [1, 2] and result["delivered"] == 1
    assert "valid UTF-8 JSON" in result["refused"]  # checked before it was sent
    frame = client.expect_event("reading")
    assert frame["data"] == {"flow": 41.7, "raw": base64.b64encode(b"\x00\xff").decode()}
    assert client.expect_event("reading")["data"] == {"flow": 2}


@pytest.mark.parametrize("raw", [
    b'{"a": 1}', b"[1, 2.5e3, null, true]", b' "text" ', b"0", "\"\u00e9\"".encode(),
    b"", b"{", b"[1,]", b"NaN", b"[Infinity]", b"{} {}", b"\xff", b"'x'", b"[1] x",
    b'{"a": 01}', b"\"\xc3\x28\"", b"[1e999]", b"-1e308", b"[1.5e-400]",
    b"1" * 400, b"[" * 100 + b"]" * 100, b"\t[true]\r\n",
])
def test_the_python_json_check_agrees_with_the_core(raw):
    assert encoding.is_json_text(raw) is core.is_valid_json(raw)


def test_one_encoding_for_both_wire_forms():
    payload = {"when": [b"\x01", {"deep": bytearray(b"\x02")}], "n": 3}
    with pytest.raises(encoding.NestedBytes):
        encoding.encode_json(payload)
    assert json.loads(encoding.encode_base64(payload)) == \
        {"when": ["AQ==", {"deep": "Ag=="}], "n": 3}
    text, attachments = encoding.encode_args([payload, "x"], None)
    assert attachments == [b"\x01", b"\x02"]
    assert encoding.unpack_binary(json.loads(text), attachments) == \
        [{"when": [b"\x01", {"deep": b"\x02"}], "n": 3}, "x"]


def test_every_server_option_lands_in_the_typed_config():
    from skyrelay.options import server_config as _server_config
    from skyrelay.server import Server

    server = Server(port=0, idle_timeout=7.5, inbound_rate=3, inbound_burst=4,
                    new_connections_per_ip=(5, 6), publish_token="p", history_size=9,
                    client_topics=["a:*"], cors_allowed_origins=["https://x.example"])
    options = dict(server._options, sio_namespaces=["/", "/chat"],
                   event_limits={"move": (1.0, 2.0)},
                   access={"namespaces": [("/chat", ["admin"])], "rooms": [], "events": []})
    config = _server_config(options)
    for key, value in options.items():
        got = getattr(config, key)
        if key in ("jwt", "access", "client_topics"):
            assert got is (value is not None), key  # policies read back as "is set"
        elif key == "trusted_proxies":  # (specs, header) or None; reads back the network count
            assert got == (0 if value is None else len(value[0])), key
        elif isinstance(value, (tuple, list)) and key.endswith("_per_ip"):
            assert got == tuple(value), key
        else:
            assert got == value, key
    assert (config.idle_timeout_ms, config.history_max_events) == (7500, 9)
    # A name that is not a field fails loudly (the dict parser used to skip it).
    with pytest.raises(AttributeError):
        config.no_such_option = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        config.port = "8000"  # type: ignore[assignment]


@pytest.mark.parametrize("text", ['[{"seq":1,"pad":"xx"}]', "[]", '"x"', "null", "-0", "1e400",
                                  "123456789012345678901234567890", "NaN", " [1] ", "[1] ",
                                  '{"a":1,"a":2}', '["\\ud83d\\ude00"]'])
def test_loads_json_is_json_loads(text):
    """The handlers' fast decoder gives what json.loads gives, white space around included."""
    expected = json.loads(text)
    got = encoding.loads_json(text)
    assert repr(got) == repr(expected)


@pytest.mark.parametrize("text", ["", "[1,2]x", "[1,", "{'a': 1}", "\ufeff[1]"])
def test_loads_json_raises_as_json_loads(text):
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    with pytest.raises(json.JSONDecodeError) as got:
        encoding.loads_json(text)
    assert str(got.value) == str(expected.value)
