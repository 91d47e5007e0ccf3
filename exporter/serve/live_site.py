"""The live page and its data, from the live view and the inputs' states, built at most
once a second whoever polls.

`/` is the whole page; `/api/live` carries the same data as JSON and the page's updating
part already rendered, so there is one renderer (live_page.py). Both are made together
and kept for a second: a hundred clients polling cost what one does.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from exporter.core.delivery import DeliveryLedger
from exporter.core.inputs import InputStatus
from exporter.serve import live_page
from exporter.serve.live import LiveView

# How long a built page is served again before it is rebuilt.
FRESH_FOR = 1.0
# Falcos shown on the page (those that lost alerts first); /metrics has them all.
FALCOS_SHOWN = 50


@dataclass(frozen=True)
class _Built:
    at: float
    html: bytes
    data: bytes


class LivePage:
    """Renders `/` and `/api/live`, at most once per FRESH_FOR."""

    def __init__(
        self,
        view: LiveView,
        statuses: Callable[[], Sequence[InputStatus]],
        delivery: DeliveryLedger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._view = view
        self._statuses = statuses
        self._delivery = delivery
        self._clock = clock
        self._built: _Built | None = None
        self._building: asyncio.Future[_Built] | None = None

    async def html(self) -> bytes:
        """The page at /: what a person wants to see of Falco's alerts, without Grafana."""
        return (await self._current()).html

    async def data(self) -> bytes:
        """/api/live as JSON: the page's data, and its updating part already rendered."""
        return (await self._current()).data

    async def _current(self) -> _Built:
        built = self._built
        if built is not None and self._clock() - built.at < FRESH_FOR:
            return built
        if self._building is None:  # one build at a time: the others wait for it
            self._building = asyncio.ensure_future(self._build())
        building = self._building
        try:
            return await asyncio.shield(building)
        finally:
            if building.done() and self._building is building:
                self._building = None

    async def _build(self) -> _Built:
        view = self._view
        await view.sample_in_steps()
        state = await view.state()
        statuses = self._statuses()
        keeps_recent = view.keeps_recent_alerts
        falcos = self._falcos()
        data: dict[str, object] = {
            "now": state.now,
            "minutes": [{"start": start, "by_priority": counts} for start, counts in state.minutes],
            "rows": [vars(row) for row in state.rows],
            "series": state.series,
            "folded": state.folded,
            "new_rules": [{"rule": rule, "first_seen": seen} for rule, seen in state.new_rules],
            "inputs": [
                {"name": status.name, "state": status.state, "healthy": status.healthy}
                for status in statuses
            ],
            "falcos": [vars(falco) for falco in falcos.falcos],
            "falcos_tracked": falcos.tracked,
            "delivery_accounting": falcos.accounting,
            "html": live_page.main_section(state, statuses, keeps_recent, falcos),
        }
        if keeps_recent:
            data["recent"] = [vars(alert) for alert in state.recent]
        html = live_page.page(state, statuses, keeps_recent, falcos).encode()
        self._built = _Built(self._clock(), html, json.dumps(data).encode())
        return self._built

    def _falcos(self) -> live_page.Delivery:
        ledger = self._delivery
        if ledger is None:
            return live_page.Delivery()
        return live_page.Delivery(ledger.views(FALCOS_SHOWN), ledger.tracked, ledger.accounting)
