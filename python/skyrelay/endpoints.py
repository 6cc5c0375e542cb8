"""Endpoints the application declares (``Server.endpoint``) and the JSON envelopes they speak
(:class:`Envelope`). The C++ core matches the paths, speaks the envelopes and fans out; this
module checks the declarations early (a bad one raises ValueError where it is written) and
turns them into the core's configuration (docs/api.md "Endpoints and envelopes")."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from . import _core

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
MAX_PARAM_LENGTH = 256  # a parameter can become a topic: the topic bound (max_topic_length)


def _kinds(value: str | Iterable[str] | None, what: str) -> list[str]:
    if value is None:
        return []
    kinds = [value] if isinstance(value, str) else list(value)
    if any(not isinstance(k, str) or not k for k in kinds):
        raise ValueError(f"{what} takes non-empty strings, not {value!r}")
    return kinds


class Envelope:
    """An application's own JSON frame, for a WebSocket endpoint.

    ``outbound`` is a template: every string value that is a placeholder is filled in per
    publication, everything else is sent as written. ``"$event"``, ``"$data"`` (the payload),
    ``"$topic"`` (the room, or null), ``"$seq"``, ``"$id"`` (the publication's id, a string),
    ``"$ts"`` (ISO-8601) and ``"$ts_ms"`` (epoch milliseconds). ``"$$x"`` is the literal
    ``"$x"``.

    Inbound: ``kind`` is the (dotted) field naming a frame's kind, ``data`` where its data is
    (None: the whole frame), ``id`` where a request id is (None: no requests). A frame with an
    id is a request (only ``requests`` kinds, if given): the handler's return value answers it
    through ``response`` (``"$ref"``: the id, ``"$result"``: the value), an error through
    ``error`` (``"$code"``, ``"$message"``, ``"$ref"``). ``subscribe``/``unsubscribe`` name
    the kinds that join/leave the topic(s) at the ``topic`` paths (a string or a list), with
    the optional ``subscribed``/``unsubscribed`` replies (``"$topic"``). ``ping`` names the
    kind answered by ``pong``. Reply templates may also use ``"$in.<path>"`` (a field of the
    inbound frame), ``"$param.<name>"``, ``"$kind"``, ``"$sid"``, ``"$id"`` (a fresh id),
    ``"$ts"`` and ``"$ts_ms"``; ``welcome`` is sent when a connection opens. A reply set to
    None is not sent; ``error`` defaults to ``{<kind>: "error", <data>: {"code", "message"}}``.

    Raises ValueError at once for a template or path that does not fit.
    """

    def __init__(self, outbound: Mapping[str, Any] | list[Any], *, kind: str = "type",
                 data: str | None = "data", id: str | None = None,
                 requests: str | Iterable[str] | None = None,
                 subscribe: str | Iterable[str] | None = None,
                 unsubscribe: str | Iterable[str] | None = None,
                 topic: str | Iterable[str] | None = None,
                 ping: str | Iterable[str] | None = None,
                 pong: Any = None, subscribed: Any = None, unsubscribed: Any = None,
                 response: Any = None, error: Any = "default", welcome: Any = None) -> None:
        if error == "default":
            body = {"code": "$code", "message": "$message"}
            error = {kind.split(".")[0]: "error", **({data.split(".")[0]: body} if data
                                                     else body)}
        spec: dict[str, Any] = {
            "outbound": outbound, "kind": kind, "data": data, "id": id,
            "requests": None if requests is None else _kinds(requests, "requests"),
            "subscribe": _kinds(subscribe, "subscribe"),
            "unsubscribe": _kinds(unsubscribe, "unsubscribe"),
            "topic": _kinds(topic, "topic"), "ping": _kinds(ping, "ping"),
            "pong": pong, "subscribed": subscribed, "unsubscribed": unsubscribed,
            "response": response, "error": error, "welcome": welcome,
        }
        try:
            self.spec = json.dumps(spec, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"an envelope template must be JSON: {exc}") from None
        problem = _core.check_envelope(self.spec)
        if problem:
            raise ValueError(f"envelope: {problem}")

    def __repr__(self) -> str:
        return f"Envelope({self.spec})"


@dataclass
class Endpoint:
    """A declared endpoint (see ``Server.endpoint``)."""

    path: str
    transport: str
    topics: list[str]
    envelope: Envelope | None = None
    welcome: tuple[str, Any] | None = None
    heartbeat: tuple[str, Any, float] | None = None
    params: list[str] = field(default_factory=list)
    # permessage-deflate on a WebSocket endpoint; None: as the server's compression option
    # says for the JSON protocol.
    compression: bool | None = None
    _pattern: re.Pattern[str] | None = None

    def config(self, compress_default: bool = False) -> dict[str, Any]:
        """The core's endpoint_config fields (``compress_default``: the JSON protocol's
        compression, for an endpoint that does not say)."""
        welcome = self.welcome or ("", None)
        beat = self.heartbeat or ("", None, 0.0)
        return {
            "path": self.path, "sse": self.transport == "sse", "topics": list(self.topics),
            "envelope": self.envelope.spec if self.envelope is not None else "",
            "welcome_event": welcome[0],
            "welcome_data": json.dumps(welcome[1]) if welcome[0] else "",
            "heartbeat_event": beat[0],
            "heartbeat_data": json.dumps(beat[1]) if beat[0] else "",
            "heartbeat_interval_ms": max(1, round(beat[2] * 1000)) if beat[0] else 0,
            "compress": self.transport == "websocket" and (
                compress_default if self.compression is None else self.compression),
        }

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters when ``path`` (percent-encoded) is this endpoint's, else None."""
        assert self._pattern is not None
        m = self._pattern.fullmatch(path)
        if m is None:
            return None
        return {name: unquote(value) for name, value in m.groupdict().items()}


