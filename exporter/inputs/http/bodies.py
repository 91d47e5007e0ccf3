"""What a POST's body holds, before any of it is counted: its bytes once its
Content-Encoding is undone, whether it is Falco's text output, and its JSON documents.

Bodies may be one JSON object, newline-delimited JSON (replays and batching senders) or a
JSON array, optionally gzip- or deflate-compressed. Nothing here counts or logs.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator

from exporter.core.event import PRIORITY_NAMES
from exporter.http.messages import Refusal
from exporter.inputs.falco_json.lines import NotJson, parse
from exporter.inputs.http.rejections import Reason, Rejection

# Falco's text line: "<time>: <Priority> <output>", the time in either of its formats.
_FALCO_TEXT_LINE = re.compile(rb"\s*\S+: (%s) " % "|".join([*PRIORITY_NAMES, "Info"]).encode())
_DECOMPRESSORS: dict[bytes, int] = {
    b"gzip": 16 + zlib.MAX_WBITS,
    b"x-gzip": 16 + zlib.MAX_WBITS,
    b"deflate": zlib.MAX_WBITS,
}


class BodyError(Exception):
    """A body that cannot be read as sent: the reason and a detail for the sender."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def decoded(body: bytes, content_encoding: bytes, limit: int) -> bytes:
    """The body as sent before its Content-Encoding; never more than `limit` bytes made."""
    encoding = content_encoding.strip().lower()
    if not encoding or encoding == b"identity":
        return body
    wbits = _DECOMPRESSORS.get(encoding)
    if wbits is None:
        name = encoding.decode("latin-1")[:40]
        raise BodyError(
            Rejection.UNSUPPORTED_ENCODING,
            f"Content-Encoding {name!r} is not supported (gzip, deflate or none)",
        )
    decompressor = zlib.decompressobj(wbits)
    try:
        data = decompressor.decompress(body, limit + 1)
    except zlib.error as error:
        raise BodyError(
            Rejection.BAD_ENCODING, f"body is not valid for its Content-Encoding: {error}"
        ) from None
    if len(data) > limit:
        raise BodyError(Refusal.TOO_LARGE, f"body larger than {limit} bytes once decompressed")
    if not decompressor.eof or decompressor.unused_data:
        raise BodyError(
            Rejection.BAD_ENCODING,
            "body is not valid for its Content-Encoding: truncated or trailing data",
        )
    return data


def is_falco_text(content_type: bytes, body: bytes) -> bool:
    """Falco's text output: text/plain, or a line shaped like Falco's, and not JSON."""
    start = body.lstrip()[:1]
    if start in (b"{", b"["):
        return False
    return content_type.lower().startswith(b"text/plain") or bool(_FALCO_TEXT_LINE.match(body))


def is_one_line(text: str) -> bool:
    """A body of one document on one line, not an array: Falco's own, one event per POST."""
    return "\n" not in text and text.lstrip()[:1] not in ("", "[")


def _lines(text: str, start: int = 0) -> Iterator[tuple[int, int, str]]:
    """(line number, end offset, line) of each non-blank line from `start`, one at a time:
    a body of a million tiny lines is never split into a million strings at once."""
    number, position, size = 0, start, len(text)
    while position < size:
        end = text.find("\n", position)
        if end < 0:
            end = size
        number += 1
        line = text[position:end]
        if line.strip():
            yield number, end, line
        position = end + 1


def documents(text: str) -> Iterator[tuple[int, object]]:
    """(line number, document) for a JSON object, a JSON array, or JSON lines; each line
    read once (a document over several lines is read whole, once its first line fails)."""
    if is_one_line(text):
        yield 1, parse(text)
        return
    if text.lstrip()[:1] == "[":
        whole = parse(text)
        if isinstance(whole, list):
            yield from ((index + 1, item) for index, item in enumerate(whole))
        else:
            yield 1, whole
        return
    lines = _lines(text)
    first = next(lines, None)
    if first is None:
        return
    number, end, line = first
    document = parse(line)
    if isinstance(document, NotJson) and text[end:].strip():
        whole = parse(text)  # one document over several lines (pretty-printed)?
        if not isinstance(whole, NotJson):
            yield 1, whole
            return
    yield number, document
    for number, _end, line in lines:
        yield number, parse(line)
