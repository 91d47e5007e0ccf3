"""The label set of `falco_events`: fixed once at start-up, then one function per event.

The default is exactly the Go exporter's (docs/falco-wire-contract.md#go-exporter-metric).
Users may drop labels, add `priority_name`, add `k8s_workload` (core/workload.py) and add
labels from output fields. Since the set is fixed before the first event, no event can
produce a series with another set of labels.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from exporter.core.event import Event, priority_name
from exporter.core.workload import WorkloadOf

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
PRIORITY_NAME_LABEL = "priority_name"
WORKLOAD_LABEL = "k8s_workload"  # --workload-label: the pod's Deployment, DaemonSet, ...
# What a folded series has in place of the values it does not keep (core/cardinality.py).
OVERFLOW_VALUE = "__overflow__"
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

LabelKey = tuple[str, ...]
LabelValues = Callable[[Event], LabelKey]

_PRIORITY_TEXT = {number: str(number) for number in range(8)}


def priority_label(event: Event) -> str:
    """The priority as the Go exporter wrote it: its number, "0" to "7"."""
    priority = event.priority
    return _PRIORITY_TEXT.get(priority) or str(priority)


def tags_label(event: Event) -> str:
    """The tags joined by commas and wrapped in them: ",container,shell,"; none: ",,"."""
    return f",{','.join(event.tags)},"


def namespace_label(event: Event) -> str:
    """k8s.ns.name (the container plugin's), else the k8smeta plugin's, else ""."""
    fields = event.output_fields
    value = fields.get("k8s.ns.name")
    return value if value is not None else fields.get("k8smeta.ns.name", "")


def pod_label(event: Event) -> str:
    """k8s.pod.name (the container plugin's), else the k8smeta plugin's, else ""."""
    fields = event.output_fields
    value = fields.get("k8s.pod.name")
    return value if value is not None else fields.get("k8smeta.pod.name", "")


def go_exporter_labels(event: Event) -> LabelKey:
    """The Go exporter's label values, in DEFAULT_LABELS order: the default hot path."""
    return (
        event.rule,
        priority_label(event),
        event.hostname,
        event.source,
        tags_label(event),
        namespace_label(event),
        pod_label(event),
    )


_BUILTIN: dict[str, Callable[[Event], str]] = {
    "rule": lambda e: e.rule,
    "priority": priority_label,
    "hostname": lambda e: e.hostname,
    "source": lambda e: e.source,
    "tags": tags_label,
    "k8s_ns_name": namespace_label,
    "k8s_pod_name": pod_label,
    PRIORITY_NAME_LABEL: lambda e: priority_name(e.priority),
}


def label_name_problem(name: str, taken: Sequence[str]) -> str | None:
    """Why `name` cannot be a label of falco_events, or None when it can."""
    if not LABEL_NAME.fullmatch(name):
        return f"{name!r} is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
    if name.startswith("__"):
        return f"{name!r} starts with '__', which Prometheus reserves"
    if name in taken:
        return f"{name!r} is already a label of falco_events"
    return None


@dataclass(frozen=True)
class LabelSet:
    """Names in key order, and the function giving an event's values."""

    names: tuple[str, ...]
    values: LabelValues


def build_label_set(
    drop: Sequence[str] = (),
    extra: Mapping[str, str] | None = None,
    with_priority_name: bool = False,
    with_workload: bool = False,
) -> LabelSet:
    """The label set from the configuration (already validated by config)."""
    extra = dict(extra or {})
    names = [name for name in DEFAULT_LABELS if name not in drop]
    if with_priority_name:
        names.append(PRIORITY_NAME_LABEL)
    if with_workload:
        names.append(WORKLOAD_LABEL)
    names.extend(extra)
    if names == list(DEFAULT_LABELS):
        return LabelSet(DEFAULT_LABELS, go_exporter_labels)
    workload = WorkloadOf()  # its cache is this label set's own
    if names == [*DEFAULT_LABELS, WORKLOAD_LABEL]:
        return LabelSet(tuple(names), _with_workload(workload))
    builtin: dict[str, Callable[[Event], str]] = {**_BUILTIN, WORKLOAD_LABEL: workload}
    getters = [builtin[name] if name in builtin else _field_getter(extra[name]) for name in names]

    def values(event: Event) -> LabelKey:
        return tuple([getter(event) for getter in getters])

    return LabelSet(tuple(names), values)


def _with_workload(workload: Callable[[Event], str]) -> LabelValues:
    """The Go exporter's values and the workload's: the hot path of --workload-label alone."""

    def values(event: Event) -> LabelKey:
        return (*go_exporter_labels(event), workload(event))

    return values


def _field_getter(field: str) -> Callable[[Event], str]:
    def get(event: Event) -> str:
        return event.output_fields.get(field, "")

    return get
