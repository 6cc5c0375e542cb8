"""The tracker demo for the browser test: fast intervals, a port from the command line (0: any),
'PORT <n>' on stdout once listening, and a clean stop when standard input closes."""

from __future__ import annotations

import argparse
import sys

from skyrelay.demo import build_demo


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    demo = build_demo("127.0.0.1", args.port, position_interval=1.0, window_interval=5.0,
                      status_interval=2.0, metrics_interval=1.0)
    demo.start()
    print(f"PORT {demo.server.port}", flush=True)
    try:
        sys.stdin.read()  # until the test closes our stdin
    finally:
        demo.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
