"""A real Prometheus server scrapes the exporter, and promtool lints what it serves.

Skipped only when the `prometheus` binary is missing and REQUIRE_PROMETHEUS is not
set; .ci/run sets it, so in CI these tests always run.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from exporter.app import Exporter
from exporter.simulator.falco_counts import FalcoCounts
from exporter.simulator.http_output import post_events
from exporter.simulator.server import SimulatedFalco
from tests.support import (
    REPO,
    ExporterFor,
    MakeExporter,
    counted,
    eventually,
    fetch,
    input_url,
    publish_samples,
    response,
    sample_documents,
)
from tests.support.prometheus import Prometheus, PrometheusFor

if not (shutil.which("prometheus") and shutil.which("promtool")):
    if os.environ.get("REQUIRE_PROMETHEUS"):
        raise RuntimeError("REQUIRE_PROMETHEUS is set but prometheus/promtool are not installed")
    pytest.skip("prometheus and promtool are not installed", allow_module_level=True)

pytestmark = pytest.mark.prometheus

WALKTHROUGH_POD = "nginx-7854ff8877-x2x9q"


@pytest.fixture
async def prometheus_for(tmp_path: Path) -> AsyncIterator[PrometheusFor]:
    """Start a Prometheus that scrapes a given exporter."""
    servers: list[Prometheus] = []

    async def start(exporter: Exporter) -> Prometheus:
        server = Prometheus(tmp_path, exporter.main_http.port)
        servers.append(server)
        await server.start()
        return server

    yield start
    for server in servers:
        await server.stop()


@pytest.mark.slow
async def test_prometheus_queries_falco_events_by_pod(
    falco: SimulatedFalco, exporter_for: ExporterFor, prometheus_for: PrometheusFor
) -> None:
    """What a user types in Grafana's Explore view returns the expected counts and type."""
    exporter = await exporter_for(falco)
    documents = publish_samples(falco)

    await counted(exporter, len(documents), message="every sample counted")
    prometheus = await prometheus_for(exporter)

    expected: collections.Counter[str] = collections.Counter(
        d["rule"]
        for d in documents
        if (d.get("output_fields") or {}).get("k8s.pod.name") == WALKTHROUGH_POD
    )
    query = f'falco_events{{k8s_pod_name="{WALKTHROUGH_POD}"}}'

    async def queried() -> bool:
        result = await prometheus.api("/api/v1/query", query=query)
        got: collections.Counter[str] = collections.Counter()
        for series in result["result"]:
            got[series["metric"]["rule"]] += int(float(series["value"][1]))
        return got == expected

    await eventually(queried, timeout=60, interval=0.2, message=f"{query} == {dict(expected)}")

    async def typed() -> bool:
        metadata = await prometheus.api("/api/v1/metadata", metric="falco_events")
        return bool(metadata)

    await eventually(typed, timeout=30, interval=0.2, message="metadata for falco_events")
    metadata = await prometheus.api("/api/v1/metadata", metric="falco_events")
    assert [entry["type"] for entry in metadata["falco_events"]] == ["counter"]

    odd_rule = 'Odd "rule" \\ with\nnewline, é, 🚀 and \x01'
    falco.publish([response(rule=odd_rule, hostname="odd-host", tags=("a", "b"))])

    async def odd_stored() -> bool:
        result = await prometheus.api("/api/v1/query", query='falco_events{hostname="odd-host"}')
        return [s["metric"]["rule"] for s in result["result"]] == [odd_rule]

    await eventually(odd_stored, timeout=60, interval=0.2, message="the odd rule name, exactly")

    by_priority = await prometheus.api(
        "/api/v1/query", query='sum by (priority) (falco_events{priority="4"})'
    )
    warnings = sum(1 for d in documents if d["priority"] == "Warning")
    assert [float(s["value"][1]) for s in by_priority["result"]] == [warnings]


