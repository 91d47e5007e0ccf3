"""Write the Grafana dashboard and its sidecar ConfigMap into deploy/grafana/.

Usage: python tools/gen_dashboard.py [OUT_DIR]   (default: deploy/grafana)

Built with Grafana's own as-code SDK (grafana-foundation-sdk: typed builders for the
dashboard, its panels and Prometheus queries), so that every query is written once with
one filter, every panel is checked by the SDK's types, and a test can run every expression
against a real Prometheus. A test fails when the committed files differ from what this
writes.

What an SRE reads here: counts as whole numbers, the rules that fired for the first time,
rates by rule, priority, namespace, pod and node, and the exporter's health in every mode
(gRPC targets, the HTTP input's staleness and rejections, series against each instance's
own limit; per-instance settings are never summed), and how late Falco's alerts arrive.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    GridPos,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from exporter.core.event import PRIORITY_NAMES as PRIORITIES

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "deploy" / "grafana"
CHART_FILE = ROOT / "deploy" / "helm" / "falco-exporter" / "files" / "falco-exporter-dashboard.json"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
# Which exporters: every query of the dashboard carries this.
SCOPE = 'cluster=~"$cluster", job=~"$job", instance=~"$instance"'
FILTER = (
    f'{SCOPE}, k8s_ns_name=~"$namespace", k8s_pod_name=~"$pod", hostname=~"$node", '
    'rule=~"$rule", priority=~"$priority"'
)
# The dashboard schema Grafana 12 saves (its latest migration is to 42); the SDK writes 36.
GRAFANA_SCHEMA_VERSION = 42
ALL = VariableOption(selected=True, text=["All"], value=["$__all"])


def events(extra: str = "") -> str:
    """falco_events with every variable applied (and `extra` matchers)."""
    return f"falco_events{{{FILTER}{extra}}}"


def counted(window: str, by: str = "", extra: str = "") -> str:
    """Alerts counted in the window, a series' first ones included. increase() sees only
    growth between samples, so a series that appeared in the window (one `curl` in a new
    pod) would count 0: such a series counts its whole value instead, as the shipped alerts
    do (`unless ... offset`). Each half is padded with the other's groups at 0, so that a
    sum is there when only one half has data."""
    series = events(extra)
    new = f"({series} unless {series} offset {window})"
    grouping = f" by ({by})" if by else ""
    grown = f"sum{grouping} (increase({series}[{window}]) unless {new})"
    appeared = f"sum{grouping} ({new})"
    return f"(({grown}) or ({appeared}) * 0) + (({appeared}) or ({grown}) * 0)"


def events_rate(by: str) -> str:
    """Alerts per minute by a label, a series' first ones included: rate() alone shows one
    `curl` in a new pod as nothing, so this is `counted` over Grafana's rate window, per
    minute ($__rate_interval_ms is the window in milliseconds)."""
    return f"({counted('$__rate_interval', by)}) * 60000 / $__rate_interval_ms"


def delay_quantile(quantile: float, by: str) -> str:
    """A quantile of falco_exporter_event_delay_seconds over Grafana's rate window."""
    buckets = f"falco_exporter_event_delay_seconds_bucket{{{SCOPE}}}"
    return f"histogram_quantile({quantile}, sum by ({by}, le) (rate({buckets}[$__rate_interval])))"


def whole(expression: str) -> str:
    """increase() extrapolates to fractions; a count of alerts is a whole number."""
    return f"round({expression})"


def priority_names(expression: str) -> str:
    """Add a priority_name label (Warning, ...) from the numeric priority, in PromQL."""
    for number, name in enumerate(PRIORITIES):
        expression = (
            f'label_replace({expression}, "priority_name", "{name}", "priority", "{number}")'
        )
    return expression


def query(expression: str, legend: str = "", *, as_table: bool = False) -> prometheus.Dataquery:
    """One Prometheus query of a panel."""
    built = prometheus.Dataquery().expr(expression).legend_format(legend).datasource(DATASOURCE)
    if as_table:
        built = built.instant().format(PromQueryFormat.TABLE)
    return built


def place(x: int, y: int, w: int, h: int) -> GridPos:
    """Where a panel sits on the 24-column grid."""
    return GridPos(x=x, y=y, w=w, h=h)


def count_stat(title: str, expression: str, grid: GridPos, description: str) -> stat.Panel:
    """A single whole number."""
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(query(whole(expression)))
        .decimals(0)
        .grid_pos(grid)
    )


