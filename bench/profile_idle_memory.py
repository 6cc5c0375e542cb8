"""Where an idle connection's memory goes: the skyrelay scale server (servers/scale_skyrelay.py)
under heaptrack, holding N idle connections of one transport, attributed allocation site by
allocation site.

    .venv/bin/python bench/profile_idle_memory.py --protocol json --clients 3000
    .venv/bin/python bench/profile_idle_memory.py --protocol socketio --clients 3000 --tls

The server runs under `heaptrack` (Debian package heaptrack) with a bounded life
(--max-seconds): the load client (bench/loadclient) opens N connections, and the server then
ends abruptly (os._exit, its --max-seconds timer) with every connection still open, so each
byte an idle connection holds is a "leak" in heaptrack's record. heaptrack_print's leak report
(the flame-graph form, leaked bytes per call stack) is summed by the first frame that names a
skyrelay, Boost or OpenSSL function and divided by N; sites below --min-bytes per connection
are left out. What the process keeps whatever N (Python, the server's own tables) divides
away at large N; a second run at another N tells the two apart.

Requested bytes only: glibc adds 8 bytes to each allocation and rounds it up to 16 (at least
32), which this report does not show; RSS per connection (run_scale.py) includes it.
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness
from harness import LOADCLIENT, free_port, stop, wait_port

PATHS = {"json": ("/ws/bench", "ws"),
         "socketio": ("/socket.io/?EIO=4&transport=websocket", "socketio"),
         "sse": ("/sse/bench", "sse")}
# The first frame of these names is where a stack is attributed (innermost first).
OURS = re.compile(r"skyrelay::|boost::|SSL_|ssl3_|tls_|BIO_|CRYPTO_|EVP_|OPENSSL_")


def site(stack: str) -> str:
    """The innermost frame of `stack` (outermost first, ';'-separated) that is ours."""
    frames = stack.split(";")
    for f in reversed(frames):
        if OURS.search(f) and "operator new" not in f:
            return re.sub(r"\(.*", "", f)[:140]
    return frames[-1][:140]


def attribute(data: Path, n: int, min_bytes: float) -> list[tuple[str, float]]:
    stacks = data.with_suffix(".stacks")
    subprocess.run(["heaptrack_print", "-f", str(data), "--flamegraph-cost-type", "leaked",
                    "-F", str(stacks)], check=True, stdout=subprocess.DEVNULL)
    per_site: dict[str, int] = collections.Counter()
    for line in stacks.read_text(errors="replace").splitlines():
        stack, _, cost = line.rpartition(" ")
        if cost.isdigit():
            per_site[site(stack)] += int(cost)
    rows = [(s, b / n) for s, b in per_site.items() if b / n >= min_bytes]
    return sorted(rows, key=lambda r: -r[1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", choices=list(PATHS), required=True)
    p.add_argument("--clients", type=int, default=3000)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--max-seconds", type=float, default=60.0,
                   help="the server's life under heaptrack; the connections must open within it")
    p.add_argument("--min-bytes", type=float, default=4.0, help="smallest site shown, per conn")
    args = p.parse_args()
    harness.build_loadclient()
    out = Path(tempfile.mkdtemp(prefix="skyrelay-heaptrack-"))
    port = free_port()
    cmd = ["heaptrack", "-o", str(out / "server"), *harness.server(
        "scale_skyrelay.py", "--protocol", args.protocol, "--port", str(port),
        "--clients", str(args.clients), "--heartbeat", "600",
        "--max-seconds", str(args.max_seconds))]
    if args.tls:
        from run_tls import make_cert
        cert, key = make_cert(out)
        cmd += ["--certfile", str(cert), "--keyfile", str(key)]
    server = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    client = None
    try:
        wait_port(port, server, timeout=60)
        path, protocol = PATHS[args.protocol]
        client_cmd = [str(LOADCLIENT), "--port", str(port), "--path", path,
                      "--protocol", protocol, "--clients", str(args.clients), "--expect", "1",
                      "--warmup", "0", "--duration", "1", "--hold", str(args.max_seconds),
                      "--bind-base", "127.9.0.1", "--bind-count",
                      str(max(1, -(-args.clients // 500)))]
        if args.tls:
            client_cmd += ["--ca", str(out / "cert.pem")]
        client = subprocess.Popen(client_cmd, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        connected = False
        for line in client.stderr:
            if " connected in " in line:
                connected = True
                print(line.strip(), file=sys.stderr)
                break
        if not connected:
            raise RuntimeError("the load client did not connect")
        # The server ends itself (its --max-seconds timer) with every connection open.
        server.wait(timeout=args.max_seconds + 120)
    finally:
        if client:
            stop(client)
        if server.poll() is None:
            stop(server)
    data = next(out.glob("server*.zst"), None) or next(out.glob("server*.gz"), None)
    if data is None:
        raise RuntimeError(f"no heaptrack data in {out}")
    rows = attribute(data, args.clients, args.min_bytes)
    total = sum(b for _, b in rows)
    print(f"{args.protocol}{' (TLS)' if args.tls else ''}: N = {args.clients}, "
          f"{total:.0f} bytes per connection in the sites below ({data})")
    for s, b in rows:
        print(f"{b:8.1f}  {s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
