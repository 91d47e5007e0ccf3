"""A Falco gRPC endpoint to subscribe to, and the live state of that subscription."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from exporter.config import Config


class CertificateFilesError(Exception):
    """A client certificate, key or CA file could not be read; the message names it."""


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


def target_from_config(config: Config) -> Target:
    """The Go exporter's rule: a hostname means TCP with mutual TLS, else the unix socket."""
    if not config.uses_tcp:
        return Target(name=config.client_socket, address=config.client_socket)
    address = f"{config.client_hostname}:{config.client_port}"
    return Target(
        name=address,
        address=address,
        tls=ClientTlsFiles(
            Path(config.client_cert), Path(config.client_key), Path(config.client_ca)
        ),
        tls_server_name=config.client_tls_server_name,
    )


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
    ever_connected: asyncio.Event = field(default_factory=asyncio.Event)
