"""Exceptions that handlers raise to steer the server."""

from __future__ import annotations


class ConnectionRefused(Exception):
    """Raise from a connect handler to refuse the WebSocket handshake.

    The client gets an HTTP error (``status``, 403 by default) with a JSON body
    ``{"error": "connection_refused", "message": ...}``.
    """

    def __init__(self, message: str = "connection refused", status: int = 403) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class RequestError(Exception):
    """Raise from a request handler to answer with ``ok: false`` and your own error code."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
