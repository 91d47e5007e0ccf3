"""Configuration: Go-compatible flags and defaults, layering, and errors that name the key."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from exporter.cli import main
from exporter.settings.durations import parse_duration
from exporter.settings.load import ConfigError, load_config
from exporter.simulator.certs import CertificateAuthority, CertPaths, write_cert_set

GO_EXPORTER_DEFAULTS = {
    "client_socket": "unix:///run/falco/falco.sock",
    "client_hostname": (),  # the Go flag took one host; empty means the unix socket
    "client_port": 5060,
    "client_cert": "/etc/falco/certs/client.crt",
    "client_key": "/etc/falco/certs/client.key",
    "client_ca": "/etc/falco/certs/ca.crt",
    "listen_address": ":9376",
    "probes_listen_address": ":19376",
    "server_ca": "",
    "server_cert": "",
    "server_key": "",
    "timeout": 120.0,
}


def test_defaults_are_the_go_exporters() -> None:
    """With nothing set, every Go flag has the Go exporter's default."""
    config = load_config({}, environ={})
    assert {
        key: getattr(config.settings, key) for key in GO_EXPORTER_DEFAULTS
    } == GO_EXPORTER_DEFAULTS


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    """A flag beats the environment, which beats the file, which beats the default."""
    config_file = tmp_path / "config.yaml"
    config_file.write_text("client_port: 1111\nlog_level: debug\ntimeout: 30s\n")
    environ = {"FALCO_EXPORTER_CLIENT_PORT": "2222", "FALCO_EXPORTER_TIMEOUT": "1m"}

    assert load_config({}, str(config_file), environ={}).settings.client_port == 1111
    both = load_config({}, str(config_file), environ=environ)
    settings = both.settings
    assert (settings.client_port, settings.timeout, settings.log_level) == (2222, 60.0, "debug")
    assert (
        load_config({"client_port": "3333"}, str(config_file), environ).settings.client_port == 3333
    )


def test_unrelated_environment_variables_are_ignored() -> None:
    """Kubernetes' service links (FALCO_EXPORTER_PORT=tcp://...) do not break start-up."""
    environ = {"FALCO_EXPORTER_PORT": "tcp://10.0.0.1:9376", "FALCO_EXPORTER_SERVICE_HOST": "x"}
    assert load_config({}, environ=environ) == load_config({}, environ={})


@pytest.mark.parametrize(
    ("flags", "yaml_text", "environ", "named"),
    [
        ({"client_port": "70000"}, None, {}, "--client-port"),
        ({"client_port": "http"}, None, {}, "--client-port"),
        ({}, "client_port: [1]\n", {}, "client_port in"),
        ({}, "cleint_port: 1\n", {}, "cleint_port in"),
        ({}, None, {"FALCO_EXPORTER_TIMEOUT": "soon"}, "FALCO_EXPORTER_TIMEOUT"),
        ({"poll_interval": "0s"}, None, {}, "--poll-interval"),
        ({"log_format": "xml"}, None, {}, "--log-format"),
        ({"listen_address": "9376"}, None, {}, "--listen-address"),
        ({"server_cert": "/etc/hostname"}, None, {}, "--server-key"),
        ({"probes_listen_address": ":9376"}, None, {}, "--probes-listen-address"),
        ({"http_input_address": ":9376"}, None, {}, "--http-input-address"),
        ({"http_input_max_body": "lots"}, None, {}, "--http-input-max-body"),
        ({"http_input_cert": "/etc/hostname"}, None, {}, "--http-input-key"),
        ({"targets": ["falco"]}, None, {}, "--targets"),
        ({"discover_dns": "falco-grpc.falco.svc"}, None, {}, "--discover-dns"),
        ({"ready_when": "most"}, None, {}, "--ready-when"),
        (
            {"client_hostname": "falco", "client_cert": "/nonexistent.crt"},
            None,
            {},
            "--client-cert",
        ),
    ],
)
def test_bad_values_name_their_key(
    tmp_path: Path,
    flags: dict[str, object],
    yaml_text: str | None,
    environ: dict[str, str],
    named: str,
) -> None:
    """Each bad setting raises ConfigError naming the flag, variable or file key."""
    config_file = None
    if yaml_text is not None:
        config_file = tmp_path / "config.yaml"
        config_file.write_text(yaml_text)
    with pytest.raises(ConfigError, match=named.replace("-", r"\-")):
        load_config(flags, str(config_file) if config_file else None, environ)


