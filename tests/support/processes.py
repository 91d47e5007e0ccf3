"""The exporter as a child process (`python -m exporter`), read through its JSON log lines."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

# Every port on loopback, each chosen by the kernel (the log line `serving HTTP` names them).
LOCAL_PORTS = ("--listen-address", "127.0.0.1:0", "--probes-listen-address", "127.0.0.1:0")


class Process:
    """A child process whose stdout is JSON log lines."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.records: list[dict[str, Any]] = []

    async def wait_for_log(self, event: str, timeout: float = 30.0) -> dict[str, Any]:
        """Read log lines until one whose message is `event`."""
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                line = await self.process.stdout.readline()
                if not line:
                    raise AssertionError(f"process ended before logging {event!r}")
                record: dict[str, Any] = json.loads(line)
                self.records.append(record)
                if record.get("event") == event:
                    return record


@asynccontextmanager
async def running(*args: str) -> AsyncIterator[Process]:
    """Start `python -m exporter ARGS`; kill it if the test did not stop it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "exporter",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield Process(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
