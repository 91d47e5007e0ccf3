"""The k8s_workload label (--workload-label): a pod's workload, from k8smeta fields or its name."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.cli import main
from exporter.core.cardinality import Fold, SeriesLimits
from exporter.core.counter import EventCounter
from exporter.core.event import FalcoEvent
from exporter.core.labels import (
    DEFAULT_LABELS,
    OVERFLOW_VALUE,
    WORKLOAD_LABEL,
    build_label_set,
    go_exporter_labels,
)
from exporter.core.workload import (
    ALPHABET,
    HASH_CHARACTERS,
    WorkloadOf,
    workload_of_pod,
    workload_of_replica_set,
)
from exporter.settings.checks import ConfigError
from exporter.settings.load import load_config
from tests.support import REPO, counted, curl, find_tool, response, scrape
from tests.support.processes import LOCAL_PORTS, running

CARDINALITY = (REPO / "docs" / "cardinality.md").read_text(encoding="utf-8")
CAPTURE = REPO / "tests" / "data" / "falco-0.44.1" / "replay-json" / "req-0001.http"

# Names as Kubernetes makes them, and what the label says: (pod, workload).
NAMES = {
    "Deployment": ("nginx-deployment-66b6c48dd5-4jw2p", "nginx-deployment"),
    "Deployment, hash of 10": ("coredns-5d78c9869d-8xq2t", "coredns"),
    "Deployment, hash of 9": ("cert-manager-cainjector-77bd85f79-g7sbt", "cert-manager-cainjector"),
    "Deployment, hash of 5": ("api-4f5b6-x7k2p", "api"),
    "Deployment named like a version": ("app-v2-5c5695d979-lq8fz", "app-v2"),
    "DaemonSet": ("kube-proxy-9xk2z", "kube-proxy"),
    "DaemonSet, suffix of digits": ("fluent-bit-24579", "fluent-bit"),
    "Job": ("ingress-nginx-admission-patch-8xbzv", "ingress-nginx-admission-patch"),
    "CronJob": ("backup-29412345-x7k2p", "backup"),
    "StatefulSet": ("prometheus-k8s-0", "prometheus-k8s"),
    "StatefulSet, ordinal 12": ("redis-12", "redis"),
    "StatefulSet named like a hash": ("db-5d78c9-0", "db-5d78c9"),
    "bare pod": ("nginx", "nginx"),
    "static pod": ("kube-apiserver-control-plane", "kube-apiserver-control-plane"),
    "host event": ("", ""),
    "Falco had no value": ("<NA>", "<NA>"),
    "a suffix with vowels is not generated": ("web-abcde", "web-abcde"),
    "a hash needs a random suffix after it": ("web-5d78c9869d", "web-5d78c9869d"),
    "a leading zero is not an ordinal": ("build-01", "build-01"),
    "owner cut at 58, hash cut": ("a" * 50 + "-5d78c98" + "x7k2p", "a" * 50),
    "owner cut at 58, after the dash": ("b" * 56 + "-4" + "x7k2p", "b" * 56),
    "63 characters, not generated": ("a" * 40 + "-" + "o" * 22, "a" * 40 + "-" + "o" * 22),
    "owner cut at 58 in a word like a hash: cut further": ("w" * 56 + "-b" + "x7k2p", "w" * 56),
}
# What the name cannot tell (docs/cardinality.md#what-the-pod-name-cannot-tell).
AMBIGUOUS = {
    "bare pod named like an ordinal": ("web-1", "web"),
    "indexed Job keeps its index": ("train-3-x7k2p", "train-3"),
    "DaemonSet ending in 8 digits": ("agent-20240101-x7k2p", "agent"),
    "DaemonSet ending in 5 hash characters": ("csi-4b6d9-x7k2p", "csi"),
    "static pod on a node ending in a number": ("etcd-cp-1", "etcd-cp"),
    "a hash under 10,000 is kept": ("web-5b4-x7k2p", "web-5b4"),
}


@pytest.mark.parametrize(("pod", "workload"), NAMES.values(), ids=NAMES.keys())
def test_the_workload_of_a_pod_name(pod: str, workload: str) -> None:
    """Each controller's suffix is stripped, and nothing that is not generated."""
    assert workload_of_pod(pod) == workload


