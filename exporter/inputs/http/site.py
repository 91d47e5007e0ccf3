"""What one POST from Falco's http_output means, whatever carried it.

Falco 0.44 removed its gRPC output; every current Falco can instead POST each alert as
JSON to a URL. A bad event is answered and counted by reason; the good events of the
same body are still counted. This module knows no sockets (exporter/http reads the
requests): it turns one request into counted events and one answer. Falco ignores the
status of every answer (docs/falco-wire-contract.md#http-output-behaviour), so each
refusal is also counted by reason, and logged at most once a minute per reason.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from exporter.core.event import EventSink
from exporter.http.messages import Answer, Request
from exporter.inputs.http import bodies
from exporter.inputs.http.json_event import EventFormatError, event_from_json
from exporter.inputs.http.rejections import REASONS, TEXT_OUTPUT_FIX, Reason, Rejection
from exporter.runtime.rate_limited_log import RateLimitedLog

PATHS = frozenset({"/", "/events"})
_MAX_REPORTED_LINES = 20

ACCEPTED_ONE = Answer(200, b'{"accepted":1}')

# (line number, reason, detail) of an event of a body that was refused.
Problem = tuple[int, Rejection, str]


@dataclass
class InputCounts:
    """What the input received, for the self-metrics: plain numbers, no lock per event."""

    events: int = 0
    last_event_time: float = 0.0


class HttpInputSite:
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
        self.rejected: dict[Reason, int] = dict.fromkeys(REASONS, 0)
        self._warnings = RateLimitedLog(structlog.get_logger("http_input"), clock=clock)

    def refuse(self, reason: Reason, detail: str, peer: str, count: int = 1) -> Answer | None:
        """Count and log a refusal; the answer to send, if the connection still takes one."""
        self.rejected[reason] += count
        if reason is Rejection.TEXT_OUTPUT:
            self._warnings.log(reason, logging.ERROR, TEXT_OUTPUT_FIX, reason=reason, peer=peer)
        else:
            self._warnings.log(
                reason,
                logging.WARNING,
                "refused a POST from Falco",
                reason=reason,
                detail=detail,
                peer=peer,
            )
        status = reason.status
        if status is None:
            return None
        text = TEXT_OUTPUT_FIX if reason is Rejection.TEXT_OUTPUT else detail
        allow = b"Allow: POST\r\n" if status == 405 else b""
        return Answer(status, f"{text}\n".encode(), b"text/plain; charset=utf-8", allow)

    def handle(self, request: Request) -> Answer:
        """The answer to one complete request, its events counted."""
        path = request.path.split(b"?", 1)[0].decode("latin-1")
        if path not in PATHS:
            return self._refused(Rejection.PATH, f"no such path {path[:100]!r}; POST to /", request)
        if request.method != b"POST":
            return self._refused(Rejection.METHOD, "use POST", request)
        try:
            body = bodies.decoded(request.body, request.content_encoding, self.max_body)
        except bodies.BodyError as error:
            return self._refused(error.reason, error.detail, request)
        if bodies.is_falco_text(request.content_type, body):
            return self._refused(Rejection.TEXT_OUTPUT, "", request)
        accepted, problems = self.ingest(body.decode("utf-8", "replace"))
        if not problems:
            return ACCEPTED_ONE if accepted == 1 else Answer(200, b'{"accepted":%d}' % accepted)
        return self._answer_problems(accepted, problems, request.peer)

    def _refused(self, reason: Reason, detail: str, request: Request) -> Answer:
        answer = self.refuse(reason, detail, request.peer)
        assert answer is not None  # only a connection lost mid-request has no answer
        return answer

    def _answer_problems(self, accepted: int, problems: list[Problem], peer: str) -> Answer:
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

    def ingest(self, text: str) -> tuple[int, list[Problem]]:
        """Count every event in a body; (accepted, [(line, reason, detail), ...])."""
        accepted = 0
        problems: list[Problem] = []
        for line, document in bodies.documents(text):
            if isinstance(document, bodies.NotJson):
                problems.append((line, Rejection.NOT_JSON, f"not JSON: {document.error}"))
                continue
            try:
                event = event_from_json(document)
            except EventFormatError as error:
                problems.append((line, error.reason, str(error)))
                continue
            except RecursionError:
                problems.append((line, Rejection.NOT_AN_EVENT, "nested too deeply"))
                continue
            self._sink(event)
            accepted += 1
        if not accepted and not problems:
            problems.append((1, Rejection.EMPTY, "empty body"))
        if accepted:
            self.counts.events += accepted
            self.counts.last_event_time = time.time()
        return accepted, problems
