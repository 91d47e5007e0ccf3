"""Log lines that cannot flood the log: at most one per key per interval, with a count.

Falco ignores every answer we give, so a misconfigured Falco sends the same bad POST
once per alert, thousands a second; a broken stream repeats the same undecodable message.
One line a minute per reason says it all, and `suppressed_since_last` says how many were
not logged since the last line. The one rate limiter of the exporter: safe from any thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable

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
        self._last: dict[Hashable, float] = {}
        self._suppressed: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def log(self, key: Hashable, level: int, event: str, **fields: object) -> bool:
        """Log now (True) if `key` was quiet for the interval; else count it for the next line.

        `level` is the standard library's number (logging.WARNING, ...).
        """
        with self._lock:
            now = self._clock()
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        self._logger.log(level, event, suppressed_since_last=suppressed, **fields)
        return True
