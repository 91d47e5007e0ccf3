"""Self-metrics as plain values: families of samples, built when Prometheus scrapes.

Every part that reports metrics (an input, a listener, the counter's limits) adds samples
to the family of a FamilySpec, declared once where its meaning is owned. Two parts that
report the same family (every input reports `events_received`) add to one family, so the
scrape has one HELP and one TYPE line per name. Writing them as text is the exposition
layer's job; nothing here knows the format.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

PREFIX = "falco_exporter_"


class Kind(StrEnum):
    """The metric types the exporter writes."""

    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


@dataclass(frozen=True)
class FamilySpec:
    """A family's name (a counter's without `_total`), type, help text and label names
    (a histogram's without `le`)."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Histogram:
    """One histogram of a family: its label values, (upper bound, cumulative count) per
    bucket with +Inf last (its count), and the sum of what it observed."""

    values: tuple[str, ...]
    buckets: tuple[tuple[float, int], ...]
    sum: float


@dataclass
class MetricFamily:
    """A family and the samples added to it this scrape (a histogram family: histograms)."""

    spec: FamilySpec
    samples: list[tuple[tuple[str, ...], float]] = field(default_factory=list)
    histograms: list[Histogram] = field(default_factory=list)

    def add(self, values: Sequence[str], value: float) -> None:
        """One sample: its label values in the order of the spec's labels."""
        self._check(values, histogram=False)
        self.samples.append((tuple(values), value))

    def add_histogram(
        self, values: Sequence[str], buckets: Sequence[tuple[float, int]], total: float
    ) -> None:
        """One histogram: cumulative counts by upper bound, +Inf last, and the sum."""
        self._check(values, histogram=True)
        if not buckets or buckets[-1][0] != float("inf"):
            raise ValueError(f"{self.spec.name}: the last bucket must be +Inf")
        self.histograms.append(Histogram(tuple(values), tuple(buckets), total))

    def _check(self, values: Sequence[str], *, histogram: bool) -> None:
        if len(values) != len(self.spec.labels):
            raise ValueError(f"{self.spec.name}: {len(values)} label values for {self.spec.labels}")
        if histogram != (self.spec.kind is Kind.HISTOGRAM):
            raise ValueError(f"{self.spec.name} is a {self.spec.kind}")


class Families:
    """The families of one scrape, each created at its first use and then shared."""

    def __init__(self) -> None:
        self._by_name: dict[str, MetricFamily] = {}

    def family(self, spec: FamilySpec) -> MetricFamily:
        """The family of `spec`, empty at first; a different spec of the same name is a bug."""
        family = self._by_name.get(spec.name)
        if family is None:
            family = self._by_name[spec.name] = MetricFamily(spec)
        elif family.spec != spec:
            raise ValueError(f"{spec.name} declared twice, differently")
        return family

    def add(self, spec: FamilySpec, values: Sequence[str], value: float) -> None:
        """One sample of the family of `spec`."""
        self.family(spec).add(values, value)

    def add_histogram(
        self,
        spec: FamilySpec,
        values: Sequence[str],
        buckets: Sequence[tuple[float, int]],
        total: float,
    ) -> None:
        """One histogram of the family of `spec` (a HISTOGRAM)."""
        self.family(spec).add_histogram(values, buckets, total)

    def __iter__(self) -> Iterator[MetricFamily]:
        return iter(self._by_name.values())
