"""tls_server_config of a web configuration: inline PEM, versions and cipher suites as
clients see them, and a rotated certificate served without a restart."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from exporter.app import Exporter
from exporter.simulator.certs import CertificateAuthority, CertPaths, write_cert_set
from tests.support import MakeExporter, eventually
from tests.support.web_config import bcrypt_hash, curl_any, replace_file, write_pair


def tls_section(certs: CertPaths, extra: str = "") -> str:
    """tls_server_config with the set's server pair, and more keys."""
    return (
        f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n"
        + extra
    )


async def start(
    make_exporter: MakeExporter, tmp_path: Path, text: str, **flags: object
) -> Exporter:
    """An exporter whose main port has this web configuration."""
    path = tmp_path / "web.yml"
    replace_file(path, text)
    return await make_exporter(http_input_address="127.0.0.1:0", web_config_file=str(path), **flags)


async def curl_metrics(exporter: Exporter, certs: CertPaths, *args: str) -> int:
    """curl's exit status fetching /metrics over HTTPS, trusting the test CA."""
    url = f"https://localhost:{exporter.main_http.port}/metrics"
    result = await asyncio.to_thread(
        curl_any, "-o", "/dev/null", "--cacert", str(certs.ca), *args, url
    )
    return result.returncode


async def served_certificate(port: int, ca: Path) -> bytes:
    """The DER certificate the port presents to a new connection."""

    def handshake() -> bytes:
        context = ssl.create_default_context(cafile=str(ca))
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return der

    return await asyncio.to_thread(handshake)


async def test_inline_cert_and_key_serve_tls(
    make_exporter: MakeExporter, tmp_path: Path, certs: CertPaths
) -> None:
    """`cert` and `key` given as PEM text in the file work as the files would."""
    indent = "\n    "
    cert = indent.join(certs.server_cert.read_text().splitlines())
    key = indent.join(certs.server_key.read_text().splitlines())
    text = f"tls_server_config:\n  cert: |\n    {cert}\n  key: |\n    {key}\n"
    exporter = await start(make_exporter, tmp_path, text)
    assert await curl_metrics(exporter, certs) == 0
    plain = await asyncio.to_thread(
        curl_any, "-w", "%{http_code}", f"http://127.0.0.1:{exporter.main_http.port}/metrics"
    )
    assert plain.stdout.endswith("400")  # "this port speaks TLS"


async def test_min_version_and_cipher_suites_are_what_clients_get(
    make_exporter: MakeExporter, tmp_path: Path, certs: CertPaths
) -> None:
    """min_version TLS13 refuses a TLS 1.2 client; a TLS 1.2 port with one cipher suite
    (Go's name) refuses a client offering only another."""
    tls13 = await start(make_exporter, tmp_path, tls_section(certs, "  min_version: TLS13\n"))
    assert await curl_metrics(tls13, certs, "--tls-max", "1.2") != 0
    assert await curl_metrics(tls13, certs, "--tlsv1.3") == 0

    one_suite = tls_section(
        certs,
        "  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n",
    )
    (tmp_path / "tls12").mkdir()
    tls12 = await start(make_exporter, tmp_path / "tls12", one_suite)
    chosen = ["--ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256"]
    assert await curl_metrics(tls12, certs, *chosen) == 0
    assert await curl_metrics(tls12, certs, "--ciphers", "ECDHE-ECDSA-AES256-GCM-SHA384") != 0


async def test_a_rotated_certificate_is_served_without_a_restart(
    make_exporter: MakeExporter, tmp_path: Path, certs: CertPaths, test_ca: CertificateAuthority
) -> None:
    """The files the configuration names are watched too: a new pair written over the old
    one is what the next connection gets; its expiry is what the metric reports."""
    cert, key = write_pair(tmp_path, "server", test_ca.issue("localhost", server=True))
    text = f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
    exporter = await start(make_exporter, tmp_path, text, web_config_check_interval="100ms")
    port = exporter.main_http.port
    before = await served_certificate(port, certs.ca)
    assert before == x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    until = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=2)
    renewed = test_ca.issue("localhost", server=True, valid_until=until)
    replace_file(key, renewed.key_pem.decode())
    replace_file(cert, renewed.cert_pem.decode())
    wanted = x509.load_pem_x509_certificate(renewed.cert_pem)
    der = wanted.public_bytes(serialization.Encoding.DER)

    async def renewed_served() -> bool:
        return await served_certificate(port, certs.ca) == der

    await eventually(renewed_served, message="the renewed certificate served")
    held = {role: expires for role, _, expires in exporter.certificates.expiring(10**9)}
    assert held["server"] == until.timestamp()


async def test_verify_client_cert_if_given_lets_anonymous_clients_in_and_checks_the_rest(
    make_exporter: MakeExporter, tmp_path: Path, certs: CertPaths
) -> None:
    """VerifyClientCertIfGiven: no certificate is fine; one from another CA is refused."""
    other = write_cert_set(tmp_path / "other", CertificateAuthority("another CA"))
    text = tls_section(
        certs, f"  client_ca_file: {certs.ca}\n  client_auth_type: VerifyClientCertIfGiven\n"
    )
    exporter = await start(make_exporter, tmp_path, text)
    assert await curl_metrics(exporter, certs) == 0
    own = ["--cert", str(certs.client_cert), "--key", str(certs.client_key)]
    assert await curl_metrics(exporter, certs, *own) == 0
    stranger = ["--cert", str(other.client_cert), "--key", str(other.client_key)]
    assert await curl_metrics(exporter, certs, *stranger) != 0


async def test_the_go_tls_flags_work_with_a_file_of_users_and_a_rate_limit(
    make_exporter: MakeExporter, tmp_path: Path, certs: CertPaths
) -> None:
    """--server-cert and --server-key with a file that has no tls_server_config: TLS from the
    flags, users and rate_limit from the file; past the burst, 429, counted."""
    text = (
        f"basic_auth_users:\n  alice: '{bcrypt_hash('wonderland')}'\n"
        "rate_limit:\n  interval: 1h\n  burst: 3\n"
    )
    exporter = await start(
        make_exporter,
        tmp_path,
        text,
        server_cert=str(certs.server_cert),
        server_key=str(certs.server_key),
    )
    url = f"https://localhost:{exporter.main_http.port}/metrics"

    async def status(*args: str) -> str:
        result = await asyncio.to_thread(
            curl_any, "-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(certs.ca), *args, url
        )
        return result.stdout

    assert await status() == "401"
    assert await status("-u", "alice:wonderland") == "200"
    assert await status("-u", "alice:wonderland") == "200"
    assert await status("-u", "alice:wonderland") == "429"
    assert exporter.guards["metrics"].refused == {
        "unauthorized": 1,
        "throttled": 0,
        "rate_limited": 1,
    }
