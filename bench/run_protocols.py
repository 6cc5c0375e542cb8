#!/usr/bin/env python3
"""skyrelay's two WebSocket protocols side by side: the JSON protocol and Socket.IO, each from
this checkout and (with --before) from another one, all in one run.

Same method as run_fanout.py (server on CPU 1, the C++ load client on CPU 0, 1,000 clients,
~100-byte events, every round runs each server in turn, medians of the rounds, deliveries per
server-CPU-second). Two offered loads: saturation (1,000 msg/s x 1,000 clients, more than
any of them sends, so what is compared is the work a delivery costs at full batching) and a
load every server sustains (50 msg/s x 1,000), where nothing is dropped and a busy client
core matters less. --before names a checkout with its own .venv (made by `make install`
there); its servers run with its Python and its bench/servers scripts:

    .venv/bin/python bench/run_protocols.py --before ../base [--rounds 3] [--duration 6]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from run_fanout import HERE, PYTHON, build_loadclient, median, run_once

PROTOCOLS = {
    # name: (server script, load client path, load client protocol)
    "JSON protocol": ("skyrelay_server.py", "/ws/bench", "ws"),
    "Socket.IO": ("sio_skyrelay.py", "/socket.io/?EIO=4&transport=websocket", "socketio"),
}
KEYS = ("published_per_s", "deliveries_per_s", "deliveries_per_cpu_s", "p50_us", "p99_us",
        "server_cpu_util")


def servers(before: Path | None) -> dict[str, tuple[list[str], str, str]]:
    """name -> (command, load client path, load client protocol)."""
    builds = {"after": (PYTHON, HERE / "servers")}
    if before is not None:
        python = before / ".venv" / "bin" / "python"
        if not python.exists():
            sys.exit(f"{python} is missing: run `make install` in {before} first")
        builds["before"] = (str(python), before / "bench" / "servers")
    out = {}
    for build, (python, scripts) in builds.items():
        for proto, (script, path, client) in PROTOCOLS.items():
            out[f"{proto}, {build}"] = ([python, str(scripts / script)], path, client)
    return out


def table(results: dict[str, dict[str, list[dict]]]) -> list[str]:
    lines = ["| load | server | published msg/s | deliveries/s | deliveries per server-CPU-s "
             "| p50 | p99 | server CPU | disturbed runs |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for load, by_server in results.items():
        for name, runs in by_server.items():
            if not runs:
                lines.append(f"| {load} | {name} | failed | | | | | | |")
                continue
            row = {k: median(runs, k) for k in KEYS}
            lines.append(
                f"| {load} | {name} | {row['published_per_s']:,.0f} | "
                f"{row['deliveries_per_s']:,.0f} | {row['deliveries_per_cpu_s']:,.0f} | "
                f"{row['p50_us'] / 1000:.1f} ms | {row['p99_us'] / 1000:.1f} ms | "
                f"{row['server_cpu_util']:.0%} | {sum(r['disturbed'] for r in runs)}/{len(runs)} |")
    return lines


def ratio(results: dict[str, list[dict]], top: str, bottom: str) -> str | None:
    """top / bottom in deliveries per server-CPU-second: of the medians, and per round."""
    a, b = results.get(top), results.get(bottom)
    if not a or not b:
        return None
    whole = median(a, "deliveries_per_cpu_s") / median(b, "deliveries_per_cpu_s")
    rounds = [x["deliveries_per_cpu_s"] / y["deliveries_per_cpu_s"] for x, y in zip(a, b)]
    return (f"{top} / {bottom}: **{whole:.2f}x** "
            f"(per round: {', '.join(f'{r:.2f}x' for r in rounds)})")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", type=Path, help="another checkout to compare with (its .venv)")
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--duration", type=float, default=6.0)
    p.add_argument("--rates", default="1000,50",
                   help="offered loads, messages/s (x clients = demand), comma-separated")
    args = p.parse_args()
    named = servers(args.before.resolve() if args.before else None)
    build_loadclient()
    (HERE / "results").mkdir(exist_ok=True)
    commands = {name: cmd for name, (cmd, _, _) in named.items()}
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    results: dict[str, dict[str, list[dict]]] = {}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for rate in rates:
        load = f"{rate:g} msg/s"
        results[load] = {name: [] for name in named}
        for rnd in range(args.rounds):
            for name, (_, path, client) in named.items():
                try:
                    r = run_once(name, rate, args.clients, args.warmup, args.duration,
                                 commands, path, client)
                except Exception as exc:  # reported, not hidden; the others still run
                    print(f"[{load}] round {rnd + 1} {name}: failed: {exc}", flush=True)
                    continue
                results[load][name].append(r)
                print(f"[{load}] round {rnd + 1} {name}: {r['deliveries_per_s']:.0f}/s, "
                      f"{r['deliveries_per_cpu_s']}/cpu-s, cpu {r['server_cpu_util']:.2f}, "
                      f"connected {r['connected']}, other cpu {r['other_cpu_s']} s", flush=True)
    lines = table(results)
    for load, by_server in results.items():
        lines.append(f"\n{load}, deliveries per server-CPU-second:\n")
        for build in ("after", "before"):
            line = ratio(by_server, f"Socket.IO, {build}", f"JSON protocol, {build}")
            if line:
                lines.append(f"- {line}")
        for proto in PROTOCOLS:
            line = ratio(by_server, f"{proto}, after", f"{proto}, before")
            if line:
                lines.append(f"- {line}")
    text = "\n".join(lines)
    print(f"\n{started}, {args.rounds} rounds of {args.duration:g} s, {args.clients} clients\n")
    print(text)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    summary = {load: {name: {k: median(runs, k) for k in KEYS}
                      for name, runs in by.items() if runs} for load, by in results.items()}
    (HERE / "results" / f"protocols-{stamp}.json").write_text(json.dumps(
        {"started": started, "args": {k: str(v) for k, v in vars(args).items()},
         "summary": summary, "runs": results}, indent=2))
    (HERE / "results" / f"protocols-{stamp}.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
