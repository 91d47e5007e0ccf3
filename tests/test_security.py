"""Security: who may scrape or post, what reaches a label, what is logged, what is written."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from exporter.cli import main
from exporter.simulator.certs import CertificateAuthority, CertPaths, write_cert_set
from exporter.simulator.server import SimulatedFalco
from tests.support import (
    ExporterFor,
    LogLines,
    MakeExporter,
    client_flags,
    counted,
    eventually,
    expired,
    fetch,
    response,
    scrape,
    serving_flags,
    total_events,
)


def client_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """A scraper's or sender's TLS settings."""
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


@pytest.fixture
def strangers(tmp_path: Path, test_ca: CertificateAuthority) -> dict[str, tuple[Path, Path]]:
    """Client certificates that must be refused: another CA's, and an expired one of ours."""
    other = write_cert_set(tmp_path / "other")
    expired_pair = expired(test_ca, "expired", server=False)
    (tmp_path / "expired.crt").write_bytes(expired_pair.cert_pem)
    (tmp_path / "expired.key").write_bytes(expired_pair.key_pem)
    return {
        "another CA": (other.client_cert, other.client_key),
        "expired": (tmp_path / "expired.crt", tmp_path / "expired.key"),
    }


async def get_status(url: str, context: ssl.SSLContext) -> int:
    """GET over TLS; the status, or -1 when the handshake was refused."""
    try:
        return (await fetch(url, context))[0]
    except aiohttp.ClientError:
        return -1


async def test_metrics_refuses_scrapers_without_a_valid_certificate(
    certs: CertPaths, strangers: dict[str, tuple[Path, Path]], make_exporter: MakeExporter
) -> None:
    """No certificate, another CA's, or an expired one: refused. The right one: served."""
    exporter = await make_exporter(
        client_socket="unix:///nonexistent/falco.sock",
        **serving_flags(certs),
    )
    url = f"https://localhost:{exporter.main_http.port}/metrics"
    assert (
        await get_status(url, client_context(certs.ca, certs.client_cert, certs.client_key)) == 200
    )
    assert await get_status(url, client_context(certs.ca)) == -1
    for name, (cert, key) in strangers.items():
        assert await get_status(url, client_context(certs.ca, cert, key)) == -1, name
    # The probes port stays plain HTTP for the kubelet.
    assert (await fetch(f"http://127.0.0.1:{exporter.probes_http.port}/liveness"))[0] == 200


async def test_http_input_refuses_senders_without_a_valid_certificate(
    certs: CertPaths, strangers: dict[str, tuple[Path, Path]], make_exporter: MakeExporter
) -> None:
    """The ingest endpoint with mutual TLS: only Falco's certificate may post."""
    contexts = {"no certificate": client_context(certs.ca)} | {
        name: client_context(certs.ca, cert, key) for name, (cert, key) in strangers.items()
    }
    exporter = await make_exporter(
        http_input_address="127.0.0.1:0",
        **serving_flags(certs, "http_input"),
    )
    url = f"https://localhost:{exporter.ports['http_input']}/"
    body = json.dumps({"rule": "r", "priority": "Notice"})
    for name, context in contexts.items():
        with pytest.raises(aiohttp.ClientError):
            async with (
                aiohttp.ClientSession() as session,
                session.post(url, data=body, ssl=context),
            ):
                pass
        assert await total_events(exporter.main_http.port) == 0, name
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url, data=body, ssl=client_context(certs.ca, certs.client_cert, certs.client_key)
        ) as answer,
    ):
        assert answer.status == 200


async def test_alert_text_and_unconfigured_fields_never_reach_metrics(
    falco: SimulatedFalco, exporter_for: ExporterFor
) -> None:
    """Secrets in `output` or in fields nobody configured as labels stay out of /metrics."""
    message = response(
        fields={
            "proc.cmdline": "mysql --password=hunter2-secret",
            "fd.name": "/etc/shadow-secret",
            "k8s.pod.name": "db-0",
        }
    )
    message.output = "token=s3cr3t-output-value in the alert text"
    falco.publish([message])
    exporter = await exporter_for(falco)

    await counted(exporter, 1, message="the event counted")
    _, body, _ = await fetch(f"http://127.0.0.1:{exporter.main_http.port}/metrics")
    for secret in ("hunter2", "shadow-secret", "s3cr3t"):
        assert secret not in body
    assert 'k8s_pod_name="db-0"' in body


