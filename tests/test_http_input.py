"""Falco 0.44+'s http_output: JSON POSTs counted exactly as the same alerts over gRPC."""

from __future__ import annotations

import asyncio
import gzip
import json

import aiohttp
import pytest

from exporter.app import Exporter
from exporter.inputs.grpc.input import GrpcInput
from exporter.simulator.http_output import post_events
from exporter.simulator.server import SimulatedFalco
from tests.support import (
    EVENT,
    ExporterFor,
    MakeExporter,
    counted,
    fetch,
    has_input,
    input_url,
    labels,
    ndjson,
    post,
    publish_samples,
    scrape,
    total_events,
)


@pytest.fixture
async def http_exporter(make_exporter: MakeExporter) -> Exporter:
    """An exporter in HTTP-only mode on a free loopback port."""
    return await make_exporter(http_input_address="127.0.0.1:0")


async def test_same_alert_by_grpc_and_by_http_gives_identical_series(
    falco: SimulatedFalco, exporter_for: ExporterFor, http_exporter: Exporter
) -> None:
    """Every sample event: the series from http_output equal those from gRPC, label by label."""
    by_grpc = await exporter_for(falco)
    documents = publish_samples(falco)
    posted = await post_events(input_url(http_exporter), documents, rate=0, loop=False)
    assert posted == len(documents)

    await counted(by_grpc, len(documents), message="every sample counted over gRPC")
    grpc_series = await scrape(by_grpc.main_http.port)
    http_series = await scrape(http_exporter.main_http.port)
    assert sum(http_series.values()) == len(documents)
    for key in grpc_series:
        assert http_series.get(key) == grpc_series[key], dict(key)
    assert http_series == grpc_series


async def test_bad_bodies_get_their_status_and_lose_nothing_else(
    http_exporter: Exporter,
) -> None:
    """Each kind of bad request gets its status and reason; good events around it count."""
    url = input_url(http_exporter)
    good = json.dumps(EVENT)
    assert (await post(url, good))[0] == 200
    cases: list[tuple[bytes | str, int, str]] = [
        (b"this is not json", 400, "not JSON"),
        (json.dumps({**EVENT, "rule": None}), 400, "missing 'rule'"),
        (
            json.dumps({k: v for k, v in EVENT.items() if k != "priority"}),
            400,
            "missing 'priority'",
        ),
        (json.dumps({**EVENT, "priority": "Severe"}), 400, "unknown priority 'Severe'"),
        (json.dumps([1, 2]), 400, "not a JSON object"),
        (b"", 400, "empty body"),
        (json.dumps({**EVENT, "output": "x" * 2_000_000}), 413, "body larger than"),
    ]
    for body, status, reason in cases:
        got_status, text = await post(url, body)
        assert (got_status, reason in text) == (status, True), (body[:40], text)
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 405
        assert response.headers["Allow"] == "POST"
    assert (await post(input_url(http_exporter, "/events"), good))[0] == 200

    port = http_exporter.main_http.port
    assert await total_events(port) == 2
    rejected = await scrape(port, "falco_exporter_http_input_rejected")
    assert {key: value for key, value in rejected.items() if value} == {
        labels(reason="not_json"): 1.0,
        labels(reason="not_an_event"): 4.0,
        labels(reason="unknown_priority"): 1.0,
        labels(reason="empty"): 1.0,
        labels(reason="too_large"): 1.0,
        labels(reason="method"): 1.0,
    }


async def test_batch_with_one_bad_line_counts_the_good_ones(http_exporter: Exporter) -> None:
    """Newline-delimited JSON: good lines count, the bad line is reported by number."""
    lines = [json.dumps(EVENT), "{broken", json.dumps(EVENT), json.dumps(EVENT)]
    status, text = await post(input_url(http_exporter), "\n".join(lines) + "\n")
    assert status == 400
    answer = json.loads(text)
    assert answer["accepted"] == 3
    assert [entry["line"] for entry in answer["rejected"]] == [2]
    assert await total_events(http_exporter.main_http.port) == 3


