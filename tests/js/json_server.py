"""The JSON-protocol app that tests/js/client*.test.mjs run skyrelay.js against.

Prints "PORT <n>" once it listens and serves until its standard input closes, so it never
outlives the test process that started it. Options:

  --port N          listen on N (default: a free port), to restart a server on the same port
  --history N       events kept per topic for resuming (Server's history_size)
  --outbox-frames N outbox bound per connection, to make drop_oldest drop early
  --token T         refuse handshakes whose `token` query parameter is not T (HTTP 401)
  --jwt-secret S    verify HS256 tokens signed with S; rooms `well:*` need the role operator,
                    and the event `purge` the role admin
  --compression     accept permessage-deflate on /ws (Server's compression=True)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import threading
from urllib.parse import parse_qs

import skyrelay

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--history", type=int, default=1000)
parser.add_argument("--outbox-frames", type=int, default=1024)
parser.add_argument("--token", default=None)
parser.add_argument("--jwt-secret", default=None)
parser.add_argument("--compression", action="store_true")
args = parser.parse_args()

# The "fail" handler raises on purpose; the test asserts what the client gets, so the server's
# traceback for it is only noise. Every other error is still logged.
logging.getLogger("skyrelay").addFilter(
    lambda record: not (record.args and record.args[0] == "fail"))

# The client tests fire bursts (20 requests at once, queued messages flushed on reconnect)
# that the default inbound limit (10/s, burst 20) would refuse; the limit has its own tests.
roles: dict = {}
if args.jwt_secret is not None:
    roles = dict(jwt=skyrelay.JWTAuth(keys=[skyrelay.JWTKey.hmac("k", args.jwt_secret.encode())],
                                      require_kind=False),
                 room_roles={"well:*": ["operator"]})
# skyrelay.js subscribes to many topics by name: every topic is open (client_topics is tested
# in tests/python/test_client_topics.py).
server = skyrelay.Server("127.0.0.1", args.port, history_size=args.history,
                         outbox_max_frames=args.outbox_frames, inbound_burst=1000,
                         client_topics="*", compression=args.compression, **roles)
if args.jwt_secret is not None:
    @server.on("purge", roles=["admin"])
    def purge(conn, data):
        return "purged"

# What clients sent with "record" events, by key, in arrival order.
recorded: dict[str, list] = {}
recorded_lock = threading.Lock()

if args.token is not None:
    @server.on("connect")
    def on_connect(conn):
        token = parse_qs(conn.query).get("token", [None])[0]
        if token != args.token:
            raise skyrelay.ConnectionRefused("bad token", status=401)
        conn.state["token"] = token


@server.on("echo")
def echo(conn, data):
    return data


@server.on("whoami")
def whoami(conn, data):
    return {"sid": conn.sid, "token": conn.state.get("token")}


@server.on("fail")
def fail(conn, data):
    raise ValueError("bad azimuth")


@server.on("refuse")
def refuse(conn, data):
    raise skyrelay.RequestError("not_allowed", "you may not")


@server.on("slow")
async def slow(conn, seconds):
    """Answers after `seconds` (at most 5), without holding up the dispatcher."""
    await asyncio.sleep(min(float(seconds), 5.0))
    return "late"


@server.on("record")
def record(conn, data):
    with recorded_lock:
        recorded.setdefault(data["key"], []).append(data["n"])


@server.on("recorded")
def get_recorded(conn, key):
    with recorded_lock:
        return list(recorded.get(key, []))


@server.on("publish")
def publish(conn, spec):
    """Publishes `count` events named `event` to `topic`, with data {"n": start + i} (and
    `pad` characters of padding), under `policy`; answers with the topic's seqs as counted
    by how many connections each reached."""
    reached = []
    for i in range(spec.get("count", 1)):
        data = {"n": spec.get("start", 0) + i}
        if spec.get("pad"):
            data["pad"] = "x" * spec["pad"]
        reached.append(server.emit(spec.get("event", "tick"), data, to=spec["topic"],
                                   policy=spec.get("policy")))
    return reached


@server.on("broadcast")
def broadcast(conn, spec):
    """Publishes spec["data"] as spec["event"] to every connection (no topic, no seq)."""
    return server.emit(spec["event"], spec.get("data"))


@server.on("kick")
def kick(conn, sid):
    """Disconnects `sid` as the application (close code 4002)."""
    return server.disconnect(sid, "kicked")


server.start()
print(f"PORT {server.port}", flush=True)
sys.stdin.read()
server.stop()
