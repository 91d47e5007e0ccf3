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
from exporter.http.server import HttpServer
from exporter.inputs.http.rejections import TEXT_OUTPUT_FIX, Rejection
from exporter.inputs.http.site import HttpInputSite
from exporter.settings.config import HttpInputConfig
from exporter.settings.tls import server_context

# Its name in the self-metrics' `target` label, and of its port.
TARGET_NAME = "http_input"

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
    ) -> None:
        """A certificate file that cannot be used raises CertificateFilesError."""
        self.site = HttpInputSite(sink, config.max_body, clock)
        self.server = HttpServer(
            self.site,
            config.address,
            server_context(config.tls) if config.tls else None,
            read_timeout=config.read_timeout,
            idle_timeout=config.idle_timeout,
            name=TARGET_NAME,
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

    def readiness(self) -> Readiness:
        """Ready once it listens."""
        listening = self.server.listening
        return Readiness(listening, f"HTTP input {'listening' if listening else 'starting'}\n")

    def statuses(self) -> list[InputStatus]:
        """Listening or not, what it counted and refused, and the fix for Falco's text output."""
        rejected = self.site.rejected
        text = "listening" if self.server.listening else "not listening"
        text += f" on port {self.server.port}, {self.site.counts.events} alerts"
        refused = sum(rejected.values())
        if refused:
            text += f", {refused} refused"
        text_output = bool(rejected[Rejection.TEXT_OUTPUT])
        if text_output:
            text += f". {TEXT_OUTPUT_FIX}"
        return [InputStatus("HTTP input", text, not text_output)]

    def collect(self, families: Families) -> None:
        """Events received, when the last one came, and every refusal by reason."""
        counts = self.site.counts
        families.add(EVENTS_RECEIVED, (TARGET_NAME, "http"), counts.events)
        families.add(LAST_EVENT, (TARGET_NAME,), counts.last_event_time)
        rejected = families.family(REJECTED)
        for reason, count in sorted(self.site.rejected.items()):
            rejected.add((reason,), count)