@pytest.mark.parametrize(("pod", "workload"), AMBIGUOUS.values(), ids=AMBIGUOUS.keys())
def test_what_the_name_cannot_tell_is_as_documented(pod: str, workload: str) -> None:
    """The documented ambiguities give the documented workload."""
    assert workload_of_pod(pod) == workload
    assert f"`{pod}`" in CARDINALITY


# Kubernetes' own rules, written again here: k8s.io/apimachinery/pkg/util/rand and
# pkg/controller (ComputeHash), apiserver's names.SimpleNameGenerator, the CronJob controller.
KUBERNETES_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
WORD = st.from_regex(r"[a-z0-9]{0,5}[aeiou][a-z0-9]{0,5}", fullmatch=True)  # has a vowel
NAME = st.lists(WORD, min_size=1, max_size=8).map("-".join)
RANDOM = st.text(KUBERNETES_ALPHABET, min_size=5, max_size=5)
HASH = st.integers(10_000, 2**32 - 1)  # FNV-32a; below 10,000 see AMBIGUOUS


def generated(base: str, random: str) -> str:
    """A name from generateName: the base cut to 58 characters, then 5 random ones."""
    return base[:58] + random


def template_hash(number: int) -> str:
    """rand.SafeEncodeString(fmt.Sprint(hash))."""
    return "".join(KUBERNETES_ALPHABET[ord(digit) % 27] for digit in str(number))


def test_the_alphabets_are_kubernetes() -> None:
    """The random suffix's alphabet, and the ten characters a template hash is made of."""
    assert ALPHABET == KUBERNETES_ALPHABET
    assert set(HASH_CHARACTERS) == set(template_hash(1234567890))


@settings(max_examples=300, deadline=None)
@given(NAME, HASH, HASH, RANDOM, RANDOM)
def test_a_deployment_is_one_workload_over_rollouts(
    name: str, first: int, second: int, one: str, other: str
) -> None:
    """Pods of two ReplicaSets (rollouts) of a Deployment: one workload, its name when it fits
    in a pod name, and the ReplicaSet's name from k8smeta says the same."""
    pods = [generated(f"{name}-{template_hash(first)}-", one)]
    pods.append(generated(f"{name}-{template_hash(second)}-", other))
    workloads = {workload_of_pod(pod) for pod in pods}
    assert len(workloads) == 1
    if len(name) <= 57:
        assert workloads == {name}
        assert workload_of_replica_set(f"{name}-{template_hash(first)}") == name
    else:
        assert name.startswith(workloads.pop())


@settings(max_examples=300, deadline=None)
@given(NAME, RANDOM, st.integers(0, 999), st.integers(10_000_000, 99_999_999))
def test_daemonset_job_statefulset_and_cronjob_pods(
    name: str, random: str, ordinal: int, minute: int
) -> None:
    """A generateName pod (DaemonSet, Job), a StatefulSet's and a CronJob's (at most 52
    characters, as Kubernetes requires): the controller's name."""
    owned = workload_of_pod(generated(f"{name}-", random))
    assert owned == name if len(name) <= 57 else name.startswith(owned)
    assert workload_of_pod(f"{name}-{ordinal}") == name
    cron_job = name[:52].rstrip("-")
    assert workload_of_pod(generated(f"{cron_job}-{minute}-", random)) == cron_job


def event(**fields: str) -> FalcoEvent:
    """An alert with these output fields."""
    return FalcoEvent("Terminal shell in container", 4, "syscall", "node-1", (), fields)


