"""What a POST's body holds, before any of it is counted: its bytes once its
Content-Encoding is undone, whether it is Falco's text output, and its JSON documents.

Bodies may be one JSON object, newline-delimited JSON (replays and batching senders) or a
JSON array, optionally gzip- or deflate-compressed. Nothing here counts or logs.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator

from exporter.http.messages import Refusal
from exporter.inputs.http import json_parser
from exporter.inputs.http.rejections import Reason, Rejection

# Falco's text line: "<time>: <Priority> <output>", the time in either of its formats.
_FALCO_TEXT_LINE = re.compile(
    rb"\s*\S+: (Emergency|Alert|Critical|Error|Warning|Notice|Informational|Info|Debug) "
)
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


class NotJson:
    """A line that failed to parse, with the parser's message."""

    def __init__(self, error: str) -> None:
        self.error = error


_TOO_DEEP = NotJson("nested too deeply")


def _parse(text: str) -> object:
    """The document, with nesting too deep for the parser reported as not JSON."""
    try:
        return json_parser.loads(text)
    except ValueError as error:
        return NotJson(str(error).split(":")[0])
    except RecursionError:
        return _TOO_DEEP


def documents(text: str) -> Iterator[tuple[int, object]]:
    """(line number, document) for a JSON object, a JSON array, or JSON lines."""
    whole = _parse(text)
    if isinstance(whole, list):
        yield from ((index + 1, item) for index, item in enumerate(whole))
        return
    if not isinstance(whole, NotJson) or whole is _TOO_DEEP:
        yield 1, whole  # one event, or a body too deep to be read line by line either
        return
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            yield number, _parse(line)
