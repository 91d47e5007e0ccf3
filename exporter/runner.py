"""Run an Exporter in the foreground of a process until a signal stops it."""

from __future__ import annotations

import asyncio

import structlog

from exporter import __version__
from exporter.app import Exporter
from exporter.config import Config
from exporter.signals import stop_on_signals


async def serve_until_signalled(config: Config) -> int:
    """Exit status: 0 after a clean stop, 1 when a port cannot be bound."""
    log = structlog.get_logger("app")
    log.info("starting falco-exporter", version=__version__, config=config.effective())
    stop = asyncio.Event()
    exporter = Exporter(config)
    with stop_on_signals(stop):
        try:
            await exporter.serve(stop)
        except OSError as error:
            log.error("cannot serve HTTP", error=str(error))  # noqa: TRY400 - no traceback wanted
            await exporter.stop()
            return 1
    log.info("stopped")
    return 0
