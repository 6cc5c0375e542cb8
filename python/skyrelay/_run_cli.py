"""``skyrelay run module:attr``: finds the app's :class:`skyrelay.Server` and serves it, in this
process or, with ``--workers N``, in N worker processes on one port (``_workers.py``)."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import signal
import sys
import threading
import traceback
from typing import Any

from ._cli_output import UsageError, served_routes
from .server import Server

# The environment variable that makes ``skyrelay run`` one worker of a supervisor (_workers.py):
# "<index>;<handoff fd of each worker, comma-separated>;<inbox fd>;<ready fd>".
WORKER_ENV = "SKYRELAY_WORKER"




class AppError(Exception):
    """The app's own code failed while loading: the command shows that code's frames (not
    skyrelay's nor importlib's) and exits 1."""

    def __init__(self, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.cause = cause

    def report(self) -> str:
        hidden = tuple(os.path.dirname(os.path.abspath(m.__file__)) + os.sep
                       for m in (sys.modules[__package__], importlib))
        frames = [f for f in traceback.extract_tb(self.cause.__traceback__)
                  if not f.filename.startswith("<frozen ")
                  and not os.path.abspath(f.filename).startswith(hidden)]
        lines = [f"{self}:\n", "Traceback (most recent call last):\n"]
        lines += traceback.format_list(frames)
        lines += traceback.format_exception_only(type(self.cause), self.cause)
        return "".join(lines)


def add_parser(sub: Any) -> None:
    run = sub.add_parser(
        "run", help="serve an app's skyrelay server (module:attribute)",
        description="Imports module:attribute (a skyrelay.Server, a skyrelay.flask.SocketIO, a "
                    "Flask app with one, a skyrelay.fastapi.SkyRelay or a FastAPI app with one) "
                    "and serves its skyrelay server. No reloading.")
    run.add_argument("app", metavar="module:attribute", help="e.g. myapp:server")
    run.add_argument("--host", help="address to listen on (default: the app's)")
    run.add_argument("--port", type=int, help="port (default: the app's; 0 picks a free one)")
    run.add_argument("--workers", type=int, default=1,
                     help="processes serving the one port with SO_REUSEPORT (default 1)")
    run.add_argument("--broker", help="broker URL for every worker (default: the app's)")
    run.add_argument("--allow-memory-broker", action="store_true",
                     help="with --workers > 1: accept that each worker delivers only its own "
                          "events (the in-memory broker)")
    run.add_argument("--max-restarts", type=int, default=5,
                     help="worker restarts allowed within a minute before giving up (default 5)")


def load_app(target: str) -> Any:
    """The object ``module:attribute`` names (the module imported from the working directory
    first). UsageError when the module or the attribute is missing."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"expected module:attribute (e.g. myapp:server), not {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise UsageError(f"no module named {module_name!r}") from None
        raise UsageError(f"importing {module_name!r} failed: {exc}") from None
    except Exception as exc:  # the app's own code raised: its traceback is what helps
        raise AppError(f"importing {module_name!r} raised {type(exc).__name__}", exc) from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


def server_of(obj: Any, target: str, host: str | None, port: int | None) -> Server:
    """The skyrelay Server behind an app object (see add_parser's description)."""
    if isinstance(obj, Server):
        return obj
    module = type(obj).__module__
    if module == "skyrelay.flask" and type(obj).__name__ == "SocketIO":
        return obj._build(host or "127.0.0.1", 5000 if port is None else port)
    if module == "skyrelay.fastapi" and type(obj).__name__ == "SkyRelay":
        return obj.server
    extensions = getattr(obj, "extensions", None)
    if isinstance(extensions, dict) and "socketio" in extensions:  # a Flask app
        return server_of(extensions["socketio"], target, host, port)
    state_server = getattr(getattr(obj, "state", None), "skyrelay", None)
    if isinstance(state_server, Server):  # a FastAPI/Starlette app with SkyRelay(app)
        print(f"skyrelay run: serving {target}'s skyrelay server only; its ASGI routes need "
              f"an ASGI server (uvicorn)", file=sys.stderr)
        return state_server
    raise UsageError(f"{target} is not a skyrelay.Server (nor a Flask or FastAPI app wrapped "
                     f"by skyrelay) but a {type(obj).__name__}")


def run(args: argparse.Namespace) -> int:
    """The ``run`` command: a single process, one worker of a supervisor, or the supervisor."""
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    worker = os.environ.pop(WORKER_ENV, None)  # not passed on to what the app may start
    if worker:
        return _serve_worker(args, worker)
    server = server_of(load_app(args.app), args.app, args.host, args.port)
    if args.workers == 1:
        server._configure_run(args.host, args.port, broker=args.broker)
        return _serve(server, None, lambda: None)
    from . import _workers

    return _workers.supervise(args, server)


def _serve(server: Server, worker_index: int | None, ready: Any) -> int:
    """Starts the server, calls ``ready()``, serves until SIGINT or SIGTERM (or, for a worker,
    until its supervisor is gone), then stops gracefully."""
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    try:
        server.start()
    except OSError as exc:
        port = server._options["port"]  # the one asked for (the core reports 0 when unbound)
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"port {port} on {server.host} is in use") from None
        raise UsageError(f"cannot listen on {server.host}:{port}: {exc.strerror or exc}") \
            from None
    except ValueError as exc:  # a broker URL the engine refuses, say
        raise UsageError(str(exc)) from None
    ready()
    if worker_index is None:
        print(f"skyrelay serving on {server.http_url} ({served_routes(server)}); no reloading; "
              f"press Ctrl+C to stop", flush=True)
    parent = os.getppid()
    try:
        while not done.wait(0.25) and server.running:
            if worker_index is not None and os.getppid() != parent:
                break  # the supervisor is gone: so is its port
    finally:
        server.stop()
    return 0


def _serve_worker(args: argparse.Namespace, spec: str) -> int:
    """One worker process of ``--workers N`` (started by _workers.supervise)."""
    index_text, fds_text, inbox_text, ready_text = spec.split(";")
    index = int(index_text)
    handoff_fds = [int(fd) for fd in fds_text.split(",")]
    ready_fd = int(ready_text)
    server = server_of(load_app(args.app), args.app, args.host, args.port)
    server._configure_run(args.host, args.port, broker=args.broker, reuse_port=True,
                          worker=(index, handoff_fds, int(inbox_text)))

    def ready() -> None:
        os.write(ready_fd, f"{index} {os.getpid()}\n".encode())
        os.close(ready_fd)

    return _serve(server, index, ready)
