"""What one POST from Falco's http_output means, whatever carried it.

Falco 0.44 removed its gRPC output; every current Falco can instead POST each alert as
JSON to a URL. A bad event is answered and counted by reason; the good events of the
same body are still counted. This module knows no sockets (exporter/http reads the
requests): it turns one request into counted events and one answer. Falco ignores the
status of every answer (docs/falco-wire-contract.md#http-output-behaviour), so each
refusal is also counted by reason, and logged at most once a minute per reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import structlog

from exporter.core.event import EventSink, FalcoEvent
from exporter.http.messages import Answer, Request
from exporter.inputs.falco_json.event import EventFormatError, event_from_json
from exporter.inputs.falco_json.lines import NotJson, parse
from exporter.inputs.http import bodies
from exporter.inputs.http.rejections import REASONS, TEXT_OUTPUT_FIX, Reason, Rejection
from exporter.runtime.rate_limited_log import RateLimitedLog

PATHS = frozenset({"/", "/events"})
_PATHS_AS_SENT = frozenset(path.encode() for path in PATHS)  # Falco's, without a query
_MAX_REPORTED_LINES = 20
# A body this large or smaller is read at once (Falco posts one alert of about 1 KiB).
_READ_AT_ONCE = 64 * 1024
# A larger one yields to the event loop after each step of about this long...
_STEP_SECONDS = 0.002
_CLOCK_EVERY = 32  # (documents between looks at the clock)
# ... and is given up once this many of its lines were refused, and more were refused than
# accepted: a few bad lines among good ones lose nothing, and the most garbage a body can
# make us parse is about as much as it holds events (docs/performance.md, "Under attack").
_GIVE_UP_AFTER = 100

ACCEPTED_ONE = Answer(200, b'{"accepted":1}')


@dataclass
class Outcome:
    """What a body held: events accepted, refusals by reason, and the first few in detail."""

    accepted: int = 0
    accepted_counted: int = 0  # already added to the input's counts, between steps
    refused: dict[Rejection, int] = field(default_factory=dict)
    first_detail: dict[Rejection, str] = field(default_factory=dict)
    first_problems: list[tuple[int, str]] = field(default_factory=list)
    gave_up_at: int = 0

    def refuse(self, line: int, reason: Rejection, detail: str) -> None:
        """One refused line; its detail kept for the first few only (bounded memory)."""
        self.refused[reason] = self.refused.get(reason, 0) + 1
        self.first_detail.setdefault(reason, detail)
        if len(self.first_problems) < _MAX_REPORTED_LINES:
            self.first_problems.append((line, detail))


Steps = Generator[None, None, Outcome]


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
        forward: Callable[[bytes], None] | None = None,
    ) -> None:
        """`forward`, if given, takes each accepted alert's JSON too (--forward-url)."""
        self._sink = sink
        self._forward = forward
        self.counts = InputCounts()
        self.max_body = max_body
        self.rejected: dict[Reason, int] = dict.fromkeys(REASONS, 0)
        self._rejected_at: dict[Reason, float] = {}  # each reason's last time, monotonic
        self._clock = clock
        self._warnings = RateLimitedLog(structlog.get_logger("http_input"), clock=clock)

    def rejected_within(self, seconds: float) -> list[Reason]:
        """The reasons refused in the last `seconds`, in the counter's order."""
        since = self._clock() - seconds
        return [reason for reason in REASONS if self._rejected_at.get(reason, since) > since]

    def refuse(self, reason: Reason, detail: str, peer: str, count: int = 1) -> Answer | None:
        """Count and log a refusal; the answer to send, if the connection still takes one."""
        self.rejected[reason] += count
        self._rejected_at[reason] = self._clock()
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

    def handle(self, request: Request) -> Answer | Awaitable[Answer]:
        """The answer to one complete request, its events counted; a large body is read
        in steps that yield to the event loop (the answer comes later)."""
        if request.path not in _PATHS_AS_SENT:
            path = request.path.split(b"?", 1)[0].decode("latin-1")
            if path not in PATHS:
                return self._refused(
                    Rejection.PATH, f"no such path {path[:100]!r}; POST to / (or /events)", request
                )
        if request.method != b"POST":
            return self._refused(Rejection.METHOD, "use POST", request)
        try:
            body = bodies.decoded(request.body, request.content_encoding, self.max_body)
        except bodies.BodyError as error:
            return self._refused(error.reason, error.detail, request)
        if bodies.is_falco_text(request.content_type, body):
            return self._refused(Rejection.TEXT_OUTPUT, "", request)
        return self._events(body.decode("utf-8", "replace"), request.peer)

    def _events(self, text: str, peer: str) -> Answer | Awaitable[Answer]:
        """Count a body's events: one line at once (Falco's own, one event per POST, without
        the steps), a small body at once, a large one in steps."""
        if bodies.is_one_line(text):
            event = _event_of(parse(text))
            if isinstance(event, FalcoEvent):
                self._sink(event)
                if self._forward is not None:
                    self._forward(text.encode())  # as Falco posted it
                counts = self.counts
                counts.events += 1
                counts.last_event_time = time.time()
                return ACCEPTED_ONE
            outcome = Outcome()
            outcome.refuse(1, *event)
            return self._answer(outcome, peer)
        steps = self._ingest(text)
        if len(text) <= _READ_AT_ONCE:
            return self._answer(_run(steps), peer)
        return self._answer_later(steps, peer)

    async def _answer_later(self, steps: Steps, peer: str) -> Answer:
        """Run the steps, yielding to the loop between them: probes and other senders are
        answered meanwhile."""
        while True:
            try:
                next(steps)
            except StopIteration as done:
                outcome: Outcome = done.value
                return self._answer(outcome, peer)
            await asyncio.sleep(0)

    def _refused(self, reason: Reason, detail: str, request: Request) -> Answer:
        answer = self.refuse(reason, detail, request.peer)
        assert answer is not None  # only a connection lost mid-request has no answer
        return answer

    def _answer(self, outcome: Outcome, peer: str) -> Answer:
        """200 when every event was counted; else 400 saying what was and was not."""
        if not outcome.refused:
            accepted = outcome.accepted
            return ACCEPTED_ONE if accepted == 1 else Answer(200, b'{"accepted":%d}' % accepted)
        for reason, count in outcome.refused.items():
            self.refuse(reason, outcome.first_detail[reason], peer, count)
        answer: dict[str, Any] = {"accepted": outcome.accepted}
        answer["rejected"] = [
            {"line": line, "reason": detail} for line, detail in outcome.first_problems
        ]
        more = sum(outcome.refused.values()) - len(outcome.first_problems)
        if more:
            answer["more_rejected"] = more
        if outcome.gave_up_at:
            answer["gave_up_at_line"] = outcome.gave_up_at
        return Answer(400, json.dumps(answer).encode())

    def ingest(self, text: str) -> Outcome:
        """Count every event in a body, at once."""
        return _run(self._ingest(text))

    def _ingest(self, text: str) -> Steps:
        """Count the body's events, yielding every few milliseconds; give up on a body
        whose lines mostly fail (a sender of garbage gets a 400, not our CPU)."""
        outcome = Outcome()
        failed = 0
        step_ends = time.perf_counter() + _STEP_SECONDS
        for index, (line, document) in enumerate(bodies.documents(text)):
            event = _event_of(document)
            if isinstance(event, FalcoEvent):
                self._sink(event)
                if self._forward is not None:  # one alert per POST, as Falco sends them
                    self._forward(json.dumps(document, separators=(",", ":")).encode())
                outcome.accepted += 1
            else:
                outcome.refuse(line, *event)
                failed += 1
                if failed >= _GIVE_UP_AFTER and failed > outcome.accepted:
                    outcome.gave_up_at = line
                    break
            if index % _CLOCK_EVERY == _CLOCK_EVERY - 1 and time.perf_counter() > step_ends:
                self._counted(outcome.accepted)
                outcome.accepted_counted = outcome.accepted
                yield
                step_ends = time.perf_counter() + _STEP_SECONDS
        if not outcome.accepted and not outcome.refused:
            outcome.refuse(1, Rejection.EMPTY, "empty body")
        self._counted(outcome.accepted - outcome.accepted_counted)
        return outcome

    def _counted(self, events: int) -> None:
        if events:
            self.counts.events += events
            self.counts.last_event_time = time.time()


def _event_of(document: object) -> FalcoEvent | tuple[Rejection, str]:
    """The event of a document, or why it is none."""
    if isinstance(document, NotJson):
        return Rejection.NOT_JSON, f"not JSON: {document.error}"
    try:
        return event_from_json(document)
    except EventFormatError as error:
        return Rejection(error.reason), str(error)
    except RecursionError:
        return Rejection.NOT_AN_EVENT, "nested too deeply"


def _run(steps: Steps) -> Outcome:
    """Every step at once."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            outcome: Outcome = done.value
            return outcome
