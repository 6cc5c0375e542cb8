"""The JSON-protocol messages the sync and async test clients build and read, in one place."""

from __future__ import annotations

import json
from typing import Any


class ResponseError(Exception):
    """A request answered with ``ok: false``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def decode(raw: str | bytes) -> dict[str, Any]:
    """A received frame: text is JSON; a binary frame becomes ``{"type": "binary"}``."""
    return json.loads(raw) if isinstance(raw, str) else {"type": "binary", "data": raw}


def encode(message: Any) -> str | bytes:
    """A dict goes as JSON text; a str as text, bytes as a binary frame, unchanged."""
    return message if isinstance(message, (str, bytes)) else json.dumps(message)


def topics_message(kind: str, topics: tuple[str, ...], since: int | None = None,
                   epoch: str | None = None) -> dict[str, Any]:
    """A ``subscribe`` or ``unsubscribe`` message for one topic or several."""
    msg: dict[str, Any] = {"type": kind}
    if len(topics) == 1:
        msg["topic"] = topics[0]
    else:
        msg["topics"] = list(topics)
    if since is not None:
        msg["since"] = since
    if epoch is not None:
        msg["epoch"] = epoch
    return msg


def is_event(name: str):
    return lambda frame: frame.get("type") == "event" and frame.get("event") == name


def is_frame(type: str | None, where=None):
    return lambda frame: ((type is None or frame.get("type") == type)
                          and (where is None or where(frame)))


def response_data(frame: dict[str, Any]) -> Any:
    """The data of a ``response`` frame; raises ResponseError for ``ok: false``."""
    if not frame["ok"]:
        raise ResponseError(frame["error"]["code"], frame["error"]["message"])
    return frame.get("data")
