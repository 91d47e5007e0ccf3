"""The documented shape of GKE's managed collection objects (PodMonitoring,
ClusterPodMonitoring, Rules and ClusterRules, monitoring.googleapis.com/v1), to check what
ships against.

No registry package ships their CRD schema (@kubernetes-models/gke has the Config
Connector and gke.io kinds, not monitoring.googleapis.com), so this is a JSON Schema written
here from the fields the managed collection's API reference documents (prometheus-engine's
doc/api.md: PodMonitoringSpec, ClusterPodMonitoringSpec, ScrapeEndpoint, TLS,
RelabelingRule, TargetLabels, LabelMapping, ScrapeLimits; for the rules, RulesSpec,
RuleGroup and Rule): every documented field with its
type, the required ones, and nothing else, so a misspelt or invented field fails.
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema  # type: ignore[import-untyped]

API_VERSION = "monitoring.googleapis.com/v1"
KINDS = ("PodMonitoring", "ClusterPodMonitoring")
RULES_KINDS = ("Rules", "ClusterRules")
# A Prometheus duration, as the reference asks of interval and timeout.
DURATION = "^" + "".join(f"([0-9]+{unit})?" for unit in ("y", "w", "d", "h", "m", "s", "ms")) + "$"
# Labels the collection sets itself and no relabeling may write.
PROTECTED_LABELS = ("project_id", "location", "cluster", "namespace", "job", "instance")
# TargetLabels.metadata: what each kind may copy from the pod onto its targets.
METADATA_LABELS = {
    "PodMonitoring": ["pod", "container", "node"],
    "ClusterPodMonitoring": ["pod", "container", "node", "namespace"],
}


def _closed(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """An object with exactly these properties (some required), nothing else."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_STRING = {"type": "string"}
_STRINGS = {"type": "array", "items": _STRING}
_LABEL_SELECTOR = _closed(
    {
        "matchLabels": {"type": "object", "additionalProperties": _STRING},
        "matchExpressions": {
            "type": "array",
            "items": _closed(
                {"key": _STRING, "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                 "values": _STRINGS},
                ("key", "operator"),
            ),
        },
    }
)  # fmt: skip
_RELABELING_RULE = _closed(
    {
        "sourceLabels": _STRINGS,
        "separator": _STRING,
        "targetLabel": {"type": "string", "not": {"enum": list(PROTECTED_LABELS)}},
        "regex": _STRING,
        "modulus": {"type": "integer", "minimum": 0},
        "replacement": _STRING,
        "action": {"enum": ["replace", "lowercase", "uppercase", "keep", "drop", "keepequal",
                            "dropequal", "hashmod", "labeldrop", "labelkeep"]},
    }
)  # fmt: skip
_TLS = _closed(
    {
        "serverName": _STRING,
        "insecureSkipVerify": {"type": "boolean"},
        "minVersion": {"enum": ["TLS10", "TLS11", "TLS12", "TLS13"]},
        "maxVersion": {"enum": ["TLS10", "TLS11", "TLS12", "TLS13"]},
    }
)
_SCRAPE_ENDPOINT = _closed(
    {
        "port": {"oneOf": [{"type": "integer", "minimum": 1, "maximum": 65535},
                           {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                            "maxLength": 15}]},
        "scheme": {"enum": ["http", "https"]},
        "path": {"type": "string", "pattern": "^/"},
        "params": {"type": "object", "additionalProperties": _STRINGS},
        "proxyUrl": _STRING,
        "interval": {"type": "string", "pattern": DURATION},
        "timeout": {"type": "string", "pattern": DURATION},
        "metricRelabeling": {"type": "array", "items": _RELABELING_RULE},
        "tls": _TLS,
    },
    ("port",),
)  # fmt: skip
_SCRAPE_LIMITS = _closed(
    {
        name: {"type": "integer", "minimum": 0}
        for name in ("samples", "labels", "labelNameLength", "labelValueLength")
    }
)
_METADATA = _closed(
    {
        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
        "namespace": _STRING,
        "labels": {"type": "object", "additionalProperties": _STRING},
        "annotations": {"type": "object", "additionalProperties": _STRING},
    },
    ("name",),
)


def schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of one kind, as its reference documents it."""
    target_labels = _closed(
        {
            "metadata": {"type": "array", "items": {"enum": METADATA_LABELS[kind]},
                         "uniqueItems": True},
            "fromPod": {"type": "array",
                        "items": _closed({"from": _STRING, "to": _STRING}, ("from",))},
        }
    )  # fmt: skip
    spec = _closed(
        {
            "selector": _LABEL_SELECTOR,
            "endpoints": {"type": "array", "items": _SCRAPE_ENDPOINT, "minItems": 1},
            "targetLabels": target_labels,
            "limits": _SCRAPE_LIMITS,
        },
        ("selector", "endpoints"),
    )
    return _closed(
        {"apiVersion": {"const": API_VERSION}, "kind": {"const": kind}, "metadata": _METADATA,
         "spec": spec},
        ("apiVersion", "kind", "metadata", "spec"),
    )  # fmt: skip


_RULE = {
    "type": "object",
    "properties": {
        "record": _STRING,
        "alert": _STRING,
        "expr": {"type": "string", "minLength": 1},
        "for": {"type": "string", "pattern": DURATION},
        "labels": {"type": "object", "additionalProperties": _STRING},
        "annotations": {"type": "object", "additionalProperties": _STRING},
    },
    "required": ["expr"],
    "additionalProperties": False,
    "oneOf": [{"required": ["record"]}, {"required": ["alert"]}],
}
_RULE_GROUP = _closed(
    {
        "name": {"type": "string", "minLength": 1},
        "interval": {"type": "string", "pattern": DURATION},
        "rules": {"type": "array", "items": _RULE},
    },
    ("name", "interval", "rules"),
)


def rules_schema(kind: str) -> dict[str, Any]:
    """Rules and ClusterRules (RulesSpec, RuleGroup, Rule): the same spec, one namespaced."""
    return _closed(
        {"apiVersion": {"const": API_VERSION}, "kind": {"const": kind}, "metadata": _METADATA,
         "spec": _closed({"groups": {"type": "array", "items": _RULE_GROUP}}, ("groups",))},
        ("apiVersion", "kind", "metadata", "spec"),
    )  # fmt: skip


def seconds(duration: str) -> float:
    """A Prometheus duration ("1m30s", "10s", "500ms") in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"([0-9]+)(ms|[smhdwy])", duration)
    assert parts, f"duration {duration!r}"
    assert "".join(n + u for n, u in parts) == duration, f"duration {duration!r}"
    return sum(int(number) * units[unit] for number, unit in parts)


def validate(document: dict[str, Any]) -> None:
    """Raise AssertionError naming what is wrong when the object is not of the documented
    shape: a field unknown to its kind, a missing or mistyped one, a protected label
    relabeled, a namespace on a cluster-scoped kind or none on a namespaced one, a timeout
    longer than its interval, a rule group without its interval."""
    kind = document.get("kind")
    assert kind in (*KINDS, *RULES_KINDS), f"not a managed collection kind: {kind!r}"
    try:
        jsonschema.validate(document, schema(kind) if kind in KINDS else rules_schema(kind))
    except jsonschema.ValidationError as error:
        where = "/".join(str(part) for part in error.absolute_path)
        raise AssertionError(f"{kind} {where}: {error.message}") from None
    namespaced = "namespace" in document["metadata"]
    assert namespaced == (kind in ("PodMonitoring", "Rules")), f"{kind}: namespace {namespaced}"
    for endpoint in document["spec"].get("endpoints", []):
        if "interval" in endpoint and "timeout" in endpoint:
            assert seconds(endpoint["timeout"]) <= seconds(endpoint["interval"]), endpoint
