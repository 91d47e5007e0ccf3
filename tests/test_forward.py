"""--forward-url: the exporter first in Falco's http_output path, every accepted alert sent on
to a downstream (falcosidekick, as users run it), and Falco's answer never waiting for it.

Falco is curl posting the real Falco 0.44.1 requests; the downstream is a real HTTP server
on loopback that records what reached it and answers as told.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from exporter.app import Exporter
from exporter.cli import main
from exporter.outputs.forward import Dropped
from tests.support import (
    REPO,
    MakeExporter,
    curl,
    eventually,
    free_port,
    labels,
    scrape,
    total_events,
)

CAPTURES = REPO / "tests" / "data" / "falco-0.44.1"


def falco_bodies(kind: str) -> list[bytes]:
    """The bodies of a capture's requests, as Falco posted them, in order."""
    paths = sorted((CAPTURES / kind).glob("req-*.http"))
    assert paths
    return [path.read_bytes().partition(b"\r\n\r\n")[2] for path in paths]


class Downstream:
    """A falcosidekick stand-in: records each POST's body and headers, answers `status`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/"
        self.bodies: list[bytes] = []
        self.content_types: list[str] = []
        self.status = 200
        self.stalled = asyncio.Event()  # set: never answer again
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.stalled.is_set():
            await asyncio.Event().wait()  # a downstream that never answers
        self.bodies.append(body)
        self.content_types.append(request.headers.get("Content-Type", ""))
        return web.Response(status=self.status, text="OK")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/", self._handle)
        # A stalled answer must not hold the test's end for aiohttp's default minute.
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@pytest.fixture
async def downstream() -> AsyncIterator[Downstream]:
    """A started downstream on a free port; stopped afterwards."""
    server = Downstream(free_port())
    await server.start()
    yield server
    await server.stop()


async def post(exporter: Exporter, body: bytes, content_type: str = "application/json") -> str:
    """POST one body as Falco's libcurl does; the status the exporter answered (curl gives
    up after 5 s: an answer that waited on the downstream would fail the test)."""
    url = f"http://127.0.0.1:{exporter.ports['http_input']}/"
    with tempfile.NamedTemporaryFile(suffix=".json") as file:
        file.write(body)
        file.flush()
        result = await asyncio.to_thread(
            curl,
            *("-o", "/dev/null", "-w", "%{http_code}", "-H", f"Content-Type: {content_type}"),
            *("--data-binary", f"@{file.name}", url),
            timeout=5,
        )
    return result.stdout


async def forward_metrics(exporter: Exporter) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    """The forward's self-metrics, by family."""
    port = exporter.main_http.port
    names = ("forwarded", "forward_dropped", "forward_failures", "forward_queued_bytes")
    return {name: await scrape(port, f"falco_exporter_{name}") for name in names}


async def test_every_accepted_alert_reaches_the_downstream_as_falco_posted_it(
    make_exporter: MakeExporter, downstream: Downstream
) -> None:
    """Falco 0.44.1's own alerts and metrics snapshots, byte for byte and in order, as JSON;
    a text-output post the input refused is not sent on."""
    exporter = await make_exporter(http_input_address="127.0.0.1:0", forward_url=downstream.url)
    bodies = falco_bodies("replay-json") + falco_bodies("nodriver-json")
    for body in bodies:
        assert await post(exporter, body) == "200"
    [text] = falco_bodies("replay-text")[:1]
    assert await post(exporter, text, "text/plain") != "200"
    await eventually(lambda: len(downstream.bodies) == len(bodies), message="all forwarded")
    assert downstream.bodies == bodies
    assert set(downstream.content_types) == {"application/json"}
    metrics = await forward_metrics(exporter)
    assert metrics["forwarded"][frozenset()] == len(bodies)
    assert sum(metrics["forward_dropped"].values()) == 0
    assert metrics["forward_queued_bytes"][frozenset()] == 0


async def test_a_body_of_several_alerts_is_sent_on_one_alert_per_post(
    make_exporter: MakeExporter, downstream: Downstream
) -> None:
    """JSON lines in one body (not Falco's way, but accepted): one POST per alert."""
    exporter = await make_exporter(http_input_address="127.0.0.1:0", forward_url=downstream.url)
    bodies = falco_bodies("replay-json")
    assert await post(exporter, b"\n".join(bodies)) == "200"
    await eventually(lambda: len(downstream.bodies) == len(bodies), message="all forwarded")
    assert len(downstream.bodies) == len(bodies)
    assert all(b"\n" not in body for body in downstream.bodies)


async def test_a_downstream_restart_loses_nothing_that_fits_in_the_queue(
    make_exporter: MakeExporter,
) -> None:
    """With the downstream away, Falco's posts are still answered 200 and counted; they are
    queued, and once it is back every one arrives, in order, exactly once."""
    server = Downstream(free_port())  # not started: nothing listens there yet
    exporter = await make_exporter(http_input_address="127.0.0.1:0", forward_url=server.url)
    bodies = falco_bodies("replay-json") * 4
    try:
        for body in bodies:
            assert await post(exporter, body) == "200"
        assert await total_events(exporter.main_http.port) == len(bodies)

        async def refused_connections() -> bool:
            failures = (await forward_metrics(exporter))["forward_failures"]
            return failures[labels(reason="connect")] > 0

        await eventually(refused_connections, message="the forward tried and failed")
        assert (await forward_metrics(exporter))["forward_queued_bytes"][frozenset()] == sum(
            map(len, bodies)
        )
        await server.start()
        await eventually(lambda: len(server.bodies) >= len(bodies), message="all delivered")
        assert server.bodies == bodies
        metrics = await forward_metrics(exporter)
        assert metrics["forwarded"][frozenset()] == len(bodies)
        assert metrics["forward_queued_bytes"][frozenset()] == 0
    finally:
        await server.stop()


