"""Benchmark: what measuring an event's delay adds to each event (#25).

  python -m bench.event_delay [--events 1000000]

Prints a Markdown table (docs/performance.md, "Event delay"): CPU ns per event of the
counting sink alone and of the same sink observed by core/event_delay.py, for the HTTP
input's JSON text (every event in the same second, as a burst; and each in a second of its
own, the slow way) and for the gRPC input's Timestamp (a decoded message). The HTTP
input's events per CPU-second with and without it are measured by bench.http_input run
against two checkouts (--exporter-path).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

from exporter.core.counter import EventCounter
from exporter.core.event import Event
from exporter.core.event_delay import EventDelays
from exporter.falcopb import outputs_pb2
from exporter.inputs.falco_json.event import event_from_json
from exporter.simulator.events import response_from_json

SAMPLE = Path(__file__).resolve().parent.parent / "exporter/simulator/data/sample-events.jsonl"


def per_event_ns(sink: Callable[[Event], None], events: list[Event], rounds: int) -> float:
    """CPU ns per call of `sink`, over `rounds` passes of `events`."""
    started = time.process_time()
    for _ in range(rounds):
        for event in events:
            sink(event)
    return (time.process_time() - started) / (rounds * len(events)) * 1e9


def case(events: list[Event], form: str, total: int) -> float:
    """ns per event into a fresh counter's shard, observed as `form` ("": not observed)."""
    counter = EventCounter()
    sink = counter.shard().add
    if form == "text":
        sink = EventDelays().observing_text("bench", sink)
    elif form == "timestamp":
        sink = EventDelays().observing_timestamp("bench", sink)
    return per_event_ns(sink, events, max(total // len(events), 1))


def main() -> None:
    """Parse the arguments, run, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    total = parser.parse_args().events
    document = json.loads(SAMPLE.read_text().splitlines()[0])
    now = time.time_ns()
    burst: list[Event] = [event_from_json({**document, "time": _iso(now)})] * 1000
    spread: list[Event] = [
        event_from_json({**document, "time": _iso(now - i * 10**9)}) for i in range(1000)
    ]
    message = response_from_json(document)
    message.time.FromNanoseconds(now)
    decoded: list[Event] = [outputs_pb2.response.FromString(message.SerializeToString())] * 1000
    rows: list[tuple[str, list[Event], str]] = [
        ("HTTP, JSON text, a burst within one second", burst, "text"),
        ("HTTP, JSON text, each event in a new second", spread, "text"),
        ("gRPC, Timestamp of a decoded message", decoded, "timestamp"),
    ]
    print("| events | counted, ns per event | counted and delay observed, ns | added ns |")
    print("|---|---:|---:|---:|")
    for name, events, form in rows:
        alone = case(events, "", total)
        observed = case(events, form, total)
        print(f"| {name} | {alone:.0f} | {observed:.0f} | {observed - alone:.0f} |")


def _iso(time_ns: int) -> str:
    seconds, nanoseconds = divmod(time_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanoseconds:09d}Z"


if __name__ == "__main__":
    main()
