"""The exporter against a simulated Falco over mutual TLS on loopback, end to end."""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from exporter.core.cardinality import TRUNCATED
from exporter.settings.choices import Transport
from exporter.simulator.certs import CertPaths
from exporter.simulator.server import SimulatedFalco
from tests.support import (
    ExporterFor,
    Labels,
    LogLines,
    MakeExporter,
    client_flags,
    counted,
    eventually,
    fetch,
    labels,
    publish_samples,
    response,
    scrape,
    tls_of,
    total_events,
)

# docs/falco-wire-contract.md: falco.schema.priority numbers by the names Falco's JSON uses.
PRIORITY_NUMBERS = {
    "emergency": 0,
    "alert": 1,
    "critical": 2,
    "error": 3,
    "warning": 4,
    "notice": 5,
    "informational": 6,
    "debug": 7,
}


def expected_series(document: dict[str, Any]) -> Labels:
    """The Go exporter's labels for a JSON event, as docs/falco-wire-contract.md writes them."""
    fields = document.get("output_fields") or {}

    def k8s(key: str) -> str:
        if key not in fields:
            return ""
        return "<NA>" if fields[key] is None else str(fields[key])

    return labels(
        rule=document["rule"],
        priority=str(PRIORITY_NUMBERS[document["priority"].lower()]),
        hostname=document["hostname"],
        source=document["source"],
        tags="," + ",".join(document.get("tags") or []) + ",",
        k8s_ns_name=k8s("k8s.ns.name"),
        k8s_pod_name=k8s("k8s.pod.name"),
    )


@pytest.mark.parametrize("transport", list(Transport))
async def test_sample_events_become_go_exporter_series(
    falco: SimulatedFalco, exporter_for: ExporterFor, transport: str
) -> None:
    """Every sample event increments the series the Go exporter would have, exactly once."""
    exporter = await exporter_for(falco, transport=transport)
    documents = publish_samples(falco)
    await counted(exporter, len(documents))

    expected = collections.Counter(expected_series(document) for document in documents)
    assert await scrape(exporter.main_http.port) == {key: float(n) for key, n in expected.items()}


async def test_odd_values_keep_their_labels(
    falco: SimulatedFalco, exporter_for: ExporterFor
) -> None:
    """Quotes, backslashes, newlines, non-ASCII and missing values survive to /metrics; a
    10,000-character value is cut to --max-label-length (256), marked as cut."""
    long_rule = "R" * 10_000
    falco.publish(
        [
            response(
                'Rule with "quotes", \\backslash\\ and\nnewline',
                4,
                fields={"k8s.ns.name": "ns-é", "k8s.pod.name": "pod-日本-🚀"},
            ),
            response(long_rule, 7, tags=(), fields={"k8s.ns.name": "<NA>", "k8s.pod.name": "<NA>"}),
            response(
                "Falco internal: syscall event drop",
                6,
                source="internal",
                tags=(),
                hostname="node\twith\ttabs",
            ),
            response(
                "Aws Console Login Without MFA",
                2,
                source="aws_cloudtrail",
                tags=("aws", "cloudtrail"),
            ),
            # Falco 0.24 to 0.30 send no source string, only the deprecated enum.
            response("Old Falco rule", 3, source="", source_deprecated=1, tags=()),
            # A priority number from a future Falco.
            response("Future rule", 9, tags=("a",)),
        ]
    )
    exporter = await exporter_for(falco)
    await counted(exporter, 6)

    series = await scrape(exporter.main_http.port)
    common = {"hostname": "worker-1", "source": "syscall", "k8s_ns_name": "", "k8s_pod_name": ""}
    assert series == {
        labels(
            **{
                **common,
                "rule": 'Rule with "quotes", \\backslash\\ and\nnewline',
                "priority": "4",
                "tags": ",container,shell,",
                "k8s_ns_name": "ns-é",
                "k8s_pod_name": "pod-日本-🚀",
            }
        ): 1.0,
        labels(
            **{
                **common,
                "rule": long_rule[: 256 - len(TRUNCATED)] + TRUNCATED,
                "priority": "7",
                "tags": ",,",
                "k8s_ns_name": "<NA>",
                "k8s_pod_name": "<NA>",
            }
        ): 1.0,
        labels(
            **{
                **common,
                "rule": "Falco internal: syscall event drop",
                "priority": "6",
                "source": "internal",
                "tags": ",,",
                "hostname": "node\twith\ttabs",
            }
        ): 1.0,
        labels(
            **{
                **common,
                "rule": "Aws Console Login Without MFA",
                "priority": "2",
                "source": "aws_cloudtrail",
                "tags": ",aws,cloudtrail,",
            }
        ): 1.0,
        labels(
            **{
                **common,
                "rule": "Old Falco rule",
                "priority": "3",
                "source": "k8s_audit",
                "tags": ",,",
            }
        ): 1.0,
        labels(**{**common, "rule": "Future rule", "priority": "9", "tags": ",a,"}): 1.0,
    }


