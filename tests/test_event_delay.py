"""How late Falco's alerts are (#25): falco_exporter_event_delay_seconds{input}, the clock skew
counter and the events without a time; on values, on an exporter in this process, and on a
real exporter process fed by curl."""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.core.delivery import DeliveryLedger
from exporter.core.event import FalcoEvent
from exporter.core.event_delay import BUCKETS, EventDelays
from exporter.core.event_time import NO_SECOND, read_text, read_timestamp
from exporter.core.falco_snapshot import SNAPSHOT_RULE
from exporter.core.metrics import Families
from exporter.exposition.text import render_families
from exporter.falcopb import outputs_pb2
from exporter.inputs.falco_json.event import event_from_json
from exporter.simulator.certs import CertPaths
from exporter.simulator.falco_counts import FalcoCounts
from exporter.simulator.server import SimulatedFalco
from tests.support import (
    EVENT,
    ExporterFor,
    MakeExporter,
    counted,
    curl,
    eventually,
    fetch,
    input_url,
    post,
    response,
    tls_of,
    total_events,
)
from tests.support.processes import LOCAL_PORTS, running

# A whole second, so that delays in the unit tests are exact in floating point.
NOW = 1_764_000_000.0
SECOND = 1_000_000_000


def iso(time_ns: int) -> str:
    """Falco's JSON `time` for a moment in ns."""
    seconds, nanos = divmod(time_ns, SECOND)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


def ago(seconds: float, now_ns: int | None = None) -> str:
    """Falco's text for `seconds` before now (NOW, or the real clock's `now_ns`)."""
    base = int(NOW) * SECOND if now_ns is None else now_ns
    return iso(base - int(seconds * SECOND))


def alert(when: object) -> FalcoEvent:
    """An alert of the HTTP input with this `time`."""
    return FalcoEvent("Rule", 4, "syscall", "node-1", (), {}, time=when)


def histogram(text: str, name: str = "falco_exporter_event_delay_seconds") -> dict[str, Any]:
    """Per input: {"buckets": {le: count}, "sum": s, "count": c}, from exposition text."""
    found: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        for sample in family.samples:
            one = found.setdefault(sample.labels["input"], {"buckets": {}})
            if sample.name.endswith("_bucket"):
                one["buckets"][sample.labels["le"]] = sample.value
            elif sample.name.endswith("_sum"):
                one["sum"] = sample.value
            elif sample.name.endswith("_count"):
                one["count"] = sample.value
    return found


