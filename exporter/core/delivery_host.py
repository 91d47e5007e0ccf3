"""One Falco's alerts raised against those that reached us: the arithmetic of the loss.

Falco counts an alert when its rule matches, then queues it; each metrics snapshot reads
the count (R) and enters the same FIFO queue. So what snapshot k counts has been posted
by the time snapshot k+1 is, lost or not. What we can see, at the arrival of snapshot k,
is the deficit D(k) = R(k) - N(k), N being the alerts received before it. It differs from
the alerts lost L(k) by two kinds of alerts in flight at a snapshot:
- stragglers X(k): counted before snapshot k, posted just after it (another source's
  thread); they raise D(k);
- early ones E(k): counted just after Falco read its counters, posted before the snapshot
  (queued by Falco's stats thread); they lower D(k).
D(k) = L(k) + X(k) - E(k), with X and E transient (each settles at the next snapshot).

Each alert carries its event's time, never later than when Falco counted it (within
SLACK, for the clocks). So, with C the deficit the epoch had when we first saw it:
- a straggler of snapshot k has an event time at most t(k) + SLACK and arrives after it:
  Y(k), the arrivals after snapshot k with such a time, bounds X(k), and
  F(k) = D(k) - Y(k) <= C + L(k): settled once a snapshot read SLACK later arrives;
- an early alert of snapshot j arrives before it, with an event time of at least
  t(j) - SLACK (while Falco's processing runs less than SLACK behind): Z(j), counted in the
  last arrivals kept, bounds E(j), and U(j) = D(j) + Z(j) >= C + L(j) >= C.

The alerts lost in the epoch are then at least max F - min U, a bound that only grows,
never by alerts in flight, and equals the loss once one snapshot before it and one after
it had nothing in flight (the usual case: alerts are rare next to a snapshot's instant).
docs/delivery.md has the argument and its limits.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from exporter.core.falco_snapshot import Epoch, Snapshot

# How far an event's time may run ahead of the clock Falco reads its counters by.
SLACK_NS = 1_000_000_000
# Arrivals kept to bound a snapshot's early alerts; with more in its last SLACK, that
# snapshot gives no bound.
RECENT_ARRIVALS = 8
# How far Falco's clock may be from ours when an epoch's start is compared with when the
# exporter began to see every alert (a sidecar shares the node's clock).
CLOCK_SKEW_NS = 5_000_000_000
# Snapshots awaiting settlement (more only if Falco's interval is far below SLACK).
MAX_PENDING = 16

TimeKey = int | str | None  # ns, or Falco's ISO 8601 text; None when the alert had none


def iso_8601(time_ns: int) -> str:
    """Falco's format of an event time (nanoseconds, UTC), so that text compares in order."""
    seconds, nanoseconds = divmod(time_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanoseconds:09d}Z"


class _Bound:
    """An event time to compare arrivals with, in both forms an input may give."""

    __slots__ = ("iso", "ns")

    def __init__(self, time_ns: int) -> None:
        self.ns = time_ns
        self.iso = iso_8601(time_ns)

    def at_most(self, key: TimeKey) -> bool:
        """The key is no later than the bound (an alert without a time: assume so)."""
        if key is None:
            return True
        return key <= self.ns if type(key) is int else key <= self.iso  # type: ignore[operator]

    def at_least(self, key: TimeKey) -> bool:
        """The key is no earlier than the bound (an alert without a time: assume so)."""
        if key is None:
            return True
        return key >= self.ns if type(key) is int else key >= self.iso  # type: ignore[operator]


@dataclass
class _Pending:
    """A snapshot awaiting settlement: its deficit, and the stragglers that may be in it."""

    time_ns: int
    deficit: int
    late: _Bound
    stragglers: int = 0


