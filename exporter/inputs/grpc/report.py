"""What the gRPC input says about its targets: readiness, the live page's lines, metrics.

Read from each target's TargetState (written by its reader thread) and discovery's state,
at the moment someone asks: nothing here runs per event.
"""

from __future__ import annotations

from collections.abc import Sequence

from exporter.core.inputs import EVENTS_RECEIVED, LAST_EVENT, InputStatus, Readiness
from exporter.core.metrics import PREFIX, Families, FamilySpec, Kind
from exporter.inputs.grpc.discovery import DiscoveryState
from exporter.inputs.grpc.targets import TargetState
from exporter.settings.choices import ReadyWhen

DECODE_ERRORS = FamilySpec(
    f"{PREFIX}decode_errors",
    Kind.COUNTER,
    "Messages from Falco that could not be decoded and were skipped.",
    ("target",),
)
CONNECTED = FamilySpec(
    f"{PREFIX}connected",
    Kind.GAUGE,
    "1 while the subscription to the target is up, else 0.",
    ("target",),
)
RECONNECTS = FamilySpec(
    f"{PREFIX}reconnects",
    Kind.COUNTER,
    "Reconnect attempts after a failure or a closed stream.",
    ("target",),
)
CONNECTION_ERRORS = FamilySpec(
    f"{PREFIX}connection_errors",
    Kind.COUNTER,
    "Failed connections or streams, by reason.",
    ("target", "reason"),
)
FALCO_VERSION = FamilySpec(
    f"{PREFIX}falco_version_info",
    Kind.GAUGE,
    "Always 1; the version Falco reported on connect.",
    ("target", "version"),
)
DNS_LOOKUPS = FamilySpec(
    f"{PREFIX}dns_lookups",
    Kind.COUNTER,
    "DNS lookups of --discover-dns, by result.",
    ("name", "result"),
)
DNS_ADDRESSES = FamilySpec(
    f"{PREFIX}dns_addresses",
    Kind.GAUGE,
    "Addresses the last successful lookup returned.",
    ("name",),
)


def readiness(states: Sequence[TargetState], ready_when: ReadyWhen) -> Readiness:
    """Ready while any target is connected (or all, with --ready-when all)."""
    connected = sum(1 for state in states if state.connected)
    needed = len(states) if ready_when is ReadyWhen.ALL else 1
    lines = [f"{s.name} {'connected' if s.connected else 'disconnected'}" for s in states]
    summary = f"{connected}/{len(states)} Falco targets connected (ready when {ready_when})"
    return Readiness(bool(states) and connected >= needed, "\n".join([summary, *lines]) + "\n")


def statuses(states: Sequence[TargetState]) -> list[InputStatus]:
    """One line per target: connected or not, Falco's version, what it delivered."""
    return [
        InputStatus(
            f"gRPC {state.name}",
            ("connected" if state.connected else "disconnected")
            + (f", Falco {state.falco_version}" if state.falco_version else "")
            + f", {state.events} alerts",
            state.connected,
        )
        for state in states
    ]


def collect(
    families: Families, states: Sequence[TargetState], discovery: DiscoveryState | None
) -> None:
    """Every target's families, and discovery's."""
    for family in (EVENTS_RECEIVED, LAST_EVENT, DECODE_ERRORS, CONNECTED, RECONNECTS):
        families.family(family)  # HELP and TYPE even before the first target
    families.family(CONNECTION_ERRORS)
    families.family(FALCO_VERSION)
    for state in states:
        families.add(EVENTS_RECEIVED, (state.name, "grpc"), state.events)
        families.add(LAST_EVENT, (state.name,), state.last_event_time)
        families.add(DECODE_ERRORS, (state.name,), state.decode_errors)
        families.add(CONNECTED, (state.name,), 1 if state.connected else 0)
        families.add(RECONNECTS, (state.name,), state.reconnects)
        for reason, count in sorted(state.connection_errors.items()):
            families.add(CONNECTION_ERRORS, (state.name, reason), count)
        if state.falco_version:
            families.add(FALCO_VERSION, (state.name, state.falco_version), 1)
    if discovery is not None:
        families.add(DNS_LOOKUPS, (discovery.name, "success"), discovery.lookups_ok)
        families.add(DNS_LOOKUPS, (discovery.name, "failure"), discovery.lookups_failed)
        families.add(DNS_ADDRESSES, (discovery.name,), discovery.addresses)
