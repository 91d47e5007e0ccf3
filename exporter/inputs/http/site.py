"""Falco's http_output as a source: what one POST means, whatever carried it.

Falco 0.44 removed its gRPC output; every current Falco can instead POST each alert
as JSON to a URL. Bodies may be one JSON object, newline-delimited JSON (replays and
batching senders) or a JSON array, optionally gzip-compressed. A bad event is
answered and counted by reason; the good events of the same body are still counted.

This module knows no sockets (http_server.py reads the requests): it turns one
request into counted events and one answer. Falco ignores the status of every
answer (../shared/FALCO.md, section 5), so each refusal is also counted by reason
in a metric that exists from start-up, and logged, at most once a minute per reason.
"""

from __future__ import annotations

import json
import re
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import structlog

from exporter.core.counter import EventSink
from exporter.http.server import Answer, Request
from exporter.inputs.http import json_parser
from exporter.inputs.http.json_event import EventFormatError, event_from_json
from exporter.runtime.rate_limited_log import RateLimitedLog

# The HTTP input's name in the self-metrics' `target` label.
TARGET_NAME = "http_input"

PATHS = frozenset({"/", "/events"})
_MAX_REPORTED_LINES = 20

# Every reason a request or an event is refused, with the status it is answered.
# Each is a value of falco_exporter_http_input_rejected_total{reason} from start-up.
REASON_STATUS: dict[str, int] = {
    "text_output": 400,  # Falco runs with json_output: false
    "not_json": 400,
    "not_an_event": 400,
    "unknown_priority": 400,
    "empty": 400,
    "bad_encoding": 400,  # a Content-Encoding the body does not match (bad gzip)
    "malformed_request": 400,  # not HTTP/1.1 as the parser reads it (lengths included)
    "path": 404,
    "method": 405,
    "timeout": 408,  # the headers or the body did not arrive within the read timeout
    "too_large": 413,
    "unsupported_encoding": 415,
    "incomplete": 0,  # the client closed the connection in the middle of a request
}

TEXT_OUTPUT_FIX = (
    "Falco posts its text output: set json_output: true in falco.yaml "
    "(falco.json_output: true in the Falco Helm chart's values)"
)

# Falco's text line: "<time>: <Priority> <output>", the time in either of its formats.
_FALCO_TEXT_LINE = re.compile(
    rb"\s*\S+: (Emergency|Alert|Critical|Error|Warning|Notice|Informational|Info|Debug) "
)
_DECOMPRESSORS: dict[bytes, int] = {
    b"gzip": 16 + zlib.MAX_WBITS,
    b"x-gzip": 16 + zlib.MAX_WBITS,
    b"deflate": zlib.MAX_WBITS,
}


@dataclass
class InputCounts:
    """What the input received, for the self-metrics: plain numbers, no lock per event."""

    events: int = 0
    last_event_time: float = 0.0


ACCEPTED_ONE = Answer(200, b'{"accepted":1}')