def counter_values(text: str, name: str) -> dict[str, float]:
    """A counter family by input (name without `_total`)."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == name:
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    values[sample.labels["input"]] = sample.value
    return values


def rendered(delays: EventDelays) -> str:
    """The delay families as a scrape writes them."""
    families = Families()
    delays.collect(families)
    return render_families(families)


def only_bucket(buckets: dict[str, float]) -> str:
    """The lowest bucket whose count is above that of the bucket below it (one observation)."""
    previous = 0.0
    for le, count in buckets.items():
        if count > previous:
            return le
        previous = count
    raise AssertionError(f"no observation in {buckets}")


def test_two_seconds_late_lands_in_the_2_5_s_bucket() -> None:
    """An alert whose time is 2 s before its arrival counts in le=2.5 and above, not le=1.0."""
    delays = EventDelays(wall=lambda: NOW)
    counted_events: list[object] = []
    observe = delays.observing_text("http", counted_events.append)
    observe(alert(ago(2)))
    [http] = histogram(rendered(delays)).values()
    assert counted_events
    assert only_bucket(http["buckets"]) == "2.5"
    assert http["buckets"]["1.0"] == 0
    assert http["buckets"]["+Inf"] == 1
    assert http["sum"] == 2.0
    assert http["count"] == 1


def test_a_bound_is_inclusive_and_over_five_minutes_is_only_in_inf() -> None:
    """`le` means at most: 0.5 s exactly is in le=0.5; 301 s is only in +Inf; every bucket
    from 1 ms to 5 min is there."""
    delays = EventDelays(wall=lambda: NOW)
    observe = delays.observing_text("http", lambda event: None)
    observe(alert(ago(0.5)))
    observe(alert(ago(301)))
    [http] = histogram(rendered(delays)).values()
    assert list(http["buckets"]) == [repr(bound) for bound in BUCKETS] + ["+Inf"]
    assert BUCKETS[0] == 0.001
    assert BUCKETS[-1] == 300.0
    assert http["buckets"]["0.25"] == 0
    assert http["buckets"]["0.5"] == 1
    assert http["buckets"]["300.0"] == 1
    assert http["buckets"]["+Inf"] == 2
    assert http["sum"] == 301.5


def test_a_time_ahead_of_our_clock_counts_as_zero_and_as_negative() -> None:
    """Clock skew: a time 3 s in our future is in the lowest bucket, adds 0 to the sum (which
    must never fall) and counts in falco_exporter_event_delay_negative_total."""
    delays = EventDelays(wall=lambda: NOW)
    observe = delays.observing_text("http", lambda event: None)
    observe(alert(ago(-3)))
    observe(alert(ago(0.0005)))
    text = rendered(delays)
    [http] = histogram(text).values()
    assert http["buckets"]["0.001"] == 2
    assert http["count"] == 2
    assert http["sum"] == pytest.approx(0.0005, abs=1e-6)
    assert counter_values(text, "falco_exporter_event_delay_negative") == {"http": 1}


@pytest.mark.parametrize(
    "when",
    [
        "",
        None,
        42,
        "yesterday",
        "2026-11-27T10:15:02",  # no zone: whose clock?
        "2026-13-27T10:15:02.123456789Z",  # month 13
        "2026-11-27T10:15:02.12345678xZ",
        "2026-11-27T10:15:02.123456789Q",
        "2026-11-27T10:15:02.\u00b2\u00b2\u00b2\u00b2\u00b2\u00b2\u00b2\u00b2\u00b2Z",
    ],
)
def test_an_event_without_a_readable_time_is_counted_but_not_observed(when: object) -> None:
    """The event still reaches the counter (falco_events), is not in the histogram, and is in
    falco_exporter_events_without_time_total."""
    delays = EventDelays(wall=lambda: NOW)
    counted_events: list[object] = []
    observe = delays.observing_text("http", counted_events.append)
    observe(alert(ago(1)))  # the second before it is known: the in-line path is tried too
    observe(alert(when))
    text = rendered(delays)
    assert len(counted_events) == 2
    assert histogram(text)["http"]["count"] == 1
    assert counter_values(text, "falco_exporter_events_without_time") == {"http": 1}


def test_times_from_several_seconds_in_any_order_are_each_read_right() -> None:
    """The second remembered between events never leaks into another second's delay."""
    delays = EventDelays(wall=lambda: NOW)
    observe = delays.observing_text("http", lambda event: None)
    for seconds in (0.2, 7, 0.3, 70, 7.5, 0.002):
        observe(alert(ago(seconds)))
    [http] = histogram(rendered(delays)).values()
    assert http["sum"] == pytest.approx(85.002, abs=1e-6)
    buckets = http["buckets"]
    assert (buckets["0.0025"], buckets["0.25"], buckets["0.5"]) == (1, 2, 3)
    assert (buckets["10.0"], buckets["60.0"], buckets["120.0"]) == (5, 5, 6)


def test_other_iso_8601_times_with_a_zone_are_read() -> None:
    """Another sender's text (fewer digits, an offset) is read the slow way; Falco's exactly."""
    epoch = 1_534_527_348
    assert read_text("2018-08-17T17:35:48.514632619Z", NO_SECOND)[0] == pytest.approx(
        epoch + 0.514632619, abs=1e-6
    )
    assert read_text("2018-08-17T17:35:48.5Z", NO_SECOND)[0] == epoch + 0.5
    assert read_text("2018-08-17T19:35:48+02:00", NO_SECOND)[0] == epoch
    assert read_text("2018-08-17T17:35:48", NO_SECOND)[0] is None


def test_a_grpc_timestamp_is_read_and_an_unset_one_is_no_time() -> None:
    """A decoded message's Timestamp gives the delay; one left at 0 counts as without time."""
    delays = EventDelays(wall=lambda: NOW)
    observe = delays.observing_timestamp("grpc", lambda event: None)
    timed = response()
    timed.time.FromNanoseconds(int(NOW) * SECOND - 40 * SECOND)
    for message in (timed, response()):
        observe(outputs_pb2.response.FromString(message.SerializeToString()))
    text = rendered(delays)
    [grpc] = histogram(text).values()
    assert only_bucket(grpc["buckets"]) == "60.0"
    assert grpc["sum"] == 40.0
    assert counter_values(text, "falco_exporter_events_without_time") == {"grpc": 1}
    assert read_timestamp("") is None
    assert read_timestamp(timed.time) == NOW - 40


def test_metrics_snapshots_are_observed_like_alerts() -> None:
    """A metrics snapshot waits in the same output queue: its delay is counted too."""
    delays = EventDelays(wall=lambda: NOW)
    observe = delays.observing_text("http", lambda event: None)
    snapshot = event_from_json(FalcoCounts("node-1").snapshot(int(NOW) * SECOND - 12 * SECOND))
    assert snapshot.rule == SNAPSHOT_RULE
    observe(snapshot)
    [http] = histogram(rendered(delays)).values()
    assert only_bucket(http["buckets"]) == "30.0"
    assert http["sum"] == 12.0


