"""Falco's gRPC `falco.outputs.response` to FalcoEvent."""

from __future__ import annotations

from exporter.core.event import Event, FalcoEvent
from exporter.falcopb import outputs_pb2

# falco.schema.source numbers, for servers (0.24 to 0.30) that do not send field 9.
_DEPRECATED_SOURCE_NAMES = ("syscall", "k8s_audit", "internal", "plugin")

decode_response = outputs_pb2.response.FromString


def event_from_response(message: outputs_pb2.response) -> Event:
    """The message itself when it names its source (Falco 0.31+), else a FalcoEvent.

    Falco 0.24 to 0.30 send only the deprecated source enum (field 3); the event then
    takes its name from it. The message is never modified after decoding.
    """
    if message.source:
        return message
    number = message.source_deprecated
    source = (
        _DEPRECATED_SOURCE_NAMES[number]
        if 0 <= number < len(_DEPRECATED_SOURCE_NAMES)
        else str(number)
    )
    return FalcoEvent(
        rule=message.rule,
        priority=message.priority,
        source=source,
        hostname=message.hostname,
        tags=tuple(message.tags),
        output_fields=dict(message.output_fields),
        time=message.time,  # a Timestamp, as the message itself carries it
    )
