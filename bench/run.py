"""Benchmark: the exporter against bare Python readers of the same Falco stream.

  python -m bench.run [--events 300000] [--memory-events 1000000] [--quick]

Prints Markdown tables (docs/performance.md shows the last run and how to read it):
1. events per CPU-second of each consumer process (the exporter with each transport,
   a bare grpc.aio `sub` reader, a bare synchronous `get` loop), and the ratio of the
   exporter to the fastest bare reader; with the wall rate and how busy the server was;
2. event-to-/metrics latency, p50 and p99, on an idle stream and under a flood;
3. /metrics render time and size at 1k, 10k and 100k series, and what gzip adds;
4. the exporter's resident memory at start, after many events, and under pod churn.
Every process runs on this machine over loopback with mutual TLS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import aiohttp

from exporter.core.counter import EventCounter
from exporter.core.event import FalcoEvent
from exporter.exposition.falco_events import FalcoEventsText
from exporter.exposition.text import gzip_body
from exporter.simulator.certs import write_cert_set

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its threads, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_mib(pid: int) -> float:
    """Resident memory of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Server:
    """The benchmark's Falco process (bench/falco_server.py)."""

    def __init__(self, process: asyncio.subprocess.Process, address: str) -> None:
        self.process = process
        self.address = address

    async def command(self, line: str) -> str:
        """Send one command, return its one-line answer."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(f"{line}\n".encode())
        await self.process.stdin.drain()
        return (await self.process.stdout.readline()).decode().strip()

    @property
    def port(self) -> str:
        """The TCP port it listens on."""
        return self.address.rsplit(":", 1)[1]


@asynccontextmanager
async def falco_server(certs: Path, unix_socket: str = "") -> AsyncIterator[Server]:
    """Start a fresh Falco-like server (on `unix_socket` if given); stop it afterwards."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.falco_server",
        str(certs),
        *([unix_socket] if unix_socket else []),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    address = (await process.stdout.readline()).decode().strip()
    try:
        yield Server(process, address)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


@dataclass
class Exporter:
    """An exporter process and its metrics port."""

    process: asyncio.subprocess.Process
    port: int

    async def total(self, session: aiohttp.ClientSession) -> int:
        """sum(falco_events) on its /metrics."""
        async with session.get(f"http://127.0.0.1:{self.port}/metrics") as response:
            body = await response.text()
        return sum(
            int(float(line.rsplit(" ", 1)[1]))
            for line in body.splitlines()
            if line.startswith("falco_events{")
        )

    async def received(self, session: aiohttp.ClientSession) -> int:
        """sum(falco_exporter_events_received_total): unaffected by the series TTL."""
        body = await self.body(session)
        return sum(
            int(float(line.rsplit(" ", 1)[1]))
            for line in body.splitlines()
            if line.startswith("falco_exporter_events_received_total{")
        )

    async def body(self, session: aiohttp.ClientSession) -> str:
        """The whole /metrics text."""
        async with session.get(f"http://127.0.0.1:{self.port}/metrics") as response:
            return await response.text()


@asynccontextmanager
async def exporter(server: Server, certs: Path, *flags: str) -> AsyncIterator[Exporter]:
    """Start the exporter against the server; return once it is connected."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "exporter",
        "--client-hostname",
        "localhost",
        "--client-port",
        server.port,
        "--client-cert",
        str(certs / "client.crt"),
        "--client-key",
        str(certs / "client.key"),
        "--client-ca",
        str(certs / "ca.crt"),
        "--listen-address",
        "127.0.0.1:0",
        "--probes-listen-address",
        "127.0.0.1:0",
        "--log-format",
        "json",
        *flags,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    port = 0
    while True:
        record = json.loads(await process.stdout.readline())
        if record["event"] == "serving HTTP":
            port = record["metrics_port"]
        if record["event"] == "connected to Falco":
            break
    drain = asyncio.create_task(process.stdout.read())  # keep its pipe from filling
    try:
        yield Exporter(process, port)
    finally:
        process.terminate()
        await process.wait()
        drain.cancel()


@dataclass
class Throughput:
    """One consumer's figures for one run."""

    name: str
    events: int
    cpu: float
    wall: float
    server_busy: float

    @property
    def per_cpu_second(self) -> float:
        """Events per CPU-second of the consumer process."""
        return self.events / self.cpu


