"""What the live page shows, kept in memory with a fixed ceiling, and built in steps.

The live page (`/`) lets a person see the alert they just triggered without Prometheus or
Grafana. Nothing here runs per event: a sample every few seconds reads the counter's
totals (as a scrape does) and turns their growth into
- alerts per minute by priority, for the last hour: a ring of 60 buckets;
- the top rows (most recent, then largest), out of one per series, with the total;
- the rules seen for the first time since the exporter started: a bounded table in which
  a flood of junk rules of low priority cannot push out a new rule of higher severity.
Sampling and building the rows yield to the event loop every few thousand series, so a
page of 100,000 series never holds up Falco's posts. With --recent-alerts N, the last N
alerts themselves, output line included, are kept in a ring filled by the sink; they are
shown on the page only, never on /metrics.
"""

from __future__ import annotations

import asyncio
import heapq
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from exporter.core.counter import EventCounter
from exporter.core.event import Event, EventSink, priority_name
from exporter.core.labels import LabelKey

MINUTES = 60
TOP_ROWS = 200
_MAX_RULES = 2000
_STEP = 5000  # series handled between two yields to the event loop
NEW_RULE_SECONDS = 15 * 60
_UNKNOWN = 8


@dataclass
class Row:
    """One series as the table shows it."""

    rule: str
    priority: str
    namespace: str
    pod: str
    count: int
    last_seen: float


@dataclass
class RecentAlert:
    """One alert as Falco sent it; kept only with --recent-alerts."""

    time: float
    priority: str
    rule: str
    namespace: str
    pod: str
    output: str


@dataclass
class LiveState:
    """Everything the page shows, at one moment."""

    now: float
    minutes: list[tuple[float, list[int]]]  # (minute start, alerts per priority 0..7)
    rows: list[Row]  # the top rows
    new_rules: list[tuple[str, float]]  # (rule, first seen), most severe and newest first
    recent: list[RecentAlert] = field(default_factory=list)
    series: int = 0  # how many rows there are in all
    folded: int = 0  # events folded by the series limits so far


