"""One listener's connections, in the orders that decide who makes room for a newcomer.

At a limit the table does not refuse while it can help it. At the listener's limit it
closes the oldest idle connection (a keep-alive one, or one that never sent a byte),
failing that the oldest request in progress that began over `slow_request` ago (a
slowloris holds a slot someone else needs). At the per-peer limit it closes one of the
peer's own: the oldest request in progress first, then one that never sent a byte, then
the oldest idle. A client that reconnects loses nothing by it: Falco's libcurl opens a new
connection.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from exporter.http.connection import Connection
from exporter.http.connection_state import Phase
from exporter.http.limits import ListenerLimits

_SHEDDABLE = (Phase.FRESH, Phase.IDLE)
_SCAN_EVERY = 0.01

# Called for every connection closed to make room or refused: (reason, its peer).
Closed = Callable[[str, str], None]


class ConnectionTable:
    """The open connections: all, by peer address, and the idle ones oldest first.

    Only the idle order is kept as connections move (`idle`, which a connection updates
    itself as each request begins and ends: one dict operation per request); the
    rest is looked up when a limit is reached, which normal traffic never does.
    """

    def __init__(self, limits: ListenerLimits, closed: Closed) -> None:
        self._limits = limits
        self._closed = closed
        self.all: set[Connection] = set()
        self.idle: dict[Connection, None] = {}  # insertion order: oldest idle first
        self._of_peer: dict[str, set[Connection]] = {}
        self._slow_scan = 0.0  # when the connections were last scanned for a slow request

    def __len__(self) -> int:
        return len(self.all)

    def admit(self, connection: Connection) -> bool:
        """Take a newcomer, making room if it must; False (counted) when it cannot."""
        peer, limits = connection.peer_host, self._limits
        mates = self._of_peer.get(peer, ())
        if len(mates) >= limits.max_per_peer and not self._shed_mate(mates):
            self._closed("per_peer_limit", connection.peer)
            return False
        if len(self.all) >= limits.max_connections and not (self._shed() or self._slow()):
            self._closed("limit", connection.peer)
            return False
        self.all.add(connection)
        self._of_peer.setdefault(peer, set()).add(connection)
        self.idle[connection] = None
        return True

    def _shed(self) -> bool:
        """Close the oldest idle connection."""
        if not self.idle:
            return False
        self._make_room(next(iter(self.idle)), "shed")
        return True

    def _shed_mate(self, mates: set[Connection] | tuple[()]) -> bool:
        """Close one of the peer's own connections (it holds few: a scan is cheap). Behind
        one address there may be a slowloris and Falco both (a sidecar's loopback, a node's
        hostNetwork): first the request in progress the longest (the newcomer is younger
        than any, so churn only sheds the attacker's own), then a connection that never
        sent a byte, and only then the oldest idle keep-alive one (Falco's, perhaps: its
        libcurl reconnects)."""
        slow = [mate for mate in mates if mate.phase is Phase.READING and not mate.busy]
        if slow:
            self._make_room(min(slow, key=lambda mate: mate.since), "shed_slow")
            return True
        idle = [mate for mate in mates if mate in self.idle]
        if not idle:
            return False
        fresh_first = min(idle, key=lambda mate: (mate.phase is not Phase.FRESH, mate.since))
        self._make_room(fresh_first, "shed")
        return True

    def _slow(self) -> bool:
        """Close the oldest request in progress, if it began over `slow_request` ago. The
        connections are scanned at most every 10 ms: a flood of newcomers to a full
        listener costs a bounded scan, not one each."""
        now = time.monotonic()
        if now - self._slow_scan < _SCAN_EVERY:
            return False
        self._slow_scan = now
        reading = [c for c in self.all if c.phase is Phase.READING and not c.busy]
        if not reading:
            return False
        oldest = min(reading, key=lambda connection: connection.since)
        if now - oldest.since <= self._limits.slow_request:
            return False
        self._make_room(oldest, "shed_slow")
        self._slow_scan = 0.0  # another may be as slow: look again for the next newcomer
        return True

    def _make_room(self, connection: Connection, reason: str) -> None:
        connection.close()
        self.forget(connection)
        self._closed(reason, connection.peer)

    def moved(self, connection: Connection) -> None:
        """The connection changed phase: idle ones go to the end of the idle order."""
        if connection.phase in _SHEDDABLE and not connection.busy:
            if connection not in self.idle and connection in self.all:
                self.idle[connection] = None
        else:
            self.idle.pop(connection, None)

    def forget(self, connection: Connection) -> bool:
        """A connection closed; False if it was not in the table."""
        if connection not in self.all:
            return False
        self.all.discard(connection)
        self.idle.pop(connection, None)
        mates = self._of_peer[connection.peer_host]
        mates.discard(connection)
        if not mates:
            del self._of_peer[connection.peer_host]
        return True

    def sheddable(self) -> list[Connection]:
        """The connections a stop may close at once: idle, no request of theirs pending."""
        return [c for c in self.all if c.phase in _SHEDDABLE and not c.busy]
