"""The settings that take one of a few words: each vocabulary declared once, as an enum.

A member is a `str`, so it compares equal to the word a user writes and prints as it.
"""

from __future__ import annotations

import logging
from enum import StrEnum


class Transport(StrEnum):
    """How the gRPC input reads Falco's queue."""

    GET = "get"  # call `get`, which drains the queue and ends, again and again (fastest)
    SUB = "sub"  # one long `sub` stream, polled with an empty request every interval


class ReadyWhen(StrEnum):
    """When the gRPC input is ready: any target connected, or all of them."""

    ANY = "any"
    ALL = "all"


class EventLoopChoice(StrEnum):
    """Which event loop runs the exporter."""

    AUTO = "auto"
    UVLOOP = "uvloop"
    ASYNCIO = "asyncio"


class LogFormat(StrEnum):
    """How log lines are written."""

    AUTO = "auto"  # JSON unless stdout is a terminal
    JSON = "json"
    CONSOLE = "console"


class LogLevel(StrEnum):
    """The least severe log lines written."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def number(self) -> int:
        """The standard library's level number (logging.INFO, ...)."""
        return int(logging.getLevelName(self.value.upper()))
