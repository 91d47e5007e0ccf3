"""The contract every input keeps: how the exporter starts, stops, asks and reports it.

An input is one way Falco's alerts reach us (the gRPC subscriptions, the HTTP input). The
exporter builds its list of inputs once from the configuration; from then on it only
calls what this Protocol declares, so no part asks which mode it runs in, and a new input
touches no other part.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from exporter.core.labels import LabelKey
from exporter.core.metrics import PREFIX, Families, FamilySpec, Kind


@dataclass(frozen=True)
class InputStatus:
    """One line of the live page's inputs: what it is, its state in words, and whether
    that state is healthy (the page marks it green or red)."""

    name: str
    state: str
    healthy: bool


@dataclass(frozen=True)
class Readiness:
    """Whether something is ready, and lines of text that say why (the probe's body)."""

    ready: bool
    detail: str


class Input(Protocol):
    """One source of Falco's alerts."""

    async def start(self) -> None:
        """Begin receiving; a port that cannot be bound raises OSError."""

    async def stop(self) -> None:
        """Stop receiving; what was received is counted. The caller bounds the time."""

    @property
    def ports(self) -> Mapping[str, int]:
        """The ports it listens on, by name (`http_input`), once started; none for a client."""

    @property
    def tls(self) -> Mapping[str, bool]:
        """Whether each of its ports speaks TLS, by the names of `ports`."""

    def readiness(self) -> Readiness:
        """Whether it can receive alerts now, and why not."""

    def statuses(self) -> list[InputStatus]:
        """Its state for a person: one line per target or listener."""

    def collect(self, families: Families) -> None:
        """Add its self-metrics to the scrape."""


@runtime_checkable
class CommitsOnScrape(Protocol):
    """An input that keeps a checkpoint of what each scrape served (the file input)."""

    def commit_point(self) -> Callable[[Mapping[LabelKey, int]], Awaitable[None]]:
        """Where it stands now; the result, called with the counter's totals taken at once
        after, writes them as its checkpoint before the scrape is answered."""


# Families that every input reports, so that one family holds every input's samples.
EVENTS_RECEIVED = FamilySpec(
    f"{PREFIX}events_received",
    Kind.COUNTER,
    "Falco events received, by target and input.",
    ("target", "input"),
)
LAST_EVENT = FamilySpec(
    f"{PREFIX}last_event_timestamp_seconds",
    Kind.GAUGE,
    "Unix time of the last event received from the target (0: none yet).",
    ("target",),
)
