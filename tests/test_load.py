"""Load: a backlog read through with bounded memory, and a soak with faults that stops itself."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from exporter.simulator.certs import CertPaths
from exporter.simulator.server import SimulatedFalco
from tests.support import (
    MakeExporter,
    client_flags,
    counted,
    eventually,
    fetch,
    response,
    total_events,
)
from tests.support.faults import FaultProxy

pytestmark = pytest.mark.slow

BACKLOG = int(os.environ.get("BACKLOG_EVENTS", "200000"))
SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "20"))
# Prometheus' default scrape timeout: a scrape during a burst must answer inside it.
SCRAPE_TIMEOUT = 10.0
# The exporter's resident memory while reading a backlog of any size (it reads at gRPC's
# flow-controlled pace and keeps no events): measured about 60 MiB.
RSS_BOUND_MIB = 150


def rss_mib(pid: int) -> float:
    """Resident memory of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_backlog_is_read_with_bounded_memory_and_scrapes_answer(
    falco: SimulatedFalco, certs: CertPaths
) -> None:
    """A backlog queued at once: counted exactly, memory bounded, every scrape in time."""
    payload = response(fields={"k8s.pod.name": "burst", "k8s.ns.name": "load"})
    falco.publish_raw([payload.SerializeToString()] * BACKLOG)
    flags = [
        f"--{key.replace('_', '-')}={value}"
        for key, value in client_flags(certs, falco.address).items()
    ]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "exporter",
        *flags,
        "--listen-address",
        "127.0.0.1:0",
        "--probes-listen-address",
        "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        serving: dict[str, Any] = {}
        async with asyncio.timeout(30):
            while serving.get("event") != "serving HTTP":
                serving = json.loads(await process.stdout.readline())
        drain = asyncio.create_task(process.stdout.read())
        port = serving["metrics_port"]
        slowest, peak, total = 0.0, 0.0, 0.0
        async with asyncio.timeout(300):
            while total < BACKLOG:
                start = time.monotonic()
                total = await total_events(port)
                slowest = max(slowest, time.monotonic() - start)
                peak = max(peak, rss_mib(process.pid))
        assert total == BACKLOG == falco.delivered
        assert slowest < SCRAPE_TIMEOUT
        assert peak < RSS_BOUND_MIB
    finally:
        process.terminate()
        await process.wait()
        drain.cancel()


def exporter_tasks() -> list[str]:
    """The asyncio tasks running the exporter's own code (not the simulator's or the test's)."""
    names = []
    for task in asyncio.all_tasks():
        frame = getattr(task.get_coro(), "cr_frame", None)
        module = frame.f_globals.get("__name__", "") if frame is not None else ""
        if module.startswith("exporter.") and not module.startswith("exporter.simulator"):
            names.append(getattr(task.get_coro(), "__qualname__", "?"))
    return sorted(names)


def open_files() -> int:
    """File descriptors of this process."""
    return len(os.listdir("/proc/self/fd"))


async def test_soak_with_cuts_and_scrapes_stays_exact_and_flat(
    falco: SimulatedFalco, proxy: FaultProxy, certs: CertPaths, make_exporter: MakeExporter
) -> None:
    """Steady events, a reset every 2 s, scrapes throughout: exact, no growth of resources."""
    exporter = await make_exporter(**client_flags(certs, f"127.0.0.1:{proxy.port}"))
    port = exporter.main_http.port

    async def cut_while_quiet() -> None:
        falco.hold()
        await counted(port, lambda: falco.delivered, message="everything delivered is counted")
        before = proxy.connections
        proxy.cut()
        falco.forget_connections()
        falco.release()
        await eventually(lambda: proxy.connections > before, message="reconnected")

    falco.publish(response() for _ in range(100))
    await cut_while_quiet()  # warm up every code path before taking the baseline
    gc.collect()
    baseline = (
        exporter_tasks(),
        threading.active_count(),
        open_files(),
        rss_mib(os.getpid()),
    )
    loop = asyncio.get_running_loop()
    end, next_cut = loop.time() + SOAK_SECONDS, loop.time() + 2
    while loop.time() < end:
        falco.publish(response(fields={"k8s.pod.name": f"pod-{n % 50}"}) for n in range(50))
        status, _, _ = await fetch(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        if loop.time() >= next_cut:
            await cut_while_quiet()
            next_cut = loop.time() + 2
        await asyncio.sleep(0.05)  # the event source's pace, not a wait for a condition
    await eventually(lambda: falco.queued == 0, message="queue drained")
    await counted(port, lambda: falco.delivered, message="every delivered event counted once")
    assert proxy.connections >= SOAK_SECONDS // 2
    gc.collect()
    tasks, threads, files, memory = (
        exporter_tasks(),
        threading.active_count(),
        open_files(),
        rss_mib(os.getpid()),
    )
    assert tasks == baseline[0]
    # Pools (asyncio's executor, gRPC's) may grow by a thread or two; a leak would add
    # one for every one of the cuts.
    assert threads <= baseline[1] + 2
    assert files <= baseline[2] + 4
    assert memory - baseline[3] < 30  # MiB, over the whole soak
