"""Wake the file input when Falco writes: inotify on Linux, through the C library.

A write wakes the reader at once (well under a millisecond), and an idle spool costs
nothing. Where inotify is missing (another OS, or a container without it), the input polls
instead (input.POLL_SECONDS), which also catches what inotify cannot see on its own: the
file being replaced under the same path.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os

_IN_MODIFY = 0x00000002
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name, use_errno=True) if name else None


_LIBC = _libc()


class WriteWatch:
    """An event set whenever the watched file is written to (or never, without inotify)."""

    def __init__(self, path: str) -> None:
        self.written = asyncio.Event()
        self._fd = -1
        init = getattr(_LIBC, "inotify_init1", None)
        add = getattr(_LIBC, "inotify_add_watch", None)
        if init is None or add is None:
            return
        descriptor = int(init(_IN_NONBLOCK | _IN_CLOEXEC))
        if descriptor < 0:
            return
        if int(add(descriptor, os.fsencode(path), _IN_MODIFY)) < 0:
            os.close(descriptor)
            return
        self._fd = descriptor
        asyncio.get_running_loop().add_reader(descriptor, self._drain)

    @property
    def active(self) -> bool:
        """True when writes wake the reader (inotify is there)."""
        return self._fd >= 0

    def _drain(self) -> None:
        try:
            while os.read(self._fd, 4096):
                pass
        except BlockingIOError:
            pass
        self.written.set()

    async def wait(self, seconds: float) -> None:
        """Until a write, or `seconds`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.written.wait(), seconds)
        self.written.clear()

    def close(self) -> None:
        """Stop watching."""
        if self._fd >= 0:
            asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
