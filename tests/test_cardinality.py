"""Labels users choose, and a number of series that cannot run away."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.app import Exporter
from exporter.cli import main
from exporter.core.cardinality import TRUNCATED
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
    assert evicted == {labels(reason="ttl"): 1.0, labels(reason="room"): 0.0}
    evicted_events = await scrape(port, "falco_exporter_series_evicted_events")
    assert evicted_events == {labels(reason="ttl"): 1.0, labels(reason="room"): 0.0}

    await post_lines(exporter, pods("idle"))  # it fires again: a new series from 1
    assert await pod_counts() == {"active": 3.0, "idle": 1.0}


async def test_series_limit_folds_new_pods_and_loses_no_event(
    make_exporter: MakeExporter,
) -> None:
    """--max-series 100 without budgets, 10,000 pods of 3 rules: never over 100 series of
    their own, then one overflow series per rule; the sum is exact."""
    exporter = await make_exporter(
        http_input_address="127.0.0.1:0",
        max_series="100",
        max_series_per_rule="0",
        max_series_per_host="0",
        max_series_per_pod="0",
    )
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
    assert folded[labels(reason="capacity")] == 9_900.0
    assert sum(folded.values()) == 9_900.0
    count = await scrape(port, "falco_exporter_falco_events_series")
    assert list(count.values()) == [103.0]


def alert(rule: str, priority: str, pod: str, host: str = "worker-1", ns: str = "apps") -> Any:
    """One event of `rule` at `priority` from a pod."""
    fields = {"k8s.ns.name": ns, "k8s.pod.name": pod}
    return {**BASE, "rule": rule, "priority": priority, "hostname": host, "output_fields": fields}


async def flood(exporter: Exporter, documents: list[dict[str, Any]]) -> None:
    """Post a flood in bodies of 500 events."""
    for start in range(0, len(documents), 500):
        await post_lines(exporter, documents[start : start + 500])


def pod_of(series: dict[Any, float], rule: str) -> list[str]:
    """The pods of a rule's series on /metrics."""
    return [dict(key)["k8s_pod_name"] for key in series if dict(key)["rule"] == rule]


async def test_a_flood_confined_to_one_rule_folds_only_that_rule(
    make_exporter: MakeExporter,
) -> None:
    """5,000 junk pods under one rule fill its budget (10% of 1,000); a real alert of another
    rule keeps its pod, and the junk is one series that keeps its rule."""
    exporter = await make_exporter(http_input_address="127.0.0.1:0", max_series="1000")
    await flood(exporter, [alert("junk", "Critical", f"junk-{n}") for n in range(5000)])
    await post_lines(exporter, [alert("Terminal shell in container", "Warning", "victim")])
    series = await scrape(exporter.main_http.port)
    assert pod_of(series, "Terminal shell in container") == ["victim"]
    assert pod_of(series, "junk").count("__overflow__") == 1
    assert len(pod_of(series, "junk")) == 101
    folded = await scrape(exporter.main_http.port, "falco_exporter_events_folded")
    assert folded[labels(reason="rule")] == 4900
    assert sum(series.values()) == 5001


async def test_a_flood_from_one_pod_folds_only_that_pod(make_exporter: MakeExporter) -> None:
    """One pod posting 1,000 rules fills its budget (2% of 1,000: 20); another pod's alert of a
    new rule keeps its labels, and the pod's overflow keeps the pod."""
    exporter = await make_exporter(http_input_address="127.0.0.1:0", max_series="1000")
    await flood(exporter, [alert(f"junk {n}", "Critical", "noisy") for n in range(1000)])
    await post_lines(exporter, [alert("Curl", "Warning", "victim")])
    series = await scrape(exporter.main_http.port)
    assert pod_of(series, "Curl") == ["victim"]
    folded = [dict(key) for key in series if dict(key)["rule"] == "__overflow__"]
    assert [(key["k8s_pod_name"], key["priority"]) for key in folded] == [("noisy", "2")]
    assert sum(series.values()) == 1001


async def test_a_flood_of_lower_priority_makes_room_for_a_warning(
    make_exporter: MakeExporter,
) -> None:
    """The limit full of Informational junk from everywhere: a Warning evicts the least
    recently updated of it and keeps its pod; the evicted events stay accounted."""
    exporter = await make_exporter(http_input_address="127.0.0.1:0", max_series="100")
    junk = [
        alert(f"junk {n}", "Informational", f"junk-{n}", host=f"node-{n % 50}", ns=f"ns-{n}")
        for n in range(2000)
    ]
    await flood(exporter, junk)
    await post_lines(exporter, [alert("Curl", "Warning", "victim", host="node-7")])
    port = exporter.main_http.port
    series = await scrape(port)
    assert pod_of(series, "Curl") == ["victim"]
    evicted = await scrape(port, "falco_exporter_series_evicted_events")
    assert evicted[labels(reason="room")] == 1
    assert sum(series.values()) + sum(evicted.values()) == 2001


async def test_a_flood_of_rule_names_stays_bounded(make_exporter: MakeExporter) -> None:
    """5,000 rule names at the highest priority: the series stay within the limit plus a few
    overflow series, and every event is counted."""
    exporter = await make_exporter(http_input_address="127.0.0.1:0", max_series="100")
    await flood(
        exporter,
        [
            alert(f"rule {n}", "Emergency", f"pod-{n}", host=f"h-{n}", ns=f"ns-{n}")
            for n in range(5000)
        ],
    )
    series = await scrape(exporter.main_http.port)
    assert len(series) <= 100 + 10 + 8
    assert sum(series.values()) == 5000
    count = await scrape(exporter.main_http.port, "falco_exporter_falco_events_series")
    assert list(count.values()) == [len(series)]


async def test_long_values_are_cut_and_counted(make_exporter: MakeExporter) -> None:
    """A 500 KB rule name and pod name cost what short ones do: cut to 256, marked, counted."""
    exporter = await make_exporter(http_input_address="127.0.0.1:0")
    for _ in range(3):  # each event alone is about 1 MB: one per request
        await post_lines(exporter, [alert("R" * 500_000, "Warning", "p" * 500_000)])
    [key] = await scrape(exporter.main_http.port)
    values = dict(key)
    assert values["rule"] == "R" * (256 - len(TRUNCATED)) + TRUNCATED
    assert values["k8s_pod_name"] == "p" * (256 - len(TRUNCATED)) + TRUNCATED
    cut = await scrape(exporter.main_http.port, "falco_exporter_label_values_truncated")
    assert (cut[labels(label="rule")], cut[labels(label="k8s_pod_name")]) == (3, 3)
    assert cut[labels(label="hostname")] == 0
