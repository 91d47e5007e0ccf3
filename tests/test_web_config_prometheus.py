"""A real Prometheus scrapes an exporter behind a web configuration: HTTPS with a client
certificate, and basic auth, as a scrape config with `tls_config` and `basic_auth` says.

Skipped only when the `prometheus` binary is missing and REQUIRE_PROMETHEUS is not set;
.ci/run sets it, so in CI this always runs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from exporter.simulator.certs import CertificateAuthority, CertPaths
from tests.support import EVENT_BODY, MakeExporter, eventually, post
from tests.support.prometheus import Prometheus
from tests.support.web_config import bcrypt_hash, client_pair, replace_file, write_pair

if not shutil.which("prometheus"):
    if os.environ.get("REQUIRE_PROMETHEUS"):
        raise RuntimeError("REQUIRE_PROMETHEUS is set but prometheus is not installed")
    pytest.skip("prometheus is not installed", allow_module_level=True)

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]


@pytest.mark.parametrize("password", ["wonderland", "wrong"])
async def test_prometheus_scrapes_with_basic_auth_and_a_client_certificate(
    make_exporter: MakeExporter,
    tmp_path: Path,
    certs: CertPaths,
    test_ca: CertificateAuthority,
    password: str,
) -> None:
    """With the right password Prometheus's target is up and falco_events is queried; with a
    wrong one the target is down, the error names the 401, and the refusal is counted."""
    cert, key = write_pair(
        tmp_path,
        "prometheus",
        client_pair(test_ca, "prometheus", dns_names=("prometheus.example",)),
    )
    web = tmp_path / "web.yml"
    replace_file(
        web,
        f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n"
        f"  client_ca_file: {certs.ca}\n  client_auth_type: RequireAndVerifyClientCert\n"
        "  client_allowed_sans: [prometheus.example]\n"
        f"basic_auth_users:\n  prometheus: '{bcrypt_hash('wonderland')}'\n",
    )
    exporter = await make_exporter(http_input_address="127.0.0.1:0", web_config_file=str(web))
    # Counted before it is answered: the HTTP input counts on the request's last byte.
    assert (await post(f"http://127.0.0.1:{exporter.ports['http_input']}/", EVENT_BODY))[0] == 200
    secret = tmp_path / "password"
    secret.write_text(password)
    prometheus = Prometheus(
        tmp_path,
        exporter.main_http.port,
        scrape_options=(
            "    scheme: https\n"
            f"    basic_auth:\n      username: prometheus\n      password_file: {secret}\n"
            f"    tls_config:\n      ca_file: {certs.ca}\n"
            f"      cert_file: {cert}\n      key_file: {key}\n"
        ),
    )
    await prometheus.start()
    try:
        if password == "wonderland":

            async def queried() -> bool:
                result = await prometheus.api("/api/v1/query", query="sum(falco_events)")
                return [float(s["value"][1]) for s in result["result"]] == [1.0]

            await eventually(queried, timeout=60, interval=0.2, message="sum(falco_events) == 1")
            up = await prometheus.api("/api/v1/query", query="up")
            assert [s["value"][1] for s in up["result"]] == ["1"]
        else:

            async def refused() -> bool:
                targets = await prometheus.api("/api/v1/targets")
                active = targets["activeTargets"]
                return bool(active) and "401" in active[0].get("lastError", "")

            await eventually(refused, timeout=60, interval=0.2, message="the target refused: 401")
            assert exporter.main_http.stats.tls_failures["client_not_allowed"] == 0
            guard = exporter.guards["metrics"]
            assert guard.refused["unauthorized"] >= 1
    finally:
        await prometheus.stop()
