"""Write the Grafana dashboard and its sidecar ConfigMap into deploy/grafana/.

Usage: python tools/gen_dashboard.py [OUT_DIR]   (default: deploy/grafana)

The dashboard is generated so that every query is written once, with one filter
string, and so that a test can run every expression against a real Prometheus.
A test fails when the committed files differ from what this writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from exporter.event import PRIORITY_NAMES as PRIORITIES

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "deploy" / "grafana"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
FILTER = (
    'k8s_ns_name=~"$namespace", k8s_pod_name=~"$pod", hostname=~"$node", '
    'rule=~"$rule", priority=~"$priority"'
)


def events_rate(by: str) -> str:
    """Alerts per second by a label, with every variable applied."""
    return f"sum by ({by}) (rate(falco_events{{{FILTER}}}[$__rate_interval]))"


def priority_names(expression: str) -> str:
    """Add a priority_name label (Warning, ...) from the numeric priority, in PromQL."""
    for number, name in enumerate(PRIORITIES):
        expression = (
            f'label_replace({expression}, "priority_name", "{name}", "priority", "{number}")'
        )
    return expression


def query_variable(name: str, label: str, matcher: str = "") -> dict[str, Any]:
    """A multi-value variable from label_values, "All" matching everything (also "")."""
    return {
        "name": name,
        "label": name.capitalize(),
        "type": "query",
        "datasource": DATASOURCE,
        "query": {
            "query": f"label_values(falco_events{matcher}, {label})",
            "refId": f"{name}-values",
        },
        "definition": f"label_values(falco_events{matcher}, {label})",
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def priority_variable() -> dict[str, Any]:
    """Priorities shown by name, matched by number."""
    options = ",".join(f"{name} : {number}" for number, name in enumerate(PRIORITIES))
    return {
        "name": "priority",
        "label": "Priority",
        "type": "custom",
        "query": options,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
    }


def panel(
    title: str,
    kind: str,
    targets: list[tuple[str, str]],
    grid: tuple[int, int, int, int],
    **extra: object,
) -> dict[str, Any]:
    """A panel with its queries (expression, legend)."""
    x, y, w, h = grid
    return {
        "title": title,
        "type": kind,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [
            {
                "datasource": DATASOURCE,
                "expr": expr,
                "legendFormat": legend,
                "refId": chr(ord("A") + index),
                **({"instant": True, "format": "table"} if kind == "table" else {}),
            }
            for index, (expr, legend) in enumerate(targets)
        ],
        **extra,
    }


def dashboard() -> dict[str, Any]:
    """The whole dashboard."""
    timeseries = {"fieldConfig": {"defaults": {"unit": "ops"}, "overrides": []}}
    panels = [
        panel(
            "Alerts in the last hour",
            "stat",
            [(f"sum(increase(falco_events{{{FILTER}}}[1h]))", "last hour")],
            (0, 0, 6, 4),
        ),
        panel(
            "Alerts in the last 24 hours",
            "stat",
            [(f"sum(increase(falco_events{{{FILTER}}}[24h]))", "last 24h")],
            (6, 0, 6, 4),
        ),
        panel(
            "Warning or worse, last hour",
            "stat",
            [(f'sum(increase(falco_events{{{FILTER}, priority=~"[0-4]"}}[1h]))', "")],
            (12, 0, 6, 4),
        ),
        panel(
            "Falco targets connected",
            "stat",
            [
                ("sum(falco_exporter_connected)", "connected"),
                ("count(falco_exporter_connected)", "targets"),
            ],
            (18, 0, 6, 4),
        ),
        panel(
            "Alert rate by rule",
            "timeseries",
            [(events_rate("rule"), "{{rule}}")],
            (0, 4, 12, 8),
            **timeseries,
        ),
        panel(
            "Alert rate by priority",
            "timeseries",
            [(priority_names(events_rate("priority")), "{{priority_name}}")],
            (12, 4, 12, 8),
            **timeseries,
        ),
        panel(
            "Alert rate by namespace",
            "timeseries",
            [(events_rate("k8s_ns_name"), "{{k8s_ns_name}}")],
            (0, 12, 8, 8),
            **timeseries,
        ),
        panel(
            "Alert rate by pod",
            "timeseries",
            [(events_rate("k8s_ns_name, k8s_pod_name"), "{{k8s_ns_name}}/{{k8s_pod_name}}")],
            (8, 12, 8, 8),
            **timeseries,
        ),
        panel(
            "Alert rate by node",
            "timeseries",
            [(events_rate("hostname"), "{{hostname}}")],
            (16, 12, 8, 8),
            **timeseries,
        ),
        panel(
            "Top rules in the time range",
            "table",
            [
                (
                    priority_names(
                        f"topk(20, sum by (rule, priority) "
                        f"(increase(falco_events{{{FILTER}}}[$__range])))"
                    ),
                    "",
                )
            ],
            (0, 20, 24, 8),
        ),
        panel(
            "Exporter: reconnects per minute",
            "timeseries",
            [
                (
                    "sum by (target) "
                    "(rate(falco_exporter_reconnects_total[$__rate_interval])) * 60",
                    "{{target}}",
                )
            ],
            (0, 28, 8, 7),
        ),
        panel(
            "Exporter: decode errors and rejected posts",
            "timeseries",
            [
                (
                    "sum(increase(falco_exporter_decode_errors_total[$__rate_interval]))",
                    "undecodable gRPC messages",
                ),
                (
                    "sum by (reason) "
                    "(increase(falco_exporter_http_input_rejected_total[$__rate_interval]))",
                    "HTTP {{reason}}",
                ),
            ],
            (8, 28, 8, 7),
        ),
        panel(
            "Exporter: falco_events series",
            "timeseries",
            [
                ("sum(falco_exporter_falco_events_series)", "series"),
                ("sum(falco_exporter_series_limit)", "limit"),
                (
                    "sum(rate(falco_exporter_events_folded_total[$__rate_interval]))",
                    "folded events/s",
                ),
            ],
            (16, 28, 8, 7),
        ),
    ]
    for index, item in enumerate(panels, start=1):
        item["id"] = index
    return {
        "title": "Falco events",
        "uid": "falco-exporter",
        "tags": ["falco", "security"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                query_variable("namespace", "k8s_ns_name"),
                query_variable("pod", "k8s_pod_name", '{k8s_ns_name=~"$namespace"}'),
                query_variable("node", "hostname"),
                query_variable("rule", "rule"),
                priority_variable(),
            ]
        },
        "panels": panels,
    }


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
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)
