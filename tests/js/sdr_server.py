"""The SDR dashboard example (examples/sdr_dashboard) for tests/js/sdr_dashboard.test.mjs:
the app as its README runs it, on a free port and without the simulator, so the test decides
every event (through the app's own REST API).

Prints "PORT <n>" once it listens and serves until its standard input closes, so it never
outlives the test process that started it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

APP = Path(__file__).parents[2] / "examples" / "sdr_dashboard" / "app.py"
spec = importlib.util.spec_from_file_location("sdr_dashboard_app", APP)
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)

server, _, _ = app.build("127.0.0.1", 0)
server.start()
print(f"PORT {server.port}", flush=True)
sys.stdin.read()
server.stop()