def rate_panel(
    title: str, targets: list[prometheus.Dataquery], grid: GridPos, unit: str = "ops"
) -> timeseries.Panel:
    """A rate over time: per second ("ops"), or per minute ("opm") for alerts."""
    built = timeseries.Panel().title(title).datasource(DATASOURCE).unit(unit).grid_pos(grid)
    for target in targets:
        built = built.with_target(target)
    return built


def alert_rate_panel(title: str, by: str, legend: str, grid: GridPos) -> timeseries.Panel:
    """Alerts per minute by a label, first events of a series included."""
    return rate_panel(title, [query(events_rate(by), legend)], grid, unit="opm")


def label_variable(name: str, label: str, matcher: str) -> dash.QueryVariable:
    """A multi-value variable from label_values; "All" matches everything (also "")."""
    values = f"label_values({matcher}, {label})"
    return (
        dash.QueryVariable(name)
        .label(name.capitalize())
        .datasource(DATASOURCE)
        .query(values)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(ALL)
        .sort(VariableSort.ALPHABETICAL_ASC)
    )


def variables() -> list[Any]:
    """Data source, which exporters (cluster, job, instance), then what happened."""
    priorities = ",".join(f"{name} : {number}" for number, name in enumerate(PRIORITIES))
    return [
        dash.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        label_variable("cluster", "cluster", "up"),
        label_variable("job", "job", 'up{cluster=~"$cluster"}'),
        label_variable(
            "instance", "instance", 'falco_exporter_build_info{cluster=~"$cluster", job=~"$job"}'
        ),
        label_variable("namespace", "k8s_ns_name", f"falco_events{{{SCOPE}}}"),
        label_variable(
            "pod", "k8s_pod_name", f'falco_events{{{SCOPE}, k8s_ns_name=~"$namespace"}}'
        ),
        label_variable("node", "hostname", f"falco_events{{{SCOPE}}}"),
        label_variable("rule", "rule", f"falco_events{{{SCOPE}}}"),
        dash.CustomVariable("priority")
        .label("Priority")
        .values(priorities)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(ALL),
    ]


