"""A connection's phases, and what it asks of its server: shared by connection.py and
server.py, so that neither imports the other's internals."""

from __future__ import annotations

import array
import asyncio
import fcntl
import termios
from collections.abc import Awaitable
from enum import Enum
from typing import TYPE_CHECKING, Protocol

from structlog.typing import FilteringBoundLogger

from exporter.http.limits import ListenerLimits
from exporter.http.messages import Answer, Refusal, Site
from exporter.http.tls_session import HandshakeFailed

if TYPE_CHECKING:
    from exporter.http.connection import Connection


class Phase(Enum):
    """Where a connection is; FRESH and IDLE ones (not busy) may be closed to make room."""

    FRESH = "fresh"  # accepted, nothing received yet
    HANDSHAKE = "handshake"  # TLS handshake in progress
    IDLE = "idle"  # between requests (keep-alive)
    READING = "reading"  # a request has begun and is not complete
    LINGERING = "lingering"  # answered early; draining what the client still sends
    CLOSED = "closed"


class Closed(Enum):
    """Why a connection was closed by a timeout (what the listener counts)."""

    SILENT = "silent"  # sent nothing within the first-byte timeout
    IDLE = "idle"  # a keep-alive connection idle past the idle timeout


class ServerSide(Protocol):
    """What a connection reads of its server, and reports to it (server.py keeps it)."""

    site: Site
    limits: ListenerLimits
    encoded_constants: dict[int, bytes]
    stopping: bool
    log: FilteringBoundLogger
    # The idle connections, oldest first: a connection leaves and rejoins it itself as each
    # request begins and ends (the hot path); `moved` does the same for any other change.
    idle: dict[Connection, None]

    def admit(self, connection: Connection) -> bool:
        """A new connection: False when it must be refused (the server counted it)."""

    def moved(self, connection: Connection) -> None:
        """The connection changed phase (the server keeps its idle ones in order)."""

    def forget(self, connection: Connection) -> None:
        """A connection closed."""

    def refused(self, reason: Refusal) -> None:
        """A request this listener could not read."""

    def handshake_failed(self, failure: HandshakeFailed, peer: str) -> None:
        """Count and log a failed TLS handshake."""

    def later(self, answer: Awaitable[Answer], connection: Connection) -> None:
        """Run a site's later answer; the server calls `deliver` with it."""


def pending_bytes(transport: asyncio.BaseTransport) -> int:
    """Bytes the kernel holds for this connection, not read yet (FIONREAD); 0 when it
    cannot tell. A stop asks, so that a request on its way in is read, not cut off."""
    sock = transport.get_extra_info("socket")
    count = array.array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, count, True)
    except (AttributeError, OSError, ValueError):
        return 0
    return count[0]