def test_each_falcos_last_snapshot_gives_its_nodes_delay() -> None:
    """Per node, under the delivery ledger's bound: how late each Falco's last metrics
    snapshot arrived (negative when its clock is ahead); a Falco without one has none."""
    ledger = DeliveryLedger(wall=lambda: NOW)
    base = int(NOW) * SECOND
    for hostname, late in (("node-1", 7 * SECOND), ("node-2", -SECOND // 2)):
        ledger.observe(event_from_json(FalcoCounts(hostname).snapshot(base - late)))
    ledger.observe(alert(ago(1)))  # node-1's alert: no snapshot of another Falco
    ledger.observe(event_from_json({**EVENT, "hostname": "node-3", "time": ago(1)}))
    families = Families()
    ledger.collect(families)
    delays: dict[str, float] = {}
    for family in text_string_to_metric_families(render_families(families)):
        if family.name == "falco_exporter_falco_snapshot_delay_seconds":
            delays = {s.labels["hostname"]: s.value for s in family.samples}
    assert delays == {"node-1": 7.0, "node-2": -0.5}


def test_counts_stay_exact_across_producer_threads_during_scrapes() -> None:
    """Four producers (as four gRPC targets), each on its own thread with its own observer,
    while scrapes read: every event is in the count, none twice, and a scrape never sees
    a bucket above the one above it."""
    delays = EventDelays(wall=lambda: NOW)
    per_thread, threads = 20_000, 4
    times = [ago(seconds) for seconds in (0.003, 0.4, 2, 50)]
    start = threading.Barrier(threads + 1)

    def produce(index: int) -> None:
        observe = delays.observing_text("grpc", lambda event: None)
        events = [alert(times[(index + n) % 4]) for n in range(per_thread)]
        start.wait()
        for event in events:
            observe(event)

    workers = [threading.Thread(target=produce, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    while any(worker.is_alive() for worker in workers):
        [view] = delays.views()
        assert list(view.cumulative) == sorted(view.cumulative)
    for worker in workers:
        worker.join()
    [view] = delays.views()
    assert view.cumulative[-1] == per_thread * threads
    expected_sum = per_thread * threads / 4 * (0.003 + 0.4 + 2 + 50)
    assert view.sum == pytest.approx(expected_sum, rel=1e-7)  # floats: ~0.2 µs per delay


def test_a_gone_producer_keeps_what_it_observed() -> None:
    """A target removed (its sink dropped) leaves its counts in the totals, and is forgotten."""
    delays = EventDelays(wall=lambda: NOW)
    observe = delays.observing_timestamp("grpc", lambda event: None)
    message = response()
    message.time.FromNanoseconds(int(NOW) * SECOND - SECOND)
    for _ in range(3):
        observe(message)
    assert delays.views()[0].cumulative[-1] == 3
    del observe
    gc.collect()
    again = delays.observing_timestamp("grpc", lambda event: None)
    again(message)
    [view] = delays.views()
    assert view.cumulative[-1] == 4
    assert view.sum == 4.0
    assert len(delays._inputs["grpc"].producers) == 1


def test_a_histogram_family_refuses_plain_samples() -> None:
    """A histogram's samples go through add_histogram, whose last bucket is +Inf."""
    delays = EventDelays()
    delays.declare("http")
    families = Families()
    delays.collect(families)
    [delay, *_] = list(families)
    with pytest.raises(ValueError, match="histogram"):
        delay.add(("http",), 1)
    with pytest.raises(ValueError, match=r"\+Inf"):
        delay.add_histogram(("http",), ((1.0, 1),), 0.0)


async def test_http_input_of_an_exporter_observes_each_post(make_exporter: MakeExporter) -> None:
    """Posted as Falco posts: 2 s late, from the future, without a time; each counted in
    falco_events, each where it belongs in the delay families."""
    exporter = await make_exporter(http_input_address="127.0.0.1:0")
    url = f"http://127.0.0.1:{exporter.main_http.port}/metrics"
    for when in (ago(2, time.time_ns()), ago(-60, time.time_ns()), "garbage"):
        assert (await post(input_url(exporter), json.dumps({**EVENT, "time": when})))[0] == 200
    await counted(exporter, 3)
    _, text, _ = await fetch(url)
    http = histogram(text)["http"]
    assert http["count"] == 2
    assert http["buckets"]["0.001"] == 1
    assert http["buckets"]["1.0"] == 1
    assert http["buckets"]["2.5"] == 2
    assert counter_values(text, "falco_exporter_event_delay_negative") == {"http": 1}
    assert counter_values(text, "falco_exporter_events_without_time") == {"http": 1}


async def test_grpc_input_observes_each_message(
    falco: SimulatedFalco, exporter_for: ExporterFor
) -> None:
    """The simulated Falco sends alerts 2 s late (one as a Falco before 0.31 sends it, with
    only the deprecated source) and one without a time: the gRPC input's histogram."""
    exporter = await exporter_for(falco)
    late = time.time_ns() - 2 * SECOND
    messages = [response(), response(), response(source="", source_deprecated=0), response()]
    for message in messages[:3]:
        message.time.FromNanoseconds(late)
    falco.publish(messages)
    await counted(exporter, 4)
    _, text, _ = await fetch(f"http://127.0.0.1:{exporter.main_http.port}/metrics")
    grpc = histogram(text)["grpc"]
    assert grpc["count"] == 3
    assert grpc["buckets"]["1.0"] == 0
    assert grpc["buckets"]["2.5"] == 3
    assert counter_values(text, "falco_exporter_events_without_time") == {"grpc": 1}
    assert "http" not in histogram(text)


async def test_three_grpc_targets_on_their_threads_count_every_delay(
    certs: CertPaths, make_exporter: MakeExporter
) -> None:
    """Three Falcos, each read by its own reader thread into the one gRPC histogram: every
    one of their 900 alerts, 2 s late, is in it once."""
    three = [SimulatedFalco(hostname=f"node-{n}") for n in range(3)]
    try:
        for falco in three:
            await falco.start("127.0.0.1:0", tls_of(certs))
            late = time.time_ns() - 2 * SECOND
            messages = [response() for _ in range(300)]
            for message in messages:
                message.time.FromNanoseconds(late)
            falco.publish(messages)
        targets = [f"localhost:{falco.address.rsplit(':', 1)[1]}" for falco in three]
        exporter = await make_exporter(
            targets=targets,
            client_cert=str(certs.client_cert),
            client_key=str(certs.client_key),
            client_ca=str(certs.ca),
        )
        await counted(exporter, 900, timeout=60)
        _, text, _ = await fetch(f"http://127.0.0.1:{exporter.main_http.port}/metrics")
        grpc = histogram(text)["grpc"]
        assert grpc["count"] == 900
        assert grpc["buckets"]["1.0"] == 0
        assert grpc["buckets"]["2.5"] == 900
    finally:
        for falco in three:
            await falco.stop()


async def test_a_real_exporter_process_fed_by_curl() -> None:
    """`curl` posts to the HTTP input of `python -m exporter`: an alert 2 s late moves the
    le=2.5 bucket and not le=1.0, one 5 s ahead counts as negative, one without a time only
    in falco_events and the without-time counter."""
    async with running("--http-input-address", "127.0.0.1:0", *LOCAL_PORTS) as exporter:
        serving = await exporter.wait_for_log("serving HTTP")
        metrics = f"http://127.0.0.1:{serving['metrics_port']}/metrics"
        target = f"http://127.0.0.1:{serving['http_input_port']}/"

        async def send(when: object) -> None:
            document = {**EVENT, "time": when} if when is not None else dict(EVENT)
            if when is None:
                del document["time"]
            body = json.dumps(document)
            args = ("-H", "Content-Type: application/json", "--data-binary", body, target)
            result = await asyncio.to_thread(curl, *args)
            assert result.stdout == '{"accepted":1}'

        async def scraped() -> str:
            return (await fetch(metrics))[1]

        await send(ago(2, time.time_ns()))
        await eventually(lambda: _count_is(scraped, 1), message="the late alert observed")
        http = histogram(await scraped())["http"]
        assert (http["buckets"]["1.0"], http["buckets"]["2.5"], http["buckets"]["+Inf"]) == (
            0,
            1,
            1,
        )
        assert 2.0 <= http["sum"] < 2.5

        await send(ago(-5, time.time_ns()))
        await send(None)
        await eventually(
            lambda: _events_are(serving["metrics_port"], 3), message="falco_events == 3"
        )
        text = await scraped()
        http = histogram(text)["http"]
        assert http["count"] == 2
        assert http["buckets"]["0.001"] == 1
        assert 2.0 <= http["sum"] < 2.5  # the future alert added 0
        assert counter_values(text, "falco_exporter_event_delay_negative") == {"http": 1}
        assert counter_values(text, "falco_exporter_events_without_time") == {"http": 1}


async def _count_is(scraped: Callable[[], Awaitable[str]], count: int) -> bool:
    found: float | None = histogram(await scraped()).get("http", {}).get("count")
    return found == count


async def _events_are(port: int, count: int) -> bool:
    return await total_events(port) == count
