"""The parsers of setting values: raw text (flag, environment) or YAML in, a typed value out.

Each raises ValueError with a short message; config.py adds which flag, variable or key
it came from.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from exporter.settings.addresses import (
    parse_host_port,
    parse_listen_address,
    parse_port,
    split_host_port,
)
from exporter.settings.durations import parse_duration

Parser = Callable[[object], Any]


def string(raw: object) -> str:
    """The value as it was given, which must be text."""
    if not isinstance(raw, str):
        raise ValueError(f"expected a string, got {type(raw).__name__}")
    return raw


def port(raw: object) -> int:
    return parse_port(str(integer(raw)))


def integer(raw: object) -> int:
    if isinstance(raw, bool):
        raise ValueError("expected a whole number, got a boolean")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str):
        try:
            return int(raw.strip())
        except ValueError:
            pass
    raise ValueError(f"{raw!r} is not a whole number")


def duration(raw: object) -> float:
    if isinstance(raw, bool):
        raise ValueError("expected a duration, got a boolean")
    if isinstance(raw, str) and raw.strip().startswith("-"):
        raise ValueError(f"{raw.strip()!r}: a duration cannot be negative")
    seconds = float(raw) if isinstance(raw, int | float) else parse_duration(string(raw))
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def positive_duration(raw: object) -> float:
    seconds = duration(raw)
    if seconds <= 0:
        raise ValueError("must be greater than zero")
    return seconds


def optional_listen_address(raw: object) -> str:
    text = string(raw).strip()
    if text:
        parse_listen_address(text)
    return text


def listen_address(raw: object) -> str:
    parse_listen_address(string(raw))
    return string(raw)


def text_list(raw: object) -> tuple[str, ...]:
    """A YAML list, a repeated flag, or comma-separated text (environment)."""
    items = raw if isinstance(raw, list | tuple) else [raw]
    values: list[str] = []
    for item in items:
        values.extend(part.strip() for part in string(item).split(",") if part.strip())
    return tuple(values)


def hostnames(raw: object) -> tuple[str, ...]:
    values = text_list(raw)
    for value in values:
        parse_host_port(value)
    return values


def targets(raw: object) -> tuple[str, ...]:
    values = text_list(raw)
    for value in values:
        if not value.startswith("unix://"):
            split_host_port(value, default_port=None)
    return values


def dns_name(raw: object) -> str:
    value = string(raw).strip()
    if value:
        split_host_port(value, default_port=None)
    return value


def forward_url(raw: object) -> str:
    """An http:// or https:// URL with a host, or "" for no forward."""
    value = string(raw).strip()
    if not value:
        return ""
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in {"http", "https"}:
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError(f"{value!r} names no host")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number or out of range
    except ValueError:
        raise ValueError(f"{value!r} has no valid port") from None
    if parts.username or parts.password or parts.fragment:
        raise ValueError(f"{value!r}: credentials and fragments are not sent; leave them out")
    return value


_SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2}


def size(raw: object) -> int:
    """Bytes from 1048576, "1MiB", "512KiB" or "2MB"."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        number, unit = float(raw), ""
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", string(raw))
        if match is None or match.group(2).lower() not in _SIZE_UNITS:
            raise ValueError(f"{raw!r} is not a size (examples: 1048576, 1MiB, 512KiB)")
        number, unit = float(match.group(1)), match.group(2).lower()
    size = int(number * _SIZE_UNITS[unit])
    if size < 1:
        raise ValueError("must be at least 1 byte")
    return size


def format_size(size: int) -> str:
    """The shortest exact text for a size: 1MiB, 512KiB, or bytes."""
    for unit, factor in (("MiB", 1024**2), ("KiB", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def boolean(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = string(raw).strip().lower()
    if text in {"true", "yes", "1", "on"}:
        return True
    if text in {"false", "no", "0", "off"}:
        return False
    raise ValueError(f"{raw!r} is not true or false")


def count(raw: object) -> int:
    number = integer(raw)
    if number < 0:
        raise ValueError("cannot be negative")
    return number


def positive_count(raw: object) -> int:
    number = integer(raw)
    if number < 1:
        raise ValueError("must be at least 1")
    return number


def share(raw: object) -> str:
    """A whole number, or a percentage of another setting: "2500", "25%"."""
    text = str(integer(raw)) if isinstance(raw, int) and not isinstance(raw, bool) else string(raw)
    text = text.strip()
    number = text.removesuffix("%")
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"{raw!r} is not a count or a percentage (examples: 2500, 25%)") from None
    if (
        value < 0
        or (text.endswith("%") and value > 100)
        or (not text.endswith("%") and not number.isdigit())
    ):
        raise ValueError(f"{raw!r} is not a count or a percentage from 0% to 100%")
    return text


def resolve_share(text: str, whole: int) -> int:
    """A share's count: the number itself, or the percentage of `whole` (at least 1 if any)."""
    if not text.endswith("%"):
        return int(text)
    percent = float(text.removesuffix("%"))
    return max(int(whole * percent / 100), 1) if percent and whole else 0


def label_map(raw: object) -> tuple[tuple[str, str], ...]:
    """A YAML mapping, or name=field pairs (repeated flag, or commas in the environment)."""
    if isinstance(raw, dict):
        pairs = [(str(name), string(value)) for name, value in raw.items()]
    else:
        pairs = []
        for item in text_list(raw):
            name, sep, value = item.partition("=")
            if not sep or not name.strip() or not value.strip():
                raise ValueError(f"{item!r} is not label_name=output.field")
            pairs.append((name.strip(), value.strip()))
    return tuple(pairs)


def choice(vocabulary: type[StrEnum]) -> Parser:
    """One word of an enum's, in any case; the member it names."""
    words = [member.value for member in vocabulary]

    def parse(raw: object) -> StrEnum:
        value = string(raw).strip().lower()
        if value not in words:
            raise ValueError(f"{raw!r} is not one of {', '.join(words)}")
        return vocabulary(value)

    return parse
