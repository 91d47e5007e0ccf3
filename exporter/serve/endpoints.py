"""What the main port and the probes port answer, as Sites of the exporter's HTTP server.

Main port: `/metrics`, `/livez`, `/readyz`, the live page `/` and its data `/api/live`,
optionally over TLS with client-certificate checking. Probes port: `/liveness` and
`/readiness`, the Go exporter's paths, always plain HTTP for the kubelet. Only GET and
HEAD are served, so a body is never needed and a large one is refused unread.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from exporter.core.inputs import Readiness
from exporter.exposition.text import CONTENT_TYPE, accepts_gzip, gzip_in_steps
from exporter.http.messages import Answer, Refusal, Request
from exporter.http.tls_session import HandshakeFailure

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

# What to change when a scraper's TLS handshake with the main port fails.
SCRAPER_TLS_FIXES = {
    HandshakeFailure.PLAIN_HTTP: "a scraper sent plain HTTP to this TLS port: set "
    "scheme: https in its scrape config (or the ServiceMonitor)",
    HandshakeFailure.NO_CLIENT_CERTIFICATE: "the scraper presented no certificate, and "
    "--server-ca requires one: set tls_config.cert_file and key_file",
    HandshakeFailure.UNKNOWN_CA: "the scraper's certificate is not signed by --server-ca",
    HandshakeFailure.BAD_CLIENT_CERTIFICATE: "the scraper's certificate is expired, not yet "
    "valid or not for client use",
    HandshakeFailure.SERVER_CERTIFICATE_REFUSED: "the scraper does not trust --server-cert: "
    "set tls_config.ca_file to its CA (and server_name to a name in it)",
    HandshakeFailure.PROTOCOL: "no TLS version or cipher in common, or not TLS at all",
    HandshakeFailure.TIMEOUT: "the TLS handshake did not finish within 10s",
}


# A route answers now, or later (a coroutine) when its work yields to the event loop.
Route = Callable[[Request], Answer | Awaitable[Answer]]


class _Routes:
    """A GET-only Site from a table of paths; answers name the program, not its version."""

    max_body = _MAX_BODY
    server_header = b"Server: falco-exporter\r\n"
    constant_answers: tuple[Answer, ...] = (_LIVE,)

    def __init__(self, routes: dict[bytes, Route]) -> None:
        self._routes = routes

    def handle(self, request: Request) -> Answer | Awaitable[Answer]:
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
    render_metrics: Callable[[], Awaitable[list[bytes]]],
    readiness: Callable[[], Readiness],
    live_page: Callable[[], Awaitable[bytes]],
    live_data: Callable[[], Awaitable[bytes]],
) -> _Routes:
    """The main port: /metrics, the probes, the live page and its data (built in steps)."""

    async def metrics(request: Request) -> Answer:
        parts = await render_metrics()
        if accepts_gzip(request.accept_encoding.decode("latin-1")):
            # Prometheus always asks: 2.6 MB at 12k series otherwise.
            return Answer(200, await gzip_in_steps(parts), _METRICS_TYPE, _GZIPPED)
        return Answer(200, b"".join(parts), _METRICS_TYPE, _VARY)

    async def page(_request: Request) -> Answer:
        return Answer(200, await live_page(), b"text/html; charset=utf-8")

    async def live(_request: Request) -> Answer:
        return Answer(200, await live_data(), b"application/json", _NO_STORE)

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
