"""The normalised Falco event: what every source produces and the counter reads.

Both wire formats (gRPC responses and http_output JSON) convert into FalcoEvent,
so nothing downstream knows where an event came from. It is a NamedTuple because
one is built per alert on the hot path and tuples are the cheapest immutable
value Python has.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple, Protocol

# Falco's priority numbers (falco.schema.priority) and their display names.
PRIORITY_NAMES: tuple[str, ...] = (
    "Emergency",
    "Alert",
    "Critical",
    "Error",
    "Warning",
    "Notice",
    "Informational",
    "Debug",
)

# Falco's JSON writes names; old releases wrote "Info" for Informational.
_PRIORITY_BY_LOWER_NAME: dict[str, int] = {
    name.lower(): number for number, name in enumerate(PRIORITY_NAMES)
}
_PRIORITY_BY_LOWER_NAME["info"] = 6

# What Falco puts in output_fields when a field has no value.
MISSING_VALUE = "<NA>"


def priority_name(number: int) -> str:
    """Display name of a priority number; a number from a future Falco stays visible."""
    if 0 <= number < len(PRIORITY_NAMES):
        return PRIORITY_NAMES[number]
    return f"Unknown({number})"


def priority_from_name(name: str) -> int | None:
    """Priority number for a name in any case, or None when Falco has no such name."""
    return _PRIORITY_BY_LOWER_NAME.get(name.lower())


class Event(Protocol):
    """What the counter reads of an alert: FalcoEvent, or a decoded gRPC response as is.

    The gRPC message has exactly these attributes, so on the hot path it is counted
    without being copied into a FalcoEvent (measured in bench/: the copy cost about
    7% of the exporter's CPU per event).
    """

    @property
    def rule(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def source(self) -> str: ...
    @property
    def hostname(self) -> str: ...
    @property
    def tags(self) -> Sequence[str]: ...
    @property
    def output_fields(self) -> Mapping[str, str]: ...
    @property
    def time(self) -> object:
        """The event's time: Falco's ISO 8601 text, or a gRPC Timestamp."""


class FalcoEvent(NamedTuple):
    """One Falco alert, whichever way it arrived."""

    rule: str
    priority: int
    source: str
    hostname: str
    tags: Sequence[str]
    output_fields: Mapping[str, str]
    output: str = ""  # Falco's formatted line: shown on the live page with --recent-alerts only
    # The event time: Falco's ISO 8601 text (JSON), or a gRPC Timestamp from a Falco before
    # 0.31; what delivery accounting compares and the delay is measured from.
    time: object = ""


# Where an input hands each event: the counter's (or the live page's wrapping of it).
EventSink = Callable[[Event], None]
