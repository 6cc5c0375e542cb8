"""Shared helpers for the Python suite. The skyrelay fixtures come from the installed plugin."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Let tests import helper modules that live next to them (wsraw.py).
sys.path.insert(0, str(Path(__file__).parent))

from redis_fixture import (  # noqa: E402,F401  (fixtures)
    redis_cluster, redis_sentinel_factory, redis_server, redis_server_factory)


@pytest.fixture
def skyrelay_server_factory(skyrelay_server_factory):
    """The plugin's factory, with every topic open to clients unless a test says otherwise
    (``client_topics=None`` for the default): most tests subscribe by name to exercise something
    else. test_client_topics.py covers the setting itself."""

    def factory(configure=None, **options):
        options.setdefault("client_topics", "*")
        return skyrelay_server_factory(configure, **options)

    return factory


@pytest.fixture
def sio_clients():
    """Makes python-socketio clients (no reconnection), disconnected after the test."""
    import socketio

    clients: list[socketio.Client] = []

    def make() -> socketio.Client:
        client = socketio.Client(reconnection=False)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.disconnect()
