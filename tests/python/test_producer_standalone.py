"""A producer that needs no engine (issue 17 item 2): `import skyrelay.producer` loads nothing
compiled, and the package's .py files alone, copied to a scratch folder without `_core*.so`
and run by an interpreter with no site-packages (`python -S`), publish to a real server that
a real client hears."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import skyrelay

TOKEN = "t0ken-for-standalone"

PUBLISH = """
import asyncio, json, sys
sys.path.insert(0, sys.argv[1])
import skyrelay.producer
from skyrelay import AsyncProducer, Producer

with Producer(sys.argv[2], token=sys.argv[3]) as producer:
    first = producer.emit("reading", {"flow": 41.7, "gap": float("nan"), "raw": b"\\x01"},
                          to="WELL-7")

async def more():
    async with AsyncProducer(sys.argv[2], token=sys.argv[3]) as producer:
        return await asyncio.gather(*(producer.emit("reading", i, to="WELL-7")
                                      for i in range(3)))

rest = asyncio.run(more())
ours = sorted(name for name in sys.modules if name.startswith("skyrelay"))
print(json.dumps({"file": skyrelay.__file__, "modules": ours,
                  "site": [p for p in sys.path if "site-packages" in p],
                  "seqs": sorted([first.seq] + [p.seq for p in rest])}))
"""


def copy_python_files(destination: Path) -> Path:
    """The installed package's top-level .py files only (no extension, no data)."""
    source = Path(skyrelay.__file__).parent
    package = destination / "skyrelay"
    package.mkdir()
    for file in source.glob("*.py"):
        shutil.copy2(file, package / file.name)
    return package


def test_the_python_files_alone_publish(tmp_path, skyrelay_server_factory, skyrelay_client):
    package = copy_python_files(tmp_path)
    assert not [p for p in package.iterdir() if p.suffix in (".so", ".pyd")]
    server = skyrelay_server_factory(publish_token=TOKEN)
    client = skyrelay_client(server)
    client.subscribe("WELL-7")
    done = subprocess.run([sys.executable, "-S", "-c", PUBLISH, str(tmp_path),
                           server.http_url, TOKEN],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert Path(result["file"]).parent == package  # the copy, not the installed package
    assert result["site"] == []  # nothing installed was reachable
    assert not [m for m in result["modules"] if m in ("skyrelay._core", "skyrelay.server")]
    assert result["seqs"] == [1, 2, 3, 4]
    assert client.expect("reading") == {"flow": 41.7, "gap": None, "raw": "AQ=="}
    assert sorted(client.expect("reading") for _ in range(3)) == [0, 1, 2]


def test_importing_the_producer_here_loads_no_extension():
    """In the normal environment too, where the extension is installed and importable."""
    code = ("import sys, skyrelay, skyrelay.producer; "
            "skyrelay.Producer, skyrelay.AsyncProducer, skyrelay.PublishError; "
            "import importlib.util; assert importlib.util.find_spec('skyrelay._core'); "
            "loaded = [m for m in sys.modules if m.startswith('skyrelay')]; "
            "assert 'skyrelay._core' not in sys.modules, loaded; print(sorted(loaded))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "skyrelay._producer_pool" in done.stdout  # the producer really was imported
