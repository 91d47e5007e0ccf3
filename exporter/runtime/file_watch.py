"""Notice when files change on disk, so that a certificate rotation needs no restart.

Kubernetes updates a mounted Secret by swapping a symlink (`..data`) to a new folder; the
file names stay and their contents change. Polling the contents every few seconds sees
that reliably, through any kind of link, at negligible cost. A file that cannot be read
at the moment (a rotation half-way) is not a change: the watch waits until all read again.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path


def fingerprint(paths: Sequence[Path]) -> tuple[str, ...]:
    """A digest of each file's contents ("" for a file that cannot be read now)."""
    digests = []
    for path in paths:
        try:
            digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
        except OSError:
            digests.append("")
    return tuple(digests)


async def watch_files(
    paths: Sequence[Path],
    interval: float,
    on_change: Callable[[], None],
    since: tuple[str, ...] | None = None,
) -> None:
    """Call on_change whenever the files' contents differ from the last check; forever.

    `since` is their fingerprint when the caller read them: a change between that read and
    this task's first turn is a change too (taken here, it would be missed).
    """
    last = fingerprint(paths) if since is None else since
    while True:
        await asyncio.sleep(interval)
        current = fingerprint(paths)
        if current != last and "" not in current:
            last = current
            on_change()
