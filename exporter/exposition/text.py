"""Prometheus text exposition format 0.0.4, for the parts we render ourselves."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence

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


def gzip_body(body: bytes) -> bytes:
    """The body gzip-compressed at level 1: the exposition repeats itself, so the fastest
    level already shrinks it about tenfold (docs/performance.md), at a fraction of the
    render's cost."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return compressor.compress(body) + compressor.flush()


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header allows gzip (`gzip;q=0` refuses it)."""
    for item in accept_encoding.lower().split(","):
        name, _, params = item.strip().partition(";")
        if name.strip() in ("gzip", "*"):
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def format_value(value: float) -> str:
    """A sample value: integers as integers, other floats as Python prints them."""
    if isinstance(value, int) or value.is_integer():
        return str(int(value))
    if value != value:  # noqa: PLR0124 - NaN is the one value not equal to itself
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


class Family:
    """One metric family of the self-metrics: HELP, TYPE and its samples, as text.

    A counter's samples are named `<name>_total`, as Prometheus' client libraries name
    them. A few dozen samples per scrape: the formatting is kept simple.
    """

    def __init__(self, name: str, kind: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name = f"{name}_total" if kind == "counter" else name
        self._head = f"# HELP {self.name} {escape_help(help_text)}\n# TYPE {self.name} {kind}\n"
        self._labels = tuple(labels)
        self._lines: list[str] = []

    def add(self, values: Sequence[str], value: float) -> None:
        """One sample: its label values in the order of the family's labels."""
        if self._labels:
            prefix = sample_prefix(self.name, zip(self._labels, values, strict=True))
        else:
            prefix = f"{self.name} "
        self._lines.append(f"{prefix}{format_value(value)}\n")

    def render(self) -> str:
        """The family as text format 0.0.4 (HELP and TYPE even with no sample)."""
        return self._head + "".join(self._lines)
