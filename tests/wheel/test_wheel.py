"""The wheel that `make wheel` leaves in dist/, installed where nothing can be compiled.

A fresh venv (no pip of its own: the outer pip installs into it with ``--python``), and every
command run with PATH holding only that venv's bin/ (no gcc, g++, cc, clang, cmake), CC and
CXX set to /bin/false, and, when this runs as root as CI does, an empty tmpfs mounted over
/usr/include in a private mount namespace, so no Boost, OpenSSL or Python header exists. pip
installs from the file alone (``--no-index --only-binary :all:``). Then a smoke test against
the installed copy: a Server on 127.0.0.1, a WebSocket client that receives a published
event, /health, ``skyrelay --version``, and ldd showing that OpenSSL and hiredis come from
the wheel's own skyrelay.libs/ rather than the system. `make test-wheel` runs this.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from skyrelay.testing import connect, stop_process

ROOT = Path(__file__).resolve().parents[2]
VERSION = re.search(r'^__version__ = "([^"]+)"$',
                    (ROOT / "python/skyrelay/__init__.py").read_text(), re.M).group(1)
# The libraries auditwheel must vendor: none of them is in any manylinux policy.
VENDORED = ("libssl", "libcrypto", "libhiredis")


def _wheel() -> Path:
    wheels = sorted((ROOT / "dist").glob(f"skyrelay-{VERSION}-*.whl"))
    assert len(wheels) == 1, f"expected one skyrelay {VERSION} wheel in dist/ (make wheel): {wheels}"
    return wheels[0]


def _hide_headers_prefix() -> list[str]:
    """unshare + a tmpfs over /usr/include, then exec the command (same pid); [] when this
    process may not make a mount namespace (not root)."""
    unshare, mount = shutil.which("unshare"), shutil.which("mount")
    if os.geteuid() != 0 or not unshare or not mount:
        return []
    prefix = [unshare, "--mount", "--propagation", "private", "/bin/sh", "-c",
              f'{mount} -t tmpfs -o size=1m,ro no-headers /usr/include && exec "$@"', "sh"]
    probe = subprocess.run([*prefix, "/bin/true"], capture_output=True, timeout=30)
    return prefix if probe.returncode == 0 else []


@dataclass
class Sandbox:
    venv: Path
    env: dict[str, str]
    prefix: list[str]

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def command(self, *args: str | Path) -> list[str]:
        return [*self.prefix, *map(str, args)]

    def run(self, *args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args), env=self.env, cwd=self.venv.parent,
                              capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    root = tmp_path_factory.mktemp("wheel")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=60)
    env = {"PATH": str(venv / "bin"), "CC": "/bin/false", "CXX": "/bin/false",
           "HOME": str(root), "LANG": "C.UTF-8", "PIP_CONFIG_FILE": os.devnull,
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    box = Sandbox(venv, env, _hide_headers_prefix())
    installed = box.run(sys.executable, "-m", "pip", "--python", box.python, "install", "-q",
                        "--no-index", "--only-binary", ":all:", _wheel())
    assert installed.returncode == 0, installed.stderr
    return box


def test_nothing_to_build_with_is_reachable(sandbox: Sandbox) -> None:
    probe = sandbox.run(sandbox.python, "-I", "-c", textwrap.dedent("""
        import json, os, shutil
        print(json.dumps({"tools": [t for t in ("gcc", "g++", "cc", "c++", "clang", "cmake")
                                    if shutil.which(t)],
                          "cc": os.environ["CC"], "cxx": os.environ["CXX"],
                          "boost": os.path.exists("/usr/include/boost"),
                          "ssl_headers": os.path.exists("/usr/include/openssl")}))
    """))
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout)
    assert seen["tools"] == [] and seen["cc"] == seen["cxx"] == "/bin/false"
    if not sandbox.prefix:
        pytest.skip("not root: /usr/include could not be hidden (the install above still "
                    "ran with no compiler and --only-binary)")
    assert not seen["boost"] and not seen["ssl_headers"]


SMOKE_SERVER = textwrap.dedent("""
    import json, sys
    import skyrelay
    core_loaded_by_import = "skyrelay._core" in sys.modules
    server = skyrelay.Server(host="127.0.0.1", port=0, client_topics=["news"]).start()
    import skyrelay._core
    print(json.dumps({"port": server.port, "version": skyrelay.__version__,
                      "package": skyrelay.__file__, "core": skyrelay._core.__file__,
                      "core_loaded_by_import": core_loaded_by_import}), flush=True)
    for line in sys.stdin:
        if line.strip() == "publish":
            print(json.dumps(server.emit("news", {"n": 1}, to="news")), flush=True)
        else:
            break
    server.stop()
""")


def test_the_installed_wheel_serves(sandbox: Sandbox) -> None:
    proc = subprocess.Popen(sandbox.command(sandbox.python, "-I", "-c", SMOKE_SERVER),
                            env=sandbox.env, cwd=sandbox.venv.parent, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        started = json.loads(proc.stdout.readline() or "null")
        assert started is not None, "the server in the fresh venv did not start"
        assert started["version"] == VERSION
        assert not started["core_loaded_by_import"]  # `import skyrelay` alone loads no C++
        assert started["package"].startswith(str(sandbox.venv))
        assert started["core"].startswith(str(sandbox.venv))
        port = started["port"]

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
            assert reply.status == 200
            assert json.load(reply)["status"] == "ok"

        client = connect(f"ws://127.0.0.1:{port}/ws")
        try:
            client.subscribe("news")
            proc.stdin.write("publish\n")
            proc.stdin.flush()
            assert client.expect("news", timeout=5) == {"n": 1}
        finally:
            client.close()
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        assert proc.wait(timeout=15) == 0
    finally:
        stop_process(proc)


def test_skyrelay_version(sandbox: Sandbox) -> None:
    done = sandbox.run(sandbox.venv / "bin" / "skyrelay", "--version", timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"skyrelay {VERSION}"


def test_openssl_and_hiredis_come_from_the_wheel(sandbox: Sandbox) -> None:
    (core,) = sandbox.venv.glob("lib/python3*/site-packages/skyrelay/_core*.so")
    libs = core.parent.parent / "skyrelay.libs"
    ldd = subprocess.run(["ldd", str(core)], capture_output=True, text=True, timeout=30,
                         env={"PATH": os.environ["PATH"], "LANG": "C"}, check=True).stdout
    resolved = dict(re.findall(r"^\s*(\S+) => (\S+)", ldd, re.M))
    assert "not found" not in resolved.values(), ldd
    for lib in VENDORED:
        (soname,) = [name for name in resolved if name.startswith(f"{lib}-")
                     or name.startswith(f"{lib}.")]
        assert Path(resolved[soname]).resolve().parent == libs.resolve(), f"{soname} => {resolved[soname]}\n{ldd}"
    assert not [name for name in resolved if "boost" in name], ldd


def test_the_wheel_says_which_openssl_it_carries(sandbox: Sandbox) -> None:
    (sbom,) = sandbox.venv.glob("lib/python3*/site-packages/skyrelay-*.dist-info/sboms/*.cdx.json")
    components = {c["name"]: c.get("version") for c in json.loads(sbom.read_text())["components"]}
    assert components.get("libssl3") and components.get("libhiredis0.14"), components
