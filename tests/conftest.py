"""Fixtures: throwaway certificates, a simulated Falco over mutual TLS, exporters.

Only fixtures and hooks live here (pytest injects them); their types and every helper a
test imports are in tests/support.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from exporter.runtime.process import configure_process, quiet_grpc_core

quiet_grpc_core()  # as the command line does, before grpc is imported

from exporter.app import Exporter  # noqa: E402
from exporter.settings.load import load_config  # noqa: E402
from exporter.simulator.certs import CertificateAuthority, CertPaths, write_cert_set  # noqa: E402
from exporter.simulator.server import SimulatedFalco  # noqa: E402
from tests.support import (  # noqa: E402
    REPO,
    STRICT,
    ExporterFor,
    LogLines,
    MakeExporter,
    browser,
    client_flags,
    tls_of,
)
from tests.support.faults import FaultProxy  # noqa: E402


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """In CI a skipped test is a failed one: what CI does not run, it does not prove."""
    report = yield
    if STRICT and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped, which CI does not allow: {report.longrepr}"
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    """The same for a module skipped as a whole."""
    report = yield
    if STRICT and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped, which CI does not allow: {report.longrepr}"
    return report


@pytest.fixture(scope="session")
def test_ca() -> CertificateAuthority:
    """The CA behind `certs`, for tests that issue more certificates from it."""
    return CertificateAuthority()


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory, test_ca: CertificateAuthority) -> CertPaths:
    """CA, server and client certificates shared by the session's tests."""
    return write_cert_set(tmp_path_factory.mktemp("certs"), test_ca)


@pytest.fixture
async def falco(certs: CertPaths) -> AsyncIterator[SimulatedFalco]:
    """A simulated Falco on a loopback port, mutual TLS required."""
    simulated = SimulatedFalco()
    await simulated.start("127.0.0.1:0", tls_of(certs))
    yield simulated
    await simulated.stop()


@pytest.fixture
async def proxy(falco: SimulatedFalco) -> AsyncIterator[FaultProxy]:
    """A fault proxy in front of the simulated Falco (tests/support/faults.py)."""
    host, port = falco.address.rsplit(":", 1)
    fault_proxy = FaultProxy(host, int(port))
    await fault_proxy.start()
    yield fault_proxy
    await fault_proxy.stop()


@pytest.fixture
def logs() -> Iterator[LogLines]:
    """Capture the exporter's structured logs for the test to read; restored afterwards."""
    saved = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    lines = LogLines()
    configure_process("debug", "json", stream=lines)
    yield lines
    structlog.configure(**saved)
    root.handlers = saved_handlers
    root.setLevel(saved_level)


@pytest.fixture
async def make_exporter(logs: LogLines) -> AsyncIterator[MakeExporter]:
    """Start exporters on free loopback ports from flags; all are stopped afterwards."""
    started: list[Exporter] = []

    async def make(clock: Callable[[], float] | None = None, **flags: object) -> Exporter:
        values: dict[str, object] = {
            "listen_address": "127.0.0.1:0",
            "probes_listen_address": "127.0.0.1:0",
            "reconnect_backoff_initial": "50ms",
            "reconnect_backoff_max": "200ms",
            **flags,
        }
        config = load_config(values, environ={})
        exporter = Exporter(config, clock) if clock else Exporter(config)
        await exporter.start()
        started.append(exporter)
        return exporter

    yield make
    for exporter in started:
        await exporter.stop()


@pytest.fixture
async def exporter_for(make_exporter: MakeExporter, certs: CertPaths) -> ExporterFor:
    """An exporter subscribed to the given simulated Falco over mutual TLS."""

    async def make(falco: SimulatedFalco, **flags: object) -> Exporter:
        return await make_exporter(**client_flags(certs, falco.address), **flags)

    return make


@pytest.fixture
def chromium() -> str:
    """Headless Chromium's path; skipped without it (which CI does not allow)."""
    try:
        return browser.find_chromium()
    except RuntimeError as error:
        pytest.skip(str(error))


def build_leftovers() -> dict[str, int]:
    """What a build leaves in the checkout (build/, dist/, *.egg-info): each file's mtime."""
    roots = [REPO / "build", REPO / "dist", *REPO.glob("*.egg-info")]
    found = {}
    for root in roots:
        for path in [root, *root.rglob("*")] if root.exists() else []:
            found[str(path.relative_to(REPO))] = path.stat().st_mtime_ns
    return found


@pytest.fixture(scope="session")
def installed_as_in_the_image() -> Iterator[Path]:
    """The wheel built as the Dockerfile builds it, in a fresh venv other users can run.

    Built from a copy of what the Dockerfile copies (pyproject.toml, README.md, exporter/),
    so that the checkout gets no build/ or *.egg-info; that it got none is checked. Returns
    the venv's falco-exporter command. Needs root (tests switch to uid 65532); pytest's own
    temporary folders are private to root, so this one is made by hand.
    """
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run as another user")
    folder = Path(tempfile.mkdtemp(prefix="falco-exporter-image-"))
    folder.chmod(0o755)
    source = folder / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(
        REPO / "exporter", source / "exporter", ignore=shutil.ignore_patterns("__pycache__")
    )
    before = build_leftovers()
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--wheel-dir",
                str(folder / "dist"),
                str(source),
            ],
            check=True,
            timeout=300,
            capture_output=True,
        )
        after = build_leftovers()
        assert after == before, (
            "building the wheel wrote into the checkout: "
            f"{sorted(set(after.items()) - set(before.items()))}"
        )
        [wheel] = (folder / "dist").glob("*.whl")
        subprocess.run(
            [sys.executable, "-m", "venv", str(folder / "venv")], check=True, timeout=120
        )
        subprocess.run(
            [str(folder / "venv/bin/pip"), "install", "--quiet", str(wheel)],
            check=True,
            timeout=600,
            capture_output=True,
        )
        yield folder / "venv" / "bin" / "falco-exporter"
    finally:
        shutil.rmtree(folder)
