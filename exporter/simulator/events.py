"""Sample events in Falco's JSON form, turned into the gRPC responses Falco would send."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from exporter.falcopb import outputs_pb2
from exporter.inputs.falco_json.event import event_from_json

_DEPRECATED_SOURCE_NUMBERS = {"syscall": 0, "k8s_audit": 1, "internal": 2}
_PLUGIN_SOURCE_NUMBER = 3


def bundled_events_path() -> Path:
    """The sample events shipped with the package (the demo's walkthrough among them)."""
    return Path(str(resources.files("exporter.simulator") / "data" / "sample-events.jsonl"))


def response_from_json(document: object) -> outputs_pb2.response:
    """The gRPC response Falco sends for the alert it would write as this JSON."""
    event = event_from_json(document)
    assert isinstance(document, dict)  # event_from_json checked it
    message = outputs_pb2.response(
        rule=event.rule,
        priority=event.priority,  # type: ignore[arg-type]
        source_deprecated=_DEPRECATED_SOURCE_NUMBERS.get(  # type: ignore[arg-type]
            event.source, _PLUGIN_SOURCE_NUMBER
        ),
        source=event.source,
        hostname=event.hostname,
        output=str(document.get("output", "")),
        tags=list(event.tags),
        output_fields=dict(event.output_fields),
    )
    if isinstance(document.get("time"), str):
        message.time.FromJsonString(document["time"])
    return message


def load_documents(path: Path) -> list[dict[str, Any]]:
    """Read a JSONL file of Falco events; a line that is no event is an error naming it."""
    documents = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                document = json.loads(line)
                event_from_json(document)
            except ValueError as error:
                raise ValueError(f"{path}:{number}: {error}") from error
            documents.append(document)
    return documents


def load_responses(path: Path) -> list[outputs_pb2.response]:
    """The gRPC responses Falco would send for the events of a JSONL file."""
    return [response_from_json(document) for document in load_documents(path)]
