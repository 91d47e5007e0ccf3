"""A Falco gRPC endpoint to subscribe to, and the live state of that subscription."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from exporter.settings.addresses import join_host_port, split_host_port
from exporter.settings.config import Config
from exporter.settings.errors import CertificateFilesError

if TYPE_CHECKING:
    import grpc


@dataclass(frozen=True)
class ClientTlsFiles:
    """The files of mutual TLS to Falco, read again on every connection attempt."""

    cert: Path
    key: Path
    ca: Path

    @classmethod
    def of(cls, config: Config) -> ClientTlsFiles:
        """The client certificate files every TCP target uses: the one place they are named."""
        return cls(Path(config.client_cert), Path(config.client_key), Path(config.client_ca))

    def describe(self) -> str:
        """The files, as a log line names them."""
        return f"--client-cert {self.cert}, --client-key {self.key}, --client-ca {self.ca}"

    @property
    def paths(self) -> tuple[Path, Path, Path]:
        """The three files, for the rotation watch."""
        return (self.cert, self.key, self.ca)

    def credentials(self) -> grpc.ChannelCredentials:
        """Read the files now, so a rotated Secret is picked up on the next reconnect."""
        import grpc  # noqa: PLC0415 - only gRPC modes load it (memory of the HTTP-only sidecar)

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


# (host, port, the name Falco's certificate is expected to carry) -> Target
TcpTargetFactory = Callable[[str, int, str], Target]


def tcp_targets(config: Config) -> TcpTargetFactory:
    """Makes the targets reached over TCP with mutual TLS, named host:port ([v6]:port).

    --client-tls-server-name, when set, wins over the name the caller expects.
    """
    tls = ClientTlsFiles.of(config)
    override = config.client_tls_server_name

    def make(host: str, port: int, server_name: str = "") -> Target:
        name = join_host_port(host, port)
        return Target(name=name, address=name, tls=tls, tls_server_name=override or server_name)

    return make


def static_targets(config: Config) -> list[Target]:
    """Every target named in the configuration, each once.

    The Go exporter's rule holds: with no TCP target and no discovery, the unix socket;
    except with the HTTP input on, which then is the only source (HTTP-only mode).
    """
    targets: dict[str, Target] = {}
    tcp_target = tcp_targets(config)
    for entry in config.client_hostname:
        host, port = split_host_port(entry, default_port=config.client_port)
        target = tcp_target(host.lower(), port, "")
        targets.setdefault(target.name, target)
    for entry in config.targets:
        if entry.startswith("unix://"):
            targets.setdefault(entry, Target(name=entry, address=entry))
        else:
            host, port = split_host_port(entry, default_port=None)
            target = tcp_target(host.lower(), port, "")
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
    connected: bool = False
    events: int = 0
    decode_errors: int = 0
    reconnects: int = 0
    last_event_time: float = 0.0
    falco_version: str = ""
    connection_errors: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SubscriptionSettings:
    """The knobs of one subscription, taken from Config (which holds the defaults)."""

    transport: str
    poll_interval: float
    backoff_initial: float
    backoff_max: float
    keepalive_time: float
    keepalive_timeout: float
