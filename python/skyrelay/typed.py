"""Typed handlers: a handler whose data parameter is annotated with a pydantic model.

Pure Python, and pydantic is imported only through the annotations themselves: a handler can
name a pydantic model only once the app has imported pydantic, so while ``sys.modules`` holds
no ``pydantic`` no handler is typed and this module loads nothing. See docs/api.md "Typed
handlers".

- :func:`payload_type` reads a handler's data annotation once, at registration, and returns
  the :class:`PayloadType` that validates its payloads, or None for a handler that stays as it
  was (no annotation, or one that names no pydantic model: ``dict``, ``Any``, ``list[int]``).
- :class:`InvalidPayload` is what a payload that fails validation raises: a
  :class:`~skyrelay.errors.RequestError` with code ``invalid_payload``, its message naming the
  failing fields, its ``errors`` the same as a list, both bounded in size.
"""

from __future__ import annotations

import inspect
import logging
import sys
import types
import typing
from collections.abc import Callable
from typing import Any

from .errors import RequestError

log = logging.getLogger("skyrelay")

INVALID_PAYLOAD = "invalid_payload"
MAX_ERRORS = 10       # field errors reported for one payload ("count" says how many there were)
MAX_LOC_PART = 64     # characters of one element of a field path (a key may be the client's)
MAX_LOC_PARTS = 16    # elements of one field path
MAX_MSG = 200         # characters of one error's message
MAX_MESSAGE = 1024    # characters of the whole message text


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _loc(loc: tuple[Any, ...]) -> list[str | int]:
    parts: list[str | int] = [p if isinstance(p, int) else _clip(str(p), MAX_LOC_PART)
                              for p in loc[:MAX_LOC_PARTS]]
    if len(loc) > MAX_LOC_PARTS:
        parts.append("...")
    return parts


def _dotted(loc: list[str | int]) -> str:
    return ".".join(str(p) for p in loc) or "(payload)"


class InvalidPayload(RequestError):
    """The payload of ``event`` does not validate against its handler's annotation.

    ``errors`` is a list of at most 10 ``{"loc": [...], "msg": ..., "type": ...}`` (pydantic's
    field path, message and error type, without the input); ``count`` is how many errors
    pydantic found. The message (at most 1,024 characters) names each reported field:
    ``'invalid payload for "move": target.ra: Input should be a valid number'``.
    """

    def __init__(self, event: str, errors: list[dict[str, Any]], count: int) -> None:
        self.event = event
        self.errors = errors
        self.count = count
        fields = "; ".join(f"{_dotted(e['loc'])}: {e['msg']}" for e in errors)
        more = f" (and {count - len(errors)} more)" if count > len(errors) else ""
        message = f"invalid payload for {_clip(event, MAX_LOC_PART)!r}: "
        message = _clip(message + fields, MAX_MESSAGE - len(more)) + more
        super().__init__(INVALID_PAYLOAD, message)

    @classmethod
    def from_validation_error(cls, event: str, exc: Any) -> InvalidPayload:
        """From a ``pydantic.ValidationError``: the first ``MAX_ERRORS`` errors, clipped."""
        found = exc.errors(include_url=False, include_context=False, include_input=False)
        errors = [{"loc": _loc(tuple(e.get("loc", ()))), "msg": _clip(str(e.get("msg", "")),
                                                                       MAX_MSG),
                   "type": _clip(str(e.get("type", "")), MAX_LOC_PART)}
                  for e in found[:MAX_ERRORS]]
        return cls(event, errors, exc.error_count())

    def answer(self) -> dict[str, Any]:
        """The Socket.IO ack argument (or ``error`` event): a RequestError's shape plus the
        field errors."""
        return {"error": {"code": self.code, "message": self.message, "event": self.event,
                          "errors": self.errors, "count": self.count}}


class PayloadType:
    """Validates the payloads of one handler against its data annotation (pydantic v2).

    A ``BaseModel`` subclass validates with its own ``model_validate_json`` and
    ``model_validate``; any other annotation that names a model (``list[Model]``,
    ``Model | None``, ``dict[str, Model]``) through a ``pydantic.TypeAdapter`` built here, once.
    """

    __slots__ = ("annotation", "_json", "_python", "_error")

    def __init__(self, annotation: Any) -> None:
        import pydantic

        self.annotation = annotation
        self._error = pydantic.ValidationError
        if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
            self._json: Callable[[Any], Any] = annotation.model_validate_json
            self._python: Callable[[Any], Any] = annotation.model_validate
        else:
            adapter = pydantic.TypeAdapter(annotation)
            self._json = adapter.validate_json
            self._python = adapter.validate_python

    def from_json(self, text: str | bytes, event: str) -> Any:
        """The parsed payload from its JSON text; raises :class:`InvalidPayload`."""
        try:
            return self._json(text)
        except self._error as exc:
            raise InvalidPayload.from_validation_error(event, exc) from None

    def from_python(self, value: Any, event: str) -> Any:
        """The parsed payload from an already decoded value; raises :class:`InvalidPayload`."""
        try:
            return self._python(value)
        except self._error as exc:
            raise InvalidPayload.from_validation_error(event, exc) from None


def _shim() -> None:
    """Lends its code object to the functions :func:`_resolve` evaluates annotations with."""


def _resolve(fn: Callable[..., Any], name: str, annotation: Any) -> Any:
    """The annotation as an object: a string (``from __future__ import annotations``) is
    evaluated in the handler's module, alone, so an unresolvable annotation of another
    parameter (``conn: Connection`` imported under TYPE_CHECKING) does not matter. Raises
    what evaluating it raises (NameError for a name the module does not have)."""
    if not isinstance(annotation, str):
        return annotation
    target = inspect.unwrap(getattr(fn, "__func__", fn))
    globalns = getattr(target, "__globals__", None)
    if globalns is None:
        globalns = getattr(sys.modules.get(getattr(target, "__module__", ""), None),
                           "__dict__", {})
    probe = types.FunctionType(_shim.__code__, globalns)
    probe.__annotations__ = {name: annotation}
    return typing.get_type_hints(probe, include_extras=True)[name]


def _names_model(annotation: Any, base: type, depth: int = 0) -> bool:
    """True when the annotation is, or has among its type arguments, a pydantic model."""
    if isinstance(annotation, type) and annotation is not base:
        try:
            if issubclass(annotation, base):
                return True
        except TypeError:  # list[int] passes for a type on Python 3.10
            pass
    if depth >= 8:
        return False
    return any(_names_model(arg, base, depth + 1) for arg in typing.get_args(annotation))


def payload_type(fn: Callable[..., Any], position: int) -> PayloadType | None:
    """The validator for ``fn``'s positional parameter ``position`` (1 for ``handler(conn,
    data)``, 0 for a Flask-SocketIO handler), or None when that parameter is not typed with a
    pydantic model (no cost then: the handler gets the decoded JSON as before)."""
    pydantic = sys.modules.get("pydantic")
    if pydantic is None:
        return None  # no pydantic model exists in this process
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) <= position or positional[position].annotation is inspect.Parameter.empty:
        return None
    param = positional[position]
    try:
        annotation = _resolve(fn, param.name, param.annotation)
    except Exception as exc:  # a name that exists only under TYPE_CHECKING, a typo
        log.warning("skyrelay: the annotation %r of %s's parameter %r cannot be resolved "
                    "(%s: %s); its payloads are not validated", param.annotation,
                    getattr(fn, "__qualname__", fn), param.name, type(exc).__name__, exc)
        return None
    if not _names_model(annotation, pydantic.BaseModel):
        return None
    return PayloadType(annotation)
