"""Wires the pieces and owns every task: the exporter's life, written as its plan.

start(): counter -> HTTP up (live, not ready) -> every input -> ready when the inputs are
         (a gRPC target connected, the HTTP input listening).
stop():  background tasks -> every input, together -> probes -> metrics (the last scrape
         is answered); the phases share one deadline.
`async with Exporter(config)` does both: the one way every command runs an exporter.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import structlog

from exporter.core.cardinality import Fold, SeriesLimits
from exporter.core.counter import EventCounter
from exporter.core.delivery import DeliveryLedger
from exporter.core.inputs import Input, InputStatus, Readiness
from exporter.core.labels import build_label_set
from exporter.exposition.falco_events import FalcoEventsText
from exporter.exposition.self_metrics import SelfMetrics
from exporter.http.limits import METRICS, PROBES
from exporter.http.server import HttpServer
from exporter.http.web_guard import WebGuard
from exporter.inputs.assemble import build_inputs
from exporter.inputs.http.input import TARGET_NAME, HttpInput
from exporter.runtime.certificates import HeldCertificates
from exporter.runtime.open_files import RESERVED, open_files_limit
from exporter.runtime.rate_limited_log import RateLimitedLog
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
        config = _fit_open_files(config, self._log)
        self.config = config
        self.counter = _counter(config, clock)
        self.delivery = _delivery(config, clock)
        self.live = LiveView(self.counter, config.recent_alerts)
        self.guards = _web_guards(config)
        held = {
            k: v for guard in self.guards.values() for k, v in guard.certificate_files().items()
        }
        self.certificates = HeldCertificates({**config.certificate_files(), **held})
        self.inputs: list[Input] = build_inputs(
            config,
            self.counter,
            lambda sink: self.live.recording(self.delivery.watching(sink)),
            clock=clock,
            on_certificates_changed=self.certificates.reload,
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
        for part in [self.main_http, *(p.server for p in self.inputs if isinstance(p, HttpInput))]:
            if part.name in self.guards:
                part.protect(self.guards[part.name])
                self.guards[part.name].on_reload = self.certificates.reload
        parts = [part.collect for part in self.inputs]
        parts += [self.main_http.collect, self.probes_http.collect, self.certificates.collect]
        parts.append(self.delivery.collect)
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
        """`falco_events` first (rendered in steps), then the self-metrics, as parts."""
        parts = await self._falco_events.render_in_steps()
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
            if isinstance(part, HttpInput):
                listeners["http_input"] = part.server.tls
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


def _fit_open_files(config: Config, log: Any) -> Config:  # noqa: ANN401 - a structlog logger
    """The configuration, with the HTTP input's connection limit lowered if the process may
    not open that many files (after raising its soft limit as far as allowed)."""
    http_input = config.http_input
    listeners = METRICS.max_connections + PROBES.max_connections + RESERVED
    wanted = listeners + (http_input.max_connections if http_input else 0)
    limit = open_files_limit(wanted)
    if http_input is None or limit >= wanted:
        return config
    fitted = max(limit - listeners, 1)
    log.error(
        "too few file descriptors for --http-input-max-connections; lowered to fit",
        open_files_limit=limit,
        http_input_max_connections=fitted,
        wanted=http_input.max_connections,
        fix="raise the open files limit (ulimit -n), or lower --http-input-max-connections",
    )
    return dataclasses.replace(
        config, http_input=dataclasses.replace(http_input, max_connections=fitted)
    )


def _web_guards(config: Config) -> dict[str, WebGuard]:
    """A WebGuard per listener with a web configuration file (WebConfigError if unusable)."""
    files = {"metrics": config.metrics.web_config}
    if config.http_input is not None:
        files[TARGET_NAME] = config.http_input.web_config
    interval = config.web_config_check_interval
    return {name: WebGuard(path, name, interval) for name, path in files.items() if path}


def _counter(config: Config, clock: Callable[[], float]) -> EventCounter:
    """The counter of falco_events, with its label set, limits and a rate-limited fold log."""
    series = config.series
    folds = RateLimitedLog(structlog.get_logger("counter"), clock=clock)

    def folded(why: Fold, limits: SeriesLimits) -> None:
        folds.log(
            ("series limit", why),
            logging.WARNING,
            "series limit reached; new series are counted in folded series",
            reason=why,
            max_series=limits.max_series,
            per_rule=limits.per_rule,
            per_host=limits.per_host,
            per_pod=limits.per_pod,
        )

    return EventCounter(
        build_label_set(series.drop_labels, dict(series.extra_labels), series.priority_name_label),
        limits=series.limits,
        clock=clock,
        on_fold=folded,
    )


def _delivery(config: Config, clock: Callable[[], float]) -> DeliveryLedger:
    """The delivery ledger, telling the log (once a minute per kind) what it saw."""
    reports = RateLimitedLog(structlog.get_logger("delivery"), clock=clock)
    lines = {
        "alerts lost": "alerts Falco raised never reached this exporter",
        "unreadable snapshot": "a metrics snapshot without the counts delivery needs",
        "untracked": "too many Falcos to account for; raise --delivery-max-falcos",
    }

    def report(what: str, hostname: str, detail: str) -> None:
        level = logging.ERROR if what == "alerts lost" else logging.WARNING
        # One line a minute per kind, naming the latest Falco: forged hostnames by the
        # thousand cannot flood the log (the metrics have every Falco).
        reports.log(what, level, lines[what], hostname=hostname, detail=detail)

    return DeliveryLedger(
        accounting=config.delivery.accounting,
        max_falcos=config.delivery.max_falcos,
        max_label_length=config.series.limits.max_label_length or 256,
        clock=clock,
        report=report,
    )
