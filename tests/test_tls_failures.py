"""Certificate problems: a clear log line naming the cause, a metric, retries, no crash."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from exporter.simulator.certs import (
    CertificateAuthority,
    CertPaths,
    write_cert_set,
    write_private,
    write_public,
)
from exporter.simulator.server import ServerTls, SimulatedFalco
from tests.support import (
    LogLines,
    MakeExporter,
    client_flags,
    counted,
    eventually,
    expired,
    fetch,
    response,
    scrape,
    tls_of,
)


async def failure_detail(logs: LogLines, port: int, text: str) -> None:
    """Wait for a 'cannot connect' log line whose detail contains `text`, twice (retrying)."""

    def logged_twice() -> bool:
        lines = logs.matching("cannot connect to Falco")
        return sum(text in line["detail"] for line in lines) >= 2

    await eventually(logged_twice, message=f"two failures logged with {text!r}")
    errors = await scrape(port, "falco_exporter_connection_errors")
    assert sum(errors.values()) >= 2
    status, _, _ = await fetch(f"http://127.0.0.1:{port}/readyz")
    assert status == 503


@pytest.fixture
def other_certs(tmp_path: Path) -> CertPaths:
    """A second, unrelated CA and its certificates."""
    return write_cert_set(tmp_path / "other")


@pytest.mark.parametrize(
    ("swapped", "hint"),
    [
        # --client-ca that did not sign Falco's certificate is named as the cause.
        ({"client_ca": "ca"}, "not signed by the CA in --client-ca"),
        # Our certificate from another CA: Falco hangs up, and the hint says why.
        (
            {"client_cert": "client_cert", "client_key": "client_key"},
            "rejecting our client certificate",
        ),
    ],
)
async def test_certificates_from_another_ca(
    falco: SimulatedFalco,
    certs: CertPaths,
    other_certs: CertPaths,
    make_exporter: MakeExporter,
    logs: LogLines,
    swapped: dict[str, str],
    hint: str,
) -> None:
    """A file from another CA on either side: the log line names which one to fix."""
    flags = client_flags(certs, falco.address) | {
        flag: str(getattr(other_certs, field)) for flag, field in swapped.items()
    }
    exporter = await make_exporter(**flags)
    await failure_detail(logs, exporter.main_http.port, hint)
    # ... and the files in use, so that the reader knows which one that is.
    await failure_detail(logs, exporter.main_http.port, f"CA {flags['client_ca']}")


async def test_expired_client_certificate(
    falco: SimulatedFalco,
    certs: CertPaths,
    test_ca: CertificateAuthority,
    tmp_path: Path,
    make_exporter: MakeExporter,
    logs: LogLines,
) -> None:
    """Our certificate expires while running (here: rotated to an expired one): Falco hangs
    up, and the hint names ours. At start-up an expired one is refused outright (test_config).
    """
    cert, key = tmp_path / "client.crt", tmp_path / "client.key"
    write_public(cert, certs.client_cert.read_bytes())
    write_private(key, certs.client_key.read_bytes())
    flags = client_flags(certs, falco.address) | {
        "client_cert": str(cert),
        "client_key": str(key),
        "certificate_check_interval": "100ms",
    }
    exporter = await make_exporter(**flags)
    # Running means connected: the certificate watch has read the files it rotates from.
    await eventually(lambda: bool(logs.matching("connected to Falco")), message="connected")
    expired_pair = expired(test_ca, "exporter", server=False)
    write_public(cert, expired_pair.cert_pem)
    write_private(key, expired_pair.key_pem)
    await failure_detail(logs, exporter.main_http.port, "rejecting our client certificate")


async def test_expired_falco_certificate(
    tmp_path: Path, test_ca: CertificateAuthority, make_exporter: MakeExporter, logs: LogLines
) -> None:
    """An expired server certificate is reported as expired."""
    expired_pair = expired(test_ca, "localhost", server=True)
    paths = write_cert_set(tmp_path, test_ca, server=expired_pair)
    falco = SimulatedFalco()
    await falco.start("127.0.0.1:0", tls_of(paths))
    try:
        exporter = await make_exporter(**client_flags(paths, falco.address))
        await failure_detail(logs, exporter.main_http.port, "expired")
    finally:
        await falco.stop()


async def test_missing_client_certificate_file_is_named_and_retried(
    tmp_path: Path, certs: CertPaths, make_exporter: MakeExporter, logs: LogLines
) -> None:
    """A client certificate that disappears is named in the log; once back, it connects."""
    local = tmp_path / "client"
    local.mkdir()
    cert = local / "client.crt"
    shutil.copy(certs.client_cert, cert)
    falco = SimulatedFalco()
    address = await falco.start("127.0.0.1:0", tls_of(certs))
    await falco.stop()
    exporter = await make_exporter(**client_flags(certs, address) | {"client_cert": str(cert)})
    cert.unlink()

    def file_named() -> bool:
        return any(
            str(cert) in line["detail"] and line["reason"] == "certificate_files"
            for line in logs.matching("cannot connect to Falco")
        )

    await eventually(file_named, message="log line naming the missing certificate file")
    shutil.copy(certs.client_cert, cert)
    await falco.start(address, ServerTls(certs.server_cert, certs.server_key, certs.ca))
    try:
        falco.publish([response()])

        await counted(exporter, 1, message="counted after the file came back")
    finally:
        await falco.stop()


async def test_tls_server_name_reaches_falco_by_another_name(
    certs: CertPaths, make_exporter: MakeExporter, logs: LogLines
) -> None:
    """Dialled by an address not in Falco's certificate: refused, unless told the name."""
    falco = SimulatedFalco()
    await falco.start("127.0.0.2:0", tls_of(certs))  # the certificate names 127.0.0.1 only
    try:
        flags = client_flags(certs, falco.address)
        assert flags["client_hostname"] == "127.0.0.2"
        refused = await make_exporter(**flags)
        await failure_detail(logs, refused.main_http.port, "--client-tls-server-name")

        accepted = await make_exporter(**flags | {"client_tls_server_name": "localhost"})
        falco.publish([response()])

        await counted(accepted, 1, message="counted through 127.0.0.2 verified as localhost")
    finally:
        await falco.stop()
