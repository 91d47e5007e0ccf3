"""One simulated Falco's own counting, as Falco 0.44 keeps it and reports it.

Falco counts each alert when its rule matches (`falco.rules.matches_total`) and, every
`metrics.interval`, sends a metrics snapshot through its outputs with that count, its
start and reload times and its drops. A restart or a rules reload starts the count from 0
under a new `falco.start_ts` or `falco.reload_ts`. The snapshot's fields here are those a
real Falco 0.44.1 sent (tests/data/falco-0.44.1/nodriver-json), with the values this
simulation keeps; the clock is injectable, so that tests can run an hour of intervals at
once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from exporter.core.delivery_host import iso_8601
from exporter.core.falco_snapshot import INTERNAL_SOURCE, SNAPSHOT_RULE

VERSION = "0.44.1"


class FalcoCounts:
    """What one Falco has raised, for the snapshots it sends."""

    def __init__(
        self,
        hostname: str,
        *,
        clock_ns: Callable[[], int] = time.time_ns,
        engine: str = "modern_ebpf",
    ) -> None:
        self.hostname = hostname
        self.engine = engine
        self._clock_ns = clock_ns
        self.start_ts = self.reload_ts = clock_ns()
        self.raised = 0
        self.queue_drops = 0
        self.kernel_drops = 0

    def matched(self, document: dict[str, Any], time_ns: int | None = None) -> dict[str, Any]:
        """A rule matched: count it, and the alert as Falco posts it (its hostname, and
        its event's time: now, or `time_ns`)."""
        self.raised += 1
        when = self._clock_ns() if time_ns is None else time_ns
        return {**document, "hostname": self.hostname, "time": iso_8601(when)}

    def dropped_from_queue(self, document: dict[str, Any]) -> None:
        """A rule matched, and the alert was dropped from Falco's full output queue."""
        self.matched(document)
        self.queue_drops += 1

    def restart(self) -> None:
        """Falco restarted: new start time, counts from 0."""
        self.start_ts = self.reload_ts = self._clock_ns()
        self.raised = self.queue_drops = 0

    def reload(self) -> None:
        """Falco reloaded its rules: new reload time, the count of alerts from 0."""
        self.reload_ts = self._clock_ns()
        self.raised = 0

    def snapshot(self, time_ns: int | None = None) -> dict[str, Any]:
        """The metrics snapshot Falco would send now (or at `time_ns`)."""
        now = self._clock_ns() if time_ns is None else time_ns
        fields: dict[str, Any] = {
            "evt.hostname": self.hostname,
            "evt.source": "syscall",
            "evt.time": now,
            "falco.duration_sec": (now - self.start_ts) // 1_000_000_000,
            "falco.num_evts": 0,
            "falco.outputs_queue_num_drops": self.queue_drops,
            "falco.reload_ts": self.reload_ts,
            "falco.rules.matches_total": self.raised,
            "falco.start_ts": self.start_ts,
            "falco.version": VERSION,
            "scap.engine_name": self.engine,
            "scap.n_drops": self.kernel_drops,
            "scap.n_drops_perc": 0.0,
        }
        return {
            "hostname": self.hostname,
            "output": "Falco metrics snapshot",
            "output_fields": fields,
            "priority": "Informational",
            "rule": SNAPSHOT_RULE,
            "source": INTERNAL_SOURCE,
            "time": iso_8601(now),
        }
