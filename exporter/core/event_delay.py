"""How late Falco's alerts are: the delay from an event's time to its arrival here (#25).

Falco 0.44 feeds every output from one thread, so a slow output delays every alert behind
it; the delay of each alert, from its `time` (evt.time) to the moment an input hands it
to the counter, shows that backlog. Per input (`http`, `grpc`) one histogram with fixed
buckets from 1 ms to 5 min, `falco_exporter_event_delay_seconds{input}`.

- **Clock skew.** The delay compares Falco's clock with ours. A delay below 0 (Falco's
  clock ahead) is counted as 0 s: in the lowest bucket, adding 0 to the sum (a histogram's
  `_sum` must never fall), and in `falco_exporter_event_delay_negative_total{input}`.
- **No time.** An event without a readable time (missing, empty, not Falco's format, a
  gRPC Timestamp left at 0) is counted in `falco_events` as ever, not in the histogram, and
  in `falco_exporter_events_without_time_total{input}`. So every counted event is in one of
  the two: the histogram's `_count`, or that counter.
- **Metrics snapshots are included.** A snapshot enters the same FIFO as the alerts
  (docs/falco-wire-contract.md#metrics-snapshots), so its delay is the output backlog
  alone, and it arrives every `metrics.interval` when no rule fires.
- **No host label.** The label set is bounded by the inputs (two); docs/event-delay.md says
  how to see one node's backlog.

Per event the cost is the time read (JSON's text: compared with the last second seen, its
nanoseconds read; a Timestamp: two attributes), one clock read, a bisect and two additions,
about 1 µs (docs/performance.md, "Event delay"). One producer, one set of cells, as the
counter has one shard per producer; but no lock: each producer (the HTTP input's event
loop, each gRPC target's reader thread) alone writes its cells, so no addition is lost. A
scrape copies each producer's cells in one C call (the GIL makes the copy whole), and folds
those of a producer that is gone (its sink referenced nowhere, so no call can come) into
its input's totals.
"""

from __future__ import annotations

import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass

from exporter.core.event import Event, EventSink
from exporter.core.event_time import FALCO_TEXT_LENGTH, NO_SECOND, read_text, read_timestamp
from exporter.core.metrics import PREFIX, Families, FamilySpec, Kind

# Upper bounds, seconds: 1 ms to 5 min; +Inf follows.
BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)

DELAY = FamilySpec(
    f"{PREFIX}event_delay_seconds",
    Kind.HISTOGRAM,
    "Delay from an event's time (evt.time) to its arrival here, by input: Falco's output "
    "backlog. A negative delay (clock skew) is counted as 0; events without a time are not "
    "counted here.",
    ("input",),
)
NEGATIVE = FamilySpec(
    f"{PREFIX}event_delay_negative",
    Kind.COUNTER,
    "Events whose time was ahead of this exporter's clock (clock skew), by input; counted "
    "as a delay of 0 s in falco_exporter_event_delay_seconds.",
    ("input",),
)
WITHOUT_TIME = FamilySpec(
    f"{PREFIX}events_without_time",
    Kind.COUNTER,
    "Events counted in falco_events without a readable time (missing or not Falco's "
    "format), by input; not in falco_exporter_event_delay_seconds.",
    ("input",),
)

# A producer's cells: the count of each bucket (not cumulative), over 5 min, then these.
_SUM = len(BUCKETS) + 1
_NEGATIVE = _SUM + 1
_WITHOUT_TIME = _NEGATIVE + 1
_CELLS = _WITHOUT_TIME + 1


class _InputDelays:
    """One input's producers (their cells, while their sink lives) and what the gone left."""

    def __init__(self) -> None:
        self.retired: list[float] = [0] * _CELLS
        self.producers: list[tuple[weakref.ref[EventSink], list[float]]] = []

    def totals(self) -> list[float]:
        """Every cell summed over the producers (the event delays' lock held)."""
        totals = list(self.retired)
        live = []
        for alive, cells in self.producers:
            gone = alive() is None  # first: once gone, no call can come, so the copy is final
            copy = list(cells)  # whole: one C call, under the GIL
            if gone:
                self.retired = [held + more for held, more in zip(self.retired, copy, strict=True)]
            else:
                live.append((alive, cells))
            totals = [total + more for total, more in zip(totals, copy, strict=True)]
        self.producers = live
        return totals