def test_unknown_file_key_suggests_the_right_one(tmp_path: Path) -> None:
    """A typo in the YAML file is named, with the setting it probably meant."""
    config_file = tmp_path / "config.yaml"
    config_file.write_text("client_hostnme: falco\n")
    with pytest.raises(ConfigError, match="did you mean 'client_hostname'"):
        load_config({}, str(config_file), environ={})


def test_missing_certificates_are_needed_only_for_tcp() -> None:
    """The unix socket needs no certificates; the defaults' missing files are fine then."""
    grpc = load_config({}, environ={}).grpc
    assert grpc is not None
    assert grpc.targets == ("unix:///run/falco/falco.sock",)
    assert not grpc.uses_tcp


def test_cli_exits_2_with_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Bad config: exit status 2 and a single message naming the flag, before anything runs."""
    assert main(["--client-port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--client-port" in err
    assert "not a port" in err


def test_unknown_flag_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A flag the exporter does not have is named, exit 2."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--client-hostnam", "x"])
    assert exit_info.value.code == 2
    assert "--client-hostnam" in capsys.readouterr().err


def test_check_config_prints_the_effective_settings(
    certs: CertPaths, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--check-config validates, prints every setting as YAML, and exits 0."""
    monkeypatch.setenv("FALCO_EXPORTER_LOG_LEVEL", "warning")
    status = main(
        [
            "--check-config",
            "--client-hostname",
            "falco.falco.svc",
            "--client-port",
            "5061",
            "--client-cert",
            str(certs.client_cert),
            "--client-key",
            str(certs.client_key),
            "--client-ca",
            str(certs.ca),
            "--timeout",
            "90s",
        ]
    )
    assert status == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["client_hostname"] == ["falco.falco.svc"]
    assert printed["client_port"] == 5061
    assert printed["timeout"] == "1m30s"
    assert printed["log_level"] == "warning"
    assert printed["listen_address"] == ":9376"


def test_python_dash_m_reports_bad_config_with_status_2() -> None:
    """`python -m exporter` as a process: bad config gives exit status 2 on stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--timeout", "forever"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--timeout" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2m", 120.0), ("1m30s", 90.0), ("100ms", 0.1), ("1h", 3600.0), ("45", 45.0), ("1.5s", 1.5)],
)
def test_go_durations(text: str, seconds: float) -> None:
    """Durations are written as the Go exporter's flags took them."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.fixture(scope="module")