def make_endpoint(path: str, transport: str, topics: str | Iterable[str] | None,
                  envelope: Envelope | None, welcome: tuple[str, Any] | None,
                  heartbeat: tuple[str, Any, float] | None,
                  compression: bool | None = None) -> Endpoint:
    """Checks a declaration (ValueError, TypeError) and returns its Endpoint."""
    if transport not in ("websocket", "sse"):
        raise ValueError(f"transport is 'websocket' or 'sse', not {transport!r}")
    if not isinstance(path, str) or not path.startswith("/") or path.endswith("/") \
            or "//" in path or len(path) < 2:
        raise ValueError(f"an endpoint path starts with '/' and has no empty segment: {path!r}")
    names: list[str] = []
    regex = ""
    for segment in path[1:].split("/"):
        m = _PARAM.fullmatch(segment)
        if m:
            if m.group(1) in names:
                raise ValueError(f"parameter {{{m.group(1)}}} appears twice in {path!r}")
            names.append(m.group(1))
            regex += f"/(?P<{m.group(1)}>[^/]+)"
        elif re.search(r"[{}%?#]", segment):
            raise ValueError(f"a parameter is a whole segment {{name}}: {path!r}")
        else:
            regex += "/" + re.escape(segment)
    topic_list = [topics] if isinstance(topics, str) else list(topics or [])
    for t in topic_list:
        if not isinstance(t, str) or not t:
            raise ValueError(f"a topic template is a non-empty string, not {t!r}")
        for name in _PARAM.findall(t):
            if name not in names:
                raise ValueError(f"topic {t!r} names {{{name}}}, which {path!r} does not have")
    if envelope is not None and not isinstance(envelope, Envelope):
        raise TypeError("envelope must be a skyrelay.Envelope")
    if transport == "sse" and envelope is not None:
        raise ValueError("an SSE endpoint takes no envelope (its events carry data as is)")
    if transport == "websocket" and (welcome is not None or heartbeat is not None):
        raise ValueError("welcome= and heartbeat= are SSE options; a WebSocket envelope has "
                         "its own welcome template and the server's heartbeat_interval")
    if transport == "sse" and compression:
        raise ValueError("compression= is a WebSocket option (permessage-deflate)")
    if compression is not None and not isinstance(compression, bool):
        raise TypeError("compression is True, False or None")
    if welcome is not None:
        name, data = welcome
        _check_stream_template(name, data)
        welcome = (name, data)
    if heartbeat is not None:
        name, data, every = heartbeat
        _check_stream_template(name, data)
        if not every > 0:
            raise ValueError("a heartbeat interval is > 0 seconds")
        heartbeat = (name, data, float(every))
    ep = Endpoint(path, transport, topic_list, envelope, welcome, heartbeat, names, compression)
    ep._pattern = re.compile(regex)
    return ep


def _check_stream_template(name: str, data: Any) -> None:
    if not isinstance(name, str) or not name or "\n" in name or "\r" in name:
        raise ValueError(f"an event name is a non-empty line, not {name!r}")
    problem = _core.check_stream_template(json.dumps(data))
    if problem:
        raise ValueError(f"event {name!r}: {problem}")


def builtin_path(name: str, value: str | None) -> str:
    """A built-in route's path option ("" for None: the route is off)."""
    if value is None:
        return ""
    if not isinstance(value, str) or not value.startswith("/") or len(value) < 2 \
            or value.endswith("/"):
        raise ValueError(f"{name} is a path such as '/health' (or None: off), not {value!r}")
    return value


def match_endpoint(endpoints: list[Endpoint], path: str) -> tuple[Endpoint, dict[str, str]] | None:
    """The first endpoint whose template matches ``path``, with its parameters."""
    for ep in endpoints:
        params = ep.match(path)
        if params is not None:
            return ep, params
    return None
