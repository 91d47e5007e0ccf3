"""Wires the pieces and owns every task: the exporter's life, written as its plan.

start(): counter -> HTTP up (live, not ready) -> every input -> ready when the inputs are
         (a gRPC target connected, the HTTP input listening).
stop():  background tasks -> every input, together -> probes -> metrics (the last scrape
         is answered); the phases share one deadline.
`async with Exporter(config)` does both: the one way every command runs an exporter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import structlog

from exporter.core.inputs import CommitsOnScrape as Commits
from exporter.core.inputs import Input, InputStatus, Readiness
from exporter.exposition.falco_events import FalcoEventsText
from exporter.exposition.self_metrics import SelfMetrics
from exporter.http.limits import METRICS, PROBES
from exporter.http.server import HttpServer
from exporter.inputs.assemble import build_inputs
from exporter.outputs.forward import Forwarder
from exporter.parts import counter_for, delivery_for, fit_open_files, web_guards
from exporter.runtime.certificates import HeldCertificates
from exporter.runtime.tasks import BackgroundTasks
from exporter.serve import live_page
from exporter.serve.endpoints import SCRAPER_TLS_FIXES, main_site, probes_site
from exporter.serve.live import LiveView
from exporter.serve.live_site import LivePage
from exporter.settings.addresses import parse_listen_address
from exporter.settings.config import Config
from exporter.settings.tls import server_context

# Kubernetes' default grace period is 30 s; we finish well inside it.
SHUTDOWN_TIMEOUT = 4.0
# A shutdown phase reached after the deadline still gets this long to clean up.
_LAST_CHANCE = 0.1
# Without a TTL, how often the series' growth is noted (the recency that eviction uses).
_SWEEP_SECONDS = 10.0
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


class Exporter:
    """One running exporter, built from a validated Config."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic) -> None:
        """`clock` drives the series TTL and the log rate limits; tests pass one they control.

        A certificate file that cannot be used raises CertificateFilesError.
        """
        self._log = structlog.get_logger("app")
        config = fit_open_files(config, self._log)
        self.config = config
        self.counter = counter_for(config, clock)
        self.delivery = delivery_for(config, clock)
        self.live = LiveView(self.counter, config.recent_alerts)
        self.forwarder = Forwarder(config.forward) if config.forward else None
        self.guards = web_guards(config)
        held = {
            k: v for guard in self.guards.values() for k, v in guard.certificate_files().items()
        }
        self.certificates = HeldCertificates({**config.certificate_files(), **held})
        for guard in self.guards.values():
            guard.on_reload = self.certificates.reload
        self.inputs: list[Input] = build_inputs(
            config,
            self.counter,
            lambda sink: self.live.recording(self.delivery.watching(sink)),
            clock=clock,
            on_certificates_changed=self.certificates.reload,
            forward=self.forwarder.offer if self.forwarder else None,
            guards=self.guards,
        )
        self._falco_events = FalcoEventsText(self.counter)
        page = LivePage(self.live, self.statuses, self.delivery)
        metrics_tls = config.metrics.tls
        self.main_http = HttpServer(
            main_site(self.render_metrics, self.readiness, page.html, page.data),
            config.metrics.address,
            server_context(metrics_tls) if metrics_tls else None,
            limits=METRICS,
            name="metrics",
            tls_fixes=SCRAPER_TLS_FIXES,
        )
        self.probes_http = HttpServer(
            probes_site(self.readiness), config.probes.address, limits=PROBES, name="probes"
        )
        # The probes port is never behind one: the kubelet sends no credentials.
        if "metrics" in self.guards:
            self.main_http.protect(self.guards["metrics"])
        parts = [part.collect for part in self.inputs]
        parts += [self.main_http.collect, self.probes_http.collect, self.certificates.collect]
        parts.append(self.delivery.collect)
        if self.forwarder is not None:
            parts.append(self.forwarder.collect)
        self._self_metrics = SelfMetrics(self.counter, parts)
        self._tasks = BackgroundTasks()

    @property
    def ports(self) -> Mapping[str, int]:
        """Every bound port by name: metrics, probes, and each input's (`http_input`)."""
        ports = {"metrics": self.main_http.port, "probes": self.probes_http.port}
        for part in self.inputs:
            ports.update(part.ports)
        return ports

    async def render_metrics(self) -> list[bytes]:
        """`falco_events` first (rendered in steps), then the self-metrics, as parts. An
        input with a checkpoint commits the very counts served, before they are served."""
        committing = [part.commit_point() for part in self.inputs if isinstance(part, Commits)]
        totals = self.counter.totals() if committing else None  # no await since the points
        for commit in committing:
            assert totals is not None
            await commit(totals)
        parts = await self._falco_events.render_in_steps(totals)
        parts.append(self._self_metrics.render().encode("utf-8", "replace"))
        return parts

    def readiness(self) -> Readiness:
        """Ready when every input is: each says why in its own lines."""
        states = [part.readiness() for part in self.inputs]
        return Readiness(
            bool(states) and all(state.ready for state in states),
            "".join(state.detail for state in states),
        )

    def statuses(self) -> list[InputStatus]:
        """Every input's lines for the live page."""
        return [status for part in self.inputs for status in part.statuses()]

    async def start(self) -> None:
        """Serve HTTP (live, not yet ready), then start every input."""
        await self.main_http.start()
        await self.probes_http.start()
        if self.forwarder is not None:
            await self.forwarder.start()
        for part in self.inputs:
            await part.start()
        self._log.info(
            "serving HTTP",
            **{f"{name}_port": port for name, port in self.ports.items()},
            tls=self._tls_listeners(),
        )
        self._tasks.spawn(self._sweep_series(), "series sweep")
        self._tasks.spawn(self._sample_live(), "live page history")
        self._warn_if_recent_alerts_exposed()

    def _tls_listeners(self) -> dict[str, bool]:
        """Which listener speaks TLS, each named as in the ports (the probes never do)."""
        listeners = {"metrics": self.main_http.tls, "probes": False}
        for part in self.inputs:
            listeners.update(part.tls)
        return listeners

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
        phases: list[tuple[str, Callable[[], Coroutine[Any, Any, object]]]] = [
            ("background tasks", self._tasks.stop),
            ("inputs", self._stop_inputs),
            *([("forward", self.forwarder.stop)] if self.forwarder else []),
            ("probes listener", self.probes_http.stop),
            ("metrics listener", self.main_http.stop),
        ]
        for name, phase in phases:
            try:
                await asyncio.wait_for(phase(), max(deadline - loop.time(), _LAST_CHANCE))
            except TimeoutError:
                self._log.warning("shutdown phase took too long; cut short", phase=name)

    async def _stop_inputs(self) -> None:
        await asyncio.gather(*(part.stop() for part in self.inputs))

    async def _sweep_series(self) -> None:
        """The only place series expire, and where their recency is noted for eviction: every
        half TTL (1 s to 1 min), or every 10 s without one, whether scraped or not."""
        ttl = self.config.series.limits.ttl
        interval = min(max(ttl / 2, 1.0), 60.0) if ttl else _SWEEP_SECONDS
        while True:
            await asyncio.sleep(interval)
            self.counter.sweep()

    async def _sample_live(self) -> None:
        """The live page's history, sampled whether anyone looks or not."""
        while True:
            await asyncio.sleep(live_page.REFRESH_SECONDS)
            await self.live.sample_in_steps()

    def _warn_if_recent_alerts_exposed(self) -> None:
        """Output lines can carry secrets: say so when anyone on the network can read them."""
        if not self.live.keeps_recent_alerts or self.main_http.tls:
            return
        host, _ = parse_listen_address(self.config.metrics.address)
        if host in _LOOPBACK:
            return
        self._log.warning(
            "--recent-alerts shows Falco's output lines (command lines, paths, maybe tokens) "
            "on / without TLS, to anyone who reaches this address",
            listen_address=self.config.metrics.address,
            recent_alerts=self.config.recent_alerts,
        )
