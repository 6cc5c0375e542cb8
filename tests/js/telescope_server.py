"""The telescope-control example (examples/telescope_control) for
tests/js/telescope_debug.test.mjs: the app as its README runs it, on a free port, with its
simulated mounts 100 times faster and no sensor drift, so the test decides every change.

Prints "PORT <n>" once it listens and serves until its standard input closes, so it never
outlives the test process that started it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

APP = Path(__file__).parents[2] / "examples" / "telescope_control" / "app.py"
spec = importlib.util.spec_from_file_location("telescope_control_app", APP)
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)

server, fleet = app.build("127.0.0.1", 0, speed=0.01)
server.start()
print(f"PORT {server.port}", flush=True)
sys.stdin.read()
server.stop()
