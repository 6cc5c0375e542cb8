"""python/skyrelay/_core.pyi against the built extension, with mypy's stubtest: a binding added,
removed or changed without its stub fails here."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ALLOWLIST = Path(__file__).with_name("stubtest_allowlist.txt")


def test_the_stub_matches_the_extension(tmp_path):
    # The stub is checked where it is installed (a py.typed package), next to the module it
    # describes; run from an empty directory so that no project mypy config applies.
    done = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "skyrelay._core", "--allowlist", str(ALLOWLIST)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


# stubtest cannot read a pybind11 function's parameters (it has no __text_signature__); pybind11
# writes them on the first line of the docstring instead: "name(self: T, a: int, arg1: str = 'x')
# -> R". The test below checks the stub's parameters against those lines.

STUB = Path(__file__).parents[2] / "python" / "skyrelay" / "_core.pyi"


def split_top_level(text: str) -> list[str]:
    """Splits at the commas outside brackets and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    if text[start:].strip():
        parts.append(text[start:].strip())
    return parts


def runtime_params(fn: object) -> list[tuple[str, bool]] | None:
    """(name, has a default) for each parameter of a pybind11 function, None if overloaded."""
    first = (getattr(fn, "__doc__", None) or "").splitlines()[0]
    if "(*args, **kwargs)" in first:
        return None
    inside = first[first.index("(") + 1:first.rindex(") ->")]
    params = [(p.partition(":")[0].strip(), "=" in p) for p in split_top_level(inside)]
    return [p for p in params if p[0] != "self"]


def stub_params(node: ast.FunctionDef) -> list[tuple[str, bool, bool]]:
    """(name, has a default, positional-only) for each parameter of a stub function."""
    args = node.args
    positional = args.posonlyargs + args.args
    defaults = [False] * (len(positional) - len(args.defaults)) + [True] * len(args.defaults)
    out = [(a.arg, d, i < len(args.posonlyargs)) for i, (a, d) in
           enumerate(zip(positional, defaults))]
    out += [(a.arg, d is not None, False) for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    return [p for p in out if p[0] != "self"]


def stub_functions() -> list[tuple[str, ast.FunctionDef]]:
    """Every function of the stub, by its runtime path (`_Orbit` is the `orbit` submodule)."""
    found = []

    def walk(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                name = "orbit" if node.name == "_Orbit" else node.name
                walk(node.body, f"{prefix}{name}.")
            elif isinstance(node, ast.FunctionDef):
                if not any(isinstance(d, ast.Name) and d.id == "property" or
                           isinstance(d, ast.Attribute) and d.attr == "setter"
                           for d in node.decorator_list):  # properties: stubtest's part
                    found.append((prefix + node.name, node))

    walk(ast.parse(STUB.read_text()).body, "")
    return found


def test_the_stub_parameters_match_the_bindings():
    import skyrelay._core as core

    checked, problems = 0, []
    for path, node in stub_functions():
        obj: object = core
        for part in path.split("."):
            obj = getattr(obj, part)
        runtime = runtime_params(obj)
        if runtime is None:
            continue
        stub = stub_params(node)
        checked += 1
        if len(stub) != len(runtime):
            problems.append(f"{path}: stub has {len(stub)} parameters, runtime {len(runtime)}")
            continue
        for (name, has_default, posonly), (rt_name, rt_default) in zip(stub, runtime):
            unnamed = rt_name.startswith("arg") and rt_name[3:].isdigit()
            if unnamed and not posonly:
                problems.append(f"{path}: {name} is positional-only at runtime ({rt_name})")
            if not unnamed and name != rt_name:
                problems.append(f"{path}: stub names {name!r}, runtime {rt_name!r}")
            if has_default != rt_default:
                problems.append(f"{path}: {name} has a default in one and not the other")
    assert checked >= 40  # every Server, RateLimiter and orbit function
    assert not problems, "\n".join(problems)
