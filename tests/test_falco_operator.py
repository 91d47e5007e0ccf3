"""deploy/falco-operator/: Falco run by the falcosecurity Falco operator, with the exporter as
its native sidecar, rendered by the real `kubectl kustomize`.

No registry package ships the operator's CRDs, so its two kinds are checked against the
shape its CRD reference documents (the operator's docs/crds/falco.md and config.md: the
fields of FalcoSpec and ConfigSpec, their types and bounds), and the pod template inside
the Falco resource against Kubernetes' own PodTemplateSpec schema. The sidecar and the
Falco settings are held equal to deploy/falco/values-sidecar-http.yaml's, so the two ways of
installing Falco cannot drift apart.
"""

from __future__ import annotations

import copy
import subprocess
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate
import pytest
import yaml

from exporter.cli import main
from tests.support import REPO, find_tool
from tests.support.deploy import KUBERNETES_VERSION

EXAMPLE = REPO / "deploy" / "falco-operator"
# What the Falco chart's values and the operator's Config share: everything values-sidecar-http.yaml
# sets under `falco:`.
FALCO_SETTINGS = (
    "json_output",
    "json_include_output_property",
    "json_include_tags_property",
    "json_include_output_fields_property",
    "http_output",
    "metrics",
)
# The container names the operator keeps for itself.
RESERVED = {"falco", "artifact-operator"}


def closed(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """An object with exactly these properties (some required)."""
    return {"type": "object", "properties": properties, "required": list(required),
            "additionalProperties": False}  # fmt: skip


METADATA = closed(
    {"name": {"type": "string", "minLength": 1}, "namespace": {"type": "string"},
     "labels": {"type": "object"}, "annotations": {"type": "object"}},
    ("name",),
)  # fmt: skip
SELECTOR = closed({"matchLabels": {"type": "object"}, "matchExpressions": {"type": "array"}})
# FalcoSpec, as docs/crds/falco.md and the CRD's openAPIV3Schema give it.
FALCO = closed(
    {
        "apiVersion": {"const": "instance.falcosecurity.dev/v1alpha1"},
        "kind": {"const": "Falco"},
        "metadata": METADATA,
        "spec": closed(
            {
                "type": {"enum": ["DaemonSet", "Deployment"]},
                "replicas": {"type": "integer", "minimum": 1},
                "version": {"type": "string"},
                "podTemplateSpec": closed(
                    {"metadata": {"type": "object"},
                     "spec": {"type": "object", "required": ["containers"]}}
                ),
                "updateStrategy": {"type": "object"},
                "strategy": {"type": "object"},
            }
        ),
    },
    ("apiVersion", "kind", "metadata", "spec"),
)  # fmt: skip
# ConfigSpec, as docs/crds/config.md and the CRD's openAPIV3Schema give it.
CONFIG = closed(
    {
        "apiVersion": {"const": "artifact.falcosecurity.dev/v1alpha1"},
        "kind": {"const": "Config"},
        "metadata": METADATA,
        "spec": closed(
            {
                "config": {"type": "object"},
                "configMapRef": closed({"name": {"type": "string"}}, ("name",)),
                "priority": {"type": "integer", "minimum": 0, "maximum": 99},
                "selector": SELECTOR,
            }
        ),
    },
    ("apiVersion", "kind", "metadata", "spec"),
)  # fmt: skip


def validate(document: dict[str, Any]) -> None:
    """The operator's object against its documented shape, and the Falco pod template
    against Kubernetes' PodTemplateSpec (strict); AssertionError naming what is wrong."""
    schema = {"Falco": FALCO, "Config": CONFIG}[document["kind"]]
    try:
        jsonschema.validate(document, schema)
    except jsonschema.ValidationError as error:
        where = "/".join(str(part) for part in error.absolute_path)
        raise AssertionError(f"{document['kind']} {where}: {error.message}") from None
    if document["kind"] == "Falco":
        template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "falco"},
                    "template": document["spec"]["podTemplateSpec"]}  # fmt: skip
        kubernetes_validate.validate(template, KUBERNETES_VERSION, strict=True)


def rendered() -> dict[str, dict[str, Any]]:
    """deploy/falco-operator as `kubectl kustomize` renders it, by kind."""
    kubectl = find_tool("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    output = subprocess.run(
        [kubectl, "kustomize", str(EXAMPLE)], capture_output=True, text=True, timeout=120,
        check=True,
    ).stdout  # fmt: skip
    documents = [doc for doc in yaml.safe_load_all(output) if doc]
    by_kind = {doc["kind"]: doc for doc in documents}
    assert len(by_kind) == len(documents) == 2, [doc["kind"] for doc in documents]
    return by_kind


