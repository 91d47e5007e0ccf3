"""The delivery ledger's arithmetic, on a simulated Falco's timeline with a virtual clock.

Each interval, the simulated Falco matches alerts, reads its counters into a snapshot and
posts everything in Falco's FIFO order, with alerts in flight where Falco has them:
stragglers (counted before the snapshot, posted after it) and early alerts (counted just
after, posted before). Alerts it drops never reach the ledger, as a refused connection or
a 4xx would lose them. The lost counter must stay 0 without drops and equal the drops
with them, exactly, whatever is in flight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from exporter.core.delivery import DeliveryLedger, FalcoView, _time_key
from exporter.core.metrics import Families
from exporter.inputs.falco_json.event import event_from_json
from exporter.simulator.falco_counts import FalcoCounts

SECOND = 1_000_000_000
INTERVAL = 60 * SECOND
ALERT = {"rule": "Terminal shell in container", "priority": "Warning", "source": "syscall"}


START = 1_796_154_870 * SECOND


@dataclass
class Timeline:
    """One or more simulated Falcos posting to one ledger, an interval at a time; the
    exporter started at START, and each Falco when first named (by default, as it did)."""

    ledger: DeliveryLedger = field(default_factory=lambda: DeliveryLedger(wall=lambda: START / 1e9))
    now: int = START
    falcos: dict[str, FalcoCounts] = field(default_factory=dict)
    dropped: int = 0

    def falco(self, hostname: str = "node-7") -> FalcoCounts:
        if hostname not in self.falcos:
            self.falcos[hostname] = FalcoCounts(hostname, clock_ns=lambda: self.now)
        return self.falcos[hostname]

    def post(self, document: dict[str, Any]) -> None:
        self.ledger.observe(event_from_json(document))

    def interval(
        self,
        hostname: str = "node-7",
        *,
        alerts: int = 5,
        drop: int = 0,
        stragglers: int = 0,
        early: int = 0,
        post_snapshot: bool = True,
    ) -> None:
        """One metrics interval of `hostname`'s Falco, ending with its snapshot."""
        falco = self.falco(hostname)
        start, self.now = self.now, self.now + INTERVAL
        spacing = INTERVAL // (alerts + 2)
        on_time = [falco.matched(ALERT, start + (n + 1) * spacing) for n in range(alerts)]
        late = [falco.matched(ALERT, self.now - 1_000_000) for _ in range(stragglers)]
        snapshot = falco.snapshot(self.now)  # reads the count: the stragglers are in it
        ahead = [falco.matched(ALERT, self.now + 1_000_000) for _ in range(early)]
        for document in on_time[drop:]:
            self.post(document)
        self.dropped += min(drop, alerts)
        for document in ahead:
            self.post(document)
        if post_snapshot:
            self.post(snapshot)
        for document in late:
            self.post(document)

    def view(self, hostname: str = "node-7") -> FalcoView:
        (view,) = [view for view in self.ledger.views() if view.hostname == hostname]
        return view


def test_nothing_is_lost_in_steady_state_whatever_is_in_flight() -> None:
    """Stragglers and early alerts at every snapshot, for two hours: no alert is lost."""
    timeline = Timeline()
    for minute in range(120):
        timeline.interval(alerts=5, stragglers=minute % 3, early=(minute + 1) % 2)
    view = timeline.view()
    assert view.lost == 0
    assert view.received == 120 * 5 + sum(m % 3 for m in range(120)) + sum(
        (m + 1) % 2 for m in range(120)
    )
    assert view.raised == timeline.falco().raised


def test_dropped_posts_are_counted_exactly_once_settled() -> None:
    """Posts dropped in two intervals, alerts in flight around them: the counter reaches
    the number dropped, exactly, by the snapshot after next, and never passes it."""
    timeline = Timeline()
    for _ in range(3):
        timeline.interval()
    timeline.interval(stragglers=1)
    timeline.interval(drop=2, stragglers=1)
    timeline.interval(stragglers=1, early=1)
    timeline.interval()
    assert timeline.view().lost == 2
    for _ in range(5):
        timeline.interval(early=1)
    timeline.interval(drop=3)
    timeline.interval(stragglers=2)
    timeline.interval()
    assert timeline.view().lost == 5 == timeline.dropped
    for _ in range(10):
        timeline.interval(stragglers=1, early=1)
    assert timeline.view().lost == 5


def test_with_alerts_in_flight_at_every_snapshot_the_count_stays_below_the_loss() -> None:
    """The limit of the method (docs/delivery.md): when not one snapshot is free of alerts in
    flight, which arrivals belong to which snapshot is undecidable; the counter then says
    at most what was lost, never more."""
    timeline = Timeline()
    for minute in range(30):
        timeline.interval(stragglers=1, drop=3 if minute == 10 else 0)
    lost = timeline.view().lost
    assert lost is not None
    assert 0 < lost <= 3


