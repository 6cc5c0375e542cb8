"""Packaging: the extras declared in pyproject.toml, the ImportError a missing one raises, and
the one place the version is written. The wheel itself is tested in tests/wheel/."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

import skyrelay
from skyrelay._extras import MissingExtraError, requires_extra

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "python" / "skyrelay"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]

# Run in a fresh interpreter: a meta-path finder that answers "not installed" for the top-level
# modules named in argv[1], as when the extra was never installed, then the snippet in argv[2].
# The snippet's ImportError is printed as JSON.
_HIDING_RUNNER = textwrap.dedent("""
    import json, sys

    class NotInstalled:
        def __init__(self, names):
            self.names = names

        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in self.names:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled(set(sys.argv[1].split(","))))
    try:
        exec(sys.argv[2])
    except ImportError as exc:
        print(json.dumps({"type": type(exc).__name__,
                          "module_not_found": isinstance(exc, ModuleNotFoundError),
                          "name": exc.name, "extra": getattr(exc, "extra", None),
                          "message": str(exc)}))
    else:
        print(json.dumps(None))
""")


def _run_hiding(hidden: str, snippet: str) -> dict | None:
    proc = subprocess.run([sys.executable, "-c", _HIDING_RUNNER, hidden, textwrap.dedent(snippet)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# id: (hidden module, what the user runs, the extra the message must name)
MISSING = {
    "skyrelay.flask": ("flask", "import skyrelay.flask", "flask"),
    "skyrelay.orbit": ("numpy", "import skyrelay.orbit", "orbit"),
    "skyrelay.tracker": ("numpy", "import skyrelay.tracker", "orbit"),
    "orbit-cli": ("numpy", "import skyrelay._orbit_cli", "orbit"),
    "testing.connect": ("websockets", "from skyrelay.testing import connect\n"
                        "connect('ws://127.0.0.1:9/ws')", "testing"),
    "testing.connect_sio": ("socketio", "from skyrelay.testing import connect_sio\n"
                            "connect_sio('http://127.0.0.1:9')", "testing"),
    "testing.connect_sse": ("httpx_sse", "from skyrelay.testing import connect_sse\n"
                            "connect_sse('http://127.0.0.1:9/sse')", "testing"),
    "testing.connect_async": ("websockets", "import asyncio\n"
                              "from skyrelay.testing import connect_async\n"
                              "asyncio.run(connect_async('ws://127.0.0.1:9/ws'))", "testing"),
    "testing.connect_async_sio": ("aiohttp", "import asyncio\n"
                                  "from skyrelay.testing import connect_async_sio\n"
                                  "asyncio.run(connect_async_sio('http://127.0.0.1:9'))",
                                  "testing"),
    "RateLimiter.flask": ("flask", "from skyrelay import RateLimiter\n"
                          "RateLimiter(rate=1, burst=1).flask()", "flask"),
    "RateLimiter.fastapi": ("fastapi", "from skyrelay import RateLimiter\n"
                            "RateLimiter(rate=1, burst=1).fastapi()", "fastapi"),
}


@pytest.mark.parametrize(("hidden", "snippet", "extra"), MISSING.values(), ids=MISSING.keys())
def test_a_missing_extra_names_the_pip_command(hidden: str, snippet: str, extra: str) -> None:
    error = _run_hiding(hidden, snippet)
    assert error is not None, f"{snippet!r} imported with {hidden} hidden"
    assert error["type"] == "MissingExtraError"
    assert error["module_not_found"]  # `except ModuleNotFoundError` still catches it
    assert error["name"] == hidden
    assert error["extra"] == extra
    assert f"pip install 'skyrelay[{extra}]'" in error["message"]
    assert extra in EXTRAS


def test_flask_test_client_without_python_socketio_names_the_testing_extra() -> None:
    # test_client() starts the app's server first; the snippet stops it whatever happens.
    error = _run_hiding("socketio", """
        import flask
        from skyrelay.flask import SocketIO
        app = flask.Flask("t")
        sio = SocketIO(app)
        try:
            sio.test_client(app)
        finally:
            sio.stop()
    """)
    assert error is not None and error["type"] == "MissingExtraError"
    assert error["name"] == "socketio"
    assert "pip install 'skyrelay[testing]'" in error["message"]


def test_the_engine_and_the_producer_need_no_extra() -> None:
    # Every optional package hidden at once: the core imports, and so does the producer.
    hidden = ("flask,fastapi,starlette,numpy,pandas,websockets,socketio,jwt,pydantic,redis,"
              "httpx,httpx_sse,aiohttp")
    assert _run_hiding(hidden, """
        import skyrelay
        skyrelay.Server(host="127.0.0.1", port=0)
        from skyrelay import Producer
        Producer("http://127.0.0.1:9")
    """) is None


def test_an_installed_module_too_old_gets_the_upgrade_command() -> None:
    with pytest.raises(ImportError) as info:
        with requires_extra("orbit", "skyrelay.orbit"):
            from json import no_such_name  # noqa: F401  (an ImportError, not a missing module)
    assert not isinstance(info.value, ModuleNotFoundError)
    assert "pip install -U 'skyrelay[orbit]'" in str(info.value)
    assert isinstance(info.value.__cause__, ImportError)


def test_other_errors_pass_through_unchanged() -> None:
    with pytest.raises(ZeroDivisionError):
        with requires_extra("orbit", "skyrelay.orbit"):
            1 / 0
    with pytest.raises(MissingExtraError) as info:  # the innermost block's extra wins
        with requires_extra("all", "outer"):
            with requires_extra("orbit", "inner"):
                import skyrelay_no_such_module  # noqa: F401
    assert info.value.extra == "orbit"


def _requires_extra_blocks() -> list[tuple[str, str, set[str]]]:
    """(file, extra, top-level modules imported in the block) for every requires_extra block
    in the package."""
    blocks = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.With):
                continue
            for item in node.items:
                call = item.context_expr
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                        and call.func.id == "requires_extra"):
                    modules = set()
                    for stmt in node.body:
                        if isinstance(stmt, ast.Import):
                            modules |= {a.name.partition(".")[0] for a in stmt.names}
                        elif isinstance(stmt, ast.ImportFrom) and stmt.module:
                            modules.add(stmt.module.partition(".")[0])
                    blocks.append((path.name, call.args[0].value, modules))
    return blocks


def _requirement_names(extra: str) -> set[str]:
    names = set()
    for requirement in EXTRAS[extra]:
        name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
        names.add(re.sub(r"[-_.]+", "-", name).lower())
    return names


def test_each_guarded_import_is_installed_by_the_extra_it_names() -> None:
    blocks = _requires_extra_blocks()
    assert {b[1] for b in blocks} >= {"flask", "fastapi", "orbit", "testing"}
    distributions = importlib.metadata.packages_distributions()
    for file, extra, modules in blocks:
        assert extra in EXTRAS, f"{file}: extra {extra!r} is not in pyproject.toml"
        assert modules, f"{file}: a requires_extra block imports nothing"
        for module in modules:
            provided_by = {re.sub(r"[-_.]+", "-", d).lower() for d in distributions[module]}
            assert provided_by & _requirement_names(extra), (
                f"{file}: {module} comes from {provided_by}, not in [{extra}] {EXTRAS[extra]}")


def test_all_installs_every_other_extra() -> None:
    (requirement,) = EXTRAS["all"]
    listed = set(re.fullmatch(r"skyrelay\[([a-z,]+)\]", requirement).group(1).split(","))
    assert listed == set(EXTRAS) - {"all"}


def test_the_version_is_written_once() -> None:
    init = (PACKAGE / "__init__.py").read_text()
    assert re.search(r'^__version__ = "(\d+\.\d+\.\d+)"$', init, re.M)
    assert PYPROJECT["project"]["dynamic"] == ["version"]
    assert "version" not in PYPROJECT["project"]
    assert importlib.metadata.version("skyrelay") == skyrelay.__version__
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert re.search(r"project\(skyrelay VERSION \$\{skyrelay_version\}", cmake)


def test_the_version_needs_no_extension() -> None:
    proc = subprocess.run([sys.executable, "-c",
                           "import sys, skyrelay; print(skyrelay.__version__, "
                           "'skyrelay._core' in sys.modules)"],
                          capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.split() == [skyrelay.__version__, "False"]


def test_the_installed_metadata_declares_extras_license_and_urls() -> None:
    meta = importlib.metadata.metadata("skyrelay")
    assert set(meta.get_all("Provides-Extra")) == set(EXTRAS)
    assert meta["License-Expression"] == "MIT"
    assert "LICENSE" in (meta.get_all("License-File") or [])
    assert any(url.startswith("Source, ") for url in meta.get_all("Project-URL"))
    requires = meta.get_all("Requires-Dist")
    assert all("extra ==" in r for r in requires), f"a requirement outside the extras: {requires}"
