"""A FastAPI app with `SkyRelay(app)` at its defaults, served by a real uvicorn on its default
port (8000) in this same process; test_fastapi.py runs it in a network namespace of its own, so
the fixed ports cannot meet another test's. Prints one JSON line: whether uvicorn started, what
the app and the relay answered, and uvicorn's error log.

    python fastapi_ports.py defaults   # both serve
    python fastapi_ports.py occupied   # 8001 is taken first: startup fails, saying why
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time

import httpx
import uvicorn
from fastapi import FastAPI

from skyrelay.fastapi import SkyRelay
from skyrelay.testing import connect

mode = sys.argv[1]
app = FastAPI()
relay = SkyRelay(app)


@app.get("/relay")
def where() -> dict:
    return {"url": relay.url, "port": relay.port, "running": relay.server.running}


errors: list[str] = []


class Keep(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += " | " + repr(record.exc_info[1])
        errors.append(text)


blocker = None
if mode == "occupied":
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 8001))
    blocker.listen()

server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=8000, log_level="warning"))
# After the Config: it sets up uvicorn's loggers afresh.
logging.getLogger("uvicorn.error").addHandler(Keep(level=logging.ERROR))
result: dict = {}


def check() -> None:
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        result["app"] = httpx.get("http://127.0.0.1:8000/relay", timeout=5).json()
        with connect(relay.url) as client:
            result["welcome"] = bool(client.sid)
    finally:
        server.should_exit = True


if mode == "defaults":
    threading.Thread(target=check, daemon=True).start()
try:
    server.run()
except SystemExit as exc:  # uvicorn exits 3 when the app's startup fails
    result["exit"] = exc.code
result.update(started=server.started, errors=errors, running_after=relay.server.running)
print(json.dumps(result))
