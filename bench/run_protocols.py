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

import sys
import time
from pathlib import Path

import harness
from harness import HERE, PYTHON, Fanout, Peer

PROTOCOLS = {
    # name: (server script, load client path, load client protocol)
    "JSON protocol": ("skyrelay_server.py", "/ws/bench", "ws"),
    "Socket.IO": ("sio_skyrelay.py", "/socket.io/?EIO=4&transport=websocket", "socketio"),
}
COLUMNS = [c for c in harness.COLUMNS if c[1] != "client_bound_runs"]
COLUMNS.insert(-1, ("client CPU", "client_cpu_util"))


def benches(args, before: Path | None, trivial: bool = True) -> dict[str, Fanout]:
    """One Fanout per server (each protocol has its own load client path), by name."""
    builds = {"after": (PYTHON, HERE / "servers")}
    if before is not None:
        python = before / ".venv" / "bin" / "python"
        if not python.exists():
            sys.exit(f"{python} is missing: run `make install` in {before} first")
        builds["before"] = (str(python), before / "bench" / "servers")
    out = {}
    for build, (python, scripts) in builds.items():
        for proto, (script, path, client) in PROTOCOLS.items():
            name = f"{proto}, {build}"
            out[name] = Fanout({name: Peer([python, str(scripts / script)])}, args,
                               path=path, protocol=client)
    if trivial:  # the load client's ceiling, measured in the same rounds
        for proto, (_, path, client) in PROTOCOLS.items():
            name = f"{proto}, trivial server"
            out[name] = Fanout({name: harness.trivial(client)}, args, path=path,
                               protocol=client)
    return out


def main() -> int:
    p = harness.argument_parser(__doc__)
    p.add_argument("--before", type=Path, help="another checkout to compare with (its .venv)")
    p.add_argument("--no-trivial", action="store_true",
                   help="leave out the trivial server (the load client's ceiling)")
    p.add_argument("--rates", default="3000,50",
                   help="offered loads, messages/s (x clients = demand), comma-separated")
    args = harness.parse_args(p)
    named = benches(args, args.before.resolve() if args.before else None,
                    trivial=not args.no_trivial)
    harness.prepare()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results: harness.Results = {}
    for rate in [float(r) for r in args.rates.split(",") if r.strip()]:
        load = f"{rate:g} msg/s"
        results[load] = {name: [] for name in named}
        for rnd in range(args.rounds):  # interleaved: every server once per round
            for name, bench in named.items():
                try:
                    r = bench.run_once(name, rate)
                except Exception as exc:  # reported, not hidden; the others still run
                    print(f"[{load}] round {rnd + 1} {name}: failed: {exc}", flush=True)
                    continue
                results[load][name].append(r)
                print(f"[{load}] round {rnd + 1} {name}: {harness.progress(r)}", flush=True)
    lines, summary = harness.summarize(results, peers=[], columns=COLUMNS)
    for load in results:
        lines.append("")
        pairs = [(f"Socket.IO, {b}", f"JSON protocol, {b}") for b in ("after", "before")]
        pairs += [(f"{proto}, after", f"{proto}, before") for proto in PROTOCOLS]
        for a, b in pairs:
            got = harness.ratio(results, load, a, b)
            if got:
                lines.append("- " + harness.ratio_line(a, b, f"at {load}", *got, digits=2))
    for load, by_server in summary.items():  # how close each came to the client's ceiling
        for proto in PROTOCOLS:
            ceiling = by_server.get(f"{proto}, trivial server", {}).get("deliveries_per_s")
            for build in ("after", "before"):
                got = by_server.get(f"{proto}, {build}", {}).get("deliveries_per_s")
                if ceiling and got:
                    lines.append(f"- {proto}, {build} at {load}: {got / ceiling:.0%} of the "
                                 f"trivial server's deliveries/s (the load client's ceiling)")
    print(f"\n{started}, {args.rounds} rounds of {args.duration:g} s, {args.clients} clients")
    harness.report("protocols", lines, {"started": started, "args": {
        k: str(v) for k, v in vars(args).items()}, "summary": summary, "runs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