async def test_keys_and_certificates_are_never_logged(
    falco: SimulatedFalco, certs: CertPaths, make_exporter: MakeExporter, logs: LogLines
) -> None:
    """Debug logs of a TLS-everywhere exporter hold paths at most, never PEM contents."""
    exporter = await make_exporter(
        **client_flags(certs, falco.address),
        log_level="debug",
        **serving_flags(certs),
        certificate_check_interval="100ms",
    )
    falco.publish([response()])
    context = client_context(certs.ca, certs.client_cert, certs.client_key)

    async def served_over_tls() -> bool:
        _, body, _ = await fetch(f"https://localhost:{exporter.main_http.port}/metrics", context)
        return "\nfalco_events{" in body

    await eventually(served_over_tls, message="counted over TLS")
    text = "\n".join(json.dumps(record) for record in logs.records())
    assert "starting" in text or "connected to Falco" in text
    for path in (certs.client_key, certs.server_key, certs.client_cert, certs.ca):
        body = path.read_text().splitlines()[1]  # a line of the base64 body
        assert body not in text, path.name
    assert "PRIVATE KEY" not in text
    assert "BEGIN CERTIFICATE" not in text


def test_generated_keys_are_readable_by_their_owner_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every private key the project writes is 0600 from its first byte."""
    assert main(["certs", "--out", str(tmp_path / "certs"), "--falco-name", "falco"]) == 0
    capsys.readouterr()
    write_cert_set(tmp_path / "sim")
    keys = sorted(tmp_path.rglob("*.key"))
    # certs: ca, server, client, http-input, falco-client; simulator: server, client
    assert len(keys) == 7
    for key in keys:
        assert key.stat().st_mode & 0o777 == 0o600, key


@pytest.fixture
def read_only_home() -> Iterator[Path]:
    """A folder nobody but root can write, usable as HOME and working directory."""
    folder = Path(tempfile.mkdtemp(prefix="falco-exporter-ro-"))
    folder.chmod(0o555)
    yield folder
    folder.chmod(0o755)
    shutil.rmtree(folder)


async def test_runs_as_non_root_without_writing_anywhere(
    falco: SimulatedFalco,
    certs: CertPaths,
    read_only_home: Path,
    installed_as_in_the_image: Path,
) -> None:
    """As uid 65532 with a read-only HOME and working directory: connects, counts, stops."""
    secrets = Path(tempfile.mkdtemp(prefix="falco-exporter-certs-"))
    try:
        secrets.chmod(0o755)
        for path in (certs.ca, certs.client_cert, certs.client_key):
            shutil.copy(path, secrets / path.name)
            os.chown(secrets / path.name, 65532, 65532)
        port = falco.address.rsplit(":", 1)[1]
        process = await asyncio.create_subprocess_exec(
            "setpriv",
            "--reuid=65532",
            "--regid=65532",
            "--clear-groups",
            str(installed_as_in_the_image),
            "--client-hostname",
            f"localhost:{port}",
            "--client-cert",
            str(secrets / "client.crt"),
            "--client-key",
            str(secrets / "client.key"),
            "--client-ca",
            str(secrets / "ca.crt"),
            "--listen-address",
            "127.0.0.1:0",
            "--probes-listen-address",
            "127.0.0.1:0",
            cwd=read_only_home,
            stdout=asyncio.subprocess.PIPE,
            env={"HOME": str(read_only_home), "PATH": "/usr/bin:/bin"},
        )
        assert process.stdout is not None
        port_line: dict[str, Any] = {}
        async with asyncio.timeout(30):
            while "metrics_port" not in port_line:
                port_line = json.loads(await process.stdout.readline())
        falco.publish(response() for _ in range(5))
        metrics = port_line["metrics_port"]

        await counted(metrics, 5, message="counted as a non-root user")
        assert (await scrape(metrics, "falco_exporter_connected")) != {}
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(5):
            assert await process.wait() == 0
        assert list(read_only_home.iterdir()) == []
    finally:
        shutil.rmtree(secrets)
