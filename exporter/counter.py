"""EventCounter: one increment of `falco_events` per event, rendered by hand.

The counter is rendered here rather than by prometheus_client because its text
writer names a counter's HELP and TYPE lines `falco_events_total` while the
samples stay `falco_events`, which Prometheus then reads as untyped; the Go
exporter's users depend on `# TYPE falco_events counter`.

Per event the work is: build the label tuple, look it up in the producer's own
shard, add one. No lock, no clock. Only a series' first event takes the slow path:
register the series (its rendered `falco_events{...} ` prefix, its label values
interned), or fold it into an overflow series when the series limit is reached.
Series that stopped growing are found by comparing totals between sweeps, so the
TTL costs nothing per event either.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from exporter.event import Event
from exporter.exposition import escape_help, sample_prefix
from exporter.labels import LabelKey, LabelSet, build_label_set

METRIC_NAME = "falco_events"
METRIC_HELP = "Falco events seen by this exporter, by rule, priority and origin."
_FOLD_WARNING_INTERVAL = 60.0

EventSink = Callable[[Event], None]


@dataclass(frozen=True)
class Shard:
    """One producer's counts and the function that adds to them."""

    add: EventSink
    counts: dict[LabelKey, int]


@dataclass
class CardinalityStats:
    """What the series limit and TTL did, for the self-metrics."""

    evicted: int = 0
    folded: int = 0
    limit: int = 0
    ttl: float = 0.0


@dataclass
class _Seen:
    total: int
    changed_at: float


@dataclass
class _Sweep:
    """Per series: its total at the last sweep and when that total last changed."""

    seen: dict[LabelKey, _Seen] = field(default_factory=dict)


class EventCounter:
    """Counts events into series; every producer thread counts into a shard of its own."""

    def __init__(
        self,
        label_set: LabelSet | None = None,
        *,
        max_series: int = 0,
        series_ttl: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._labels = label_set or build_label_set()
        self._max_series = max_series
        self._clock = clock
        self._prefixes: dict[LabelKey, str] = {}
        self._overflow: set[LabelKey] = set()
        self._shards: list[dict[LabelKey, int]] = []
        self._retired: dict[LabelKey, int] = {}
        self._lock = threading.Lock()
        self._sweep = _Sweep()
        self._last_fold_warning = -_FOLD_WARNING_INTERVAL
        self.stats = CardinalityStats(limit=max_series, ttl=series_ttl)
        self._log = structlog.get_logger("counter")
        self._header = (
            f"# HELP {METRIC_NAME} {escape_help(METRIC_HELP)}\n# TYPE {METRIC_NAME} counter\n"
        )

    @property
    def label_names(self) -> tuple[str, ...]:
        """The labels of every falco_events series, in key order."""
        return self._labels.names

    def shard(self) -> Shard:
        """A shard with its own counting function; give each producer thread its own."""
        counts: dict[LabelKey, int] = {}
        label_values = self._labels.values
        admit = self._admit

        def add(event: Event) -> None:
            key = label_values(event)
            count = counts.get(key)
            if count is None:
                key = admit(key)
                counts[key] = counts.get(key, 0) + 1
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

    def _admit(self, key: LabelKey) -> LabelKey:
        """A key new to a shard: the registered key to count under, or its overflow key."""
        prefix = self._prefixes.get(key)
        if prefix is not None:
            return key
        with self._lock:
            if key in self._prefixes:
                return key
            if self._max_series and len(self._prefixes) - len(self._overflow) >= self._max_series:
                return self._fold(key)
            return self._register(key)

    def _register(self, key: LabelKey, *, overflow: bool = False) -> LabelKey:
        """Record a new series (lock held); label values are interned to share memory."""
        key = tuple(sys.intern(value) for value in key)
        self._prefixes[key] = sample_prefix(METRIC_NAME, zip(self._labels.names, key, strict=True))
        if overflow:
            self._overflow.add(key)
        return key

    def _fold(self, key: LabelKey) -> LabelKey:
        """Past the series limit: count the event in its overflow series (lock held)."""
        self.stats.folded += 1
        folded = self._labels.overflow_key(key)
        if folded not in self._prefixes:
            folded = self._register(folded, overflow=True)
        now = self._clock()
        if now - self._last_fold_warning >= _FOLD_WARNING_INTERVAL:
            self._last_fold_warning = now
            self._log.warning(
                "series limit reached; new series are counted in overflow series",
                max_series=self._max_series,
                events_folded=self.stats.folded,
            )
        return folded

    @property
    def series_count(self) -> int:
        """How many `falco_events` series exist now, overflow series included."""
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

    def expire_idle(self) -> int:
        """Remove series whose count has not grown for the TTL; returns how many went.

        Called at every scrape and periodically. A series is idle from the first sweep
        that saw its current total; the next sweep after the TTL removes it.
        """
        ttl = self.stats.ttl
        if not ttl:
            return 0
        now = self._clock()
        seen = self._sweep.seen
        idle: list[LabelKey] = []
        for key, total in self.totals().items():
            previous = seen.get(key)
            if previous is None or previous.total != total:
                seen[key] = _Seen(total, now)
            elif now - previous.changed_at >= ttl:
                idle.append(key)
        evicted = 0
        with self._lock:
            holders = [*self._shards, self._retired]
            for key in idle:
                # Counted again since the snapshot? Then it is not idle after all.
                current = sum(counts.get(key, 0) for counts in holders)
                if current != seen[key].total:
                    seen[key] = _Seen(current, now)
                    continue
                for counts in holders:
                    counts.pop(key, None)
                self._prefixes.pop(key, None)
                self._overflow.discard(key)
                del seen[key]
                evicted += 1
        self.stats.evicted += evicted
        return evicted

    def render(self) -> str:
        """The `falco_events` family in text format 0.0.4."""
        self.expire_idle()
        totals = self.totals()
        prefixes = self._prefixes
        lines = []
        for key, count in totals.items():
            prefix = prefixes.get(key)
            if prefix is None:  # counted again while being expired: register it anew
                with self._lock:
                    self._register(key)
                prefix = prefixes[key]
            lines.append(f"{prefix}{count}\n")
        return self._header + "".join(lines)
