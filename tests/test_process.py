"""The exporter and the demo as real processes: signals, exit codes, logs."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from exporter.simulator.certs import CertPaths
from tests.support import eventually, fetch, scrape
from tests.support.malformed import MALFORMED
from tests.support.processes import LOCAL_PORTS, running
from tests.support.raw_http import exchange


async def test_sigterm_exits_0_within_5_seconds() -> None:
    """SIGTERM stops everything in order and exits 0 well inside Kubernetes' grace period."""
    async with running(
        "--client-socket", "unix:///nonexistent/falco.sock", *LOCAL_PORTS, "--log-format", "json"
    ) as exporter:
        serving = await exporter.wait_for_log("serving HTTP")
        assert (await fetch(f"http://127.0.0.1:{serving['metrics_port']}/livez"))[0] == 200
        exporter.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(5):
            assert await exporter.process.wait() == 0
        await exporter.wait_for_log("stopped")


async def test_connection_failures_are_logged_once_per_attempt() -> None:
    """A connection change is one JSON line with target, attempt, reason and next delay."""
    async with running(
        "--client-socket",
        "unix:///nonexistent/falco.sock",
        *LOCAL_PORTS,
        "--reconnect-backoff-max",
        "100ms",
    ) as exporter:
        first = await exporter.wait_for_log("cannot connect to Falco")
        second = await exporter.wait_for_log("cannot connect to Falco")
        assert first["target"] == "unix:///nonexistent/falco.sock"
        assert (first["attempt"], second["attempt"]) == (1, 2)
        assert first["reason"] == "unavailable"
        assert "unix socket does not exist" in first["detail"]
        assert first["next_attempt_in"].endswith("s")
        exporter.process.send_signal(signal.SIGINT)
        async with asyncio.timeout(5):
            assert await exporter.process.wait() == 0


async def test_demo_shows_the_walkthrough_pod_on_metrics() -> None:
    """`falco-exporter demo`: the nginx pod's alerts appear on /metrics; Ctrl-C stops it."""
    async with running("demo", *LOCAL_PORTS, "--rate", "50") as demo:
        serving = await demo.wait_for_log("serving HTTP")
        port = serving["metrics_port"]

        async def walkthrough_seen() -> bool:
            series = await scrape(port)
            rules = {
                dict(key)["rule"]
                for key in series
                if dict(key)["k8s_pod_name"].startswith("nginx-")
            }
            return {
                "Launch Package Management Process in Container",
                "DetectCurlCommandExecution",
            } <= rules

        await eventually(walkthrough_seen, message="the walkthrough's series")
        demo.process.send_signal(signal.SIGINT)
        async with asyncio.timeout(5):
            assert await demo.process.wait() == 0


async def test_demo_over_http_output() -> None:
    """`falco-exporter demo --http`: the same walkthrough, delivered as Falco 0.44+ posts."""
    async with running(
        "demo", "--http", *LOCAL_PORTS, "--http-input-address", "127.0.0.1:0", "--rate", "50"
    ) as demo:
        serving = await demo.wait_for_log("serving HTTP")
        port = serving["metrics_port"]

        async def pod_seen() -> bool:
            return any(dict(key)["k8s_pod_name"].startswith("nginx-") for key in await scrape(port))

        await eventually(pod_seen, message="the nginx pod's series")
        received = await scrape(port, "falco_exporter_events_received")
        assert [dict(key)["input"] for key in received] == ["http"]
        demo.process.send_signal(signal.SIGINT)
        async with asyncio.timeout(5):
            assert await demo.process.wait() == 0


HUNG_SHUTDOWN = """
import asyncio
from exporter.runtime.signals import stop_on_signals

async def main():
    stop = asyncio.Event()
    with stop_on_signals(stop):
        print("ready", flush=True)
        await stop.wait()
        print("stopping", flush=True)
        await asyncio.Event().wait()  # a shutdown that never finishes

asyncio.run(main())
"""


async def test_second_signal_exits_at_once() -> None:
    """If shutdown hangs, a second SIGTERM ends the process at once (status 128 + 15)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HUNG_SHUTDOWN,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(30):
            assert (await process.stdout.readline()).strip() == b"ready"
            process.send_signal(signal.SIGTERM)
            while (await process.stdout.readline()).strip() != b"stopping":
                pass  # the handler's own log line comes first
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(5):
            assert await process.wait() == 128 + signal.SIGTERM
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_malformed_posts_leave_stderr_empty_and_stdout_json() -> None:
    """Every malformed request of the hardening tests: the log stays JSON, stderr silent."""
    async with running(
        "--http-input-address", "127.0.0.1:0", *LOCAL_PORTS, "--log-format", "json"
    ) as exporter:
        serving = await exporter.wait_for_log("serving HTTP")
        for _name, data, status, _reason in MALFORMED:
            assert (await exchange(serving["http_input_port"], data)).status == status
        exporter.process.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(exporter.process.communicate(), 10)
    assert exporter.process.returncode == 0
    assert stderr == b""
    records = [json.loads(line) for line in stdout.splitlines()]
    refused = {r["reason"] for r in records if r.get("event") == "refused a POST from Falco"}
    assert refused == {reason for *_, reason in MALFORMED for reason in reason.split("+")}


async def test_a_certificate_that_is_not_pem_exits_2_naming_it(tmp_path: Path) -> None:
    """A garbage certificate for /metrics: caught before anything starts, one line, exit 2."""
    garbage = tmp_path / "server.crt"
    garbage.write_text("garbage\n")
    async with running(
        "--server-cert", str(garbage), "--server-key", str(garbage), *LOCAL_PORTS,
        "--log-format", "json",
    ) as exporter:  # fmt: skip
        stdout, stderr = await asyncio.wait_for(exporter.process.communicate(), 30)
    assert exporter.process.returncode == 2
    assert stdout == b""
    [line] = stderr.decode().splitlines()
    assert line.startswith("falco-exporter: configuration error: --server-cert and --server-key:")
    assert str(garbage) in line


async def test_a_certificate_expiring_within_14_days_is_warned_of(certs: CertPaths) -> None:
    """The test certificates last a day, within the shipped alert's 14 days: the start-up
    says so for each of them, and not for the CA, which lasts a year."""
    async with running(
        "--client-hostname", "127.0.0.1:1", "--client-cert", str(certs.client_cert),
        "--client-key", str(certs.client_key), "--client-ca", str(certs.ca),
        *LOCAL_PORTS, "--log-format", "json",
    ) as exporter:  # fmt: skip
        warning = await exporter.wait_for_log("certificate expires soon")
        assert (warning["role"], warning["path"]) == ("client", str(certs.client_cert))
        await exporter.wait_for_log("serving HTTP")
        warned = [r["role"] for r in exporter.records if r["event"] == "certificate expires soon"]
        assert warned == ["client"]
        exporter.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            assert await exporter.process.wait() == 0