async def measure_bare(kind: str, certs: Path, events: int) -> Throughput:
    """A bare reader's CPU between its 'ready' and 'done' lines."""
    async with falco_server(certs) as server:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.bare_readers",
            kind,
            server.address,
            str(certs),
            str(events),
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        assert (await process.stdout.readline()).strip() == b"ready"
        cpu0, server0, start = (
            cpu_seconds(process.pid),
            cpu_seconds(server.process.pid),
            time.monotonic(),
        )
        await server.command(f"publish {events}")
        assert (await process.stdout.readline()).strip() == b"done"
        cpu1, server1, wall = (
            cpu_seconds(process.pid),
            cpu_seconds(server.process.pid),
            time.monotonic() - start,
        )
        await process.wait()
    return Throughput(f"bare reader, {kind}", events, cpu1 - cpu0, wall, (server1 - server0) / wall)


async def measure_exporter(transport: str, certs: Path, events: int) -> Throughput:
    """The exporter's CPU from connected to every event visible on /metrics."""
    async with (
        falco_server(certs) as server,
        exporter(server, certs, "--transport", transport) as running,
        aiohttp.ClientSession() as session,
    ):
        pid = running.process.pid
        cpu0, server0, start = cpu_seconds(pid), cpu_seconds(server.process.pid), time.monotonic()
        await server.command(f"publish {events}")
        while await running.total(session) < events:
            await asyncio.sleep(0.25)  # a scrape costs the exporter CPU: few, on purpose
        cpu1, server1, wall = (
            cpu_seconds(pid),
            cpu_seconds(server.process.pid),
            time.monotonic() - start,
        )
    return Throughput(
        f"falco-exporter, --transport {transport}",
        events,
        cpu1 - cpu0,
        wall,
        (server1 - server0) / wall,
    )


async def latencies(certs: Path, samples: int, flood_rate: int) -> dict[str, list[float]]:
    """Milliseconds from Falco queueing an event to the event's series on /metrics."""
    results: dict[str, list[float]] = {}
    async with (
        falco_server(certs) as server,
        exporter(server, certs) as running,
        aiohttp.ClientSession() as session,
    ):
        for label, rate in (("idle stream", 0), (f"flood of {flood_rate}/s", flood_rate)):
            await server.command(f"flood {rate}")
            seen: list[float] = []
            for n in range(samples):
                pod = f"latency-{rate}-{n}"
                await asyncio.sleep(random.uniform(0.02, 0.12))  # land anywhere in a poll
                start = time.perf_counter()
                await server.command(f"publish-pod {pod}")
                while f'k8s_pod_name="{pod}"' not in await running.body(session):
                    pass
                seen.append((time.perf_counter() - start) * 1000)
            results[label] = seen
        await server.command("flood 0")
    return results


def render_figures(sizes: list[int]) -> list[tuple[int, float, int, float, int]]:
    """(series, median render ms, bytes, median gzip ms, gzipped bytes) for that many series.

    gzip is what a scrape by Prometheus costs on top (it always sends Accept-Encoding: gzip).
    """
    figures = []
    for size in sizes:
        counter = EventCounter()
        add = counter.shard().add
        for n in range(size):
            add(
                FalcoEvent(
                    "Terminal shell in container",
                    5,
                    "syscall",
                    f"worker-{n % 50}",
                    ("container", "mitre_execution", "shell"),
                    {"k8s.ns.name": "default", "k8s.pod.name": f"nginx-7854ff8877-{n}"},
                )
            )
        timings, gzip_timings = [], []
        renderer = FalcoEventsText(counter)
        renderer.render()  # each series' prefix is made at its first render, then kept
        for _ in range(5):
            start = time.perf_counter()
            text = renderer.render().encode()
            timings.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            compressed = gzip_body(text)
            gzip_timings.append((time.perf_counter() - start) * 1000)
        figures.append(
            (
                size,
                statistics.median(timings),
                len(text),
                statistics.median(gzip_timings),
                len(compressed),
            )
        )
    return figures


