"""Optional dependencies: an ImportError that says which extra to install.

The engine and the producer need only the standard library; each integration imports its
framework inside ``requires_extra``, at the top of its module or where it is first used::

    with requires_extra("flask", "skyrelay.flask"):
        import flask

A module that is not installed then raises :class:`MissingExtraError`, a
``ModuleNotFoundError`` (so ``except ImportError`` and ``pytest.importorskip`` keep working)
whose message is the ``pip install`` command to run. An installed module that lacks a name
(a version older than the extra asks for) gets the same command with ``-U``.

The extras are declared in pyproject.toml, ``[project.optional-dependencies]``;
tests/python/test_packaging.py checks that each name used here is declared there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["MissingExtraError", "install_command", "requires_extra"]


class MissingExtraError(ModuleNotFoundError):
    """A module that an optional feature needs is not installed; ``extra`` names the extra
    that installs it and ``name`` the module (as on any ``ModuleNotFoundError``)."""

    def __init__(self, message: str, *, name: str | None, extra: str) -> None:
        super().__init__(message, name=name)
        self.extra = extra


def install_command(extra: str, upgrade: bool = False) -> str:
    """The pip command that installs ``extra``, quoted for every shell (zsh globs brackets)."""
    return f"pip install {'-U ' if upgrade else ''}'skyrelay[{extra}]'"


@contextlib.contextmanager
def requires_extra(extra: str, feature: str) -> Iterator[None]:
    """Imports in the ``with`` block belong to ``extra``; ``feature`` (a module or function
    name) says what needs them. Only import statements belong in the block: any other
    ImportError raised there would be reported as a missing extra."""
    try:
        yield
    except MissingExtraError:
        raise
    except ModuleNotFoundError as exc:
        raise MissingExtraError(
            f"{feature} needs the {exc.name!r} module, which is not installed; it comes with "
            f"the {extra!r} extra: {install_command(extra)}", name=exc.name, extra=extra) from exc
    except ImportError as exc:
        raise ImportError(
            f"{feature} could not import what it needs ({exc}); the installed version may be "
            f"older than the {extra!r} extra asks for: {install_command(extra, upgrade=True)}",
            name=exc.name, path=exc.path) from exc
