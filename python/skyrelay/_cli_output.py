"""What the ``skyrelay`` commands print: results on stdout as a table, CSV or JSON
(``--format``), and everything else (warnings, errors) on stderr, so a pipe such as
``skyrelay passes --format csv ... > passes.csv`` gets data and nothing but data."""

from __future__ import annotations

import csv
import datetime as dt
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

FORMATS = ("table", "csv", "json")


class UsageError(Exception):
    """A mistake in the command line or its inputs: one line on stderr, exit code 2."""


def warn(command: str, message: str) -> None:
    print(f"skyrelay {command}: warning: {message}", file=sys.stderr, flush=True)


def iso(t: dt.datetime) -> str:
    """UTC to the millisecond, with a ``Z``: what JSON and CSV readers parse without help."""
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class Column:
    """One column: its key in the row dicts (the CSV header and the JSON field), the table's
    heading, and how the table shows a value (CSV and JSON take the value itself)."""

    key: str
    heading: str
    show: Callable[[Any], str] = str
    align: str = "<"


def write(fmt: str, columns: Sequence[Column], rows: Sequence[dict[str, Any]], *,
          about: dict[str, Any], title: str, notes: Sequence[str] = (),
          out: TextIO | None = None) -> None:
    """``rows`` in ``fmt``. JSON is one document: ``about`` (what was asked) with the rows
    under ``"rows"``; CSV is a header line and the rows; the table has ``title`` above and
    ``notes`` below."""
    out = out or sys.stdout
    if fmt == "json":
        json.dump({**about, "rows": [_plain(r) for r in rows]}, out, indent=1, default=_default)
        out.write("\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([c.key for c in columns])
        for r in rows:
            writer.writerow([_csv_value(r.get(c.key)) for c in columns])
    else:
        _table(columns, rows, title, notes, out)
    out.flush()


def _table(columns: Sequence[Column], rows: Sequence[dict[str, Any]], title: str,
           notes: Sequence[str], out: TextIO) -> None:
    print(title, file=out)
    if not rows:
        return
    cells = [[c.show(r.get(c.key)) for c in columns] for r in rows]
    widths = [max(len(c.heading), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    print("  ".join(f"{c.heading:{c.align}{w}}" for c, w in zip(columns, widths)).rstrip(), file=out)
    for line in cells:
        print("  ".join(f"{v:{c.align}{w}}" for v, c, w in zip(line, columns, widths)).rstrip(),
              file=out)
    for note in notes:
        print(note, file=out)


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: iso(v) if isinstance(v, dt.datetime) else v for k, v in row.items()}


def _csv_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return iso(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def served_routes(server: Any) -> str:
    """What a server answers on its port, for the line printed when it starts (``run`` and
    ``Server.run``): only the routes that are on, so the line never names one that 404s."""
    o = server._options
    routes = []
    if o.get("socketio"):
        routes.append(f"Socket.IO at {o['socketio_path']}")
    if o.get("json_protocol") and o.get("json_ws_path"):
        routes.append(f"WebSocket at {o['json_ws_path']}")
    routes += [f"{e.transport} endpoint {e.path}" for e in server._json.endpoints]
    for key, what in (("sse_path", "SSE"), ("publish_path", "publish API"), ("health_path", "health"),
                      ("metrics_path", "metrics")):
        if o.get(key):
            routes.append(f"{what} at {o[key]}")
    if server._wsgi is not None:
        routes.append("the WSGI app's own routes")
    return ", ".join(routes) or "nothing"