async def test_a_body_of_mostly_garbage_is_given_up_but_scattered_bad_lines_are_not(
    http_exporter: Exporter,
) -> None:
    """Garbage that outnumbers the events stops being parsed after 100 bad lines (the
    events before it still count); 150 bad lines among 1,500 events lose no event."""
    good = json.dumps(EVENT)
    mostly_garbage = "\n".join((["x"] * 9 + [good]) * 50)  # 450 bad lines, 50 events
    status, text = await post(input_url(http_exporter), mostly_garbage)
    answer = json.loads(text)
    assert status == 400
    # The 100th bad line is line 111 (11 groups of ten lines, and the first of the 12th).
    assert (answer["gave_up_at_line"], answer["accepted"]) == (111, 11)
    port = http_exporter.main_http.port
    assert await total_events(port) == 11

    scattered = "\n".join(([good] * 10 + ["x"]) * 150)  # 150 bad lines, 1,500 events
    status, text = await post(input_url(http_exporter), scattered)
    answer = json.loads(text)
    assert (status, answer["accepted"], "gave_up_at_line" in answer) == (400, 1500, False)
    assert answer["more_rejected"] == 150 - len(answer["rejected"])
    assert await total_events(port) == 11 + 1500


async def test_gzip_and_typed_fields_as_falco_sends_them(http_exporter: Exporter) -> None:
    """Compressed bodies, priority names in any case, `Info`, null and number fields."""
    documents = [
        {**EVENT, "priority": "Info"},
        {**EVENT, "priority": "INFORMATIONAL"},
        {
            **EVENT,
            "priority": "warning",
            "output_fields": {"k8s.ns.name": None, "k8s.pod.name": 42},
        },
        {"rule": "Minimal", "priority": "Debug"},  # every optional key missing
    ]
    body = gzip.compress(ndjson(documents).encode())
    status, _ = await post(input_url(http_exporter), body, headers={"Content-Encoding": "gzip"})
    assert status == 200
    series = await scrape(http_exporter.main_http.port)
    common = {
        "rule": "Terminal shell in container",
        "hostname": "worker-1",
        "source": "syscall",
        "tags": ",container,shell,",
    }
    assert series == {
        labels(**common, priority="6", k8s_ns_name="default", k8s_pod_name="web-1"): 2.0,
        labels(**common, priority="4", k8s_ns_name="<NA>", k8s_pod_name="42"): 1.0,
        labels(
            rule="Minimal",
            priority="7",
            hostname="",
            source="",
            tags=",,",
            k8s_ns_name="",
            k8s_pod_name="",
        ): 1.0,
    }


async def test_invalid_utf8_in_a_post_is_repaired_not_dropped(http_exporter: Exporter) -> None:
    """Invalid UTF-8 in a field becomes U+FFFD; the event still counts, /metrics stays valid."""
    body = json.dumps({**EVENT, "output_fields": {"k8s.pod.name": "pod-XX"}}).encode()
    status, _ = await post(input_url(http_exporter), body.replace(b"XX", b"\xff\xfe"))
    assert status == 200
    [key] = await scrape(http_exporter.main_http.port)
    assert dict(key)["k8s_pod_name"] == "pod-\ufffd\ufffd"


async def test_ten_thousand_posts_over_keep_alive_are_counted_exactly(
    http_exporter: Exporter,
) -> None:
    """Eight concurrent senders, one keep-alive connection each, 10,000 posts: 10,000 counted."""
    url = input_url(http_exporter)
    body = json.dumps(EVENT)

    async def sender(posts: int) -> int:
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as session:
            ok = 0
            for _ in range(posts):
                async with session.post(url, data=body) as response:
                    ok += response.status == 200
            return ok

    results = await asyncio.gather(*(sender(1250) for _ in range(8)))
    assert sum(results) == 10_000
    assert await total_events(http_exporter.main_http.port) == 10_000
    received = await scrape(http_exporter.main_http.port, "falco_exporter_events_received")
    assert received == {labels(target="http_input", input="http"): 10_000.0}


async def test_http_only_mode_is_ready_once_listening(http_exporter: Exporter) -> None:
    """No connection to lose: ready as soon as the input listens, with no gRPC target."""
    status, body, _ = await fetch(f"http://127.0.0.1:{http_exporter.probes_http.port}/readiness")
    assert status == 200
    assert "HTTP input listening" in body
    assert not has_input(http_exporter, GrpcInput)
