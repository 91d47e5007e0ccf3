"""The exporter's one HTTP stack: HTTP/1.1 read with httptools, straight on asyncio's transports.

All three listeners run on it: the HTTP input, the main port (/metrics, the live page)
and the probes port. Each is a Site (messages.py): a function from a complete Request to
an Answer (now, or later when the work must yield), plus what to say when the server
refuses a request itself.

Falco posts one alert per request from one thread and waits for each answer before its
next output of any kind (docs/falco-wire-contract.md#http-output-behaviour), so the
answer's latency is Falco's output ceiling, and anything malformed must still get a fast,
counted 4xx. One small stack instead of a framework also keeps the sidecar's memory low.

Each listener bounds what its peers can make it hold (limits.py): connections in all and
per peer address, and, past the limit, the oldest idle connection is closed to make room
(a client that reconnects loses nothing: Falco's libcurl opens a new connection), or the
newcomer is refused when none is idle. Refusals and closes are counted per listener, and
logged at most once a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from exporter.core.metrics import Families
from exporter.http.connection import Connection
from exporter.http.connection_state import Closed, Phase
from exporter.http.connection_table import ConnectionTable
from exporter.http.limits import ListenerLimits, ListenError
from exporter.http.listener_metrics import ListenerStats
from exporter.http.messages import Answer, Refusal, Site, encode_answer
from exporter.http.tls_session import COUNTED, HandshakeFailed, HandshakeFailure, TlsSession
from exporter.http.web_guard import WebGuard
from exporter.runtime.rate_limited_log import RateLimitedLog
from exporter.runtime.tasks import BackgroundTasks, cancel_and_wait
from exporter.settings.addresses import parse_listen_address

# Within the shutdown deadline: how long a request in flight gets to be answered.
_SHUTDOWN_GRACE = 1.0
# Loop turns given, after the listener closes, for bytes already received to be read.
_READ_PENDING_TURNS = 3
# At most this many more while an idle connection still has bytes in the kernel.
_UNREAD_TURNS = 200
_CLOSE_REASONS = (
    "limit",
    "per_peer_limit",
    "shed",
    "shed_slow",
    *(reason.value for reason in Closed),
)
_INTERNAL_ERROR = Answer(500, b"internal error; see the exporter's log\n", b"text/plain")


def listen_backlog() -> int:
    """The system's largest accept queue: a burst of connects is queued, not dropped."""
    try:
        with open("/proc/sys/net/core/somaxconn", encoding="ascii") as value:
            return max(int(value.read()), socket.SOMAXCONN)
    except (OSError, ValueError):
        return socket.SOMAXCONN


