#!/usr/bin/env python3
"""Server CPU per POST /api/publish: one kept-alive connection, requests one after another
(each ~110-byte event to a topic nobody follows), the server's threads' CPU from their
schedstat; with --baseline DIR (a directory holding another build's `skyrelay` package) the
two builds alternate, round by round, and each round's ratio is printed.

    .venv/bin/python bench/run_post_cost.py [--requests 20000] [--rounds 3] [--baseline DIR]

The client runs in the server's process (the main thread) and is left out of the count; what
is counted is the core's: reading, parsing, the token, the publish and the answer.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

TOKEN = "t" * 32

ONE_RUN = r'''
import json, os, socket, sys
import skyrelay
n, token = int(sys.argv[1]), sys.argv[2]
def server_cpu_ns():
    total = 0
    for t in os.listdir("/proc/self/task"):
        if int(t) != os.getpid():  # the client is the main thread
            with open(f"/proc/self/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
    return total
s = skyrelay.Server("127.0.0.1", 0, publish_token=token).start()
body = json.dumps({"to": "x", "event": "e", "data": {"n": 1, "pad": "x" * 60}}).encode()
req = (f"POST /api/publish HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\n"
       f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
c = socket.create_connection(("127.0.0.1", s.port))
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
def one():
    c.sendall(req)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += c.recv(65536)
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(rest) < length:
        rest += c.recv(65536)
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(head[:60])
for _ in range(min(n, 500)):
    one()
t0 = server_cpu_ns()
for _ in range(n):
    one()
print((server_cpu_ns() - t0) / n)
s.stop()
'''


def run(pythonpath: str | None, requests: int) -> float:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run([sys.executable, "-c", ONE_RUN, str(requests), TOKEN], env=env,
                         check=True, capture_output=True, text=True, timeout=300).stdout
    return float(out.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--baseline", help="a directory holding another build's skyrelay package")
    args = p.parse_args()
    args.requests = max(1, min(args.requests, 200_000))
    ours, theirs = [], []
    for r in range(max(1, min(args.rounds, 20))):
        ours.append(run(None, args.requests))
        line = f"round {r + 1}: this build {ours[-1]:,.0f} ns"
        if args.baseline:
            theirs.append(run(args.baseline, args.requests))
            line += f", baseline {theirs[-1]:,.0f} ns, ratio {ours[-1] / theirs[-1]:.2f}"
        print(line, flush=True)
    summary = f"server CPU per POST, median: this build {statistics.median(ours):,.0f} ns"
    if theirs:
        ratios = ", ".join(f"{a / b:.2f}" for a, b in zip(ours, theirs))
        summary += (f"; baseline {statistics.median(theirs):,.0f} ns; this / baseline "
                    f"{statistics.median(ours) / statistics.median(theirs):.2f}x ({ratios})")
    with open("/proc/loadavg") as f:
        print(summary + f"; load average {' '.join(f.read().split()[:3])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
