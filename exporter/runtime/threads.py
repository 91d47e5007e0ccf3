"""Calling from a worker thread into the event loop, the one way.

A thread must never touch loop objects (events, futures) directly; it asks the loop to do
it. Once the loop has closed (the process is ending) there is nobody to tell, and the
call is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


def on_loop(loop: asyncio.AbstractEventLoop, function: Callable[[], object]) -> Callable[[], None]:
    """A function any thread may call: it runs `function` on `loop`'s thread, soon."""

    def call() -> None:
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                loop.call_soon_threadsafe(function)

    return call
