"""A Falco gRPC endpoint to subscribe to, and the live state of that subscription."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import grpc

from exporter.config import Config, split_host_port
from exporter.errors import CertificateFilesError


@dataclass(frozen=True)
class ClientTlsFiles:
    """The files of mutual TLS to Falco, read again on every connection attempt."""

    cert: Path
    key: Path
    ca: Path

    def credentials(self) -> grpc.ChannelCredentials:
        """Read the files now, so a rotated Secret is picked up on the next reconnect."""
        contents = {}
        for role, path in (
            ("client certificate", self.cert),
            ("client key", self.key),
            ("CA certificate", self.ca),
        ):
            try:
                contents[role] = path.read_bytes()
            except OSError as error:
                reason = error.strerror or str(error)
                raise CertificateFilesError(f"cannot read {role} {path}: {reason}") from None
        return grpc.ssl_channel_credentials(
            root_certificates=contents["CA certificate"],
            private_key=contents["client key"],
            certificate_chain=contents["client certificate"],
        )


@dataclass(frozen=True)
class Target:
    """One Falco: `name` is its label value in self-metrics and logs."""

    name: str
    address: str
    tls: ClientTlsFiles | None = None
    tls_server_name: str = ""


def client_tls(config: Config) -> ClientTlsFiles:
    """The client certificate files every TCP target uses."""
    return ClientTlsFiles(Path(config.client_cert), Path(config.client_key), Path(config.client_ca))


def tcp_target(host: str, port: int, config: Config, server_name: str = "") -> Target:
    """A Falco reached over TCP with mutual TLS; `name` is host:port ([v6]:port)."""
    name = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return Target(
        name=name,
        address=name,
        tls=client_tls(config),
        tls_server_name=config.client_tls_server_name or server_name,
    )


def static_targets(config: Config) -> list[Target]:
    """Every target named in the configuration, each once.

    The Go exporter's rule holds: with no TCP target and no discovery, the unix socket;
    except with the HTTP input on, which then is the only source (HTTP-only mode).
    """
    targets: dict[str, Target] = {}
    for entry in config.client_hostname:
        host, port = split_host_port(entry, default_port=config.client_port)
        target = tcp_target(host.lower(), port, config)
        targets.setdefault(target.name, target)
    for entry in config.targets:
        if entry.startswith("unix://"):
            targets.setdefault(entry, Target(name=entry, address=entry))
        else:
            host, port = split_host_port(entry, default_port=None)
            target = tcp_target(host.lower(), port, config)
            targets.setdefault(target.name, target)
    if not targets and not config.discover_dns and not config.http_input_address:
        targets[config.client_socket] = Target(
            name=config.client_socket, address=config.client_socket
        )
    return list(targets.values())


@dataclass(eq=False)
class TargetState:
    """What the subscription to one target reports: read by /readiness and self-metrics.

    Plain attributes rather than prometheus_client metrics: the hot path increments
    `events` once per alert, and an int costs less than a locked metric child.
    """

    name: str
    input: str = "grpc"
    connected: bool = False
    events: int = 0
    decode_errors: int = 0
    reconnects: int = 0
    last_event_time: float = 0.0
    falco_version: str = ""
    connection_errors: dict[str, int] = field(default_factory=dict)
