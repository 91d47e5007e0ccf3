"""GKE's managed collection (PodMonitoring, ClusterPodMonitoring): the chart's values and the
kustomize components, rendered by the real helm and `kubectl kustomize`.

No registry package ships the monitoring.googleapis.com CRDs, so their objects are checked
against the shape the managed collection's API reference documents (tests/support/gmp.py);
every other object against Kubernetes' own schemas. Then each is cross-checked: it selects
the pods that serve the port it names, in the namespace it lives in.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support import REPO, find_tool, gmp
from tests.support.deploy import KUBERNETES_VERSION

CHART = REPO / "deploy" / "helm" / "falco-exporter"
K8S = REPO / "deploy" / "k8s"
MODES: dict[str, list[str]] = {
    "sidecar": ["--set", "mode=sidecar"],
    "http-input": ["--set", "mode=http-input"],
    "grpc": ["--set", "mode=grpc", "--set", "falco.grpcHostname=falco-grpc.falco.svc",
             "--set", "certs.client.crt=C", "--set", "certs.client.key=K",
             "--set", "certs.ca.crt=A"],
    "socket": [],
}  # fmt: skip
GKE = ["--set", "gkeManagedPrometheus.enabled=true", "--set", "networkPolicy.enabled=true"]
CENTRAL_OVERLAYS = ("grpc-mtls", "daemonset-socket", "http-input")
WORKLOADS = {"Deployment", "DaemonSet"}


def tool(name: str) -> str:
    """The tool's path (the venv's first); skipped without it, which fails in CI."""
    path = find_tool(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    """The real helm, output kept."""
    return subprocess.run(
        [tool("helm"), *args], capture_output=True, text=True, timeout=120, check=False
    )


def template(namespace: str, *values: str) -> list[dict[str, Any]]:
    """`helm template` of the chart, as documents; fails with helm's message."""
    result = helm("template", "fe", str(CHART), "-n", namespace, *values)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def with_component(tmp_path: Path, overlay: str, component: str) -> list[dict[str, Any]]:
    """An overlay with `components: [../../components/<component>]` added, as docs/deploy.md
    says to, rendered by `kubectl kustomize` (on a copy of deploy/k8s: the tree is left as
    it ships)."""
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree)
    kustomization = tree / "overlays" / overlay / "kustomization.yaml"
    document = yaml.safe_load(kustomization.read_text())
    document.setdefault("components", []).append(f"../../components/{component}")
    kustomization.write_text(yaml.safe_dump(document))
    output = subprocess.run(
        [tool("kubectl"), "kustomize", str(kustomization.parent)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def validate(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every object valid: core kinds by Kubernetes' schemas (strict), the managed
    collection's by its documented shape; no Operator kind is left (its CRDs are not on such
    a cluster). The managed collection's objects, returned."""
    monitors = []
    for document in documents:
        group = document["apiVersion"].split("/")[0]
        assert group != "monitoring.coreos.com", f"{document['kind']} needs the Operator's CRDs"
        if group == "monitoring.googleapis.com":
            gmp.validate(document)
            monitors.append(document)
        else:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    return monitors


def falco_sidecar() -> dict[str, Any]:
    """The exporter's container of deploy/falco/values-sidecar-http.yaml."""
    values = yaml.safe_load((REPO / "deploy" / "falco" / "values-sidecar-http.yaml").read_text())
    [sidecar] = values["extra"]["initContainers"]
    assert isinstance(sidecar, dict)
    return sidecar


# The Falco chart's pod labels, as the Operator's PodMonitor selects them.
FALCO_POD_LABELS = {"app.kubernetes.io/name": "falco", "app.kubernetes.io/instance": "falco"}


def scraped(monitor: dict[str, Any], documents: list[dict[str, Any]]) -> tuple[str, int]:
    """(namespace, port number) of what the monitor scrapes: the selected pods, Falco's with
    the sidecar or else the workload's, checked to be in its namespace and to serve the port
    it names."""
    selector = monitor["spec"]["selector"]["matchLabels"]
    [endpoint] = monitor["spec"]["endpoints"]
    workloads = [d for d in documents if d["kind"] in WORKLOADS]
    if not workloads:  # the sidecar: the pods are Falco's, in the release's namespace
        assert selector.items() <= FALCO_POD_LABELS.items(), selector
        ports = {p["name"]: p["containerPort"] for p in falco_sidecar()["ports"]}
        return monitor["metadata"].get("namespace", "*"), ports[endpoint["port"]]
    [workload] = workloads
    pod = workload["spec"]["template"]
    assert selector.items() <= pod["metadata"]["labels"].items(), selector
    if monitor["kind"] == "PodMonitoring":
        assert monitor["metadata"]["namespace"] == workload["metadata"]["namespace"]
    [container] = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert endpoint["port"] in ports, (endpoint["port"], ports)
    return workload["metadata"]["namespace"], ports[endpoint["port"]]


@pytest.mark.parametrize("kind", gmp.KINDS)
@pytest.mark.parametrize("mode", MODES)
def test_the_chart_makes_a_podmonitoring_of_what_each_mode_serves(mode: str, kind: str) -> None:
    """gkeManagedPrometheus.enabled: helm lint passes; one object of the kind, named
    falco-exporter (the job the rules select), of the documented shape, scrapes port 9376
    of the sidecar in Falco's pods or of the exporter's own pods; nothing needs the
    Operator."""
    values = [*MODES[mode], *GKE, "--set", f"gkeManagedPrometheus.kind={kind}"]
    lint = helm("lint", "--strict", str(CHART), *values)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    documents = template("falco", *values)
    [monitor] = validate(documents)
    assert monitor["kind"] == kind
    assert monitor["metadata"]["name"] == "falco-exporter"
    namespace, port = scraped(monitor, documents)
    assert port == 9376
    if kind == "PodMonitoring":
        assert namespace == "falco"
    assert "node" in monitor["spec"]["targetLabels"]["metadata"]


@pytest.mark.parametrize(("kind", "rules_kind"), list(zip(gmp.KINDS, gmp.RULES_KINDS, strict=True)))
def test_the_rules_go_in_the_managed_collections_own_kind(kind: str, rules_kind: str) -> None:
    """prometheusRules.enabled beside the managed collection: its Rules (ClusterRules beside
    a ClusterPodMonitoring), of the documented shape, holding exactly the groups of
    deploy/prometheus/falco-exporter-rules.yaml, each with the interval the kind requires,
    and reading the namespace the PodMonitoring scrapes; no PrometheusRule."""
    values = [*MODES["sidecar"], *GKE, "--set", f"gkeManagedPrometheus.kind={kind}",
              "--set", "prometheusRules.enabled=true"]  # fmt: skip
    lint = helm("lint", "--strict", str(CHART), *values)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    documents = template("falco", *values)
    objects = {document["kind"]: document for document in validate(documents)}
    assert set(objects) == {kind, rules_kind}
    rules, monitor = objects[rules_kind], objects[kind]
    shipped = yaml.safe_load((REPO / "deploy/prometheus/falco-exporter-rules.yaml").read_text())
    groups = rules["spec"]["groups"]
    assert [group.pop("interval") for group in groups] == ["30s"] * len(groups)
    assert groups == shipped["groups"]
    assert rules["metadata"].get("namespace") == monitor["metadata"].get("namespace")


def test_the_chart_refuses_mtls_scrapes_the_managed_collection_cannot_make() -> None:
    """service.mTLS needs a client certificate, which the managed collection cannot present:
    refused before anything is made, naming both values and the way out."""
    result = helm(
        "template", "fe", str(CHART), *MODES["http-input"], *GKE,
        "--set", "service.mTLS.enabled=true", "--set", "service.mTLS.existingSecret=scrape",
    )  # fmt: skip
    assert result.returncode != 0
    for named in ("gkeManagedPrometheus.enabled", "service.mTLS.enabled", "client certificate"):
        assert named in result.stderr, named


def test_without_the_value_the_operator_kinds_stay() -> None:
    """Off by default: mode sidecar keeps its PodMonitor, and no monitoring.googleapis.com
    object is made."""
    documents = template("falco", *MODES["sidecar"])
    kinds = {(d["apiVersion"], d["kind"]) for d in documents}
    assert ("monitoring.coreos.com/v1", "PodMonitor") in kinds
    assert not [d for d in documents if d["apiVersion"].startswith("monitoring.googleapis.com")]


@pytest.mark.parametrize(
    ("flag", "named"),
    [("gkeManagedPrometheus.kind=ServiceMonitor", "kind"),
     ("gkeManagedPrometheus.interval=30", "interval"),
     ("gkeManagedPrometheus.intreval=30s", "intreval")],
)  # fmt: skip
def test_the_schema_refuses_a_wrong_gke_value_naming_it(flag: str, named: str) -> None:
    """A kind the managed collection has not, a duration without its unit, a misspelt key."""
    result = helm("template", "fe", str(CHART), "--set", "gkeManagedPrometheus.enabled=true",
                  "--set", flag)  # fmt: skip
    assert result.returncode != 0
    assert named in result.stderr


@pytest.mark.parametrize("overlay", CENTRAL_OVERLAYS)
def test_the_component_turns_a_central_overlay_to_the_managed_collection(
    tmp_path: Path, overlay: str
) -> None:
    """components/gke-managed-prometheus in a central overlay: the ServiceMonitor and the
    PrometheusRule are gone, a PodMonitoring falco-exporter of the documented shape scrapes
    the exporter's metrics port in its namespace, and the rest is as before."""
    documents = with_component(tmp_path, overlay, "gke-managed-prometheus")
    [monitor] = validate(documents)
    assert monitor["kind"] == "PodMonitoring"
    assert monitor["metadata"]["name"] == "falco-exporter"
    assert scraped(monitor, documents) == ("falco-exporter", 9376)
    assert {d["kind"] for d in documents} >= {"Service", "NetworkPolicy", "ServiceAccount"}


def test_the_sidecar_component_scrapes_every_falco_pod(tmp_path: Path) -> None:
    """components/gke-managed-prometheus-sidecar in the sidecar overlay: a PodMonitoring in
    Falco's namespace selecting Falco's pods on the sidecar's port exp-metrics (9376), the
    port its NetworkPolicy admits, instead of the PodMonitor and the PrometheusRule."""
    documents = with_component(tmp_path, "sidecar", "gke-managed-prometheus-sidecar")
    [monitor] = validate(documents)
    assert scraped(monitor, documents) == ("falco", 9376)
    [policy] = [d for d in documents if d["kind"] == "NetworkPolicy"]
    assert policy["metadata"]["namespace"] == "falco"
    assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == [9376]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda m: m["spec"]["endpoints"][0].update(relabelings=[]), "relabelings"),
        (lambda m: m["spec"]["endpoints"][0].update(timeout="1m"), "timeout"),
        (lambda m: m["spec"]["endpoints"][0].update(interval="30"), "interval"),
        (lambda m: m["spec"].pop("selector"), "selector"),
        (lambda m: m["spec"]["targetLabels"].update(metadata=["namespace"]), "metadata"),
        (lambda m: m["spec"]["endpoints"][0].update(
            metricRelabeling=[{"targetLabel": "job", "replacement": "x"}]), "targetLabel"),
        (lambda m: m["metadata"].pop("namespace"), "namespace"),
        (lambda m: m["spec"]["endpoints"][0].update(tls={"cert": {}}), "tls"),
    ],
)  # fmt: skip
def test_the_shape_check_refuses_what_the_reference_does_not_document(
    change: Any, named: str
) -> None:
    """The documented-shape check can fail: an Operator field (relabelings), a timeout past
    the interval, a duration without unit, no selector, namespace metadata on a PodMonitoring,
    a protected label relabeled, a PodMonitoring without namespace, a client certificate."""
    [monitor] = validate(template("falco", *MODES["sidecar"], *GKE))
    change(monitor)
    with pytest.raises(AssertionError, match=named):
        gmp.validate(monitor)
