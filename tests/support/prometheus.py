"""A real Prometheus server and a real Alertmanager as child processes, and a webhook
receiver for Alertmanager's notifications.

The test modules that start them skip (or, with REQUIRE_PROMETHEUS, fail) without the
binaries; these classes assume they are there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from exporter.app import Exporter
from tests.support import eventually, fetch, free_port


class _Server:
    """A server of the Prometheus project as a child process: its log kept, ready on /-/ready."""

    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://127.0.0.1:{self.port}"

    async def _launch(self, config: str, *command: str) -> None:
        """Write `config` and start `command` with it, listening on a port free now; wait
        until /-/ready answers 200."""
        config_path = self.workdir / f"{self.name}.yml"
        config_path.write_text(config)
        self.port = free_port()
        log_path = self.workdir / f"{self.name}.log"
        with log_path.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                *command,
                f"--config.file={config_path}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )

        async def ready() -> bool:
            assert self.process is not None
            if self.process.returncode is not None:
                raise AssertionError(f"{self.name} exited:\n{log_path.read_text()[-2000:]}")
            try:
                return (await fetch(f"{self.url}/-/ready"))[0] == 200
            except aiohttp.ClientError:
                return False

        await eventually(ready, timeout=60, interval=0.1, message=f"{self.name} ready")

    async def stop(self) -> None:
        """Terminate and reap."""
        if self.process and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()


class Prometheus(_Server):
    """A Prometheus server process scraping one target and evaluating rules every second."""

    name = "prometheus"

    def __init__(
        self, workdir: Path, target_port: int, extra_config: str = "", scrape_options: str = ""
    ) -> None:
        """`extra_config` is appended to prometheus.yml (rule files, Alertmanagers);
        `scrape_options` are more keys of the scrape job, each line indented by four spaces
        (`scheme: https`, `basic_auth:`, `tls_config:`)."""
        super().__init__(workdir)
        self.target_port = target_port
        self.extra_config = extra_config
        self.scrape_options = scrape_options

    async def start(self) -> None:
        """Scrape every second, evaluate rules every second; wait until ready."""
        await self._launch(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: falco-exporter\n"
            + self.scrape_options
            + "    static_configs:\n"
            f"      - targets: ['127.0.0.1:{self.target_port}']\n" + self.extra_config,
            "prometheus",
            f"--storage.tsdb.path={self.workdir / 'data'}",
        )

    async def api(self, path: str, **params: str) -> Any:
        """GET an API path; the `data` of a successful answer."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.url}{path}", params=params) as response,
        ):
            body = await response.json()
        assert body["status"] == "success", body
        return body["data"]


# The `prometheus_for` fixture: a started Prometheus that scrapes the given exporter.
PrometheusFor = Callable[[Exporter], Awaitable[Prometheus]]


class Receiver:
    """A webhook receiver: every notification Alertmanager posts, with when it arrived."""

    def __init__(self) -> None:
        self.alerts: list[tuple[float, dict[str, Any]]] = []
        self.changed = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        """Keep each alert of the notification."""
        body = await request.json()
        arrived = time.monotonic()
        self.alerts.extend((arrived, alert) for alert in body["alerts"])
        self.changed.set()
        return web.Response(text="ok")

    def first(self, status: str, **labels: str) -> tuple[float, dict[str, Any]] | None:
        """The first alert received in that status whose labels include `labels`."""
        for arrived, alert in self.alerts:
            if alert["status"] == status and labels.items() <= alert["labels"].items():
                return arrived, alert
        return None


class Alertmanager(_Server):
    """A real Alertmanager posting every group at once, resolved notifications included."""

    name = "alertmanager"

    def __init__(self, command: str, workdir: Path, webhook_port: int) -> None:
        """`command`: the alertmanager binary (Debian names it prometheus-alertmanager)."""
        super().__init__(workdir)
        self.command = command
        self.webhook_port = webhook_port

    async def start(self) -> None:
        """Every group notified at once, resolutions too, to the webhook; wait until ready."""
        await self._launch(
            "route:\n  receiver: hook\n  group_by: [alertname, rule, k8s_pod_name]\n"
            "  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n"
            "receivers:\n  - name: hook\n    webhook_configs:\n"
            f"      - url: http://127.0.0.1:{self.webhook_port}/hook\n"
            "        send_resolved: true\n",
            self.command,
            f"--storage.path={self.workdir / 'am-data'}",
            "--cluster.listen-address=",
        )
