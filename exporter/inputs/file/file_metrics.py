"""The file input's own metrics: what it counted and skipped, its checkpoints, its file."""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.core.metrics import PREFIX, FamilySpec, Kind

REJECTED = FamilySpec(
    f"{PREFIX}file_input_rejected",
    Kind.COUNTER,
    "Lines of the spool file not counted as alerts, by reason.",
    ("reason",),
)
CHECKPOINTS = FamilySpec(
    f"{PREFIX}file_input_checkpoints",
    Kind.COUNTER,
    "Checkpoints of the file input, by result (written, failed).",
    ("result",),
)
SPOOL_BYTES = FamilySpec(
    f"{PREFIX}file_input_bytes",
    Kind.GAUGE,
    "The spool file: its size, the offset read and committed, and the disk it holds.",
    ("kind",),
)


@dataclass
class FileCounts:
    """Plain numbers, written on the event loop only."""

    refused: dict[str, int]
    events: int = 0
    last_event_time: float = 0.0
    checkpoints: dict[str, int] = field(default_factory=lambda: {"written": 0, "failed": 0})
