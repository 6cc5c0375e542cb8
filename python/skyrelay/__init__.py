"""skyrelay: a real-time push engine for Python backends.

The sockets, the protocol, rooms and fan-out run in a C++ core on their own threads; Python
registers handlers and publishes events::

    import skyrelay

    server = skyrelay.Server(port=8000)

    @server.on("echo")
    def echo(conn, data):
        return data  # a request's return value is its response

    server.run()
"""

from .errors import ConnectionRefused, RequestError
from .server import Connection, Server

__all__ = ["Connection", "ConnectionRefused", "RequestError", "Server", "__version__"]
__version__ = "0.1.0"