def panels() -> list[Any]:
    """Every panel, top to bottom."""
    exporter = f"{{{SCOPE}}}"
    http_input = f'{{{SCOPE}, target="http_input"}}'
    return [
        count_stat(
            "Alerts in the last hour",
            counted("1h"),
            place(0, 0, 6, 4),
            "Falco alerts counted in the last hour, every filter applied.",
        ),
        count_stat(
            "Alerts in the last 24 hours",
            counted("24h"),
            place(6, 0, 6, 4),
            "Falco alerts counted in the last 24 hours.",
        ),
        count_stat(
            "Warning or worse, last hour",
            counted("1h", extra=', priority=~"[0-4]"'),
            place(12, 0, 6, 4),
            "Priorities Emergency to Warning: what the shipped alerts page for.",
        ),
        stat.Panel()
        .title("Alerts received per second, by input")
        .description("grpc: subscriptions to Falco (0.43 and older); http: Falco's http_output.")
        .datasource(DATASOURCE)
        .with_target(
            query(
                f"sum by (input) (rate(falco_exporter_events_received_total{exporter}"
                "[$__rate_interval]))",
                "{{input}}",
            )
        )
        .unit("ops")
        .grid_pos(place(18, 0, 6, 4)),
        alert_rate_panel("Alert rate by rule", "rule", "{{rule}}", place(0, 4, 12, 8)),
        rate_panel(
            "Alert rate by priority",
            [query(priority_names(events_rate("priority")), "{{priority_name}}")],
            place(12, 4, 12, 8),
            unit="opm",
        ),
        alert_rate_panel(
            "Alert rate by namespace", "k8s_ns_name", "{{k8s_ns_name}}", place(0, 12, 8, 8)
        ),
        alert_rate_panel(
            "Alert rate by pod",
            "k8s_ns_name, k8s_pod_name",
            "{{k8s_ns_name}}/{{k8s_pod_name}}",
            place(8, 12, 8, 8),
        ),
        alert_rate_panel("Alert rate by node", "hostname", "{{hostname}}", place(16, 12, 8, 8)),
        table.Panel()
        .title("Rules firing for the first time in the time range")
        .description(
            "Rules (and namespaces) with a series that did not exist at the start of the "
            "time range: what the FalcoRuleFiring and priority alerts fired on first."
        )
        .datasource(DATASOURCE)
        .with_target(
            query(
                priority_names(
                    "sum by (rule, priority, k8s_ns_name) "
                    f"({events()} unless {events()} offset $__range)"
                ),
                as_table=True,
            )
        )
        .decimals(0)
        .grid_pos(place(0, 20, 12, 8)),
        table.Panel()
        .title("Top rules in the time range")
        .datasource(DATASOURCE)
        .with_target(
            query(
                priority_names(whole(f"topk(20, {counted('$__range', by='rule, priority')})")),
                as_table=True,
            )
        )
        .decimals(0)
        .grid_pos(place(12, 20, 12, 8)),
        stat.Panel()
        .title("gRPC targets connected, by instance")
        .description("Falco 0.44+ has no gRPC: with the HTTP input alone this stays empty.")
        .datasource(DATASOURCE)
        .with_target(
            query(f"sum by (instance) (falco_exporter_connected{exporter})", "{{instance}}")
        )
        .no_value("no gRPC targets (HTTP input)")
        .decimals(0)
        .grid_pos(place(0, 28, 6, 7)),
        stat.Panel()
        .title("HTTP input: since the last post, by instance")
        .description(
            "Falco posts only when a rule matches; with its heartbeat (metrics.output_rule) "
            "more than its interval means a broken pipeline. Empty without the HTTP input."
        )
        .datasource(DATASOURCE)
        .with_target(
            query(
                "time() - max by (instance) "
                f"(falco_exporter_last_event_timestamp_seconds{http_input})",
                "{{instance}}",
            )
        )
        .unit("s")
        .no_value("no HTTP input")
        .grid_pos(place(6, 28, 6, 7)),
        rate_panel(
            "Exporter: rejected posts and undecodable messages",
            [
                query(
                    f"sum by (reason) (increase(falco_exporter_http_input_rejected_total{exporter}"
                    "[$__rate_interval]))",
                    "HTTP {{reason}}",
                ),
                query(
                    f"sum(increase(falco_exporter_decode_errors_total{exporter}[$__rate_interval]))",
                    "undecodable gRPC messages",
                ),
            ],
            place(12, 28, 12, 7),
        ),
        timeseries.Panel()
        .title("Exporter: series against each instance's limit")
        .description("falco_events series of each exporter, as a share of its own --max-series.")
        .datasource(DATASOURCE)
        .with_target(
            query(
                f"max by (instance) (falco_exporter_falco_events_series{exporter}) "
                f"/ max by (instance) (falco_exporter_series_limit{exporter} > 0)",
                "{{instance}}",
            )
        )
        .unit("percentunit")
        .grid_pos(place(0, 35, 12, 7)),
        rate_panel(
            "Exporter: reconnects and folded events per minute",
            [
                query(
                    f"sum by (instance, target) (rate(falco_exporter_reconnects_total{exporter}"
                    "[$__rate_interval])) * 60",
                    "reconnects {{instance}} {{target}}",
                ),
                query(
                    f"sum by (instance) (rate(falco_exporter_events_folded_total{exporter}"
                    "[$__rate_interval])) * 60",
                    "folded {{instance}}",
                ),
            ],
            place(12, 35, 12, 7),
        ),
    ]