@pytest.mark.slow
@pytest.mark.parametrize("transport", list(Transport))
async def test_burst_of_50000_events_is_counted_exactly(
    falco: SimulatedFalco, exporter_for: ExporterFor, transport: str
) -> None:
    """A backlog of 50,000 events is read through and every one is counted once."""
    pods = [f"pod-{n}" for n in range(50)]
    falco.publish(
        response(fields={"k8s.pod.name": pods[n % 50], "k8s.ns.name": "burst"})
        for n in range(50_000)
    )
    exporter = await exporter_for(falco, transport=transport)
    await counted(exporter, 50_000, timeout=90)  # about 12 s alone on 2 cores; CI is busier
    series = await scrape(exporter.main_http.port)
    assert sorted(dict(key)["k8s_pod_name"] for key in series) == sorted(pods)
    assert set(series.values()) == {1000.0}


@pytest.mark.parametrize("transport", list(Transport))
async def test_message_with_invalid_utf8_is_skipped_and_counted(
    falco: SimulatedFalco, exporter_for: ExporterFor, logs: LogLines, transport: str
) -> None:
    """An undecodable message costs itself only: neighbours counted, stream kept, error metric."""
    bad = response(fields={"k8s.pod.name": "pod-XXXX"}).SerializeToString()
    bad = bad.replace(b"pod-XXXX", b"pod-\xff\xfe\xc0\x80")
    falco.publish([response(rule="before")])
    falco.publish_raw([bad])
    falco.publish([response(rule="after")])
    exporter = await exporter_for(falco, transport=transport)
    await counted(exporter, 2)
    port = exporter.main_http.port

    assert {dict(key)["rule"] for key in await scrape(port)} == {"before", "after"}
    assert set((await scrape(port, "falco_exporter_decode_errors")).values()) == {1.0}
    assert set((await scrape(port, "falco_exporter_reconnects")).values()) == {0.0}
    [record] = logs.matching(
        "skipped a Falco message that does not decode (invalid UTF-8 or corrupt)"
    )
    assert record["size_bytes"] == len(bad)


@pytest.mark.parametrize("transport", list(Transport))
async def test_falco_restart_reconnects_and_counts_every_delivered_event(
    falco: SimulatedFalco, exporter_for: ExporterFor, certs: CertPaths, transport: str
) -> None:
    """Falco going away flips readiness to failing and back; counters only grow."""
    exporter = await exporter_for(falco, transport=transport)
    probes = f"http://127.0.0.1:{exporter.probes_http.port}/readiness"

    def ready(status: int) -> Callable[[], Awaitable[bool]]:
        return lambda: _status(probes, status)

    await eventually(ready(200), message="ready")

    seen: list[float] = []
    for round_number in range(3):
        falco.publish(response(fields={"k8s.pod.name": f"pod-{round_number}"}) for _ in range(100))
        # `delivered` grows after each write, so an empty queue can still have one in flight.
        published = 100 * (round_number + 1)
        await eventually(lambda n=published: falco.delivered == n, message="Falco delivered all")
        await counted(exporter, published)
        seen.append(await total_events(exporter.main_http.port))
        address = falco.address
        await falco.stop()
        await eventually(ready(503), message="readiness failing while Falco is down")
        await falco.start(address, tls_of(certs))
        await eventually(ready(200), message="ready again after Falco came back")

    assert seen == sorted(seen)
    assert seen[-1] == 300
    reconnects = await scrape(exporter.main_http.port, "falco_exporter_reconnects")
    assert next(iter(reconnects.values())) >= 3


async def _status(url: str, expected: int) -> bool:
    status, _, _ = await fetch(url)
    return status == expected


async def test_exporter_started_before_falco_connects_when_it_comes_up(
    certs: CertPaths, make_exporter: MakeExporter
) -> None:
    """Started with no Falco listening, the exporter keeps retrying and connects later."""
    falco = SimulatedFalco()
    address = await falco.start("127.0.0.1:0", tls_of(certs))
    await falco.stop()
    exporter = await make_exporter(**client_flags(certs, address))
    port = exporter.main_http.port

    async def refused() -> bool:
        errors = await scrape(port, "falco_exporter_connection_errors")
        return any(value >= 2 for value in errors.values())

    await eventually(refused, message="repeated connection errors")
    status, body, _ = await fetch(f"http://127.0.0.1:{port}/readyz")
    assert status == 503
    assert "0/1 Falco targets connected" in body

    await falco.start(address, tls_of(certs))
    try:
        falco.publish([response()])
        await counted(exporter, 1)
    finally:
        await falco.stop()


