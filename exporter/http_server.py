"""The exporter's HTTP endpoints (aiohttp), on the main port and the probes port.

Main port: `/metrics`, `/livez`, `/readyz` and a landing page `/`, optionally over
TLS with client-certificate checking. Probes port: `/liveness` and `/readiness`,
the Go exporter's paths, always plain HTTP for the kubelet.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from exporter.addresses import parse_listen_address
from exporter.errors import CertificateFilesError
from exporter.exposition import CONTENT_TYPE, accepts_gzip, gzip_body

_SHUTDOWN_TIMEOUT = 2.0


@dataclass(frozen=True)
class Readiness:
    """Whether the exporter is ready, and a body that says why."""

    ready: bool
    detail: str


def build_main_app(
    render_metrics: Callable[[], bytes],
    readiness: Callable[[], Readiness],
    live_page: Callable[[], str],
    live_data: Callable[[], dict[str, object]],
) -> web.Application:
    """Routes of the main port: /metrics, the probes, the live page and its data."""

    async def metrics(request: web.Request) -> web.Response:
        body = render_metrics()
        headers = {"Content-Type": CONTENT_TYPE}
        if accepts_gzip(request.headers.get("Accept-Encoding", "")):
            body = gzip_body(body)  # Prometheus always asks: 2.6 MB at 12k series otherwise
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

    async def landing(_request: web.Request) -> web.Response:
        return web.Response(text=live_page(), content_type="text/html")

    async def live(_request: web.Request) -> web.Response:
        return web.json_response(live_data(), headers={"Cache-Control": "no-store"})

    app = _application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", landing)
    app.router.add_get("/api/live", live)
    app.router.add_get("/livez", _liveness)
    app.router.add_get("/readyz", _readiness_handler(readiness))
    return app


def build_probes_app(readiness: Callable[[], Readiness]) -> web.Application:
    """Routes of the probes port, as the Go exporter named them."""
    app = _application()
    app.router.add_get("/liveness", _liveness)
    app.router.add_get("/readiness", _readiness_handler(readiness))
    return app


def _application() -> web.Application:
    """An aiohttp application whose answers name no version (`Server: falco-exporter`)."""
    app = web.Application()

    async def no_version(_request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Server"] = "falco-exporter"

    app.on_response_prepare.append(no_version)
    return app


async def _liveness(_request: web.Request) -> web.Response:
    # Answering at all proves the event loop runs, which is what liveness asks.
    return web.Response(text="ok\n")


def _readiness_handler(
    readiness: Callable[[], Readiness],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(_request: web.Request) -> web.Response:
        state = readiness()
        status = 200 if state.ready else 503
        return web.Response(status=status, text=state.detail)

    return handler


def server_ssl_context(cert: str, key: str, ca: str) -> ssl.SSLContext:
    """TLS for a listener; with a CA, clients must present a certificate it signed.

    A file that is not what it should be raises CertificateFilesError naming it.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as error:
        raise CertificateFilesError(
            f"certificate {cert} with key {key}: {error.strerror or error} "
            "(not PEM, or the key does not belong to the certificate)"
        ) from None
    if ca:
        try:
            context.load_verify_locations(ca)
        except (ssl.SSLError, OSError) as error:
            raise CertificateFilesError(f"CA {ca}: {error.strerror or error}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class HttpListener:
    """One aiohttp app bound to one address."""

    def __init__(
        self, app: web.Application, address: str, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT)
        self._address = address
        self._ssl_context = ssl_context
        self.port = 0

    async def start(self) -> None:
        """Bind and serve; port 0 binds a free port, read back into self.port."""
        host, port = parse_listen_address(self._address)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            host,
            port,
            ssl_context=self._ssl_context,
        )
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Finish requests in flight (bounded), then close."""
        await self._runner.cleanup()
