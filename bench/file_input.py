"""Benchmark of the file input against the HTTP input, on the same alerts.

  python -m bench.file_input [--events 20000] [--latency-samples 200]

Each input gets the same events as Falco would send them: the HTTP input one POST per
alert on one kept-alive connection, each waiting for its answer (Falco's one output
thread); the file input one O_APPEND write per alert (Falco's file_output). Reported: the
exporter's events per CPU-second for each, the latency from Falco's side (a POST's round
trip; a write until the alert is counted on /metrics), and what one write costs the writer
(Falco's side of the file input: it never waits on the exporter).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bench.http_input import EVENT, REPO, Server, _log_line, _sequential_posts, _stop, counted
from bench.run import cpu_seconds


@asynccontextmanager
async def exporter(*args: str) -> AsyncIterator[Server]:
    """An exporter of this checkout with the given input flags."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "--listen-address", "127.0.0.1:0",
        "--probes-listen-address", "127.0.0.1:0", "--log-format", "json", *args,
        stdout=asyncio.subprocess.PIPE, cwd=REPO,
    )  # fmt: skip
    try:
        serving = await _log_line(process, "serving HTTP")
        port = serving.get("http_input_port", 0)
        yield Server("exporter", process, port, serving["metrics_port"])
    finally:
        await _stop(process)


async def until_counted(server: Server, total: int, every: float = 0.2) -> None:
    """Poll /metrics until sum(falco_events) reaches `total`. Each scrape of the file
    input also commits its checkpoint (an fsync), so the burst is polled seldom."""
    while (await counted(server) or 0) < total:
        await asyncio.sleep(every)


def quantiles_ms(times: list[float]) -> tuple[float, float]:
    """p50 and p99, in ms."""
    cut = statistics.quantiles(times, n=100)
    return cut[49] * 1000, cut[98] * 1000


async def http_input(events: int) -> tuple[float, float, float]:
    """Events per CPU-second, and round trip p50/p99 (ms), posting one at a time."""
    async with exporter("--http-input-address", "127.0.0.1:0") as server:
        cpu = cpu_seconds(server.process.pid)
        times = await asyncio.to_thread(_sequential_posts, server.port, events)
        await until_counted(server, events)
        used = cpu_seconds(server.process.pid) - cpu
    return events / used, *quantiles_ms(times)


async def file_input(events: int, samples: int, folder: Path) -> tuple[float, ...]:
    """Events per CPU-second for a burst of writes; write-to-counted p50/p99 (ms) for
    single writes; and the writer's cost of one write (µs, p50/p99)."""
    path = folder / "events.json"
    line = EVENT + b"\n"
    async with exporter("--file-input", str(path)) as server:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            cpu = cpu_seconds(server.process.pid)
            writes = []
            for _ in range(events):
                started = time.perf_counter()
                os.write(descriptor, line)
                writes.append(time.perf_counter() - started)
            await until_counted(server, events)
            used = cpu_seconds(server.process.pid) - cpu
            latencies = []
            for number in range(samples):
                started = time.perf_counter()
                os.write(descriptor, line)
                await until_counted(server, events + number + 1, every=0.005)
                latencies.append(time.perf_counter() - started)
        finally:
            os.close(descriptor)
    write_p50, write_p99 = (value * 1000 for value in quantiles_ms(writes))
    return events / used, *quantiles_ms(latencies), write_p50, write_p99


async def run(events: int, samples: int) -> str:
    """Both inputs, one after the other; the table docs/performance.md quotes."""
    http_rate, http_p50, http_p99 = await http_input(events)
    with tempfile.TemporaryDirectory() as folder:
        file_rate, file_p50, file_p99, write_p50, write_p99 = await file_input(
            events, samples, Path(folder)
        )
    return "\n".join(
        [
            "| input | events per exporter CPU-second | latency p50 | latency p99 |",
            "|---|---|---|---|",
            f"| HTTP (one POST at a time) | {http_rate:,.0f} | {http_p50:.2f} ms round trip "
            f"| {http_p99:.2f} ms |",
            f"| file (one write per alert) | {file_rate:,.0f} | {file_p50:.1f} ms write to "
            f"counted | {file_p99:.1f} ms |",
            "",
            f"One O_APPEND write of a {len(EVENT) + 1}-byte alert: {write_p50:.1f} µs p50, "
            f"{write_p99:.1f} µs p99 (from Python; Falco's C++ write is the same system call).",
        ]
    )


def main() -> None:
    """Run and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--latency-samples", type=int, default=200)
    options = parser.parse_args()
    print(asyncio.run(run(options.events, options.latency_samples)))


if __name__ == "__main__":
    main()