async def test_promtool_finds_nothing_but_the_go_name(
    falco: SimulatedFalco, exporter_for: ExporterFor
) -> None:
    """`promtool check metrics`: only the remark that falco_events lacks `_total`, by design."""
    exporter = await exporter_for(falco)
    documents = publish_samples(falco)
    url = f"http://127.0.0.1:{exporter.main_http.port}/metrics"

    await counted(exporter, len(documents), message="every sample counted")
    _, body, _ = await fetch(url)
    promtool = await asyncio.create_subprocess_exec(
        "promtool",
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(promtool.communicate(body.encode()), 60)
    problems = output.decode().strip().splitlines()
    assert problems == ['falco_events counter metrics should have "_total" suffix']


@pytest.mark.slow
async def test_prometheus_sees_events_that_arrived_by_http(
    make_exporter: MakeExporter, prometheus_for: PrometheusFor
) -> None:
    """Falco 0.44+: alerts POSTed to the HTTP input are queryable in Prometheus the same way."""
    documents = sample_documents()
    exporter = await make_exporter(http_input_address="127.0.0.1:0")
    assert await post_events(input_url(exporter), documents, rate=0, loop=False) == len(documents)
    prometheus = await prometheus_for(exporter)
    expected = sum(
        1
        for d in documents
        if (d.get("output_fields") or {}).get("k8s.pod.name") == WALKTHROUGH_POD
    )

    async def queried() -> bool:
        result = await prometheus.api(
            "/api/v1/query", query=f'sum(falco_events{{k8s_pod_name="{WALKTHROUGH_POD}"}})'
        )
        return [float(s["value"][1]) for s in result["result"]] == [expected]

    await eventually(queried, timeout=60, interval=0.2, message="the walkthrough pod's events")


DASHBOARD = REPO / "deploy" / "grafana" / "falco-exporter-dashboard.json"
GRAFANA_VARIABLES = {  # in order: "$__rate_interval_ms" before "$__rate_interval"
    "$__rate_interval_ms": "60000",
    "$__rate_interval": "1m",
    "$cluster": ".*",
    "$job": ".*",
    "$instance": ".*",
    "$__range": "1h",
    "$namespace": ".*",
    "$pod": ".*",
    "$node": ".*",
    "$rule": ".*",
    "$priority": ".*",
}


def query_panels() -> list[dict[str, Any]]:
    """The dashboard's panels that query (rows only group them)."""
    panels: list[dict[str, Any]] = json.loads(DASHBOARD.read_text())["panels"]
    return [panel for panel in panels if panel["type"] != "row"]


def dashboard_expressions() -> list[tuple[str, str]]:
    """(panel title, PromQL with Grafana's variables filled in) for every query."""
    found = []
    for panel in query_panels():
        for target in panel["targets"]:
            expression = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expression = expression.replace(variable, value)
            found.append((panel["title"], expression))
    return found


@pytest.mark.slow
async def test_every_dashboard_query_runs_against_prometheus(
    falco: SimulatedFalco, exporter_for: ExporterFor, prometheus_for: PrometheusFor
) -> None:
    """Each panel's PromQL returns data on a Prometheus scraping an exporter in both modes.

    A misspelt metric or label would evaluate without error to nothing, so every query
    must return at least one sample.
    """
    exporter = await exporter_for(falco, http_input_address="127.0.0.1:0")
    publish_samples(falco)
    # The Delivery row reads Falco's metrics snapshots: one Falco, two snapshots around
    # an alert, posted as Falco's http_output would.
    node = FalcoCounts("node-1")
    posts = [node.snapshot(), node.matched(sample_documents()[0]), node.snapshot()]
    assert await post_events(input_url(exporter), posts, rate=0, loop=False) == len(posts)
    prometheus = await prometheus_for(exporter)

    async def scraped_twice() -> bool:
        result = await prometheus.api("/api/v1/query", query="count_over_time(up[5m])")
        return bool(result["result"]) and float(result["result"][0]["value"][1]) >= 2

    await eventually(scraped_twice, timeout=60, interval=0.2, message="two scrapes")
    expressions = dashboard_expressions()
    assert len(expressions) >= 20
    for title, expression in expressions:
        data = await prometheus.api("/api/v1/query", query=expression)  # asserts success
        assert data["resultType"] in {"vector", "scalar"}, title
        assert data["result"], f"{title}: no data from {expression}"
    by_priority = await prometheus.api(
        "/api/v1/query",
        query=next(e for t, e in expressions if t == "Alert rate by priority"),
    )
    assert {s["metric"]["priority_name"] for s in by_priority["result"]} >= {"Warning", "Error"}
    for label in ("k8s_ns_name", "k8s_pod_name", "hostname", "rule"):
        values = await prometheus.api(
            f"/api/v1/label/{label}/values", **{"match[]": "falco_events"}
        )
        assert values, label


def test_dashboard_uses_a_datasource_variable_everywhere() -> None:
    """No import-only ${DS_...} placeholder: every query names the $datasource variable."""
    text = DASHBOARD.read_text()
    assert "${DS_" not in text
    dashboard = json.loads(text)
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "pod", "node", "rule", "priority"} <= variables
    assert {"cluster", "job", "instance"} <= variables
    for panel in query_panels():
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            for variable in ("$cluster", "$job", "$instance"):
                assert variable in target["expr"], (panel["title"], variable)