def delivery_panels() -> list[Any]:
    """The "Delivery" row: what each Falco raised against what reached the exporters
    (docs/delivery.md), and when Falco itself was blind."""
    node = f'{{{SCOPE}, hostname=~"$node"}}'
    # Replicas that share a Falco's posts each export its count: the same number, never
    # added up (max); what reached them adds up (sum).
    raised = f"max by (hostname) (increase(falco_exporter_falco_alerts_raised_total{node}"
    lost = f"falco_exporter_alerts_lost_total{node}"
    return [
        dash.Row("Delivery").grid_pos(place(0, 42, 24, 1)),
        rate_panel(
            "Delivery: alerts Falco raised and alerts received, by node",
            [
                query(raised + "[$__rate_interval]))", "raised {{hostname}}"),
                query(
                    "sum by (hostname) (increase(falco_exporter_falco_alerts_received_total"
                    f"{node}[$__rate_interval]))",
                    "received {{hostname}}",
                ),
            ],
            place(0, 43, 12, 8),
        )
        .unit("short")
        .description(
            "From Falco's metrics snapshots (metrics.output_rule): its own count of the alerts "
            "it raised, against those that reached the exporters. Apart for longer than a "
            "snapshot interval means alerts lost."
        ),
        count_stat(
            "Alerts lost in the time range",
            f"sum(increase({lost}[$__range]))",
            place(12, 43, 4, 8),
            "Alerts Falco raised that never reached an exporter while it ran (refused, a "
            "broken path, Falco's queue drops). Falco never retries. Empty with "
            "--delivery-accounting false: see docs/delivery.md.",
        ),
        rate_panel(
            "Delivery: alerts lost, by node",
            [query(f"sum by (hostname) (increase({lost}[$__rate_interval]))", "{{hostname}}")],
            place(16, 43, 8, 8),
        ).unit("short"),
        rate_panel(
            "Falco: kernel events and alerts it dropped, per second, by node",
            [
                query(
                    "max by (hostname) (rate(falco_exporter_falco_kernel_drops_total"
                    f"{node}[$__rate_interval]))",
                    "kernel events {{hostname}}",
                ),
                query(
                    "max by (hostname) (rate(falco_exporter_falco_outputs_queue_drops_total"
                    f"{node}[$__rate_interval]))",
                    "alerts from its queue {{hostname}}",
                ),
            ],
            place(0, 51, 12, 7),
        ).description(
            "Kernel events Falco never saw (scap.n_drops): nothing was checked against any "
            "rule meanwhile; empty for Falco without a driver. Alerts dropped from its own "
            "output queue (outputs_queue.capacity) reach no output."
        ),
        timeseries.Panel()
        .title("Falco: share of kernel events dropped, by node")
        .description("scap.n_drops_perc over each of Falco's metrics intervals.")
        .datasource(DATASOURCE)
        .with_target(
            query(
                f"max by (hostname) (falco_exporter_falco_kernel_drops_ratio{node})",
                "{{hostname}}",
            )
        )
        .unit("percentunit")
        .grid_pos(place(12, 51, 12, 7)),
        timeseries.Panel()
        .title("Falco: alert delay, by input")
        .description(
            "How late alerts arrive: from each alert's time (evt.time) to its arrival at the "
            "exporter, metrics snapshots included: Falco's output backlog (one thread feeds "
            "every output). The 99th percentile per exporter (with the sidecar, per node) and "
            "the median of all. Past the last bucket (5 min) it shows 5 min. Clocks that "
            "disagree shift it: docs/event-delay.md."
        )
        .datasource(DATASOURCE)
        .with_target(query(delay_quantile(0.99, "instance, input"), "p99 {{instance}} {{input}}"))
        .with_target(query(delay_quantile(0.5, "input"), "median {{input}}"))
        .unit("s")
        .grid_pos(place(0, 58, 12, 8)),
        timeseries.Panel()
        .title("Falco: delay of its last metrics snapshot, by node")
        .description(
            "How late each Falco's latest metrics snapshot arrived (metrics.output_rule): it "
            "waits in the same output queue as the alerts, so this is the node's backlog, for "
            "a central exporter too. Below 0: the node's clock is ahead."
        )
        .datasource(DATASOURCE)
        .with_target(
            query(
                f"max by (hostname) (falco_exporter_falco_snapshot_delay_seconds{node})",
                "{{hostname}}",
            )
        )
        .unit("s")
        .grid_pos(place(12, 58, 12, 8)),
    ]


def dashboard() -> dict[str, Any]:
    """The whole dashboard, as Grafana's JSON model."""
    built = (
        dash.Dashboard("Falco events")
        .uid("falco-exporter")
        .tags(["falco", "security"])
        .editable()
        .time("now-6h", "now")
        .refresh("30s")
    )
    for variable in variables():
        built = built.with_variable(variable)
    for index, item in enumerate([*panels(), *delivery_panels()], start=1):
        if isinstance(item, dash.Row):
            built = built.with_row(item.id(index))
        else:
            built = built.with_panel(item.id(index))
    model: dict[str, Any] = json.loads(json.dumps(built.build(), cls=JSONEncoder))
    # What current Grafana writes: it warns of an older schema and of the dropped "style".
    model.pop("style", None)
    model["schemaVersion"] = GRAFANA_SCHEMA_VERSION
    return model


def write(out: Path) -> None:
    """The dashboard JSON, and a ConfigMap for Grafana's dashboard sidecar."""
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(dashboard(), indent=2) + "\n"
    (out / "falco-exporter-dashboard.json").write_text(text)
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "falco-exporter-dashboard",
            "namespace": "monitoring",
            "labels": {"grafana_dashboard": "1", "app.kubernetes.io/part-of": "falco-exporter"},
        },
        "data": {"falco-exporter-dashboard.json": text},
    }
    (out / "dashboard-configmap.yaml").write_text(
        "# Generated by tools/gen_dashboard.py; Grafana's sidecar loads ConfigMaps labelled\n"
        '# grafana_dashboard: "1" (set its namespace to where your sidecar looks).\n'
        + yaml.safe_dump(config_map, sort_keys=False, width=1000)
    )


if __name__ == "__main__":
    if len(sys.argv) > 1:
        write(Path(sys.argv[1]))
    else:
        write(DEFAULT_OUT)
        # The Helm chart's copy (tests/test_helm.py checks they are the same bytes).
        CHART_FILE.write_bytes((DEFAULT_OUT / CHART_FILE.name).read_bytes())