@dataclass(frozen=True)
class DelayView:
    """One input's histogram as a scrape reads it."""

    input: str
    cumulative: tuple[int, ...]  # per bucket of BUCKETS, then +Inf (the count)
    sum: float
    negative: int
    without_time: int


class EventDelays:
    """Every input's delay histogram. Each observer is one producer's: call it from one
    thread only (each input makes one per thread, as it takes the counter's shards)."""

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        """`wall` is the clock arrivals are read by (tests pass one they control)."""
        self._wall = wall
        self._lock = threading.Lock()
        self._inputs: dict[str, _InputDelays] = {}

    def declare(self, input_name: str) -> None:
        """Export the input's histogram from now on, empty until it observes."""
        with self._lock:
            self._inputs.setdefault(input_name, _InputDelays())

    def _cells(self, input_name: str, sink: EventSink) -> list[float]:
        cells: list[float] = [0] * _CELLS
        cells[_SUM] = 0.0
        with self._lock:
            delays = self._inputs.setdefault(input_name, _InputDelays())
            delays.producers.append((weakref.ref(sink), cells))
        return cells

    def observing_text(self, input_name: str, sink: EventSink) -> EventSink:
        """The sink, each event it counts also observed, its time Falco's JSON text."""
        wall, buckets = self._wall, BUCKETS
        seen, epoch = NO_SECOND

        def count_and_observe(event: Event) -> None:
            nonlocal seen, epoch
            sink(event)
            value = event.time
            if type(value) is str and value.startswith(seen) and len(value) == FALCO_TEXT_LENGTH:
                try:  # in line: the second is known, only its nanoseconds are read
                    nanos = int(value[20:29])
                except ValueError:
                    nanos = -1
                at = epoch + nanos * 1e-9 if nanos >= 0 and value[29] == "Z" else None
            else:
                at, (seen, epoch) = read_text(value, (seen, epoch))
            if at is None:
                cells[_WITHOUT_TIME] += 1
                return
            delay = wall() - at
            if delay >= 0.0:
                cells[bisect_left(buckets, delay)] += 1
                cells[_SUM] += delay
            else:
                cells[0] += 1
                cells[_NEGATIVE] += 1

        cells = self._cells(input_name, count_and_observe)
        return count_and_observe

    def observing_timestamp(self, input_name: str, sink: EventSink) -> EventSink:
        """The sink, each event it counts also observed, its time a gRPC Timestamp."""
        wall, buckets = self._wall, BUCKETS

        def count_and_observe(event: Event) -> None:
            sink(event)
            stamp = event.time
            try:  # in line: a decoded message's Timestamp, its two fields always ints
                at = stamp.seconds + stamp.nanos * 1e-9  # type: ignore[attr-defined]
            except AttributeError:
                at = read_timestamp(stamp)  # not a Timestamp: None
            if not at:  # None, or left at 0: unset
                cells[_WITHOUT_TIME] += 1
                return
            delay = wall() - at
            if delay >= 0.0:
                cells[bisect_left(buckets, delay)] += 1
                cells[_SUM] += delay
            else:
                cells[0] += 1
                cells[_NEGATIVE] += 1

        cells = self._cells(input_name, count_and_observe)
        return count_and_observe

    def views(self) -> list[DelayView]:
        """Every input's histogram, by input name."""
        with self._lock:
            totals = [(name, delays.totals()) for name, delays in sorted(self._inputs.items())]
        views = []
        for name, cells in totals:
            cumulative, running = [], 0
            for count in cells[:_SUM]:
                running += int(count)
                cumulative.append(running)
            views.append(
                DelayView(
                    name,
                    tuple(cumulative),
                    cells[_SUM],
                    int(cells[_NEGATIVE]),
                    int(cells[_WITHOUT_TIME]),
                )
            )
        return views

    def collect(self, families: Families) -> None:
        """The histogram and its two counters, per input."""
        bounds = (*BUCKETS, float("inf"))
        for view in self.views():
            families.add_histogram(
                DELAY, (view.input,), tuple(zip(bounds, view.cumulative, strict=True)), view.sum
            )
            families.add(NEGATIVE, (view.input,), view.negative)
            families.add(WITHOUT_TIME, (view.input,), view.without_time)