def test_a_falco_started_after_the_exporter_is_seen_whole() -> None:
    """A sidecar: Falco starts after the exporter, so alerts lost before its first snapshot
    are lost too; a Falco that ran before the exporter gets its first deficit as baseline."""
    timeline = Timeline()
    timeline.now += 30 * SECOND  # Falco's driver and rules loaded
    timeline.interval(drop=2, post_snapshot=True)
    timeline.interval()
    timeline.interval()
    assert timeline.view().lost == 2
    earlier = Timeline()
    earlier.now -= 3600 * SECOND
    earlier.falco()  # Falco started an hour before the exporter
    earlier.now = START
    earlier.interval(drop=2)
    earlier.interval()
    earlier.interval()
    assert earlier.view().lost == 0  # its first deficit: before us, or lost, none can tell


def test_losses_before_the_first_snapshot_after_a_restart_count() -> None:
    """Falco restarts and reloads while the exporter watches: alerts lost before the new
    epoch's first snapshot are lost too (what arrived by the previous snapshot was all the
    previous epoch's), stragglers of the old epoch included."""
    timeline = Timeline()
    for _ in range(3):
        timeline.interval(stragglers=1)
    timeline.now += 20 * SECOND  # Falco restarting
    timeline.falco().restart()
    timeline.interval(drop=2)
    timeline.interval()
    timeline.interval()
    # The old epoch's last straggler arrived after its snapshot: it cannot be told from
    # an alert of the new epoch, and hides one loss (an undercount, never a false loss).
    assert timeline.view().lost == 2 - 1
    timeline.now += 20 * SECOND
    timeline.falco().reload()  # no straggler before it: every loss counts
    timeline.interval(drop=3)
    timeline.interval()
    timeline.interval()
    assert timeline.view().lost == 1 + 3


def test_whole_intervals_lost_snapshots_with_them_are_counted() -> None:
    """A broken path for three intervals: their alerts and snapshots never arrive."""
    timeline = Timeline()
    for _ in range(2):
        timeline.interval()
    for _ in range(3):
        timeline.interval(drop=5, post_snapshot=False)
    for _ in range(3):
        timeline.interval(stragglers=1)
    assert timeline.view().lost == 15


def test_a_restart_and_a_reload_start_new_epochs_without_false_loss() -> None:
    """Falco restarts (counts from 0, new start_ts), then reloads its rules: nothing is lost
    at either, and a loss in the new epoch is still counted, once."""
    timeline = Timeline()
    for _ in range(3):
        timeline.interval(stragglers=1)
    timeline.falco().restart()
    for _ in range(3):
        timeline.interval(early=1)
    assert timeline.view().lost == 0
    timeline.falco().reload()
    timeline.interval()
    timeline.interval(drop=4)
    timeline.interval()
    timeline.interval()
    assert timeline.view().lost == 4
    assert timeline.view().raised == timeline.falco().raised


def test_two_falcos_are_kept_apart() -> None:
    """Two Falcos posting to one exporter: the one that drops is the one that loses."""
    timeline = Timeline()
    for minute in range(6):
        timeline.interval("node-1", drop=1 if minute == 2 else 0)
        timeline.interval("node-2", stragglers=1)
    assert (timeline.view("node-1").lost, timeline.view("node-2").lost) == (1, 0)


def test_queue_drops_inside_falco_are_lost_alerts() -> None:
    """Alerts Falco matched and dropped from its own full queue never reach us: lost, and
    its queue's drop count is exported."""
    timeline = Timeline()
    timeline.interval()
    falco = timeline.falco()
    falco.dropped_from_queue(ALERT)
    falco.dropped_from_queue(ALERT)
    timeline.interval()
    timeline.interval()
    assert timeline.view().lost == 2
    families = Families()
    timeline.ledger.collect(families)
    samples = {family.spec.name: family.samples for family in families}
    assert samples["falco_exporter_falco_outputs_queue_drops"] == [(("node-7",), 2)]


def test_a_burst_before_the_first_snapshot_defers_the_baseline() -> None:
    """More alerts in the second before the first snapshot than it can bound: no count
    from it; the next snapshot gives the baseline, and a loss after it is counted."""
    timeline = Timeline()
    timeline.interval(early=20)  # 20 alerts posted in the millisecond before it
    assert timeline.view().lost is None
    timeline.interval()
    timeline.interval(drop=1)
    timeline.interval()
    timeline.interval()
    assert timeline.view().lost == 1


def test_without_accounting_falcos_counts_are_kept_and_no_loss_is_claimed() -> None:
    """Replicas sharing a Falco's posts (accounting off): raised and received are
    exported, alerts_lost is not."""
    timeline = Timeline(ledger=DeliveryLedger(accounting=False))
    for _ in range(3):
        timeline.interval(drop=2)
    families = Families()
    timeline.ledger.collect(families)
    samples = {family.spec.name: family.samples for family in families}
    assert samples["falco_exporter_alerts_lost"] == []
    assert samples["falco_exporter_falco_alerts_raised"] == [(("node-7",), 15)]
    assert samples["falco_exporter_falco_alerts_received"] == [(("node-7",), 9)]
    assert samples["falco_exporter_delivery_accounting"] == [((), 0.0)]