def test_dashboard_counts_are_whole_and_settings_never_summed() -> None:
    """A count of alerts shows as an integer; a per-instance setting is never added up."""
    for panel in query_panels():
        for target in panel["targets"]:
            expression = target["expr"]
            counts = ("increase(falco_events", "increase(falco_exporter_alerts_lost")
            if any(c in expression for c in counts) and panel["type"] in {"stat", "table"}:
                assert "round(" in expression, panel["title"]
                assert panel["fieldConfig"]["defaults"]["decimals"] == 0, panel["title"]
            assert "sum(falco_exporter_series_limit" not in expression, panel["title"]
            # Replicas sharing a Falco each export its whole count: added up, it doubles.
            assert "sum by (hostname) (increase(falco_exporter_falco_alerts_raised" not in (
                expression
            ), panel["title"]
    titles = [panel["title"] for panel in query_panels()]
    assert "Rules firing for the first time in the time range" in titles
    assert "Alerts lost in the time range" in titles


def panel_expression(title: str, **variables: str) -> str:
    """A panel's one query, Grafana's variables filled in (`pod="x"` sets `$pod`)."""
    [panel] = [panel for panel in query_panels() if panel["title"] == title]
    [target] = panel["targets"]
    expression: str = target["expr"]
    for name, value in variables.items():
        expression = expression.replace(f"${name}", value)
    for variable, value in GRAFANA_VARIABLES.items():
        expression = expression.replace(variable, value)
    return expression


