"""What each listener reports: its connections, what it closed or refused, and its failed
TLS handshakes. Plain counts kept on the event loop's thread, read at scrape time."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from exporter.core.metrics import PREFIX, Families, FamilySpec, Kind

CONNECTIONS = FamilySpec(
    f"{PREFIX}listener_connections",
    Kind.GAUGE,
    "Connections open now, by listener.",
    ("listener",),
)
MAX_CONNECTIONS = FamilySpec(
    f"{PREFIX}listener_max_connections",
    Kind.GAUGE,
    "The most connections a listener holds at once.",
    ("listener",),
)
CLOSED = FamilySpec(
    f"{PREFIX}listener_connections_closed",
    Kind.COUNTER,
    "Connections a listener refused or closed itself, by reason: limit and per_peer_limit "
    "(refused at its limits), shed (idle, closed to make room), silent (sent nothing), idle.",
    ("listener", "reason"),
)
REFUSED = FamilySpec(
    f"{PREFIX}listener_requests_refused",
    Kind.COUNTER,
    "Requests a listener could not read, by reason (too large, too slow, malformed...).",
    ("listener", "reason"),
)
TLS_FAILURES = FamilySpec(
    f"{PREFIX}tls_handshake_failures",
    Kind.COUNTER,
    "Failed TLS handshakes, by listener and reason.",
    ("listener", "reason"),
)


@dataclass
class ListenerStats:
    """One listener's counts."""

    name: str
    max_connections: int
    connections: int = 0
    closed: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    tls_failures: Counter[str] = field(default_factory=Counter)

    def collect(self, families: Families) -> None:
        """Its families (every family present from start-up, with or without samples)."""
        name = self.name
        families.add(CONNECTIONS, (name,), self.connections)
        families.add(MAX_CONNECTIONS, (name,), self.max_connections)
        for spec, counts in ((CLOSED, self.closed), (REFUSED, self.refused)):
            family = families.family(spec)
            for reason, count in sorted(counts.items()):
                family.add((name, reason), count)
        failures = families.family(TLS_FAILURES)
        for reason, count in sorted(self.tls_failures.items()):
            failures.add((name, reason), count)