def sidecar_values() -> dict[str, Any]:
    """deploy/falco/values-sidecar-http.yaml, the Falco chart's way."""
    values: dict[str, Any] = yaml.safe_load(
        (REPO / "deploy" / "falco" / "values-sidecar-http.yaml").read_text()
    )
    return values


def test_the_falco_resource_and_its_config_have_the_documented_shape() -> None:
    """Both objects render and fit the operator's documented fields; the pod template is a
    valid Kubernetes PodTemplateSpec; the sidecar takes no name the operator keeps."""
    documents = rendered()
    for document in documents.values():
        validate(document)
    spec = documents["Falco"]["spec"]["podTemplateSpec"]["spec"]
    assert not {c["name"] for c in spec["initContainers"]} & RESERVED


def test_the_sidecar_is_the_one_the_falco_chart_gets() -> None:
    """The exporter's init container is values-sidecar-http.yaml's, field for field (image,
    args, ports, probes, resources, security context): one cannot change without the other."""
    spec = rendered()["Falco"]["spec"]["podTemplateSpec"]["spec"]
    assert spec["initContainers"] == sidecar_values()["extra"]["initContainers"]
    [sidecar] = spec["initContainers"]
    assert sidecar["restartPolicy"] == "Always"  # native: up before Falco, down after it


def test_the_config_turns_on_what_the_http_input_needs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """JSON output with the output property and fields, http_output to the sidecar's own
    address, and Falco's metrics snapshot: values-sidecar-http.yaml's `falco:` settings, each."""
    config = rendered()["Config"]["spec"]["config"]
    falco = sidecar_values()["falco"]
    assert {key: config.get(key) for key in FALCO_SETTINGS} == {
        key: falco[key] for key in FALCO_SETTINGS
    }
    assert config["json_output"] is True
    assert config["json_include_output_property"] is True
    assert config["json_include_output_fields_property"] is True
    assert config["http_output"]["enabled"] is True
    assert config["metrics"]["output_rule"] is True
    assert config["metrics"]["rules_counters_enabled"] is True
    [sidecar] = rendered()["Falco"]["spec"]["podTemplateSpec"]["spec"]["initContainers"]
    assert main([*sidecar["args"], "--check-config"]) == 0
    effective = yaml.safe_load(capsys.readouterr().out)
    assert config["http_output"]["url"] == f"http://{effective['http_input_address']}/"


def test_the_sidecar_overlay_scrapes_the_operators_pods() -> None:
    """The operator labels its pods app.kubernetes.io/name: <the Falco's name>: named falco
    in namespace falco, they are what deploy/k8s/overlays/sidecar's PodMonitor selects, on
    the sidecar's port it names."""
    kubectl = find_tool("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    overlay = subprocess.run(
        [kubectl, "kustomize", str(REPO / "deploy" / "k8s" / "overlays" / "sidecar")],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    [monitor] = [d for d in yaml.safe_load_all(overlay) if d and d["kind"] == "PodMonitor"]
    falco = rendered()["Falco"]
    pod_labels = {"app.kubernetes.io/name": falco["metadata"]["name"]}
    assert monitor["spec"]["selector"]["matchLabels"] == pod_labels
    assert monitor["metadata"]["namespace"] == falco["metadata"]["namespace"]
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    [sidecar] = falco["spec"]["podTemplateSpec"]["spec"]["initContainers"]
    assert endpoint["port"] in {port["name"] for port in sidecar["ports"]}


@pytest.mark.parametrize(
    ("kind", "change", "named"),
    [
        ("Falco", lambda d: d["spec"].update(podTemplate={}), "podTemplate"),
        ("Falco", lambda d: d["spec"].update(type="StatefulSet"), "type"),
        ("Falco", lambda d: d["spec"]["podTemplateSpec"]["spec"].pop("containers"),
         "containers"),
        ("Falco", lambda d: d["spec"]["podTemplateSpec"]["spec"]["initContainers"][0].update(
            restartPolcy="Always"), "restartPolcy"),
        ("Config", lambda d: d["spec"].update(priority=100), "priority"),
        ("Config", lambda d: d["spec"].update(falco={}), "falco"),
    ],
)  # fmt: skip
def test_the_shape_check_refuses_what_the_operator_does_not_take(
    kind: str, change: Any, named: str
) -> None:
    """The documented-shape check can fail: a misspelt field, a workload type the operator
    has not, a pod template without its containers, a misspelt container field, a priority
    past 99, settings outside `config`."""
    document = copy.deepcopy(rendered()[kind])
    change(document)
    with pytest.raises((AssertionError, kubernetes_validate.ValidationError), match=named):
        validate(document)
