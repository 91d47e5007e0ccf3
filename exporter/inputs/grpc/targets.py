"""A Falco gRPC endpoint to subscribe to, and the live state of that subscription."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from exporter.core.event import EventSink
from exporter.settings.addresses import join_host_port, split_host_port
from exporter.settings.config import GrpcConfig, StreamConfig
from exporter.settings.tls import CertificateFilesError, TlsFiles

if TYPE_CHECKING:
    import grpc


@dataclass(frozen=True)
class ClientTlsFiles:
    """The files of mutual TLS to Falco, read again on every connection attempt."""

    cert: Path
    key: Path
    ca: Path

    @classmethod
    def of(cls, files: TlsFiles) -> ClientTlsFiles:
        """The client certificate files every TCP target uses."""
        return cls(Path(files.cert), Path(files.key), Path(files.ca))

    def describe(self) -> str:
        """The files, as a log line names them (whether a flag, a variable or a file set them)."""
        return f"client certificate {self.cert}, client key {self.key}, CA {self.ca}"

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


def tcp_targets(config: GrpcConfig) -> TcpTargetFactory:
    """Makes the targets reached over TCP with mutual TLS, named host:port ([v6]:port).

    --client-tls-server-name, when set, wins over the name the caller expects.
    """
    tls = ClientTlsFiles.of(config.tls)
    override = config.tls_server_name

    def make(host: str, port: int, server_name: str = "") -> Target:
        name = join_host_port(host, port)
        return Target(name=name, address=name, tls=tls, tls_server_name=override or server_name)

    return make


def static_targets(config: GrpcConfig) -> list[Target]:
    """Every target named in the configuration (the default socket included), each once."""
    targets: dict[str, Target] = {}
    tcp_target = tcp_targets(config)
    for entry in config.hostnames:
        host, port = split_host_port(entry, default_port=config.port)
        target = tcp_target(host.lower(), port, "")
        targets.setdefault(target.name, target)
    for entry in config.targets:
        if entry.startswith("unix://"):
            targets.setdefault(entry, Target(name=entry, address=entry))
        else:
            host, port = split_host_port(entry, default_port=None)
            target = tcp_target(host.lower(), port, "")
            targets.setdefault(target.name, target)
    return list(targets.values())


@dataclass(eq=False)
class TargetState:
    """What the subscription to one target reports: read by readiness and self-metrics.

    One writer: the target's reader thread. Everyone else only reads, and each field is
    replaced whole (a new dict for the errors), so a reader sees one value or the next,
    never a half-made one. Plain attributes rather than locked metrics: the hot path adds
    one to `events` per alert.
    """

    name: str
    connected: bool = False
    events: int = 0
    decode_errors: int = 0
    reconnects: int = 0
    last_event_time: float = 0.0
    falco_version: str = ""
    connection_errors: dict[str, int] = field(default_factory=dict)

    def count_error(self, reason: str) -> None:
        """One more failed connection or stream for `reason` (on the reader thread)."""
        errors = self.connection_errors
        self.connection_errors = {**errors, reason: errors.get(reason, 0) + 1}


@dataclass(frozen=True)
class TargetFeed:
    """What one subscription is made of: where to connect, how to read, where events go
    and where its state is reported. Built once per target, handed on whole."""

    target: Target
    stream: StreamConfig
    sink: EventSink
    state: TargetState
