"""structlog set-up: JSON lines when stdout is not a terminal, readable console otherwise.

The exporter logs connection changes and errors, never one line per event, so the
logger is configured for clarity rather than speed.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

from exporter.settings.choices import LogFormat, LogLevel


def configure_logging(
    level: LogLevel | str = LogLevel.INFO,
    log_format: LogFormat | str = LogFormat.AUTO,
    stream: TextIO | None = None,
) -> None:
    """Route every structlog logger to `stream` (stdout) at `level` in the chosen format."""
    out = stream or sys.stdout
    number = LogLevel(level).number
    as_json = log_format == LogFormat.JSON or (log_format == LogFormat.AUTO and not out.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # Libraries log through the standard library (asyncio's unhandled errors, for one):
    # the same stream and format, so nothing reaches stderr beside the structured log.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_log_level, timestamper],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    # Libraries' own debug and info lines (grpc logs per call) are noise here: warnings up.
    root.setLevel(max(number, logging.WARNING))
