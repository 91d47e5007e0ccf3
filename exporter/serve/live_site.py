"""The live page and its data, from the live view and the inputs' states.

`/` is the whole page; `/api/live` carries the same data as JSON and the page's updating
part already rendered, so there is one renderer (live_page.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from exporter.core.inputs import InputStatus
from exporter.serve import live_page
from exporter.serve.live import LiveView


class LivePage:
    """Renders `/` and `/api/live`."""

    def __init__(self, view: LiveView, statuses: Callable[[], Sequence[InputStatus]]) -> None:
        self._view = view
        self._statuses = statuses

    def html(self) -> str:
        """The page at /: what a person wants to see of Falco's alerts, without Grafana."""
        return live_page.page(self._view.state(), self._statuses(), self._view.keeps_recent_alerts)

    def data(self) -> dict[str, object]:
        """/api/live: the page's data, and its updating part already rendered."""
        state = self._view.state()
        statuses = self._statuses()
        keeps_recent = self._view.keeps_recent_alerts
        data: dict[str, object] = {
            "now": state.now,
            "minutes": [{"start": start, "by_priority": counts} for start, counts in state.minutes],
            "rows": [vars(row) for row in state.rows],
            "new_rules": [{"rule": rule, "first_seen": seen} for rule, seen in state.new_rules],
            "inputs": [
                {"name": status.name, "state": status.state, "healthy": status.healthy}
                for status in statuses
            ],
            "html": live_page.main_section(state, statuses, keeps_recent),
        }
        if keeps_recent:
            data["recent"] = [vars(alert) for alert in state.recent]
        return data
