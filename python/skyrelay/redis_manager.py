"""Emit from a process that runs no server (a Celery worker, a script): the messages go to a
Redis channel in the format of python-socketio's and Flask-SocketIO's Redis managers, and the
skyrelay nodes on that Redis (``Server(broker="redis://...")``) deliver them to their clients.

    writer = RedisManagerWriter("redis://localhost:6379/0", channel="flask-socketio")
    writer.emit("update", {"id": 7}, to="room-1")

This is what ``skyrelay.flask.SocketIO(message_queue=...)`` uses without a running server. It
needs the ``redis`` package (``pip install redis``), and no skyrelay engine: an unchanged
``socketio.RedisManager(url, write_only=True)`` does the same job.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable
from typing import Any

__all__ = ["RedisManagerWriter"]


def _deconstruct(value: Any, attachments: list[bytes]) -> Any:
    """``value`` with every bytes object replaced by a placeholder (Socket.IO's binary form)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        attachments.append(bytes(value))
        return {"_placeholder": True, "num": len(attachments) - 1}
    if isinstance(value, (list, tuple)):
        return [_deconstruct(v, attachments) for v in value]
    if isinstance(value, dict):
        return {k: _deconstruct(v, attachments) for k, v in value.items()}
    return value


def _names(target: Any) -> Any:
    """A room, a sid or a Connection (its sid), or a list of them, as the message carries it."""
    if target is None or isinstance(target, str):
        return target
    if hasattr(target, "sid"):
        return target.sid
    if isinstance(target, Iterable):
        return [_names(t) for t in target]
    raise TypeError(f"a room or sid is a string, not {type(target).__name__}")


class RedisManagerWriter:
    """Publishes emits and room commands on one manager channel (``socketio`` is
    python-socketio's default, ``flask-socketio`` Flask-SocketIO's). Thread-safe (redis-py's
    connection pool). Acks cannot come back to a process without a server: ``emit`` takes no
    callback."""

    def __init__(self, url: str, channel: str = "socketio", *, json_module: Any = None,
                 redis_options: dict[str, Any] | None = None) -> None:
        try:
            import redis  # type: ignore[import-untyped]
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("emitting through message_queue without a server needs the "
                              "redis package: pip install redis") from exc
        self.channel = channel
        self.host_id = uuid.uuid4().hex
        self._json = json_module or json
        self._redis = redis.Redis.from_url(url, **(redis_options or {}))

    def emit(self, event: str, *args: Any, to: Any = None, namespace: str | None = None,
             skip_sid: Any = None) -> int:
        """Sends ``event`` with ``args`` to a room or sid (``to``), or to the whole namespace.
        Returns how many subscribers Redis handed the message to (nodes and other listeners)."""
        attachments: list[bytes] = []
        data: list[Any] = _deconstruct(list(args) if args else [None], attachments)
        if attachments:
            data = [data, *[base64.b64encode(a).decode() for a in attachments]]
        return self._publish({"method": "emit", "event": event, "data": data,
                              "binary": bool(attachments), "namespace": namespace or "/",
                              "room": _names(to), "skip_sid": _names(skip_sid),
                              "callback": None})

    def enter_room(self, sid: str, room: str, namespace: str | None = None) -> int:
        return self._publish({"method": "enter_room", "sid": sid, "room": room,
                              "namespace": namespace or "/"})

    def leave_room(self, sid: str, room: str, namespace: str | None = None) -> int:
        return self._publish({"method": "leave_room", "sid": sid, "room": room,
                              "namespace": namespace or "/"})

    def close_room(self, room: str, namespace: str | None = None) -> int:
        return self._publish({"method": "close_room", "room": room,
                              "namespace": namespace or "/"})

    def disconnect(self, sid: str, namespace: str | None = None) -> int:
        return self._publish({"method": "disconnect", "sid": sid,
                              "namespace": namespace or "/"})

    def close(self) -> None:
        self._redis.close()

    def _publish(self, message: dict[str, Any]) -> int:
        message["host_id"] = self.host_id
        return int(self._redis.publish(self.channel, self._json.dumps(message)))
