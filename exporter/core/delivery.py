"""Proof of delivery: each Falco's own count of the alerts it raised, against ours.

Every alert that reaches the counter also passes here (`watching` wraps the inputs'
sink). Per Falco (by hostname) the ledger keeps what reached us, and from each metrics
snapshot what Falco raised, its queue's and the kernel's drops; delivery_host.py turns
them into the alerts lost while we run. The table is bounded: at most `max_falcos`
Falcos, each forgotten once silent for long; alerts from a Falco beyond the bound are
still counted in `falco_events`, only not accounted for here (and that is counted).

Where the loss cannot be told here, because replicas share each Falco's posts (a central
receiver behind a Service), `accounting=False`: Falco's counts are still exported, the
lost counter is not, and docs/delivery.md gives the PromQL that adds the replicas up.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from exporter.core.cardinality import TRUNCATED
from exporter.core.delivery_host import HostLedger, TimeKey
from exporter.core.delivery_metrics import LedgerTotals, add_families
from exporter.core.event import Event, EventSink
from exporter.core.falco_snapshot import (
    INTERNAL_SOURCE,
    SNAPSHOT_RULE,
    UnreadableSnapshotError,
    read_snapshot,
)
from exporter.core.metrics import Families

# A Falco silent this long is forgotten: several of its snapshot intervals, at least this.
FORGET_AFTER_INTERVALS = 5
MIN_FORGET_SECONDS = 3600.0

# Told of what the ledger refused, for a rate-limited log: (what, hostname, detail).
Report = Callable[[str, str, str], None]


@dataclass(frozen=True)
class FalcoView:
    """One Falco's delivery, as the live page shows it."""

    hostname: str
    raised: int | None
    received: int
    lost: int | None  # None: not accounted for (no baseline yet, or accounting off)
    version: str
    engine: str
    kernel_drops: int | None
    last_snapshot: float  # wall clock; 0: none yet


