"""Labels users choose, and a number of series that cannot run away."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.app import Exporter
from exporter.cli import main
from exporter.simulator.server import SimulatedFalco
from tests.support import (
    ExporterFor,
    FakeClock,
    MakeExporter,
    counted,
    input_url,
    labels,
    ndjson,
    post,
    response,
    scrape,
)

BASE = {
    "hostname": "worker-1",
    "priority": "Warning",
    "rule": "Write below etc",
    "source": "syscall",
    "tags": ["filesystem"],
}


async def post_lines(exporter: Exporter, documents: list[dict[str, Any]]) -> None:
    """POST events as newline-delimited JSON to the exporter's HTTP input; all accepted."""
    status, text = await post(input_url(exporter, "/events"), ndjson(documents))
    assert status == 200, text


async def test_extra_labels_from_fields_of_every_type(make_exporter: MakeExporter) -> None:
    """Typed JSON fields become the strings gRPC carries; missing is "", null is <NA>."""
    exporter = await make_exporter(
        http_input_address="127.0.0.1:0",
        extra_labels=[
            "image=container.image.repository",
            "tty=proc.tty",
            "uid=user.loginuid",
            "ratio=x.ratio",
            "privileged=container.privileged",
            "ports=x.ports",
            "missing=not.in.output",
            "user=user.name",
        ],
    )
    await post_lines(
        exporter,
        [
            {
                **BASE,
                "output_fields": {
                    "container.image.repository": "nginx",
                    "proc.tty": 34816,
                    "user.loginuid": -1,
                    "x.ratio": 0.5,
                    "container.privileged": True,
                    "x.ports": [80, 443],
                    "user.name": None,
                },
            }
        ],
    )
    [key] = await scrape(exporter.main_http.port)
    values = dict(key)
    assert {
        name: values[name]
        for name in ("image", "tty", "uid", "ratio", "privileged", "ports", "missing", "user")
    } == {
        "image": "nginx",
        "tty": "34816",
        "uid": "-1",
        "ratio": "0.5",
        "privileged": "true",
        "ports": "80,443",
        "missing": "",
        "user": "<NA>",
    }


async def test_extra_labels_over_grpc(falco: SimulatedFalco, exporter_for: ExporterFor) -> None:
    """Over gRPC the same fields arrive as strings and give the same label values."""
    exporter = await exporter_for(
        falco, extra_labels=["image=container.image.repository", "missing=not.there"]
    )
    falco.publish(
        [response(fields={"container.image.repository": "nginx", "k8s.pod.name": "web-1"})]
    )

    await counted(exporter, 1, message="one event")
    [key] = await scrape(exporter.main_http.port)
    assert (dict(key)["image"], dict(key)["missing"]) == ("nginx", "")


async def test_dropped_label_disappears_and_series_merge(make_exporter: MakeExporter) -> None:
    """Without k8s_pod_name, two pods' events add up in one series with no such label."""
    exporter = await make_exporter(
        http_input_address="127.0.0.1:0", drop_labels=["k8s_pod_name"], priority_name_label="true"
    )
    await post_lines(
        exporter,
        [
            {**BASE, "output_fields": {"k8s.ns.name": "web", "k8s.pod.name": f"web-{n}"}}
            for n in range(3)
        ],
    )
    assert await scrape(exporter.main_http.port) == {
        labels(
            rule="Write below etc",
            priority="4",
            priority_name="Warning",
            hostname="worker-1",
            source="syscall",
            tags=",filesystem,",
            k8s_ns_name="web",
        ): 3.0,
    }


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--extra-labels", "container-image=container.image.repository"], "not a valid"),
        (["--extra-labels", "__hidden=user.name"], "reserves"),
        (["--extra-labels", "rule=user.name"], "already a label"),
        (["--extra-labels", "a=x", "--extra-labels", "a=y"], "already a label"),
        (["--extra-labels", "image"], "label_name=output.field"),
        (["--drop-labels", "pod"], "not a default label"),
    ],
)
def test_bad_label_configuration_exits_2(
    flags: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A label that cannot be is refused at start-up, naming the flag."""
    assert main(flags) == 2
    err = capsys.readouterr().err
    assert named in err
    assert "--extra-labels" in err or "--drop-labels" in err


async def test_idle_series_vanish_after_the_ttl_while_active_ones_stay(
    make_exporter: MakeExporter,
) -> None:
    """--series-ttl: a series that stopped growing leaves /metrics; a growing one stays."""
    clock = FakeClock()
    exporter = await make_exporter(clock=clock, http_input_address="127.0.0.1:0", series_ttl="10m")
    port = exporter.main_http.port

    def pods(*names: str) -> list[dict[str, Any]]:
        return [{**BASE, "output_fields": {"k8s.pod.name": name}} for name in names]

    async def pod_counts() -> dict[str, float]:
        return {dict(key)["k8s_pod_name"]: value for key, value in (await scrape(port)).items()}

    async def after_a_sweep() -> dict[str, float]:
        exporter.counter.expire_idle()  # the periodic sweep's tick, on the test's clock
        return await pod_counts()

    await post_lines(exporter, pods("active", "idle"))
    assert await after_a_sweep() == {"active": 1.0, "idle": 1.0}
    clock.now += 300
    await post_lines(exporter, pods("active"))
    assert await after_a_sweep() == {"active": 2.0, "idle": 1.0}  # 5 minutes idle: kept
    clock.now += 301
    await post_lines(exporter, pods("active"))
    assert await pod_counts() == {"active": 3.0, "idle": 1.0}  # a scrape never expires
    assert await after_a_sweep() == {"active": 3.0}  # idle for 10 minutes and 1 s: gone
    evicted = await scrape(port, "falco_exporter_series_evicted")
    assert list(evicted.values()) == [1.0]
    evicted_events = await scrape(port, "falco_exporter_series_evicted_events")
    assert list(evicted_events.values()) == [1.0]

    await post_lines(exporter, pods("idle"))  # it fires again: a new series from 1
    assert await pod_counts() == {"active": 3.0, "idle": 1.0}


async def test_series_limit_folds_new_pods_and_loses_no_event(
    make_exporter: MakeExporter,
) -> None:
    """--max-series 100 and 10,000 pods: never over 100 + overflow series; sum is exact."""
    exporter = await make_exporter(http_input_address="127.0.0.1:0", max_series="100")
    port = exporter.main_http.port
    sent = 0
    for batch in range(20):
        await post_lines(
            exporter,
            [
                {
                    **BASE,
                    "rule": f"Rule {n % 3}",
                    "output_fields": {"k8s.ns.name": f"ns-{n % 7}", "k8s.pod.name": f"pod-{n}"},
                }
                for n in range(batch * 500, (batch + 1) * 500)
            ],
        )
        sent += 500
        series = await scrape(port)
        overflow = [key for key in series if dict(key)["k8s_pod_name"] == "__overflow__"]
        assert len(series) - len(overflow) <= 100
        assert sum(series.values()) == sent

    assert sorted(dict(key)["rule"] for key in overflow) == ["Rule 0", "Rule 1", "Rule 2"]
    assert all(dict(key)["k8s_ns_name"] == "__overflow__" for key in overflow)
    folded = await scrape(port, "falco_exporter_events_folded")
    assert list(folded.values()) == [9_900.0]
    count = await scrape(port, "falco_exporter_falco_events_series")
    assert list(count.values()) == [103.0]
