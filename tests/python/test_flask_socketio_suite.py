"""Flask-SocketIO's own ``test_socketio.py`` against the facade (issue 17 item 3).

The file comes from the Flask-SocketIO sdist on PyPI of the version installed here, unpacked in
a temporary folder outside the repository; only its import line is changed. At least 40 of its
42 tests must pass, and every failure must be one docs/socketio.md lists as unable to pass.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

# docs/socketio.md "Flask-SocketIO's own test suite" lists any test that cannot pass (none now).
DOCUMENTED_FAILURES: set[str] = set()
IMPORT_LINE = re.compile(r"^from flask_socketio import SocketIO", re.M)


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    version = importlib.metadata.version("flask-socketio")
    scratch = tmp_path_factory.mktemp("flask-socketio-suite")
    got = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                          "--no-binary", ":all:", "-d", str(scratch), f"flask-socketio=={version}"],
                         capture_output=True, text=True, timeout=300)
    assert got.returncode == 0, got.stderr
    (sdist,) = scratch.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/test_socketio.py"))
        text = tar.extractfile(member).read().decode()
    assert len(IMPORT_LINE.findall(text)) == 1, "the suite's import line changed upstream"
    path = scratch / "test_socketio.py"
    path.write_text(IMPORT_LINE.sub("from skyrelay.flask import SocketIO", text))
    return path


def test_flask_socketio_own_suite_passes_but_the_documented_ones(suite: Path):
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "no:randomly", "-rf", "--timeout=60", str(suite.name)],
                          cwd=suite.parent, capture_output=True, text=True, timeout=600)
    out = done.stdout
    passed = int(m.group(1)) if (m := re.search(r"(\d+) passed", out)) else 0
    failed = set(re.findall(r"^FAILED \S*::(?:\w+::)?(test_\w+)", out, re.M))
    errors = re.findall(r"^ERROR \S*test_socketio", out, re.M)
    assert not errors, out[-3000:]
    assert failed <= DOCUMENTED_FAILURES, out[-3000:]
    assert passed >= 40 and passed + len(failed) >= 42, out[-3000:]
    assert done.returncode == (1 if failed else 0), out[-3000:]
