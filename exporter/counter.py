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

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from exporter.event import Event
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

_PRIORITY_TEXT = {number: str(number) for number in range(8)}

LabelKey = tuple[str, ...]


def go_exporter_labels(event: Event) -> LabelKey:
    """The Go exporter's label values for an event, in DEFAULT_LABELS order."""
    fields = event.output_fields
    priority = event.priority
    return (
        event.rule,
        _PRIORITY_TEXT.get(priority) or str(priority),
        event.hostname,
        event.source,
        f",{','.join(event.tags)},",
        fields.get("k8s.ns.name", ""),
        fields.get("k8s.pod.name", ""),
    )


EventSink = Callable[[Event], None]


@dataclass(frozen=True)
class Shard:
    """One producer's counts and the function that adds to them."""

    add: EventSink
    counts: dict[LabelKey, int]


class EventCounter:
    """Counts events into series keyed by their label values.

    Every producer (a reader thread, the HTTP input) gets its own sink with its own
    dict of counts, so increments need no lock and never contend with each other or
    with a scrape; a scrape sums the shards. Only a series' first event takes the lock,
    to register the series and its rendered prefix once.
    """

    def __init__(
        self,
        label_names: Sequence[str] = DEFAULT_LABELS,
        label_values: Callable[[Event], LabelKey] = go_exporter_labels,
    ) -> None:
        self._label_names = tuple(label_names)
        self._label_values = label_values
        self._prefixes: dict[LabelKey, str] = {}
        self._shards: list[dict[LabelKey, int]] = []
        self._retired: dict[LabelKey, int] = {}
        self._lock = threading.Lock()
        self._header = (
            f"# HELP {METRIC_NAME} {escape_help(METRIC_HELP)}\n# TYPE {METRIC_NAME} counter\n"
        )

    def shard(self) -> Shard:
        """A shard with its own counting function; give each producer thread its own."""
        counts: dict[LabelKey, int] = {}
        label_values = self._label_values
        register = self._register

        def add(event: Event) -> None:
            key = label_values(event)
            count = counts.get(key)
            if count is None:
                register(key)
                counts[key] = 1
            else:
                counts[key] = count + 1

        shard = Shard(add, counts)
        with self._lock:
            self._shards.append(shard.counts)
        return shard

    def retire(self, shard: Shard) -> None:
        """Fold a shard whose producer has stopped into the totals; its counts are kept."""
        with self._lock:
            self._shards = [counts for counts in self._shards if counts is not shard.counts]
            for key, count in shard.counts.items():
                self._retired[key] = self._retired.get(key, 0) + count

    def _register(self, key: LabelKey) -> None:
        if key in self._prefixes:
            return
        prefix = sample_prefix(METRIC_NAME, zip(self._label_names, key, strict=True))
        with self._lock:
            self._prefixes.setdefault(key, prefix)

    @property
    def series_count(self) -> int:
        """How many `falco_events` series exist now."""
        return len(self._prefixes)

    def totals(self) -> dict[LabelKey, int]:
        """Each series' count, summed over the shards."""
        with self._lock:
            shards = list(self._shards)
            totals = dict(self._retired)
        if not totals and len(shards) == 1:
            return dict(shards[0])
        for shard in shards:
            for key, count in shard.copy().items():
                totals[key] = totals.get(key, 0) + count
        return totals

    def render(self) -> str:
        """The `falco_events` family in text format 0.0.4."""
        totals = self.totals()
        prefixes = self._prefixes
        lines = [f"{prefixes[key]}{count}\n" for key, count in totals.items()]
        return self._header + "".join(lines)