class HttpServer:
    """Serves one Site on one address, within its limits."""

    def __init__(
        self,
        site: Site,
        address: str,
        ssl_context: ssl.SSLContext | None = None,
        *,
        limits: ListenerLimits | None = None,
        name: str = "http",
        tls_fixes: Mapping[HandshakeFailure, str] | None = None,
    ) -> None:
        """`tls_fixes`: what to tell an operator for each failed handshake (who the client
        is and which of its settings to change depends on the listener)."""
        self.site = site
        self.limits = limits or ListenerLimits()
        self.name = name
        self.encoded_constants = {
            id(answer): encode_answer(answer, close=False, server_header=site.server_header)
            for answer in site.constant_answers
        }
        self._address = address
        self._ssl_context = ssl_context
        self._guard: WebGuard | None = None
        self._tls_fixes = dict(tls_fixes or {})
        self._server: asyncio.Server | None = None
        self._tasks = BackgroundTasks()
        self._later: set[asyncio.Task[Any]] = set()
        self.table = ConnectionTable(self.limits, self._closed)
        # What a connection calls as it changes phase, and the idle order it keeps itself.
        self.moved = self.table.moved
        self.idle = self.table.idle
        self.stopping = False
        self._drained = asyncio.Event()
        self.port = 0
        self.log = structlog.get_logger(name)
        self._warnings = RateLimitedLog(self.log)
        self.stats = ListenerStats(name, self.limits.max_connections)
        self.stats.closed.update(dict.fromkeys(_CLOSE_REASONS, 0))
        self.stats.refused.update(dict.fromkeys(Refusal, 0))
        if ssl_context is not None:
            self.stats.tls_failures.update(dict.fromkeys(COUNTED, 0))

    @property
    def listening(self) -> bool:
        """True once bound and until stopped."""
        return self._server is not None and not self.stopping

    @property
    def tls(self) -> bool:
        """Whether the listener speaks TLS."""
        return self._ssl_context is not None or (self._guard is not None and self._guard.tls)

    def protect(self, guard: WebGuard) -> None:
        """Serve behind a web configuration (web_guard.py), before start: its TLS (instead of
        `ssl_context`), users, headers and rate limit."""
        self.site, self._guard = guard.wrap(self.site), guard
        if guard.tls:
            self.stats.tls_failures.update(dict.fromkeys(HandshakeFailure, 0))
            self._tls_fixes[HandshakeFailure.CLIENT_NOT_ALLOWED] = (
                "issue the client a certificate with a name in client_allowed_sans, or add its name"
            )

    async def start(self) -> None:
        """Bind and serve; port 0 binds a free port, read back into self.port."""
        host, port = parse_listen_address(self._address)
        factory: Callable[[], asyncio.Protocol] = self._connection
        try:
            self._server = await asyncio.get_running_loop().create_server(
                factory, host, port, backlog=listen_backlog(), reuse_address=True
            )
        except OSError as error:
            raise ListenError(self.name, self._address, error) from error
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._tasks.spawn(self._sweep_timeouts(), f"{self.name} timeouts")
        if self._guard is not None:
            self._tasks.spawn(self._guard.watch(), f"{self.name} web configuration")

    def _connection(self) -> Connection:
        if self._guard is not None and self._guard.tls:
            return Connection(self, self._guard.tls_session())
        context = self._ssl_context
        return Connection(self, TlsSession(context) if context is not None else None)

    # What connections report.

    def admit(self, connection: Connection) -> bool:
        """Take a new connection, making room at a limit (connection_table.py)."""
        if self.stopping or not self.table.admit(connection):
            return False
        self.stats.connections = len(self.table)
        return True

    def forget(self, connection: Connection) -> None:
        """A connection closed; the last one to close during a stop ends the wait."""
        if self.table.forget(connection):
            self.stats.connections = len(self.table)
        if self.stopping and not self.table:
            self._drained.set()

    def refused(self, reason: Refusal) -> None:
        """A request this listener could not read."""
        self.stats.refused[reason] += 1

    def handshake_failed(self, failure: HandshakeFailed, peer: str) -> None:
        """Count a failed handshake, and say what to fix, once a minute per reason."""
        reason = failure.reason
        self.stats.tls_failures[reason] += 1
        self._warnings.log(
            ("tls", reason),
            logging.WARNING,
            "TLS handshake failed",
            listener=self.name,
            reason=reason,
            detail=failure.detail,
            peer=peer,
            fix=self._tls_fixes.get(reason, ""),
        )

    def later(self, answer: Awaitable[Answer], connection: Connection) -> None:
        """Await a site's later answer, then hand it to its connection."""

        async def deliver() -> None:
            try:
                result = await answer
            except Exception:
                self.log.exception("failed on a request", peer=connection.peer)
                result = _INTERNAL_ERROR
            connection.deliver(result)

        task = asyncio.get_running_loop().create_task(deliver())
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    @property
    def connections(self) -> set[Connection]:
        """Every open connection."""
        return self.table.all

    def _closed(self, reason: str, peer: str) -> None:
        self.stats.closed[reason] += 1
        if reason in ("limit", "per_peer_limit", "shed", "shed_slow"):
            self._warnings.log(
                ("connections", reason),
                logging.WARNING,
                "connection limit reached",
                listener=self.name,
                reason=reason,
                peer=peer,
                max_connections=self.limits.max_connections,
                max_per_peer=self.limits.max_per_peer,
            )

    def collect(self, families: Families) -> None:
        """This listener's families."""
        self.stats.collect(families)
        if self._guard is not None:
            self._guard.collect(families)

    async def _sweep_timeouts(self) -> None:
        """Check every connection's timeouts a few times per shortest timeout."""
        limits = self.limits
        shortest = min(limits.read_timeout, limits.first_byte_timeout, limits.linger_time)
        interval = max(shortest / 4, 0.05)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for connection in list(self.connections):
                self._apply_timeouts(connection, now)

    def _apply_timeouts(self, connection: Connection, now: float) -> None:
        """The timeout of the connection's phase; a request that started is answered 408."""
        limits, waited, phase = self.limits, now - connection.since, connection.phase
        if connection.busy:
            return  # our own work: no timeout
        if phase is Phase.FRESH and waited > limits.first_byte_timeout:
            connection.close()
            self.stats.closed[Closed.SILENT.value] += 1
        elif phase is Phase.HANDSHAKE and waited > limits.read_timeout:
            connection.time_out(HandshakeFailed(HandshakeFailure.TIMEOUT, "TLS handshake too slow"))
        elif phase is Phase.READING and waited > limits.read_timeout:
            connection.time_out()
        elif phase is Phase.IDLE and waited > limits.idle_timeout:
            connection.close()
            self.stats.closed[Closed.IDLE.value] += 1
        elif phase is Phase.LINGERING and waited > limits.linger_time:
            connection.close()

    async def stop(self) -> None:
        """Stop listening; answer every request already received, then close.

        Bytes that reached us before the stop are read first (a few loop turns), so a
        request the client had fully sent is answered rather than cut off. Idle
        connections then close; a request in flight gets a moment (within the caller's
        deadline) and is answered with `Connection: close`.
        """
        if self._server is None:
            return
        self.stopping = True
        self._server.close()
        await self._tasks.stop()
        try:
            for _ in range(_READ_PENDING_TURNS):
                await asyncio.sleep(0)
            # An idle connection whose client's bytes the kernel still holds has a request
            # on its way in: give the loop turns to read it (bounded), then close the rest.
            # One that is not read (its client does not read its answers) never will be: the
            # wait is only for the others, so that no peer can make a stop spin its turns.
            for _ in range(_UNREAD_TURNS):
                if not any(c.reading and c.unread() for c in self.table.sheddable()):
                    break
                await asyncio.sleep(0)
            for connection in self.table.sheddable():
                if not (connection.reading and connection.unread()):
                    connection.close()
            if self.connections:
                # A request in flight closes its connection once answered (no keep-alive now).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._drained.wait(), _SHUTDOWN_GRACE)
        finally:
            for connection in list(self.connections):
                connection.close()
            await cancel_and_wait(list(self._later))
            self._server = None
            if self._guard is not None:
                self._guard.close()