POD = {"k8s.ns.name": "shop", "k8s.pod.name": "cart-5c5695d979-lq8fz"}
SOURCES = {
    "k8smeta deployment first": ({**POD, "k8smeta.deployment.name": "cart-v1"}, "cart-v1"),
    "replica set without its hash": ({**POD, "k8smeta.rs.name": "rollout-7f9c4d8b6"}, "rollout"),
    "a bare replica set": ({**POD, "k8smeta.rs.name": "frontend"}, "frontend"),
    "replication controller": ({**POD, "k8smeta.rc.name": "legacy"}, "legacy"),
    "no value: the next source": (
        {**POD, "k8smeta.deployment.name": "<NA>", "k8smeta.rs.name": "<NA>"},
        "cart",
    ),
    "empty: the next source": ({**POD, "k8smeta.deployment.name": ""}, "cart"),
    "the pod name": (POD, "cart"),
    "k8smeta's pod name": ({"k8smeta.pod.name": "web-0"}, "web"),
    "the container plugin's pod name first": (
        {"k8s.pod.name": "api-0", "k8smeta.pod.name": "web-0"},
        "api",
    ),
    "a host event": ({}, ""),
    "a DaemonSet pod: no k8smeta controller": (
        {"k8smeta.pod.name": "cilium-7d5tq", "k8smeta.deployment.name": "<NA>"},
        "cilium",
    ),
}


@pytest.mark.parametrize(("fields", "workload"), SOURCES.values(), ids=SOURCES.keys())
def test_where_the_workload_comes_from(fields: Mapping[str, str], workload: str) -> None:
    """k8smeta's deployment, replica set, replication controller, else the pod's name."""
    assert WorkloadOf()(event(**fields)) == workload


def test_a_grpc_message_is_read_as_is() -> None:
    """Falco's gRPC response (a protobuf map of fields) gives the same workload."""
    message = response(fields={**POD, "k8smeta.rs.name": "cart-5c5695d979"})
    assert WorkloadOf()(message) == "cart"


def test_the_cache_is_bounded() -> None:
    """A flood of pod names keeps at most the cache's size; a name too long for Kubernetes
    is not cached, and is its own workload."""
    workload = WorkloadOf(cache_size=8)
    for number in range(100):
        assert workload(event(**{"k8s.pod.name": f"web-{number}"})) == "web"
        assert workload.cached() <= 8
    before = workload.cached()
    huge = "x-" * 50_000 + "0"
    assert workload(event(**{"k8s.pod.name": huge})) == huge
    assert workload.cached() == before


def test_the_go_label_set_is_unchanged_by_default() -> None:
    """Off by default: the Go exporter's labels and its function, no k8s_workload."""
    label_set = build_label_set()
    assert label_set.names == DEFAULT_LABELS
    assert label_set.values is go_exporter_labels


def test_the_label_follows_the_others() -> None:
    """On: k8s_workload after the default labels (and priority_name), before extra labels."""
    alone = build_label_set(with_workload=True)
    assert alone.names == (*DEFAULT_LABELS, WORKLOAD_LABEL)
    assert alone.values(event(**POD)) == (*go_exporter_labels(event(**POD)), "cart")
    mixed = build_label_set(["k8s_pod_name"], {"image": "container.image"}, True, True)
    names = [n for n in DEFAULT_LABELS if n != "k8s_pod_name"]
    assert mixed.names == (*names, "priority_name", WORKLOAD_LABEL, "image")
    values = dict(zip(mixed.names, mixed.values(event(**POD)), strict=True))
    assert (values[WORKLOAD_LABEL], values["image"]) == ("cart", "")


@pytest.mark.parametrize(
    ("flags", "environ", "on"),
    [
        ({}, {}, False),
        ({"workload_label": "true"}, {}, True),
        ({}, {"FALCO_EXPORTER_WORKLOAD_LABEL": "true"}, True),
        ({"workload_label": "true", "drop_labels": [WORKLOAD_LABEL]}, {}, False),
    ],
)
def test_the_setting(flags: dict[str, object], environ: dict[str, str], on: bool) -> None:
    """Off by default; a flag or the variable turns it on; --drop-labels k8s_workload off."""
    series = load_config(flags, environ=environ).series
    assert series.workload_label is on
    assert WORKLOAD_LABEL not in series.drop_labels


