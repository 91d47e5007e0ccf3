"""Where a new falco_events series goes: its own series, a folded one, or room made for it.

Every label value comes from what Falco, or whoever can post to the HTTP input, sends; so
the number of series and their size are bounded whatever label is flooded, and a flood
must not hide where a real alert happened (docs/cardinality.md says what an attacker can
and cannot hide):
- every value is cut to `max_label_length` characters, with a visible marker;
- one rule, one host or one pod may hold at most its budget of series; past it, that
  rule's (host's, pod's) new series fold into one per priority that keeps the rule (the
  host, the pod) and nothing else, so a flood confined to one of them folds only itself
  (a pod's k8s_workload is not kept: a forged post could vary it; with k8s_pod_name
  dropped, the budget is the workload's);
- at the series limit, the least recently updated series of a lower severity is evicted
  to make room (its events stay accounted), so junk of low priority cannot fold a
  Warning; only when nothing of lower severity is left is the new series folded, outside
  the limit: into one per rule and priority while there are few of those (at most 1% of
  the limit, or 10: pods churning past the limit keep their rule), else into one per
  priority (a flood of rule names cannot make more than 8 of those).

The Admission decides under the counter's locks (core/counter.py), only for a series'
first event; nothing here runs per event otherwise.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from enum import StrEnum

from exporter.core.labels import OVERFLOW_VALUE, PRIORITY_NAME_LABEL, WORKLOAD_LABEL, LabelKey

TRUNCATED = "…[truncated]"
_LOWEST = 8  # where a key without a known priority (0 to 7) sorts: the first evicted
# Outside the limit, at most a hundredth of it (and at least 10) may be overflow series of a
# rule and priority.
_RULE_OVERFLOW_SHARE = 100
_RULE_OVERFLOWS_AT_LEAST = 10


@dataclass(frozen=True)
class SeriesLimits:
    """The bounds on falco_events' series; 0 turns a bound off."""

    max_series: int = 0
    per_rule: int = 0
    per_host: int = 0
    per_pod: int = 0
    max_label_length: int = 0
    ttl: float = 0.0


class Fold(StrEnum):
    """Why an event was counted in a folded series."""

    RULE = "rule"  # its rule holds its budget of series
    HOST = "host"  # its host holds its budget
    POD = "pod"  # its pod (without k8s_pod_name: its workload) holds its budget
    CAPACITY = "capacity"  # the series limit is reached, with nothing of lower severity


class Removal(StrEnum):
    """Why a series was removed."""

    TTL = "ttl"  # it had not grown for --series-ttl
    ROOM = "room"  # evicted to make room for a series of higher severity


@dataclass(frozen=True)
class Placement:
    """Where a new series goes: the key to count under, a series to evict first, why the
    key was folded (None: the series is its own), and whether it is outside the limit."""

    key: LabelKey
    victim: LabelKey | None = None
    fold: Fold | None = None
    outside_limit: bool = False


@dataclass
class CardinalityStats:
    """What the limits did, for the self-metrics."""

    limit: int = 0
    ttl: float = 0.0
    folded: Counter[Fold] = field(default_factory=Counter)
    evicted: Counter[Removal] = field(default_factory=Counter)
    evicted_events: Counter[Removal] = field(default_factory=Counter)
    truncated: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.folded.update(dict.fromkeys(Fold, 0))
        self.evicted.update(dict.fromkeys(Removal, 0))
        self.evicted_events.update(dict.fromkeys(Removal, 0))


