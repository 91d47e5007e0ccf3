"""The HTTP input as production meets it: Falco's real client, its text output, and abuse.

Falco ignores every answer (docs/falco-wire-contract.md#http-output-behaviour), so what
these tests check is what an operator can see: the status, the counted reason, the log
line, and that the events that should count did, exactly, with the process still serving.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from exporter.app import Exporter
from exporter.inputs.http.input import HttpInput
from exporter.inputs.http.rejections import REASONS, TEXT_OUTPUT_FIX
from exporter.simulator.certs import CertPaths
from tests.support import (
    EVENT,
    EVENT_BODY,
    FakeClock,
    LogLines,
    MakeExporter,
    client_flags,
    curl,
    eventually,
    input_of,
    input_url,
    scrape,
    total_events,
)
from tests.support.malformed import MALFORMED
from tests.support.raw_http import exchange, post_request

TEXT_LINE = (
    b"10:15:00.123456789: Error Package management process launched in container "
    b"(user=root command=apt update container_id=5f0b2a1c9d3e)"
)


async def rejected(exporter: Exporter) -> dict[str, float]:
    """falco_exporter_http_input_rejected_total by reason, as scraped."""
    samples = await scrape(exporter.main_http.port, "falco_exporter_http_input_rejected")
    return {dict(key)["reason"]: value for key, value in samples.items()}


def input_port(exporter: Exporter) -> int:
    return exporter.ports["http_input"]


async def test_curl_as_falco_sends_it_is_counted_on_one_connection(
    make_exporter: MakeExporter, tmp_path: Path
) -> None:
    """Falco's headers, keep-alive and `TE: gzip` (compress_uploads): 200 and counted once each."""
    exporter = await make_exporter(http_input_address="127.0.0.1:0")
    body = tmp_path / "event.json"
    body.write_bytes(EVENT_BODY)
    url = input_url(exporter)
    result = await asyncio.to_thread(
        curl,
        "-v",
        "-A",
        "falcosecurity/falco",
        "-H",
        "Content-Type: application/json",
        "-H",
        "TE: gzip",
        "--data-binary",
        f"@{body}",
        "-w",
        "%{http_code}\n",
        url,
        url,
        url,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count('{"accepted":1}200') == 3
    assert "Re-using existing connection" in result.stderr
    assert await total_events(exporter.main_http.port) == 3


async def test_large_alert_through_expect_100_continue(
    make_exporter: MakeExporter, tmp_path: Path
) -> None:
    """libcurl's `Expect: 100-continue` (which it sends for large bodies): invited, counted."""
    exporter = await make_exporter(http_input_address="127.0.0.1:0")
    body = tmp_path / "big.json"
    body.write_bytes(json.dumps({**EVENT, "output": "x" * 50_000}).encode())
    result = await asyncio.to_thread(
        curl, "-v", "-H", "Content-Type: application/json", "-H", "Expect: 100-continue",
        "--data-binary", f"@{body}",
        "-w", "%{http_code}", input_url(exporter),
    )  # fmt: skip
    assert "HTTP/1.1 100 Continue" in result.stderr
    assert result.stdout.endswith("200")
    assert await total_events(exporter.main_http.port) == 1


@pytest.fixture
async def on_a_clock(make_exporter: MakeExporter) -> tuple[FakeClock, Exporter]:
    """An HTTP-only exporter reading a clock the test moves (its logs' rate limits)."""
    clock = FakeClock()
    return clock, await make_exporter(clock=clock, http_input_address="127.0.0.1:0")


async def test_falco_text_output_is_refused_with_the_fix_logged_once_a_minute(
    on_a_clock: tuple[FakeClock, Exporter], logs: LogLines
) -> None:
    """json_output: false: 400 naming the fix, counted, one error a minute with a count."""
    clock, exporter = on_a_clock
    port = input_port(exporter)
    text = {"Content-Type": "text/plain"}
    first = await exchange(port, post_request(TEXT_LINE, headers=text))
    assert first.status == 400
    assert b"json_output: true" in first.body
    for _ in range(49):
        assert (await exchange(port, post_request(TEXT_LINE, headers=text))).status == 400
    # Falco's line is recognised even when the sender says nothing of its type.
    assert (
        await exchange(port, post_request(TEXT_LINE, headers={"Content-Type": ""}))
    ).status == 400
    assert (await rejected(exporter))["text_output"] == 51
    assert [r["suppressed_since_last"] for r in logs.matching(TEXT_OUTPUT_FIX)] == [0]
    assert logs.matching(TEXT_OUTPUT_FIX)[0]["level"] == "error"
    clock.now += 61
    assert (await exchange(port, post_request(TEXT_LINE, headers=text))).status == 400
    assert [r["suppressed_since_last"] for r in logs.matching(TEXT_OUTPUT_FIX)] == [0, 50]
    assert await total_events(exporter.main_http.port) == 0


@pytest.mark.parametrize(
    ("data", "status", "reason"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
async def test_each_malformed_request_is_a_counted_4xx_and_nothing_else_is_lost(
    make_exporter: MakeExporter, data: bytes, status: int, reason: str
) -> None:
    """Its own 4xx and reason; the good POSTs before and after it count, exactly."""
    exporter = await make_exporter(http_input_address="127.0.0.1:0")
    port = input_port(exporter)
    assert (await exchange(port, post_request(EVENT_BODY))).status == 200
    answer = await exchange(port, data)
    assert answer.status == status, answer
    assert (await exchange(port, post_request(EVENT_BODY))).status == 200
    counts = await rejected(exporter)
    assert {r: c for r, c in counts.items() if c} == dict.fromkeys(reason.split("+"), 1.0)
    assert await total_events(exporter.main_http.port) == 2


async def test_slow_clients_get_408_and_lose_their_connection(make_exporter: MakeExporter) -> None:
    """Headers that never finish, a body shorter than declared: 408 once the read timeout passes."""
    exporter = await make_exporter(
        http_input_address="127.0.0.1:0", http_input_read_timeout="300ms"
    )
    port = input_port(exporter)
    stuck_headers = await exchange(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Le")
    assert (stuck_headers.status, stuck_headers.closed) == (408, True)
    short_body = post_request(EVENT_BODY, headers={"Content-Length": str(len(EVENT_BODY) + 10)})
    stuck_body = await exchange(port, short_body)
    assert (stuck_body.status, stuck_body.closed) == (408, True)
    assert (await rejected(exporter))["timeout"] == 2
    assert (await exchange(port, post_request(EVENT_BODY))).status == 200
    assert await total_events(exporter.main_http.port) == 1


async def test_sender_leaving_mid_body_is_counted_incomplete(make_exporter: MakeExporter) -> None:
    """A connection closed halfway through a request: nothing counted, `incomplete` is."""
    exporter = await make_exporter(http_input_address="127.0.0.1:0")
    await exchange(input_port(exporter), post_request(EVENT_BODY)[:-5], close_after_send=True)

    async def counted() -> bool:
        return (await rejected(exporter))["incomplete"] == 1

    await eventually(counted, message="the incomplete request counted")
    assert await total_events(exporter.main_http.port) == 0


async def test_every_reason_is_a_series_at_zero_from_start_up(make_exporter: MakeExporter) -> None:
    """increase() sees the first rejection of every reason only if the series existed before."""
    exporter = await make_exporter(http_input_address="127.0.0.1:0")
    assert await rejected(exporter) == dict.fromkeys(REASONS, 0.0)


async def test_rejections_are_logged_once_a_minute_per_reason(
    on_a_clock: tuple[FakeClock, Exporter], logs: LogLines
) -> None:
    """A flood of bad POSTs is one warning per reason per minute, carrying the count."""
    clock, exporter = on_a_clock
    port = input_port(exporter)
    for _ in range(30):
        await exchange(port, post_request(b"nope"))
        await exchange(port, post_request(EVENT_BODY, path="/wrong"))
    warnings = logs.matching("refused a POST from Falco")
    assert sorted(w["reason"] for w in warnings) == ["not_json", "path"]
    clock.now += 60
    await exchange(port, post_request(b"nope"))
    again = logs.matching("refused a POST from Falco")[2:]
    assert [(w["reason"], w["suppressed_since_last"]) for w in again] == [("not_json", 29)]


async def test_timeout_is_about_grpc_targets_only(
    make_exporter: MakeExporter, logs: LogLines, certs: CertPaths
) -> None:
    """With the HTTP input alone nothing waits to connect: no 'not connected' error."""
    await make_exporter(http_input_address="127.0.0.1:0", timeout="50ms")
    await make_exporter(timeout="50ms", **client_flags(certs, "127.0.0.1:1"))

    def grpc_one_logged() -> bool:
        return bool(logs.matching("not connected to Falco yet; still retrying"))

    await eventually(grpc_one_logged, message="the gRPC exporter's --timeout error")
    errors = logs.matching("not connected to Falco yet; still retrying")
    assert [e["targets"] for e in errors] == [["localhost:1"]]


async def test_k8smeta_fields_fill_the_pod_labels_when_k8s_fields_are_absent(
    make_exporter: MakeExporter,
) -> None:
    """k8smeta.* names the pod when k8s.* is absent; k8s.* wins when both are there."""
    exporter = await make_exporter(http_input_address="127.0.0.1:0")
    k8smeta = {"k8smeta.ns.name": "shop", "k8smeta.pod.name": "cart-1"}
    both = {**k8smeta, "k8s.ns.name": "default", "k8s.pod.name": "web-1"}
    for fields in (k8smeta, both):
        body = json.dumps({**EVENT, "output_fields": fields}).encode()
        assert (await exchange(input_port(exporter), post_request(body))).status == 200
    pods = {
        (dict(key)["k8s_ns_name"], dict(key)["k8s_pod_name"]): value
        for key, value in (await scrape(exporter.main_http.port)).items()
    }
    assert pods == {("shop", "cart-1"): 1.0, ("default", "web-1"): 1.0}


async def test_two_replicas_round_robin_lose_nothing_while_one_restarts(
    make_exporter: MakeExporter,
) -> None:
    """The central HA deployment: one replica restarts mid-stream; the sum is what was accepted.

    The client keeps a connection per replica and goes round-robin, moving on to the next
    replica when one refuses, as a Service does once the restarting pod left its endpoints.
    """
    first = await make_exporter(http_input_address="127.0.0.1:0")
    second = await make_exporter(http_input_address="127.0.0.1:0")
    urls = [input_url(first), input_url(second)]
    accepted = 0
    halfway, restarted = asyncio.Event(), asyncio.Event()

    async def post_round_robin(session: aiohttp.ClientSession, offset: int) -> None:
        nonlocal accepted
        for number in range(2000):
            for attempt in range(len(urls)):
                url = urls[(number + offset + attempt) % len(urls)]
                try:
                    async with session.post(url, data=EVENT_BODY) as response:
                        accepted += response.status == 200
                        break
                except aiohttp.ClientConnectionError:
                    continue
            if accepted >= 1000:
                halfway.set()
            if number == 1500:
                await restarted.wait()  # some posts reach the new replica too

    async def restart_second() -> tuple[float, Exporter]:
        await halfway.wait()
        port = second.ports["http_input"]
        await input_of(second, HttpInput).stop()
        counted = await total_events(second.main_http.port)
        await second.stop()
        replacement = await make_exporter(http_input_address=f"127.0.0.1:{port}")
        restarted.set()
        return counted, replacement

    async with aiohttp.ClientSession() as one, aiohttp.ClientSession() as two:
        senders = asyncio.gather(post_round_robin(one, 0), post_round_robin(two, 1))
        counted_by_old, replacement = await restart_second()
        await senders
    counted_by_new = await total_events(replacement.main_http.port)
    counted_by_first = await total_events(first.main_http.port)
    assert accepted == 4000
    assert counted_by_old > 0
    assert counted_by_new > 0
    assert counted_by_first + counted_by_old + counted_by_new == accepted