def test_an_extra_label_cannot_take_its_name(capsys: pytest.CaptureFixture[str]) -> None:
    """With the label on, --extra-labels k8s_workload=... is refused (exit 2); off, allowed."""
    taken = ["--extra-labels", "k8s_workload=k8smeta.deployment.name", "--check-config"]
    assert main(["--workload-label", *taken]) == 2
    assert "'k8s_workload' is already a label" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        load_config({"workload_label": "true", "extra_labels": ["k8s_workload=x"]}, environ={})
    load_config({"extra_labels": ["k8s_workload=x"]}, environ={})


def count(counter: EventCounter, events: list[FalcoEvent]) -> dict[str, dict[str, str]]:
    """Count the events; the series as label maps, keyed by their workload and pod."""
    add = counter.shard().add
    for one in events:
        add(one)
    assert sum(counter.totals().values()) == len(events)  # nothing lost, whatever folded
    found = [dict(zip(counter.label_names, key, strict=True)) for key in counter.totals()]
    return {f"{s[WORKLOAD_LABEL]}/{s.get('k8s_pod_name')}/{s['rule']}": s for s in found}


def test_forged_workloads_of_one_pod_fold_at_the_pods_budget() -> None:
    """A poster varying k8smeta.deployment.name for one pod gets the pod's budget of series,
    then one folded series that keeps the pod, not the forged workloads."""
    counter = EventCounter(build_label_set(with_workload=True), limits=SeriesLimits(per_pod=3))
    forged = [event(**POD, **{"k8smeta.deployment.name": f"fake-{n}"}) for n in range(50)]
    series = count(counter, forged)
    assert len(series) == 4
    folded = series[f"{OVERFLOW_VALUE}/{POD['k8s.pod.name']}/{OVERFLOW_VALUE}"]
    assert folded["k8s_ns_name"] == "shop"
    assert counter.stats.folded[Fold.POD] == 47


def test_without_pod_names_the_budget_is_the_workloads() -> None:
    """With k8s_pod_name dropped, a flood of rules in one workload folds into that
    workload's series, and another workload keeps its own."""
    label_set = build_label_set(["k8s_pod_name"], with_workload=True)
    counter = EventCounter(label_set, limits=SeriesLimits(per_pod=3))
    flood = [
        FalcoEvent(f"rule {n}", 4, "syscall", "node-1", (), {**POD, "k8s.pod.name": f"cart-{n}"})
        for n in range(20)
    ]
    series = count(counter, [*flood, event(**{"k8s.ns.name": "shop", "k8s.pod.name": "db-0"})])
    assert sorted(series) == [
        f"cart/None/{OVERFLOW_VALUE}",
        "cart/None/rule 0",
        "cart/None/rule 1",
        "cart/None/rule 2",
        "db/None/Terminal shell in container",
    ]
    assert counter.stats.folded[Fold.POD] == 17


SUFFIXES = [f"{KUBERNETES_ALPHABET[p % 27]}{KUBERNETES_ALPHABET[p // 27]}qwz" for p in range(30)]
# docs/cardinality.md's example: 300 pods of 10 Deployments, one rule firing in each.
PODS = [
    event(**{"k8s.ns.name": "shop", "k8s.pod.name": f"app{d}-5c5695d979-{suffix}"})
    for d in range(10)
    for suffix in SUFFIXES
]


def test_pods_of_ten_deployments_are_ten_series() -> None:
    """docs/cardinality.md's arithmetic on one node: 300 series by pod, 10 by workload once
    k8s_pod_name is dropped."""
    by_pod = count(EventCounter(build_label_set(with_workload=True)), PODS)
    by_workload = count(EventCounter(build_label_set(["k8s_pod_name"], with_workload=True)), PODS)
    assert (len(by_pod), len(by_workload)) == (300, 10)
    assert {s[WORKLOAD_LABEL] for s in by_workload.values()} == {f"app{d}" for d in range(10)}


def captured_alert() -> tuple[dict[str, object], dict[str, object]]:
    """The body of a real Falco 0.44.1 post (a capture replay's first alert), and its fields."""
    request = CAPTURE.read_bytes()
    alert = json.loads(request.partition(b"\r\n\r\n")[2])
    return alert, alert["output_fields"]


