"""Exact counting under concurrency: reader threads count while the sweep expires series.

gRPC readers count on threads of their own and the HTTP input on the event loop's; the
series TTL's sweep and the scrapes run beside them. With a thread switch every
microsecond, every event sent must be accounted for afterwards: either still in
`falco_events`, or in a series the sweep removed, with the count it had then.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator

import pytest

from exporter.core.cardinality import Removal, SeriesLimits
from exporter.core.counter import EventCounter
from exporter.core.labels import OVERFLOW_VALUE, build_label_set
from exporter.exposition.falco_events import FalcoEventsText
from exporter.inputs.http.site import HttpInputSite
from tests.support import FakeClock, parse_metrics, response

PODS = 120
EVENTS_PER_READER = 40_000
HTTP_BODIES = 2_000
EVENTS_PER_BODY = 10


@pytest.fixture
def fast_thread_switches() -> Iterator[None]:
    """Switch threads every microsecond, where races show; restored afterwards."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("fast_thread_switches")
def test_every_event_is_accounted_for_while_series_expire_and_fold() -> None:
    """Two gRPC readers and the HTTP input count at three priorities; the sweep expires, the
    limit folds and evicts lower priorities for higher ones; nothing is lost or doubled."""
    clock = FakeClock()
    limits = SeriesLimits(max_series=60, per_pod=2, max_label_length=256, ttl=1.0)
    counter = EventCounter(build_label_set(), limits=limits, clock=clock)
    http_input = HttpInputSite(counter.shard().add, 1 << 20)
    done = threading.Event()
    evicted_by_sweep = 0
    sweeps = 0

    def grpc_reader(offset: int, priority: int) -> None:
        add = counter.shard().add
        messages = [
            response(
                priority=priority, fields={"k8s.ns.name": "default", "k8s.pod.name": f"pod-{n}"}
            )
            for n in range(PODS)
        ]
        for number in range(EVENTS_PER_READER):
            # Most events on a few busy pods; every pod now and then, so some go idle.
            pod = number % 7 if number % 5 else (number * 31 + offset) % PODS
            add(messages[pod])

    def http_sender() -> None:
        for number in range(HTTP_BODIES):
            body = "\n".join(
                json.dumps(
                    {
                        "rule": "Terminal shell in container",
                        "priority": "Warning",
                        "output_fields": {"k8s.pod.name": f"pod-{(number + line) % PODS}"},
                    }
                )
                for line in range(EVENTS_PER_BODY)
            )
            outcome = http_input.ingest(body)
            assert (outcome.accepted, outcome.refused) == (EVENTS_PER_BODY, {})

    def sweeper() -> None:
        nonlocal evicted_by_sweep, sweeps
        while not done.is_set():
            # Read before the totals: an eviction for room in between is then in the change.
            evicted_events = sum(counter.stats.evicted_events.values())
            before = counter.totals()
            clock.now += 0.6
            counter.expire_idle()
            after = counter.totals()
            # A series gone was idle: it held what it held before the sweep (one that
            # came back at once is in `after` again, so `gone` can only fall short).
            gone = sum(count for key, count in before.items() if key not in after)
            assert gone <= sum(counter.stats.evicted_events.values()) - evicted_events
            evicted_by_sweep += gone
            parse_metrics(
                FalcoEventsText(counter).render()
            )  # a scrape meanwhile: valid, and it changes nothing
            sweeps += 1

    producers = [
        threading.Thread(target=grpc_reader, args=(0, 6)),
        threading.Thread(target=grpc_reader, args=(13, 5)),
        threading.Thread(target=http_sender),
    ]
    sweeping = threading.Thread(target=sweeper)
    sweeping.start()
    for thread in producers:
        thread.start()
    for thread in producers:
        thread.join()
    done.set()
    sweeping.join()

    sent = 2 * EVENTS_PER_READER + HTTP_BODIES * EVENTS_PER_BODY
    remaining = sum(counter.totals().values())
    assert sweeps > 10, "the sweep hardly ran beside the readers"
    stats = counter.stats
    assert stats.evicted[Removal.TTL] > 0, "no series expired: the test proved nothing"
    assert stats.evicted[Removal.ROOM] > 0, "nothing was evicted for a higher priority"
    assert sum(stats.folded.values()) > 0, "no series folded: the limit was never reached"
    assert evicted_by_sweep > 0
    assert remaining + sum(stats.evicted_events.values()) == sent
    families = parse_metrics(FalcoEventsText(counter).render())["falco_events"]
    assert sum(families.values()) == remaining
    unfolded = [key for key in families if dict(key)["k8s_pod_name"] != OVERFLOW_VALUE]
    assert len(unfolded) <= 60
