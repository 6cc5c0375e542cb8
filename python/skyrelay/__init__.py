"""skyrelay: a real-time push engine for Python backends.

The sockets, the protocol, rooms and fan-out run in a C++ core on their own threads; Python
registers handlers and publishes events::

    import skyrelay

    server = skyrelay.Server(port=8000)

    @server.on("echo")
    def echo(conn, data):
        return data  # a request's return value is its response

    server.run()

The public names load on first use (PEP 562), so importing a submodule such as the pytest
plugin does not load the C++ extension.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["AsyncProducer", "BrokerUnavailable", "Connection", "ConnectionRefused", "Forbidden",
           "InvalidPayload", "JWTAuth", "JWTKey",
           "Producer", "PublishError", "Published", "RateLimiter", "RequestError", "Server",
           "State", "StateLimitExceeded", "__version__"]

_LAZY = {
    "Server": "server",
    "Connection": "server",
    "ConnectionRefused": "errors",
    "BrokerUnavailable": "errors",
    "Forbidden": "errors",
    "InvalidPayload": "typed",
    "JWTAuth": "auth",
    "JWTKey": "auth",
    "RequestError": "errors",
    "StateLimitExceeded": "errors",
    "State": "state",
    "Producer": "producer",
    "AsyncProducer": "producer",
    "PublishError": "producer",
    "Published": "producer",
    "RateLimiter": "ratelimit",
}

if TYPE_CHECKING:
    from .auth import JWTAuth, JWTKey
    from .errors import (BrokerUnavailable, ConnectionRefused, Forbidden, RequestError,
                         StateLimitExceeded)
    from .producer import AsyncProducer, Producer, PublishError, Published
    from .ratelimit import RateLimiter
    from .server import Connection, Server
    from .state import State
    from .typed import InvalidPayload


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'skyrelay' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