def test_the_falcos_tracked_are_bounded_and_silent_ones_forgotten() -> None:
    """Past --delivery-max-falcos a new hostname is not tracked (counted); one silent for an
    hour is forgotten, and makes room."""
    clock = [0.0]
    reports: list[tuple[str, str]] = []
    ledger = DeliveryLedger(
        max_falcos=2,
        clock=lambda: clock[0],
        report=lambda what, host, _: reports.append((what, host)),
    )
    timeline = Timeline(ledger=ledger)
    timeline.interval("node-1")
    timeline.interval("node-2")
    timeline.interval("forged")
    assert [view.hostname for view in ledger.views()] == ["node-1", "node-2"]
    assert ledger.untracked == 6  # its five alerts and its snapshot
    assert ("untracked", "forged") in reports
    clock[0] = 1800.0
    timeline.interval("node-2")
    clock[0] = 3700.0
    ledger.forget_silent()
    timeline.interval("node-3")
    assert [view.hostname for view in ledger.views()] == ["node-2", "node-3"]
    assert ledger.forgotten == 1


@pytest.mark.parametrize(
    ("remove", "named"),
    [("falco.rules.matches_total", "falco.rules.matches_total"), ("falco.start_ts", "start_ts")],
)
def test_a_snapshot_without_the_counts_is_counted_and_named(remove: str, named: str) -> None:
    """Falco with rules counters off sends snapshots without matches_total: counted as an
    alert, refused by the ledger with the field named, and counted as unreadable."""
    reports: list[str] = []
    ledger = DeliveryLedger(report=lambda what, host, detail: reports.append(detail))
    snapshot = FalcoCounts("node-7").snapshot()
    del snapshot["output_fields"][remove]
    ledger.observe(event_from_json(snapshot))
    assert ledger.unreadable == 1
    assert named in reports[0]


def test_long_hostnames_are_cut_like_labels() -> None:
    """A forged 100 KB hostname is kept as its first characters, as falco_events cuts it."""
    timeline = Timeline(ledger=DeliveryLedger(max_label_length=64))
    timeline.interval("x" * 100_000)
    (view,) = timeline.ledger.views()
    assert len(view.hostname) == 64
    assert view.hostname.endswith("…[truncated]")


def test_alerts_under_forged_hostnames_cannot_crowd_out_a_falco_that_reports() -> None:
    """The table full of hostnames that sent alerts only: a Falco's snapshot takes the place
    of the least recently seen of them, and only Falcos that report have series."""
    ledger = DeliveryLedger(max_falcos=3, wall=lambda: START / 1e9)
    timeline = Timeline(ledger=ledger)
    for name in ("forged-1", "forged-2", "forged-3"):
        timeline.post(timeline.falco(name).matched(ALERT))
    timeline.post(timeline.falco("forged-1").matched(ALERT))  # seen again: kept longer
    timeline.interval("node-7")
    timeline.interval("node-7", drop=1)
    timeline.interval("node-7")
    assert sorted(view.hostname for view in ledger.views()) == ["forged-1", "forged-3", "node-7"]
    assert ledger.untracked == 0
    assert ledger.forgotten == 1
    families = Families()
    ledger.collect(families)
    samples = {family.spec.name: family.samples for family in families}
    assert samples["falco_exporter_falco_alerts_received"] == [(("node-7",), 14)]
    assert samples["falco_exporter_alerts_lost"] == [(("node-7",), 1)]


def go_time(text: str) -> str:
    """A time as falcosidekick re-encodes Falco's (Go's RFC 3339 with nanoseconds): the
    fraction's trailing zeros dropped, and the dot too on a whole second."""
    whole, _, fraction = text[:-1].partition(".")
    fraction = fraction.rstrip("0")
    return f"{whole}.{fraction}Z" if fraction else f"{whole}Z"


def test_times_reencoded_by_sidekick_order_as_falcos_own() -> None:
    """The ledger places alerts against snapshots by time, compared as Falco's fixed-width
    text. Sidekick's shorter forms ("...:30Z", "...:30.5Z") must order as the nine-digit
    times they stand for: "...:30Z" before "...:30.200000000Z", not after it."""
    falcos = [
        "2026-01-01T00:00:30.000000000Z",
        "2026-01-01T00:00:30.200000000Z",
        "2026-01-01T00:00:30.500000000Z",
        "2026-01-01T00:00:31.000000000Z",
        "2026-01-01T00:00:31.001000000Z",
    ]

    def key(text: str) -> object:
        return _time_key(event_from_json({**ALERT, "output": "x", "time": text}))

    for falco_text in falcos:
        assert key(go_time(falco_text)) == key(falco_text), falco_text
    shuffled = [go_time(text) for text in reversed(falcos)]
    assert sorted(shuffled, key=key) == [go_time(text) for text in falcos]  # type: ignore[arg-type]
