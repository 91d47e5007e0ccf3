"""The exporter's one HTTP stack: HTTP/1.1 read with httptools, straight on asyncio's transports.

All three listeners run on it: the HTTP input, the main port (/metrics, the live page)
and the probes port. Each is a Site (messages.py): a synchronous function from a complete
Request to an Answer, plus what to say when the server refuses a request itself.

Falco posts one alert per request from one thread and waits for each answer before its
next output of any kind (docs/falco-wire-contract.md#http-output-behaviour), so the
answer's latency is Falco's output ceiling, and anything malformed must still get a fast,
counted 4xx. One small stack instead of a framework also keeps the sidecar's memory low:
it runs on every node.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable

import structlog

from exporter.http.connection import Connection
from exporter.http.messages import Site, encode_answer
from exporter.runtime.tasks import cancel_and_wait
from exporter.settings.addresses import parse_listen_address

# Within the shutdown deadline: how long a request in flight gets to be answered.
_SHUTDOWN_GRACE = 1.0


class HttpServer:
    """Serves one Site on one address."""

    def __init__(
        self,
        site: Site,
        address: str,
        ssl_context: ssl.SSLContext | None = None,
        *,
        read_timeout: float = 10.0,
        idle_timeout: float = 300.0,
        name: str = "http",
    ) -> None:
        self.site = site
        self.encoded_constants = {
            id(answer): encode_answer(answer, close=False, server_header=site.server_header)
            for answer in site.constant_answers
        }
        self._address = address
        self._ssl_context = ssl_context
        self._read_timeout = read_timeout
        self._idle_timeout = idle_timeout
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.connections: set[Connection] = set()
        self.stopping = False
        self._drained = asyncio.Event()
        self.port = 0
        self.log = structlog.get_logger(name)

    @property
    def listening(self) -> bool:
        """True once bound and until stopped."""
        return self._server is not None and not self.stopping

    async def start(self) -> None:
        """Bind and serve; port 0 binds a free port, read back into self.port."""
        host, port = parse_listen_address(self._address)
        factory: Callable[[], asyncio.Protocol] = lambda: Connection(self)  # noqa: E731
        self._server = await asyncio.get_running_loop().create_server(
            factory,
            host,
            port,
            ssl=self._ssl_context,
            ssl_handshake_timeout=self._read_timeout if self._ssl_context else None,
            reuse_address=True,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._sweeper = asyncio.create_task(self._sweep_timeouts())

    def forget(self, connection: Connection) -> None:
        """A connection closed; the last one to close during a stop ends the wait."""
        self.connections.discard(connection)
        if self.stopping and not self.connections:
            self._drained.set()

    async def _sweep_timeouts(self) -> None:
        """Check every connection's timeouts a few times per read timeout."""
        interval = min(self._read_timeout, self._idle_timeout) / 4
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for connection in list(self.connections):
                connection.check_timeouts(now, self._read_timeout, self._idle_timeout)

    async def stop(self) -> None:
        """Stop listening; idle connections close now, a request in flight gets a moment."""
        if self._server is None:
            return
        self.stopping = True
        self._server.close()
        if self._sweeper is not None:
            await cancel_and_wait([self._sweeper])
        for connection in list(self.connections):
            if not connection.in_request:
                connection.close()
        try:
            if self.connections:
                # A request in flight closes its connection once answered (no keep-alive now).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._drained.wait(), _SHUTDOWN_GRACE)
        finally:
            for connection in list(self.connections):
                connection.close()
            self._server = None
