"""A TLS handshake that fails is seen: counted by reason, logged with the peer and the fix.

Falco posting to a TLS HTTP input without its client certificate, with another CA's, with
an expired one, with plain http://, or not trusting ours, loses every alert, and Falco
only logs a libcurl error. Each case here is a real curl (libcurl, as Falco's http_output
uses) against a real listener; the exporter must count it under its own reason and say
which of Falco's settings to change.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from exporter.app import Exporter
from exporter.simulator.certs import CertificateAuthority, CertPaths, write_cert_set
from tests.support import (
    EVENT_BODY,
    LogLines,
    MakeExporter,
    eventually,
    expired,
    find_tool,
    scrape,
    serving_flags,
)

REASONS = (
    "plain_http",
    "no_client_certificate",
    "unknown_ca",
    "bad_client_certificate",
    "server_certificate_refused",
    "protocol",
    "timeout",
)


def curl_exit(*args: str) -> subprocess.CompletedProcess[str]:
    """curl, whatever its exit status (a refused handshake is an error to curl)."""
    command = find_tool("curl")
    if command is None:
        pytest.skip("curl is not installed")
    return subprocess.run(
        [command, "-sS", "--max-time", "10", *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


@pytest.fixture
async def tls_input(make_exporter: MakeExporter, certs: CertPaths) -> Exporter:
    """An exporter whose HTTP input requires a client certificate signed by the test CA."""
    return await make_exporter(
        http_input_address="127.0.0.1:0", **serving_flags(certs, "http_input")
    )


@pytest.fixture
def strangers(tmp_path: Path, test_ca: CertificateAuthority) -> dict[str, Path]:
    """A client pair from another CA, that CA, and an expired pair from the test CA."""
    other = write_cert_set(tmp_path / "other", CertificateAuthority("another CA"))
    old = expired(test_ca, "falco", server=False)
    (tmp_path / "old.crt").write_bytes(old.cert_pem)
    (tmp_path / "old.key").write_bytes(old.key_pem)
    return {
        "other_cert": other.client_cert,
        "other_key": other.client_key,
        "other_ca": other.ca,
        "old_cert": tmp_path / "old.crt",
        "old_key": tmp_path / "old.key",
    }


async def failures(exporter: Exporter) -> dict[str, float]:
    """falco_exporter_tls_handshake_failures_total of the HTTP input, by reason."""
    found = await scrape(exporter.main_http.port, "falco_exporter_tls_handshake_failures")
    return {
        dict(key)["reason"]: value
        for key, value in found.items()
        if dict(key)["listener"] == "http_input"
    }


async def test_every_reason_is_a_series_at_zero_from_start_up(tls_input: Exporter) -> None:
    """increase() sees the first failure of each reason only if its series existed before."""
    assert await failures(tls_input) == dict.fromkeys(REASONS, 0.0)


@pytest.mark.parametrize(
    ("reason", "client", "fix"),
    [
        ("no_client_certificate", ["--cacert", "{ca}"], "http_output.mtls: true"),
        (
            "unknown_ca",
            ["--cacert", "{ca}", "--cert", "{other_cert}", "--key", "{other_key}"],
            "not signed by --http-input-ca",
        ),
        (
            "bad_client_certificate",
            ["--cacert", "{ca}", "--cert", "{old_cert}", "--key", "{old_key}"],
            "renew http_output.client_cert",
        ),
        (
            "server_certificate_refused",
            ["--cacert", "{other_ca}", "--cert", "{cert}", "--key", "{key}"],
            "http_output.ca_cert",
        ),
        ("protocol", ["--cacert", "{ca}", "--tlsv1.0", "--tls-max", "1.0"], "no TLS version"),
    ],
)
async def test_a_failed_handshake_is_counted_and_logged_with_its_fix(
    tls_input: Exporter,
    certs: CertPaths,
    strangers: dict[str, Path],
    logs: LogLines,
    reason: str,
    client: list[str],
    fix: str,
) -> None:
    """Each way Falco's TLS can be wrong: counted under its reason, one log line naming the
    peer and the fix; nothing counted in falco_events."""
    paths = {"ca": certs.ca, "cert": certs.client_cert, "key": certs.client_key, **strangers}
    url = f"https://localhost:{tls_input.ports['http_input']}/"
    args = [part.format(**{k: str(v) for k, v in paths.items()}) for part in client]
    result = await asyncio.to_thread(curl_exit, *args, "--data-binary", EVENT_BODY.decode(), url)
    assert result.returncode != 0, result.stdout

    async def counted() -> bool:
        return (await failures(tls_input))[reason] == 1

    await eventually(counted, message=f"one {reason} counted")
    assert sum((await failures(tls_input)).values()) == 1
    [line] = logs.matching("TLS handshake failed")
    assert (line["reason"], line["listener"]) == (reason, "http_input")
    assert line["peer"].startswith("127.0.0.1:")
    assert fix in line["fix"]
    assert await scrape(tls_input.main_http.port) == {}


async def test_plain_http_on_the_tls_port_is_told_to_use_https(tls_input: Exporter) -> None:
    """http:// to the TLS port: a plain-text 400 that says so, counted as plain_http."""
    url = f"http://127.0.0.1:{tls_input.ports['http_input']}/"
    result = await asyncio.to_thread(
        curl_exit, "-w", "%{http_code}", "--data-binary", EVENT_BODY.decode(), url
    )
    assert result.stdout.endswith("400")
    assert "https://" in result.stdout
    assert (await failures(tls_input))["plain_http"] == 1


async def test_the_right_certificate_is_counted_and_nothing_is_refused(
    tls_input: Exporter, certs: CertPaths
) -> None:
    """Falco as it should be configured: 200, counted, no failure."""
    url = f"https://localhost:{tls_input.ports['http_input']}/"
    result = await asyncio.to_thread(
        curl_exit,
        "--cacert", str(certs.ca), "--cert", str(certs.client_cert),
        "--key", str(certs.client_key), "-w", "%{http_code}", "-o", "/dev/null",
        "-H", "Content-Type: application/json", "--data-binary", EVENT_BODY.decode(), url,
    )  # fmt: skip
    assert result.stdout == "200", result.stderr
    assert sum((await scrape(tls_input.main_http.port)).values()) == 1
    assert sum((await failures(tls_input)).values()) == 0


async def test_a_stalled_handshake_times_out_and_is_counted(
    make_exporter: MakeExporter, certs: CertPaths
) -> None:
    """A client that starts a handshake and stops: closed after the read timeout, counted."""
    exporter = await make_exporter(
        http_input_address="127.0.0.1:0",
        http_input_read_timeout="300ms",
        **serving_flags(certs, "http_input"),
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", exporter.ports["http_input"])
    writer.write(b"\x16\x03\x01\x00\x05")  # a TLS record header, and nothing after it
    await writer.drain()
    try:
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the exporter
    finally:
        writer.close()
    assert (await failures(exporter))["timeout"] == 1
