"""What one peer may make a listener spend, as numbers: connections, bytes and time.

Every port is reachable by someone who would like it silent (docs/security.md has the
threat model). Each listener has its own limits, so pressure on one never takes away
another's capacity: the kubelet's probes and Falco's input keep their own slots.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

# A request line (method, target, version) longer than this is answered 414.
MAX_REQUEST_LINE = 8 * 1024
# The whole head (request line and headers) larger than this is answered 431; so is a
# request with more headers than MAX_HEADERS.
MAX_HEAD = 16 * 1024
MAX_HEADERS = 100


@dataclass(frozen=True)
class ListenerLimits:
    """One listener's bounds; every field has a default that fits its port's job."""

    max_connections: int = 128  # open at once; past it the oldest idle (or slow) one is closed
    max_per_peer: int = 32  # open at once from one peer address
    first_byte_timeout: float = 5.0  # a connection that sends nothing is closed after this
    read_timeout: float = 10.0  # a request (or a TLS handshake) must arrive within this
    slow_request: float = 1.0  # at the limit, a request begun this long ago may be closed
    idle_timeout: float = 60.0  # a keep-alive connection idle this long is closed
    max_body: int = 64 * 1024  # the largest body read (a site may set its own)
    linger_time: float = 2.0  # after an early answer, read and discard for at most this
    linger_bytes: int = 2 * 1024 * 1024  # ... and at most this many bytes


# The probes port serves the kubelet, which opens one connection per probe.
PROBES = ListenerLimits(max_connections=32, max_per_peer=8, idle_timeout=30.0)
# The main port serves Prometheus' scrapes and the people who open the live page.
METRICS = ListenerLimits(max_connections=128, max_per_peer=32, idle_timeout=120.0)


class ListenError(OSError):
    """A listener could not bind its address: which listener, and the system's reason."""

    def __init__(self, listener: str, address: str, error: OSError) -> None:
        super().__init__(error.errno, error.strerror or str(error))
        self.listener, self.address = listener, address
        # No such name or no such address here: the setting is wrong, not the moment.
        self.misconfigured = isinstance(error, socket.gaierror) or error.errno in (
            errno.EADDRNOTAVAIL,
            errno.EAFNOSUPPORT,
        )
