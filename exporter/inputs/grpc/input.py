"""The gRPC input (Falco up to 0.43): static targets, targets found by DNS, and the watch
that reconnects them when the client certificate files change.

grpc itself is loaded with the first subscription (subscriptions.py), so building this
input costs nothing until a target is subscribed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path

import structlog

from exporter.core.counter import EventCounter
from exporter.core.event import EventSink
from exporter.core.inputs import InputStatus, Readiness
from exporter.core.metrics import Families
from exporter.inputs.grpc import report
from exporter.inputs.grpc.discovery import DnsDiscovery
from exporter.inputs.grpc.subscriptions import Subscriptions
from exporter.inputs.grpc.targets import static_targets, tcp_targets
from exporter.runtime.file_watch import fingerprint, watch_files
from exporter.runtime.tasks import BackgroundTasks
from exporter.settings.config import GrpcConfig
from exporter.settings.durations import format_duration


class GrpcInput:
    """Subscriptions to every Falco the configuration names or DNS finds."""

    def __init__(
        self,
        config: GrpcConfig,
        counter: EventCounter,
        wrap_sink: Callable[[EventSink], EventSink],
        on_certificates_changed: Callable[[], None] = lambda: None,
    ) -> None:
        """`on_certificates_changed` hears of a rotation of the client files, as the
        subscriptions do (the held certificates' dates are read again)."""
        self._config = config
        self._on_certificates_changed = on_certificates_changed
        self.subscriptions = Subscriptions(counter, config.stream, wrap_sink)
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
        self._tasks = BackgroundTasks()
        self._log = structlog.get_logger("grpc_input")

    async def start(self) -> None:
        """Subscribe to every static target; discover and watch in the background."""
        files = [Path(path) for path in self._config.tls.paths]
        # Read before any target reads them, so that a rotation from then on is not missed.
        loaded = fingerprint(files) if self._config.uses_tcp else ()
        for target in self._static:
            self.subscriptions.add(target)
        if self.discovery is not None:
            self._tasks.spawn(self.discovery.run(), "DNS discovery")
        if self._config.uses_tcp:
            interval = self._config.certificate_check_interval
            watch = watch_files(files, interval, self._certificates_changed, loaded)
            self._tasks.spawn(watch, "client certificate watch")
        if self._config.connect_timeout > 0:
            self._tasks.spawn(self._warn_if_never_connected(), "connection deadline")

    async def stop(self) -> None:
        """Stop discovering and watching, then every subscription."""
        await self._tasks.stop()
        await self.subscriptions.stop()

    @property
    def ports(self) -> Mapping[str, int]:
        """None: the gRPC input dials out."""
        return {}

    @property
    def tls(self) -> Mapping[str, bool]:
        """None: no port of its own (its client TLS is the targets')."""
        return {}

    def target_names(self) -> set[str]:
        """The names of every target subscribed to now."""
        return self.subscriptions.names()

    def readiness(self) -> Readiness:
        """Ready while any target is connected (or all, with --ready-when all)."""
        return report.readiness(self.subscriptions.states(), self._config.ready_when)

    def statuses(self) -> list[InputStatus]:
        """One line per target."""
        return report.statuses(self.subscriptions.states())

    def collect(self, families: Families) -> None:
        """Every target's families, and discovery's."""
        state = self.discovery.state if self.discovery is not None else None
        report.collect(families, self.subscriptions.states(), state)

    def _certificates_changed(self) -> None:
        self._log.info(
            "client certificate files changed; reconnecting every target",
            files=list(self._config.tls.paths),
        )
        self._on_certificates_changed()
        self.subscriptions.reconnect_all()

    async def _warn_if_never_connected(self) -> None:
        """The Go exporter's --timeout, without the exit: say loudly that nothing connected."""
        timeout = self._config.connect_timeout
        try:
            await asyncio.wait_for(self.subscriptions.any_connected.wait(), timeout)
        except TimeoutError:
            self._log.error(
                "not connected to Falco yet; still retrying",
                waited=format_duration(timeout),
                targets=sorted(self.subscriptions.names()),
            )