@pytest.mark.slow
async def test_the_dashboard_counts_a_series_first_events(
    make_exporter: MakeExporter, prometheus_for: PrometheusFor
) -> None:
    """The walkthrough on a fresh exporter: every one of its events is in "Alerts in the last
    hour", per pod and per rule, and in "Top rules", though each series is new and increase()
    alone counts a new series' first events as nothing."""
    documents = sample_documents()
    exporter = await make_exporter(http_input_address="127.0.0.1:0")
    assert await post_events(input_url(exporter), documents, rate=0, loop=False) == len(documents)
    prometheus = await prometheus_for(exporter)

    async def value(expression: str) -> float | None:
        result = (await prometheus.api("/api/v1/query", query=expression))["result"]
        return float(result[0]["value"][1]) if result else None

    async def scraped() -> bool:
        return await value("sum(falco_events)") == len(documents)

    await eventually(scraped, timeout=60, interval=0.2, message="the walkthrough scraped")
    at = str(time.time())  # then, when every series was new
    pod_totals = "sum by (k8s_pod_name) (falco_events)"
    in_the_pod = sum(
        1
        for d in documents
        if (d.get("output_fields") or {}).get("k8s.pod.name") == WALKTHROUGH_POD
    )
    assert in_the_pod > 0
    last_hour = "Alerts in the last hour"
    assert await value(panel_expression(last_hour)) == len(documents)
    assert await value(panel_expression(last_hour, pod=WALKTHROUGH_POD)) == in_the_pod
    assert await value(panel_expression("Alerts in the last 24 hours")) == len(documents)
    warning_or_worse = sum(
        1
        for d in documents
        if d["priority"] in {"Emergency", "Alert", "Critical", "Error", "Warning"}
    )
    assert await value(panel_expression("Warning or worse, last hour")) == warning_or_worse
    top = await prometheus.api(
        "/api/v1/query", query=panel_expression("Top rules in the time range")
    )
    by_rule = collections.Counter(d["rule"] for d in documents)
    shown: collections.Counter[str] = collections.Counter()
    for sample in top["result"]:
        shown[sample["metric"]["rule"]] += int(float(sample["value"][1]))
    assert shown == by_rule
    # The rate panels (per minute, over the 1 m window Grafana would pick here), read at
    # the first scrape that had everything, show the walkthrough's new series too: each
    # rule and each pod at its count. rate() alone would show nothing at all.
    by_pod = {
        s["metric"].get("k8s_pod_name", ""): round(float(s["value"][1]))
        for s in (await prometheus.api("/api/v1/query", query=pod_totals, time=at))["result"]
    }
    assert by_pod[WALKTHROUGH_POD] == in_the_pod
    for title, label, expected in (
        ("Alert rate by rule", "rule", dict(by_rule)),
        ("Alert rate by pod", "k8s_pod_name", by_pod),
    ):
        rates = await prometheus.api("/api/v1/query", query=panel_expression(title), time=at)
        per_minute = {
            s["metric"].get(label, ""): round(float(s["value"][1])) for s in rates["result"]
        }
        assert per_minute == expected, title


def test_the_dashboard_is_in_current_grafanas_schema() -> None:
    """Grafana 12 warns of an older schemaVersion and of the long-dropped "style" key."""
    model = json.loads(DASHBOARD.read_text())
    assert model["schemaVersion"] >= 42
    assert "style" not in model


