"""--web.config.file: the exporter-toolkit's web configuration, with real clients (curl).

Basic auth against bcrypt hashes, client certificates and their allowed names, extra
headers, a reload while running, and the files and flags refused at start-up.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.app import Exporter
from exporter.cli import main
from exporter.http.basic_auth import CACHE_SIZE, Users, Verdict, Verifier
from exporter.simulator.certs import CertificateAuthority, CertPaths
from tests.support import (
    EVENT_BODY,
    REPO,
    LogLines,
    MakeExporter,
    counted,
    eventually,
    parse_metrics,
    serving_flags,
)
from tests.support.web_config import bcrypt_hash, client_pair, curl_any, replace_file, write_pair

FAST_RELOAD = "100ms"


def web_file(tmp_path: Path, text: str, name: str = "web.yml") -> Path:
    """A web configuration file in the test's folder."""
    path = tmp_path / name
    replace_file(path, text)
    return path


def users(**hashes: str) -> str:
    """basic_auth_users of these users and bcrypt hashes."""
    return "basic_auth_users:\n" + "".join(f"  {name}: '{h}'\n" for name, h in hashes.items())


def status_of(result: subprocess.CompletedProcess[str]) -> int:
    """The status curl's `-w '%{http_code}'` wrote last."""
    return int(result.stdout[-3:])