async def test_a_stalled_downstream_never_delays_falco_and_the_queue_stays_bounded(
    make_exporter: MakeExporter, downstream: Downstream
) -> None:
    """A downstream that takes connections and never answers: every Falco post is still
    answered at once and counted; past --forward-queue-size the newest alerts are dropped
    from the forward, counted by reason, and the queue never holds more than its bound."""
    downstream.stalled.set()
    exporter = await make_exporter(
        http_input_address="127.0.0.1:0", forward_url=downstream.url, forward_queue_size="4KiB"
    )
    bodies = falco_bodies("replay-json") * 10
    for body in bodies:
        assert await post(exporter, body) == "200"  # curl's 5 s limit: never waited on
    assert await total_events(exporter.main_http.port) == len(bodies)
    # The documented rule: an alert that does not fit in what is left is dropped (the
    # first stays queued while on the wire, until answered).
    fits, dropped = 0, 0
    for body in bodies:
        if fits + len(body) <= 4096:
            fits += len(body)
        else:
            dropped += 1
    assert dropped > 0
    metrics = await forward_metrics(exporter)
    assert metrics["forward_queued_bytes"][frozenset()] == fits
    assert metrics["forward_dropped"][labels(reason="queue_full")] == dropped
    assert metrics["forwarded"][frozenset()] == 0


async def test_an_alert_the_downstream_refuses_is_dropped_and_one_it_fails_is_sent_again(
    make_exporter: MakeExporter, downstream: Downstream
) -> None:
    """400 means "never": counted as refused, sent once. 503 means "later": sent again
    until taken, each failure counted."""
    exporter = await make_exporter(http_input_address="127.0.0.1:0", forward_url=downstream.url)
    [first, second, *_] = falco_bodies("replay-json")
    downstream.status = 400
    assert await post(exporter, first) == "200"

    async def refused() -> bool:
        dropped = (await forward_metrics(exporter))["forward_dropped"]
        return dropped[labels(reason="refused")] == 1

    await eventually(refused, message="the 400 counted as refused")
    assert downstream.bodies == [first]
    downstream.status = 503
    assert await post(exporter, second) == "200"

    async def failed_twice() -> bool:
        failures = (await forward_metrics(exporter))["forward_failures"]
        return failures[labels(reason="status")] >= 2

    await eventually(failed_twice, message="the 503s counted and sent again")
    downstream.status = 200
    await eventually(lambda: downstream.bodies[-1:] == [second] and downstream.status == 200)
    await eventually(
        lambda: exporter.forwarder is not None and exporter.forwarder.forwarded == 1,
        message="taken once it answered 200",
    )
    assert downstream.bodies.count(second) >= 3  # two 503s, then the 200
    assert downstream.bodies.count(first) == 1


async def test_an_endless_answer_costs_a_bounded_read(make_exporter: MakeExporter) -> None:
    """A downstream that answers with a body without end: the forward reads at most its
    bound, closes the connection, counts a protocol failure, and the exporter serves on."""
    port = free_port()

    async def endless(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            for _ in range(10_000):
                writer.write(b"4000\r\n" + b"x" * 0x4000 + b"\r\n")
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(endless, "127.0.0.1", port)
    try:
        exporter = await make_exporter(
            http_input_address="127.0.0.1:0", forward_url=f"http://127.0.0.1:{port}/"
        )
        assert await post(exporter, falco_bodies("replay-json")[0]) == "200"

        async def protocol_failure() -> bool:
            failures = (await forward_metrics(exporter))["forward_failures"]
            return failures[labels(reason="protocol")] > 0

        await eventually(protocol_failure, message="the endless answer cut off")
        assert await total_events(exporter.main_http.port) == 1
    finally:
        server.close()


async def test_a_stop_counts_what_was_never_forwarded(
    make_exporter: MakeExporter, downstream: Downstream
) -> None:
    """Alerts still queued when the exporter stops are counted as dropped (and logged)."""
    downstream.stalled.set()
    exporter = await make_exporter(http_input_address="127.0.0.1:0", forward_url=downstream.url)
    bodies = falco_bodies("replay-json")
    for body in bodies:
        assert await post(exporter, body) == "200"
    await exporter.stop(grace=0.5)
    assert exporter.forwarder is not None
    assert exporter.forwarder.dropped[Dropped.STOPPED] == len(bodies)
    assert exporter.forwarder.queued_bytes == 0


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--forward-url=http://127.0.0.1:9999/"], "--forward-url"),
        (["--http-input-address=127.0.0.1:2801", "--forward-url=ftp://x/"], "--forward-url"),
        (["--http-input-address=127.0.0.1:2801", "--forward-url=http://:80/"], "--forward-url"),
        (
            ["--http-input-address=0.0.0.0:2801", "--forward-url=http://localhost:2801/"],
            "own HTTP input",
        ),
    ],
)
def test_a_forward_that_cannot_work_is_a_configuration_error(
    flags: list[str], named: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """No HTTP input to forward from, a URL that is not http(s), no host, or a loop back
    into our own input: exit 2, naming the flag."""
    assert main([*flags, "--check-config"]) == 2
    assert named in capsys.readouterr().err