class DeliveryLedger:
    """Every Falco's ledger; safe to call from every input's threads."""

    def __init__(
        self,
        *,
        accounting: bool = True,
        max_falcos: int = 10_000,
        max_label_length: int = 256,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        report: Report = lambda what, hostname, detail: None,
    ) -> None:
        self.accounting = accounting
        self.max_falcos = max_falcos
        self._max_label = max_label_length
        self._clock, self._wall, self._report = clock, wall, report
        self._lock = threading.Lock()
        self._hosts: dict[str, HostLedger] = {}
        # Those without a snapshot yet, least recently seen first: at the bound one of them
        # makes room (forged hostnames, alerts only, cannot crowd out Falcos that report).
        self._unproven: OrderedDict[str, None] = OrderedDict()
        # Every alert that arrived since (ns, wall clock) reached a ledger: an epoch of a
        # Falco that began later was seen whole, so its baseline is 0, not its first deficit.
        self._whole_since_ns = int(wall() * 1e9)
        self.untracked = 0  # alerts from Falcos past max_falcos
        self.unreadable = 0  # snapshots without the counts
        self.forgotten = 0

    def watching(self, sink: EventSink) -> EventSink:
        """The sink, each alert it counts also accounted for here."""
        observe = self.observe

        def count_and_account(event: Event) -> None:
            sink(event)
            observe(event)

        return count_and_account

    def observe(self, event: Event) -> None:
        """One alert that was counted: an alert of a rule, or one of Falco's messages."""
        if event.source == INTERNAL_SOURCE:
            if event.rule == SNAPSHOT_RULE:
                self._snapshot(event)
            return  # Falco's other messages (event drops) are not in its count of alerts
        key = _time_key(event)
        with self._lock:
            host = self._host(event.hostname)
            if host is not None:
                host.alert(key, self._clock())
                if host.snapshot is None:
                    self._unproven.move_to_end(host.hostname)
                return
        self._report("untracked", event.hostname, f"over {self.max_falcos} Falcos tracked")

    def _snapshot(self, event: Event) -> None:
        try:
            snapshot = read_snapshot(event)
        except UnreadableSnapshotError as problem:
            with self._lock:
                self.unreadable += 1
            self._report("unreadable snapshot", event.hostname, str(problem))
            return
        with self._lock:
            host = self._host(snapshot.epoch.hostname)
            found = (
                host.counts(snapshot, self._clock(), self._wall(), self._whole_since_ns)
                if host
                else 0
            )
            total = host.lost if host else 0
            if host is not None:
                self._unproven.pop(host.hostname, None)
        if host is None:
            self._report("untracked", event.hostname, f"over {self.max_falcos} Falcos tracked")
        elif found and self.accounting:
            self._report("alerts lost", host.hostname, f"{found} more, {total} in all")

    def _host(self, hostname: str) -> HostLedger | None:
        """The Falco's ledger, new if there is room; None past the bound (counted)."""
        if len(hostname) > self._max_label:
            hostname = hostname[: self._max_label - len(TRUNCATED)] + TRUNCATED
        host = self._hosts.get(hostname)
        if host is None:
            if len(self._hosts) >= self.max_falcos:
                self._whole_since_ns = int(self._wall() * 1e9)  # some alerts go unseen now
                if not self._unproven:
                    self.untracked += 1
                    return None
                evicted, _ = self._unproven.popitem(last=False)
                del self._hosts[evicted]
                self.forgotten += 1
            host = self._hosts[hostname] = HostLedger(hostname, self._clock())
            self._unproven[hostname] = None
        return host

    def forget_silent(self) -> None:
        """Forget the Falcos silent for several of their intervals (at least an hour)."""
        now = self._clock()
        with self._lock:
            silent = [
                name
                for name, host in self._hosts.items()
                if now - host.seen_at > _forget_after(host)
            ]
            for name in silent:
                del self._hosts[name]
                self._unproven.pop(name, None)
            self.forgotten += len(silent)
            if silent:  # what they received is gone: a count of theirs is no longer whole
                self._whole_since_ns = int(self._wall() * 1e9)

    def views(self, most: int | None = None) -> list[FalcoView]:
        """The Falcos tracked, those that lost alerts first, then by hostname; the first
        `most` of them (all by default)."""
        with self._lock:
            hosts = sorted(self._hosts.values(), key=lambda host: (-host.lost, host.hostname))
            return [self._view(host) for host in hosts[:most]]

    @property
    def tracked(self) -> int:
        """How many Falcos are tracked."""
        return len(self._hosts)

    def _view(self, host: HostLedger) -> FalcoView:
        snapshot = host.snapshot
        return FalcoView(
            hostname=host.hostname,
            raised=snapshot.raised if snapshot else None,
            received=host.received,
            lost=host.lost if self.accounting and host.accounting else None,
            version=snapshot.version if snapshot else "",
            engine=snapshot.engine if snapshot else "",
            kernel_drops=snapshot.kernel_drops if snapshot else None,
            last_snapshot=host.snapshot_at,
        )

    def collect(self, families: Families) -> None:
        """The delivery families (delivery_metrics.py declares them)."""
        self.forget_silent()
        with self._lock:
            totals = LedgerTotals(
                self.accounting,
                len(self._hosts),
                self.max_falcos,
                self.untracked,
                self.unreadable,
                self.forgotten,
            )
            add_families(families, list(self._hosts.values()), totals)


def _forget_after(host: HostLedger) -> float:
    return max(MIN_FORGET_SECONDS, FORGET_AFTER_INTERVALS * host.interval)


def _time_key(event: Event) -> TimeKey:
    """The alert's event time as the input gave it: Falco's ISO text over HTTP, a
    Timestamp over gRPC (as nanoseconds); None when it has none."""
    value = getattr(event, "time", None)
    if type(value) is str:
        if len(value) == _FALCO_TIME_LENGTH and value[19] == ".":
            return value  # Falco's own: nine digits of fraction, compared as text
        return _with_nine_digits(value) or None
    seconds = getattr(value, "seconds", None)
    if type(seconds) is int:
        return seconds * 1_000_000_000 + int(getattr(value, "nanos", 0))
    return None


_FALCO_TIME_LENGTH = len("2026-01-01T00:00:00.000000000Z")


def _with_nine_digits(text: str) -> str:
    """A UTC time with its fraction padded to nine digits, so that it compares as text with
    Falco's: falcosidekick re-encodes times as Go does, without the trailing zeros
    (`...:30.5Z`, `...:30Z`), which would sort as later than `...:30.200000000Z`."""
    if not text.endswith("Z") or len(text) < 20:
        return text
    whole, _, fraction = text[:-1].partition(".")
    if len(whole) != 19 or (not fraction.isdigit() and fraction):
        return text
    return f"{whole}.{fraction[:9]:0<9}Z"
