"""Falco's JSON event (json_output / http_output) to FalcoEvent
(docs/falco-wire-contract.md#falco-json-event).

The gRPC path carries every output field as a string; JSON carries them typed.
render_field_value turns a JSON value into exactly the string gRPC would carry,
so the same alert gives the same `falco_events` series by either path.
"""

from __future__ import annotations

import json
from collections.abc import ItemsView, Iterator, Mapping
from enum import StrEnum
from typing import Any

from exporter.core.event import MISSING_VALUE, FalcoEvent, priority_from_name


class Problem(StrEnum):
    """Why a JSON document is not a Falco event; the inputs count each by its value."""

    NOT_AN_EVENT = "not_an_event"
    UNKNOWN_PRIORITY = "unknown_priority"


class EventFormatError(ValueError):
    """A JSON document that is not a Falco event; the message says why, briefly."""

    def __init__(self, message: str, reason: Problem = Problem.NOT_AN_EVENT) -> None:
        super().__init__(message)
        self.reason = reason


def render_field_value(value: object) -> str:
    """The string gRPC would carry for a typed JSON output field value."""
    if isinstance(value, str):
        return valid_text(value)
    if value is None:
        return MISSING_VALUE
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return ",".join(render_field_value(item) for item in value)
    return valid_text(json.dumps(value, separators=(",", ":"), sort_keys=True))


def valid_text(text: str) -> str:
    """The text with lone surrogates (JSON's "\\ud800") replaced, so it encodes as UTF-8."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def event_from_json(document: object) -> FalcoEvent:
    """Convert one decoded JSON document; raise EventFormatError if it is no Falco event."""
    if not isinstance(document, dict):
        raise EventFormatError("event is not a JSON object")
    # Every event takes this path: ASCII strings are taken as they are, in line; anything
    # else goes through the helpers, which check and explain.
    rule, priority_text = document.get("rule"), document.get("priority")
    if type(rule) is not str or not rule.isascii():
        rule = _required_text(document, "rule")
    if type(priority_text) is not str or not priority_text.isascii():
        priority_text = _required_text(document, "priority")
    priority = priority_from_name(priority_text)
    if priority is None:
        raise EventFormatError(f"unknown priority {priority_text[:40]!r}", Problem.UNKNOWN_PRIORITY)
    source, hostname = document.get("source"), document.get("hostname")
    if type(source) is not str or not source.isascii():
        source = _optional_text(document, "source")
    if type(hostname) is not str or not hostname.isascii():
        hostname = _optional_text(document, "hostname")
    return FalcoEvent(
        rule=rule,
        priority=priority,
        source=source,
        hostname=hostname,
        tags=_tags(document.get("tags")),
        output_fields=_fields(document.get("output_fields")),
        output=_output(document.get("output")),
        time=_time(document.get("time")),
    )


def _required_text(document: Mapping[str, Any], key: str) -> str:
    value = document.get(key)
    if value is None:
        raise EventFormatError(f"missing {key!r}")
    if not isinstance(value, str):
        raise EventFormatError(f"{key!r} is not a string")
    return valid_text(value)


def _optional_text(document: Mapping[str, Any], key: str) -> str:
    value = document.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise EventFormatError(f"{key!r} is not a string")
    return valid_text(value)


def _output(value: object) -> str:
    """The output line, for the live page only: never a reason to refuse an event."""
    return valid_text(value) if isinstance(value, str) else ""


def _time(value: object) -> str:
    """The event time as Falco writes it (ISO 8601, UTC); not a reason to refuse an event."""
    return value if type(value) is str else ""


def _tags(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise EventFormatError("'tags' is not a list of strings")
    try:
        joined = "".join(value)  # one C pass checks every item is a string
    except TypeError:
        raise EventFormatError("'tags' is not a list of strings") from None
    if joined.isascii():
        return tuple(value)
    return tuple(valid_text(tag) for tag in value)


def _fields(value: object) -> Mapping[str, str]:
    if value is None:
        return _NO_FIELDS
    if not isinstance(value, dict):
        raise EventFormatError("'output_fields' is not an object")
    return JsonFields(value)


class JsonFields(Mapping[str, str]):
    """output_fields as gRPC would carry them, each value rendered when it is read.

    An event has a dozen or more fields and the labels read two to four: rendering
    them all was a third of the HTTP input's own cost per event (docs/performance.md).
    A value too deeply nested to render reads as Falco's missing value, so the alert
    is still counted.
    """

    __slots__ = ("_raw",)

    def __init__(self, raw: dict[str, object]) -> None:
        self._raw = raw

    def __getitem__(self, key: str) -> str:
        return _render_or_missing(self._raw[key])

    def get(self, key: str, default: Any = None) -> Any:  # noqa: ANN401 - Mapping.get's own
        """The rendered value, or `default` without rendering anything."""
        value = self._raw.get(key, _ABSENT)
        return default if value is _ABSENT else _render_or_missing(value)

    def __iter__(self) -> Iterator[str]:
        return (valid_text(key) for key in self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def items(self) -> ItemsView[str, str]:
        """Every field rendered (a key with a lone surrogate included)."""
        return ItemsView(
            {valid_text(key): _render_or_missing(item) for key, item in self._raw.items()}
        )


_ABSENT = object()
_NO_FIELDS: Mapping[str, str] = {}


def _render_or_missing(value: object) -> str:
    try:
        return render_field_value(value)
    except RecursionError:
        return MISSING_VALUE
