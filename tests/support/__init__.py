"""Helpers shared by the tests: waiting with a deadline, scraping, building events."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import ssl
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import Exporter
from exporter.falcopb import outputs_pb2
from exporter.simulator.certs import CertificateAuthority, KeyPair

REPO = Path(__file__).resolve().parent.parent.parent
SAMPLE_EVENTS = REPO / "exporter" / "simulator" / "data" / "sample-events.jsonl"

Labels = frozenset[tuple[str, str]]
InputT = TypeVar("InputT")

# In CI every skip is a failure (conftest.py turns skipped reports into failed ones).
STRICT = bool(os.environ.get("CI"))


class FakeClock:
    """A monotonic clock the test moves by hand (series TTL, log rate limits)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def find_tool(name: str) -> str | None:
    """A command from this interpreter's venv (pinned tools), else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return shutil.which(name)


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    timeout: float = 15.0,
    interval: float = 0.02,
    message: str = "condition",
) -> None:
    """Poll `check` until it returns True; fail with `message` once the deadline passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(interval)


async def fetch(
    url: str, ssl_context: ssl.SSLContext | None = None
) -> tuple[int, str, Mapping[str, str]]:
    """GET a URL; (status, body, headers)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, ssl=ssl_context if ssl_context is not None else True) as response,
    ):
        return response.status, await response.text(), dict(response.headers)


def parse_metrics(text: str) -> dict[str, dict[Labels, float]]:
    """Families by name, each a map of label set to value (parsed by prometheus_client)."""
    families: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(text):
        samples = families.setdefault(family.name, {})
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            samples[frozenset(sample.labels.items())] = sample.value
    return families


async def scrape(port: int, name: str = "falco_events") -> dict[Labels, float]:
    """The samples of one family on http://127.0.0.1:port/metrics."""
    status, body, _ = await fetch(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    return parse_metrics(body).get(name, {})


async def total_events(port: int) -> float:
    """Sum of falco_events, what `sum(falco_events)` would say."""
    return sum((await scrape(port)).values())


def labels(**values: str) -> Labels:
    """A label set written as keyword arguments."""
    return frozenset(values.items())


def response(
    rule: str = "Terminal shell in container",
    priority: int = 5,
    *,
    source: str = "syscall",
    hostname: str = "worker-1",
    tags: tuple[str, ...] = ("container", "shell"),
    fields: Mapping[str, str] | None = None,
    source_deprecated: int = 0,
) -> outputs_pb2.response:
    """A gRPC response as Falco would send it."""
    return outputs_pb2.response(
        rule=rule,
        priority=priority,  # type: ignore[arg-type]
        source=source,
        source_deprecated=source_deprecated,  # type: ignore[arg-type]
        hostname=hostname,
        tags=list(tags),
        output=f"{rule} happened",
        output_fields=dict(fields or {}),
    )


def expired(ca: CertificateAuthority, common_name: str, *, server: bool) -> KeyPair:
    """A certificate from `ca` that expired yesterday."""
    now = dt.datetime.now(dt.UTC)
    return ca.issue(
        common_name,
        server=server,
        valid_from=now - dt.timedelta(days=3),
        valid_until=now - dt.timedelta(days=1),
    )


def sample_documents() -> list[dict[str, Any]]:
    """The sample events, as Falco's JSON documents."""
    lines = SAMPLE_EVENTS.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


# One alert as Falco's http_output posts it (json_output: true), for the HTTP input's tests.
FALCO_JSON_EVENT: dict[str, object] = {
    "rule": "Terminal shell in container",
    "priority": "Warning",
    "source": "syscall",
    "hostname": "worker-1",
    "tags": ["container", "shell"],
    "output_fields": {"k8s.ns.name": "default", "k8s.pod.name": "web-1"},
}


def input_of(exporter: Exporter, kind: type[InputT]) -> InputT:
    """The exporter's one input of a kind (GrpcInput, HttpInput)."""
    [found] = [part for part in exporter.inputs if isinstance(part, kind)]
    return found


def has_input(exporter: Exporter, kind: type[object]) -> bool:
    """Whether the exporter runs an input of that kind."""
    return any(isinstance(part, kind) for part in exporter.inputs)
