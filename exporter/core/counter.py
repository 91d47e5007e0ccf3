"""EventCounter: one increment of `falco_events` per event, rendered by hand.

The counter is rendered here rather than by prometheus_client because its text
writer names a counter's HELP and TYPE lines `falco_events_total` while the
samples stay `falco_events`, which Prometheus then reads as untyped; the Go
exporter's users depend on `# TYPE falco_events counter`.

Per event the work is: build the label tuple, take the producer's own shard lock
(uncontended but for a sweep or a scrape copying that shard), add one. No clock. Only a
series' first event takes the slow path: register the series (its rendered
`falco_events{...} ` prefix, its label values interned), or fold it into an overflow
series when the series limit is reached. Series that stopped growing are found by
comparing totals between sweeps, so the TTL costs nothing per event either.

Lock order, everywhere: shard locks first (several: in the order of `_shards`), the
counter's lock last. Taking them the other way round deadlocks a producer that registers
a series against a sweep. Only the periodic sweep (`expire_idle`) removes series, and it
does so holding every shard lock, so no increment can land between its check and its
removal; `render` only reads.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import structlog

from exporter.core.event import Event
from exporter.core.labels import LabelKey, LabelSet, build_label_set
from exporter.exposition.text import escape_help, sample_prefix

METRIC_NAME = "falco_events"
METRIC_HELP = "Falco events seen by this exporter, by rule, priority and origin."
_FOLD_WARNING_INTERVAL = 60.0

EventSink = Callable[[Event], None]


@dataclass(frozen=True)
class Shard:
    """One producer's counts, the lock that guards them, and the function that adds to them."""

    add: EventSink
    counts: dict[LabelKey, int]
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class CardinalityStats:
    """What the series limit and TTL did, for the self-metrics."""

    evicted: int = 0
    evicted_events: int = 0
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
        self._shards: list[Shard] = []
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
        lock = threading.Lock()
        label_values = self._labels.values
        admit = self._admit

        def add(event: Event) -> None:
            key = label_values(event)
            with lock:
                count = counts.get(key)
                if count is None:
                    key = admit(key)  # takes the counter's lock: shard lock first, as everywhere
                    counts[key] = counts.get(key, 0) + 1
                else:
                    counts[key] = count + 1

        shard = Shard(add, counts, lock)
        with self._lock:
            self._shards.append(shard)
        return shard

    def retire(self, shard: Shard) -> None:
        """Fold a shard whose producer has stopped into the totals; its counts are kept."""
        with shard.lock, self._lock:
            self._shards = [held for held in self._shards if held is not shard]
            for key, count in shard.counts.items():
                self._retired[key] = self._retired.get(key, 0) + count
            shard.counts.clear()

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
        """Each series' count, summed over the shards (each copied under its own lock)."""
        with self._lock:
            shards = list(self._shards)
            totals = dict(self._retired)
        for shard in shards:
            with shard.lock:
                counts = shard.counts.copy()
            if not totals:
                totals = counts
                continue
            for key, count in counts.items():
                totals[key] = totals.get(key, 0) + count
        return totals

    def expire_idle(self) -> int:
        """Remove series whose count has not grown for the TTL; returns how many went.

        The periodic sweep calls it, never a scrape. A series is idle from the first sweep
        that saw its current total; the first sweep after the TTL removes it. Candidates are
        found without stopping the producers; the removal re-checks them holding every
        shard lock, so a series counted in the meantime stays, with nothing lost.
        """
        ttl = self.stats.ttl
        if not ttl:
            return 0
        now = self._clock()
        seen = self._sweep.seen
        totals = self.totals()
        idle: list[LabelKey] = []
        for key, total in totals.items():
            previous = seen.get(key)
            if previous is None or previous.total != total:
                seen[key] = _Seen(total, now)
            elif now - previous.changed_at >= ttl:
                idle.append(key)
        for key in [key for key in seen if key not in totals]:
            del seen[key]  # gone with a retired shard's reset, or never counted again
        if not idle:
            return 0
        with self._all_locks() as holders:
            evicted = 0
            for key in idle:
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
                self.stats.evicted_events += current
            self.stats.evicted += evicted
        return evicted

    @contextlib.contextmanager
    def _all_locks(self) -> Iterator[list[dict[LabelKey, int]]]:
        """Every shard lock, then the counter's: no count can change while held.

        A shard made between listing the shards and taking the counter's lock would be
        unlocked, so the list is checked again under the counter's lock, and the whole
        attempt repeated if it changed.
        """
        while True:
            with self._lock:
                shards = list(self._shards)
            with contextlib.ExitStack() as stack:
                for shard in shards:
                    stack.enter_context(shard.lock)
                stack.enter_context(self._lock)
                if self._shards == shards:
                    yield [*(shard.counts for shard in shards), self._retired]
                    return

    def render(self) -> str:
        """The `falco_events` family in text format 0.0.4; reads, never changes a series."""
        totals = self.totals()
        prefixes = self._prefixes
        lines = [self._header]  # one join, no second copy of a text that can be 13 MB
        for key, count in totals.items():
            prefix = prefixes.get(key)
            if prefix is not None:  # None: expired by a sweep since the totals were read
                lines.append(f"{prefix}{count}\n")
        return "".join(lines)
