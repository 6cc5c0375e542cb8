#!/usr/bin/env python3
"""permessage-deflate against uncompressed, side by side in one run: server CPU per delivery and
bytes on the wire for a ~1 KB JSON telemetry object, fanned out to 1,000 JSON-protocol clients.

Both runs are skyrelay (bench/servers/skyrelay_deflate_server.py) at the same offered load,
pinned to CPU 1, with the C++ load client (bench/loadclient) on CPU 0: "plain" has compression
off, "deflate" has it on for /ws and the load client offers permessage-deflate and inflates
every compressed message (each publication is compressed once on the server and the same bytes
go to every client). Rounds are interleaved (plain, deflate, plain, ...); medians reported.
Bounded: 3 rounds of two ~10 s runs by default (about a minute and a half).

    .venv/bin/python bench/run_compression.py [--rate 20] [--rounds 3] [--quick]
"""

from __future__ import annotations

import sys

import harness
from harness import Peer, median, server

SERVERS = {
    "plain": Peer(server("skyrelay_deflate_server.py", "--compression", "0")),
    "deflate": Peer(server("skyrelay_deflate_server.py", "--compression", "1"),
                    ("--deflate", "1")),
}


def per_delivery(r: dict) -> None:
    """Adds the run's costs per delivery: server CPU (us) and bytes read by the client."""
    n = r["deliveries"] or 1
    r["cpu_us_per_delivery"] = round(r["server_cpu_s"] / n * 1e6, 3)
    r["wire_bytes_per_delivery"] = round(r["wire_bytes"] / n, 1)
    r["compressed_share"] = round(r["compressed_messages"] / n, 3)


def main() -> int:
    p = harness.argument_parser(__doc__)
    p.add_argument("--rate", type=float, default=20.0,
                   help="messages/s published (x clients = deliveries/s); both runs the same")
    args = harness.parse_args(p, quick_duration=3.0)
    harness.prepare()
    scenario = f"{args.rate:g} msg/s x {args.clients} clients"
    bench = harness.Fanout(SERVERS, args, retry_budget_s=120, fail_fast=True)
    results = bench.measure([(scenario, {name: args.rate for name in SERVERS})])
    runs = results[scenario]
    for name in SERVERS:
        for r in runs[name]:
            per_delivery(r)
    keys = [("deliveries/s", "deliveries_per_s", "{:,.0f}"),
            ("server CPU us per delivery", "cpu_us_per_delivery", "{:.3f}"),
            ("deliveries per server-CPU-s", "deliveries_per_cpu_s", "{:,.0f}"),
            ("wire bytes per delivery", "wire_bytes_per_delivery", "{:,.0f}"),
            ("compressed share", "compressed_share", "{:.0%}"),
            ("p50", "p50_us", "{:,.0f} us"), ("p99", "p99_us", "{:,.0f} us"),
            ("server CPU", "server_cpu_util", "{:.0%}")]
    lines = ["| server | " + " | ".join(h for h, _, _ in keys) + " | disturbed runs |",
             "|---|" + "---:|" * (len(keys) + 1)]
    summary: dict = {}
    for name in SERVERS:
        row = {k: median(runs[name], k) for _, k, _ in keys}
        summary[name] = row
        disturbed = sum(r["disturbed"] for r in runs[name])
        lines.append(f"| {name} | " + " | ".join(fmt.format(row[k]) for _, k, fmt in keys)
                     + f" | {disturbed}/{len(runs[name])} |")
    plain, deflate = summary["plain"], summary["deflate"]
    summary["bytes_ratio"] = round(deflate["wire_bytes_per_delivery"]
                                   / plain["wire_bytes_per_delivery"], 3)
    summary["cpu_ratio"] = round(deflate["cpu_us_per_delivery"] / plain["cpu_us_per_delivery"], 3)
    lines += ["", f"deflate / plain: wire bytes per delivery **{summary['bytes_ratio']:.2f}x**, "
                  f"server CPU per delivery **{summary['cpu_ratio']:.2f}x**"]
    harness.report("compression", lines, {"args": vars(args), "summary": summary,
                                          "runs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
