"""What each mode loads, and which event loop runs: the sidecar runs on every node.

Real processes: `-X importtime` lists every module a process imported, so the test
sees what the exporter really loaded, not what a unit test imagines.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest

from tests.support import EVENT, REPO, counted, curl, scrape
from tests.support.processes import LOCAL_PORTS

# Modules that only the gRPC input, or nothing at run time at all, needs.
GRPC_MODULES = ("grpc", "google.protobuf")
NEVER_AT_RUN_TIME = ("aiohttp", "prometheus_client", "importlib.metadata")


async def run_exporter(
    *args: str, env: dict[str, str] | None = None, post: bool = False
) -> tuple[set[str], list[dict[str, object]], int]:
    """Start the exporter under -X importtime, wait until it serves, maybe POST an event
    and scrape; SIGTERM. (modules imported, log records, exit status)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-X", "importtime", "-m", "exporter", *LOCAL_PORTS,
        "--log-format", "json", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert process.stdout is not None
    records: list[dict[str, object]] = []
    try:
        async with asyncio.timeout(30):
            while not records or records[-1].get("event") != "serving HTTP":
                line = await process.stdout.readline()
                assert line, "the exporter exited before serving"
                records.append(json.loads(line))
        serving = records[-1]
        if post:
            await post_and_count(
                int(str(serving["http_input_port"])), int(str(serving["metrics_port"]))
            )
        else:
            assert await scrape(int(str(serving["metrics_port"])), "falco_exporter_build_info")
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
    _out, err = await process.communicate()
    modules = {
        line.split("|")[-1].strip()
        for line in err.decode().splitlines()
        if line.startswith("import time:")
    }
    return modules, records, process.returncode or 0


async def post_and_count(input_port: int, metrics_port: int) -> None:
    """One event posted as Falco posts it (curl is libcurl, as Falco's), then seen on /metrics."""
    posted = await asyncio.to_thread(
        curl, "-o", "/dev/null", "-w", "%{http_code}",
        "-H", "Content-Type: application/json", "--data-binary", json.dumps(EVENT),
        f"http://127.0.0.1:{input_port}/",
    )  # fmt: skip
    assert posted.stdout == "200"
    await counted(metrics_port, 1, message="the posted event on /metrics")


async def test_http_only_mode_loads_neither_grpc_nor_a_web_framework() -> None:
    """The sidecar's mode serves and counts without grpc, protobuf, aiohttp or a client
    library; a mode with a gRPC target does load grpc (so the check can fail)."""
    modules, _records, status = await run_exporter("--http-input-address", "127.0.0.1:0", post=True)
    assert status == 0
    assert "exporter.http.server" in modules  # the listing is real
    loaded = sorted(m for m in modules if m.startswith(GRPC_MODULES + NEVER_AT_RUN_TIME))
    assert loaded == []

    modules, _records, status = await run_exporter(
        "--client-socket", "unix:///nonexistent/falco.sock"
    )
    assert status == 0
    assert "grpc._cython.cygrpc" in modules
    assert not [m for m in modules if m.startswith(NEVER_AT_RUN_TIME)]


async def test_uvloop_runs_when_installed_and_says_so() -> None:
    """With uvloop installed, `auto` runs it and the start-up line names it; the HTTP
    input, /metrics and SIGTERM work on it as on asyncio's loop."""
    pytest.importorskip("uvloop")
    pytest.importorskip("orjson")
    modules, records, status = await run_exporter("--http-input-address", "127.0.0.1:0", post=True)
    assert status == 0
    started = next(r for r in records if r.get("event") == "starting falco-exporter")
    assert str(started["event_loop"]).startswith("uvloop")
    assert str(started["json_parser"]).startswith("orjson ")
    assert "uvloop" in modules

    modules, records, status = await run_exporter(
        "--http-input-address", "127.0.0.1:0", "--event-loop", "asyncio", post=True
    )
    assert status == 0
    started = next(r for r in records if r.get("event") == "starting falco-exporter")
    assert started["event_loop"] == "asyncio"
    assert "uvloop" not in modules


def without_uvloop(tmp_path: Path) -> dict[str, str]:
    """An environment where `import uvloop` and `import orjson` fail, as on a platform
    without their wheels."""
    for name in ("uvloop", "orjson"):
        (tmp_path / f"{name}.py").write_text(f"raise ImportError('no {name} here')\n")
    return {"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin"}


async def test_without_uvloop_auto_falls_back_and_says_so(tmp_path: Path) -> None:
    """Without uvloop and orjson, `auto` runs asyncio's loop and the standard library's
    parser, counts as before, and the log says why."""
    _modules, records, status = await run_exporter(
        "--http-input-address", "127.0.0.1:0", env=without_uvloop(tmp_path), post=True
    )
    assert status == 0
    started = next(r for r in records if r.get("event") == "starting falco-exporter")
    assert started["event_loop"] == "asyncio (uvloop not installed)"
    assert started["json_parser"] == "json (standard library; orjson not installed)"


async def test_uvloop_required_but_missing_exits_2_naming_the_flag(tmp_path: Path) -> None:
    """`--event-loop uvloop` on a machine without it is a configuration error."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "--event-loop", "uvloop", "--check-config",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=without_uvloop(tmp_path),
    )  # fmt: skip
    _out, err = await process.communicate()
    assert process.returncode == 2
    assert err.decode().startswith("falco-exporter: configuration error: --event-loop uvloop:")
    assert "Traceback" not in err.decode()
