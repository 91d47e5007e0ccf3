"""What the main port and the probes port answer, as Sites of the exporter's HTTP server.

Main port: `/metrics`, `/livez`, `/readyz`, the live page `/` and its data `/api/live`,
optionally over TLS with client-certificate checking. Probes port: `/liveness` and
`/readiness`, the Go exporter's paths, always plain HTTP for the kubelet. Only GET and
HEAD are served, so a body is never needed and a large one is refused unread.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from exporter.core.inputs import Readiness
from exporter.exposition.text import CONTENT_TYPE, accepts_gzip, gzip_body
from exporter.http.messages import Answer, Refusal, Request

# Requests to these ports carry no body; anything larger is not a scrape or a probe.
_MAX_BODY = 64 * 1024
_TEXT = b"text/plain; charset=utf-8"
_LIVE = Answer(200, b"ok\n", _TEXT)
_NOT_FOUND = Answer(404, b"not found\n", _TEXT)
_METHOD = Answer(405, b"use GET\n", _TEXT, b"Allow: GET, HEAD\r\n")
_NO_STORE = b"Cache-Control: no-store\r\n"
_METRICS_TYPE = CONTENT_TYPE.encode()
_VARY = b"Vary: Accept-Encoding\r\n"
_GZIPPED = b"Content-Encoding: gzip\r\n" + _VARY


class _Routes:
    """A GET-only Site from a table of paths; answers name the program, not its version."""

    max_body = _MAX_BODY
    server_header = b"Server: falco-exporter\r\n"
    constant_answers: tuple[Answer, ...] = (_LIVE,)

    def __init__(self, routes: dict[bytes, Callable[[Request], Answer]]) -> None:
        self._routes = routes

    def handle(self, request: Request) -> Answer:
        """Route by path (query ignored); only GET and HEAD."""
        route = self._routes.get(request.path.split(b"?", 1)[0])
        if route is None:
            return _NOT_FOUND
        if request.method not in (b"GET", b"HEAD"):
            return _METHOD
        return route(request)

    def refuse(self, reason: Refusal, detail: str, _peer: str) -> Answer | None:
        """A request the server could not read: its status, nothing counted."""
        status = reason.status
        return None if status is None else Answer(status, f"{detail}\n".encode(), _TEXT)


def main_site(
    render_metrics: Callable[[], bytes],
    readiness: Callable[[], Readiness],
    live_page: Callable[[], str],
    live_data: Callable[[], dict[str, object]],
) -> _Routes:
    """The main port: /metrics, the probes, the live page and its data."""

    def metrics(request: Request) -> Answer:
        body = render_metrics()
        if accepts_gzip(request.accept_encoding.decode("latin-1")):
            # Prometheus always asks: 2.6 MB at 12k series otherwise.
            return Answer(200, gzip_body(body), _METRICS_TYPE, _GZIPPED)
        return Answer(200, body, _METRICS_TYPE, _VARY)

    def page(_request: Request) -> Answer:
        return Answer(200, live_page().encode(), b"text/html; charset=utf-8")

    def live(_request: Request) -> Answer:
        return Answer(200, json.dumps(live_data()).encode(), b"application/json", _NO_STORE)

    return _Routes(
        {
            b"/metrics": metrics,
            b"/": page,
            b"/api/live": live,
            b"/livez": _liveness,
            b"/readyz": _readiness_route(readiness),
        }
    )


def probes_site(readiness: Callable[[], Readiness]) -> _Routes:
    """The probes port, with the Go exporter's paths."""
    return _Routes({b"/liveness": _liveness, b"/readiness": _readiness_route(readiness)})


def _liveness(_request: Request) -> Answer:
    # Answering at all proves the event loop runs, which is what liveness asks.
    return _LIVE


def _readiness_route(readiness: Callable[[], Readiness]) -> Callable[[Request], Answer]:
    def route(_request: Request) -> Answer:
        state = readiness()
        return Answer(200 if state.ready else 503, state.detail.encode(), _TEXT)

    return route