class LiveView:
    """Samples the counter into the page's history; the sink feeds the recent alerts."""

    def __init__(
        self,
        counter: EventCounter,
        recent_alerts: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._counter = counter
        self._clock = clock
        names = counter.label_names
        self._index = {name: names.index(name) for name in names}
        self._previous: dict[LabelKey, int] = {}
        self._last_seen: dict[LabelKey, float] = {}
        self._first_seen_rules: dict[str, tuple[int, float]] = {}  # rule: (severity, seen)
        self._rules_by_severity = [OrderedDict[str, None]() for _ in range(_UNKNOWN + 1)]
        self._minutes: deque[tuple[float, list[int]]] = deque(maxlen=MINUTES)
        self._recent: deque[RecentAlert] | None = (
            deque(maxlen=recent_alerts) if recent_alerts > 0 else None
        )
        self._lock = threading.Lock()

    @property
    def keeps_recent_alerts(self) -> bool:
        """True with --recent-alerts N > 0."""
        return self._recent is not None

    def recording(self, sink: EventSink) -> EventSink:
        """The sink, also keeping each alert in the recent ring (when that is on)."""
        recent = self._recent
        if recent is None:
            return sink
        clock = self._clock

        def record(event: Event) -> None:
            sink(event)
            fields = event.output_fields
            recent.append(
                RecentAlert(
                    clock(),
                    priority_name(event.priority),
                    event.rule,
                    fields.get("k8s.ns.name") or fields.get("k8smeta.ns.name") or "",
                    fields.get("k8s.pod.name") or fields.get("k8smeta.pod.name") or "",
                    str(getattr(event, "output", "")),
                )
            )

        return record

    def _value(self, key: LabelKey, label: str) -> str:
        index = self._index.get(label)
        return key[index] if index is not None else ""

    def sample(self) -> None:
        """Turn the counter's growth since the last sample into history, at once."""
        for _ in self._sample_steps():
            pass

    async def sample_in_steps(self) -> None:
        """The same, yielding to the event loop every few thousand series."""
        for _ in self._sample_steps():
            await asyncio.sleep(0)

    def _sample_steps(self) -> Iterator[None]:
        totals = self._counter.totals()
        with self._lock:
            now = self._clock()
            minute = now - now % 60
            if not self._minutes or self._minutes[-1][0] != minute:
                self._minutes.append((minute, [0] * 8))
            bucket = self._minutes[-1][1]
            previous = self._previous
        for index, (key, total) in enumerate(totals.items()):
            grown = total - previous.get(key, 0)
            if grown > 0:
                self._grew(key, grown, now, bucket)
            if index % _STEP == _STEP - 1:
                yield
        with self._lock:
            self._previous = totals
            for gone in [key for key in self._last_seen if key not in totals]:
                del self._last_seen[gone]  # expired or evicted

    def _grew(self, key: LabelKey, grown: int, now: float, bucket: list[int]) -> None:
        self._last_seen[key] = now
        priority = self._value(key, "priority")
        severity = int(priority) if priority.isdigit() and int(priority) < 8 else _UNKNOWN
        if severity < _UNKNOWN:
            bucket[severity] += grown
        rule = self._value(key, "rule")
        seen = self._first_seen_rules.get(rule)
        if seen is None:
            self._new_rule(rule, severity, now)
        elif severity < seen[0]:
            self._rules_by_severity[seen[0]].pop(rule, None)
            self._rules_by_severity[severity][rule] = None
            self._first_seen_rules[rule] = (severity, seen[1])

    def _new_rule(self, rule: str, severity: int, now: float) -> None:
        """Note a rule seen for the first time; when the table is full, the oldest of the
        least severe goes, unless everything kept is more severe than this one."""
        rules, buckets = self._first_seen_rules, self._rules_by_severity
        if len(rules) >= _MAX_RULES:
            least = max(level for level, bucket in enumerate(buckets) if bucket)
            if least < severity:
                return
            gone, _ = buckets[least].popitem(last=False)
            del rules[gone]
        rules[rule] = (severity, now)
        buckets[severity][rule] = None

    async def state(self) -> LiveState:
        """What the page shows now, from the last sample: the top rows, built in steps."""
        with self._lock:
            now = self._clock()
            previous = self._previous
            last_seen = dict(self._last_seen)
            first_minute = now - now % 60 - (MINUTES - 1) * 60
            by_minute = dict(self._minutes)
            rules = dict(self._first_seen_rules)
            recent = list(self._recent or ())[::-1]
        top: list[tuple[float, int, LabelKey]] = []
        for index, (key, count) in enumerate(previous.items()):
            item = (last_seen.get(key, 0.0), count, key)
            if len(top) < TOP_ROWS:
                heapq.heappush(top, item)
            elif item > top[0]:
                heapq.heapreplace(top, item)
            if index % _STEP == _STEP - 1:
                await asyncio.sleep(0)
        rows = [
            Row(
                self._value(key, "rule"),
                self._priority_text(self._value(key, "priority")),
                self._value(key, "k8s_ns_name"),
                self._value(key, "k8s_pod_name"),
                count,
                seen,
            )
            for seen, count, key in sorted(top, key=lambda item: (-item[0], -item[1]))
        ]
        minutes = [
            (start, list(by_minute.get(start, [0] * 8)))
            for start in (first_minute + 60 * n for n in range(MINUTES))
        ]
        new_rules = [
            (rule, seen)
            for rule, (_, seen) in sorted(rules.items(), key=lambda item: (item[1][0], -item[1][1]))
        ]
        folded = sum(self._counter.stats.folded.values())
        return LiveState(now, minutes, rows, new_rules, recent, len(previous), folded)

    @staticmethod
    def _priority_text(number: str) -> str:
        return priority_name(int(number)) if number.isdigit() else number
