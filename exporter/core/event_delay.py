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
- **No host label.** The label set is bounded by the inputs (two); docs/metrics.md says
  how to see one node's backlog.

Per event the cost is one clock read, the time parsed (JSON's text: one slice compared
with the last second seen, the nanoseconds read; a Timestamp: two attributes), a bisect
and three additions under the input's lock. The lock keeps the counts exact when several
gRPC reader threads count into one input's histogram; it is held for the additions only.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass

from exporter.core.event import Event, EventSink
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

# Reads an event's time as seconds since the epoch, or None when it has none.
TimeReader = Callable[[object], "float | None"]

_UTC = dt.UTC


def text_time_reader() -> TimeReader:
    """A reader of Falco's JSON `time`, RFC 3339 with nanoseconds in UTC
    (`2018-08-17T17:35:48.514632619Z`); any other ISO 8601 text with a zone is read the slow
    way; text without a zone, or not a time, is None.

    Alerts come in bursts within one second, so the date and clock of the last second seen
    are kept (one tuple, replaced whole: safe on any thread) and only the nanoseconds are
    read per event.
    """
    last = ("", 0)

    def read(value: object) -> float | None:
        nonlocal last
        if type(value) is not str:
            return None
        if len(value) == 30 and value[19] == "." and value[29] == "Z":
            whole, nanos = value[:19], value[20:29]
            if nanos.isdigit():
                seen, epoch = last
                if whole != seen:
                    found = _epoch(whole)
                    if found is None:
                        return None
                    epoch = found
                    last = (whole, epoch)
                try:
                    return epoch + int(nanos) * 1e-9
                except ValueError:  # a digit of another script ('\u00b2')
                    return None
        return _any_iso_8601(value)

    return read


def _epoch(whole: str) -> int | None:
    """`YYYY-MM-DDTHH:MM:SS` in UTC as seconds since the epoch, or None."""
    if not whole.isascii():
        return None
    try:
        return int(dt.datetime.fromisoformat(whole).replace(tzinfo=_UTC).timestamp())
    except ValueError:
        return None


def _any_iso_8601(value: str) -> float | None:
    """Another sender's ISO 8601 time, with a zone; None without one (whose clock?)."""
    if not value.isascii() or len(value) > 64:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.timestamp() if parsed.tzinfo is not None else None


def timestamp_time(value: object) -> float | None:
    """A gRPC `google.protobuf.Timestamp` as seconds; None when unset (0) or absent."""
    seconds = getattr(value, "seconds", None)
    if type(seconds) is not int:
        return None
    nanos = getattr(value, "nanos", 0)
    if not seconds and not nanos:
        return None
    return seconds + nanos * 1e-9


class DelayHistogram:
    """One input's delays: bucket counts (not cumulative), their sum, and the two counters."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts = [0] * (len(BUCKETS) + 1)  # the last one: over 5 min
        self.sum = 0.0
        self.negative = 0
        self.without_time = 0

    def snapshot(self) -> tuple[list[int], float, int, int]:
        """A consistent copy: (counts, sum, negative, without time)."""
        with self.lock:
            return list(self.counts), self.sum, self.negative, self.without_time


@dataclass(frozen=True)
class DelayView:
    """One input's histogram as a scrape reads it."""

    input: str
    cumulative: tuple[int, ...]  # per bucket of BUCKETS, then +Inf (the count)
    sum: float
    negative: int
    without_time: int


class EventDelays:
    """Every input's delay histogram; observers are safe to call from any thread."""

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        """`wall` is the clock arrivals are read by (tests pass one they control)."""
        self._wall = wall
        self._lock = threading.Lock()
        self._inputs: dict[str, DelayHistogram] = {}

    def histogram(self, input_name: str) -> DelayHistogram:
        """The input's histogram, empty at first (it is exported from then on)."""
        with self._lock:
            found = self._inputs.get(input_name)
            if found is None:
                found = self._inputs[input_name] = DelayHistogram()
            return found

    def observing(self, input_name: str, read_time: TimeReader, sink: EventSink) -> EventSink:
        """The sink, each event it counts also observed: its delay, by `read_time`."""
        histogram = self.histogram(input_name)
        lock, counts, wall = histogram.lock, histogram.counts, self._wall
        buckets = BUCKETS

        def count_and_observe(event: Event) -> None:
            sink(event)
            at = read_time(event.time)
            if at is None:
                with lock:
                    histogram.without_time += 1
                return
            delay = wall() - at
            index = bisect_left(buckets, delay)
            with lock:
                counts[index] += 1
                if delay >= 0.0:
                    histogram.sum += delay
                else:
                    histogram.negative += 1

        return count_and_observe

    def views(self) -> list[DelayView]:
        """Every input's histogram, by input name."""
        with self._lock:
            inputs = sorted(self._inputs.items())
        views = []
        for name, histogram in inputs:
            counts, total, negative, without_time = histogram.snapshot()
            cumulative, running = [], 0
            for count in counts:
                running += count
                cumulative.append(running)
            views.append(DelayView(name, tuple(cumulative), total, negative, without_time))
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
