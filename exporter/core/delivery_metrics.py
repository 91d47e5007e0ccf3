"""The delivery ledger's families: each Falco's own counts beside ours, per hostname.

Falco's counts (`falco_exporter_falco_*`) are its values as the last snapshot gave them,
so they reset when Falco restarts or reloads its rules, as a counter may; ours
(`received`, `alerts_lost`) reset when the exporter restarts. docs/delivery.md has the
PromQL that compares them across both.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from exporter.core.delivery_host import HostLedger
from exporter.core.metrics import PREFIX, Families, FamilySpec, Kind

_HOST = ("hostname",)

RAISED = FamilySpec(
    f"{PREFIX}falco_alerts_raised",
    Kind.COUNTER,
    "Alerts the Falco raised since it started or reloaded its rules "
    "(falco.rules.matches_total of its last metrics snapshot).",
    _HOST,
)
RECEIVED = FamilySpec(
    f"{PREFIX}falco_alerts_received",
    Kind.COUNTER,
    "Alerts of the Falco's rules that reached this exporter since it started "
    "(its metrics snapshots and other internal messages aside).",
    _HOST,
)
LOST = FamilySpec(
    f"{PREFIX}alerts_lost",
    Kind.COUNTER,
    "Alerts the Falco raised that never reached this exporter, while it ran "
    "(from Falco's metrics snapshots; docs/delivery.md).",
    _HOST,
)
QUEUE_DROPS = FamilySpec(
    f"{PREFIX}falco_outputs_queue_drops",
    Kind.COUNTER,
    "Alerts the Falco dropped from its own output queue (falco.outputs_queue_num_drops).",
    _HOST,
)
KERNEL_DROPS = FamilySpec(
    f"{PREFIX}falco_kernel_drops",
    Kind.COUNTER,
    "Kernel events the Falco never saw, while it was blind (scap.n_drops; with a driver).",
    _HOST,
)
KERNEL_DROPS_RATIO = FamilySpec(
    f"{PREFIX}falco_kernel_drops_ratio",
    Kind.GAUGE,
    "Share of kernel events dropped over the Falco's last metrics interval "
    "(scap.n_drops_perc / 100).",
    _HOST,
)
INFO = FamilySpec(
    f"{PREFIX}falco_info",
    Kind.GAUGE,
    "The Falco's version and capture engine, from its metrics snapshots (always 1).",
    ("hostname", "version", "engine"),
)
STARTED = FamilySpec(
    f"{PREFIX}falco_start_time_seconds",
    Kind.GAUGE,
    "Unix time the Falco started (falco.start_ts).",
    _HOST,
)
LAST_SNAPSHOT = FamilySpec(
    f"{PREFIX}falco_last_snapshot_timestamp_seconds",
    Kind.GAUGE,
    "Unix time the Falco's last metrics snapshot reached this exporter: its heartbeat.",
    _HOST,
)
SNAPSHOT_DELAY = FamilySpec(
    f"{PREFIX}falco_snapshot_delay_seconds",
    Kind.GAUGE,
    "How late the Falco's last metrics snapshot arrived, from its time (evt.time) to its "
    "arrival here: its output backlog then, per node (negative: its clock is ahead).",
    _HOST,
)
TRACKED = FamilySpec(
    f"{PREFIX}delivery_falcos",
    Kind.GAUGE,
    "Falcos whose delivery this exporter accounts for.",
)
TRACKED_MAX = FamilySpec(
    f"{PREFIX}delivery_falcos_max",
    Kind.GAUGE,
    "The most Falcos it accounts for (--delivery-max-falcos).",
)
UNTRACKED = FamilySpec(
    f"{PREFIX}delivery_untracked_alerts",
    Kind.COUNTER,
    "Alerts and snapshots from Falcos past --delivery-max-falcos: counted in falco_events, "
    "not accounted for.",
)
FORGOTTEN = FamilySpec(
    f"{PREFIX}delivery_falcos_forgotten",
    Kind.COUNTER,
    "Falcos forgotten: silent for five of their snapshot intervals (an hour at least), or "
    "without a snapshot yet when the table was full.",
)
UNREADABLE = FamilySpec(
    f"{PREFIX}falco_snapshots_unreadable",
    Kind.COUNTER,
    "Metrics snapshots without the counts delivery needs (for example "
    "falco.rules.matches_total, off with metrics.rules_counters_enabled: false).",
)
ACCOUNTING = FamilySpec(
    f"{PREFIX}delivery_accounting",
    Kind.GAUGE,
    "1 when this exporter counts lost alerts; 0 with --delivery-accounting off "
    "(replicas share each Falco's posts).",
)


_PER_FALCO: tuple[FamilySpec, ...] = (RAISED, RECEIVED, LOST, QUEUE_DROPS, KERNEL_DROPS)
_PER_FALCO += (KERNEL_DROPS_RATIO, INFO, STARTED, LAST_SNAPSHOT, SNAPSHOT_DELAY)


class LedgerTotals(NamedTuple):
    """The table's own numbers."""

    accounting: bool
    tracked: int
    max_falcos: int
    untracked: int
    unreadable: int
    forgotten: int


def add_families(families: Families, hosts: Iterable[HostLedger], totals: LedgerTotals) -> None:
    """Every Falco's samples, and the table's."""
    families.add(ACCOUNTING, (), 1.0 if totals.accounting else 0.0)
    families.add(TRACKED, (), totals.tracked)
    families.add(TRACKED_MAX, (), totals.max_falcos)
    families.add(UNTRACKED, (), totals.untracked)
    families.add(UNREADABLE, (), totals.unreadable)
    families.add(FORGOTTEN, (), totals.forgotten)
    for spec in _PER_FALCO:
        families.family(spec)  # declared even while empty, so that the scrape names them
    for host in hosts:
        snapshot = host.snapshot
        if snapshot is None:
            continue  # not a Falco that reports (yet): nothing to compare with
        name = (host.hostname,)
        families.add(RECEIVED, name, host.received)
        if totals.accounting:  # 0 until a first snapshot gives a baseline: none found yet
            families.add(LOST, name, host.lost)
        families.add(RAISED, name, snapshot.raised)
        families.add(INFO, (host.hostname, snapshot.version, snapshot.engine), 1.0)
        families.add(STARTED, name, snapshot.epoch.start_ts / 1e9)
        families.add(LAST_SNAPSHOT, name, host.snapshot_at)
        families.add(SNAPSHOT_DELAY, name, host.snapshot_at - snapshot.time_ns / 1e9)
        if snapshot.outputs_queue_drops is not None:
            families.add(QUEUE_DROPS, name, snapshot.outputs_queue_drops)
        if snapshot.kernel_drops is not None:
            families.add(KERNEL_DROPS, name, snapshot.kernel_drops)
        if snapshot.kernel_drops_percent is not None:
            families.add(KERNEL_DROPS_RATIO, name, snapshot.kernel_drops_percent / 100)
