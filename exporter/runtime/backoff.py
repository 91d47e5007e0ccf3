"""Reconnect delays: capped exponential backoff with full jitter (gRPC's gRFC A6).

Jitter spreads the reconnects of many exporters after a Falco restart; the cap keeps
a long outage from pushing the next attempt minutes away.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delay n is random(0, min(initial * multiplier**(n-1), maximum))."""

    def __init__(
        self,
        initial: float,
        maximum: float,
        multiplier: float = 2.0,
        uniform: Callable[[], float] = random.random,
    ) -> None:
        self._initial = initial
        self._maximum = maximum
        self._multiplier = multiplier
        self._uniform = uniform
        self.attempt = 0

    def next_delay(self) -> float:
        """Count one more failed attempt and return how long to wait before the next."""
        self.attempt += 1
        ceiling = min(self._initial * self._multiplier ** (self.attempt - 1), self._maximum)
        return self._uniform() * ceiling

    def reset(self) -> None:
        """After a healthy stream: the next failure starts from the initial delay again."""
        self.attempt = 0
