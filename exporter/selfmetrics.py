"""The exporter's own metrics (prefix falco_exporter_), read at scrape time.

Sources keep plain numbers (TargetState per gRPC target, the HTTP input's InputCounts);
this collector turns them into metric
families when Prometheus scrapes, so the per-event path never touches a lock.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import grpc
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.counter import EventCounter
from exporter.discovery import DiscoveryState
from exporter.http_input import TARGET_NAME, HttpInput
from exporter.targets import TargetState
from exporter.tls_files import validity

PREFIX = "falco_exporter_"


class ExporterCollector(Collector):
    """Families for every target's state, the series count and build info."""

    def __init__(
        self,
        targets: Callable[[], Sequence[TargetState]],
        counter: EventCounter,
        discovery: DiscoveryState | None = None,
        http_input: HttpInput | None = None,
        certificates: Mapping[str, str] | None = None,
    ) -> None:
        """`certificates`: role -> path of every certificate file, read again at each scrape."""
        self._certificates = dict(certificates or {})
        self._http_input = http_input
        self._targets = targets
        self._counter = counter
        self._discovery = discovery

    def collect(self) -> Iterable[Metric]:
        """Build the families from the current state."""
        targets = list(self._targets())
        yield from self._target_families(targets, self._http_input)
        series = GaugeMetricFamily(
            f"{PREFIX}falco_events_series", "Current number of falco_events series."
        )
        series.add_metric([], self._counter.series_count)
        yield series
        stats = self._counter.stats
        limit = GaugeMetricFamily(
            f"{PREFIX}series_limit", "The --max-series setting (0: no limit)."
        )
        limit.add_metric([], stats.limit)
        evicted = CounterMetricFamily(
            f"{PREFIX}series_evicted", "falco_events series removed after --series-ttl idle."
        )
        evicted.add_metric([], stats.evicted)
        evicted_events = CounterMetricFamily(
            f"{PREFIX}series_evicted_events",
            "Events that were counted in falco_events series since removed by --series-ttl.",
        )
        evicted_events.add_metric([], stats.evicted_events)
        folded = CounterMetricFamily(
            f"{PREFIX}events_folded",
            "Events counted in an overflow series because --max-series was reached.",
        )
        folded.add_metric([], stats.folded)
        yield from (limit, evicted, evicted_events, folded)
        if self._discovery is not None:
            yield from self._discovery_families(self._discovery)
        if self._http_input is not None:
            rejected = CounterMetricFamily(
                f"{PREFIX}http_input_rejected",
                "Events or requests the HTTP input refused, by reason.",
                labels=["reason"],
            )
            for reason, count in sorted(self._http_input.rejected.items()):
                rejected.add_metric([reason], count)
            yield rejected
        if self._certificates:
            yield self._certificate_family()
        build = GaugeMetricFamily(
            f"{PREFIX}build_info",
            "Always 1; labels say which falco-exporter build runs.",
            labels=["version", "python_version", "grpc_version"],
        )
        build.add_metric([__version__, platform.python_version(), grpc.__version__], 1)
        yield build

    def _certificate_family(self) -> Metric:
        """Expiry of each certificate file as it is on disk now (rotation included)."""
        expiry = GaugeMetricFamily(
            f"{PREFIX}certificate_expiry_timestamp_seconds",
            "Unix time when the certificate in the file expires, by role and path.",
            labels=["role", "path"],
        )
        for role, path in sorted(self._certificates.items()):
            dates = validity(path)
            if dates is not None:
                expiry.add_metric([role, path], dates.not_after)
        return expiry

    @staticmethod
    def _discovery_families(state: DiscoveryState) -> Iterator[Metric]:
        lookups = CounterMetricFamily(
            f"{PREFIX}dns_lookups",
            "DNS lookups of --discover-dns, by result.",
            labels=["name", "result"],
        )
        lookups.add_metric([state.name, "success"], state.lookups_ok)
        lookups.add_metric([state.name, "failure"], state.lookups_failed)
        addresses = GaugeMetricFamily(
            f"{PREFIX}dns_addresses",
            "Addresses the last successful lookup returned.",
            labels=["name"],
        )
        addresses.add_metric([state.name], state.addresses)
        yield from (lookups, addresses)

    @staticmethod
    def _target_families(
        targets: Sequence[TargetState], http_input: HttpInput | None
    ) -> Iterator[Metric]:
        received = CounterMetricFamily(
            f"{PREFIX}events_received",
            "Falco events received, by target and input.",
            labels=["target", "input"],
        )
        decode_errors = CounterMetricFamily(
            f"{PREFIX}decode_errors",
            "Messages from Falco that could not be decoded and were skipped.",
            labels=["target"],
        )
        connected = GaugeMetricFamily(
            f"{PREFIX}connected",
            "1 while the subscription to the target is up, else 0.",
            labels=["target"],
        )
        reconnects = CounterMetricFamily(
            f"{PREFIX}reconnects",
            "Reconnect attempts after a failure or a closed stream.",
            labels=["target"],
        )
        errors = CounterMetricFamily(
            f"{PREFIX}connection_errors",
            "Failed connections or streams, by reason.",
            labels=["target", "reason"],
        )
        last_event = GaugeMetricFamily(
            f"{PREFIX}last_event_timestamp_seconds",
            "Unix time of the last event received from the target (0: none yet).",
            labels=["target"],
        )
        version = GaugeMetricFamily(
            f"{PREFIX}falco_version_info",
            "Always 1; the version Falco reported on connect.",
            labels=["target", "version"],
        )
        for state in targets:
            received.add_metric([state.name, "grpc"], state.events)
            last_event.add_metric([state.name], state.last_event_time)
            decode_errors.add_metric([state.name], state.decode_errors)
            connected.add_metric([state.name], 1 if state.connected else 0)
            reconnects.add_metric([state.name], state.reconnects)
            for reason, count in sorted(state.connection_errors.items()):
                errors.add_metric([state.name, reason], count)
            if state.falco_version:
                version.add_metric([state.name, state.falco_version], 1)
        if http_input is not None:
            received.add_metric([TARGET_NAME, "http"], http_input.counts.events)
            last_event.add_metric([TARGET_NAME], http_input.counts.last_event_time)
        yield from (received, decode_errors, connected, reconnects, errors, last_event, version)


def build_registry(collector: ExporterCollector) -> CollectorRegistry:
    """A registry of our own (never the global one) with process and platform metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry
