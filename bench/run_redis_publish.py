#!/usr/bin/env python3
"""Publications per second through one node on the Redis broker, with a real redis-server on a
free port of 127.0.0.1 (Debian's binary; no persistence).

Two measures, each from a fresh Redis:
- ``emit``: one Python thread calls ``server.emit`` N times to one room; the time runs from the
  first call until Redis's sequence of that room reads N (every publication landed).
- ``http``: C client threads each POST /api/publish one event at a time (keep-alive), to the
  node with ONE I/O thread; publications/s over all answers.

``--before DIR`` also runs the node with DIR first on PYTHONPATH: a copy of an earlier build's
``skyrelay`` package (e.g. one whose publish blocks for each Redis round trip), so both are
measured in one run, side by side:

    .venv/bin/python bench/run_redis_publish.py [--before /tmp/old] [-n 20000] [-c 8]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

NODE = r'''
import json, sys, threading, time, socket
import httpx, skyrelay
url, n, clients, per_client = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
port_r = int(url.rsplit(":", 1)[1].split("/")[0])

def seq(room):
    with socket.create_connection(("127.0.0.1", port_r)) as s:
        key = ("sr:{r1:/%s}:m" % room).encode()
        s.sendall(b"*3\r\n$4\r\nHGET\r\n$%d\r\n%s\r\n$3\r\nseq\r\n" % (len(key), key))
        reply = s.recv(64)
        return 0 if reply.startswith(b"$-1") else int(reply.split(b"\r\n")[1])

server = skyrelay.Server(port=0, broker=url, publish_token="t", io_threads=1)
server.start()
deadline = time.monotonic() + 10
while httpx.get(f"http://127.0.0.1:{server.port}/health").json()["status"] != "ok":
    assert time.monotonic() < deadline, "no redis"
    time.sleep(0.02)
t0 = time.perf_counter()
for i in range(n):
    server.emit("e", i, to="emit")
returned = time.perf_counter() - t0
while seq("emit") < n:
    time.sleep(0.001)
landed = time.perf_counter() - t0

def client():
    with httpx.Client(headers={"Authorization": "Bearer t"}) as c:
        for i in range(per_client):
            r = c.post(f"http://127.0.0.1:{server.port}/api/publish",
                       json={"event": "e", "data": i, "to": "http"})
            assert r.status_code == 200, r.text
threads = [threading.Thread(target=client) for _ in range(clients)]
t0 = time.perf_counter()
for t in threads: t.start()
for t in threads: t.join()
http = time.perf_counter() - t0
assert seq("http") == clients * per_client
server.stop()
print(json.dumps({"emit_per_s": n / landed, "emit_return_s": returned,
                  "http_per_s": clients * per_client / http}))
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_once(python_path: str | None, n: int, clients: int, per_client: int) -> dict:
    directory = tempfile.mkdtemp(prefix="skyrelay-bench-redis-")
    port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", directory],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.025)
        env = dict(os.environ)
        if python_path:
            env["PYTHONPATH"] = python_path
        out = subprocess.run([sys.executable, "-c", NODE, f"redis://127.0.0.1:{port}/0", str(n),
                              str(clients), str(per_client)], capture_output=True, text=True,
                             timeout=300, cwd=directory, env=env)
        if out.returncode != 0:
            raise SystemExit(f"{python_path or 'this build'}: {out.stderr[-2000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        redis.terminate()
        redis.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", help="a directory holding an earlier build's skyrelay package")
    p.add_argument("-n", type=int, default=20000, help="emits")
    p.add_argument("-c", type=int, default=8, help="HTTP client threads")
    p.add_argument("--per-client", type=int, default=500)
    args = p.parse_args()
    builds = ([("before: " + args.before, args.before)] if args.before else []) + [
        ("this build", None)]
    print(f"n={args.n} emits; {args.c} HTTP clients x {args.per_client} publishes; "
          "one node, one I/O thread, redis-server on 127.0.0.1")
    print(f"{'build':40} {'emit/s':>10} {'emit loop (s)':>14} {'HTTP publishes/s':>17}")
    for name, path in builds:
        r = run_once(path, args.n, args.c, args.per_client)
        print(f"{name:40} {r['emit_per_s']:10.0f} {r['emit_return_s']:14.3f} "
              f"{r['http_per_s']:17.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
