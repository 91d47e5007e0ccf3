"""EventCounter: one increment of `falco_events` per event, on every producer thread.

Per event the work is: build the label tuple, take the producer's own shard lock
(uncontended but for a sweep or a scrape copying that shard), add one. No clock. Only a
series' first event in a shard takes the slow path: the cardinality policy places it
(cardinality.py: its own series, a folded one, or room made by evicting another), holding
every lock, so that no increment lands on a series while it is evicted. Series that
stopped growing are found by comparing totals between sweeps, so the TTL, and the recency
that eviction needs, cost nothing per event either. How the series are written out is the
exposition layer's business (exporter/exposition/falco_events.py); the counter only counts.

Lock order, everywhere: shard locks first (several: in the order of `_shards`), the
counter's lock last. The slow path holds no shard lock when it takes them all; it then
counts under its own shard lock only if the series it was given is still registered (an
eviction in between sends it round again). Only the slow path and the periodic sweep
remove series, each holding every lock; `totals` only reads.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from exporter.core.cardinality import (
    Admission,
    CardinalityStats,
    Fold,
    Placement,
    Removal,
    SeriesLimits,
)
from exporter.core.event import Event, EventSink
from exporter.core.event_delay import EventDelays
from exporter.core.labels import LabelKey, LabelSet, build_label_set

# Called, with the counter's locks held, for each folded event: (why, the limits).
FoldObserver = Callable[[Fold, SeriesLimits], None]


@dataclass(frozen=True)
class Shard:
    """One producer's counts, the lock that guards them, and the function that adds to them."""

    add: EventSink
    counts: dict[LabelKey, int]
    lock: threading.Lock = field(default_factory=threading.Lock)


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
        limits: SeriesLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_fold: FoldObserver | None = None,
        delays: EventDelays | None = None,
    ) -> None:
        """`on_fold` hears of every folded event (to log it, rate-limited, elsewhere).

        `delays` holds how late the counted events arrived, per input: the inputs observe
        into it as they count (inputs/assemble.py), and it is scraped with the counter's
        limits (core/event_delay.py).
        """
        self.delays = delays or EventDelays()
        self._labels = label_set or build_label_set()
        self.limits = limits or SeriesLimits()
        self._clock = clock
        self._on_fold = on_fold
        self.stats = CardinalityStats(limit=self.limits.max_series, ttl=self.limits.ttl)
        self._admission = Admission(self._labels.names, self.limits)
        self._series = self._admission.series  # read without a lock on the fast path
        self._shards: list[Shard] = []
        self._retired: dict[LabelKey, int] = {}
        self._lock = threading.Lock()
        self._seen: dict[LabelKey, _Seen] = {}  # per series, as the last sweep saw it

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
        series = self._series

        def add(event: Event) -> None:
            key = label_values(event)
            with lock:
                count = counts.get(key)
                if count is not None:
                    counts[key] = count + 1
                    return
            while True:  # the slow path: a series new to this shard
                placed = admit(key)
                with lock:
                    if placed in series:  # not evicted since it was placed
                        counts[placed] = counts.get(placed, 0) + 1
                        return

        shard = Shard(add, counts, lock)
        with self._lock:
            self._shards.append(shard)
        return shard

    def restore(self, totals: Mapping[LabelKey, int]) -> None:
        """Start from counts carried over a restart (the file input's checkpoint: what the
        last scrape served). Each series is placed by the policy, as its first event would
        be, so the limits hold; call it before any input counts."""
        for raw, count in totals.items():
            placed = self._admit(raw)
            with self._lock:
                self._retired[placed] = self._retired.get(placed, 0) + count

    def retire(self, shard: Shard) -> None:
        """Fold a shard whose producer has stopped into the totals; its counts are kept."""
        with shard.lock, self._lock:
            self._shards = [held for held in self._shards if held is not shard]
            for key, count in shard.counts.items():
                self._retired[key] = self._retired.get(key, 0) + count
            shard.counts.clear()

    def _admit(self, raw: LabelKey) -> LabelKey:
        """The key to count a series' first event (in a shard) under, placed by the policy.

        A key that goes to a series already there needs only the counter's lock; one that
        must be registered, or evict another, takes every lock.
        """
        if raw in self._series:
            return raw
        admission = self._admission
        with self._lock:
            key, cut = admission.truncated(raw)
            placement = Placement(key) if key in self._series else admission.place(key)
            if placement.victim is None and placement.key in self._series:
                self._record(cut, placement.fold)
                return placement.key
        with self._all_locks() as holders:
            key, cut = admission.truncated(raw)
            placement = Placement(key) if key in self._series else admission.place(key)
            if placement.victim is not None:
                self._remove(placement.victim, holders, Removal.ROOM)
            placed = placement.key
            if placed not in self._series:
                placed = tuple(sys.intern(value) for value in placed)
                admission.register(placed, placement)
            self._record(cut, placement.fold)
            return placed

    def _record(self, cut: tuple[str, ...], fold: Fold | None) -> None:
        """Count what the placement did (the counter's lock held)."""
        for name in cut:
            self.stats.truncated[name] += 1
        if fold is not None:
            self.stats.folded[fold] += 1
            if self._on_fold is not None:
                self._on_fold(fold, self.limits)

    def _remove(self, key: LabelKey, holders: list[dict[LabelKey, int]], why: Removal) -> None:
        """Take a series out of every shard (every lock held); its events stay accounted."""
        events = sum(counts.pop(key, 0) for counts in holders)
        self._admission.forget(key)  # its sweep record goes at the next sweep (that thread's)
        self.stats.evicted[why] += 1
        self.stats.evicted_events[why] += events

    @property
    def series_count(self) -> int:
        """How many `falco_events` series exist now, folded series included."""
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

    def sweep(self) -> int:
        """Note which series grew (their recency, for eviction) and remove those that have
        not grown for the TTL; returns how many went.

        The periodic sweep calls it, never a scrape. A series is idle from the first sweep
        that saw its current total; the first sweep after the TTL removes it. Candidates are
        found without stopping the producers; the removal re-checks them holding every
        lock, so a series counted in the meantime stays, with nothing lost.
        """
        ttl, now, seen = self.limits.ttl, self._clock(), self._seen  # the sweep's alone
        totals = self.totals()
        grown: list[LabelKey] = []
        idle: list[LabelKey] = []
        for key, total in totals.items():
            previous = seen.get(key)
            if previous is None or previous.total != total:
                seen[key] = _Seen(total, now)
                grown.append(key)
            elif ttl and now - previous.changed_at >= ttl:
                idle.append(key)
        for key in [key for key in seen if key not in totals]:
            del seen[key]  # gone with a retired shard's reset, or evicted
        with self._lock:
            for key in grown:
                self._admission.touched(key)
        if not idle:
            return 0
        evicted = 0
        with self._all_locks() as holders:
            for key in idle:
                current = sum(counts.get(key, 0) for counts in holders)
                known = seen.get(key)
                if known is None or current != known.total:
                    if known is not None:
                        seen[key] = _Seen(current, now)
                    continue
                self._remove(key, holders, Removal.TTL)
                del seen[key]
                evicted += 1
        return evicted

    expire_idle = sweep  # what the TTL's callers have called it

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
