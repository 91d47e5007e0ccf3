"""The process-wide settings, made in one place, once, by the command line.

Everything here is global to the process, which is why no library module does it:
gRPC's C core reads GRPC_VERBOSITY when it starts (so this runs before grpc is
imported), and structlog and the standard library's logging are configured once.
Tests call the same function for the settings they share with the process.
"""

from __future__ import annotations

import os
from typing import TextIO

from exporter.runtime.logs import configure_logging
from exporter.settings.choices import LogFormat, LogLevel


def configure_process(
    log_level: LogLevel | str = LogLevel.INFO,
    log_format: LogFormat | str = LogFormat.AUTO,
    stream: TextIO | None = None,
) -> None:
    """gRPC's own stderr logging off, and every log line structured, at `log_level`."""
    quiet_grpc_core()
    configure_logging(log_level, log_format, stream)


def quiet_grpc_core() -> None:
    """gRPC's C core would log TLS failures to stderr in its own format; the exporter logs
    them itself, with a hint, as structured lines. A GRPC_VERBOSITY already set still wins.
    Must run before grpc is imported."""
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
