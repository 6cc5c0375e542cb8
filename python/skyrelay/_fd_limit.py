"""The process's open-file limit, raised at server start.

Every connection is a file descriptor, and most systems start a process with a soft
RLIMIT_NOFILE of 1,024 however many it may have (the hard limit). A server configured for
``max_connections`` would then refuse accepts far below it. At start the server raises the soft
limit toward ``max_connections`` plus some headroom (listeners, the broker, log files), never
above the hard limit, which only a privileged process (CAP_SYS_RESOURCE) may raise, and never
lowers it. ``SKYRELAY_RAISE_NOFILE=0`` in the environment leaves the limit alone (for a process
that still uses ``select()``, which cannot watch descriptors above 1,023).
"""

from __future__ import annotations

import logging
import os

try:
    import resource
except ImportError:  # not on this platform: nothing to raise
    resource = None  # type: ignore[assignment]

ENV = "SKYRELAY_RAISE_NOFILE"
HEADROOM = 1024

log = logging.getLogger("skyrelay")


def raise_nofile(max_connections: int) -> tuple[int, int] | None:
    """Raises the soft open-file limit toward ``max_connections + HEADROOM``, capped at the hard
    limit; returns the (soft, hard) limits in force afterwards, or None where there are none to
    read. Says so in the log (INFO: the default max_connections is above many systems' hard limit,
and a warning at every start would be noise) when the limit stays below what it needs."""
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = max_connections + HEADROOM if max_connections > 0 else hard  # 0: no cap, all we may
    want = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if os.environ.get(ENV, "1").strip() != "0" and soft != resource.RLIM_INFINITY and want > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError) as exc:  # e.g. macOS refuses above OPEN_MAX
            log.warning("skyrelay: cannot raise the open-file limit to %d: %s", want, exc)
    if soft != resource.RLIM_INFINITY and need != resource.RLIM_INFINITY and soft < need:
        log.info("skyrelay: the open-file limit is %d (hard %s): fewer than max_connections "
                 "(%d) can be open at once (descriptor_tables='per-thread' holds about that "
                 "many per I/O thread: docs/api.md)", soft,
                 "unlimited" if hard == resource.RLIM_INFINITY else hard, max_connections)
    return soft, hard
