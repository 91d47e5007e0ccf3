"""Helpers shared by the tests: waiting with a deadline, scraping, building and posting
events, and the types of conftest.py's fixtures.

The bigger pieces have modules of their own: raw_http (requests no client would send),
malformed (the HTTP input's bad requests), faults (a TCP proxy that breaks), fake_dns,
browser (headless Chromium), png, prometheus (Prometheus and Alertmanager servers),
processes (the exporter as a child process), deploy (what ships, and its resources),
gmp (the documented shape of GKE's managed collection objects) and falcosidekick (what its
webhook output posts).
No test module imports from another test module or from conftest.py: what two of them
share is here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import Exporter
from exporter.falcopb import outputs_pb2
from exporter.simulator.certs import CertificateAuthority, CertPaths, KeyPair
from exporter.simulator.events import response_from_json
from exporter.simulator.server import ServerTls, SimulatedFalco

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


def publish_samples(falco: SimulatedFalco) -> list[dict[str, Any]]:
    """Queue every sample event on the simulated Falco, as gRPC carries it; the documents."""
    documents = sample_documents()
    falco.publish(response_from_json(document) for document in documents)
    return documents


async def sum_by(port: int, label: str) -> dict[str, float]:
    """sum by (label) (falco_events), as scraped from http://127.0.0.1:port/metrics."""
    totals: dict[str, float] = {}
    for key, value in (await scrape(port)).items():
        value_of_label = dict(key)[label]
        totals[value_of_label] = totals.get(value_of_label, 0.0) + value
    return totals


# One alert as Falco's http_output posts it (json_output: true), typed fields and all.
EVENT: dict[str, Any] = {
    "hostname": "worker-1",
    "output": "A shell was spawned",
    "priority": "Notice",
    "rule": "Terminal shell in container",
    "source": "syscall",
    "tags": ["container", "shell"],
    "time": "2026-11-27T10:15:02.123456789Z",
    "output_fields": {"k8s.ns.name": "default", "k8s.pod.name": "web-1", "proc.tty": 34816},
}
# The same, as the body of one POST.
EVENT_BODY = json.dumps(EVENT).encode()


def input_of(exporter: Exporter, kind: type[InputT]) -> InputT:
    """The exporter's one input of a kind (GrpcInput, HttpInput)."""
    [found] = [part for part in exporter.inputs if isinstance(part, kind)]
    return found


def has_input(exporter: Exporter, kind: type[object]) -> bool:
    """Whether the exporter runs an input of that kind."""
    return any(isinstance(part, kind) for part in exporter.inputs)


def input_url(exporter: Exporter, path: str = "/") -> str:
    """Where Falco's http_output.url would point."""
    return f"http://127.0.0.1:{exporter.ports['http_input']}{path}"


async def post(
    url: str, body: bytes | str, *, headers: Mapping[str, str] | None = None
) -> tuple[int, str]:
    """POST a body; (status, text)."""
    data = io.BytesIO(body.encode() if isinstance(body, str) else body)
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=data, headers=headers) as answer,
    ):
        return answer.status, await answer.text()


def ndjson(documents: list[dict[str, Any]]) -> str:
    """Documents as one newline-delimited JSON body, as Falco batches them."""
    return "\n".join(json.dumps(document) for document in documents)


async def counted(
    exporter: Exporter | int,
    total: float | Callable[[], float],
    *,
    timeout: float = 15.0,
    message: str | None = None,
) -> None:
    """Wait until sum(falco_events) on the exporter's /metrics (or a port's) is `total`.

    `total` may be a callable, read again at each check (what Falco delivered so far).
    The timeout is a deadline, not a target.
    """
    port = exporter if isinstance(exporter, int) else exporter.main_http.port

    def expected() -> float:
        return total() if callable(total) else total

    async def check() -> bool:
        return await total_events(port) == expected()

    await eventually(
        check, timeout=timeout, message=message or f"sum(falco_events) == {expected()}"
    )


def curl(*args: str, timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run curl (libcurl, as Falco uses) with `-sS`; fails the test on a transport error,
    unless `check` is False (a refused handshake is such an error, and may be the point).

    Blocking: from the event loop, run it with asyncio.to_thread. Skipped without curl,
    which CI does not allow.
    """
    command = find_tool("curl")
    if command is None:
        pytest.skip("curl is not installed")
    result = subprocess.run(
        [command, "-sS", "--max-time", str(timeout), *args],
        capture_output=True,
        text=True,
        timeout=timeout + 5,
        check=False,
    )
    assert result.returncode == 0 or not check, result.stderr
    return result


def free_port() -> int:
    """A port free right now on loopback (for servers that cannot report one they chose)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tls_of(certs: CertPaths) -> ServerTls:
    """The simulated Falco's side of a certificate set."""
    return ServerTls(certs.server_cert, certs.server_key, certs.ca)


def client_flags(certs: CertPaths, address: str) -> dict[str, object]:
    """Flags that point an exporter at a simulated Falco over mutual TLS."""
    host, port = address.rsplit(":", 1)
    return {
        "client_hostname": "localhost" if host == "127.0.0.1" else host,
        "client_port": port,
        "client_cert": str(certs.client_cert),
        "client_key": str(certs.client_key),
        "client_ca": str(certs.ca),
    }


def serving_flags(certs: CertPaths, listener: str = "server") -> dict[str, object]:
    """Flags that make a listener serve the set's server pair and require a client
    certificate from its CA: `server` for /metrics, `http_input` for the HTTP input."""
    return {
        f"{listener}_cert": str(certs.server_cert),
        f"{listener}_key": str(certs.server_key),
        f"{listener}_ca": str(certs.ca),
    }


class LogLines(io.StringIO):
    """The exporter's JSON log lines, decoded (the `logs` fixture)."""

    def records(self) -> list[dict[str, Any]]:
        """Every line logged so far, as a dict."""
        return [json.loads(line) for line in self.getvalue().splitlines() if line]

    def matching(self, event: str) -> list[dict[str, Any]]:
        """The records whose message is `event`."""
        return [record for record in self.records() if record.get("event") == event]


class MakeExporter(Protocol):
    """The `make_exporter` fixture: start an exporter from flags, on free loopback ports."""

    def __call__(self, **flags: Any) -> Awaitable[Exporter]:
        """Flags as load_config takes them (`http_input_address="127.0.0.1:0"`), and
        `clock=`: the monotonic clock the exporter reads (a FakeClock), if not time's."""
        ...


class ExporterFor(Protocol):
    """The `exporter_for` fixture: an exporter subscribed to a simulated Falco (mutual TLS)."""

    def __call__(self, falco: SimulatedFalco, **flags: object) -> Awaitable[Exporter]:
        """More flags as load_config takes them."""
        ...


class Falcos(Protocol):
    """tests/test_targets.py's `falcos` fixture: start simulated Falcos (mutual TLS) at once."""

    def __call__(self, count: int, prefix: str = "node") -> Awaitable[list[SimulatedFalco]]:
        """`count` of them, hostnames `prefix-0`, `prefix-1`, ..., stopped after the test."""
        ...
