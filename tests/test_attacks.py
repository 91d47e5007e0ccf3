"""The attacker Falco is watching, against a real exporter process: every bound holds.

Each test reproduces an attack a compromised pod could make on our ports (on loopback only,
every loop bounded in count and time) and checks what an operator would notice if a bound
failed: the process stays alive, the probes answer within the kubelet's timeout, the peak
memory stays under the limit the manifests ship, and a Falco-like client posting all along
has every one of its events counted exactly. SECURITY.md's threat model lists the bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from exporter.http.limits import ListenerLimits
from exporter.http.messages import Answer, Refusal, Request
from exporter.http.server import HttpServer
from exporter.simulator.falco_counts import FalcoCounts
from tests.support import EVENT_BODY, curl, eventually, find_tool, labels, scrape
from tests.support.deploy import load_resources, mebibytes
from tests.support.processes import LOCAL_PORTS, Process, running
from tests.support.raw_http import RawAnswer, read_answer

# The kubelet's default probe timeout: a slower probe counts as a failure.
PROBE_TIMEOUT = 1.0
MIB = 1024 * 1024
_POST = (
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
)


class Attacked:
    """An exporter process with the HTTP input, its ports, and a Falco-like client."""

    def __init__(self, process: Process, serving: dict[str, int]) -> None:
        self.process = process
        self.pid = process.process.pid
        self.metrics = int(serving["metrics_port"])
        self.probes = int(serving["probes_port"])
        self.input = int(serving["http_input_port"])
        self.posted = 0

    def peak_mib(self) -> float:
        """VmHWM: the most resident memory the process has held."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM")

    async def probe(self) -> float:
        """One /liveness on a new connection, as the kubelet asks; its latency in seconds."""
        start = time.perf_counter()
        answer = await request(self.probes, b"GET /liveness HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.status == 200
        return time.perf_counter() - start

    async def still_serves(self) -> None:
        """The probes answer in time, a scrape gets its 200 and Falco's POST is taken."""
        assert (await self.probe()) < PROBE_TIMEOUT
        scraped = await request(self.metrics, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert scraped.status == 200
        posted = await request(self.input, _POST % len(EVENT_BODY) + EVENT_BODY)
        assert posted.status == 200

    async def falco(self, until: asyncio.Event) -> int:
        """Post one event per request on one keep-alive connection, as Falco's libcurl does,
        until `until` is set; every answer must be a 200. How many were posted."""
        posted = 0
        reader, writer = await asyncio.open_connection("127.0.0.1", self.input)
        try:
            while not until.is_set():
                writer.write(_POST % len(EVENT_BODY) + EVENT_BODY)
                answer = await asyncio.wait_for(read_answer(reader), 10)
                if answer.status is None:  # closed while idle (made room): reconnect
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.input)
                    continue
                assert answer.status == 200, answer
                posted += 1
                await asyncio.sleep(0.01)
        finally:
            writer.close()
        self.posted += posted
        return posted

    async def post_batches(self, documents: list[dict[str, Any]], per_body: int) -> None:
        """Post the documents as newline-delimited bodies of `per_body`, each answered 200."""
        for start in range(0, len(documents), per_body):
            body = b"\n".join(json.dumps(d).encode() for d in documents[start : start + per_body])
            assert (await request(self.input, _POST % len(body) + body)).status == 200

    async def counted(self) -> float:
        """sum(falco_events)."""
        return sum((await scrape(self.metrics)).values())


async def request(port: int, data: bytes, host: str = "127.0.0.1") -> RawAnswer:
    """Send `data` on a new connection (from `host`), read one answer, close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(host, 0))
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(read_answer(reader), 10)
    finally:
        writer.close()


@pytest.fixture
async def attacked() -> AsyncIterator[Attacked]:
    """The exporter with the HTTP input and every default limit."""
    async with running("--http-input-address", "127.0.0.1:0", *LOCAL_PORTS) as process:
        serving = await process.wait_for_log("serving HTTP")
        yield Attacked(process, serving)
        assert process.process.returncode is None, "the exporter died under attack"


Attacker = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


async def under_attack(
    target: Attacked,
    attackers: list[Attacker],
    seconds: float,
    accepted: Callable[[], int] = lambda: 0,
) -> list[float]:
    """Run the attackers (each until the event is set) and a Falco-like client for
    `seconds`, probing every 100 ms; the probes' latencies. An attacker's failure fails the
    test; every event the client posted, plus `accepted()` of the attackers', is counted."""
    stop = asyncio.Event()
    attacks = [asyncio.create_task(attacker(stop)) for attacker in attackers]
    client = asyncio.create_task(target.falco(stop))
    latencies = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not any(attack.done() for attack in attacks):
        latencies.append(await target.probe())
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.gather(client, *attacks)  # an attacker's failed assertion fails here
    expected = target.posted + accepted()

    async def all_counted() -> bool:
        return await target.counted() == expected

    await eventually(all_counted, message="every event posted counted")
    assert target.posted > 0, "the Falco-like client posted nothing: the test proved nothing"
    return latencies


def shipped_memory_limit() -> float:
    """The memory limit the manifests give the HTTP-input modes, MiB."""
    return mebibytes(load_resources().deployments["sidecar"].limits["memory"])


@pytest.mark.slow
async def test_garbage_bodies_cost_bounded_cpu_and_the_probes_answer(attacked: Attacked) -> None:
    """Four connections posting 1 MiB of garbage lines (and of `{}` lines) in a loop: each is
    refused with a 400 saying how far it got, the probes answer in time, Falco counts on."""
    garbage = [b"\n".join([b"x"] * (MIB // 2)), b"\n".join([b"{}"] * (MIB // 3))]

    def attacker(body: bytes) -> Attacker:
        async def attack(stop: asyncio.Event) -> None:
            while not stop.is_set():
                answer = await request(attacked.input, _POST % len(body) + body)
                assert answer.status == 400
                assert json.loads(answer.body)["gave_up_at_line"] == 100

        return attack

    latencies = await under_attack(attacked, [attacker(garbage[n % 2]) for n in range(4)], 5)
    assert max(latencies) < PROBE_TIMEOUT, latencies
    assert attacked.peak_mib() < shipped_memory_limit()


@pytest.mark.slow
async def test_valid_batches_yield_to_the_probes(attacked: Attacked) -> None:
    """1 MiB bodies of valid events, four at a time, are counted exactly while the probes
    answer in time: a large body is read in steps."""
    count = MIB // (len(EVENT_BODY) + 1)
    body = b"\n".join([EVENT_BODY] * count)
    sent = 0

    async def attacker(stop: asyncio.Event) -> None:
        nonlocal sent
        while not stop.is_set():
            answer = await request(attacked.input, _POST % len(body) + body)
            assert answer.status == 200
            sent += count

    latencies = await under_attack(attacked, [attacker] * 4, 4, lambda: sent)
    assert max(latencies) < PROBE_TIMEOUT, latencies
    assert sent > 0


@pytest.mark.parametrize("port", ["input", "metrics", "probes"])
async def test_trickled_huge_headers_are_refused_early(attacked: Attacked, port: str) -> None:
    """Eight connections trickle a header in 64 KiB chunks: each is answered 431 once its
    head passes 16 KiB, and the memory held stays under the shipped limit."""
    target = getattr(attacked, port)

    async def trickle() -> RawAnswer:
        reader, writer = await asyncio.open_connection("127.0.0.1", target)
        answer = asyncio.create_task(read_answer(reader))
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Junk: ")
            for _ in range(800):  # 50 MiB, if nothing stopped it
                if answer.done():
                    break
                writer.write(b"a" * 65536)
                try:
                    await writer.drain()
                except ConnectionError:
                    break
                await asyncio.sleep(0.001)  # a trickle: the answer can be read meanwhile
            return await asyncio.wait_for(answer, 10)
        finally:
            writer.close()

    answers = await asyncio.gather(*(trickle() for _ in range(8)))
    assert [answer.status for answer in answers] == [431] * 8
    assert attacked.peak_mib() < shipped_memory_limit()
    assert (await attacked.probe()) < PROBE_TIMEOUT


async def test_idle_connections_cannot_starve_any_port(attacked: Attacked) -> None:
    """Idle connections from a hundred addresses fill every listener: the oldest idle ones
    are closed to make room, so the kubelet, Prometheus and Falco still get through, and
    connections that send nothing are closed after 5 s."""
    held = [
        await asyncio.open_connection("127.0.0.1", port, local_addr=(f"127.0.0.{2 + n % 100}", 0))
        for n in range(300)
        for port in (attacked.input, attacked.metrics, attacked.probes)
    ]
    try:
        await attacked.still_serves()

        def shed_at_least(listener: str, count: float) -> Callable[[], Awaitable[bool]]:
            # A connect returns once the kernel has it; the exporter accepts (and sheds) later.
            async def check() -> bool:
                closed = await scrape(
                    attacked.metrics, "falco_exporter_listener_connections_closed"
                )
                return closed.get(labels(listener=listener, reason="shed"), 0) >= count

            return check

        for listener in ("metrics", "probes"):  # the HTTP input holds 8,192: see below
            await eventually(shed_at_least(listener, 1), message=f"{listener} sheds")
        # One address past its share of the HTTP input (16): its own oldest idle one goes.
        held += [await asyncio.open_connection("127.0.0.1", attacked.input) for _ in range(20)]
        await eventually(shed_at_least("http_input", 4), message="the HTTP input sheds 4")

        async def silent_ones_closed() -> bool:
            closed = await scrape(attacked.metrics, "falco_exporter_listener_connections_closed")
            return closed[labels(listener="http_input", reason="silent")] > 0

        await eventually(silent_ones_closed, timeout=15, message="silent connections closed")
    finally:
        for _reader, writer in held:
            writer.close()


async def test_one_address_holds_no_more_than_its_share(attacked: Attacked) -> None:
    """One address opens 30 connections to the probes port, each with a request half-sent:
    it never holds more than its share (8), each newcomer closing that address's own oldest
    request in progress (counted), and a probe from it, or from another address, is
    answered."""
    held = []
    try:
        for _ in range(30):
            reader, writer = await asyncio.open_connection("127.0.0.1", attacked.probes)
            writer.write(b"GET /liveness HTTP/1.1\r\n")  # a request begun, never finished
            held.append((reader, writer))

        async def shed() -> bool:
            closed = await scrape(attacked.metrics, "falco_exporter_listener_connections_closed")
            return closed[labels(listener="probes", reason="shed_slow")] == 30 - 8

        await eventually(shed, message="22 of the 30 closed to keep the share")
        connections = await scrape(attacked.metrics, "falco_exporter_listener_connections")
        assert connections[labels(listener="probes")] == 8
        for host in ("127.0.0.1", "127.0.0.9"):
            answer = await request(attacked.probes, b"GET /liveness HTTP/1.1\r\n\r\n", host)
            assert answer.status == 200, host
    finally:
        for _reader, writer in held:
            writer.close()


async def test_a_slowloris_behind_falcos_own_address_cannot_lock_it_out(
    attacked: Attacked,
) -> None:
    """A sidecar's loopback: a process beside Falco keeps 16 requests half-sent to the HTTP
    input and 8 to the probes port, from Falco's and the kubelet's own address, reopening
    each one closed: Falco's posts and the probes still get through, every post counted."""

    def slowloris(port: int, share: int) -> Attacker:
        async def attack(stop: asyncio.Event) -> None:
            held: list[asyncio.StreamWriter] = []
            try:
                while not stop.is_set():
                    held = [writer for writer in held if not writer.is_closing()]
                    for _ in range(share - len(held)):
                        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
                        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\n")
                        held.append(writer)
                    for writer in held:
                        writer.write(b"X: y\r\n")  # trickled: never a whole head
                    await asyncio.sleep(0.05)
            finally:
                for writer in held:
                    writer.close()

        return attack

    attackers = [slowloris(attacked.input, 16), slowloris(attacked.probes, 8)]
    latencies = await under_attack(attacked, attackers, 4)
    assert max(latencies) < PROBE_TIMEOUT, latencies
    assert attacked.posted >= 50, attacked.posted


async def test_the_listen_backlog_is_the_systems(attacked: Attacked) -> None:
    """A burst of connects is queued, not dropped: every listener's backlog is somaxconn."""
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    process = await asyncio.create_subprocess_exec("ss", "-ltnH", stdout=asyncio.subprocess.PIPE)
    listing, _ = await process.communicate()
    backlogs = {}
    for line in listing.decode().splitlines():
        fields = line.split()
        port = int(fields[3].rsplit(":", 1)[1])
        backlogs[port] = int(fields[2])
    for port in (attacked.input, attacked.metrics, attacked.probes):
        assert backlogs[port] == somaxconn, port


@pytest.mark.slow
async def test_a_flood_of_labels_keeps_series_and_memory_bounded(attacked: Attacked) -> None:
    """50,000 distinct rule names, then events with 500 KB rule and pod names: the series
    stay within the limit, every value is cut, the scrape and the live page stay small, and
    the memory stays under the shipped limit."""
    junk = [
        {
            "rule": f"junk {number}",
            "priority": "Emergency",
            "hostname": f"h-{number}",
            "output_fields": {"k8s.pod.name": f"p-{number}"},
        }
        for number in range(50_000)
    ]
    await attacked.post_batches(junk, 2_500)
    big = json.dumps(
        {
            "rule": "R" * 500_000,
            "priority": "Critical",
            "output_fields": {"k8s.pod.name": "p" * 500_000},
        }
    ).encode()
    for _ in range(20):
        assert (await request(attacked.input, _POST % len(big) + big)).status == 200
    scraped = await request(attacked.metrics, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert scraped.status == 200
    series = [line for line in scraped.body.split(b"\n") if line.startswith(b"falco_events{")]
    assert len(series) <= 10_000 + 100 + 8
    assert len(scraped.body) < 8 * MIB
    live = await request(attacked.metrics, b"GET /api/live HTTP/1.1\r\nHost: x\r\n\r\n")
    assert live.status == 200
    assert len(live.body) < 2 * MIB
    assert json.loads(live.body)["series"] == len(series)
    assert await attacked.counted() == 50_020
    assert attacked.peak_mib() < shipped_memory_limit()


async def test_pipelined_scrapes_never_read_cannot_fill_the_memory(attacked: Attacked) -> None:
    """Three connections each pipeline 300 `GET /metrics` of a large table and never read
    the answers: each is answered only as its client reads, so the memory held stays under
    the shipped limit, and the ports serve meanwhile."""
    table = [
        {
            "rule": f"rule {number % 100}",
            "priority": "Warning",
            "hostname": f"node-{number % 10}",
            "output_fields": {"k8s.pod.name": f"pod-{number}-{'x' * 200}"},
        }
        for number in range(8_000)
    ]
    await attacked.post_batches(table, 2_000)
    scraped = await request(attacked.metrics, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(scraped.body) > MIB  # each answer held would be a MiB
    held = []
    for _ in range(3):
        reader, writer = await asyncio.open_connection("127.0.0.1", attacked.metrics)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 300)
        held.append((reader, writer))
    try:
        for _ in range(20):  # two seconds, scraping and probing
            await attacked.still_serves()
            await asyncio.sleep(0.1)
        assert attacked.peak_mib() < shipped_memory_limit()
        reader, _writer = held[0]
        answers = [await asyncio.wait_for(read_answer(reader), 10) for _ in range(3)]
        assert [answer.status for answer in answers] == [200, 200, 200]  # served as read
    finally:
        for _reader, writer in held:
            writer.close()


async def test_forged_hostnames_flood_neither_the_log_nor_the_delivery_table() -> None:
    """12,000 hostnames with alerts only, then a real Falco, then 12,000 forged snapshots:
    the Falco that reports is accounted for, hostnames with alerts only have no series, the
    table stays bounded, and the log says `too many Falcos` once a minute, not once per
    hostname (a log flood would also block the exporter on its full pipe here)."""
    async with running("--http-input-address", "127.0.0.1:0", *LOCAL_PORTS) as process:
        attacked = Attacked(process, await process.wait_for_log("serving HTTP"))
        event = json.loads(EVENT_BODY)
        falco = FalcoCounts("node-real")
        posts = [
            [{**event, "hostname": f"forged-{n}"} for n in range(12_000)],
            [falco.snapshot(), falco.matched(event), falco.snapshot()],
            [FalcoCounts(f"forged-snapshot-{n}").snapshot() for n in range(12_000)],
        ]
        for documents in posts:
            await attacked.post_batches(documents, 1_000)
        await attacked.still_serves()
        raised = await scrape(attacked.metrics, "falco_exporter_falco_alerts_raised")
        assert raised[labels(hostname="node-real")] == 1
        assert len(raised) <= 10_000
        received = await scrape(attacked.metrics, "falco_exporter_falco_alerts_received")
        assert set(received) == set(raised)  # none for the hostnames with alerts only
        untracked = await scrape(attacked.metrics, "falco_exporter_delivery_untracked_alerts")
        assert untracked[labels()] > 0
        assert attacked.peak_mib() < shipped_memory_limit()
        process.process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.process.communicate(), 30)
    lines = [json.loads(line) for line in output.splitlines() if line.startswith(b"{")]
    crowded = [line for line in lines if line["event"].startswith("too many Falcos")]
    assert len(crowded) == 1, len(crowded)


async def test_the_live_page_is_built_at_most_once_a_second(attacked: Attacked) -> None:
    """Fifty polls of /api/live as fast as they come: a handful of builds, not fifty."""
    start = time.monotonic()
    built = set()
    for _ in range(50):
        answer = await request(attacked.metrics, b"GET /api/live HTTP/1.1\r\nHost: x\r\n\r\n")
        built.add(json.loads(answer.body)["now"])
    assert len(built) <= time.monotonic() - start + 2


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
async def test_an_early_413_reaches_the_sender(loop: str, tmp_path: Path) -> None:
    """A 2 MB POST sent whole, without waiting: the 413 sent early is read by the client, every
    time, on both event loops (lingering close: no reset destroys it)."""
    async with running(
        "--http-input-address", "127.0.0.1:0", "--event-loop", loop, *LOCAL_PORTS
    ) as process:
        serving = await process.wait_for_log("serving HTTP")
        port = int(serving["http_input_port"])
        body = b"x" * 2_000_000
        statuses = []
        for _ in range(20):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_POST % len(body))
            writer.write(body)
            with contextlib.suppress(ConnectionError):  # the answer may come first
                await writer.drain()
            statuses.append((await asyncio.wait_for(read_answer(reader), 10)).status)
            writer.close()
        assert statuses == [413] * 20
        large = tmp_path / "large.json"
        large.write_bytes(body)
        result = await asyncio.to_thread(
            curl, "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", f"@{large}",
            f"http://127.0.0.1:{port}/",
        )  # fmt: skip
        assert result.stdout == "413"


async def test_sigterm_answers_every_request_that_arrived() -> None:
    """Fifty requests sent in full on accepted connections, then SIGTERM at once: each is
    answered 200 before its connection closes (none is cut off unanswered, though the loop
    may not have read it yet: the kernel's unread bytes are waited for), and the process
    exits 0."""
    async with running("--http-input-address", "127.0.0.1:0", *LOCAL_PORTS) as process:
        serving = await process.wait_for_log("serving HTTP")
        port = int(serving["http_input_port"])
        connections = [  # from five addresses: ten each, within the per-peer share
            await asyncio.open_connection("127.0.0.1", port, local_addr=(f"127.0.0.{2 + n % 5}", 0))
            for n in range(50)
        ]
        for _reader, writer in connections:
            writer.write(_POST % len(EVENT_BODY) + EVENT_BODY)
        for _reader, writer in connections:
            await writer.drain()

        async def all_accepted() -> bool:
            # Accepted, not only queued in the kernel: what the listen backlog still holds
            # when the listener closes is the kernel's to reset.
            open_now = await scrape(
                int(serving["metrics_port"]), "falco_exporter_listener_connections"
            )
            return open_now[labels(listener="http_input")] == 50

        await eventually(all_accepted, message="the 50 connections accepted")
        process.process.send_signal(signal.SIGTERM)
        try:
            answers = await asyncio.gather(
                *(asyncio.wait_for(read_answer(reader), 10) for reader, _ in connections)
            )
        finally:
            for _reader, writer in connections:
                writer.close()
        assert [answer.status for answer in answers] == [200] * 50
        assert await asyncio.wait_for(process.process.wait(), 10) == 0


async def test_libcurl_reuses_a_connection_the_server_closed_without_losing_an_alert(
    tmp_path: Path,
) -> None:
    """Idle keep-alive closed after 1 s while curl waits 2 s between posts on its connection:
    curl notices, reconnects, and every post is counted."""
    async with running(
        "--http-input-address", "127.0.0.1:0", "--http-input-idle-timeout", "1s", *LOCAL_PORTS
    ) as process:
        serving = await process.wait_for_log("serving HTTP")
        url = f"http://127.0.0.1:{serving['http_input_port']}/"
        event = tmp_path / "event.json"
        event.write_bytes(EVENT_BODY)
        result = await asyncio.to_thread(
            curl, "--rate", "30/m", "-H", "Content-Type: application/json",
            "--data-binary", f"@{event}", "-w", "%{http_code} %{num_connects}\n",
            *["-o", "/dev/null"] * 3, url, url, url,
        )  # fmt: skip
        assert result.stdout.split("\n")[:3] == ["200 1"] * 3  # a new connection each time
        metrics = int(serving["metrics_port"])

        async def three() -> bool:
            return sum((await scrape(metrics)).values()) == 3

        await eventually(three, message="three posts counted across the idle close")
        closed = await scrape(metrics, "falco_exporter_listener_connections_closed")
        assert closed[labels(listener="http_input", reason="idle")] >= 1


async def test_a_low_open_files_limit_still_leaves_room_for_the_probes() -> None:
    """Under `ulimit -n 1024`, the HTTP input's limit is lowered to fit (and said so), so 1,100
    idle connections to it never use up the descriptors the probes and /metrics need."""
    prlimit = find_tool("prlimit")
    if prlimit is None:
        pytest.skip("prlimit (util-linux) is not installed")
    process = await asyncio.create_subprocess_exec(
        prlimit, "--nofile=1024:1024", sys.executable, "-m", "exporter",
        "--http-input-address", "127.0.0.1:0", *LOCAL_PORTS,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    exporter = Process(process)
    try:
        lowered = await exporter.wait_for_log(
            "too few file descriptors for --http-input-max-connections; lowered to fit"
        )
        assert lowered["http_input_max_connections"] == 1024 - 128 - 32 - 256
        serving = await exporter.wait_for_log("serving HTTP")
        target = Attacked(exporter, serving)
        held = [
            await asyncio.open_connection(
                "127.0.0.1", target.input, local_addr=(f"127.0.0.{2 + n % 100}", 0)
            )
            for n in range(1100)
        ]
        try:
            await target.still_serves()
        finally:
            for _reader, writer in held:
                writer.close()
    finally:
        process.kill()
        await process.wait()


@pytest.mark.parametrize("port", ["input", "metrics", "probes"])
async def test_a_long_request_line_or_too_many_headers_are_refused(
    attacked: Attacked, port: str
) -> None:
    """A 10 KB target is answered 414; 150 small headers are answered 431; both counted."""
    target = getattr(attacked, port)
    long_line = await request(target, b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    many = b"".join(b"X-%d: y\r\n" % number for number in range(150))
    many_headers = await request(target, b"GET / HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert (long_line.status, many_headers.status) == (414, 431)
    refused = await scrape(attacked.metrics, "falco_exporter_listener_requests_refused")
    listener = {"input": "http_input"}.get(port, port)
    assert refused[labels(listener=listener, reason="uri_too_long")] == 1
    assert refused[labels(listener=listener, reason="headers_too_large")] == 1


async def test_slow_requests_cannot_hold_the_probes(attacked: Attacked) -> None:
    """The probes' 32 slots held by requests half-sent from four addresses (a slowloris):
    past a second, the kubelet's probe closes the oldest of them and is answered in time."""
    held = []
    for number in range(32):
        host = f"127.0.0.{20 + number // 8}"
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", attacked.probes, local_addr=(host, 0)
        )
        writer.write(b"GET /liveness HTTP/1.1\r\n")  # begun, never finished: not idle
        held.append((reader, writer))
    try:

        async def all_reading() -> bool:
            connections = await scrape(attacked.metrics, "falco_exporter_listener_connections")
            return connections[labels(listener="probes")] == 32

        await eventually(all_reading, message="32 half-sent requests held")

        async def probe_gets_in() -> bool:
            answer = await request(attacked.probes, b"GET /liveness HTTP/1.1\r\n\r\n", "127.0.0.30")
            return answer.status == 200

        await eventually(probe_gets_in, message="a probe answered despite the slowloris")
        closed = await scrape(attacked.metrics, "falco_exporter_listener_connections_closed")
        assert closed[labels(listener="probes", reason="shed_slow")] >= 1
    finally:
        for _reader, writer in held:
            writer.close()


async def test_a_full_listener_with_nothing_to_close_refuses_and_counts() -> None:
    """Two slots, both held by requests just begun: a third connection is refused at once,
    counted as `limit`; the two are served when they finish."""
    site = ProbeSite()
    server = HttpServer(
        site, "127.0.0.1:0", limits=ListenerLimits(max_connections=2, slow_request=60.0)
    )
    await server.start()
    try:
        held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
        for _reader, writer in held:
            writer.write(b"GET / HTTP/1.1\r\n")
        await eventually(lambda: len(server.connections) == 2, message="two held")
        refused = await request(server.port, b"GET / HTTP/1.1\r\n\r\n")
        assert refused.status is None
        assert server.stats.closed["limit"] == 1
        for reader, writer in held:
            writer.write(b"Host: x\r\n\r\n")
            assert (await asyncio.wait_for(read_answer(reader), 10)).status == 200
            writer.close()
    finally:
        await server.stop()


class ProbeSite:
    """A site that answers 200 to anything, for the server's own tests."""

    max_body = 1024
    server_header = b""
    constant_answers: tuple[Answer, ...] = ()

    def handle(self, request: Request) -> Answer:
        """200, always."""
        del request
        return Answer(200, b"ok\n", b"text/plain")

    def refuse(self, reason: Refusal, detail: str, peer: str) -> Answer | None:
        """The server's refusal, as its status."""
        del detail, peer
        status = reason.status
        return None if status is None else Answer(status, b"", b"text/plain")
