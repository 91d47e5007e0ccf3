"""File descriptors for every connection the listeners may hold, reserved at start-up.

Each listener has its own connection limit, so that one port's connections never take
another's; that only holds while the process may open them all. So at start the soft
limit on open files is raised toward the hard one, and if the sum of the limits still
does not fit, the largest (the HTTP input's) is lowered to fit, loudly.
"""

from __future__ import annotations

import resource

# Beyond the listeners: the listening sockets, gRPC channels, files, the event loop's own.
RESERVED = 256


def open_files_limit(wanted: int) -> int:
    """The soft limit on open files, raised toward `wanted` (within the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return wanted if soft == resource.RLIM_INFINITY else soft
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft
    return target
