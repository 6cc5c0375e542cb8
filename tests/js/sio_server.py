"""The Socket.IO app that tests/js/*.test.mjs run against: prints "PORT <n>", serves until its
standard input closes (so it never outlives the test process that started it)."""

from __future__ import annotations

import sys
import threading
import time

import skyrelay

# --recovery: connection state recovery on (a dropped client comes back to the same socket).
RECOVERY = "--recovery" in sys.argv
# With recovery, pings short enough that a client that vanishes is noticed (and detached) within
# seconds, but wide enough that a client on a loaded machine never misses one: these tests are
# about recovery, not heartbeats (the client reads both from the handshake).
timers = {"ping_interval": 1.0, "ping_timeout": 2.0} if RECOVERY else {}
# --tls: serve https/wss with a certificate made now; prints "CA <path>" (the CA to trust) first.
TLS = "--tls" in sys.argv
if TLS:
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
    from tlscerts import PKI

    pki = PKI(Path(tempfile.mkdtemp(prefix="skyrelay-tls-")))
    timers.update(ssl_certfile=pki.cert, ssl_keyfile=pki.key)
    print(f"CA {pki.ca}", flush=True)
server = skyrelay.Server("127.0.0.1", 0, namespaces=["/", "/admin"],
                         recovery_window=10.0 if RECOVERY else 0.0, **timers)


@server.on("join_ticks")
def join_ticks(conn, count):
    """Joins "ticks" and starts publishing `count` numbered ticks there, one per 20 ms."""
    conn.join("ticks")

    def publish():
        for n in range(count):
            server.emit("tick", {"n": n}, to="ticks")
            time.sleep(0.02)

    threading.Thread(target=publish, daemon=True).start()
    return "started"


@server.on("join_mixed")
def join_mixed(conn, count):
    """Joins "ticks" and publishes `count` numbered "tick"s, one per 20 ms, cycling through the
    three kinds of target recovery must replay: the room, everyone in the namespace, and the
    connection alone."""
    conn.join("ticks")

    def publish():
        for n in range(count):
            kind = n % 3
            if kind == 0:  # binary too: the attachment must be replayed with its packet
                server.emit("tick", {"n": n, "blob": bytes([n % 256]) * 3}, to="ticks")
            elif kind == 1:
                server.emit("tick", {"n": n})
            else:
                conn.emit("tick", {"n": n})
            time.sleep(0.02)

    threading.Thread(target=publish, daemon=True).start()
    return "started"


@server.on("join_rooms")
def join_rooms(conn, count):
    """Joins "r1", "r2" and "r3" and publishes `count` numbered "tick"s, one per 20 ms, to one
    of its rooms, to two of them at once, to the connection alone, and (not numbered, never
    received) to a room it is not in."""
    for room in ("r1", "r2", "r3"):
        conn.join(room)

    def publish():
        for n in range(count):
            kind = n % 3
            if kind == 0:
                server.emit("tick", {"n": n}, to=["r1", "r3"])
            elif kind == 1:
                server.emit("tick", {"n": n}, to="r2")
            else:
                conn.emit("tick", {"n": n})
            server.emit("tick", {"n": -1}, to="not-joined")
            time.sleep(0.02)

    threading.Thread(target=publish, daemon=True).start()
    return "started"


@server.on("connect")
def on_connect(conn):
    if (conn.auth or {}).get("token") == "bad":
        raise skyrelay.ConnectionRefused("invalid token", data={"code": "auth_failed"})
    conn.emit("welcome", {"sid": conn.sid, "auth": conn.auth})


@server.on("echo")
def echo(conn, data):
    conn.emit("echo", data)


@server.on("sum")
def add(conn, data):
    return sum(data)


@server.on("blob")
def blob(conn, data):
    return {"size": len(data), "reversed": bytes(reversed(data))}


@server.on("ask_me")
async def ask_me(conn, data):
    answer = await server.acall("question", data, to=conn, timeout=5)
    return {"client_said": answer}


@server.on("connect", namespace="/admin")
def admin_connect(conn):
    if (conn.auth or {}).get("role") != "admin":
        return False


@server.on("stats", namespace="/admin")
def stats(conn, data):
    return {"namespace": conn.namespace, "connections": server.connection_count}


server.start()
print(f"PORT {server.port}", flush=True)
sys.stdin.read()
server.stop()
if TLS:
    import shutil

    shutil.rmtree(pki.ca.parent, ignore_errors=True)
