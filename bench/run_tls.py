#!/usr/bin/env python3
"""TLS fan-out benchmark: skyrelay over wss against python `websockets` over wss, side by side
in one run, and each over wss against itself over plain ws (what TLS costs).

Same method as run_fanout.py: the server pinned to CPU 1, the C++ load client
(bench/loadclient, --ca) to CPU 0, 1,000 subscribers of /ws/bench, ~100-byte messages,
interleaved rounds, medians, deliveries per server-CPU-second. Both servers terminate TLS
themselves with one throwaway self-signed ECDSA P-256 certificate for 127.0.0.1, made at run
time in a temporary directory (skyrelay: Server(ssl_certfile=, ssl_keyfile=); websockets:
serve(ssl=ssl.SSLContext)). The client verifies it (it is its own CA).

    .venv/bin/python bench/run_tls.py [--rounds 3] [--quick] [--wait-quiet 600] [--no-plain]
                                      [--scenarios saturation,equal,tls-cost]
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import sys
import tempfile
import time
from pathlib import Path

from run_fanout import HERE, PYTHON, build_loadclient, run_once, summarize
from run_sse import QuietWaiter

SKYRELAY = [PYTHON, str(HERE / "servers" / "skyrelay_server.py")]
WEBSOCKETS = [PYTHON, str(HERE / "servers" / "websockets_server.py")]
BUDGET_S = 330  # disturbed runs are repeated only while the whole run is under this


def make_cert(root: Path) -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate for 127.0.0.1 (valid for a day) and its key, as
    PEM files in `root`. The client trusts the certificate itself as its CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "skyrelay bench 127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    certfile, keyfile = root / "cert.pem", root / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return certfile, keyfile


def ratio_line(results: dict, scenario: str, a: str, b: str) -> tuple[str, dict] | None:
    """`a / b` in deliveries per server-CPU-second: the ratio of the medians, and per round."""
    runs = results.get(scenario, {})
    if not runs.get(a) or not runs.get(b):
        return None
    med = {n: sorted(r["deliveries_per_cpu_s"] for r in runs[n]) for n in (a, b)}
    mid = {n: (v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2)
           for n, v in med.items()}
    ratio = mid[a] / mid[b]
    per_round = [x["deliveries_per_cpu_s"] / y["deliveries_per_cpu_s"]
                 for x, y in zip(runs[a], runs[b])]
    text = (f"{a} / {b}, deliveries per server-CPU-second ({scenario}): **{ratio:.2f}x** "
            f"(per round: {', '.join(f'{x:.2f}x' for x in per_round)})")
    return text, {"ratio": round(ratio, 3), "per_round": [round(x, 3) for x in per_round]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--duration", type=float, default=6.0)
    # Offered load at saturation, as in run_fanout.py: above what each sustains on one core.
    p.add_argument("--skyrelay-rate", type=float, default=1000.0)
    p.add_argument("--websockets-rate", type=float, default=200.0)
    # One equal load for latency, the same for all.
    p.add_argument("--latency-rate", type=float, default=10.0)
    # TLS cost below saturation: skyrelay over wss and over plain ws at one load that both
    # deliver in full with CPU to spare, so the CPU per delivery compares like with like (at
    # saturation it also carries the work for frames that the outboxes drop). At 300 msg/s both
    # already filled the core in a trial (batching grows with load until the core is full).
    p.add_argument("--tls-cost-rate", type=float, default=50.0)
    p.add_argument("--scenarios", default="saturation,equal,tls-cost",
                   help="comma-separated subset of: saturation, equal, tls-cost")
    p.add_argument("--no-plain", action="store_true",
                   help="skip the plain-ws runs of both servers (no TLS-cost figures)")
    p.add_argument("--quick", action="store_true", help="1 round, short windows (smoke test)")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                   help="before each run wait for an idle machine, at most S seconds in all")
    args = p.parse_args()
    if args.quick:
        args.rounds, args.warmup, args.duration = 1, 1.0, 3.0
    build_loadclient()
    (HERE / "results").mkdir(exist_ok=True)
    tmp = tempfile.TemporaryDirectory(prefix="skyrelay-tlsbench-")
    certfile, keyfile = make_cert(Path(tmp.name))
    tls_server = ["--certfile", str(certfile), "--keyfile", str(keyfile)]
    tls_client = ("--ca", str(certfile))
    # name: (server command, load client arguments)
    servers: dict[str, tuple[list[str], tuple[str, ...]]] = {
        "skyrelay wss": ([*SKYRELAY, *tls_server], tls_client),
        "websockets wss": ([*WEBSOCKETS, *tls_server], tls_client),
    }
    if not args.no_plain:
        servers["skyrelay ws"] = (SKYRELAY, ())
        servers["websockets ws"] = (WEBSOCKETS, ())
    commands = {n: cmd for n, (cmd, _) in servers.items()}

    def rate_of(name: str) -> float:
        return args.skyrelay_rate if name.startswith("skyrelay") else args.websockets_rate

    equal = f"{args.latency_rate:g} msg/s x {args.clients:,}"
    cost = f"{args.tls_cost_rate:g} msg/s x {args.clients:,}"
    wanted = {k.strip() for k in args.scenarios.split(",") if k.strip()}
    scenarios = [s for k, s in [
        ("saturation", ("saturation", {n: rate_of(n) for n in servers})),
        # The wss pair, and skyrelay over plain ws: its TLS cost at light load, side by side.
        ("equal", (equal, {n: args.latency_rate for n in servers
                           if n.endswith("wss") or n == "skyrelay ws"})),
        ("tls-cost", (cost, {n: args.tls_cost_rate for n in servers
                             if n.startswith("skyrelay")})),
    ] if k in wanted]
    results: dict[str, dict[str, list[dict]]] = {}
    waiter = QuietWaiter(args.wait_quiet)
    started = time.monotonic()
    try:
        for scenario, rates in scenarios:
            results[scenario] = {n: [] for n in rates}
            for rnd in range(args.rounds):
                for name in rates:
                    r = None
                    for attempt in range(3):
                        quiet = waiter.wait() if args.wait_quiet else None
                        try:
                            r = run_once(name, rates[name], args.clients, args.warmup,
                                         args.duration, commands, "/ws/bench", "ws",
                                         servers[name][1])
                        except Exception as exc:  # reported, not hidden
                            print(f"[{scenario}] round {rnd + 1} {name}: failed: {exc}",
                                  flush=True)
                            break
                        r["attempt"] = attempt + 1
                        r["started_quiet"] = quiet
                        if (not r["disturbed"] or attempt == 2
                                or time.monotonic() - started - waiter.waited > BUDGET_S):
                            break
                        print(f"[{scenario}] round {rnd + 1} {name}: disturbed (other cpu "
                              f"{r['other_cpu_s']} s), repeating", flush=True)
                        time.sleep(3)
                    if r is None:
                        continue
                    results[scenario][name].append(r)
                    print(f"[{scenario}] round {rnd + 1} {name}: {r['deliveries_per_s']:.0f}/s, "
                          f"{r['deliveries_per_cpu_s']}/cpu-s, p50 {r['p50_us']} us, "
                          f"p99 {r['p99_us']} us, server cpu {r['server_cpu_util']:.2f}, "
                          f"client cpu {r['client_cpu_s']} s, connected {r['connected']}, "
                          f"closed {r['closed_by_server']}, other cpu {r['other_cpu_s']} s"
                          + (f", {r['tls_version']} {r['tls_cipher']}" if r.get("tls") else ""),
                          flush=True)
    finally:
        tmp.cleanup()

    lines, summary = summarize(results, [])
    lines.append("")
    for scenario, a, b in [("saturation", "skyrelay wss", "websockets wss"),
                           ("saturation", "skyrelay wss", "skyrelay ws"),
                           ("saturation", "websockets wss", "websockets ws"),
                           ("saturation", "skyrelay ws", "websockets ws"),
                           (equal, "skyrelay wss", "websockets wss"),
                           (equal, "skyrelay wss", "skyrelay ws"),
                           (cost, "skyrelay wss", "skyrelay ws")]:
        got = ratio_line(results, scenario, a, b)
        if got:
            lines.append(got[0])
            summary[f"{a} / {b} ({scenario})"] = got[1]
    table = "\n".join(lines)
    print("\n" + table)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (HERE / "results" / f"tls-{stamp}.json").write_text(
        json.dumps({"args": vars(args), "summary": summary, "runs": results}, indent=2))
    (HERE / "results" / f"tls-{stamp}.md").write_text(table + "\n")
    print(f"\n{time.monotonic() - started:.0f} s ({waiter.waited:.0f} s waiting for a quiet "
          f"machine)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
