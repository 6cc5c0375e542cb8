#!/usr/bin/env python3
"""SSE fan-out benchmark: skyrelay's /sse/<topic> against sse-starlette on uvicorn, side by side
in one run.

Same method as run_fanout.py and run_socketio.py: the server pinned to CPU 1, the C++ load
client (bench/loadclient, --protocol sse) to CPU 0, 1,000 streams of GET /sse/bench, ~100-byte
events fanned out to every stream, interleaved rounds, medians, deliveries per
server-CPU-second. sse-starlette runs twice: on asyncio with h11, and on uvloop with httptools.

    .venv/bin/python bench/run_sse.py [--rounds 3] [--quick] [--wait-quiet 600]
"""

from __future__ import annotations

import sys

import harness
from harness import Peer, server

SERVERS = {
    "skyrelay": Peer(server("skyrelay_server.py")),
    "sse-starlette": Peer(server("sse_starlette_server.py")),
    "sse-starlette+uvloop": Peer(server("sse_starlette_server.py", "--fast")),
}
PATH = "/sse/bench"
BUDGET_S = 330  # disturbed runs are repeated only while the whole run is under this


def main() -> int:
    p = harness.argument_parser(__doc__, wait_quiet=True)
    # Offered load at saturation (messages/s x subscribers): at or above what each one sustains
    # on a core here (in trial runs skyrelay delivered 1.46 M/s of 1.5 M/s offered at 95% CPU,
    # sse-starlette ~41 k/s of 60 k/s).
    p.add_argument("--skyrelay-rate", type=float, default=1500.0)
    p.add_argument("--peer-rate", type=float, default=60.0)
    # Equal load for latency: 10 k deliveries/s. At 20 k/s sse-starlette already used 96% of
    # its core in a trial (one task wake-up per event per stream), so its latency was queueing.
    p.add_argument("--latency-rate", type=float, default=10.0)
    args = harness.parse_args(p)
    harness.prepare()
    saturation = {n: args.peer_rate for n in SERVERS} | {"skyrelay": args.skyrelay_rate}
    scenarios = [("saturation", saturation),
                 (f"{args.latency_rate:g} msg/s x {args.clients:,}",
                  {n: args.latency_rate for n in SERVERS})]
    bench = harness.Fanout(SERVERS, args, path=PATH, protocol="sse", retry_budget_s=BUDGET_S)
    results = bench.measure(scenarios)
    lines, summary = harness.summarize(results, [n for n in SERVERS if n != "skyrelay"])
    harness.report("sse", lines, {"args": vars(args), "summary": summary, "runs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
