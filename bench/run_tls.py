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

import datetime
import ipaddress
import sys
import tempfile
from pathlib import Path

import harness
from harness import Peer, server

SKYRELAY = server("skyrelay_server.py")
WEBSOCKETS = server("websockets_server.py")
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


def main() -> int:
    p = harness.argument_parser(__doc__, wait_quiet=True)
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
    args = harness.parse_args(p)
    harness.prepare()
    with tempfile.TemporaryDirectory(prefix="skyrelay-tlsbench-") as tmp:
        certfile, keyfile = make_cert(Path(tmp))
        tls_server = ["--certfile", str(certfile), "--keyfile", str(keyfile)]
        tls_client = ("--ca", str(certfile))
        servers = {
            "skyrelay wss": Peer([*SKYRELAY, *tls_server], tls_client),
            "websockets wss": Peer([*WEBSOCKETS, *tls_server], tls_client),
        }
        if not args.no_plain:
            servers["skyrelay ws"] = Peer(SKYRELAY)
            servers["websockets ws"] = Peer(WEBSOCKETS)

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
        bench = harness.Fanout(servers, args, retry_budget_s=BUDGET_S)
        results = bench.measure(scenarios)

    lines, summary = harness.summarize(results, [])
    lines.append("")
    for scenario, a, b in [("saturation", "skyrelay wss", "websockets wss"),
                           ("saturation", "skyrelay wss", "skyrelay ws"),
                           ("saturation", "websockets wss", "websockets ws"),
                           ("saturation", "skyrelay ws", "websockets ws"),
                           (equal, "skyrelay wss", "websockets wss"),
                           (equal, "skyrelay wss", "skyrelay ws"),
                           (cost, "skyrelay wss", "skyrelay ws")]:
        got = harness.ratio(results, scenario, a, b)
        if got:
            lines.append(harness.ratio_line(a, b, f"({scenario})", *got, digits=2))
            summary[f"{a} / {b} ({scenario})"] = {
                "ratio": round(got[0], 3), "per_round": [round(x, 3) for x in got[1]]}
    harness.report("tls", lines, {"args": vars(args), "summary": summary, "runs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
