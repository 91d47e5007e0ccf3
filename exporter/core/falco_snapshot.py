"""Falco's metrics snapshot: the alert that carries Falco's own counts.

With `metrics.enabled` and `metrics.output_rule`, Falco sends, every `metrics.interval`,
through every output (http_output and gRPC included) an alert of the rule
`Falco internal: metrics snapshot` from the source `internal`; its output fields hold the
number of alerts Falco raised since it started or reloaded its rules, its own queue's
drops and the kernel's. docs/falco-wire-contract.md ("Metrics snapshots") has the fields.

The snapshot is still an alert, counted in `falco_events` as the Go exporter counted it;
this module only reads its numbers. Output fields arrive as text (gRPC carries strings;
the HTTP input renders JSON numbers as gRPC would), so numbers are read from text here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from exporter.core.event import Event

SNAPSHOT_RULE = "Falco internal: metrics snapshot"
# Falco's own messages (snapshots, "syscall event drop") come from this source; they are
# not rule matches, so Falco's count of alerts raised does not include them.
INTERNAL_SOURCE = "internal"


class Epoch(NamedTuple):
    """One run of a Falco's counters: a new start or a rules reload starts them from 0."""

    hostname: str
    start_ts: int
    reload_ts: int


@dataclass(frozen=True)
class Snapshot:
    """What the delivery ledger reads of one metrics snapshot."""

    epoch: Epoch
    time_ns: int  # evt.time: when Falco read its counters
    raised: int  # falco.rules.matches_total
    outputs_queue_drops: int | None
    kernel_drops: int | None  # scap.n_drops: only with a driver
    kernel_drops_percent: float | None  # scap.n_drops_perc, over the last interval
    version: str
    engine: str


class UnreadableSnapshotError(ValueError):
    """A snapshot without the fields delivery accounting needs; the message names one."""


def is_snapshot(event: Event) -> bool:
    """Falco's metrics snapshot, not an alert of a rule."""
    return event.rule == SNAPSHOT_RULE and event.source == INTERNAL_SOURCE


def read_snapshot(event: Event) -> Snapshot:
    """The snapshot's numbers; UnreadableSnapshotError names the first field missing or wrong
    (for example `falco.rules.matches_total`, absent when `rules_counters_enabled` is off)."""
    fields = event.output_fields
    hostname = event.hostname or fields.get("evt.hostname") or ""
    return Snapshot(
        epoch=Epoch(
            hostname, _integer(fields, "falco.start_ts"), _integer(fields, "falco.reload_ts")
        ),
        time_ns=_integer(fields, "evt.time"),
        raised=_integer(fields, "falco.rules.matches_total"),
        outputs_queue_drops=_optional_integer(fields, "falco.outputs_queue_num_drops"),
        kernel_drops=_optional_integer(fields, "scap.n_drops"),
        kernel_drops_percent=_optional_number(fields, "scap.n_drops_perc"),
        version=fields.get("falco.version") or "",
        engine=fields.get("scap.engine_name") or "",
    )


# Why a snapshot would lack a field it needs, for the log line.
_WHY_MISSING = {
    "falco.rules.matches_total": "keep metrics.rules_counters_enabled on in falco.yaml",
}
_WHY_MISSING_ELSE = "a Falco before 0.36, or a sender that is not Falco"


def _integer(fields: Mapping[str, str], key: str) -> int:
    value = _optional_integer(fields, key)
    if value is None:
        raise UnreadableSnapshotError(f"no {key} ({_WHY_MISSING.get(key, _WHY_MISSING_ELSE)})")
    return value


def _optional_integer(fields: Mapping[str, str], key: str) -> int | None:
    text = fields.get(key)
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise UnreadableSnapshotError(f"{key} is not an integer: {text[:40]!r}") from None
    if value < 0:
        raise UnreadableSnapshotError(f"{key} is negative: {value}")
    return value


def _optional_number(fields: Mapping[str, str], key: str) -> float | None:
    text = fields.get(key)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise UnreadableSnapshotError(f"{key} is not a number: {text[:40]!r}") from None
    if not 0.0 <= value <= 100.0:
        raise UnreadableSnapshotError(f"{key} is not a percentage: {text[:40]!r}")
    return value
