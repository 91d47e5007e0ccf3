"""Prometheus text exposition format 0.0.4, for the parts we render ourselves."""

from __future__ import annotations

from collections.abc import Iterable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape_label_value(value: str) -> str:
    """Escape backslash, double quote and newline, as the format requires."""
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if '"' in value:
        value = value.replace('"', '\\"')
    if "\n" in value:
        value = value.replace("\n", "\\n")
    return value


def escape_help(text: str) -> str:
    """HELP text escapes only backslash and newline."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def sample_prefix(name: str, labels: Iterable[tuple[str, str]]) -> str:
    """`name{a="x",b="y"} ` with labels sorted by name, ready for the value to follow."""
    body = ",".join(f'{key}="{escape_label_value(value)}"' for key, value in sorted(labels))
    return f"{name}{{{body}}} "
