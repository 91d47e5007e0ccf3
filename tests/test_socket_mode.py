"""Falco's unix socket as a stock Falco makes it: owned by root, mode 0755.

Connecting to a unix socket needs write permission on the socket file, which Falco
recreates at every start, so group tricks do not last. Its owner, uid 0, has that bit even
with every capability dropped; any other uid has not. The daemonset-socket overlay
therefore runs the exporter as uid 0 with no capability, a read-only root filesystem and
/run/falco mounted read-only. Needs root and setpriv(1), like the image tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from exporter.simulator.server import SimulatedFalco
from tests.support import REPO, response

if os.geteuid() != 0 or shutil.which("setpriv") is None:
    pytest.skip("needs root and setpriv to take other identities", allow_module_level=True)

# uid 0 with no capability at all (no CAP_DAC_OVERRIDE: file permissions apply to it).
ROOT_WITHOUT_CAPABILITIES = [
    "--reuid=0", "--regid=0", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
]  # fmt: skip
NON_ROOT = ["--reuid=65532", "--regid=65532", "--clear-groups", "--inh-caps=-all"]


@pytest.fixture
async def stock_falco() -> AsyncIterator[tuple[SimulatedFalco, Path]]:
    """A simulated Falco on a socket owned by root, mode 0755, in a folder others can enter."""
    folder = Path(tempfile.mkdtemp(prefix="falco-run-"))
    folder.chmod(0o755)
    socket_path = folder / "falco.sock"
    falco = SimulatedFalco()
    await falco.start(f"unix://{socket_path}")
    socket_path.chmod(0o755)
    falco.publish([response()])
    yield falco, socket_path
    await falco.stop()
    shutil.rmtree(folder)


async def exporter_as(identity: list[str], socket_path: Path) -> dict[str, object]:
    """Run the exporter under `identity` against the socket; its first connection log line."""
    process = await asyncio.create_subprocess_exec(
        "setpriv", *identity, sys.executable, "-m", "exporter",
        "--client-socket", f"unix://{socket_path}",
        "--listen-address", "127.0.0.1:0", "--probes-listen-address", "127.0.0.1:0",
        "--log-format", "json",
        cwd=str(REPO), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO), "HOME": "/nonexistent"},
    )  # fmt: skip
    assert process.stdout is not None
    try:
        async with asyncio.timeout(30):
            while line := await process.stdout.readline():
                record: dict[str, object] = json.loads(line)
                if record.get("event") in {"connected to Falco", "cannot connect to Falco"}:
                    return record
        raise AssertionError("the exporter ended before connecting or failing")
    finally:
        process.kill()
        await process.wait()


async def test_root_without_capabilities_reaches_a_stock_falco_socket(
    stock_falco: tuple[SimulatedFalco, Path],
) -> None:
    """uid 0, every capability dropped: the owner's write bit lets it connect."""
    _, socket_path = stock_falco
    record = await exporter_as(ROOT_WITHOUT_CAPABILITIES, socket_path)
    assert record["event"] == "connected to Falco"


async def test_another_uid_is_refused_and_told_why_and_what_to_do(
    stock_falco: tuple[SimulatedFalco, Path],
) -> None:
    """uid 65532: refused; the line names the socket's owner and mode and the fix."""
    _, socket_path = stock_falco
    record = await exporter_as(NON_ROOT, socket_path)
    assert record["event"] == "cannot connect to Falco"
    detail = str(record["detail"])
    assert f"{socket_path} is owned by uid 0 with mode 0755" in detail
    assert "run the exporter as uid 0 with every capability dropped" in detail