async def get(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """curl a URL (headers included, status last), off the event loop."""
    return await asyncio.to_thread(curl_any, "-i", "-w", "%{http_code}", *args, url)


async def own_metrics(
    exporter: Exporter, *curl_args: str
) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    """The exporter's /metrics, parsed, fetched with these credentials."""
    result = await asyncio.to_thread(
        curl_any, *curl_args, f"http://127.0.0.1:{exporter.main_http.port}/metrics"
    )
    assert result.returncode == 0, result.stderr
    return parse_metrics(result.stdout)


def sample(
    families: dict[str, dict[frozenset[tuple[str, str]], float]], name: str, **labels: str
) -> float:
    """One sample's value."""
    return families[name][frozenset(labels.items())]


def refuses(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run the command line; it must exit 2 before starting. Its error line."""
    assert (
        main(["--listen-address", "127.0.0.1:0", "--http-input-address", "127.0.0.1:0", *args]) == 2
    )
    return capsys.readouterr().err


# What the files and flags refused at start-up (exit 2), and what the message must name.
REFUSED_FILES = [
    ("tls_server_config:\n  cert_file: x\n  certfile: y\n", "tls_server_config.certfile"),
    ("basic_auth_user:\n  a: b\n", "basic_auth_user"),
    ("http_server_config:\n  headers:\n    Server: mine\n", "http_server_config.headers.Server"),
    ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "X-Frame-Options"),
    ("basic_auth_users:\n  alice: plain-text\n", "basic_auth_users.alice"),
    ("rate_limit:\n  interval: soon\n", "rate_limit.interval"),
]


@pytest.mark.parametrize(("text", "key"), REFUSED_FILES)
def test_a_file_with_an_unknown_key_or_bad_value_exits_2_naming_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str
) -> None:
    """Unknown keys and values the toolkit refuses stop the start, naming the key's path."""
    path = web_file(tmp_path, text)
    error = refuses(capsys, "--web.config.file", str(path))
    for named in (key, str(path), "--web.config.file"):
        assert named in error, error


def test_check_config_validates_the_web_configuration(
    tmp_path: Path, certs: CertPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    """--check-config reads the file and loads its certificates: a good one passes."""
    good = web_file(
        tmp_path,
        f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n"
        + users(alice=bcrypt_hash("pw")),
    )
    assert (
        main(["--http-input-address", ":0", "--web.config.file", str(good), "--check-config"]) == 0
    )
    assert f"web_config_file: {good}" in capsys.readouterr().out
    swapped = web_file(
        tmp_path,
        f"tls_server_config:\n  cert_file: {certs.server_key}\n  key_file: {certs.server_cert}\n",
        "swapped.yml",
    )
    args = ["--http-input-address", ":0", "--web.config.file", str(swapped), "--check-config"]
    assert main(args) == 2
    assert "not PEM" in capsys.readouterr().err


def test_tls_flags_and_tls_server_config_together_exit_2_naming_both(
    tmp_path: Path, certs: CertPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two places saying how one port speaks TLS is refused rather than one silently winning."""
    path = web_file(
        tmp_path,
        f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n",
    )
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in serving_flags(certs).items()]
    error = refuses(capsys, "--web.config.file", str(path), *flags)
    for named in ("--web.config.file", "--server-cert"):
        assert named in error, error


@pytest.mark.parametrize("policy", ["RequireAnyClientCert", "RequestClientCert"])
def test_a_policy_python_cannot_keep_is_refused_with_the_reason(
    tmp_path: Path, certs: CertPaths, capsys: pytest.CaptureFixture[str], policy: str
) -> None:
    """Accepting a client certificate unverified is beyond Python's ssl: refused, with advice."""
    path = web_file(
        tmp_path,
        f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n"
        f"  client_auth_type: {policy}\n  client_ca_file: {certs.ca}\n",
    )
    error = refuses(capsys, "--web.config.file", str(path))
    for named in ("tls_server_config.client_auth_type", "Python's ssl"):
        assert named in error, error


def test_basic_auth_users_without_bcrypt_exit_2_with_the_extra_to_install(tmp_path: Path) -> None:
    """Without bcrypt, a file with users names the extra that brings it (as --event-loop
    uvloop names `fast`)."""
    path = web_file(tmp_path, users(alice=bcrypt_hash("pw")))
    hide = "import sys; sys.modules['bcrypt'] = None; from exporter.cli import main; "
    command = (
        f"{hide}sys.exit(main(['--http-input-address', ':0', '--web.config.file', {str(path)!r}]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", command],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "basic_auth_users" in result.stderr
    assert "falco-exporter[webconfig]" in result.stderr


async def test_curl_needs_the_right_password_and_gets_the_headers_on_every_answer(
    make_exporter: MakeExporter, tmp_path: Path
) -> None:
    """No credentials, a wrong password or an unknown user: 401 with WWW-Authenticate: Basic;
    the right one: the metrics. The configured header is on each answer; the probes port
    asks for nothing (the kubelet has no credentials)."""
    path = web_file(
        tmp_path,
        users(alice=bcrypt_hash("wonderland"))
        + "http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
    )
    exporter = await make_exporter(http_input_address="127.0.0.1:0", web_config_file=str(path))
    base = f"http://127.0.0.1:{exporter.main_http.port}"
    for path_of in ("/metrics", "/", "/api/live", "/readyz"):
        for credentials in ([], ["-u", "alice:wrong"], ["-u", "mallory:wonderland"]):
            result = await get(base + path_of, *credentials)
            assert status_of(result) == 401, (path_of, credentials, result.stdout)
            assert "WWW-Authenticate: Basic\n" in result.stdout
            assert "X-Frame-Options: deny\n" in result.stdout
    allowed = await get(base + "/metrics", "-u", "alice:wonderland")
    assert status_of(allowed) == 200
    assert "# TYPE falco_events counter" in allowed.stdout
    assert "X-Frame-Options: deny\n" in allowed.stdout
    probe = await get(f"http://127.0.0.1:{exporter.probes_http.port}/liveness")
    assert status_of(probe) == 200


async def test_a_verified_password_is_remembered_so_a_scrape_costs_no_bcrypt(
    make_exporter: MakeExporter, tmp_path: Path
) -> None:
    """Twenty scrapes with the right password run bcrypt once; each wrong one runs it again."""
    path = web_file(tmp_path, users(alice=bcrypt_hash("wonderland")))
    exporter = await make_exporter(http_input_address="127.0.0.1:0", web_config_file=str(path))
    for _ in range(20):
        families = await own_metrics(exporter, "-u", "alice:wonderland")
    verified = sample(families, "falco_exporter_basic_auth_verifications", listener="metrics")
    assert verified == 1
    for _ in range(3):
        await get(f"http://127.0.0.1:{exporter.main_http.port}/metrics", "-u", "alice:nope")
    await get(f"http://127.0.0.1:{exporter.main_http.port}/metrics", "-u", "mallory:wonderland")
    families = await own_metrics(exporter, "-u", "alice:wonderland")
    # An unknown user costs the check a known one does (a decoy hash): no enumeration.
    assert sample(families, "falco_exporter_basic_auth_verifications", listener="metrics") == 5
    refused = sample(
        families, "falco_exporter_web_requests_refused", listener="metrics", reason="unauthorized"
    )
    assert refused == 4


async def test_a_user_added_to_the_file_can_log_in_without_a_restart(
    make_exporter: MakeExporter, tmp_path: Path, logs: LogLines
) -> None:
    """The file is re-read when it changes; a broken version keeps the one before, is logged
    naming the file and the key, and counted."""
    alice = users(alice=bcrypt_hash("wonderland"))
    path = web_file(tmp_path, alice)
    exporter = await make_exporter(
        http_input_address="127.0.0.1:0",
        web_config_file=str(path),
        web_config_check_interval=FAST_RELOAD,
    )
    url = f"http://127.0.0.1:{exporter.main_http.port}/metrics"
    assert status_of(await get(url, "-u", "bob:builder")) == 401
    replace_file(path, users(alice=bcrypt_hash("wonderland"), bob=bcrypt_hash("builder")))

    async def bob_is_in() -> bool:
        return status_of(await get(url, "-u", "bob:builder")) == 200

    await eventually(bob_is_in, message="bob logs in after the reload")
    families = await own_metrics(exporter, "-u", "bob:builder")
    assert (
        sample(families, "falco_exporter_web_config_reloads", listener="metrics", result="success")
        == 1
    )

    replace_file(path, alice + "basic_auth_users_typo: {}\n")

    def failed() -> bool:
        return bool(
            logs.matching(
                "cannot use the changed web configuration; still serving the version read before"
            )
        )

    await eventually(failed, message="the broken file logged")
    [record] = logs.matching(
        "cannot use the changed web configuration; still serving the version read before"
    )
    assert str(path) in record["error"]
    assert "basic_auth_users_typo" in record["error"]
    families = await own_metrics(exporter, "-u", "bob:builder")  # the version before: bob stays
    assert (
        sample(families, "falco_exporter_web_config_reloads", listener="metrics", result="failure")
        == 1
    )
    assert (
        sample(families, "falco_exporter_web_config_last_reload_successful", listener="metrics")
        == 0
    )


@pytest.fixture
def named_clients(tmp_path: Path, test_ca: CertificateAuthority) -> dict[str, tuple[Path, Path]]:
    """Client pairs from the test CA: one named scraper.example, one intruder.example."""
    return {
        name: write_pair(tmp_path, name, client_pair(test_ca, name, dns_names=(f"{name}.example",)))
        for name in ("scraper", "intruder")
    }


async def test_a_client_certificate_outside_client_allowed_sans_is_refused(
    make_exporter: MakeExporter,
    tmp_path: Path,
    certs: CertPaths,
    named_clients: dict[str, tuple[Path, Path]],
) -> None:
    """RequireAndVerifyClientCert with client_allowed_sans: a certificate of the CA with an
    allowed name gets in; one of the same CA with another name, or none, does not; the
    refusal is counted as client_not_allowed."""
    path = web_file(
        tmp_path,
        f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n"
        f"  client_ca_file: {certs.ca}\n  client_auth_type: RequireAndVerifyClientCert\n"
        "  client_allowed_sans: [scraper.example]\n  min_version: TLS12\n",
    )
    exporter = await make_exporter(http_input_address="127.0.0.1:0", web_config_file=str(path))
    url = f"https://localhost:{exporter.main_http.port}/metrics"

    def as_client(name: str) -> list[str]:
        cert, key = named_clients[name]
        return ["--cacert", str(certs.ca), "--cert", str(cert), "--key", str(key)]

    allowed = await get(url, *as_client("scraper"))
    assert allowed.returncode == 0, allowed.stderr
    assert status_of(allowed) == 200
    refused = await get(url, *as_client("intruder"))
    assert refused.returncode != 0
    assert "falco_events" not in refused.stdout
    anonymous = await get(url, "--cacert", str(certs.ca))
    assert anonymous.returncode != 0
    result = await get(url, *as_client("scraper"))
    families = parse_metrics(result.stdout.split("\n\n", 1)[1][:-3])
    assert (
        sample(
            families,
            "falco_exporter_tls_handshake_failures",
            listener="metrics",
            reason="client_not_allowed",
        )
        == 1
    )
    assert (
        sample(
            families,
            "falco_exporter_tls_handshake_failures",
            listener="metrics",
            reason="no_client_certificate",
        )
        == 1
    )


async def test_falco_posts_need_no_credentials_unless_the_http_input_has_its_own_file(
    make_exporter: MakeExporter, tmp_path: Path
) -> None:
    """--web.config.file guards the main port only; --http-input-web-config-file guards the
    HTTP input, where Falco's http_output.url carries the user (https://user:pw@host/)."""
    main_file = web_file(tmp_path, users(alice=bcrypt_hash("wonderland")), "main.yml")
    open_input = await make_exporter(
        http_input_address="127.0.0.1:0", web_config_file=str(main_file)
    )
    posted = await asyncio.to_thread(
        curl_any, "-w", "%{http_code}", "-d", EVENT_BODY.decode(),
        f"http://127.0.0.1:{open_input.ports['http_input']}/",
    )  # fmt: skip
    assert status_of(posted) == 200

    input_file = web_file(tmp_path, users(falco=bcrypt_hash("sidecar")), "input.yml")
    guarded = await make_exporter(
        http_input_address="127.0.0.1:0", http_input_web_config_file=str(input_file)
    )
    port = guarded.ports["http_input"]
    for url, expected in (
        (f"http://127.0.0.1:{port}/", 401),
        (f"http://falco:wrong@127.0.0.1:{port}/", 401),
        (f"http://falco:sidecar@127.0.0.1:{port}/", 200),
    ):
        result = await asyncio.to_thread(
            curl_any, "-w", "%{http_code}", "-d", EVENT_BODY.decode(), url
        )
        assert status_of(result) == expected, (url, result.stdout)
    await counted(guarded, 1, message="only the post with the password counted")


async def test_the_memory_of_verified_passwords_is_bounded() -> None:
    """Past CACHE_SIZE right passwords, the least recently used is forgotten (checked again),
    the latest is still remembered (allowed at once)."""
    count = CACHE_SIZE + 1
    hashes = tuple((f"user{n}", bcrypt_hash(f"pw{n}")) for n in range(count))
    known = Users(hashes)
    verifier = Verifier(clock=iter(range(0, 10**6, 10)).__next__)  # never waits its turn

    def header(n: int) -> bytes:
        return b"Basic " + base64.b64encode(f"user{n}:pw{n}".encode())

    try:
        for n in range(count):
            verdict = verifier.check(known, header(n), "127.0.0.1:1")
            assert not isinstance(verdict, Verdict)
            assert await verdict is Verdict.ALLOWED
        assert verifier.check(known, header(count - 1), "127.0.0.1:1") is Verdict.ALLOWED
        forgotten = verifier.check(known, header(0), "127.0.0.1:1")
        assert not isinstance(forgotten, Verdict)  # a check again, not a lookup
        assert await forgotten is Verdict.ALLOWED
    finally:
        verifier.close()
