"""The tracker demo for the browser test: fast intervals, a port from the command line (0: any),
'PORT <n>' on stdout once listening, and a clean stop when standard input closes. ``--tle``
loads a catalogue instead of the bundled set (re-based to now, as ``skyrelay demo --rebase``)."""

from __future__ import annotations

import argparse
import sys

from skyrelay.demo import build_demo
from skyrelay.tracker import ElementsSource


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tle", help="a TLE or gpredict .dat file (default: the bundled set)")
    ap.add_argument("--positions-every", type=float, default=1.0)
    args = ap.parse_args()
    satellites = ElementsSource(args.tle, rebase=True).load() if args.tle else None
    demo = build_demo("127.0.0.1", args.port, satellites=satellites, position_interval=args.positions_every,
                      window_interval=5.0, status_interval=2.0, metrics_interval=1.0)
    demo.start()
    print(f"PORT {demo.server.port}", flush=True)
    try:
        sys.stdin.read()  # until the test closes our stdin
    finally:
        demo.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
