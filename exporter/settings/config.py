"""The configuration the exporter reads: the flat settings grouped into one immutable tree.

This is the one place that decides which inputs exist. `grpc` is None unless some Falco is
to be read over gRPC (the Go exporter's unix socket is the default only when no other input
is configured); `http_input` is None unless it has an address. Nothing after this asks
which mode the exporter runs in: it looks at which parts of the tree are there.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from exporter.core.cardinality import SeriesLimits
from exporter.core.labels import WORKLOAD_LABEL
from exporter.settings import values
from exporter.settings.choices import EventLoopChoice, LogFormat, LogLevel, ReadyWhen, Transport
from exporter.settings.schema import Settings
from exporter.settings.tls import TlsFiles


@dataclass(frozen=True)
class StreamConfig:
    """How one gRPC subscription reads, waits and reconnects."""

    transport: Transport
    poll_interval: float
    backoff_initial: float
    backoff_max: float
    keepalive_time: float
    keepalive_timeout: float


@dataclass(frozen=True)
class GrpcConfig:
    """The gRPC input (Falco up to 0.43): its targets, their TLS and its policies."""

    hostnames: tuple[str, ...]  # --client-hostname entries: host, or host:port
    port: int  # the port of a host given without one
    targets: tuple[str, ...]  # host:port or unix:///path, the default socket included
    discover_dns: str
    discover_interval: float
    ready_when: ReadyWhen
    tls: TlsFiles  # the client certificate every TCP target is dialled with
    tls_server_name: str
    certificate_check_interval: float
    connect_timeout: float  # --timeout: how long before "not connected yet" is an error
    stream: StreamConfig
    only_the_socket: bool = False  # no input named: the socket, as the Go exporter did

    @property
    def uses_tcp(self) -> bool:
        """True when some Falco is reached over TCP with mutual TLS."""
        return bool(
            self.hostnames
            or self.discover_dns
            or any(not target.startswith("unix://") for target in self.targets)
        )


@dataclass(frozen=True)
class HttpInputConfig:
    """The HTTP input (Falco 0.44+'s http_output)."""

    address: str
    tls: TlsFiles | None
    max_body: int
    max_connections: int
    max_connections_per_peer: int
    read_timeout: float
    idle_timeout: float
    web_config: str = ""  # --http-input-web-config-file


@dataclass(frozen=True)
class ForwardConfig:
    """Where the HTTP input's accepted alerts also go (docs/falcosidekick.md)."""

    url: str
    max_queued_bytes: int

    @property
    def scheme(self) -> str:
        """http or https."""
        return urllib.parse.urlsplit(self.url).scheme

    @property
    def host(self) -> str:
        """The host name or address, without IPv6 brackets."""
        return urllib.parse.urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        """The URL's port, or its scheme's."""
        parts = urllib.parse.urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def target(self) -> str:
        """The request target: path and query, "/" at least."""
        parts = urllib.parse.urlsplit(self.url)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


@dataclass(frozen=True)
class FileInputConfig:
    """The file input (Falco's file_output, shared with the sidecar): its file, and the
    checkpoint written beside it (docs/file-input.md)."""

    path: str

    @property
    def checkpoint(self) -> str:
        """Where the committed offset and counts are kept."""
        return self.path + ".checkpoint"


@dataclass(frozen=True)
class ListenerConfig:
    """One of the exporter's own ports: its address, and TLS if it serves it."""

    address: str
    tls: TlsFiles | None = None
    web_config: str = ""  # --web.config.file (the main port only)


@dataclass(frozen=True)
class SeriesConfig:
    """The labels of falco_events and the limits on its series."""

    drop_labels: tuple[str, ...]
    extra_labels: tuple[tuple[str, str], ...]
    priority_name_label: bool
    workload_label: bool  # --workload-label, unless --drop-labels names it too
    limits: SeriesLimits


@dataclass(frozen=True)
class DeliveryConfig:
    """Accounting for each Falco's alerts from its metrics snapshots (docs/delivery.md)."""

    accounting: bool
    max_falcos: int


@dataclass(frozen=True)
class Config:
    """Everything the exporter reads, built once at start-up."""

    settings: Settings  # the flat values, for --check-config and the start-up log
    grpc: GrpcConfig | None
    http_input: HttpInputConfig | None
    forward: ForwardConfig | None
    file_input: FileInputConfig | None
    metrics: ListenerConfig
    probes: ListenerConfig
    series: SeriesConfig
    delivery: DeliveryConfig
    recent_alerts: int
    event_loop: EventLoopChoice
    log_level: LogLevel
    log_format: LogFormat
    web_config_check_interval: float = 5.0

    def certificate_files(self) -> dict[str, str]:
        """Every certificate file the exporter holds, by role (keys are not certificates)."""
        roles: dict[str, str] = {}
        if self.grpc is not None and self.grpc.uses_tcp:
            roles.update(client=self.grpc.tls.cert, client_ca=self.grpc.tls.ca)
        if self.metrics.tls is not None:
            roles.update(server=self.metrics.tls.cert, server_ca=self.metrics.tls.ca)
        if self.http_input is not None and self.http_input.tls is not None:
            roles.update(http_input=self.http_input.tls.cert, http_input_ca=self.http_input.tls.ca)
        return {role: path for role, path in roles.items() if path}

    def summary(self) -> dict[str, str]:
        """Where alerts come from and where they are served, in a few words for a person."""
        inputs = []
        if self.grpc is not None:
            inputs += [f"gRPC {host}" for host in self.grpc.hostnames]
            inputs += [f"gRPC {target}" for target in self.grpc.targets]
            if self.grpc.discover_dns:
                inputs.append(f"gRPC to every address of {self.grpc.discover_dns}")
        if self.http_input is not None:
            tls = " (TLS)" if self.http_input.tls else ""
            inputs.append(f"HTTP input {self.http_input.address}{tls}")
        if self.file_input is not None:
            inputs.append(f"file input {self.file_input.path}")
        return {
            "inputs": ", ".join(inputs),
            "metrics": self.metrics.address
            + (" (TLS)" if self.metrics.tls else "")
            + (f" (web config {self.metrics.web_config})" if self.metrics.web_config else ""),
            "probes": self.probes.address,
        }


def _tls(cert: str, key: str, ca: str) -> TlsFiles | None:
    return TlsFiles(cert, key, ca) if cert else None


def _grpc(settings: Settings) -> GrpcConfig | None:
    targets = settings.targets
    named = settings.client_hostname or targets or settings.discover_dns
    if not named:
        if settings.http_input_address or settings.file_input:
            return None  # the HTTP or file input alone: nothing to dial
        targets = (settings.client_socket,)  # the Go exporter's default
    return GrpcConfig(
        hostnames=settings.client_hostname,
        port=settings.client_port,
        targets=targets,
        discover_dns=settings.discover_dns,
        discover_interval=settings.discover_interval,
        ready_when=settings.ready_when,
        tls=TlsFiles(settings.client_cert, settings.client_key, settings.client_ca),
        tls_server_name=settings.client_tls_server_name,
        certificate_check_interval=settings.certificate_check_interval,
        connect_timeout=settings.timeout,
        stream=StreamConfig(
            transport=settings.transport,
            poll_interval=settings.poll_interval,
            backoff_initial=settings.reconnect_backoff_initial,
            backoff_max=settings.reconnect_backoff_max,
            keepalive_time=settings.keepalive_time,
            keepalive_timeout=settings.keepalive_timeout,
        ),
        only_the_socket=not named,
    )


def build_config(settings: Settings) -> Config:
    """The tree of validated settings (see load.load_config, which validates first)."""
    http_input = None
    if settings.http_input_address:
        http_input = HttpInputConfig(
            address=settings.http_input_address,
            tls=_tls(settings.http_input_cert, settings.http_input_key, settings.http_input_ca),
            max_body=settings.http_input_max_body,
            max_connections=settings.http_input_max_connections,
            max_connections_per_peer=settings.http_input_max_connections_per_peer,
            read_timeout=settings.http_input_read_timeout,
            idle_timeout=settings.http_input_idle_timeout,
            web_config=settings.http_input_web_config_file,
        )
    return Config(
        settings=settings,
        grpc=_grpc(settings),
        http_input=http_input,
        forward=(
            ForwardConfig(settings.forward_url, settings.forward_queue_size)
            if settings.forward_url
            else None
        ),
        file_input=FileInputConfig(settings.file_input) if settings.file_input else None,
        metrics=ListenerConfig(
            settings.listen_address,
            _tls(settings.server_cert, settings.server_key, settings.server_ca),
            settings.web_config_file,
        ),
        probes=ListenerConfig(settings.probes_listen_address),
        series=SeriesConfig(
            drop_labels=tuple(label for label in settings.drop_labels if label != WORKLOAD_LABEL),
            extra_labels=settings.extra_labels,
            priority_name_label=settings.priority_name_label,
            workload_label=settings.workload_label and WORKLOAD_LABEL not in settings.drop_labels,
            limits=SeriesLimits(
                max_series=settings.max_series,
                per_rule=values.resolve_share(settings.max_series_per_rule, settings.max_series),
                per_host=values.resolve_share(settings.max_series_per_host, settings.max_series),
                per_pod=values.resolve_share(settings.max_series_per_pod, settings.max_series),
                max_label_length=settings.max_label_length,
                ttl=settings.series_ttl,
            ),
        ),
        delivery=DeliveryConfig(settings.delivery_accounting, settings.delivery_max_falcos),
        recent_alerts=settings.recent_alerts,
        event_loop=settings.event_loop,
        log_level=settings.log_level,
        log_format=settings.log_format,
        web_config_check_interval=settings.web_config_check_interval,
    )
