"""A simulated Falco that keeps Falco's counts and posts like its http_output.

Its clock is virtual (a minute per metrics interval, two seconds between alerts), so the
event and snapshot times are Falco's while nothing waits for them; each POST is made for
real, and a refused connection loses the alert, as Falco never retries.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from exporter.simulator.falco_counts import FalcoCounts
from exporter.simulator.http_output import FALCO_HEADERS

SECOND = 1_000_000_000
ALERT = {"rule": "Terminal shell in container", "priority": "Warning", "source": "syscall"}


@dataclass
class Falco:
    """One simulated Falco posting to one URL, a virtual minute per interval."""

    url: str
    hostname: str = "node-7"
    now: int = field(default_factory=time.time_ns)
    counts: FalcoCounts = field(init=False)
    refused: int = 0

    def __post_init__(self) -> None:
        self.counts = FalcoCounts(self.hostname, clock_ns=lambda: self.now)

    async def post(self, document: dict[str, Any]) -> int | None:
        """One POST as libcurl sends it; None when the connection is refused (lost)."""
        try:
            async with (
                aiohttp.ClientSession(headers=FALCO_HEADERS) as session,
                session.post(self.url, data=json.dumps(document)) as response,
            ):
                return response.status
        except aiohttp.ClientConnectionError:
            self.refused += 1
            return None

    async def alerts(self, number: int, *, post: bool = True) -> list[int | None]:
        """Rules match `number` times, two seconds apart; each alert posted (or lost on the
        way, never posted)."""
        statuses = []
        for _ in range(number):
            self.now += 2 * SECOND
            document = self.counts.matched(ALERT)
            statuses.append(await self.post(document) if post else None)
        return statuses

    async def snapshot(self) -> int | None:
        """The metrics interval ends: Falco reads its counters and posts the snapshot."""
        self.now += 60 * SECOND
        return await self.post(self.counts.snapshot())
