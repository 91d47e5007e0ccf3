"""The exporter's own metrics (prefix falco_exporter_), read at scrape time.

Sources keep plain numbers (TargetState per gRPC target, the HTTP input's InputCounts);
this collector turns them into metric families when Prometheus scrapes, so the
per-event path never touches a lock. Rendered here, with the process' own metrics,
rather than by a client library: it would be the largest import of the HTTP-only
sidecar, which runs on every node.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator, Mapping, Sequence

from exporter import __version__
from exporter.core.counter import EventCounter
from exporter.exposition.process_metrics import process_families
from exporter.exposition.text import Family
from exporter.inputs.grpc.discovery import DiscoveryState
from exporter.inputs.grpc.targets import TargetState
from exporter.inputs.http.site import TARGET_NAME, HttpInput
from exporter.settings.tls import validity

PREFIX = "falco_exporter_"


class ExporterCollector:
    """Families for every target's state, the series count and build info."""

    def __init__(
        self,
        targets: Callable[[], Sequence[TargetState]],
        counter: EventCounter,
        discovery: DiscoveryState | None = None,
        http_input: HttpInput | None = None,
        certificates: Mapping[str, str] | None = None,
        *,
        grpc_version: str = "",
    ) -> None:
        """`certificates`: role -> path of every certificate file, read again at each scrape.

        `grpc_version` is empty where no gRPC target is configured: grpc is not loaded.
        """
        self._grpc_version = grpc_version
        self._certificates = dict(certificates or {})
        self._http_input = http_input
        self._targets = targets
        self._counter = counter
        self._discovery = discovery

    def collect(self) -> Iterator[Family]:
        """Build the families from the current state."""
        targets = list(self._targets())
        yield from self._target_families(targets, self._http_input)
        stats = self._counter.stats
        for name, kind, help_text, value in (
            ("falco_events_series", "gauge", "Current number of falco_events series.",
             self._counter.series_count),
            ("series_limit", "gauge", "The --max-series setting (0: no limit).", stats.limit),
            ("series_evicted", "counter", "falco_events series removed after --series-ttl idle.",
             stats.evicted),
            ("series_evicted_events", "counter",
             "Events that were counted in falco_events series since removed by --series-ttl.",
             stats.evicted_events),
            ("events_folded", "counter",
             "Events counted in an overflow series because --max-series was reached.",
             stats.folded),
        ):  # fmt: skip
            family = Family(f"{PREFIX}{name}", kind, help_text)
            family.add((), value)
            yield family
        if self._discovery is not None:
            yield from self._discovery_families(self._discovery)
        if self._http_input is not None:
            rejected = Family(
                f"{PREFIX}http_input_rejected",
                "counter",
                "Events or requests the HTTP input refused, by reason.",
                ["reason"],
            )
            for reason, count in sorted(self._http_input.rejected.items()):
                rejected.add([reason], count)
            yield rejected
        if self._certificates:
            yield self._certificate_family()
        build = Family(
            f"{PREFIX}build_info",
            "gauge",
            "Always 1; labels say which falco-exporter build runs.",
            ["version", "python_version", "grpc_version"],
        )
        build.add([__version__, platform.python_version(), self._grpc_version], 1)
        yield build

    def _certificate_family(self) -> Family:
        """Expiry of each certificate file as it is on disk now (rotation included)."""
        expiry = Family(
            f"{PREFIX}certificate_expiry_timestamp_seconds",
            "gauge",
            "Unix time when the certificate in the file expires, by role and path.",
            ["role", "path"],
        )
        for role, path in sorted(self._certificates.items()):
            dates = validity(path)
            if dates is not None:
                expiry.add([role, path], dates.not_after)
        return expiry

    @staticmethod
    def _discovery_families(state: DiscoveryState) -> Iterator[Family]:
        lookups = Family(
            f"{PREFIX}dns_lookups",
            "counter",
            "DNS lookups of --discover-dns, by result.",
            ["name", "result"],
        )
        lookups.add([state.name, "success"], state.lookups_ok)
        lookups.add([state.name, "failure"], state.lookups_failed)
        addresses = Family(
            f"{PREFIX}dns_addresses",
            "gauge",
            "Addresses the last successful lookup returned.",
            ["name"],
        )
        addresses.add([state.name], state.addresses)
        yield from (lookups, addresses)

    @staticmethod
    def _target_families(
        targets: Sequence[TargetState], http_input: HttpInput | None
    ) -> Iterator[Family]:
        received = Family(
            f"{PREFIX}events_received",
            "counter",
            "Falco events received, by target and input.",
            ["target", "input"],
        )
        decode_errors = Family(
            f"{PREFIX}decode_errors",
            "counter",
            "Messages from Falco that could not be decoded and were skipped.",
            ["target"],
        )
        connected = Family(
            f"{PREFIX}connected",
            "gauge",
            "1 while the subscription to the target is up, else 0.",
            ["target"],
        )
        reconnects = Family(
            f"{PREFIX}reconnects",
            "counter",
            "Reconnect attempts after a failure or a closed stream.",
            ["target"],
        )
        errors = Family(
            f"{PREFIX}connection_errors",
            "counter",
            "Failed connections or streams, by reason.",
            ["target", "reason"],
        )
        last_event = Family(
            f"{PREFIX}last_event_timestamp_seconds",
            "gauge",
            "Unix time of the last event received from the target (0: none yet).",
            ["target"],
        )
        version = Family(
            f"{PREFIX}falco_version_info",
            "gauge",
            "Always 1; the version Falco reported on connect.",
            ["target", "version"],
        )
        for state in targets:
            received.add([state.name, "grpc"], state.events)
            last_event.add([state.name], state.last_event_time)
            decode_errors.add([state.name], state.decode_errors)
            connected.add([state.name], 1 if state.connected else 0)
            reconnects.add([state.name], state.reconnects)
            for reason, count in sorted(state.connection_errors.items()):
                errors.add([state.name, reason], count)
            if state.falco_version:
                version.add([state.name, state.falco_version], 1)
        if http_input is not None:
            received.add([TARGET_NAME, "http"], http_input.counts.events)
            last_event.add([TARGET_NAME], http_input.counts.last_event_time)
        yield from (received, decode_errors, connected, reconnects, errors, last_event, version)


def render_self_metrics(collector: ExporterCollector) -> str:
    """Every self-metric family, then the process' own, as text."""
    families = [*collector.collect(), *process_families()]
    return "".join(family.render() for family in families)
