"""What the live page shows, kept in memory with a fixed ceiling.

The live page (`/`) lets a person see the alert they just triggered without Prometheus or
Grafana. Nothing here runs per event: a sample every few seconds reads the counter's
totals (as a scrape does) and turns their growth into
- alerts per minute by priority, for the last hour: a ring of 60 buckets;
- one row per series (bounded by --max-series) with its count and when it last grew;
- the rules seen for the first time since the exporter started (bounded).
With --recent-alerts N, the last N alerts themselves, output line included, are kept in a
ring filled by the sink; they are shown on the page only, never on /metrics.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from exporter.core.counter import EventCounter
from exporter.core.event import Event, EventSink, priority_name
from exporter.core.labels import LabelKey

MINUTES = 60
_MAX_RULES = 2000
NEW_RULE_SECONDS = 15 * 60


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
    rows: list[Row]
    new_rules: list[tuple[str, float]]  # (rule, first seen), newest first
    recent: list[RecentAlert] = field(default_factory=list)


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
        self._first_seen_rules: dict[str, float] = {}
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
        """Turn the counter's growth since the last sample into history."""
        with self._lock:
            now = self._clock()
            totals = self._counter.totals()
            minute = now - now % 60
            if not self._minutes or self._minutes[-1][0] != minute:
                self._minutes.append((minute, [0] * 8))
            bucket = self._minutes[-1][1]
            for key, total in totals.items():
                grown = total - self._previous.get(key, 0)
                if grown <= 0:
                    continue
                self._last_seen[key] = now
                priority = self._value(key, "priority")
                if priority.isdigit() and int(priority) < 8:
                    bucket[int(priority)] += grown
                rule = self._value(key, "rule")
                if rule not in self._first_seen_rules and len(self._first_seen_rules) < _MAX_RULES:
                    self._first_seen_rules[rule] = now
            self._previous = totals
            for gone in [key for key in self._last_seen if key not in totals]:
                del self._last_seen[gone]  # expired by --series-ttl

    def state(self) -> LiveState:
        """What the page shows now, after a fresh sample."""
        self.sample()
        with self._lock:
            now = self._clock()
            rows = [
                Row(
                    self._value(key, "rule"),
                    self._priority_text(self._value(key, "priority")),
                    self._value(key, "k8s_ns_name"),
                    self._value(key, "k8s_pod_name"),
                    count,
                    self._last_seen.get(key, 0.0),
                )
                for key, count in self._previous.items()
            ]
            rows.sort(key=lambda row: (-row.last_seen, -row.count, row.rule))
            first_minute = now - now % 60 - (MINUTES - 1) * 60
            by_minute = dict(self._minutes)
            minutes = [
                (start, list(by_minute.get(start, [0] * 8)))
                for start in (first_minute + 60 * n for n in range(MINUTES))
            ]
            new_rules = sorted(
                ((rule, seen) for rule, seen in self._first_seen_rules.items()),
                key=lambda item: -item[1],
            )
            recent = list(self._recent or ())[::-1]
        return LiveState(now, minutes, rows, new_rules, recent)

    @staticmethod
    def _priority_text(number: str) -> str:
        return priority_name(int(number)) if number.isdigit() else number
