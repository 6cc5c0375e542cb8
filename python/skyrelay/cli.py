"""The ``skyrelay`` command.

Results go to stdout; warnings and errors go to stderr, one line each, as
``skyrelay <command>: error: ...``. Exit codes: 0 done, 1 the app's own code failed while
loading (its traceback, without skyrelay's frames, is shown), 2 a user error (a bad argument, a
missing module or file, a port in use, a missing optional dependency), 130 interrupted
(docs/cli.md).
"""

from __future__ import annotations

import argparse
import errno
import sys

from ._cli_output import FORMATS, UsageError
from ._extras import MissingExtraError, install_command


def _parser() -> argparse.ArgumentParser:
    from . import __version__
    from . import _run_cli

    parser = argparse.ArgumentParser(prog="skyrelay", description="skyrelay real-time push engine")
    parser.add_argument("--version", action="version", version=f"skyrelay {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _run_cli.add_parser(sub)
    station_help = ("[NAME=]LAT,LON[,ALT_M[,MASK_DEG]]: degrees north, degrees east, metres above "
                    "the ellipsoid, elevation mask in degrees (repeatable)")
    demo = sub.add_parser("demo", help="run the live satellite tracker demo")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--tle", help="TLE file, gpredict .dat file or http(s) URL (default: the bundled set)")
    demo.add_argument("--rebase", dest="rebase", action="store_true", default=None,
                      help="move the elements' epochs to now (default for the bundled set)")
    demo.add_argument("--no-rebase", dest="rebase", action="store_false",
                      help="keep the elements' own epochs")
    demo.add_argument("--station", action="append", default=[], metavar="STATION",
                      help=station_help + "; the mask defaults to 5 (default: eight sites on "
                                          "every continent)")
    demo.add_argument("--positions-every", type=float, default=10.0, help="seconds between positions")
    demo.add_argument("--windows-every", type=float, default=60.0, help="seconds between window updates")
    demo.add_argument("--lookahead-hours", type=float, default=6.0, help="window search horizon")
    demo.add_argument("--status-every", type=float, default=30.0, help="seconds between server_status")
    demo.add_argument("--elements-every", type=float, default=0.0,
                      help="seconds between reloads of --tle (file or URL; default 0: loaded once)")
    demo.add_argument("--ssl-certfile", help="PEM certificate (chain): serve https and wss")
    demo.add_argument("--ssl-keyfile", help="PEM private key of --ssl-certfile")

    passes = sub.add_parser("passes", help="predict satellite passes over a ground station")
    passes.add_argument("--tle", required=True, help="TLE file (two- or three-line sets, or gpredict .dat)")
    passes.add_argument("--station", action="append", required=True, metavar="STATION",
                        help=station_help)
    passes.add_argument("--start", help="ISO-8601 UTC start (default: now)")
    passes.add_argument("--hours", type=float, default=24.0)
    passes.add_argument("--min-elevation", type=float, default=0.0,
                        help="mask in degrees of the stations that give none (default 0)")
    passes.add_argument("--satellite", action="append", default=[],
                        help="only satellites whose name or number contains this (repeatable)")

    passes.add_argument("--format", choices=FORMATS, default="table",
                        help="table (default), csv or json, on stdout")

    prop = sub.add_parser("propagate", help="print satellite positions")
    prop.add_argument("--tle", required=True, help="TLE file (two- or three-line sets, or gpredict .dat)")
    prop.add_argument("--start", help="ISO-8601 UTC start (default: now)")
    prop.add_argument("--minutes", type=float, default=90.0, help="span to cover")
    prop.add_argument("--step", type=float, default=10.0, help="minutes between rows")
    prop.add_argument("--satellite", action="append", default=[],
                      help="only satellites whose name or number contains this (repeatable)")

    prop.add_argument("--format", choices=FORMATS, default="table",
                      help="table (default), csv or json, on stdout")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except UsageError as exc:
        print(f"skyrelay {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except MissingExtraError as exc:  # the module that needs it names the extra
        print(f"skyrelay {args.command}: error: this command needs {exc.name}: "
              f"{install_command(exc.extra)}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    from . import _run_cli

    if args.command == "run":
        try:
            return _run_cli.run(args)
        except _run_cli.AppError as exc:
            print(f"skyrelay run: error: {exc.report()}", file=sys.stderr, end="")
            return 1
    if args.command == "demo":
        return _demo(args)
    from . import _orbit_cli

    if args.command == "passes":
        return _orbit_cli.passes(args)
    return _orbit_cli.propagate(args)


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    from .tracker import parse_station

    try:
        stations = [parse_station(s) for s in args.station] or None
        return run_demo(args.host, args.port, tle=args.tle, rebase=args.rebase, stations=stations,
                        position_interval=args.positions_every, window_interval=args.windows_every,
                        lookahead_hours=args.lookahead_hours, status_interval=args.status_every,
                        elements_every=args.elements_every,
                        ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile)
    except FileNotFoundError as exc:
        raise UsageError(f"no such file: {exc.filename or exc}") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"port {args.port} on {args.host} is in use") from None
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") \
            from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None


if __name__ == "__main__":
    sys.exit(main())