def test_the_dashboard_counts_growth_and_first_events_together(tmp_path: Path) -> None:
    """promtool, over two hours of samples: "Alerts in the last hour" is an old series'
    growth in the hour plus the whole of a series that appeared in it."""
    labels = 'job="falco-exporter",instance="e:9376",hostname="n",rule="R",k8s_ns_name="d"'
    tests = {
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # 10 an hour ago and still at 65 minutes; 13 now: 3 in the last hour.
                    {"series": f'falco_events{{{labels},k8s_pod_name="old",priority="4"}}',
                     "values": "10x65 11 12 13x52"},
                    # Appeared 30 minutes ago with 2, at 4 now: 4 in the last hour.
                    {"series": f'falco_events{{{labels},k8s_pod_name="new",priority="4"}}',
                     "values": "_x90 2x10 3 4x19"},
                ],
                "promql_expr_test": [
                    {"expr": panel_expression("Alerts in the last hour"), "eval_time": "2h",
                     "exp_samples": [{"labels": "{}", "value": 7}]},
                    {"expr": panel_expression("Alerts in the last hour", pod="new"),
                     "eval_time": "2h", "exp_samples": [{"labels": "{}", "value": 4}]},
                ],
            }
        ],
    }  # fmt: skip
    path = tmp_path / "dashboard-test.yaml"
    path.write_text(json.dumps(tests))
    result = subprocess.run(
        ["promtool", "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
async def test_the_quickstarts_queries_show_the_walkthrough(
    make_exporter: MakeExporter, prometheus_for: PrometheusFor
) -> None:
    """docs/quickstart.md's PromQL, after the sample events as a simulated Falco posts them:
    every rule of the nginx pods with its count, the walkthrough's two among them."""
    page = (REPO / "docs" / "quickstart.md").read_text()
    queries = re.findall(r"```promql\n(.*?)\n```", page, re.S)
    assert len(queries) >= 2
    documents = sample_documents()
    exporter = await make_exporter(http_input_address="127.0.0.1:0")
    assert await post_events(input_url(exporter), documents, rate=0, loop=False) == len(documents)
    prometheus = await prometheus_for(exporter)
    in_nginx = collections.Counter(
        d["rule"]
        for d in documents
        if str((d.get("output_fields") or {}).get("k8s.pod.name", "")).startswith("nginx-")
    )
    assert {
        "DetectCurlCommandExecution",
        "Launch Package Management Process in Container",
    } <= set(in_nginx)

    async def shows_the_walkthrough(query: str) -> bool:
        result = (await prometheus.api("/api/v1/query", query=query))["result"]
        by_rule: collections.Counter[str] = collections.Counter()
        for sample in result:
            by_rule[sample["metric"]["rule"]] += int(float(sample["value"][1]))
        return by_rule == in_nginx

    for query in queries:
        await eventually(
            lambda query=query: shows_the_walkthrough(query), timeout=60, message=query
        )


def panel_expressions(title: str) -> dict[str, str]:
    """A panel's queries by legend, Grafana's variables filled in."""
    [panel] = [panel for panel in query_panels() if panel["title"] == title]
    found = {}
    for target in panel["targets"]:
        expression = target["expr"]
        for variable, value in GRAFANA_VARIABLES.items():
            expression = expression.replace(variable, value)
        found[target["legendFormat"]] = expression
    return found


@pytest.mark.slow
async def test_the_delay_panel_shows_alerts_two_seconds_late(
    make_exporter: MakeExporter, prometheus_for: PrometheusFor
) -> None:
    """Alerts and a metrics snapshot posted 2 s after their time, as a backed-up Falco posts
    them: the delay panel's quantiles fall inside the (1 s, 2.5 s] bucket where Prometheus
    interpolates them, the median at 1.75 s and the 99th percentile at 2.485 s, for the http
    input only; the per-node panel shows node-1's snapshot 2 s late."""
    exporter = await make_exporter(http_input_address="127.0.0.1:0")
    prometheus = await prometheus_for(exporter)
    count = 'falco_exporter_event_delay_seconds_count{input="http"}'

    async def value(expression: str) -> float | None:
        result = (await prometheus.api("/api/v1/query", query=expression))["result"]
        return float(result[0]["value"][1]) if result else None

    async def scraped(expected: float) -> bool:
        return await value(count) == expected

    await eventually(lambda: scraped(0), timeout=60, interval=0.2, message="the empty histogram")
    node = FalcoCounts("node-1")
    late = [
        node.matched(document, time_ns=time.time_ns() - 2_000_000_000)
        for document in sample_documents()[:10]
    ]
    late.append(node.snapshot(time.time_ns() - 2_000_000_000))  # in the same bucket
    assert await post_events(input_url(exporter), late, rate=0, loop=False) == len(late)
    await eventually(lambda: scraped(len(late)), timeout=60, interval=0.2, message="11 late")
    queries = panel_expressions("Falco: alert delay, by input")
    assert set(queries) == {"p99 {{instance}} {{input}}", "median {{input}}"}
    for legend, expected in (("median {{input}}", 1.75), ("p99 {{instance}} {{input}}", 2.485)):
        result = (await prometheus.api("/api/v1/query", query=queries[legend]))["result"]
        assert [sample["metric"]["input"] for sample in result] == ["http"], legend
        assert float(result[0]["value"][1]) == pytest.approx(expected), legend
    by_node = panel_expression("Falco: delay of its last metrics snapshot, by node")
    [snapshot] = (await prometheus.api("/api/v1/query", query=by_node))["result"]
    assert snapshot["metric"] == {"hostname": "node-1"}
    assert 2.0 <= float(snapshot["value"][1]) < 2.5
