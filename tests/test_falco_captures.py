"""What a real Falco 0.44.1 sent, replayed byte for byte: every input must keep taking it.

tests/data/falco-0.44.1/ holds whole HTTP requests as Falco's http_output posted them, in
order, on one keep-alive connection (docs/falco-wire-contract.md#captured-requests): rule
alerts of a capture replay and metrics snapshots, each with json_output on and off. The
HTTP input takes the requests themselves; the gRPC input takes the same alerts as Falco up
to 0.43 would have sent them, and must make the same series of them.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest

from exporter.app import Exporter
from exporter.simulator.events import response_from_json
from exporter.simulator.server import SimulatedFalco
from tests.support import REPO, Labels, MakeExporter, eventually, labels, scrape
from tests.support.raw_http import exchange_all

CAPTURES = REPO / "tests" / "data" / "falco-0.44.1"
SNAPSHOT_RULE = "Falco internal: metrics snapshot"
TEXT_FIX = "set json_output: true"

# What Prometheus must show for each capture, with the Go exporter's labels.
REPLAY_SERIES = {
    labels(
        rule="Curl spawned (local test)",
        priority="4",
        hostname="vm",
        source="syscall",
        tags=",process,test,",
        k8s_ns_name="",
        k8s_pod_name="",
    ): 1.0,
    labels(
        rule="Curl connect (local test)",
        priority="5",
        hostname="vm",
        source="syscall",
        tags=",network,test,",
        k8s_ns_name="",
        k8s_pod_name="",
    ): 2.0,
}
SNAPSHOT_SERIES = {
    labels(
        rule=SNAPSHOT_RULE,
        priority="6",
        hostname="vm",
        source="internal",
        tags=",,",
        k8s_ns_name="",
        k8s_pod_name="",
    ): 5.0,
}


def captured(kind: str) -> list[bytes]:
    """The requests of one capture, in the order Falco sent them."""
    paths = sorted((CAPTURES / kind).glob("req-*.http"))
    assert paths, f"no capture in {CAPTURES / kind}"
    return [path.read_bytes() for path in paths]


def body_of(request: bytes) -> bytes:
    """The body of a whole request (the captures carry no trailing newline)."""
    head, _, body = request.partition(b"\r\n\r\n")
    assert b"Content-Length: %d" % len(body) in head
    return body


async def series_when(exporter: Exporter, total: float) -> dict[Labels, float]:
    """falco_events once its sum reaches `total`."""
    port = exporter.main_http.port

    async def reached() -> bool:
        return sum((await scrape(port)).values()) >= total

    await eventually(reached, message=f"{total} events on /metrics")
    return await scrape(port)


@pytest.mark.parametrize(
    ("kind", "expected"), [("replay-json", REPLAY_SERIES), ("nodriver-json", SNAPSHOT_SERIES)]
)
async def test_the_http_input_counts_each_json_request_once(
    make_exporter: MakeExporter, kind: str, expected: dict[Labels, float]
) -> None:
    """Every request of a JSON capture is answered 200 on one connection and counted once."""
    exporter = await make_exporter(http_input_address="127.0.0.1:0")
    requests = captured(kind)
    answers = await exchange_all(exporter.ports["http_input"], requests)
    assert [(answer.status, answer.body) for answer in answers] == [(200, b'{"accepted":1}')] * len(
        requests
    )
    assert not any(answer.closed for answer in answers), "the keep-alive connection was closed"
    assert await series_when(exporter, sum(expected.values())) == expected


@pytest.mark.parametrize("kind", ["replay-text", "nodriver-text"])
async def test_the_http_input_refuses_text_output_saying_how_to_fix_it(
    make_exporter: MakeExporter, kind: str
) -> None:
    """json_output: false: each post refused with the fix, counted as text_output, none lost."""
    exporter = await make_exporter(http_input_address="127.0.0.1:0")
    requests = captured(kind)
    answers = await exchange_all(exporter.ports["http_input"], requests)
    assert {answer.status for answer in answers} == {400}
    assert all(TEXT_FIX in answer.body.decode() for answer in answers)
    rejected = await scrape(exporter.main_http.port, "falco_exporter_http_input_rejected")
    assert rejected[labels(reason="text_output")] == len(requests)
    assert await scrape(exporter.main_http.port) == {}


@pytest.mark.parametrize(
    ("kind", "expected"), [("replay-json", REPLAY_SERIES), ("nodriver-json", SNAPSHOT_SERIES)]
)
async def test_the_grpc_input_makes_the_same_series_of_the_same_alerts(
    falco: SimulatedFalco,
    exporter_for: Callable[..., Awaitable[Exporter]],
    kind: str,
    expected: dict[Labels, float],
) -> None:
    """The captured alerts, as Falco <= 0.43 sends them over gRPC, give the same series."""
    exporter = await exporter_for(falco)
    falco.publish(response_from_json(json.loads(body_of(request))) for request in captured(kind))
    assert await series_when(exporter, sum(expected.values())) == expected


def test_the_captures_are_whole_requests_as_falco_writes_them() -> None:
    """Each capture is Falco's libcurl POST: its headers, CRLF lines and exact body length."""
    kinds = sorted(path.name for path in CAPTURES.iterdir() if path.is_dir())
    assert kinds == ["nodriver-json", "nodriver-text", "replay-json", "replay-text"]
    for kind in kinds:
        for request in captured(kind):
            head = request.partition(b"\r\n\r\n")[0].split(b"\r\n")
            assert head[0] == b"POST / HTTP/1.1"
            assert b"User-Agent: falcosecurity/falco" in head
            body_of(request)


@pytest.mark.parametrize("path", ["http", "grpc"])
async def test_the_captured_snapshots_give_falcos_own_counts(
    make_exporter: MakeExporter,
    falco: SimulatedFalco,
    exporter_for: Callable[..., Awaitable[Exporter]],
    path: str,
) -> None:
    """Falco 0.44.1's five metrics snapshots: its count of alerts raised (0: no driver, no
    rule matched), its version, engine and start time per hostname, and nothing lost."""
    snapshots = captured("nodriver-json")
    if path == "http":
        exporter = await make_exporter(http_input_address="127.0.0.1:0")
        await exchange_all(exporter.ports["http_input"], snapshots)
    else:
        exporter = await exporter_for(falco)
        falco.publish(response_from_json(json.loads(body_of(request))) for request in snapshots)
    await series_when(exporter, len(snapshots))
    port = exporter.main_http.port
    vm = labels(hostname="vm")
    assert await scrape(port, "falco_exporter_falco_alerts_raised") == {vm: 0.0}
    assert await scrape(port, "falco_exporter_falco_alerts_received") == {vm: 0.0}
    assert await scrape(port, "falco_exporter_alerts_lost") == {vm: 0.0}
    assert await scrape(port, "falco_exporter_falco_info") == {
        labels(hostname="vm", version="0.44.1", engine="nodriver"): 1.0
    }
    started = await scrape(port, "falco_exporter_falco_start_time_seconds")
    assert started[vm] == pytest.approx(1796154870.393719981)
    assert await scrape(port, "falco_exporter_falco_outputs_queue_drops") == {vm: 0.0}
    assert await scrape(port, "falco_exporter_falco_kernel_drops_ratio") == {vm: 0.0}
    assert await scrape(port, "falco_exporter_falco_kernel_drops") == {}  # no driver: no n_drops
