"""Running an example app the way its README does, for the examples' tests."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def readme_command(app: Path, *args: str) -> Iterator[int]:
    """Runs ``python app.py --port 0 *args``; yields the port from its "serving on" line, then
    stops it with SIGTERM and checks that it exited cleanly (killed after 15 s)."""
    proc = subprocess.Popen([sys.executable, str(app), "--port", "0", *args],
                            stdout=subprocess.PIPE, text=True,
                            env={"PYTHONUNBUFFERED": "1", "PATH": "/usr/bin:/bin"})
    try:
        port = None
        for line in iter(proc.stdout.readline, ""):
            if (found := re.search(r"serving on http://127\.0\.0\.1:(\d+)", line)):
                port = int(found.group(1))
                break
        assert port, "the app did not start"
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert proc.returncode == 0