def other_pair(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    """A second certificate set, from another CA."""
    return write_cert_set(tmp_path_factory.mktemp("other"))


@pytest.mark.parametrize("prefix", ["client", "server", "http_input"])
@pytest.mark.parametrize(
    ("case", "named", "problem"),
    [
        ("garbage certificate", "cert", "not a PEM certificate"),
        ("key of another pair", "cert", "the key does not belong to the certificate"),
        ("certificate and key swapped", "cert", "not a PEM certificate"),
        ("garbage CA", "ca", "not a PEM CA certificate"),
    ],
)
def test_certificates_that_tls_would_refuse_are_refused_at_start_up(
    tmp_path: Path,
    certs: CertPaths,
    other_pair: CertPaths,
    prefix: str,
    case: str,
    named: str,
    problem: str,
) -> None:
    """Every certificate set is loaded as TLS loads it: the error names the flag and file."""
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("garbage\n")
    cert, key, ca = {
        "garbage certificate": (garbage, certs.client_key, certs.ca),
        "key of another pair": (certs.client_cert, other_pair.client_key, certs.ca),
        "certificate and key swapped": (certs.client_key, certs.client_cert, certs.ca),
        "garbage CA": (certs.client_cert, certs.client_key, garbage),
    }[case]
    flags = {f"{prefix}_cert": str(cert), f"{prefix}_key": str(key), f"{prefix}_ca": str(ca)}
    if prefix == "client":
        flags["client_hostname"] = "falco"
    with pytest.raises(ConfigError) as error:
        load_config(flags, environ={})
    message = str(error.value)
    assert message.startswith(f"--{prefix.replace('_', '-')}-{named}")
    assert problem in message
    assert str(cert if named == "cert" else ca) in message


def test_help_shows_defaults_as_the_readme_writes_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Durations, sizes, empty lists and booleans in the README's form, not Python's."""
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in (
        "(default: 2m)",
        "(default: 50ms)",
        "(default: 1MiB)",
        "(default: none)",
        "(default: 10%)",
    ):
        assert shown in text
    for python_form in ("(default: ())", "(default: 120.0)", "(default: False)", "1048576"):
        assert python_form not in text


def test_a_mistyped_flag_is_one_line_with_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    """No page of usage: the unknown flag, the one it probably meant, where the list is."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--client-hostnam", "falco"])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "falco-exporter: error: unrecognized argument --client-hostnam "
        "(did you mean --client-hostname?)",
        "Run 'falco-exporter --help' for every flag.",
    ]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--priority-name-label"], True),
        (["--priority-name-label=false"], False),
        (["--priority-name-label", "--no-priority-name-label"], False),
        ([], False),
    ],
)
def test_boolean_flags_work_bare_negated_and_with_a_value(
    flags: list[str], expected: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--priority-name-label` alone turns it on; `--no-...` and `=false` turn it off."""
    assert main([*flags, "--check-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["priority_name_label"] is expected


def test_a_negative_duration_is_refused_naming_the_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--timeout -5s` reaches the duration parser, which says why it cannot be."""
    assert main(["--timeout", "-5s", "--check-config"]) == 2
    assert capsys.readouterr().err == (
        "falco-exporter: configuration error: --timeout: '-5s': a duration cannot be negative\n"
    )


def test_the_go_charts_leading_program_word_is_ignored(capsys: pytest.CaptureFixture[str]) -> None:
    """[/usr/bin/falco-exporter, --client-socket=...] as the Go chart ran it; other words fail."""
    args = ["/usr/bin/falco-exporter", "--client-socket=unix:///run/falco/falco.sock"]
    assert main([*args, "--check-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["client_socket"] == (
        "unix:///run/falco/falco.sock"
    )
    with pytest.raises(SystemExit):
        main(["--client-socket=unix:///x", "stray-word", "--check-config"])
    assert "unrecognized argument stray-word" in capsys.readouterr().err


def test_check_config_into_a_closed_pipe_has_no_traceback() -> None:
    """`--check-config | head`: a reader that left; exit 0, nothing on stderr."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write now fails with EPIPE, as after `head` exits
    try:
        result = subprocess.run(
            [sys.executable, "-m", "exporter", "--check-config"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == 0


@pytest.mark.parametrize("when", ["expired", "not yet valid"])
def test_a_certificate_outside_its_dates_is_refused_naming_the_flag(
    tmp_path: Path, test_ca: CertificateAuthority, certs: CertPaths, when: str
) -> None:
    """An expired (or future) certificate for /metrics: exit 2 at start-up, with its date."""
    now = dt.datetime.now(dt.UTC)
    start, end = (
        (now - dt.timedelta(days=3), now - dt.timedelta(days=1))
        if when == "expired"
        else (now + dt.timedelta(days=1), now + dt.timedelta(days=3))
    )
    pair = test_ca.issue("falco-exporter", server=True, valid_from=start, valid_until=end)
    written = write_cert_set(tmp_path, test_ca, server=pair)
    with pytest.raises(ConfigError) as error:
        load_config(
            {"server_cert": str(written.server_cert), "server_key": str(written.server_key)},
            environ={},
        )
    message = str(error.value)
    assert message.startswith("--server-cert: ")
    expected = "expired on" if when == "expired" else "is not valid before"
    assert expected in message
    assert (end if when == "expired" else start).strftime("%Y-%m-%d") in message
