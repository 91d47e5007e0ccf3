"""Prometheus text exposition format 0.0.4: escaping, sample lines, families, gzip."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Iterable

from exporter.core.metrics import Histogram, Kind, MetricFamily

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


async def gzip_in_steps(parts: list[bytes]) -> bytes:
    """gzip_body of the parts joined, compressing one part per turn of the event loop."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = []
    for part in parts:
        out.append(compressor.compress(part))
        await asyncio.sleep(0)
    out.append(compressor.flush())
    return b"".join(out)


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


def render_family(family: MetricFamily) -> str:
    """One self-metric family: HELP, TYPE (even with no sample) and its samples.

    A counter's samples are named `<name>_total`, as Prometheus' client libraries name
    them. A few dozen samples per scrape: the formatting is kept simple.
    """
    spec = family.spec
    name = f"{spec.name}_total" if spec.kind is Kind.COUNTER else spec.name
    lines = [f"# HELP {name} {escape_help(spec.help)}\n# TYPE {name} {spec.kind}\n"]
    for values, value in family.samples:
        prefix = (
            sample_prefix(name, zip(spec.labels, values, strict=True)) if values else f"{name} "
        )
        lines.append(f"{prefix}{format_value(value)}\n")
    lines.extend(_histogram_lines(name, spec.labels, histogram) for histogram in family.histograms)
    return "".join(lines)


def _histogram_lines(name: str, label_names: tuple[str, ...], histogram: Histogram) -> str:
    """A histogram's `_bucket` lines (`le` as client libraries write it: `0.001`, `1.0`,
    `+Inf`), then `_sum` and `_count`."""
    labels = list(zip(label_names, histogram.values, strict=True))
    lines = []
    for bound, count in histogram.buckets:
        le = "+Inf" if bound == float("inf") else repr(float(bound))
        lines.append(f"{sample_prefix(f'{name}_bucket', [*labels, ('le', le)])}{count}\n")
    count = histogram.buckets[-1][1]
    if labels:
        lines.append(f"{sample_prefix(f'{name}_sum', labels)}{format_value(histogram.sum)}\n")
        lines.append(f"{sample_prefix(f'{name}_count', labels)}{count}\n")
    else:
        lines.append(f"{name}_sum {format_value(histogram.sum)}\n{name}_count {count}\n")
    return "".join(lines)


def render_families(families: Iterable[MetricFamily]) -> str:
    """Several families, in the order given."""
    return "".join(render_family(family) for family in families)