async def memory(certs: Path, events: int) -> list[tuple[str, float]]:
    """Exporter RSS: at start, after `events` events, and under pod churn with each setting."""
    runs = [
        ("the same 13 series", "publish", ()),
        ("a new pod per event, no limit (--max-series 0)", "churn", ("--max-series", "0")),
        ("a new pod per event, --max-series 10000 (the default)", "churn", ()),
        (
            "a new pod per event, --series-ttl 5s, no limit",
            "churn",
            ("--max-series", "0", "--series-ttl", "5s"),
        ),
    ]
    rows = []
    async with aiohttp.ClientSession() as session:
        for label, command, flags in runs:
            async with falco_server(certs) as server, exporter(server, certs, *flags) as running:
                if command == "publish":
                    rows.append(("at start, connected", rss_mib(running.process.pid)))
                for _ in range(events // 100_000):
                    await server.command(f"{command} 100000")
                while await running.received(session) < events:
                    await asyncio.sleep(0.5)
                rows.append((f"after {events:,} events, {label}", rss_mib(running.process.pid)))
    return rows


async def main() -> None:
    """Run every part and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-events", type=int, default=1_000_000)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--flood-rate", type=int, default=5_000)
    parser.add_argument("--quick", action="store_true", help="small sizes, to try it out")
    parser.add_argument(
        "--only", choices=["throughput", "latency", "render", "memory"], help="run one part only"
    )
    options = parser.parse_args()
    if options.quick:
        options.events, options.memory_events, options.latency_samples = 30_000, 100_000, 30
        options.repeats = 1
    with tempfile.TemporaryDirectory() as tmp:
        certs = Path(tmp)
        write_cert_set(certs)
        print(
            f"# falco-exporter benchmark\n\n{platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d')}\n"
        )
        if options.only in (None, "throughput"):
            await print_throughput(certs, options.events, options.repeats)
        if options.only in (None, "latency"):
            lat = await latencies(certs, options.latency_samples, options.flood_rate)
            print("\n## Event to /metrics latency (default settings)\n")
            print("| stream | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|")
            for label, values in lat.items():
                cuts = statistics.quantiles(values, n=100)
                print(f"| {label} | {cuts[49]:.1f} | {cuts[98]:.1f} | {max(values):.1f} |")
        if options.only in (None, "render"):
            print(
                "\n## /metrics render\n\n| series | render ms (median) | size | "
                "gzip ms (median) | gzipped |"
            )
            print("|---:|---:|---:|---:|---:|")
            for size, millis, length, gzip_ms, gzipped in render_figures([1_000, 10_000, 100_000]):
                print(
                    f"| {size:,} | {millis:.1f} | {length / 1e6:.1f} MB | {gzip_ms:.1f} | "
                    f"{gzipped / 1e6:.2f} MB |"
                )
        if options.only in (None, "memory"):
            print("\n## Resident memory of the exporter\n\n| when | RSS MiB |\n|---|---:|")
            for label, mib in await memory(certs, options.memory_events):
                print(f"| {label} | {mib:.0f} |")


async def print_throughput(certs: Path, events: int, repeats: int) -> None:
    """Every consumer `repeats` times, interleaved, each against a fresh server; medians."""
    consumers: list[tuple[str, Callable[[], Awaitable[Throughput]]]] = [
        ("bare reader, aio-sub", partial(measure_bare, "aio-sub", certs, events)),
        ("bare reader, sync-get", partial(measure_bare, "sync-get", certs, events)),
        ("falco-exporter, --transport get", partial(measure_exporter, "get", certs, events)),
        ("falco-exporter, --transport sub", partial(measure_exporter, "sub", certs, events)),
    ]
    runs: dict[str, list[Throughput]] = {name: [] for name, _ in consumers}
    for _ in range(repeats):
        for name, measure in consumers:
            runs[name].append(await measure())

    def median_rate(name: str) -> float:
        return statistics.median(r.per_cpu_second for r in runs[name])

    fastest_bare = max(median_rate(name) for name in runs if name.startswith("bare"))
    print(
        f"## Throughput: {events:,} events of about 500 bytes, mutual TLS, "
        f"median of {repeats} runs\n"
    )
    print(
        "| consumer | events per CPU-second (range) | of the fastest bare reader | wall rate "
        "(events/s) | server CPU busy |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, results in runs.items():
        rates = sorted(r.per_cpu_second for r in results)
        wall = statistics.median(r.events / r.wall for r in results)
        busy = statistics.median(r.server_busy for r in results)
        print(
            f"| {name} | {median_rate(name):,.0f} ({rates[0]:,.0f}-{rates[-1]:,.0f}) | "
            f"{median_rate(name) / fastest_bare:.2f} | {wall:,.0f} | {busy:.0%} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