# The captured alert's fields, and a pod's as Falco on a Kubernetes node adds them: the
# container plugin's, and the k8smeta plugin's for a DaemonSet (JSON null: no Deployment).
IN_DAEMONSET = {
    "k8smeta.ns.name": "kube-system",
    "k8smeta.pod.name": "cilium-7d5tq",
    "k8smeta.deployment.name": None,
}


@pytest.mark.parametrize("on", [True, False])
async def test_a_real_exporter_labels_falcos_posts_by_workload(on: bool) -> None:
    """A real Falco 0.44.1 alert posted with curl as is (a host event), and with a pod's
    fields added: with --workload-label, k8s_workload is "", the Deployment and the
    DaemonSet; without it, the Go exporter's labels and no k8s_workload."""
    alert, fields = captured_alert()
    bodies = [alert] + [
        {**alert, "output_fields": {**fields, **pod}} for pod in (POD, IN_DAEMONSET)
    ]
    flags = ["--workload-label"] if on else []
    async with running(
        *LOCAL_PORTS, "--http-input-address", "127.0.0.1:0", "--log-format", "json", *flags
    ) as exporter:
        serving = await exporter.wait_for_log("serving HTTP")
        url = f"http://127.0.0.1:{serving['http_input_port']}/"
        for body in bodies:
            posted = await asyncio.to_thread(
                curl, "-o", "/dev/null", "-w", "%{http_code}",
                "-H", "Content-Type: application/json", "--data-binary", json.dumps(body), url,
            )  # fmt: skip
            assert posted.stdout == "200"
        await counted(serving["metrics_port"], len(bodies))
        series = await scrape(serving["metrics_port"])
    by_pod = {dict(key)["k8s_pod_name"]: dict(key) for key in series}
    assert set(by_pod) == {"", "cart-5c5695d979-lq8fz", "cilium-7d5tq"}
    assert {values["rule"] for values in by_pod.values()} == {alert["rule"]}
    if on:
        workloads = {pod: values[WORKLOAD_LABEL] for pod, values in by_pod.items()}
        assert workloads == {"": "", "cart-5c5695d979-lq8fz": "cart", "cilium-7d5tq": "cilium"}
    else:
        assert all(set(values) == set(DEFAULT_LABELS) for values in by_pod.values())


def test_the_documented_alert_fires_once_per_workload(tmp_path: Path) -> None:
    """docs/cardinality.md's alerting rule, run by promtool over the 300 pods' series as the
    exporter labels them: 10 alerts on their first events and on growth, none when quiet."""
    promtool = find_tool("promtool")
    assert promtool, "promtool is needed (make test installs it)"
    [rules] = [
        block for block in re.findall(r"```yaml\n(.*?)```", CARDINALITY, re.S) if "alert:" in block
    ]
    (tmp_path / "rules.yaml").write_text(rules)
    label_set = build_label_set(with_workload=True)
    series = [dict(zip(label_set.names, label_set.values(pod), strict=True)) for pod in PODS]
    selector = "falco_events{{{}}}"
    inputs = [
        {"series": selector.format(",".join(f'{k}="{v}"' for k, v in one.items())),
         "values": "_ _ _ _ _ 1x5 2x9"}
        for one in series
    ]  # fmt: skip
    alerts = [
        {
            "exp_labels": {"severity": "warning", "rule": event().rule, "k8s_ns_name": "shop",
                           "k8s_workload": f"app{d}"},
            "exp_annotations": {"summary": f"Falco: {event().rule} in shop/app{d}"},
        }
        for d in range(10)
    ]  # fmt: skip
    cases = [(6, alerts), (12, alerts), (19, [])]  # first events, growth, quiet
    tests = {
        "rule_files": ["rules.yaml"],
        "tests": [
            {
                "interval": "1m",
                "input_series": inputs,
                "alert_rule_test": [
                    {"eval_time": f"{m}m", "alertname": "FalcoWorkloadWarning", "exp_alerts": a}
                    for m, a in cases
                ],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(tests))
    result = subprocess.run(
        [promtool, "test", "rules", "test.yaml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
