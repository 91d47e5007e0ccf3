"""Every family of the exporter's own (prefix falco_exporter_), gathered at scrape time.

The parts keep plain numbers; each reports its own families (an input its targets and
refusals, a listener its connections, the counter's limits here) when Prometheus scrapes,
so the per-event path never touches a lock. Rendered here, with the process' own metrics,
rather than by a client library: it would be the largest import of the HTTP-only sidecar,
which runs on every node.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable, Sequence

from exporter import __version__
from exporter.core.counter import EventCounter
from exporter.core.metrics import PREFIX, Families, FamilySpec, Kind
from exporter.exposition.process_metrics import collect_process
from exporter.exposition.text import render_families

# A part that adds its families to a scrape: an input, a listener, the held certificates.
Collect = Callable[[Families], None]

_SERIES = FamilySpec(
    f"{PREFIX}falco_events_series", Kind.GAUGE, "Current number of falco_events series."
)
_LIMIT = FamilySpec(f"{PREFIX}series_limit", Kind.GAUGE, "The --max-series setting (0: no limit).")
_EVICTED = FamilySpec(
    f"{PREFIX}series_evicted",
    Kind.COUNTER,
    "falco_events series removed, by reason: ttl (idle for --series-ttl), room (evicted for "
    "a series of higher priority at --max-series).",
    ("reason",),
)
_EVICTED_EVENTS = FamilySpec(
    f"{PREFIX}series_evicted_events",
    Kind.COUNTER,
    "Events that were counted in falco_events series since removed, by reason.",
    ("reason",),
)
_FOLDED = FamilySpec(
    f"{PREFIX}events_folded",
    Kind.COUNTER,
    "Events counted in a folded series, by reason: rule, host or pod (its budget of series "
    "was full), capacity (--max-series reached, nothing of lower priority to evict).",
    ("reason",),
)
_TRUNCATED = FamilySpec(
    f"{PREFIX}label_values_truncated",
    Kind.COUNTER,
    "Label values cut to --max-label-length, by label (counted per event).",
    ("label",),
)
_BUILD = FamilySpec(
    f"{PREFIX}build_info",
    Kind.GAUGE,
    "Always 1; labels say which falco-exporter build runs.",
    ("version", "python_version", "grpc_version"),
)


class SelfMetrics:
    """The text of every self-metric family, from the parts that report them."""

    def __init__(self, counter: EventCounter, parts: Sequence[Collect]) -> None:
        self._counter = counter
        self._parts = tuple(parts)

    def collect(self, families: Families) -> None:
        """Every part's families, then the events' delays, the series limits and the build."""
        for collect in self._parts:
            collect(families)
        self._counter.delays.collect(families)
        stats = self._counter.stats
        families.add(_SERIES, (), self._counter.series_count)
        families.add(_LIMIT, (), stats.limit)
        for spec, counts in (
            (_EVICTED, stats.evicted),
            (_EVICTED_EVENTS, stats.evicted_events),
            (_FOLDED, stats.folded),
        ):
            for reason, count in sorted(counts.items()):
                families.add(spec, (reason,), count)
        truncated = families.family(_TRUNCATED)
        for label in self._counter.label_names:
            truncated.add((label,), stats.truncated[label])
        families.add(_BUILD, (__version__, platform.python_version(), _loaded_version("grpc")), 1)

    def render(self) -> str:
        """The self-metrics, then the process' own, as text."""
        families = Families()
        self.collect(families)
        collect_process(families)
        return render_families(families)


def _loaded_version(module: str) -> str:
    """The version of a library this process has loaded, "" where it has not: the HTTP-only
    modes never load grpc, and asking must not load it."""
    return str(getattr(sys.modules.get(module), "__version__", ""))
