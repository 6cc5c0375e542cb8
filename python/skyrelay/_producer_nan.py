"""The producer's policy for values JSON has no word for: float NaN and infinities (Python,
numpy) and pandas' missing markers (``pd.NA``, ``pd.NaT``).

- ``nan="null"`` (the default) sends each as ``null``, as JavaScript's ``JSON.stringify`` and
  pandas' ``to_json`` do, so a frame with gaps publishes;
- ``nan="error"`` raises ``ValueError`` naming the field (``data[3]["flow"]``) before
  anything is sent.

The common payload has none: it is encoded once, by ``json.dumps`` with ``allow_nan=False``
and a hook that stops at a pandas marker. Only when that fails is the payload walked, with the
same conversions (numpy, pandas, dataclasses...), to find or replace what JSON cannot hold.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from .encoding import encode_base64, json_fallback

NAN_POLICIES = ("null", "error")

_BYTES = (bytes, bytearray, memoryview)
_PANDAS_MISSING = frozenset({"NAType", "NaTType"})


class _Missing(ValueError):
    """A pandas missing marker met by the fast path's hook."""


def _is_pandas_missing(value: Any) -> bool:
    kind = type(value)
    return kind.__name__ in _PANDAS_MISSING and kind.__module__.partition(".")[0] == "pandas"


def encode_payload(data: Any, default: Callable[[Any], Any] | None, nan: str) -> bytes:
    """The JSON text of one event's data under the ``nan`` policy (``bytes`` data is taken
    as pre-encoded JSON and only checked: it is the caller's text, not rewritten)."""
    if isinstance(data, _BYTES):
        return encode_base64(data, default)

    def hook(obj: Any) -> Any:
        if _is_pandas_missing(obj):
            raise _Missing
        if default is None:
            raise TypeError  # encode_json falls back to its own conversions
        return default(obj)

    try:
        return encode_base64(data, hook)
    except ValueError as first:
        cleaned, found = _clean(data, "data", nan, _converter(default))
        if not found:
            raise first  # another problem (a pydantic model writing NaN...)
    return encode_base64(cleaned, default)


def _converter(default: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    def convert(obj: Any) -> Any:
        if default is not None:
            try:
                return default(obj)
            except TypeError:
                pass
        return json_fallback(obj)
    return convert


def _clean(value: Any, path: str, nan: str, convert: Callable[[Any], Any]
           ) -> tuple[Any, bool]:
    """``value`` with each NaN, infinity or pandas marker as None, and whether there was one;
    under ``nan="error"`` the first one raises ValueError with its path instead."""
    if isinstance(value, float):  # numpy's float64 is a float too
        if math.isfinite(value):
            return value, False
        _found(path, repr(float(value)), nan)
        return None, True
    if value is None or isinstance(value, (str, int)) or isinstance(value, _BYTES):
        return value, False
    if isinstance(value, dict):
        found = False
        out: dict[Any, Any] = {}
        for key, item in value.items():
            out[key], hit = _clean(item, f"{path}[{_key_text(key)}]", nan, convert)
            found = found or hit
        return out, found
    if isinstance(value, (list, tuple)):
        items = []
        found = False
        for i, item in enumerate(value):
            cleaned, hit = _clean(item, f"{path}[{i}]", nan, convert)
            items.append(cleaned)
            found = found or hit
        return items, found
    if _is_pandas_missing(value):
        _found(path, "pandas." + type(value).__name__[:-4], nan)
        return None, True
    converted = convert(value)  # numpy values, frames, dataclasses... as encode_json does
    if converted is value:
        return value, False
    return _clean(converted, path, nan, convert)


def _key_text(key: Any) -> str:
    return json.dumps(key) if isinstance(key, str) else repr(key)


def _found(path: str, what: str, nan: str) -> None:
    """Raises under nan="error"; under "null" the caller puts None in its place."""
    if nan == "error":
        raise ValueError(f"{path} is {what}, which is not JSON (nan='error'; the default "
                         "nan='null' sends it as null)")
