"""SIGTERM and SIGINT set an asyncio.Event; a second one exits at once. SIGHUP, which
kills a process by default (and is what `kill -HUP` or a closed terminal sends), is logged
and ignored: nothing is re-read on it (the client certificates are watched on their own)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator

import structlog

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """Install the handlers for the block's duration, then restore the ones there before."""
    loop = asyncio.get_running_loop()
    log = structlog.get_logger("signals")

    def handle(signum: signal.Signals) -> None:
        if stop.is_set():
            log.warning("second signal; exiting now", signal=signum.name)
            os._exit(128 + signum.value)
        log.info("signal received; stopping", signal=signum.name)
        stop.set()

    def ignore_hangup() -> None:
        log.warning(
            "SIGHUP received; ignored: nothing is re-read on it (client certificates are "
            "re-read on their own; restart to load new server certificates)"
        )

    previous = {signum: signal.getsignal(signum) for signum in (*_SIGNALS, signal.SIGHUP)}
    for signum in _SIGNALS:
        loop.add_signal_handler(signum, handle, signum)
    loop.add_signal_handler(signal.SIGHUP, ignore_hangup)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            loop.remove_signal_handler(signum)  # resets to SIG_DFL
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
