"""Falco's http_output as a source: each POST carries one JSON event, or several as lines.

Falco 0.44 removed its gRPC output; every current Falco can instead POST each alert
as JSON to a URL. Bodies may be one JSON object, newline-delimited JSON (replays and
batching senders) or a JSON array, optionally gzip-compressed. A bad event is
answered and counted by reason; the good events of the same body are still counted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import structlog
from aiohttp import web

from exporter.counter import EventSink
from exporter.json_event import EventFormatError, event_from_json
from exporter.targets import TargetState

PATHS = ("/", "/events")
_MAX_REPORTED_LINES = 20


class HttpInput:
    """The ingest endpoint's handler, with its state and rejections by reason."""

    def __init__(self, sink: EventSink, state: TargetState, max_body: int) -> None:
        self._sink = sink
        self.state = state
        self.max_body = max_body
        self.rejected: dict[str, int] = {}
        self._log = structlog.get_logger("http_input")

    def app(self) -> web.Application:
        """The aiohttp application: POST on / and /events."""
        app = web.Application(client_max_size=self.max_body)
        for path in PATHS:
            app.router.add_route("*", path, self.handle)
        return app

    def _reject(self, reason: str, count: int = 1) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + count

    async def handle(self, request: web.Request) -> web.Response:
        """Count the events of one POST; 400/405/413 with a short reason otherwise."""
        if request.method != "POST":
            self._reject("method")
            return web.Response(status=405, text="use POST\n", headers={"Allow": "POST"})
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            self._reject("too_large")
            return web.Response(status=413, text=f"body larger than {self.max_body} bytes\n")
        accepted, problems = self.ingest(body.decode("utf-8", "replace"))
        answer: dict[str, Any] = {"accepted": accepted}
        if problems:
            answer["rejected"] = [
                {"line": line, "reason": reason} for line, reason in problems[:_MAX_REPORTED_LINES]
            ]
            if len(problems) > _MAX_REPORTED_LINES:
                answer["more_rejected"] = len(problems) - _MAX_REPORTED_LINES
            self._log.warning(
                "rejected Falco events in a POST",
                accepted=accepted,
                rejected=len(problems),
                first=problems[0][1],
                peer=request.remote,
            )
        return web.json_response(answer, status=400 if problems else 200)

    def ingest(self, text: str) -> tuple[int, list[tuple[int, str]]]:
        """Count every event in a body; (accepted, [(line, reason), ...])."""
        accepted = 0
        problems: list[tuple[int, str]] = []
        for line, document in _documents(text):
            if isinstance(document, _NotJson):
                self._reject("not_json")
                problems.append((line, f"not JSON: {document.error}"))
                continue
            try:
                event = event_from_json(document)
            except EventFormatError as error:
                self._reject(error.reason)
                problems.append((line, str(error)))
                continue
            self._sink(event)
            accepted += 1
        if not accepted and not problems:
            self._reject("empty")
            problems.append((1, "empty body"))
        if accepted:
            self.state.events += accepted
            self.state.last_event_time = time.time()
        return accepted, problems


class _NotJson:
    """A line that failed to parse, with the parser's message."""

    def __init__(self, error: str) -> None:
        self.error = error


def _documents(text: str) -> Iterator[tuple[int, object]]:
    """(line number, document) for a JSON object, a JSON array, or JSON lines."""
    try:
        whole = json.loads(text)
    except ValueError:
        whole = _NotJson("")
    if isinstance(whole, list):
        yield from ((index + 1, item) for index, item in enumerate(whole))
        return
    if not isinstance(whole, _NotJson):
        yield 1, whole
        return
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except ValueError as error:
            yield number, _NotJson(str(error).split(":")[0])
