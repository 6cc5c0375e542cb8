"""Keyed states with delta updates (docs/api.md "Delta updates"): :meth:`Server.state`.

A :class:`State` holds, for one room, the fields of each key (a telescope, a well, a device).
:meth:`State.update` sends the room's members only the fields whose values changed; a member
gets the whole state (``full_update: true``) when it joins or subscribes, when it resumes
after a reset, and on request. The diff, the delta and the full updates run in C++ under the
room's order lock, so a member's copy rebuilt from what it receives equals :meth:`State.get`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .connection import Connection
from .encoding import encode_json
from .errors import RequestError, StateLimitExceeded

if TYPE_CHECKING:
    from .server import Server

# keyed_state.hpp's state_result.
_CHANGED, _UNCHANGED, _TOO_MANY_KEYS, _TOO_LARGE, _BAD_FIELDS = range(5)

# The client event that asks for a full update: {"room": ..., "event": ...} ("event" optional).
REQUEST_EVENT = "request_full_update"


def _check_broker(server: Server) -> None:
    if server.broker not in ("", "memory"):
        raise ValueError(
            "Server.state needs the memory broker: a keyed state lives in one process, and "
            f"members on other nodes of broker {server.broker!r} could not get its full "
            "update (docs/api.md \"Delta updates\")")


class State:
    """One room's keyed state for one event name; made by :meth:`Server.state`.

    Each change is one publication of ``event`` to ``room`` whose data is
    ``{<key_name>: key, <fields_name>: {changed fields}, "changes": [names],
    "full_update": false}`` (``"removed": true`` for a removed key). A full update is one such
    publication per key with every field, ``"full_update": true``, and the key's ``"index"``
    among ``"count"`` keys (the first one, index 0, replaces a client's copy; an empty state
    sends one with a null key and count 0). Safe from any thread.
    """

    def __init__(self, server: Server, room: str, event: str, namespace: str, key_name: str,
                 fields_name: str, max_keys: int, max_key_bytes: int) -> None:
        self._server = server
        self.room = room
        self.event = event
        self.namespace = namespace
        self.key_name = key_name
        self.fields_name = fields_name
        self.max_keys = max_keys
        self.max_key_bytes = max_key_bytes
        self._defined: object = None  # the core the state was made in
        # Updates made before the server starts (the app's initial state), merged per key:
        # applied in C++ when it starts, before any client can join.
        self._seed: dict[str, dict[str, Any]] = {}

    def _started(self) -> bool:
        return self._server._core is not None

    def _apply_seed(self) -> None:
        """Makes the state in the started core, with what was updated before the start."""
        self._core()
        seed, self._seed = self._seed, {}
        for key, fields in seed.items():
            self.update(key, fields)

    def _core(self) -> Any:
        core = self._server._require_core()
        if self._defined is not core:
            _check_broker(self._server)
            if not core.state_define(self.namespace, self.room, self.event, self.key_name,
                                     self.fields_name, self.max_keys, self.max_key_bytes):
                raise ValueError(f"room {self.room!r} already has a state for {self.event!r} "
                                 f"with other options")
            self._defined = core
        return core

    def update(self, key: str, fields: Mapping[str, Any] | bytes | str) -> int:
        """Merges ``fields`` into ``key``'s fields (a new key starts empty) and sends the
        fields whose value changed, compared as JSON values. ``fields`` is a mapping, or its
        JSON text (one object) as ``bytes``/``str``. Returns the connections the delta was
        queued for; 0 when nothing changed (nothing is sent). Raises
        :class:`~skyrelay.errors.StateLimitExceeded` when a new key would pass ``max_keys`` or
        the key's fields ``max_key_bytes`` (the state is left as it was), ValueError when
        ``fields`` is not one JSON object."""
        if not self._started():
            value = json.loads(fields) if isinstance(fields, (bytes, str)) else dict(fields)
            if not isinstance(value, dict):
                raise ValueError("fields must be one JSON object")
            self._seed.setdefault(key, {}).update(value)
            return 0
        if isinstance(fields, (bytes, str)):
            text = fields.encode() if isinstance(fields, str) else fields
        else:
            text = encode_json(fields, self._server._registry.json_default)
        result, delivered = self._core().state_update(self.namespace, self.room, self.event,
                                                      key, text)
        if result == _TOO_MANY_KEYS:
            raise StateLimitExceeded("max_keys", f"state {self.event!r} of room {self.room!r} "
                                     f"holds max_keys={self.max_keys} keys already")
        if result == _TOO_LARGE:
            raise StateLimitExceeded("max_key_bytes", f"key {key!r}'s fields would pass "
                                     f"max_key_bytes={self.max_key_bytes}")
        if result == _BAD_FIELDS:
            raise ValueError("fields must be one JSON object")
        return int(delivered)

    def remove(self, key: str) -> bool:
        """Removes ``key`` and sends its removal; False when it was not held."""
        if not self._started():
            return self._seed.pop(key, None) is not None
        result, _ = self._core().state_remove(self.namespace, self.room, self.event, key)
        return bool(result == _CHANGED)

    def get(self, key: str | None = None) -> Any:
        """``key``'s fields (None when it is not held), or every key's as
        ``{key: fields}`` when ``key`` is None."""
        if not self._started():
            seed = json.loads(json.dumps(self._seed))
            return seed.get(key) if key is not None else seed
        text = self._core().state_get(self.namespace, self.room, self.event, key)
        return None if text is None else json.loads(text)

    def send_full(self, to: str | Connection) -> int:
        """Sends the full update to one member of the room, in order with the deltas; returns
        the payloads queued. Raises ValueError when ``to`` is not a member of the room."""
        sid = to.sid if isinstance(to, Connection) else to
        n = self._core().state_send_full(self.namespace, self.room, self.event, sid)
        if n is None:
            raise ValueError(f"{sid!r} is not a member of room {self.room!r}")
        return int(n)


def full_update_handler(server: Server) -> Any:
    """The handler of :data:`REQUEST_EVENT`: the full update of the room's states (of one
    event when the request names it) to the asking connection, if it is a member."""

    def on_request(conn: Connection, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or not isinstance(data.get("room"), str) or \
                not isinstance(data.get("event", ""), str):
            raise RequestError("bad_request",
                               'expected {"room": "<room>"} with an optional "event"')
        room, event = data["room"], data.get("event", "")
        core = server._require_core()
        n = core.state_send_full(conn.namespace, room, event, conn.sid)
        if n is None:
            raise RequestError("not_member", f"not a member of room {room!r}")
        return {"room": room, "payloads": int(n)}

    return on_request
