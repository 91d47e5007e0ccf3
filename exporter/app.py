"""Wires the pieces and owns every task: the exporter's life, written as its plan.

start(): counter -> HTTP up (live, not ready) -> subscriptions -> ready when one connects.
stop():  subscriptions cancelled -> HTTP finishes the last scrape and closes.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from prometheus_client import disable_created_metrics, generate_latest

from exporter.config import Config
from exporter.counter import EventCounter
from exporter.durations import format_duration
from exporter.grpc_source import GrpcSubscription, SubscriptionSettings
from exporter.http_server import (
    HttpListener,
    Readiness,
    build_main_app,
    build_probes_app,
    server_ssl_context,
)
from exporter.selfmetrics import ExporterCollector, build_registry
from exporter.targets import TargetState, target_from_config

# Kubernetes' default grace period is 30 s; we finish well inside it.
SHUTDOWN_TIMEOUT = 4.0


class Exporter:
    """One running exporter, built from a validated Config."""

    def __init__(self, config: Config) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.config = config
        self.counter = EventCounter()
        target = target_from_config(config)
        self.targets = [TargetState(name=target.name)]
        settings = SubscriptionSettings(
            transport=config.transport,
            poll_interval=config.poll_interval,
            backoff_initial=config.reconnect_backoff_initial,
            backoff_max=config.reconnect_backoff_max,
            keepalive_time=config.keepalive_time,
            keepalive_timeout=config.keepalive_timeout,
        )
        self._subscriptions = [
            GrpcSubscription(target, self.targets[0], self.counter.sink(), settings)
        ]
        self._registry = build_registry(
            ExporterCollector(lambda: self.targets, lambda: self.counter.series_count)
        )
        ssl_context = (
            server_ssl_context(config.server_cert, config.server_key, config.server_ca)
            if config.server_cert
            else None
        )
        self.main_http = HttpListener(
            build_main_app(self.render_metrics, self.readiness), config.listen_address, ssl_context
        )
        self.probes_http = HttpListener(
            build_probes_app(self.readiness), config.probes_listen_address
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._log = structlog.get_logger("app")

    def render_metrics(self) -> bytes:
        """`falco_events` first, then the self-metrics."""
        text = self.counter.render() + generate_latest(self._registry).decode("utf-8")
        return text.encode("utf-8", "replace")

    def readiness(self) -> Readiness:
        """Ready while at least one Falco target is connected."""
        connected = sum(1 for state in self.targets if state.connected)
        lines = [f"{s.name} {'connected' if s.connected else 'disconnected'}" for s in self.targets]
        summary = f"{connected}/{len(self.targets)} Falco targets connected"
        return Readiness(ready=connected > 0, detail="\n".join([summary, *lines]) + "\n")

    async def start(self) -> None:
        """Serve HTTP (live, not yet ready), then start every subscription."""
        await self.main_http.start()
        await self.probes_http.start()
        self._log.info(
            "serving HTTP",
            metrics_port=self.main_http.port,
            probes_port=self.probes_http.port,
            tls=self.config.server_cert != "",
        )
        for subscription in self._subscriptions:
            self._tasks.append(asyncio.create_task(subscription.run()))
        if self.config.timeout > 0:
            self._tasks.append(asyncio.create_task(self._warn_if_never_connected()))

    async def stop(self) -> None:
        """Stop reading from Falco, then let HTTP answer the last scrape and close."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.probes_http.stop()
        await self.main_http.stop()

    async def serve(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then shut down within SHUTDOWN_TIMEOUT."""
        await self.start()
        await self.run_until(stop)

    async def run_until(self, stop: asyncio.Event) -> None:
        """Once started: wait for `stop`, then shut down within SHUTDOWN_TIMEOUT."""
        await stop.wait()
        self._log.info("shutting down")
        try:
            await asyncio.wait_for(self.stop(), SHUTDOWN_TIMEOUT)
        except TimeoutError:
            self._log.warning("shutdown took too long; exiting anyway")

    async def _warn_if_never_connected(self) -> None:
        """The Go exporter's --timeout, without the exit: say loudly that nothing connected."""
        waits = [asyncio.create_task(state.ever_connected.wait()) for state in self.targets]
        try:
            done, _ = await asyncio.wait(
                waits, timeout=self.config.timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                self._log.error(
                    "not connected to Falco yet; still retrying",
                    waited=format_duration(self.config.timeout),
                    targets=[state.name for state in self.targets],
                )
        finally:
            for wait in waits:
                wait.cancel()
