"""DNS discovery through the real resolver path, with records the test changes.

The exporter runs as a process in a mount namespace of its own, where the test's
hosts file is mounted over /etc/hosts (and an empty resolv.conf over
/etc/resolv.conf, so a name missing from the file fails at once). The exporter
resolves with getaddrinfo like any program: the records it sees are the file's.
Needs root and unshare(1); skipped without them unless REQUIRE_NAMESPACES is set.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from exporter.simulator.certs import CertPaths
from exporter.simulator.server import SimulatedFalco
from tests.support import REPO, counted, eventually, fetch, response, scrape, tls_of
from tests.support.fake_dns import FakeDns

NAME = "falco-grpc.cluster.test"


def namespaces_work() -> bool:
    """True when this process may create a mount namespace and bind-mount in it."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "sh", "-c", "mount --bind /etc/hostname /etc/hostname"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return probe.returncode == 0


if not namespaces_work():
    if os.environ.get("REQUIRE_NAMESPACES"):
        raise RuntimeError("REQUIRE_NAMESPACES is set but mount namespaces are not available")
    pytest.skip("needs root and unshare for a private /etc/hosts", allow_module_level=True)


class ExporterProcess:
    """The exporter in its own mount namespace; its JSON log lines are collected."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.records: list[dict[str, Any]] = []
        self.metrics_port = 0
        self.probes_port = 0

    async def collect(self) -> None:
        """Read log lines until the process ends."""
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            record = json.loads(line)
            self.records.append(record)
            if record["event"] == "serving HTTP":
                self.metrics_port = record["metrics_port"]
                self.probes_port = record["probes_port"]

    def logged(self, event: str) -> list[dict[str, Any]]:
        """Records whose message is `event`."""
        return [r for r in self.records if r["event"] == event]


@asynccontextmanager
async def exporter_with_hosts(
    hosts: Path, certs: CertPaths, port: int, tmp_path: Path, nameserver: str = ""
) -> AsyncIterator[ExporterProcess]:
    """Start the exporter resolving through `hosts` (then `nameserver`); stop it after."""
    resolv = tmp_path / "resolv.conf"
    server_line = f"nameserver {nameserver}\n" if nameserver else ""
    resolv.write_text(f"{server_line}options attempts:1 timeout:1\n")
    command = (
        f"mount --bind {hosts} /etc/hosts && mount --bind {resolv} /etc/resolv.conf && "
        f"exec {sys.executable} -m exporter --discover-dns {NAME}:{port} "
        "--discover-interval 100ms --client-tls-server-name localhost "
        f"--client-cert {certs.client_cert} --client-key {certs.client_key} "
        f"--client-ca {certs.ca} --listen-address 127.0.0.1:0 "
        "--probes-listen-address 127.0.0.1:0 --reconnect-backoff-max 200ms --log-format json"
    )
    process = await asyncio.create_subprocess_exec(
        "unshare",
        "--mount",
        "sh",
        "-c",
        command,
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    running = ExporterProcess(process)
    collector = asyncio.create_task(running.collect())
    try:
        await eventually(lambda: running.probes_port != 0, message="exporter serving")
        yield running
    finally:
        process.terminate()
        await process.wait()
        await collector


async def readiness_lines(exporter: ExporterProcess) -> list[str]:
    """The per-target lines of /readiness."""
    _, body, _ = await fetch(f"http://127.0.0.1:{exporter.probes_port}/readiness")
    return sorted(body.splitlines()[1:])


async def test_targets_follow_the_dns_records(certs: CertPaths, tmp_path: Path) -> None:
    """Addresses appear and go as the records change; a failed lookup keeps the last ones."""
    first = SimulatedFalco(hostname="node-2")
    address = await first.start("127.0.0.2:0", tls_of(certs))
    port = int(address.rsplit(":", 1)[1])
    second, third = SimulatedFalco(hostname="node-3"), SimulatedFalco(hostname="node-4")
    await second.start(f"127.0.0.3:{port}", tls_of(certs))
    await third.start(f"127.0.0.4:{port}", tls_of(certs))
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.2 {NAME}\n127.0.0.3 {NAME}\n")
    a, b, c = (f"127.0.0.{n}:{port}" for n in (2, 3, 4))
    try:
        async with exporter_with_hosts(hosts, certs, port, tmp_path) as exporter:

            async def targets_are(*lines: str) -> bool:
                return await readiness_lines(exporter) == sorted(lines)

            await eventually(
                lambda: targets_are(f"{a} connected", f"{b} connected"),
                message="both discovered targets connected",
            )
            first.publish(response() for _ in range(10))
            second.publish(response() for _ in range(10))
            await counted(exporter.metrics_port, 20, message="20 events from two Falcos")

            hosts.write_text(f"127.0.0.3 {NAME}\n127.0.0.4 {NAME}\n")  # same inode: in place
            await eventually(
                lambda: targets_are(f"{b} connected", f"{c} connected"),
                message="127.0.0.2 gone, 127.0.0.4 added",
            )
            [gone] = exporter.logged("target gone; subscription stopped")
            assert gone["target"] == a
            second.publish(response() for _ in range(10))
            third.publish(response() for _ in range(10))
            await counted(
                exporter.metrics_port, 40, message="the departed target's 10 kept, 20 more"
            )

            hosts.write_text("# the name is gone: lookups fail\n")

            async def lookup_failed() -> bool:
                lookups = await scrape(exporter.metrics_port, "falco_exporter_dns_lookups")
                return any(dict(k)["result"] == "failure" and v >= 2 for k, v in lookups.items())

            await eventually(lookup_failed, message="failed lookups counted")
            assert await readiness_lines(exporter) == sorted([f"{b} connected", f"{c} connected"])
            third.publish(response() for _ in range(5))
            await counted(exporter.metrics_port, 45, message="still counting after failed lookups")
            assert exporter.logged("DNS lookup failed; keeping the current targets")
    finally:
        for falco in (first, second, third):
            await falco.stop()


@pytest.mark.slow
async def test_dns_that_misbehaves_keeps_the_targets(certs: CertPaths, tmp_path: Path) -> None:
    """A DNS server that is silent, slow or sends garbage: lookups fail, counting goes on."""
    dns = FakeDns(NAME)
    try:
        await dns.start("127.0.0.1", 53)
    except OSError as error:
        if os.environ.get("REQUIRE_NAMESPACES"):
            raise
        pytest.skip(f"cannot listen on 127.0.0.1:53: {error}")
    first = SimulatedFalco(hostname="node-2")
    address = await first.start("127.0.0.2:0", tls_of(certs))
    port = int(address.rsplit(":", 1)[1])
    second = SimulatedFalco(hostname="node-3")
    await second.start(f"127.0.0.3:{port}", tls_of(certs))
    dns.addresses = ["127.0.0.2", "127.0.0.3"]
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")  # the name is only in the DNS server
    a, b = f"127.0.0.2:{port}", f"127.0.0.3:{port}"
    try:
        async with exporter_with_hosts(hosts, certs, port, tmp_path, "127.0.0.1") as exporter:

            async def targets_are(*lines: str) -> bool:
                return await readiness_lines(exporter) == sorted(lines)

            async def failures() -> float:
                lookups = await scrape(exporter.metrics_port, "falco_exporter_dns_lookups")
                return sum(v for k, v in lookups.items() if dict(k)["result"] == "failure")

            await eventually(
                lambda: targets_are(f"{a} connected", f"{b} connected"),
                message="both targets from DNS",
            )
            sent = 0
            for mode in ("silent", "garbage", "slow"):
                dns.mode = mode
                before = await failures()

                async def failed_twice(floor: float = before) -> bool:
                    return await failures() >= floor + 2

                await eventually(failed_twice, timeout=30, message=f"lookups fail ({mode})")
                assert await readiness_lines(exporter) == sorted(
                    [f"{a} connected", f"{b} connected"]
                )
                first.publish(response() for _ in range(5))
                sent += 5
                await counted(exporter.metrics_port, sent, message=f"still counting ({mode})")
            dns.mode = "answer"
            dns.addresses = ["127.0.0.3"]
            await eventually(
                lambda: targets_are(f"{b} connected"),
                timeout=30,
                message="a good answer applies again",
            )
    finally:
        dns.stop()
        for falco in (first, second):
            await falco.stop()
