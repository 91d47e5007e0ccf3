"""Warnings that cannot flood the log: at most one per key per interval, with a count.

Falco ignores every answer we give, so a misconfigured Falco sends the same bad POST
once per alert, thousands a second. One line a minute per reason says it all, and
`suppressed` says how many were not logged since the last line.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from structlog.typing import FilteringBoundLogger

DEFAULT_INTERVAL = 60.0


class RateLimitedLog:
    """Logs an event for a key at most once per `interval` seconds."""

    def __init__(
        self,
        logger: FilteringBoundLogger,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, key: str, level: str, event: str, **fields: object) -> None:
        """Log now if `key` was quiet for the interval; else count it for the next line."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        getattr(self._logger, level)(event, suppressed_since_last=suppressed, **fields)