@pytest.mark.slow
@pytest.mark.parametrize("transport", list(Transport))
async def test_two_exporters_split_one_falcos_events(
    falco: SimulatedFalco, exporter_for: ExporterFor, transport: str
) -> None:
    """Falco's queue is shared: two subscribers each get some events, together all of them."""
    first = await exporter_for(falco, transport=transport)
    second = await exporter_for(falco, transport=transport)
    for exporter in (first, second):
        await eventually(
            lambda e=exporter: _status(f"http://127.0.0.1:{e.main_http.port}/readyz", 200),
            message="both exporters connected",
        )
    for _ in range(100):
        falco.publish([response() for _ in range(5)])
        await eventually(lambda: falco.queued == 0, message="batch drained")
    await eventually(lambda: falco.delivered == 500, message="all delivered")

    async def sums() -> list[float]:
        return [await total_events(e.main_http.port) for e in (first, second)]

    async def all_counted() -> bool:
        return sum(await sums()) == 500

    await eventually(all_counted, message="both exporters together counted 500")
    assert all(share > 0 for share in await sums())


async def test_unix_socket_without_tls(tmp_path: Path, make_exporter: MakeExporter) -> None:
    """Falco's default transport: a unix socket, no TLS; the target label is the socket URL."""
    socket = f"unix://{tmp_path}/falco.sock"
    falco = SimulatedFalco()
    await falco.start(socket)
    try:
        exporter = await make_exporter(client_socket=socket)
        falco.publish([response(), response()])
        await counted(exporter, 2)
        received = await scrape(exporter.main_http.port, "falco_exporter_events_received")
        assert received == {labels(target=socket, input="grpc"): 2.0}
    finally:
        await falco.stop()


async def test_falco_version_is_exported_as_info(
    certs: CertPaths, make_exporter: MakeExporter
) -> None:
    """The version RPC's answer becomes falco_exporter_falco_version_info on connect."""
    falco = SimulatedFalco(version="0.41.0-100+334ca42")
    await falco.start("127.0.0.1:0", tls_of(certs))
    try:
        exporter = await make_exporter(**client_flags(certs, falco.address))
        port = exporter.main_http.port

        async def has_version() -> bool:
            return bool(await scrape(port, "falco_exporter_falco_version_info"))

        await eventually(has_version, message="version info")
        info = await scrape(port, "falco_exporter_falco_version_info")
        assert info == {
            labels(
                target=f"localhost:{falco.address.rsplit(':', 1)[1]}", version="0.41.0-100+334ca42"
            ): 1.0
        }
    finally:
        await falco.stop()


async def test_timeout_logs_loudly_but_never_exits(
    make_exporter: MakeExporter, logs: LogLines
) -> None:
    """--timeout keeps the Go meaning only as an error line; the exporter keeps serving."""
    exporter = await make_exporter(client_socket="unix:///nonexistent/falco.sock", timeout="100ms")
    message = "not connected to Falco yet; still retrying"
    await eventually(lambda: bool(logs.matching(message)), message="the timeout's error line")
    [record] = logs.matching(message)
    assert record["level"] == "error"
    assert record["targets"] == ["unix:///nonexistent/falco.sock"]
    assert (await fetch(f"http://127.0.0.1:{exporter.main_http.port}/livez"))[0] == 200


async def test_k8smeta_fields_fill_the_pod_labels_over_grpc(
    falco: SimulatedFalco, exporter_for: ExporterFor
) -> None:
    """The k8smeta plugin's fields name the pod when k8s.* is absent; k8s.* wins otherwise."""
    exporter = await exporter_for(falco)
    k8smeta = {"k8smeta.ns.name": "shop", "k8smeta.pod.name": "cart-1"}
    falco.publish(
        [
            response(fields=k8smeta),
            response(fields={**k8smeta, "k8s.ns.name": "default", "k8s.pod.name": "web-1"}),
        ]
    )
    await counted(exporter, 2)
    pods = {
        (dict(key)["k8s_ns_name"], dict(key)["k8s_pod_name"]): value
        for key, value in (await scrape(exporter.main_http.port)).items()
    }
    assert pods == {("shop", "cart-1"): 1.0, ("default", "web-1"): 1.0}
