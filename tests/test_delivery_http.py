"""Proof of delivery end to end: a simulated Falco keeps Falco's counts and posts its alerts
and metrics snapshots to a running exporter, as Falco's http_output does (no retry; curl
where a request must be exactly as libcurl sends it), while posts are refused, dropped on
the way, and the exporter restarts.
"""

from __future__ import annotations

import asyncio
import json

from exporter.app import Exporter
from tests.support import (
    LogLines,
    MakeExporter,
    curl,
    eventually,
    fetch,
    free_port,
    input_url,
    labels,
    parse_metrics,
)
from tests.support.falco_poster import ALERT, SECOND, Falco


async def delivery(exporter: Exporter, hostname: str = "node-7") -> dict[str, float]:
    """The exporter's delivery samples for one Falco, by family (without the prefix, and
    as prometheus_client names counters, without `_total`)."""
    _, body, _ = await fetch(f"http://127.0.0.1:{exporter.main_http.port}/metrics")
    found: dict[str, float] = {}
    for name, samples in parse_metrics(body).items():
        value = samples.get(labels(hostname=hostname))
        if value is not None and name.startswith("falco_exporter_"):
            found[name.removeprefix("falco_exporter_")] = value
    return found


async def test_alerts_the_exporter_refused_or_never_got_are_counted_lost_exactly(
    make_exporter: MakeExporter, logs: LogLines
) -> None:
    """An alert over --http-input-max-body (answered 413) and two never posted: 3 lost, while
    a straggler (counted before a snapshot, posted after it) is not; the log says so."""
    exporter = await make_exporter(http_input_address="127.0.0.1:0", http_input_max_body="4KiB")
    falco = Falco(input_url(exporter))
    assert await falco.snapshot() == 200  # the baseline
    assert await falco.alerts(4) == [200] * 4
    falco.now += SECOND
    too_large = falco.counts.matched({**ALERT, "output": "x" * 8192})
    posted = json.dumps(too_large)
    result = await asyncio.to_thread(
        curl, "-o", "/dev/null", "-w", "%{http_code}", "-H", "Content-Type: application/json",
        "--data-binary", posted, falco.url,
    )  # fmt: skip
    assert result.stdout == "413"
    await falco.alerts(2, post=False)  # a broken path
    assert await falco.snapshot() == 200
    await falco.alerts(3)
    falco.now += 60 * SECOND - SECOND
    straggler = falco.counts.matched(ALERT)  # counted, then the snapshot overtakes it
    assert await falco.post(falco.counts.snapshot()) == 200
    assert await falco.post(straggler) == 200
    assert await falco.snapshot() == 200

    found = await delivery(exporter)
    assert found["falco_alerts_raised"] == 4 + 1 + 2 + 3 + 1
    assert found["falco_alerts_received"] == 4 + 3 + 1
    assert found["alerts_lost"] == 3
    [line] = logs.matching("alerts Falco raised never reached this exporter")
    assert (line["hostname"], line["detail"], line["level"]) == (
        "node-7", "3 more, 3 in all", "error",
    )  # fmt: skip
    _, text, _ = await fetch(f"http://127.0.0.1:{exporter.main_http.port}/api/live")
    [shown] = json.loads(text)["falcos"]
    assert (shown["hostname"], shown["raised"], shown["received"], shown["lost"]) == (
        "node-7", 11, 8, 3,
    )  # fmt: skip


async def test_an_exporter_restart_and_falcos_own_restart_claim_no_false_loss(
    make_exporter: MakeExporter,
) -> None:
    """Falco keeps counting while the exporter is stopped (its posts refused, lost for
    good): the new exporter takes Falco's count as its baseline and claims nothing it cannot
    know; Falco restarting is a new epoch; a second Falco's loss is its own."""
    metrics, posts = free_port(), free_port()
    flags = {"listen_address": f"127.0.0.1:{metrics}", "http_input_address": f"127.0.0.1:{posts}"}
    first = await make_exporter(**flags)
    falco = Falco(input_url(first))
    await falco.snapshot()
    await falco.alerts(3)
    await falco.snapshot()
    assert (await delivery(first))["falco_alerts_raised"] == 3
    await first.stop()

    assert await falco.alerts(4) == [None] * 4  # Falco does not retry
    second = await make_exporter(**flags)
    await falco.snapshot()
    await falco.alerts(2)
    await falco.snapshot()
    await falco.snapshot()
    found = await delivery(second)
    assert found["falco_alerts_raised"] == 9
    assert found["falco_alerts_received"] == 2
    assert found["alerts_lost"] == 0  # the 4 are Prometheus' to find (docs/delivery.md)

    falco.counts.restart()
    await falco.snapshot()
    await falco.alerts(2)
    await falco.snapshot()
    other = Falco(falco.url, hostname="node-8", now=falco.now)
    await other.snapshot()
    await other.alerts(3)
    await other.alerts(1, post=False)
    await other.snapshot()
    await other.snapshot()
    await falco.snapshot()

    found = await delivery(second)
    assert found["falco_alerts_raised"] == 2
    assert found["falco_alerts_received"] == 4
    assert found["alerts_lost"] == 0
    assert found["falco_start_time_seconds"] == falco.counts.start_ts / 1e9
    node_8 = await delivery(second, "node-8")
    assert (node_8["falco_alerts_raised"], node_8["alerts_lost"]) == (4, 1)


async def test_with_accounting_off_counts_are_exported_and_no_loss_claimed(
    make_exporter: MakeExporter,
) -> None:
    """A replica sharing Falco's posts (--delivery-accounting false) sees only some of its
    alerts: Falco's count and ours are there for PromQL, the lost counter is not."""
    exporter = await make_exporter(http_input_address="127.0.0.1:0", delivery_accounting="false")
    falco = Falco(input_url(exporter))
    await falco.snapshot()
    await falco.alerts(2)
    await falco.alerts(3, post=False)  # posted to the other replica
    await falco.snapshot()
    await falco.snapshot()

    async def exported() -> bool:
        return (await delivery(exporter)).get("falco_alerts_raised") == 5

    await eventually(exported, timeout=5, message="Falco's count")
    found = await delivery(exporter)
    assert found["falco_alerts_received"] == 2
    assert "alerts_lost" not in found
    _, body, _ = await fetch(f"http://127.0.0.1:{exporter.main_http.port}/metrics")
    assert parse_metrics(body)["falco_exporter_delivery_accounting"] == {frozenset(): 0.0}
