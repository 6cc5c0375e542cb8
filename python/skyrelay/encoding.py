"""Event encoding, shared by the server, the Socket.IO bridge and the HTTP producer.

Pure Python: importing it loads no C++ extension, so ``skyrelay.producer`` runs without
``skyrelay._core``. One payload has two wire forms:

- JSON text (:func:`encode_json`), where ``bytes`` nested in the payload are refused with
  :class:`NestedBytes`; :func:`encode_base64` is the JSON-protocol form that turns them into
  base64 strings instead;
- Socket.IO arguments (:func:`encode_args`): a JSON array with ``{"_placeholder": true,
  "num": i}`` in place of each ``bytes`` value, plus the list of binary attachments.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import enum
import json
import math
import uuid
from collections.abc import Callable
from typing import Any

__all__ = ["NestedBytes", "base64_bytes", "encode_args", "encode_base64", "encode_event", "encode_json",
           "is_json_text", "json_fallback", "model_json", "pack_binary", "unpack_binary"]

_BYTES = (bytes, bytearray, memoryview)


class NestedBytes(TypeError):
    """Raised by the JSON fallback for bytes inside a payload: Socket.IO sends those as binary
    attachments, the JSON protocol as base64 strings (see Server.emit)."""


def base64_bytes(value: Any) -> Any:
    """The JSON-protocol form of a payload with bytes in it: each bytes value as base64."""
    if isinstance(value, _BYTES):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {k: base64_bytes(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [base64_bytes(v) for v in value]
    return value


# Types that are never a pydantic model: encode_json looks no further at these.
_PLAIN = frozenset({dict, str, int, float, bool, type(None)})


def _is_model(value: Any) -> bool:
    """A pydantic model instance, told without importing pydantic (a model class's own type
    is its metaclass, which has no serializer)."""
    return hasattr(type(value), "__pydantic_serializer__") and hasattr(value, "model_dump_json")


def model_json(value: Any) -> str | None:
    """The JSON text of a pydantic model, or of a list or tuple of models, written by
    pydantic's own serializer (``model_dump_json()``, the model's defaults: no dict on the
    way); None for anything else."""
    kind = type(value)
    if kind is list or kind is tuple:
        if not value or not _is_model(value[0]) or not all(_is_model(v) for v in value):
            return None
        text = "[" + ",".join(v.model_dump_json() for v in value) + "]"
    elif kind in _PLAIN or not _is_model(value):
        return None
    else:
        text = str(value.model_dump_json())
    # A model configured with ser_json_inf_nan="constants" writes NaN and Infinity, which are
    # not JSON: looked for (a substring search), then parsed only when one may be there.
    if ("NaN" in text or "Infinity" in text) and not is_json_text(text.encode("utf-8")):
        raise ValueError("a pydantic model wrote NaN or Infinity, which are not JSON "
                         "(ser_json_inf_nan='constants'?)")
    return text


def json_fallback(obj: Any) -> Any:
    """Turns the usual non-JSON types into JSON ones; raises NestedBytes for bytes and
    TypeError for the rest."""
    if _is_model(obj):  # a pydantic model inside a dict or list of other things
        return obj.model_dump(mode="json")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, (datetime.datetime, datetime.date, datetime.time)):
        return obj.isoformat()
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if type(obj).__module__.partition(".")[0] == "pandas":  # without importing pandas
        if type(obj).__name__ == "DataFrame":
            return obj.to_dict(orient="records")  # a list of row dicts
        if hasattr(obj, "to_dict"):  # a Series, such as a row from df.iloc[i]
            return obj.to_dict()
        if hasattr(obj, "isoformat"):  # Timedelta and friends
            return obj.isoformat()
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, without importing numpy
        return obj.tolist()
    if isinstance(obj, _BYTES):
        raise NestedBytes("bytes inside a payload are not JSON")
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_number(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e999: a JSON number that no double holds, refused as the core does
        raise ValueError(f"{text} is out of range")
    return value


def is_json_text(raw: bytes) -> bool:
    """True when ``raw`` is one valid UTF-8 JSON text (NaN and infinities are not JSON).

    The pure-Python check; the server uses the C++ core's instead, which also refuses escaped
    lone surrogates and accepts nesting deeper than Python's recursion limit. Either way the
    server checks what it receives again."""
    try:
        json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant,
                   parse_float=_finite_number, parse_int=_finite_number)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    return True


# The types written by one cached encoder without a look at their contents (exact types: a
# subclass may be an enum or a model and takes the general path).
_FAST = frozenset({dict, list, str, int, float, bool, type(None)})
_encoders: dict[tuple[Any, bool], Callable[[Any], str]] = {}


def _refuse_bytes(obj: Any) -> Any:
    if isinstance(obj, _BYTES):
        raise NestedBytes("bytes inside a payload are not JSON")
    return json_fallback(obj)


def _encoder(default: Callable[[Any], Any] | None, bytes_first: bool) -> Callable[[Any], str]:
    """The ``encode`` of one JSONEncoder per (default, bytes_first), made once: what
    :func:`json.dumps` with these options builds on every call. With ``bytes_first``, nested
    bytes raise NestedBytes before ``default`` sees them (encode_args packs them instead)."""
    try:
        return _encoders[(default, bytes_first)]
    except (KeyError, TypeError):
        pass
    if default is None:
        hook = _refuse_bytes if bytes_first else json_fallback
    else:
        def hook(obj: Any) -> Any:
            if bytes_first and isinstance(obj, _BYTES):
                raise NestedBytes("bytes inside a payload are not JSON")
            try:
                return default(obj)
            except TypeError:
                return json_fallback(obj)
    encode = json.JSONEncoder(default=hook, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False).encode
    try:
        if len(_encoders) >= 64:  # one per json_default in use: a bound all the same
            _encoders.clear()
        _encoders[(default, bytes_first)] = encode
    except TypeError:  # an unhashable default: not cached
        pass
    return encode


def encode_json(data: Any, default: Callable[[Any], Any] | None = None, *,
                check: Callable[[bytes], bool] = is_json_text) -> bytes:
    """Serializes a payload once, as the server sends it.

    ``bytes``-like data is taken as already-encoded JSON (and checked with ``check``); a
    pydantic model, or a list or tuple of models, is written by pydantic
    (:func:`model_json`); everything else goes through :func:`json.dumps` with ``default``
    (then the built-in fallbacks for pydantic models inside the payload, dataclasses,
    datetimes, enums, sets, UUIDs and numpy values).
    NaN and infinities are refused because they are not JSON; bytes nested in the payload
    raise :class:`NestedBytes` (a TypeError).
    """
    if type(data) in _FAST:
        return _encoder(default, False)(data).encode("utf-8")
    if isinstance(data, _BYTES):
        raw = bytes(data)
        if not check(raw):
            raise ValueError("a bytes payload must be one valid UTF-8 JSON text")
        return raw
    if type(data) not in _PLAIN:
        dumped = model_json(data)
        if dumped is not None:
            return dumped.encode("utf-8")
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        data = dataclasses.asdict(data)
    if default is None:
        hook = json_fallback
    else:
        def hook(obj: Any) -> Any:
            try:
                return default(obj)
            except TypeError:
                return json_fallback(obj)
    text = json.dumps(data, default=hook, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)
    return text.encode("utf-8")


def encode_base64(data: Any, default: Callable[[Any], Any] | None = None, *,
                  check: Callable[[bytes], bool] = is_json_text) -> bytes:
    """:func:`encode_json`, with nested bytes as base64 strings (the JSON protocol's form)."""
    try:
        return encode_json(data, default, check=check)
    except NestedBytes:
        return encode_json(base64_bytes(data), default, check=check)


def unpack_binary(value: Any, attachments: list[bytes]) -> Any:
    """Replaces {"_placeholder": true, "num": i} with the i-th attachment, recursively."""
    if isinstance(value, dict):
        if value.get("_placeholder") is True and isinstance(value.get("num"), int) \
                and len(value) == 2 and 0 <= value["num"] < len(attachments):
            return attachments[value["num"]]
        return {k: unpack_binary(v, attachments) for k, v in value.items()}
    if isinstance(value, list):
        return [unpack_binary(v, attachments) for v in value]
    return value


def pack_binary(value: Any, attachments: list[bytes]) -> Any:
    """Replaces bytes with placeholders, appending them to ``attachments``, recursively."""
    if isinstance(value, _BYTES):
        attachments.append(bytes(value))
        return {"_placeholder": True, "num": len(attachments) - 1}
    if isinstance(value, dict):
        return {k: pack_binary(v, attachments) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [pack_binary(v, attachments) for v in value]
    return value


def encode_args(args: list[Any] | tuple[Any, ...], default: Callable[[Any], Any] | None
                ) -> tuple[str, list[bytes]]:
    """A list of arguments as JSON text (with placeholders) and its binary attachments."""
    if all(type(a) in _FAST for a in args):  # no model at the top: one encoder call
        try:
            return _encoder(default, True)(list(args)), []
        except NestedBytes:
            pass  # bytes inside: packed as attachments below
    attachments: list[bytes] = []
    dumped = [model_json(a) for a in args]
    if any(d is not None for d in dumped):  # pydantic writes the models' own arguments
        parts = [d if d is not None else
                 encode_json(pack_binary(a, attachments), default).decode("utf-8")
                 for a, d in zip(args, dumped)]
        return "[" + ",".join(parts) + "]", attachments
    packed = [pack_binary(a, attachments) for a in args]
    return encode_json(packed, default).decode("utf-8"), attachments


def encode_event(data: Any, args: list[Any] | None, default: Callable[[Any], Any] | None, *,
                 check: Callable[[bytes], bool] = is_json_text
                 ) -> tuple[bytes, str | None, list[bytes]]:
    """An emit's payload in every form the transports take: the one JSON value (nested bytes
    as base64, for the JSON protocol and SSE), and, when there are several arguments or
    bytes inside, the Socket.IO arguments (a JSON array's text without its brackets, with
    placeholders) and their binary attachments. ``args`` (a list) replaces ``data``."""
    values = args if args is not None else None
    sio_args: str | None = None
    attachments: list[bytes] = []
    try:
        payload: bytes | None = encode_json(values if values is not None else data, default,
                                            check=check)
    except NestedBytes:
        payload = None
    if values is not None or payload is None:
        text, attachments = encode_args(values if values is not None else [data], default)
        sio_args = text[1:-1]  # the arguments without the array's brackets
        if payload is None:
            payload = encode_base64(values if values is not None else data, default,
                                    check=check)
    return payload, sio_args, attachments


# The C scanner (json.scanner.c_make_scanner) that JSONDecoder sets up; typeshed does not
# declare the attribute.
_scan_json: Callable[[str, int], tuple[Any, int]] = \
    json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def loads_json(text: str) -> Any:
    """``json.loads(text)`` for the JSON texts the core hands over (validated, compact): the C
    scanner of the json module called directly, without ``json.loads``'s wrapper (its type
    checks and two regular-expression matches for white space), which was a third of the cost
    of decoding a small event's arguments. Anything the scanner does not consume whole (white
    space around the value, an error) goes to ``json.loads``, so results and errors are its."""
    try:
        value, end = _scan_json(text, 0)
    except StopIteration:  # white space first, or not JSON: json.loads says which
        return json.loads(text)
    if end != len(text):
        return json.loads(text)
    return value

