"""Resident memory of the exporter in each mode: idle, and holding 100k series.

  python -m bench.memory [--series 100000]

The figures docs/performance.md gives and the manifests' memory requests come from.
Each mode runs as its own process on the event loop it would choose (uvloop when
installed), and the HTTP-only mode also on asyncio's loop:
- idle: started, one event counted, one scrape answered, then measured, and its CPU over
  20 s of nothing (timers; with gRPC, the poll of Falco's queue every 50 ms);
- at N series: N events, each from a pod never seen before, with --max-series 0, then
  one scrape (the largest allocation a scrape makes is part of the peak), then measured.
RSS is VmRSS; the peak (VmHWM) is shown beside it, since a limit must hold the peak.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.run import Server, cpu_seconds, falco_server, rss_mib
from exporter.simulator.certs import write_cert_set

REPO = Path(__file__).resolve().parent.parent
EVENT = json.loads(
    (REPO / "exporter/simulator/data/sample-events.jsonl").read_text().split("\n")[0]
)
_BATCH = 1000  # events per NDJSON POST while filling series
_IDLE_SECONDS = 20.0  # how long idle CPU is measured


@dataclass
class Figures:
    """One mode's measurements."""

    idle_rss: float
    idle_millicores: float
    full_rss: float
    peak: float


async def idle_millicores(pid: int) -> float:
    """CPU used while nothing happens (timers, gRPC polls), in thousandths of a core."""
    before = cpu_seconds(pid)
    await asyncio.sleep(_IDLE_SECONDS)
    return (cpu_seconds(pid) - before) / _IDLE_SECONDS * 1000


@dataclass
class Running:
    """An exporter process and its ports."""

    process: asyncio.subprocess.Process
    metrics_port: int
    input_port: int | None
    probes_port: int = 0


def peak_mib(pid: int) -> float:
    """The process' peak resident memory (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


@asynccontextmanager
async def exporter(*flags: str, wait_for: str) -> AsyncIterator[Running]:
    """The exporter with `flags`, once it logged `wait_for`."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "--listen-address", "127.0.0.1:0",
        "--probes-listen-address", "127.0.0.1:0", "--log-format", "json", "--max-series", "0",
        *flags, stdout=asyncio.subprocess.PIPE, cwd=REPO,
    )  # fmt: skip
    assert process.stdout is not None
    ports: dict[str, int] = {}
    while True:
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        if not line:
            raise RuntimeError("the exporter exited before it was ready")
        record = json.loads(line)
        if record["event"] == "serving HTTP":
            ports = {
                "metrics": record["metrics_port"],
                "input": record.get("http_input_port"),
                "probes": record["probes_port"],
            }
        if record["event"] == wait_for:
            break
    drain = asyncio.create_task(process.stdout.read())
    try:
        yield Running(process, ports["metrics"], ports["input"], ports["probes"])
    finally:
        process.terminate()
        await process.wait()
        drain.cancel()


async def request(port: int, head: bytes, body: bytes = b"") -> bytes:
    """One request on a new connection; the answer's body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head % len(body) + body)
    data = await reader.read()
    writer.close()
    return data.partition(b"\r\n\r\n")[2]


async def received(running: Running) -> int:
    """sum(falco_exporter_events_received_total), from a scrape as Prometheus asks (gzip)."""
    body = await request(
        running.metrics_port,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Accept-Encoding: gzip\r\nContent-Length: %d\r\n\r\n",
    )
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in gzip.decompress(body).decode().splitlines()
        if line.startswith("falco_exporter_events_received_total{")
    )


async def post_pods(port: int, first: int, count: int) -> None:
    """`count` events, each from a new pod, as NDJSON bodies of _BATCH events."""
    for start in range(first, first + count, _BATCH):
        lines = []
        for number in range(start, min(start + _BATCH, first + count)):
            fields = {**EVENT["output_fields"], "k8s.pod.name": f"pod-{number}"}
            lines.append(json.dumps({**EVENT, "output_fields": fields}))
        await request(
            port,
            b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/x-ndjson\r\nContent-Length: %d\r\n\r\n",
            "\n".join(lines).encode(),
        )


async def until_received(running: Running, total: int) -> None:
    """Poll /metrics until `total` events were received (10 minutes at most)."""
    deadline = time.monotonic() + 600
    while await received(running) < total:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {total} events arrived")
        await asyncio.sleep(2)  # each scrape renders every series: not too often


async def http_only(series: int, *flags: str) -> Figures:
    """(idle RSS, RSS at `series` series, its peak) of the HTTP-only mode."""
    async with exporter(
        "--http-input-address", "127.0.0.1:0", *flags, wait_for="serving HTTP"
    ) as running:
        assert running.input_port is not None
        await post_pods(running.input_port, 0, 1)
        await until_received(running, 1)
        idle = rss_mib(running.process.pid)
        idle_cpu = await idle_millicores(running.process.pid)
        await post_pods(running.input_port, 1, series - 1)
        await until_received(running, series)
        pid = running.process.pid
        return Figures(idle, idle_cpu, rss_mib(pid), peak_mib(pid))


async def grpc_mode(server: Server, flags: tuple[str, ...], series: int) -> Figures:
    """(idle RSS, RSS at `series` series, its peak) reading `server` over gRPC."""
    async with exporter(*flags, wait_for="connected to Falco") as running:
        await server.command("churn 1")
        await until_received(running, 1)
        idle = rss_mib(running.process.pid)
        idle_cpu = await idle_millicores(running.process.pid)
        await server.command(f"churn {series - 1}")
        await until_received(running, series)
        pid = running.process.pid
        return Figures(idle, idle_cpu, rss_mib(pid), peak_mib(pid))


async def main() -> None:
    """Every mode; one Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=100_000)
    series = parser.parse_args().series
    rows: list[tuple[str, Figures]] = []
    with tempfile.TemporaryDirectory() as tmp:
        certs = Path(tmp)
        write_cert_set(certs)
        client = (
            "--client-hostname", "localhost", "--client-cert", str(certs / "client.crt"),
            "--client-key", str(certs / "client.key"), "--client-ca", str(certs / "ca.crt"),
        )  # fmt: skip
        rows.append(("HTTP input only (sidecar, central)", await http_only(series)))
        rows.append(
            (
                "HTTP input only, --event-loop asyncio",
                await http_only(series, "--event-loop", "asyncio"),
            )
        )
        async with falco_server(certs) as server:
            flags = (*client, "--client-port", server.port)
            rows.append(("gRPC, mutual TLS (one Falco)", await grpc_mode(server, flags, series)))
        socket_path = str(certs / "falco.sock")
        async with falco_server(certs, socket_path) as server:
            socket_flags = ("--client-socket", f"unix://{socket_path}")
            rows.append(
                ("gRPC, unix socket (DaemonSet)", await grpc_mode(server, socket_flags, series))
            )
    print(
        f"# Resident memory by mode\n\n{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}\n"
    )
    print(
        f"| mode | idle RSS MiB | idle CPU millicores | RSS at {series:,} series MiB | peak MiB |"
        "\n|---|---:|---:|---:|---:|"
    )
    for mode, f in rows:
        print(
            f"| {mode} | {f.idle_rss:.1f} | {f.idle_millicores:.1f} | {f.full_rss:.0f} | "
            f"{f.peak:.0f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
