"""What a newcomer meets first: the process's own words when something is missing or wrong.

Each test runs the exporter as a user does (a process, its log on stdout) or reads what it
prints, and checks the line that tells the user what to do.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys

from exporter.settings.advice import ALERT_WINDOW_SECONDS
from exporter.simulator.certs import CertPaths
from tests.support import REPO, LogLines, MakeExporter, serving_flags
from tests.support.processes import LOCAL_PORTS, running
from tests.support.raw_http import read_answer


async def test_with_no_input_given_the_log_points_falco_0_44_at_the_http_input() -> None:
    """No input flag: the Go exporter's default socket is read, and the log says that Falco
    0.44 and later have no gRPC and need --http-input-address."""
    socket = "unix:///nonexistent/falco.sock"
    async with running("--client-socket", socket, *LOCAL_PORTS) as process:
        hint = await process.wait_for_log(
            "no input given: reading Falco's gRPC socket, as Falco up to 0.43 serves it; "
            "Falco 0.44 and later have no gRPC: give --http-input-address and point Falco's "
            "http_output at it (README, Falco 0.44 and later)"
        )
        assert hint["socket"] == socket
    async with running("--http-input-address", "127.0.0.1:0", *LOCAL_PORTS) as process:
        await process.wait_for_log("serving HTTP")
        assert not [r for r in process.records if r["event"].startswith("no input given")]


async def test_sighup_is_logged_and_ignored() -> None:
    """`kill -HUP` (or a closed terminal) neither kills the process nor passes unseen: it is
    logged, the probes still answer, and SIGTERM then stops it cleanly."""
    async with running("--http-input-address", "127.0.0.1:0", *LOCAL_PORTS) as process:
        serving = await process.wait_for_log("serving HTTP")
        process.process.send_signal(signal.SIGHUP)
        line = await process.wait_for_log(
            "SIGHUP received; ignored: nothing is re-read on it (client certificates are "
            "re-read on their own; restart to load new server certificates)"
        )
        assert line["level"] == "warning"
        reader, writer = await asyncio.open_connection("127.0.0.1", serving["probes_port"])
        writer.write(b"GET /liveness HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await asyncio.wait_for(read_answer(reader), 10)).status == 200
        writer.close()
        process.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.process.wait(), 30) == 0


async def test_an_address_that_cannot_be_is_exit_2_naming_the_flag() -> None:
    """`--http-input-address 300.1.1.1:2801`: no such address anywhere. Exit 2 (a
    configuration error), and the line names the flag and the address, not only the
    resolver's words."""
    async with running("--http-input-address", "300.1.1.1:2801", *LOCAL_PORTS) as process:
        line = await process.wait_for_log("cannot listen on --http-input-address 300.1.1.1:2801")
        assert line["flag"] == "--http-input-address"
        assert line["level"] == "error"
        assert await asyncio.wait_for(process.process.wait(), 30) == 2


async def test_the_serving_line_says_which_listener_speaks_tls(
    certs: CertPaths, make_exporter: MakeExporter, logs: LogLines
) -> None:
    """A TLS HTTP input with a plain /metrics: the line says so per listener, where it said
    `"tls": false` for the metrics port alone."""
    await make_exporter(http_input_address="127.0.0.1:0", **serving_flags(certs, "http_input"))
    [serving] = logs.matching("serving HTTP")
    assert serving["tls"] == {"metrics": False, "probes": False, "http_input": True}


def help_of(command: str) -> str:
    """What `falco-exporter COMMAND --help` prints, on a wide terminal."""
    return subprocess.run(
        [sys.executable, "-m", "exporter", command, "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout


def options_without_help(command: str) -> list[str]:
    """The options of `COMMAND --help` whose text says nothing but their default."""
    lines = help_of(command).splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith("options:"))
    described: dict[str, str] = {}
    option = ""
    for line in lines[start + 1 :]:
        found = re.match(r"^  (-[-\w]+(?:, --[-\w]+)?)(?: \S+)?(?:\s{2,}(.*))?$", line)
        if found:
            option = found.group(1)
            described[option] = found.group(2) or ""
        elif option and line.startswith(" " * 8):
            described[option] += " " + line.strip()
    return [
        name
        for name, text in described.items()
        if name != "-h, --help" and not re.sub(r"\(default: [^)]*\)", "", text).strip()
    ]


def test_every_demo_and_simulate_option_says_what_it_does() -> None:
    """`demo --help` printed --listen-address with no description; now every option has one,
    and the demo's addresses default to loopback."""
    for command in ("demo", "simulate"):
        assert options_without_help(command) == [], command
    demo = help_of("demo")
    assert "(default: 127.0.0.1:9376)" in demo
    assert "(default: 127.0.0.1:19376)" in demo


async def test_check_config_warns_of_a_certificate_expiring_within_14_days(
    certs: CertPaths,
) -> None:
    """The test certificates last a day: `--check-config` still exits 0 with the
    configuration, and warns of the client certificate on stderr (not of the CA, which
    lasts a year), as start-up and the alert do."""
    result = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable, "-m", "exporter", "--check-config", "--client-hostname", "falco:5060",
            "--client-cert", str(certs.client_cert), "--client-key", str(certs.client_key),
            "--client-ca", str(certs.ca),
        ],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "client_cert:" in result.stdout
    [warning] = result.stderr.splitlines()
    assert warning.startswith(
        f"falco-exporter: warning: the client certificate {certs.client_cert}"
    )
    assert "within 14 days" in warning


def test_settings_that_break_the_shipped_alerts_are_said() -> None:
    """A TTL shorter than the alerts' windows and dropping a label they group by: both
    accepted (exit 0), both warned of by --check-config, naming the flag; the defaults
    warn of nothing. The window is the shipped rules' longest over falco_events."""
    rules = (REPO / "deploy" / "prometheus" / "falco-exporter-rules.yaml").read_text()
    windows = re.findall(r"falco_events[^\n]*?\[(\d+)m\]", rules)
    assert windows
    assert max(int(w) for w in windows) * 60 == ALERT_WINDOW_SECONDS

    def check(*flags: str) -> list[str]:
        result = subprocess.run(
            [sys.executable, "-m", "exporter", "--check-config", "--http-input-address", ":2801",
             *flags],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stderr.splitlines()

    assert check() == []
    assert check("--series-ttl", "1h") == []
    [ttl] = check("--series-ttl", "3s")
    assert ttl.startswith("falco-exporter: warning: --series-ttl 3s is shorter than")
    [dropped] = check("--drop-labels", "rule,hostname")
    assert dropped.startswith("falco-exporter: warning: --drop-labels rule: the shipped alerts")
