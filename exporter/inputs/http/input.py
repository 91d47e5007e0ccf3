"""The HTTP input as one of the exporter's inputs: its listener, its state and its metrics.

Falco 0.44+ posts each alert here (http_output). There is no connection of ours to lose,
so the input is ready once it listens; what it reports is what it received and refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from exporter.core.event import EventSink
from exporter.core.inputs import EVENTS_RECEIVED, LAST_EVENT, InputStatus, Readiness
from exporter.core.metrics import PREFIX, Families, FamilySpec, Kind
from exporter.http.limits import ListenerLimits
from exporter.http.server import HttpServer
from exporter.http.tls_session import HandshakeFailure
from exporter.inputs.http.rejections import FIXES
from exporter.inputs.http.site import HttpInputSite
from exporter.settings.config import HttpInputConfig
from exporter.settings.tls import server_context

# Its name in the self-metrics' `target` label, and of its port.
TARGET_NAME = "http_input"
# How long a refusal keeps the input unhealthy on the live page.
RECENT_REFUSALS = 300.0

# What to change when Falco's TLS handshake fails (docs/runbooks.md has the alert).
TLS_FIXES = {
    HandshakeFailure.PLAIN_HTTP: "Falco posts plain HTTP to this TLS port: make "
    "http_output.url an https:// URL",
    HandshakeFailure.NO_CLIENT_CERTIFICATE: "Falco presented no client certificate: set "
    "http_output.mtls: true, with client_cert and client_key",
    HandshakeFailure.UNKNOWN_CA: "Falco's client certificate is not signed by --http-input-ca: "
    "issue http_output.client_cert from that CA",
    HandshakeFailure.BAD_CLIENT_CERTIFICATE: "Falco's client certificate is expired, not yet "
    "valid or not for client use: renew http_output.client_cert",
    HandshakeFailure.SERVER_CERTIFICATE_REFUSED: "Falco does not trust this certificate: give "
    "http_output.ca_cert the CA that signed --http-input-cert (and a name Falco dials)",
    HandshakeFailure.PROTOCOL: "no TLS version or cipher in common, or not TLS at all",
    HandshakeFailure.TIMEOUT: "the TLS handshake did not finish within --http-input-read-timeout",
}

REJECTED = FamilySpec(
    f"{PREFIX}http_input_rejected",
    Kind.COUNTER,
    "Events or requests the HTTP input refused, by reason.",
    ("reason",),
)


class HttpInput:
    """Falco's http_output POSTs, on a listener of their own."""

    def __init__(
        self,
        config: HttpInputConfig,
        sink: EventSink,
        clock: Callable[[], float] = time.monotonic,
        forward: Callable[[bytes], None] | None = None,
    ) -> None:
        """A certificate file that cannot be used raises CertificateFilesError. `forward`
        takes each accepted alert's JSON too."""
        self.site = HttpInputSite(sink, config.max_body, clock, forward)
        limits = ListenerLimits(
            max_connections=config.max_connections,
            max_per_peer=config.max_connections_per_peer,
            read_timeout=config.read_timeout,
            idle_timeout=config.idle_timeout,
        )
        self.server = HttpServer(
            self.site,
            config.address,
            server_context(config.tls) if config.tls else None,
            limits=limits,
            name=TARGET_NAME,
            tls_fixes=TLS_FIXES,
        )

    async def start(self) -> None:
        """Listen."""
        await self.server.start()

    async def stop(self) -> None:
        """Stop listening; a request in flight is answered first."""
        await self.server.stop()

    @property
    def ports(self) -> Mapping[str, int]:
        """The input's port, once bound."""
        return {TARGET_NAME: self.server.port}

    @property
    def tls(self) -> Mapping[str, bool]:
        """Whether its port speaks TLS (its flags', or its web configuration's)."""
        return {TARGET_NAME: self.server.tls}

    def readiness(self) -> Readiness:
        """Ready once it listens."""
        listening = self.server.listening
        return Readiness(listening, f"HTTP input {'listening' if listening else 'starting'}\n")

    def statuses(self) -> list[InputStatus]:
        """Listening or not, what it counted and refused, and a fix for each reason refused
        lately: unhealthy while refusals go on, healthy again once they stopped (a text post
        an hour ago, since fixed, is history, not a state)."""
        text = "listening" if self.server.listening else "not listening"
        text += f" on port {self.server.port}, {self.site.counts.events} alerts"
        refused = sum(self.site.rejected.values())
        if refused:
            text += f", {refused} refused"
        recent = self.site.rejected_within(RECENT_REFUSALS)
        if recent:
            minutes = f"{RECENT_REFUSALS / 60:g}"
            fixes = "; ".join(f"{reason}: {FIXES[reason]}" for reason in recent)
            text += f". Refused in the last {minutes} minutes, {fixes}"
        return [InputStatus("HTTP input", text, self.server.listening and not recent)]

    def collect(self, families: Families) -> None:
        """Events received, when the last one came, every refusal by reason, its listener."""
        self.server.collect(families)
        counts = self.site.counts
        families.add(EVENTS_RECEIVED, (TARGET_NAME, "http"), counts.events)
        families.add(LAST_EVENT, (TARGET_NAME,), counts.last_event_time)
        rejected = families.family(REJECTED)
        for reason, count in sorted(self.site.rejected.items()):
            rejected.add((reason,), count)