class Admission:
    """The registered series, their budgets and their recency; decides each newcomer."""

    def __init__(self, names: tuple[str, ...], limits: SeriesLimits) -> None:
        self._names = names
        self._limits = limits
        position = {name: index for index, name in enumerate(names)}
        self._priority = position.get("priority")
        priority = {position[n] for n in ("priority", PRIORITY_NAME_LABEL) if n in position}
        self._keep_priority = frozenset(priority)
        self._keep_rule = frozenset(priority | {position["rule"]}) if "rule" in position else None
        # (why, the scope's positions, its budget, series held per scope value)
        self._budgets: list[tuple[Fold, tuple[int, ...], int, Counter[LabelKey]]] = []
        # Without k8s_pod_name, a pod's budget is its workload's (--workload-label).
        pod = "k8s_pod_name" if "k8s_pod_name" in position else WORKLOAD_LABEL
        for fold, labels, budget in (
            (Fold.RULE, ("rule",), limits.per_rule),
            (Fold.HOST, ("hostname",), limits.per_host),
            (Fold.POD, ("k8s_ns_name", pod), limits.per_pod),
        ):
            if budget and all(label in position for label in labels):
                scope = tuple(position[label] for label in labels)
                self._budgets.append((fold, scope, budget, Counter()))
        self.series: dict[LabelKey, int] = {}  # every registered key: its priority
        self._outside: set[LabelKey] = set()  # overflow series, outside the limit
        self._rule_overflows = 0
        self._recency = [OrderedDict[LabelKey, None]() for _ in range(_LOWEST + 1)]

    def truncated(self, key: LabelKey) -> tuple[LabelKey, tuple[str, ...]]:
        """The key with every value cut to the length limit, and the labels that were cut."""
        limit = self._limits.max_label_length
        if not limit or max(map(len, key), default=0) <= limit:
            return key, ()
        keep = limit - len(TRUNCATED)
        cut = tuple(
            name for name, value in zip(self._names, key, strict=True) if len(value) > limit
        )
        values = tuple(value if len(value) <= limit else value[:keep] + TRUNCATED for value in key)
        return values, cut

    def place(self, key: LabelKey) -> Placement:
        """Where a key that is not registered goes; changes nothing."""
        for fold, scope, budget, held in self._budgets:
            value = tuple(key[index] for index in scope)
            if OVERFLOW_VALUE not in value and held[value] >= budget:
                kept = frozenset(scope) | self._keep_priority
                folded = _keeping(key, kept)
                if folded in self.series:
                    return Placement(folded, fold=fold)
                return self._with_room(folded, fold)
        return self._with_room(key, None)

    def _with_room(self, key: LabelKey, fold: Fold | None) -> Placement:
        limit = self._limits.max_series
        if not limit or len(self.series) - len(self._outside) < limit:
            return Placement(key, fold=fold)
        victim = self._lower(self.priority_of(key))
        if victim is not None:
            return Placement(key, victim=victim, fold=fold)
        by_rule = _keeping(key, self._keep_rule) if self._keep_rule is not None else None
        room = max(limit // _RULE_OVERFLOW_SHARE, _RULE_OVERFLOWS_AT_LEAST)
        if by_rule is not None and (by_rule in self._outside or self._rule_overflows < room):
            return Placement(by_rule, fold=Fold.CAPACITY, outside_limit=True)
        return Placement(_keeping(key, self._keep_priority), fold=Fold.CAPACITY, outside_limit=True)

    def _lower(self, priority: int) -> LabelKey | None:
        """The least recently updated series of the lowest severity below `priority`."""
        for severity in range(_LOWEST, priority, -1):
            if self._recency[severity]:
                return next(iter(self._recency[severity]))
        return None

    def priority_of(self, key: LabelKey) -> int:
        """The key's priority number, or the lowest severity when it has none."""
        if self._priority is None:
            return _LOWEST
        text = key[self._priority]
        return int(text) if text.isdigit() and int(text) < _LOWEST else _LOWEST

    def register(self, key: LabelKey, placement: Placement) -> None:
        """Record a new series; within the limit, as the most recently updated of its kind."""
        priority = self.priority_of(key)
        self.series[key] = priority
        if placement.outside_limit:
            self._outside.add(key)
            self._rule_overflows += key != _keeping(key, self._keep_priority)
            return
        self._recency[priority][key] = None
        self._budget(key, 1)

    def forget(self, key: LabelKey) -> None:
        """A series was removed (evicted, or expired)."""
        priority = self.series.pop(key, None)
        if priority is None:
            return
        if key in self._outside:
            self._outside.discard(key)
            self._rule_overflows -= key != _keeping(key, self._keep_priority)
            return
        self._recency[priority].pop(key, None)
        self._budget(key, -1)

    def _budget(self, key: LabelKey, change: int) -> None:
        for _, scope, _, held in self._budgets:
            value = tuple(key[index] for index in scope)
            if OVERFLOW_VALUE not in value:
                held[value] += change
                if held[value] <= 0:
                    del held[value]

    def touched(self, key: LabelKey) -> None:
        """The series grew since the last sweep: now the most recently updated of its kind."""
        priority = self.series.get(key)
        if priority is not None and key in self._recency[priority]:
            self._recency[priority].move_to_end(key)


def _keeping(key: LabelKey, kept: frozenset[int]) -> LabelKey:
    """The key with every value but those at `kept` replaced by OVERFLOW_VALUE."""
    return tuple(value if index in kept else OVERFLOW_VALUE for index, value in enumerate(key))
