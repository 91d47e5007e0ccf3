"""docs/quickstart.md, checked offline as far as it can be: the files it names exist, the
values it passes say what the page says they do, and the pieces agree with each other (the
namespaces, the dashboard's label, the image's name). Its PromQL runs against a real
Prometheus in tests/test_prometheus.py."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.support import REPO

PAGE = (REPO / "docs" / "quickstart.md").read_text(encoding="utf-8")


def load(path: str) -> Any:
    """A repository file's YAML, of any shape."""
    return yaml.safe_load((REPO / path).read_text())


def test_every_file_the_page_names_is_in_the_repository() -> None:
    """Each deploy/ path in a command or the text is there."""
    named = set(re.findall(r"\b(deploy/[\w./-]+\.yaml|deploy/k8s/overlays/\w+)\b", PAGE))
    assert len(named) >= 5
    for path in sorted(named):
        assert (REPO / path).exists(), path


def test_the_rule_file_is_the_walkthroughs_rule_for_the_falco_chart() -> None:
    """customRules, as the chart takes it: one rules file holding DetectCurlCommandExecution."""
    values = load("deploy/quickstart/rules-curl.yaml")
    [(name, text)] = values["customRules"].items()
    assert name.endswith(".yaml")
    [rule] = yaml.safe_load(text)
    assert rule["rule"] == "DetectCurlCommandExecution"
    assert rule["condition"] == "spawned_process and proc.name == curl"
    assert rule["priority"] == "WARNING"
    assert "%proc.cmdline" in rule["output"]


def test_prometheus_selects_the_overlays_monitors_and_grafana_loads_the_dashboard() -> None:
    """The overlay's PodMonitor and rules carry no release label: the values must select
    everything. Grafana's sidecar label is the dashboard ConfigMap's, in the namespace the
    page installs the stack in, which the NetworkPolicy admits."""
    values = load("deploy/quickstart/kube-prometheus-stack.yaml")
    spec = values["prometheus"]["prometheusSpec"]
    for selector in ("podMonitor", "serviceMonitor", "rule"):
        assert spec[f"{selector}SelectorNilUsesHelmValues"] is False, selector
    sidecar = values["grafana"]["sidecar"]["dashboards"]
    dashboard = load("deploy/grafana/dashboard-configmap.yaml")
    assert dashboard["metadata"]["labels"][sidecar["label"]] == sidecar["labelValue"]
    assert "-n monitoring --create-namespace -f deploy/quickstart/kube-prometheus-stack" in PAGE
    assert dashboard["metadata"]["namespace"] == "monitoring"
    policy = load("deploy/k8s/overlays/sidecar/networkpolicy.yaml")
    [rule] = policy["spec"]["ingress"]
    [source] = rule["from"]
    assert source["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }


def test_the_image_the_page_builds_is_the_one_falco_runs() -> None:
    """`minikube image build -t X` and `kind load docker-image X` name the sidecar's image."""
    [sidecar] = load("deploy/falco/values-sidecar-http.yaml")["extra"]["initContainers"]
    image = sidecar["image"]
    assert f"minikube image build -t {image} ." in PAGE
    assert f"kind load docker-image {image}" in PAGE
    assert not image.endswith(":latest")  # IfNotPresent: the loaded image is used
