"""Falco's gRPC `falco.outputs.response` to FalcoEvent."""

from __future__ import annotations

from exporter.event import FalcoEvent
from exporter.falcopb import outputs_pb2

# falco.schema.source numbers, for servers (0.24 to 0.30) that do not send field 9.
_DEPRECATED_SOURCE_NAMES = ("syscall", "k8s_audit", "internal", "plugin")

decode_response = outputs_pb2.response.FromString


def event_from_response(message: outputs_pb2.response) -> FalcoEvent:
    """Normalise a decoded response. Containers are kept as they are: no copies per event."""
    source = message.source
    if not source:
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
        tags=message.tags,
        output_fields=message.output_fields,
    )