@dataclass
class HostLedger:
    """One Falco (by hostname): what it raised, what reached us, what was lost."""

    hostname: str
    seen_at: float  # monotonic: its last alert or snapshot
    received: int = 0  # alerts of its rules that reached us (Falco's own messages aside)
    lost: int = 0  # alerts lost while we ran, over every epoch
    snapshot: Snapshot | None = None
    snapshot_at: float = 0.0  # wall clock of the last snapshot's arrival
    interval: float = 0.0  # seconds between its last two snapshots (0: not seen yet)
    _epoch: Epoch | None = None
    _upper: int | None = None  # min U(j) of this epoch's snapshots
    _floor: int | None = None  # max F(k) of its settled snapshots
    _lost_in_epoch: int = 0
    _received_at_snapshot: int = 0  # `received` when the last snapshot arrived
    _pending: list[_Pending] = field(default_factory=list)
    _recent: deque[TimeKey] = field(default_factory=lambda: deque(maxlen=RECENT_ARRIVALS))

    def alert(self, key: TimeKey, now: float) -> None:
        """An alert of one of its rules reached us."""
        self.received += 1
        self.seen_at = now
        self._recent.append(key)
        for pending in self._pending:
            if pending.late.at_most(key):
                pending.stragglers += 1

    def counts(self, snapshot: Snapshot, now: float, wall: float, whole_since_ns: int = 0) -> int:
        """A snapshot: settle what it can; the alerts newly found lost (0 or more).

        `whole_since_ns`: since then every alert that arrived was counted here. An epoch
        that began later (Falco started or reloaded after the exporter, as a sidecar's
        does, and after its previous snapshot) was seen whole: its baseline is what had
        arrived by the previous snapshot (all of it the previous epoch's), and the losses
        of its first interval count.
        """
        previous, received_before = self.snapshot, self._received_at_snapshot
        self._received_at_snapshot = self.received
        if previous is not None and previous.time_ns < snapshot.time_ns:
            self.interval = (snapshot.time_ns - previous.time_ns) / 1e9
        self.snapshot, self.snapshot_at, self.seen_at = snapshot, wall, now
        deficit = snapshot.raised - self.received
        if snapshot.epoch != self._epoch or (previous and snapshot.raised < previous.raised):
            self._new_epoch(snapshot.epoch)
            began = max(snapshot.epoch.start_ts, snapshot.epoch.reload_ts)
            after = previous is None or (
                previous.epoch != snapshot.epoch and began > previous.time_ns
            )
            if after and began >= whole_since_ns + CLOCK_SKEW_NS:
                self._upper = -received_before
        for pending in [p for p in self._pending if p.time_ns + SLACK_NS <= snapshot.time_ns]:
            settled = pending.deficit - pending.stragglers
            self._floor = settled if self._floor is None else max(self._floor, settled)
            self._pending.remove(pending)
        upper = self._upper_bound(snapshot, deficit)
        if upper is not None:
            self._upper = upper if self._upper is None else min(self._upper, upper)
        if len(self._pending) >= MAX_PENDING:
            del self._pending[0]  # unsettled: only a bound is given up, never a count
        late = _Bound(snapshot.time_ns + SLACK_NS)
        self._pending.append(_Pending(snapshot.time_ns, deficit, late))
        if self._floor is None or self._upper is None:
            return 0
        found = max(0, self._floor - self._upper - self._lost_in_epoch)
        self._lost_in_epoch += found
        self.lost += found
        return found

    @property
    def accounting(self) -> bool:
        """Whether this epoch has a baseline (an upper bound), so that losses can be counted."""
        return self._upper is not None

    def _new_epoch(self, epoch: Epoch) -> None:
        """Falco restarted or reloaded its rules: its counts start again from 0."""
        self._epoch = epoch
        self._upper = self._floor = None
        self._lost_in_epoch = 0
        self._pending.clear()

    def _upper_bound(self, snapshot: Snapshot, deficit: int) -> int | None:
        """D(j) + Z(j): at least the deficit the epoch started with; None after a burst
        of more arrivals in its last SLACK than are kept (no bound from this one)."""
        early = _Bound(snapshot.time_ns - SLACK_NS)
        possibly_early = sum(1 for key in self._recent if early.at_least(key))
        if possibly_early >= RECENT_ARRIVALS:
            return None
        return deficit + possibly_early
