"""Wires the pieces and owns every task: the exporter's life, written as its plan.

start(): counter -> HTTP up (live, not ready) -> subscriptions, discovery, certificate
         watch -> ready when a target connects (or all do, with --ready-when all).
stop():  background tasks cancelled -> HTTP input closed -> subscriptions stopped -> HTTP
         finishes the last scrape and closes; the phases share one deadline.
`async with Exporter(config)` does both: the one way every command runs an exporter.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from exporter.core.counter import EventCounter
from exporter.core.labels import build_label_set
from exporter.exposition.self_metrics import ExporterCollector, render_self_metrics
from exporter.http.server import HttpServer
from exporter.inputs.grpc.discovery import DnsDiscovery
from exporter.inputs.grpc.subscriptions import Subscriptions
from exporter.inputs.grpc.targets import (
    ClientTlsFiles,
    SubscriptionSettings,
    static_targets,
    tcp_targets,
)
from exporter.inputs.http.site import TEXT_OUTPUT_FIX, HttpInput
from exporter.runtime.file_watch import watch_files
from exporter.runtime.tasks import cancel_and_wait
from exporter.serve import live_page
from exporter.serve.endpoints import Readiness, main_site, probes_site
from exporter.serve.live import LiveView
from exporter.settings.addresses import parse_listen_address
from exporter.settings.config import Config
from exporter.settings.durations import format_duration
from exporter.settings.tls import server_ssl_context

# Kubernetes' default grace period is 30 s; we finish well inside it.
SHUTDOWN_TIMEOUT = 4.0
# A shutdown phase reached after the deadline still gets this long to clean up.
_LAST_CHANCE = 0.1


class Exporter:
    """One running exporter, built from a validated Config."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic) -> None:
        """`clock` drives the series TTL; tests pass one they control."""
        self.config = config
        self.counter = EventCounter(
            build_label_set(
                config.drop_labels, dict(config.extra_labels), config.priority_name_label
            ),
            max_series=config.max_series,
            series_ttl=config.series_ttl,
            clock=clock,
        )
        self.live = LiveView(self.counter, config.recent_alerts)
        self.subscriptions = Subscriptions(
            self.counter,
            SubscriptionSettings(
                transport=config.transport,
                poll_interval=config.poll_interval,
                backoff_initial=config.reconnect_backoff_initial,
                backoff_max=config.reconnect_backoff_max,
                keepalive_time=config.keepalive_time,
                keepalive_timeout=config.keepalive_timeout,
            ),
            self.live.recording,
        )
        self._static = static_targets(config)
        self.discovery = (
            DnsDiscovery(
                config.discover_dns,
                config.discover_interval,
                tcp_targets(config),
                self.subscriptions.reconcile_discovered,
                self._static,
            )
            if config.discover_dns
            else None
        )
        self.http_input: HttpInput | None = None
        self.http_input_server: HttpServer | None = None
        if config.http_input_address:
            self.http_input = HttpInput(
                self.live.recording(self.counter.shard().add),
                config.http_input_max_body,
                clock,
            )
            input_ssl = (
                server_ssl_context(
                    config.http_input_cert, config.http_input_key, config.http_input_ca
                )
                if config.http_input_cert
                else None
            )
            self.http_input_server = HttpServer(
                self.http_input,
                config.http_input_address,
                input_ssl,
                read_timeout=config.http_input_read_timeout,
                idle_timeout=config.http_input_idle_timeout,
                name="http_input",
            )
        # grpc is loaded only where a gRPC target is configured: about 12 MiB otherwise.
        uses_grpc = bool(self._static) or self.discovery is not None
        self._collector = ExporterCollector(
            self.subscriptions.states,
            self.counter,
            self.discovery.state if self.discovery else None,
            self.http_input,
            config.certificate_files(),
            grpc_version=importlib.import_module("grpc").__version__ if uses_grpc else "",
        )
        ssl_context = (
            server_ssl_context(config.server_cert, config.server_key, config.server_ca)
            if config.server_cert
            else None
        )
        self.main_http = HttpServer(
            main_site(self.render_metrics, self.readiness, self.live_page, self.live_data),
            config.listen_address,
            ssl_context,
        )
        self.probes_http = HttpServer(probes_site(self.readiness), config.probes_listen_address)
        # Decided once: with the HTTP input and no gRPC target, there is nothing to connect.
        self._http_only = self.http_input is not None and not self._static and not self.discovery
        self._tasks: list[asyncio.Task[None]] = []
        self._log = structlog.get_logger("app")

    def render_metrics(self) -> bytes:
        """`falco_events` first, then the self-metrics."""
        # Each text is encoded and dropped in turn: at 100k series each copy is about 13 MB.
        return b"".join(
            (
                self.counter.render().encode("utf-8", "replace"),
                render_self_metrics(self._collector).encode("utf-8", "replace"),
            )
        )

    def live_page(self) -> str:
        """The page at /: what a person wants to see of Falco's alerts, without Grafana."""
        return live_page.page(self.live.state(), self.input_lines(), self.live.keeps_recent_alerts)

    def live_data(self) -> dict[str, object]:
        """/api/live: the page's data, and its updating part already rendered."""
        state = self.live.state()
        lines = self.input_lines()
        data: dict[str, object] = {
            "now": state.now,
            "minutes": [{"start": start, "by_priority": counts} for start, counts in state.minutes],
            "rows": [vars(row) for row in state.rows],
            "new_rules": [{"rule": rule, "first_seen": seen} for rule, seen in state.new_rules],
            "inputs": [{"name": n, "state": t, "healthy": ok} for n, t, ok in lines],
            "html": live_page.main_section(state, lines, self.live.keeps_recent_alerts),
        }
        if self.live.keeps_recent_alerts:
            data["recent"] = [vars(alert) for alert in state.recent]
        return data

    def input_lines(self) -> list[tuple[str, str, bool]]:
        """Each input as the live page states it: (name, state, healthy)."""
        lines = [
            (
                f"gRPC {state.name}",
                ("connected" if state.connected else "disconnected")
                + (f", Falco {state.falco_version}" if state.falco_version else "")
                + f", {state.events} alerts",
                state.connected,
            )
            for state in self.subscriptions.states()
        ]
        if self.http_input is not None and self.http_input_server is not None:
            counts, rejected = self.http_input.counts, self.http_input.rejected
            text = "listening" if self.http_input_server.listening else "not listening"
            text += f" on port {self.http_input_server.port}, {counts.events} alerts"
            refused = sum(rejected.values())
            if refused:
                text += f", {refused} refused"
            if rejected.get("text_output"):
                text += f". {TEXT_OUTPUT_FIX}"
            lines.append(("HTTP input", text, not rejected.get("text_output")))
        return lines

    def readiness(self) -> Readiness:
        """Ready while any target is connected (or all, with --ready-when all).

        With only the HTTP input there is no connection to lose: ready once it listens.
        """
        if self._http_only:
            listening = self.http_input_server is not None and self.http_input_server.listening
            return Readiness(
                ready=listening, detail=f"HTTP input {'listening' if listening else 'starting'}\n"
            )
        states = self.subscriptions.states()
        connected = sum(1 for state in states if state.connected)
        needed = len(states) if self.config.ready_when == "all" else 1
        lines = [f"{s.name} {'connected' if s.connected else 'disconnected'}" for s in states]
        summary = (
            f"{connected}/{len(states)} Falco targets connected (ready when "
            f"{self.config.ready_when})"
        )
        ready = bool(states) and connected >= needed
        return Readiness(ready=ready, detail="\n".join([summary, *lines]) + "\n")

    async def start(self) -> None:
        """Serve HTTP (live, not yet ready), then start subscribing."""
        await self.main_http.start()
        await self.probes_http.start()
        if self.http_input_server is not None:
            await self.http_input_server.start()
        self._log.info(
            "serving HTTP",
            metrics_port=self.main_http.port,
            probes_port=self.probes_http.port,
            http_input_port=self.http_input_server.port if self.http_input_server else None,
            tls=self.config.server_cert != "",
        )
        for target in self._static:
            self.subscriptions.add(target)
        if self.discovery is not None:
            self._spawn(self.discovery.run())
        if self.config.uses_tcp:
            files = list(ClientTlsFiles.of(self.config).paths)
            self._spawn(
                watch_files(
                    files, self.config.certificate_check_interval, self.subscriptions.reconnect_all
                )
            )
        if self.config.timeout > 0 and (self._static or self.discovery is not None):
            # --timeout is about gRPC targets: with the HTTP input alone there is none.
            self._spawn(self._warn_if_never_connected())
        if self.config.series_ttl > 0:
            self._spawn(self._expire_idle_series())
        self._spawn(self._sample_live())
        self._warn_if_recent_alerts_exposed()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.create_task(work))

    async def __aenter__(self) -> Exporter:
        """Start; if starting fails half-way, what did start is stopped before the error."""
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *_exc: object) -> None:
        """Stop within SHUTDOWN_TIMEOUT, every phase cleaned up."""
        self._log.info("shutting down")
        await self.stop()

    async def stop(self, grace: float = SHUTDOWN_TIMEOUT) -> None:
        """Stop reading from Falco, then let HTTP answer the last scrape and close.

        The phases share one deadline, as uvicorn's shutdown does: each gets what is left
        of it; one that overruns is cancelled and the next still runs, with at least
        _LAST_CHANCE, so every listener is closed even after a stuck phase.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        phases: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = [
            ("background tasks", self._cancel_tasks),
            *([("HTTP input", self.http_input_server.stop)] if self.http_input_server else []),
            ("subscriptions", self.subscriptions.stop),
            ("probes listener", self.probes_http.stop),
            ("metrics listener", self.main_http.stop),
        ]
        for name, phase in phases:
            try:
                await asyncio.wait_for(phase(), max(deadline - loop.time(), _LAST_CHANCE))
            except TimeoutError:
                self._log.warning("shutdown phase took too long; cut short", phase=name)

    async def _cancel_tasks(self) -> None:
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(*tasks)

    async def _expire_idle_series(self) -> None:
        """The only place series expire: every half TTL (1 s to 1 min), whether scraped or not."""
        interval = min(max(self.config.series_ttl / 2, 1.0), 60.0)
        while True:
            await asyncio.sleep(interval)
            self.counter.expire_idle()

    async def _sample_live(self) -> None:
        """The live page's history, sampled whether anyone looks or not."""
        while True:
            await asyncio.sleep(live_page.REFRESH_SECONDS)
            self.live.sample()

    def _warn_if_recent_alerts_exposed(self) -> None:
        """Output lines can carry secrets: say so when anyone on the network can read them."""
        if not self.live.keeps_recent_alerts or self.config.server_cert:
            return
        host, _ = parse_listen_address(self.config.listen_address)
        if host in {"127.0.0.1", "::1", "localhost"}:
            return
        self._log.warning(
            "--recent-alerts shows Falco's output lines (command lines, paths, maybe tokens) "
            "on / without TLS, to anyone who reaches this address",
            listen_address=self.config.listen_address,
            recent_alerts=self.config.recent_alerts,
        )

    async def _warn_if_never_connected(self) -> None:
        """The Go exporter's --timeout, without the exit: say loudly that nothing connected."""
        try:
            await asyncio.wait_for(self.subscriptions.any_connected.wait(), self.config.timeout)
        except TimeoutError:
            self._log.error(
                "not connected to Falco yet; still retrying",
                waited=format_duration(self.config.timeout),
                targets=sorted(self.subscriptions.names()),
            )
