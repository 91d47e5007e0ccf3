"""Several Falcos from one exporter: static targets, readiness policy, certificate rotation."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from exporter.inputs.grpc.input import GrpcInput
from exporter.runtime.file_watch import fingerprint, watch_files
from exporter.runtime.tasks import cancel_and_wait
from exporter.simulator.certs import CertificateAuthority, CertPaths, write_cert_set
from exporter.simulator.server import ServerTls, SimulatedFalco
from tests.support import (
    Falcos,
    LogLines,
    MakeExporter,
    counted,
    eventually,
    fetch,
    input_of,
    response,
    scrape,
    sum_by,
    tls_of,
)


@pytest.fixture
async def falcos(certs: CertPaths) -> AsyncIterator[Falcos]:
    """Start simulated Falcos on demand, each with its own hostname; stop them all after."""
    started: list[SimulatedFalco] = []

    async def start(count: int, prefix: str = "node") -> list[SimulatedFalco]:
        batch = [SimulatedFalco(hostname=f"{prefix}-{n}") for n in range(count)]
        for falco in batch:
            await falco.start("127.0.0.1:0", tls_of(certs))
        started.extend(batch)
        return batch

    yield start
    for falco in started:
        await falco.stop()


def tcp_flags(certs: CertPaths, **extra: object) -> dict[str, object]:
    """Client certificate flags, plus whatever names the targets."""
    return {
        "client_cert": str(certs.client_cert),
        "client_key": str(certs.client_key),
        "client_ca": str(certs.ca),
        **extra,
    }


def localhost(falco: SimulatedFalco) -> str:
    """The target name of a simulated Falco, as localhost:port (the certificate's name)."""
    return f"localhost:{falco.address.rsplit(':', 1)[1]}"


async def test_three_static_targets_count_every_falco(
    certs: CertPaths, falcos: Falcos, make_exporter: MakeExporter
) -> None:
    """One exporter, three Falcos: every event of each, labelled with its Falco's hostname."""
    three = await falcos(3)
    for n, falco in enumerate(three):
        falco.publish(response() for _ in range(10 * (n + 1)))
    exporter = await make_exporter(
        **tcp_flags(
            certs,
            client_hostname=[localhost(three[0]), localhost(three[1])],
            targets=[localhost(three[2])],
        )
    )
    port = exporter.main_http.port

    async def all_counted() -> bool:
        return await sum_by(port, "hostname") == {"node-0": 10.0, "node-1": 20.0, "node-2": 30.0}

    await eventually(all_counted, message="10, 20 and 30 events by hostname")
    received = await scrape(port, "falco_exporter_events_received")
    assert sorted(dict(key)["target"] for key in received) == sorted(map(localhost, three))


async def test_a_target_named_twice_is_subscribed_once(
    certs: CertPaths, falcos: Falcos, make_exporter: MakeExporter
) -> None:
    """The same address given twice (in any case, by flag and by list) is one subscription."""
    [falco] = await falcos(1)
    name = localhost(falco)
    exporter = await make_exporter(
        **tcp_flags(
            certs,
            client_hostname=[name, name.upper()],
            targets=[name],
        )
    )
    assert input_of(exporter, GrpcInput).target_names() == {name}
    falco.publish(response() for _ in range(5))

    await counted(exporter, 5, message="five events, counted once")
    _, body, _ = await fetch(f"http://127.0.0.1:{exporter.probes_http.port}/readiness")
    assert body.splitlines()[1:] == [f"{name} connected"]


@pytest.mark.parametrize(("policy", "expected"), [("any", 200), ("all", 503)])
async def test_readiness_policy(
    certs: CertPaths, falcos: Falcos, make_exporter: MakeExporter, policy: str, expected: int
) -> None:
    """One of two targets down: ready with --ready-when any, not with all; the body says which."""
    [up, down] = await falcos(2)
    await down.stop()
    exporter = await make_exporter(
        **tcp_flags(
            certs,
            client_hostname=[localhost(up), localhost(down)],
            ready_when=policy,
        )
    )
    url = f"http://127.0.0.1:{exporter.probes_http.port}/readiness"

    async def one_connected() -> bool:
        return "1/2 Falco targets connected" in (await fetch(url))[1]

    await eventually(one_connected, message="one of two connected")
    status, body, _ = await fetch(url)
    assert status == expected
    assert f"{localhost(up)} connected" in body
    assert f"{localhost(down)} disconnected" in body


async def test_fifty_targets_every_event_counted(
    certs: CertPaths, falcos: Falcos, make_exporter: MakeExporter
) -> None:
    """Fifty Falcos behind one exporter: 20 events each, all 1,000 counted by hostname."""
    fifty = await falcos(50)
    for falco in fifty:
        falco.publish(response() for _ in range(20))
    exporter = await make_exporter(**tcp_flags(certs, targets=[localhost(f) for f in fifty]))
    port = exporter.main_http.port

    await counted(port, 1000, timeout=60, message="1,000 events from 50 Falcos")
    assert await sum_by(port, "hostname") == {f"node-{n}": 20.0 for n in range(50)}


class SecretVolume:
    """A folder laid out as Kubernetes mounts a Secret: files -> ..data -> ..<timestamp>/."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.generation = 0

    def publish(self, certs: CertPaths) -> None:
        """Write a new timestamped folder and swap ..data to it in one rename."""
        self.generation += 1
        folder = self.root / f"..2026_11_29_{self.generation}"
        folder.mkdir(parents=True)
        for name, source in (
            ("ca.crt", certs.ca),
            ("client.crt", certs.client_cert),
            ("client.key", certs.client_key),
        ):
            (folder / name).write_bytes(source.read_bytes())
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(Path("..data") / name)
        staging = self.root / "..data_tmp"
        staging.symlink_to(folder.name)
        os.replace(staging, self.root / "..data")

    def flags(self) -> dict[str, object]:
        """The exporter's certificate flags, pointing into the volume."""
        return {
            "client_cert": str(self.root / "client.crt"),
            "client_key": str(self.root / "client.key"),
            "client_ca": str(self.root / "ca.crt"),
        }


async def test_rotated_client_certificate_is_used_without_restart(
    certs: CertPaths,
    test_ca: CertificateAuthority,
    tmp_path: Path,
    make_exporter: MakeExporter,
    logs: LogLines,
) -> None:
    """A Secret update (symlink swap) makes the exporter reconnect with the new certificate."""
    volume = SecretVolume(tmp_path / "secret")
    volume.publish(certs)
    falco = SimulatedFalco()
    await falco.start("127.0.0.1:0", tls_of(certs))
    try:
        exporter = await make_exporter(
            **volume.flags(), client_hostname=[localhost(falco)], certificate_check_interval="100ms"
        )
        falco.publish(response() for _ in range(100))
        port = exporter.main_http.port

        await counted(port, 100, message="100 before rotation")
        assert falco.client_names == ["falco-exporter"]

        renewed = write_cert_set(
            tmp_path / "renewed",
            test_ca,
            client=test_ca.issue("falco-exporter-renewed", server=False),
        )
        volume.publish(renewed)
        await eventually(
            lambda: "falco-exporter-renewed" in falco.client_names,
            message="Falco sees the renewed certificate",
        )
        falco.publish(response() for _ in range(100))
        await counted(port, 200, message="200 after rotation")
        assert logs.matching("client certificate files changed; reconnecting every target")
    finally:
        await falco.stop()


async def test_new_ca_and_falco_restart_counts_on(
    certs: CertPaths, tmp_path: Path, make_exporter: MakeExporter
) -> None:
    """New CA everywhere: Falco restarts with it, the exporter's files are swapped; it counts on."""
    volume = SecretVolume(tmp_path / "secret")
    volume.publish(certs)
    falco = SimulatedFalco()
    address = await falco.start("127.0.0.1:0", tls_of(certs))
    try:
        exporter = await make_exporter(
            **volume.flags(), client_hostname=[localhost(falco)], certificate_check_interval="100ms"
        )
        port = exporter.main_http.port
        falco.publish(response() for _ in range(50))

        await counted(port, 50, message="50 with the old CA")
        await falco.stop()
        fresh = write_cert_set(tmp_path / "fresh", CertificateAuthority("rotated CA"))
        await falco.start(address, ServerTls(fresh.server_cert, fresh.server_key, fresh.ca))
        volume.publish(fresh)
        falco.publish(response() for _ in range(50))
        await counted(port, 100, message="100 after the new CA")
        assert input_of(exporter, GrpcInput).target_names() == {localhost(falco)}
    finally:
        await falco.stop()


async def test_a_rotation_before_the_watch_first_looks_is_seen(tmp_path: Path) -> None:
    """The watch compares with the files as the exporter read them, not as it first finds them."""
    path = tmp_path / "client.crt"
    path.write_text("as read at start-up")
    read = fingerprint([path])
    path.write_text("rotated before the watch's first turn")
    changed = asyncio.Event()
    watch = asyncio.create_task(watch_files([path], 0.01, changed.set, since=read))
    try:
        await asyncio.wait_for(changed.wait(), 5)
    finally:
        await cancel_and_wait([watch])
