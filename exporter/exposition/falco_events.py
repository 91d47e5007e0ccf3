"""`falco_events` as text: the one family the Go exporter's users depend on.

Rendered here rather than by prometheus_client because its text writer names a counter's
HELP and TYPE lines `falco_events_total` while the samples stay `falco_events`, which
Prometheus then reads as untyped; dashboards and alerts need `# TYPE falco_events counter`
(docs/falco-wire-contract.md#go-exporter-metric).

Each series' `falco_events{...} ` prefix is made once, at its first render, and kept:
at 100k series a render is then one dict look-up and one small string per series. A scrape
renders in steps of a few thousand series, yielding to the event loop between them, so
that a scrape of 100k series never holds up Falco's posts for long (docs/performance.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping

from exporter.core.counter import EventCounter
from exporter.core.labels import LabelKey
from exporter.exposition.text import escape_help, sample_prefix

METRIC_NAME = "falco_events"
_STEP = 5000  # series rendered between two yields
METRIC_HELP = "Falco events seen by this exporter, by rule, priority and origin."


class FalcoEventsText:
    """Renders a counter's series; renders only, on the event loop's thread."""

    def __init__(self, counter: EventCounter) -> None:
        self._counter = counter
        self._names = counter.label_names
        self._prefixes: dict[LabelKey, str] = {}
        self._header = (
            f"# HELP {METRIC_NAME} {escape_help(METRIC_HELP)}\n# TYPE {METRIC_NAME} counter\n"
        )

    def render(self) -> str:
        """The family in text format 0.0.4, one line per series, at once."""
        return b"".join(part for part in self._parts()).decode()

    async def render_in_steps(self, totals: Mapping[LabelKey, int] | None = None) -> list[bytes]:
        """The same as UTF-8 parts of a few thousand series, yielding between them; of
        `totals` if given (the very counts a checkpoint committed), else the counter's now."""
        parts = []
        for part in self._parts(totals):
            parts.append(part)
            await asyncio.sleep(0)
        return parts

    def _parts(self, given: Mapping[LabelKey, int] | None = None) -> Iterator[bytes]:
        totals = self._counter.totals() if given is None else given
        prefixes = self._prefixes
        names = self._names
        lines = [self._header]
        for index, (key, count) in enumerate(totals.items()):
            prefix = prefixes.get(key)
            if prefix is None:
                prefix = prefixes[key] = sample_prefix(METRIC_NAME, zip(names, key, strict=True))
            lines.append(f"{prefix}{count}\n")
            if index % _STEP == _STEP - 1:
                yield "".join(lines).encode("utf-8", "replace")
                lines = []
        yield "".join(lines).encode("utf-8", "replace")
        if len(prefixes) > len(totals):  # series expired since the last render
            self._prefixes = {key: prefixes[key] for key in totals if key in prefixes}
