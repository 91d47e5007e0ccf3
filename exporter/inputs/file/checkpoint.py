"""The file input's checkpoint: which file, the offset read to, and the counts at that offset.

Written beside the spool at every scrape, before the scrape is answered, so that it always
holds at least what Prometheus was last served. A new process starts from it: the counts
as they were served, and the lines after the offset counted again. No value Prometheus saw
is then ever lower in the next process (no counter reset) and no line is counted twice,
whatever killed the last one (docs/file-input.md). It is written to a temporary file,
fsynced, and renamed over the old one, and the directory is fsynced: a crash leaves the
old checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporter.core.labels import LabelKey
from exporter.inputs.file.spool import FileIdentity

FORMAT = 1
# A checkpoint larger than this is not ours (10,000 series take about 2 MiB).
_MAX_BYTES = 256 * 1024 * 1024


class CheckpointError(Exception):
    """A checkpoint that cannot be used; str() says why, naming the file."""


@dataclass(frozen=True)
class Checkpoint:
    """What one commit holds."""

    identity: FileIdentity
    offset: int
    label_names: tuple[str, ...]
    totals: dict[LabelKey, int]

    def encode(self) -> bytes:
        """The JSON written to disk."""
        document = {
            "format": FORMAT,
            "device": self.identity.device,
            "inode": self.identity.inode,
            "offset": self.offset,
            "labels": list(self.label_names),
            "series": [[*key, count] for key, count in self.totals.items()],
        }
        return json.dumps(document, separators=(",", ":")).encode()


def load(path: str) -> Checkpoint | None:
    """The checkpoint at `path`; None if there is none. CheckpointError if unusable."""
    try:
        with Path(path).open("rb") as file:
            raw = file.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise CheckpointError(f"{path}: cannot be read ({error.strerror})") from None
    if len(raw) > _MAX_BYTES:
        raise CheckpointError(f"{path}: larger than {_MAX_BYTES} bytes")
    try:
        return _decode(json.loads(raw), path)
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{path}: not a checkpoint ({type(error).__name__})") from None


def _decode(document: dict[str, Any], path: str) -> Checkpoint:
    """The checkpoint a document holds; CheckpointError (or a lookup error) if it holds none."""
    if document["format"] != FORMAT:
        raise CheckpointError(f"{path}: format {document['format']!r}, not {FORMAT}")
    names = tuple(str(name) for name in document["labels"])
    totals: dict[LabelKey, int] = {}
    for row in document["series"]:
        *values, count = row
        if len(values) != len(names) or not isinstance(count, int) or count < 0:
            raise CheckpointError(f"{path}: a series that does not fit its labels")
        totals[tuple(str(value) for value in values)] = count
    offset = document["offset"]
    if not isinstance(offset, int) or offset < 0:
        raise CheckpointError(f"{path}: offset {offset!r} is not a position")
    identity = FileIdentity(int(document["device"]), int(document["inode"]))
    return Checkpoint(identity, offset, names, totals)


def save(path: str, checkpoint: Checkpoint) -> None:
    """Write atomically and durably (blocking: run it off the event loop)."""
    temporary = f"{path}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        data = memoryview(checkpoint.encode())
        while data:
            data = data[os.write(descriptor, data) :]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(temporary, path)
    directory = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
