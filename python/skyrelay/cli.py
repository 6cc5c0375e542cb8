"""The ``skyrelay`` command."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="skyrelay", description="skyrelay real-time push engine")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the live demo (server metrics pushed to a page)")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--interval", type=float, default=1.0, help="seconds between updates")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(args.host, args.port, args.interval)
    return 2


if __name__ == "__main__":
    sys.exit(main())
