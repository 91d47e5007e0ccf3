"""EventCounter: one increment of `falco_events` per event, on every producer thread.

Per event the work is: build the label tuple, take the producer's own shard lock
(uncontended but for a sweep or a scrape copying that shard), add one. No clock. Only a
series' first event takes the slow path: register the series (its label values interned),
or fold it into an overflow series when the series limit is reached. Series that stopped
growing are found by comparing totals between sweeps, so the TTL costs nothing per event
either. How the series are written out is the exposition layer's business
(exporter/exposition/falco_events.py); the counter only counts.

Lock order, everywhere: shard locks first (several: in the order of `_shards`), the
counter's lock last. Taking them the other way round deadlocks a producer that registers
a series against a sweep. Only the periodic sweep (`expire_idle`) removes series, and it
does so holding every shard lock, so no increment can land between its check and its
removal; `totals` only reads.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from exporter.core.event import Event, EventSink
from exporter.core.labels import LabelKey, LabelSet, build_label_set

# Called, with the counter's lock held, each time an event is folded: (limit, folded so far).
FoldObserver = Callable[[int, int], None]


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


class EventCounter:
    """Counts events into series; every producer thread counts into a shard of its own."""

    def __init__(
        self,
        label_set: LabelSet | None = None,
        *,
        max_series: int = 0,
        series_ttl: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        on_fold: FoldObserver | None = None,
    ) -> None:
        """`on_fold` hears of every folded event (to log it, rate-limited, elsewhere)."""
        self._labels = label_set or build_label_set()
        self._max_series = max_series
        self._clock = clock
        self._on_fold = on_fold
        self._series: set[LabelKey] = set()
        self._overflow: set[LabelKey] = set()
        self._shards: list[Shard] = []
        self._retired: dict[LabelKey, int] = {}
        self._lock = threading.Lock()
        self._seen: dict[LabelKey, _Seen] = {}  # per series, as the last sweep saw it
        self.stats = CardinalityStats(limit=max_series, ttl=series_ttl)

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
        if key in self._series:
            return key
        with self._lock:
            if key in self._series:
                return key
            if self._max_series and len(self._series) - len(self._overflow) >= self._max_series:
                return self._fold(key)
            return self._register(key)

    def _register(self, key: LabelKey, *, overflow: bool = False) -> LabelKey:
        """Record a new series (lock held); label values are interned to share memory."""
        key = tuple(sys.intern(value) for value in key)
        self._series.add(key)
        if overflow:
            self._overflow.add(key)
        return key

    def _fold(self, key: LabelKey) -> LabelKey:
        """Past the series limit: count the event in its overflow series (lock held)."""
        self.stats.folded += 1
        folded = self._labels.overflow_key(key)
        if folded not in self._series:
            folded = self._register(folded, overflow=True)
        if self._on_fold is not None:
            self._on_fold(self._max_series, self.stats.folded)
        return folded

    @property
    def series_count(self) -> int:
        """How many `falco_events` series exist now, overflow series included."""
        return len(self._series)

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
        seen = self._seen
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
                self._series.discard(key)
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
