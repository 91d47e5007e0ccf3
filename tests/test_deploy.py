"""What ships: manifests, alert rules, the image recipe and the certificate command.

No cluster runs here, so every artifact is checked with the real tool that reads it
(kubectl kustomize, Kubernetes' schemas, promtool, hadolint, pip) and cross-checked
against the exporter itself.
"""

from __future__ import annotations

import re
import ssl
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from packaging.requirements import Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

from exporter import __version__
from exporter.app import SHUTDOWN_TIMEOUT
from exporter.cli import main
from exporter.simulator.certs import CertPaths
from exporter.simulator.server import ServerTls, SimulatedFalco
from tests.support import REPO, MakeExporter, counted, find_tool, response, total_events
from tests.support.deploy import KUBERNETES_VERSION, load_resources, mebibytes, millicores

OVERLAYS = ("grpc-mtls", "daemonset-socket", "http-input")
RESOURCES = load_resources()
WORKLOADS = ("Deployment", "DaemonSet")


def need(tool: str) -> str:
    """The tool's path (the venv's first); skipped without it, which fails in CI."""
    path = find_tool(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed")
    return path


def render(overlay: str) -> list[dict[str, Any]]:
    """`kubectl kustomize` of an overlay, as documents."""
    kubectl = need("kubectl")
    output = subprocess.run(
        [kubectl, "kustomize", str(REPO / "deploy" / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def one(documents: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The single document of a kind (and name)."""
    found = [
        d
        for d in documents
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def workload(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """The overlay's Deployment or DaemonSet."""
    [found] = [d for d in documents if d["kind"] in WORKLOADS]
    return found


def container(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """The exporter's container."""
    [found] = workload(documents)["spec"]["template"]["spec"]["containers"]
    assert isinstance(found, dict)
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_matches_kubernetes_schemas(overlay: str) -> None:
    """Every built-in object validates strictly against Kubernetes' own schema."""
    documents = render(overlay)
    validated = 0
    for document in documents:
        if document["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # CRDs: checked by the cross-checks below
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        validated += 1
    assert validated >= 5


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_parts_fit_together(overlay: str) -> None:
    """ServiceMonitor -> Service -> pods -> ports -> probes -> NetworkPolicy all line up."""
    documents = render(overlay)
    service = one(documents, "Service", "falco-exporter")
    monitor = one(documents, "ServiceMonitor")
    pod = workload(documents)["spec"]["template"]
    ports = {p["name"]: p["containerPort"] for p in container(documents)["ports"]}

    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in ports
    assert ports == {**ports, "metrics": 9376, "probes": 19376}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container(documents)[probe]["httpGet"]["port"] == "probes"

    policy = one(documents, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    allowed = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert ports["metrics"] in allowed
    if overlay == "http-input":
        assert ports["http-input"] in allowed
    if overlay == "grpc-mtls":
        # DNS wherever the resolver is (NodeLocal DNSCache has no namespace): port 53, any peer.
        [dns] = [rule for rule in policy["spec"]["egress"] if "to" not in rule]
        assert sorted((p["port"], p["protocol"]) for p in dns["ports"]) == [
            (53, "TCP"),
            (53, "UDP"),
        ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workloads_are_locked_down(overlay: str) -> None:
    """Non-root, read-only, no capabilities, seccomp, no API token, limits, grace period."""
    documents = render(overlay)
    spec = workload(documents)["spec"]["template"]["spec"]
    box = container(documents)
    if overlay == "daemonset-socket":
        # The socket's owner, with no capability left (tests/test_socket_mode.py).
        assert spec["securityContext"]["runAsUser"] == 0
        assert [m["readOnly"] for m in box["volumeMounts"]] == [True]
    else:
        assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    assert spec["terminationGracePeriodSeconds"] > SHUTDOWN_TIMEOUT
    assert box["securityContext"]["readOnlyRootFilesystem"] is True
    assert box["securityContext"]["allowPrivilegeEscalation"] is False
    assert box["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert set(box["resources"]) == {"requests", "limits"}
    assert box["image"] == f"falco-exporter:{__version__}"  # the tag reaches the workload
    # Requests hold the RSS measured at the default --max-series; limits its peak twice over
    # (bench/memory.py, docs/performance.md).
    measured = RESOURCES.deployments[overlay].measured
    assert mebibytes(box["resources"]["requests"]["memory"]) >= measured.rss_at_default_limit_mib
    # CPU requests above the idle CPU of one target (a gRPC poll every 50 ms), with room.
    assert millicores(box["resources"]["requests"]["cpu"]) >= measured.idle_millicores + 5
    assert mebibytes(box["resources"]["limits"]["memory"]) >= 2 * measured.peak_at_default_limit_mib
    account = one(documents, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_renders_the_resources_of_deploy_resources_yaml(overlay: str) -> None:
    """The overlay's container, as kustomize renders it, requests and limits exactly what
    deploy/resources.yaml gives its deployment: the file is the one source of the figures."""
    rendered = container(render(overlay))["resources"]
    assert RESOURCES.deployments[overlay].agrees_with(rendered), (
        f"deploy/k8s/overlays/{overlay} renders {rendered}; deploy/resources.yaml says "
        f"{RESOURCES.deployments[overlay].resources}"
    )


@pytest.mark.parametrize("name", ["values-sidecar.yaml", "values-sidecar-http.yaml"])
def test_the_sidecar_values_request_the_resources_of_deploy_resources_yaml(name: str) -> None:
    """Each sidecar's exporter container requests deploy/resources.yaml's sidecar figures."""
    [sidecar] = falco_values(name)["extra"]["initContainers"]
    assert RESOURCES.deployments["sidecar"].agrees_with(sidecar["resources"]), sidecar["resources"]


def test_every_deployment_holds_what_was_measured() -> None:
    """deploy/resources.yaml's own rules: memory requests hold the RSS at the default series
    limit, memory limits twice the peak there, CPU requests the idle CPU with 5m of room; and
    it says when and how the figures were measured."""
    assert set(RESOURCES.deployments) == {*OVERLAYS, "sidecar"}
    for name, deployment in RESOURCES.deployments.items():
        measured = deployment.measured
        assert mebibytes(deployment.requests["memory"]) >= measured.rss_at_default_limit_mib, name
        assert mebibytes(deployment.limits["memory"]) >= 2 * measured.peak_at_default_limit_mib
        assert millicores(deployment.requests["cpu"]) >= measured.idle_millicores + 5, name
        assert millicores(deployment.limits["cpu"]) >= millicores(deployment.requests["cpu"])
    assert RESOURCES.command.startswith("python -m bench.memory --series ")
    assert (REPO / "bench" / "memory.py").exists()


def assert_quoted(path: str, pattern: str, expected: tuple[str, ...]) -> None:
    """The figures a doc quotes where `pattern` (a regex over its text, white space folded)
    matches are `expected`; fails naming the doc when they differ or it no longer quotes them."""
    text = " ".join((REPO / path).read_text(encoding="utf-8").split())
    found = re.search(pattern, text)
    assert found is not None, f"{path} no longer quotes the figures /{pattern}/ looks for"
    assert found.groups() == expected, (
        f"{path} quotes {found.groups()}; deploy/resources.yaml makes them {expected}"
    )


def measured_table(path: str) -> dict[str, tuple[float, ...]]:
    """The rows of the table bench/memory.py prints at deploy/resources.yaml's --series, as
    `path` copies it: mode -> (idle RSS, idle millicores, RSS, peak)."""
    series = int(RESOURCES.command.rsplit(" ", 1)[1])
    header = (
        f"| mode | idle RSS MiB | idle CPU millicores | RSS at {series:,} series MiB | peak MiB |"
    )
    lines = (REPO / path).read_text(encoding="utf-8").splitlines()
    assert header in lines, f"{path} has no table {header}"
    rows: dict[str, tuple[float, ...]] = {}
    for line in lines[lines.index(header) + 2 :]:
        if not line.startswith("|"):
            break
        mode, *figures = (cell.strip() for cell in line.strip("|").split("|"))
        rows[mode] = tuple(float(figure) for figure in figures)
    return rows


def test_the_docs_quote_the_figures_of_deploy_resources_yaml() -> None:
    """docs/performance.md's table at the default series limit is the measurement, and both
    docs quote the requests, limits and measured MiB the manifests use."""
    modes = RESOURCES.modes
    assert measured_table("docs/performance.md") == {
        mode.row: (
            mode.idle_rss_mib,
            mode.idle_millicores,
            mode.rss_at_default_limit_mib,
            mode.peak_at_default_limit_mib,
        )
        for mode in modes.values()
    }
    deployments = RESOURCES.deployments
    sidecar, central, socket, grpc = (
        deployments[name] for name in ("sidecar", "http-input", "daemonset-socket", "grpc-mtls")
    )
    # The docs speak of one memory figure for both HTTP input modes, and one for both gRPC.
    assert sidecar.requests["memory"] == central.requests["memory"]
    assert sidecar.limits["memory"] == central.limits["memory"]
    assert socket.requests["memory"] == grpc.requests["memory"]
    assert socket.limits["memory"] == grpc.limits["memory"]
    assert_quoted(
        "docs/performance.md",
        r"CPU (\S+) for the sidecar, (\S+) for the central HTTP input, (\S+) for the socket "
        r"DaemonSet \(one target\), (\S+) for central gRPC; and memory: the HTTP input modes "
        r"\(the sidecar values and the `http-input` overlay\) request (\S+) and limit (\S+), "
        r"the gRPC overlays request (\S+) and limit (\S+):",
        (
            sidecar.requests["cpu"],
            central.requests["cpu"],
            socket.requests["cpu"],
            grpc.requests["cpu"],
            central.requests["memory"],
            central.limits["memory"],
            grpc.requests["memory"],
            grpc.limits["memory"],
        ),
    )
    http = modes["http"]
    grpc_modes = (modes["grpc-socket"], modes["grpc-mtls"])
    assert_quoted(
        "docs/deploy.md",
        r"the HTTP input modes request (\S+) \((\S+) MiB idle, (\S+) MiB at 10,000 series\), "
        r"the gRPC modes (\S+) \((\S+) to (\S+) MiB idle, (\S+) to (\S+) MiB\)",
        (
            central.requests["memory"],
            f"{http.idle_rss_mib:.0f}",
            f"{http.rss_at_default_limit_mib:.0f}",
            grpc.requests["memory"],
            f"{min(mode.idle_rss_mib for mode in grpc_modes):.0f}",
            f"{max(mode.idle_rss_mib for mode in grpc_modes):.0f}",
            f"{min(mode.rss_at_default_limit_mib for mode in grpc_modes):.0f}",
            f"{max(mode.rss_at_default_limit_mib for mode in grpc_modes):.0f}",
        ),
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_container_arguments_pass_check_config(
    overlay: str, tmp_path: Path, certs: CertPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    """The container's args and config file are accepted by the exporter's --check-config."""
    documents = render(overlay)
    root = tmp_path / "root"

    def relocate(text: str) -> str:
        return text.replace("/etc/falco-exporter/", f"{root}/etc/falco-exporter/")

    for mount in container(documents).get("volumeMounts", []):
        source = next(
            v
            for v in workload(documents)["spec"]["template"]["spec"]["volumes"]
            if v["name"] == mount["name"]
        )
        if "configMap" in source:
            config_map = one(documents, "ConfigMap")
            target = Path(relocate(mount["mountPath"]))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(relocate(config_map["data"][mount["subPath"]]))
        elif "secret" in source:
            folder = Path(relocate(mount["mountPath"]))
            folder.mkdir(parents=True, exist_ok=True)
            for name, path in (
                ("ca.crt", certs.ca),
                ("client.crt", certs.client_cert),
                ("client.key", certs.client_key),
            ):
                (folder / name).write_bytes(path.read_bytes())
    args = [relocate(arg) for arg in container(documents)["args"]]
    assert main([*args, "--check-config"]) == 0
    effective = yaml.safe_load(capsys.readouterr().out)
    assert effective["series_ttl"] == "1h"
    if overlay == "grpc-mtls":
        assert effective["discover_dns"] == "falco-grpc.falco.svc.cluster.local:5060"


def test_prometheus_rule_equals_the_plain_rules_file() -> None:
    """The Operator's PrometheusRule and the plain rules file hold the same rules."""
    plain = yaml.safe_load((REPO / "deploy/prometheus/falco-exporter-rules.yaml").read_text())
    operator = yaml.safe_load((REPO / "deploy/k8s/rules/prometheusrule.yaml").read_text())
    assert operator["spec"] == plain
    names = [rule["alert"] for group in plain["groups"] for rule in group["rules"]]
    for priority in ("Warning", "Error", "Critical", "Alert", "Emergency"):
        assert f"Falco{priority}EventsRateHigh" in names


def test_promtool_checks_and_unit_tests_the_alert_rules() -> None:
    """`promtool check rules` passes and `promtool test rules` covers every alert both ways."""
    promtool = need("promtool")
    folder = REPO / "deploy" / "prometheus"
    subprocess.run(
        [promtool, "check", "rules", "falco-exporter-rules.yaml"],
        cwd=folder,
        check=True,
        capture_output=True,
        timeout=60,
    )
    result = subprocess.run(
        [promtool, "test", "rules", "rules-test.yaml"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tests = yaml.safe_load((folder / "rules-test.yaml").read_text())["tests"]
    rules = yaml.safe_load((folder / "falco-exporter-rules.yaml").read_text())
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    firing = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    silent = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if not case["exp_alerts"]
    }
    assert firing == names
    assert silent == names


def test_dockerfile_passes_hadolint() -> None:
    """hadolint finds nothing in the Dockerfile."""
    hadolint = need("hadolint")
    result = subprocess.run(
        [hadolint, str(REPO / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_wheel_built_as_in_the_image_runs_as_a_non_root_user(
    installed_as_in_the_image: Path,
) -> None:
    """The Dockerfile's wheel, in a fresh venv, runs --help as uid 65532 with nothing writable."""
    result = subprocess.run(
        [
            "setpriv",
            "--reuid=65532",
            "--regid=65532",
            "--clear-groups",
            str(installed_as_in_the_image),
            "--help",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert "--client-hostname" in result.stdout


async def test_certs_command_output_connects_falco_and_exporter(
    tmp_path: Path, make_exporter: MakeExporter, capsys: pytest.CaptureFixture[str]
) -> None:
    """`falco-exporter certs` writes files the simulated Falco and the exporter use as-is."""
    out = tmp_path / "certs"
    assert main(["certs", "--out", str(out), "--falco-name", "falco-grpc.falco.svc"]) == 0
    printed = capsys.readouterr().out
    assert "kubectl -n falco-exporter create secret generic falco-exporter-client-certs" in printed
    assert "--set-file certs.server.crt=" in printed
    assert oct((out / "ca.key").stat().st_mode & 0o777) == "0o600"
    paths = CertPaths.in_directory(out)
    falco = SimulatedFalco()
    address = await falco.start(
        "127.0.0.1:0", ServerTls(paths.server_cert, paths.server_key, paths.ca)
    )
    try:
        exporter = await make_exporter(
            client_hostname=[f"127.0.0.1:{address.rsplit(':', 1)[1]}"],
            client_tls_server_name="falco-grpc.falco.svc",
            client_cert=str(paths.client_cert),
            client_key=str(paths.client_key),
            client_ca=str(paths.ca),
        )
        falco.publish([response()])
        await counted(exporter, 1, message="counted with the generated certificates")
    finally:
        await falco.stop()


def falco_values(name: str) -> dict[str, Any]:
    """One of deploy/falco/'s values files for the Falco Helm chart."""
    values: dict[str, Any] = yaml.safe_load((REPO / "deploy" / "falco" / name).read_text())
    return values


@pytest.mark.parametrize("name", ["values-sidecar-http.yaml", "values-http-output.yaml"])
def test_falco_values_for_the_http_input_turn_on_what_it_needs(name: str) -> None:
    """JSON output with its output fields (pod labels), http_output, and Falco's snapshots."""
    falco = falco_values(name)["falco"]
    assert falco["json_output"] is True
    assert falco["json_include_output_fields_property"] is True
    assert falco["http_output"]["enabled"] is True
    assert falco["metrics"] == {
        "enabled": True,
        "interval": "1m",
        "output_rule": True,
        "rules_counters_enabled": True,
        "kernel_event_counters_enabled": True,
    }


def sidecar_pod() -> dict[str, Any]:
    """A Falco pod as the chart renders it with values-sidecar-http.yaml's extra.initContainers."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "falco-abcde", "labels": {"app.kubernetes.io/name": "falco"}},
        "spec": {
            "initContainers": falco_values("values-sidecar-http.yaml")["extra"]["initContainers"],
            "containers": [{"name": "falco", "image": "falcosecurity/falco:0.44.1"}],
        },
    }


def test_sidecar_is_a_valid_native_sidecar_that_falco_posts_to(
    certs: CertPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    """restartPolicy Always, locked down, valid for Kubernetes; Falco's URL is its address."""
    pod = sidecar_pod()
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
    [sidecar] = pod["spec"]["initContainers"]
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["securityContext"]["runAsNonRoot"] is True
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    assert sidecar["securityContext"]["capabilities"]["drop"] == ["ALL"]
    measured = RESOURCES.deployments["sidecar"].measured  # the HTTP-only mode
    assert (
        mebibytes(sidecar["resources"]["requests"]["memory"]) >= measured.rss_at_default_limit_mib
    )
    assert (
        mebibytes(sidecar["resources"]["limits"]["memory"])
        >= 2 * measured.peak_at_default_limit_mib
    )
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert sidecar[probe]["httpGet"]["port"] == "exp-probes"
    assert main([*sidecar["args"], "--check-config"]) == 0
    effective = yaml.safe_load(capsys.readouterr().out)
    url = falco_values("values-sidecar-http.yaml")["falco"]["http_output"]["url"]
    assert url == f"http://{effective['http_input_address']}/"
    assert effective["http_input_address"].startswith("127.0.0.1:")
    assert effective["client_hostname"] == []
    assert effective["targets"] == []


def test_sidecar_overlay_scrapes_every_falco_pod_as_job_falco_exporter() -> None:
    """The PodMonitor selects Falco's pods, names a port of the sidecar, relabels the job."""
    documents = render("sidecar")
    monitor = one(documents, "PodMonitor")
    pod = sidecar_pod()
    assert monitor["metadata"]["namespace"] == "falco"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    [sidecar] = pod["spec"]["initContainers"]
    ports = {port["name"]: port["containerPort"] for port in sidecar["ports"]}
    assert ports[endpoint["port"]] == 9376
    assert {"targetLabel": "job", "replacement": "falco-exporter"} in endpoint["relabelings"]
    rule = one(documents, "PrometheusRule")
    assert rule["metadata"]["namespace"] == "falco"
    assert not [d for d in documents if d["kind"] in {"Service", *WORKLOADS}]


def test_central_http_input_is_highly_available() -> None:
    """Two replicas, spread, a PDB that keeps one, and rollouts that never reach zero ready."""
    documents = render("http-input")
    deployment = workload(documents)
    spec = deployment["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert spec["strategy"]["rollingUpdate"]["maxSurge"] >= 1
    budget = one(documents, "PodDisruptionBudget")
    kubernetes_validate.validate(budget, KUBERNETES_VERSION, strict=True)
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert 1 <= budget["spec"]["minAvailable"] < spec["replicas"]
    spread = spec["template"]["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    }
    for constraint in spread:
        assert constraint["labelSelector"]["matchLabels"].items() <= pod_labels.items()
    pause = container(documents)["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = spec["template"]["spec"]["terminationGracePeriodSeconds"]
    assert pause + SHUTDOWN_TIMEOUT < grace


def test_every_alert_has_a_runbook_section_and_a_scope() -> None:
    """runbook_url names a heading of docs/runbooks.md; `scope` routes pod, rule, exporter or
    falco (Falco's own delivery and blindness)."""
    rules = yaml.safe_load((REPO / "deploy/prometheus/falco-exporter-rules.yaml").read_text())
    headings = {
        line.lstrip("#").strip().lower()
        for line in (REPO / "docs" / "runbooks.md").read_text().splitlines()
        if line.startswith("#")
    }
    for group in rules["groups"]:
        for rule in group["rules"]:
            path, _, anchor = rule["annotations"]["runbook_url"].partition("#")
            assert path == "docs/runbooks.md", rule["alert"]
            assert anchor == rule["alert"].lower()
            assert anchor in headings, rule["alert"]
            assert rule["labels"]["scope"] in {"pod", "rule", "exporter", "falco"}


async def test_certs_for_the_http_input_connect_falco_as_its_chart_mounts_them(
    tmp_path: Path, make_exporter: MakeExporter, capsys: pytest.CaptureFixture[str]
) -> None:
    """The HTTP input's pair: the exporter serves it, Falco's client pair is accepted by it,
    and the printed chart values use the chart's mount paths."""
    out = tmp_path / "certs"
    assert main(["certs", "--out", str(out), "--exporter-name", "exporter.example"]) == 0
    printed = capsys.readouterr().out
    assert "--set-file certs.client.crt=" in printed
    assert "falco.http_output.client_cert=/etc/falco/certs/client/client.crt" in printed
    assert "falco.http_output.ca_cert=/etc/falco/certs/client/ca.crt" in printed
    exporter = await make_exporter(
        http_input_address="127.0.0.1:0",
        http_input_cert=str(out / "http-input.crt"),
        http_input_key=str(out / "http-input.key"),
        http_input_ca=str(out / "ca.crt"),
    )
    context = ssl.create_default_context(cafile=str(out / "ca.crt"))
    context.load_cert_chain(out / "falco-client.crt", out / "falco-client.key")
    url = f"https://localhost:{exporter.ports['http_input']}/"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=b'{"rule": "r", "priority": "Warning"}', ssl=context) as answer,
    ):
        assert answer.status == 200
    assert await total_events(exporter.main_http.port) == 1


def test_certs_refuses_to_replace_and_reuses_a_ca(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second run would replace the CA: refused, naming how to reuse it; reuse verifies."""
    out = tmp_path / "certs"
    assert main(["certs", "--out", str(out)]) == 0
    first_ca = (out / "ca.crt").read_bytes()
    with pytest.raises(SystemExit) as refused:
        main(["certs", "--out", str(out)])
    assert refused.value.code == 2
    assert "--ca-cert" in capsys.readouterr().err
    assert (out / "ca.crt").read_bytes() == first_ca
    again = ["certs", "--out", str(out), "--ca-cert", str(out / "ca.crt")]
    assert main([*again, "--ca-key", str(out / "ca.key"), "--force"]) == 0
    assert (out / "ca.crt").read_bytes() == first_ca
    context = ssl.create_default_context(cafile=str(out / "ca.crt"))
    context.load_cert_chain(out / "client.crt", out / "client.key")  # a pair from the same CA
    renewed = x509.load_pem_x509_certificate((out / "client.crt").read_bytes())
    issuer = x509.load_pem_x509_certificate(first_ca)
    renewed.verify_directly_issued_by(issuer)


def test_the_no_operator_variant_is_scraped_by_annotations() -> None:
    """Without the Operator: no ServiceMonitor or PrometheusRule (their CRDs would be
    missing), and prometheus.io annotations naming the port the metrics are served on."""
    documents = render("http-input-no-operator")
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    kinds = {document["kind"] for document in documents}
    assert not kinds & {"ServiceMonitor", "PrometheusRule"}
    assert "Deployment" in kinds
    service = one(documents, "Service", "falco-exporter")
    deployment = one(documents, "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    metrics_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "metrics")
    for scrape in (
        service["metadata"]["annotations"],
        deployment["spec"]["template"]["metadata"]["annotations"],
    ):
        assert scrape["prometheus.io/scrape"] == "true"
        assert scrape["prometheus.io/port"] == str(metrics_port)


def image_lock() -> tuple[dict[str, str], dict[str, set[str]]]:
    """requirements/image.lock's pins (normalised name: version) and each one's hashes."""
    pins: dict[str, str] = {}
    hashes: dict[str, set[str]] = {}
    current = ""
    for line in (REPO / "requirements" / "image.lock").read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            name, _, version = line.split(" ")[0].partition("==")
            current = canonicalize_name(name)
            pins[current] = version
            hashes[current] = set()
        elif line.strip().startswith("--hash=sha256:"):
            hashes[current].add(line.strip().removeprefix("--hash=sha256:").split()[0])
    return pins, hashes


def test_the_image_lock_pins_every_dependency_with_hashes() -> None:
    """requirements/image.lock pins each run-time dependency (the `fast` and `webconfig`
    extras included: the image checks basic_auth_users' bcrypt hashes) at a version
    pyproject.toml allows, each with hashes; `make lock` rewrites it otherwise."""
    pins, hashes = image_lock()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    for extra in ("fast", "webconfig"):
        wanted += [Requirement(r) for r in project["optional-dependencies"][extra]]
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in requirements/image.lock: run make lock"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]}: run make lock"
    assert all(len(found) >= 1 for found in hashes.values()), hashes
    assert "aiohttp" not in pins  # the image serves with httptools alone


# The image's Python, CPython 3.11, on Debian bookworm's glibc 2.36, for each architecture
# the image is built for (make image): Debian's name, and the wheels' name of the machine.
IMAGE_PYTHON = (3, 11)
IMAGE_GLIBC_MINOR = 36
IMAGE_MACHINES = {"amd64": "x86_64", "arm64": "aarch64"}


def image_wheel_tags(machine: str) -> set[Tag]:
    """The wheel tags pip accepts in the image on this machine: pure Python, the stable
    ABI, or cp311, for any manylinux the image's glibc satisfies."""
    platforms = [f"manylinux_2_{minor}_{machine}" for minor in range(IMAGE_GLIBC_MINOR, 4, -1)]
    platforms.append(f"manylinux2014_{machine}")  # the older names of 2_17, 2_12 and 2_5
    if machine == "x86_64":
        platforms += [f"manylinux2010_{machine}", f"manylinux1_{machine}"]
    cpython = cpython_tags(IMAGE_PYTHON, [f"cp{IMAGE_PYTHON[0]}{IMAGE_PYTHON[1]}"], platforms)
    generic = compatible_tags(IMAGE_PYTHON, f"cp{IMAGE_PYTHON[0]}{IMAGE_PYTHON[1]}", platforms)
    return {*cpython, *generic}


def test_the_image_lock_has_a_wheel_for_every_architecture_of_the_image() -> None:
    """For amd64 and arm64 alike, every locked package has a wheel the image's Python
    installs (a pure-Python one, or a cp311/abi3 manylinux wheel for x86_64 or aarch64),
    and its hash is in requirements/image.lock: pip's --only-binary --require-hashes finds
    one on both. The file names come from requirements/pylock.image.toml, which `make lock`
    writes from the same pins; it must agree with image.lock package for package."""
    pins, hashes = image_lock()
    pylock = tomllib.loads((REPO / "requirements" / "pylock.image.toml").read_text())
    packages = {canonicalize_name(p["name"]): p for p in pylock["packages"]}
    assert set(packages) == set(pins), "pylock.image.toml and image.lock differ: run make lock"
    accepted = {arch: image_wheel_tags(machine) for arch, machine in IMAGE_MACHINES.items()}
    for name, package in packages.items():
        assert package["version"] == pins[name], f"{name}: run make lock"
        wheels = {w["url"].rsplit("/", 1)[1]: w["hashes"]["sha256"] for w in package["wheels"]}
        assert set(wheels.values()) <= hashes[name], f"{name}: hashes differ, run make lock"
        for arch, tags in accepted.items():
            usable = [file for file in wheels if parse_wheel_filename(file)[3] & tags]
            assert usable, f"{name}=={pins[name]} has no wheel for {arch} (linux, cp311)"


def test_the_sidecar_overlay_admits_only_scrapes_to_the_falco_pods() -> None:
    """The sidecar overlay's NetworkPolicy selects the Falco pods, and admits the exporter's
    main port from Prometheus' namespace only (the input is on loopback; probes bypass it)."""
    documents = render("sidecar")
    policy = one(documents, "NetworkPolicy")
    monitor = one(documents, "PodMonitor")
    kubernetes_validate.validate(policy, KUBERNETES_VERSION, strict=True)
    assert policy["metadata"]["namespace"] == "falco"
    assert policy["spec"]["podSelector"] == {
        "matchLabels": monitor["spec"]["selector"]["matchLabels"]
    }
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    [rule] = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": 9376, "protocol": "TCP"}]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    [sidecar] = falco_values("values-sidecar-http.yaml")["extra"]["initContainers"]
    assert {"containerPort": 9376, "name": "exp-metrics"}.items() <= sidecar["ports"][0].items()
    assert "--http-input-address=127.0.0.1:2801" in sidecar["args"]


def test_the_central_input_admits_posts_from_falcos_namespace_only() -> None:
    """The http-input overlay admits port 2801 from the falco namespace, nothing else."""
    policy = one(render("http-input"), "NetworkPolicy")
    [posts] = [rule for rule in policy["spec"]["ingress"] if rule["ports"][0]["port"] == 2801]
    assert posts["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "falco"}}}
    ]


def test_the_file_sidecar_shares_one_volume_with_falco_and_is_the_http_sidecar_otherwise(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """values-sidecar.yaml: Falco's file_output on a bounded emptyDir that both
    containers mount at the same path, the exporter reading that very file; the container
    is values-sidecar-http.yaml's in all but its input (so the two cannot drift apart)."""
    values = falco_values("values-sidecar.yaml")
    [sidecar] = values["extra"]["initContainers"]
    [over_http] = falco_values("values-sidecar-http.yaml")["extra"]["initContainers"]

    def but_the_input(container: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in container.items() if k not in {"args", "volumeMounts"}}

    assert but_the_input(sidecar) == but_the_input(over_http)
    falco = values["falco"]
    assert falco["json_output"] is True
    assert falco["json_include_output_fields_property"] is True
    assert falco["file_output"]["enabled"] is True
    assert falco["file_output"]["keep_alive"] is True
    assert falco["http_output"]["enabled"] is False  # each alert counted once
    assert falco["metrics"] == falco_values("values-sidecar-http.yaml")["falco"]["metrics"]
    [volume] = values["mounts"]["volumes"]
    assert mebibytes(volume["emptyDir"]["sizeLimit"]) <= 256
    [falco_mount] = values["mounts"]["volumeMounts"]
    [exporter_mount] = sidecar["volumeMounts"]
    assert falco_mount == exporter_mount
    assert falco_mount["name"] == volume["name"]
    assert falco["file_output"]["filename"].startswith(falco_mount["mountPath"] + "/")
    assert main([*sidecar["args"], "--check-config"]) == 0
    effective = yaml.safe_load(capsys.readouterr().out)
    assert effective["file_input"] == falco["file_output"]["filename"]
    assert effective["http_input_address"] == ""
    assert effective["targets"] == []
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "falco-abcde", "labels": {"app.kubernetes.io/name": "falco"}},
        "spec": {
            "initContainers": [sidecar],
            "containers": [
                {
                    "name": "falco",
                    "image": "falcosecurity/falco:0.44.1",
                    "volumeMounts": values["mounts"]["volumeMounts"],
                }
            ],
            "volumes": values["mounts"]["volumes"],
        },
    }
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)


def image_architectures() -> list[str]:
    """The architectures `make image` builds (the Makefile's ARCHITECTURES)."""
    for line in (REPO / "Makefile").read_text().splitlines():
        if line.startswith("ARCHITECTURES ?="):
            return line.split("=", 1)[1].split()
    raise AssertionError("the Makefile has no ARCHITECTURES")


@pytest.mark.parametrize("name", ["values-sidecar.yaml", "values-sidecar-http.yaml"])
def test_the_sidecar_values_keep_falco_to_nodes_the_image_runs_on(name: str) -> None:
    """The sidecar holds its Falco in Init on a node whose architecture the image lacks, so
    the values require of Falco's nodes exactly the architectures make image builds
    (kubernetes.io/arch): a valid pod affinity, the one rule it has."""
    values = falco_values(name)
    spec: dict[str, Any] = {
        "initContainers": values["extra"]["initContainers"],
        "containers": [{"name": "falco", "image": "falcosecurity/falco:0.44.1"}],
        "affinity": values["affinity"],
    }
    if "mounts" in values:
        spec["volumes"] = values["mounts"]["volumes"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "falco-abcde", "labels": {"app.kubernetes.io/name": "falco"}},
        "spec": spec,
    }
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
    assert values["affinity"] == {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": "kubernetes.io/arch",
                                "operator": "In",
                                "values": image_architectures(),
                            }
                        ]
                    }
                ]
            }
        }
    }
