"""OS names for the Python threads skyrelay starts (docs/deployment.md "Threads and their names").

On Linux a new thread takes the OS name of the thread that started it, so a thread started
from a handler would show as ``skyrelay-disp`` in ``top -H``. Python before 3.14 does not give
a ``threading.Thread`` its name in the OS; these threads do it themselves as they begin.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any


def name_os_thread(name: str | None = None) -> None:
    """Names the calling thread in the OS: ``name``, or its Python name (cut to 15 bytes)."""
    # Imported here: the modules that use this one load without the extension (handlers.py,
    # test_python_seams.py); by the time a thread starts, the server has loaded it.
    from . import _core

    _core.name_this_thread(name or threading.current_thread().name)


def os_named(target: Callable[..., Any], name: str | None = None) -> Callable[..., Any]:
    """``target``, naming its thread (see :func:`name_os_thread`) before it runs. Keeps the
    target's ``__name__``, which ``threading.Thread`` puts in its default name."""

    @functools.wraps(target)
    def run(*args: Any, **kwargs: Any) -> Any:
        name_os_thread(name)
        return target(*args, **kwargs)

    return run
