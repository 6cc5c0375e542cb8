"""Exceptions that handlers raise to steer the server."""

from __future__ import annotations


class ConnectionRefused(Exception):
    """Raise from a connect handler to refuse the WebSocket handshake.

    A WebSocket client of the JSON protocol gets an HTTP error (``status``, 403 by default)
    with a JSON body ``{"error": "connection_refused", "message": ...}``; a Socket.IO client
    gets ``connect_error`` with ``message`` and ``data``.
    """

    def __init__(self, message: str = "connection refused", status: int = 403,
                 data: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.data = data  # Socket.IO: sent as connect_error's "data"


class RequestError(Exception):
    """Raise from a request handler to answer with ``ok: false`` and your own error code."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


class Forbidden(RequestError):
    """The connection lacks a role that a room requires (``Server.join``). Uncaught in a
    request handler, it answers the request with code ``forbidden``."""

    def __init__(self, message: str) -> None:
        super().__init__("forbidden", message)


class BrokerUnavailable(ConnectionError):
    """``emit`` (and every other publish) when the server's broker cannot carry a publication
    now: a Redis broker (``broker="redis://..."``) that lost its connection to Redis. Nothing
    was published; the broker reconnects by itself (``/health`` says ``degraded`` meanwhile),
    so the caller may retry later. The publish API answers 503 ``broker_unavailable``."""


class StateLimitExceeded(ValueError):
    """A keyed state's update (``State.update``) past one of its bounds: ``limit`` is
    ``"max_keys"`` (a new key in a full state) or ``"max_key_bytes"`` (a key's fields too
    large). The state is left as it was; /metrics counts it in ``skyrelay_state_refused_total``."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit
