"""EventCounter: one increment of `falco_events` per event, rendered by hand.

The counter is rendered here rather than by prometheus_client because its text
writer names a counter's HELP and TYPE lines `falco_events_total` while the
samples stay `falco_events`, which Prometheus then reads as untyped; the Go
exporter's users depend on `# TYPE falco_events counter`.

Per event the work is: build the label tuple, look it up, add one. Each series
keeps its rendered `falco_events{...} ` prefix from the moment it is created, so a
scrape is one string join however odd the label values are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from exporter.event import FalcoEvent
from exporter.exposition import escape_help, sample_prefix

METRIC_NAME = "falco_events"
METRIC_HELP = "Falco events seen by this exporter, by rule, priority and origin."

# The Go exporter's labels, in the order of the key tuple.
DEFAULT_LABELS: tuple[str, ...] = (
    "rule",
    "priority",
    "hostname",
    "source",
    "tags",
    "k8s_ns_name",
    "k8s_pod_name",
)

_PRIORITY_TEXT = tuple(str(number) for number in range(8))

LabelKey = tuple[str, ...]


def go_exporter_labels(event: FalcoEvent) -> LabelKey:
    """The Go exporter's label values for an event, in DEFAULT_LABELS order."""
    fields = event.output_fields
    priority = event.priority
    return (
        event.rule,
        _PRIORITY_TEXT[priority] if 0 <= priority < 8 else str(priority),
        event.hostname,
        event.source,
        "," + ",".join(event.tags) + ",",
        fields.get("k8s.ns.name", ""),
        fields.get("k8s.pod.name", ""),
    )


class Series:
    """One label set's count and its rendered sample prefix."""

    __slots__ = ("count", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.count = 0


class EventCounter:
    """Counts events into series keyed by their label values."""

    def __init__(
        self,
        label_names: Sequence[str] = DEFAULT_LABELS,
        label_values: Callable[[FalcoEvent], LabelKey] = go_exporter_labels,
    ) -> None:
        self._label_names = tuple(label_names)
        self._label_values = label_values
        self._series: dict[LabelKey, Series] = {}
        self._header = (
            f"# HELP {METRIC_NAME} {escape_help(METRIC_HELP)}\n# TYPE {METRIC_NAME} counter\n"
        )

    def add(self, event: FalcoEvent) -> None:
        """Count one event."""
        key = self._label_values(event)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = Series(
                sample_prefix(METRIC_NAME, zip(self._label_names, key, strict=True))
            )
        series.count += 1

    @property
    def series_count(self) -> int:
        """How many `falco_events` series exist now."""
        return len(self._series)

    def render(self) -> str:
        """The `falco_events` family in text format 0.0.4."""
        lines = [f"{series.prefix}{series.count}\n" for series in list(self._series.values())]
        return self._header + "".join(lines)