class HttpInput:
    """Counts the events of each request; refusals by reason, logged without flooding.

    The HTTP server's Site for the HTTP input: it sends no Server header, and its
    usual answer is encoded once.
    """

    server_header = b""
    constant_answers = (ACCEPTED_ONE,)

    def __init__(
        self,
        sink: EventSink,
        max_body: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sink = sink
        self.counts = InputCounts()
        self.max_body = max_body
        self.rejected: dict[str, int] = dict.fromkeys(REASON_STATUS, 0)
        self._log = structlog.get_logger("http_input")
        self._warnings = RateLimitedLog(self._log, clock=clock)

    def refuse(self, reason: str, detail: str, peer: str, count: int = 1) -> Answer:
        """Count and log a refusal; the answer to send, if the connection still takes one."""
        self.rejected[reason] += count
        if reason == "text_output":
            self._warnings.log(reason, "error", TEXT_OUTPUT_FIX, reason=reason, peer=peer)
        else:
            message = "refused a POST from Falco"
            self._warnings.log(reason, "warning", message, reason=reason, detail=detail, peer=peer)
        status = REASON_STATUS[reason]
        text = TEXT_OUTPUT_FIX if reason == "text_output" else detail
        allow = b"Allow: POST\r\n" if status == 405 else b""
        return Answer(status, f"{text}\n".encode(), b"text/plain; charset=utf-8", allow)

    def handle(self, request: Request) -> Answer:
        """The answer to one complete request, its events counted."""
        path = request.path.split(b"?", 1)[0].decode("latin-1")
        if path not in PATHS:
            return self.refuse("path", f"no such path {path[:100]!r}; POST to /", request.peer)
        if request.method != b"POST":
            return self.refuse("method", "use POST", request.peer)
        body = self._decoded_body(request)
        if isinstance(body, Answer):
            return body
        if _is_falco_text(request.content_type, body):
            return self.refuse("text_output", "", request.peer)
        accepted, problems = self.ingest(body.decode("utf-8", "replace"))
        if not problems:
            return ACCEPTED_ONE if accepted == 1 else Answer(200, b'{"accepted":%d}' % accepted)
        return self._answer_problems(accepted, problems, request.peer)

    def _decoded_body(self, request: Request) -> bytes | Answer:
        """The body as sent before its Content-Encoding, or the refusal."""
        encoding = request.content_encoding.strip().lower()
        if not encoding or encoding == b"identity":
            return request.body
        wbits = _DECOMPRESSORS.get(encoding)
        if wbits is None:
            name = encoding.decode("latin-1")[:40]
            return self.refuse(
                "unsupported_encoding",
                f"Content-Encoding {name!r} is not supported (gzip, deflate or none)",
                request.peer,
            )
        decompressed = _decompress(request.body, wbits, self.max_body)
        if isinstance(decompressed, Answer):
            return self._refuse_body(decompressed, request.peer)
        return decompressed

    def _refuse_body(self, failed: Answer, peer: str) -> Answer:
        reason = "too_large" if failed.status == 413 else "bad_encoding"
        return self.refuse(reason, failed.body.decode(), peer)

    def _answer_problems(
        self, accepted: int, problems: list[tuple[int, str, str]], peer: str
    ) -> Answer:
        for reason in {reason for _, reason, _ in problems}:
            count = sum(1 for _, r, _ in problems if r == reason)
            first = next(detail for _, r, detail in problems if r == reason)
            self.refuse(reason, first, peer, count)
        answer: dict[str, Any] = {"accepted": accepted}
        answer["rejected"] = [
            {"line": line, "reason": detail} for line, _, detail in problems[:_MAX_REPORTED_LINES]
        ]
        if len(problems) > _MAX_REPORTED_LINES:
            answer["more_rejected"] = len(problems) - _MAX_REPORTED_LINES
        return Answer(400, json.dumps(answer).encode())

    def ingest(self, text: str) -> tuple[int, list[tuple[int, str, str]]]:
        """Count every event in a body; (accepted, [(line, reason, detail), ...])."""
        accepted = 0
        problems: list[tuple[int, str, str]] = []
        for line, document in _documents(text):
            if isinstance(document, _NotJson):
                problems.append((line, "not_json", f"not JSON: {document.error}"))
                continue
            try:
                event = event_from_json(document)
            except EventFormatError as error:
                problems.append((line, error.reason, str(error)))
                continue
            except RecursionError:
                problems.append((line, "not_an_event", "nested too deeply"))
                continue
            self._sink(event)
            accepted += 1
        if not accepted and not problems:
            problems.append((1, "empty", "empty body"))
        if accepted:
            self.counts.events += accepted
            self.counts.last_event_time = time.time()
        return accepted, problems


def _decompress(body: bytes, wbits: int, limit: int) -> bytes | Answer:
    """The decompressed body, or a 413/400 Answer; never more than `limit` bytes made."""
    decompressor = zlib.decompressobj(wbits)
    try:
        data = decompressor.decompress(body, limit + 1)
    except zlib.error as error:
        return Answer(400, f"body is not valid for its Content-Encoding: {error}".encode())
    if len(data) > limit:
        return Answer(413, f"body larger than {limit} bytes once decompressed".encode())
    if not decompressor.eof or decompressor.unused_data:
        return Answer(
            400, b"body is not valid for its Content-Encoding: truncated or trailing data"
        )
    return data


def _is_falco_text(content_type: bytes, body: bytes) -> bool:
    """Falco's text output: text/plain, or a line shaped like Falco's, and not JSON."""
    start = body.lstrip()[:1]
    if start in (b"{", b"["):
        return False
    return content_type.lower().startswith(b"text/plain") or bool(_FALCO_TEXT_LINE.match(body))


class _NotJson:
    """A line that failed to parse, with the parser's message."""

    def __init__(self, error: str) -> None:
        self.error = error


_TOO_DEEP = _NotJson("nested too deeply")


def _parse(text: str) -> object:
    """The document, with nesting too deep for the parser reported as not JSON."""
    try:
        return json_parser.loads(text)
    except ValueError as error:
        return _NotJson(str(error).split(":")[0])
    except RecursionError:
        return _TOO_DEEP


def _documents(text: str) -> Iterator[tuple[int, object]]:
    """(line number, document) for a JSON object, a JSON array, or JSON lines."""
    whole = _parse(text)
    if isinstance(whole, list):
        yield from ((index + 1, item) for index, item in enumerate(whole))
        return
    if not isinstance(whole, _NotJson) or whole is _TOO_DEEP:
        yield 1, whole  # one event, or a body too deep to be read line by line either
        return
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            yield number, _parse(line)
