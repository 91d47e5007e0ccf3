"""One client connection of the HTTP server: bytes in, through TLS when the listener has it,
to the request reader; each whole request to the site; its answer out, in order.

What a connection owes a sender it does not trust (limits.py has the numbers):
- the head and the body are bounded as read (request_reader.py), each phase has its timeout
  (applied by the server's sweep: 408 for a request that started);
- every early answer reaches the client: the write side is shut, and what the client still
  sends is drained, bounded, before the close (nginx's lingering close): no reset destroys it;
- a site may answer later (an awaitable): reading pauses, and requests parsed behind it wait
  their turn, so answers keep their order; they wait too while the client does not read.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import cast

import httptools

from exporter.http.connection_state import Phase, ServerSide, pending_bytes
from exporter.http.messages import Answer, Refusal, Request, encode_answer
from exporter.http.request_reader import RequestReader
from exporter.http.tls_session import (
    HandshakeFailed,
    HandshakeFailure,
    TlsSession,
    looks_like_plain_http,
)

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_INTERNAL_ERROR = Answer(500, b"internal error; see the exporter's log\n", b"text/plain")
_PLAIN_HTTP = Answer(
    400, b"this port speaks TLS: use an https:// URL\n", b"text/plain; charset=utf-8"
)


class Connection(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: ServerSide, tls: TlsSession | None) -> None:
        self._server = server
        self._site = server.site
        self._limits, self._encoded = server.limits, server.encoded_constants
        self._server_header = server.site.server_header
        self._moved, self._idle = server.moved, server.idle
        self._tls = tls
        self._transport: asyncio.Transport | None = None
        self._reader: RequestReader | None = None
        self.peer = self.peer_host = ""
        self.phase = Phase.FRESH
        self.busy = False  # a site answers the current request later; reading is paused
        self.since = time.monotonic()
        self._answering: Request | None = None  # the request a later answer is for
        self._waiting: deque[Request] = deque()  # parsed behind a later answer
        self._unfed = b""  # read while busy, parsed once the later answer is sent
        self._lingered = 0
        self._writes_paused = False  # the client does not read its answers fast enough

    def _move(self, phase: Phase) -> None:
        self.phase, self.since = phase, time.monotonic()
        self._moved(self)

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Admitted, or refused at the listener's limits."""
        # uvloop's transports have the methods of asyncio.Transport, not the class.
        self._transport = cast("asyncio.Transport", transport)
        peer = transport.get_extra_info("peername")
        self.peer_host = str(peer[0]) if isinstance(peer, tuple) else str(peer or "")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else self.peer_host
        self._reader = RequestReader(self, self._site.max_body, self.peer)
        if not self._server.admit(self):
            self.phase = Phase.CLOSED
            self._transport.abort()  # refused at once: nothing was read, nothing is owed

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection is gone."""
        self._left()
        self.phase = Phase.CLOSED
        self._server.forget(self)

    def eof_received(self) -> bool | None:
        """The client shut its side: a lingering close is done, anything else closes too."""
        self._left()
        self.close()
        return None

    def _left(self) -> None:
        """A client that leaves in the middle of a request is counted as incomplete."""
        if self.phase is Phase.READING:
            self.phase = Phase.CLOSED
            self._server.refused(Refusal.INCOMPLETE)
            self._site.refuse(Refusal.INCOMPLETE, "connection closed mid-request", self.peer)

    def data_received(self, data: bytes) -> None:
        """Bytes from the client: through TLS, then to the request reader."""
        phase = self.phase
        if phase is Phase.CLOSED:
            return
        if phase is Phase.LINGERING:
            self._lingered += len(data)
            if self._lingered > self._limits.linger_bytes:
                self.close()
            return
        if self._tls is not None:
            data = self._decrypt(data)
            if not data:
                return
        elif phase is Phase.FRESH:
            self._move(Phase.IDLE)
        self._feed(data)

    def _decrypt(self, data: bytes) -> bytes:
        tls = self._tls
        assert tls is not None
        if self.phase is Phase.FRESH:
            if looks_like_plain_http(data):
                failure = HandshakeFailed(HandshakeFailure.PLAIN_HTTP, "plain HTTP on a TLS port")
                self._server.handshake_failed(failure, self.peer)
                self._write(encode_answer(_PLAIN_HTTP, close=True), raw=True)
                self._linger()
                return b""
            self._move(Phase.HANDSHAKE)
        try:
            plain = tls.receive(data)
        except HandshakeFailed as failure:
            self._write(tls.pending(), raw=True)  # the alert that tells the client why
            self._server.handshake_failed(failure, self.peer)
            self.close()
            return b""
        self._write(tls.pending(), raw=True)
        if self.phase is Phase.HANDSHAKE and tls.established:
            self._move(Phase.IDLE)
        if tls.peer_closed:
            self.close()
        return plain

    def _feed(self, data: bytes) -> None:
        if self.busy or self._writes_paused:
            self._unfed += data
            return
        assert self._reader is not None
        try:
            self._unfed += self._reader.feed(data)
        except httptools.HttpParserCallbackError:
            # Our own code failed, not the client: say so in the log, never as a 400.
            self._server.log.exception("failed on a request", peer=self.peer)
            self._write(encode_answer(_INTERNAL_ERROR, True, self._server_header))
            self.close()

    def pause_writing(self) -> None:
        """A client that does not read its answers is neither read nor answered: else each
        pipelined /metrics would be rendered into its buffer, megabytes each."""
        self._writes_paused = True
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        """Its answers drained: answer what waited, then read it again."""
        self._writes_paused = False
        if self.phase is not Phase.CLOSED and not self.busy:
            self._carry_on()

    @property
    def reading(self) -> bool:
        """Whether requests are still read (not refused, closed, waiting on a site or on
        the client reading its answers)."""
        closed = self.phase in (Phase.CLOSED, Phase.LINGERING)
        return not closed and not self.busy and not self._writes_paused

    def request_began(self) -> None:
        """A request starts: its read timeout runs from here."""
        self.phase, self.since = Phase.READING, time.monotonic()
        self._idle.pop(self, None)

    def continue_wanted(self) -> None:
        """libcurl asks before sending a large body."""
        self._write(_CONTINUE)

    def request_read(self, request: Request) -> None:
        """Answer now, or after the later answer in progress."""
        self.phase, self.since = Phase.IDLE, time.monotonic()
        if self.busy or self._writes_paused:
            self._waiting.append(request)  # parsed in the same slice as a later answer's
        else:
            self._idle[self] = None
            self._serve(request)

    # answering

    def _serve(self, request: Request) -> None:
        """Answer `request`, and those parsed behind it, until one is answered later (the
        hot path of every POST from Falco: its answer is usually encoded once, at start)."""
        while True:
            result = self._site.handle(request)
            if not isinstance(result, Answer):
                self.busy, self._answering = True, request
                if self._transport is not None:
                    self._transport.pause_reading()
                self._moved(self)
                self._server.later(result, self)
                return
            if not self._send(request, result) or not self._waiting or self._writes_paused:
                return
            request = self._waiting.popleft()

    def deliver(self, answer: Answer) -> None:
        """A later answer is ready: send it, then carry on with what waited behind it."""
        request = self._answering
        if not self.busy or request is None or self.phase is Phase.CLOSED:
            return  # the connection closed meanwhile
        self.busy, self._answering = False, None
        self.since = time.monotonic()
        self._server.moved(self)
        if self._send(request, answer):
            self._carry_on()

    def _carry_on(self) -> None:
        """Answer the requests that waited, then read again, while the client reads."""
        if self._waiting and not self._writes_paused:
            self._serve(self._waiting.popleft())
        if self.busy or self.phase is Phase.CLOSED or self._writes_paused or self._waiting:
            return
        if self._transport is not None:
            self._transport.resume_reading()
        unfed, self._unfed = self._unfed, b""
        if unfed:
            self._feed(unfed)

    def _send(self, request: Request, answer: Answer) -> bool:
        """Write one answer; False once the connection is closing."""
        keep_alive = request.keep_alive and not self._server.stopping
        head = request.method == b"HEAD"
        encoded = self._encoded.get(id(answer)) if keep_alive and not head else None
        self._write(
            encoded or encode_answer(answer, not keep_alive, self._server_header, head=head)
        )
        if not keep_alive:
            self.close()
            return False
        return True

    def _write(self, data: bytes, *, raw: bool = False) -> None:
        """Write an answer, encrypted on a TLS listener; `raw` bytes are TLS's own."""
        transport = self._transport
        if self._tls is not None and not raw:
            data = self._tls.encrypt(data)
        if data and transport is not None and not transport.is_closing():
            transport.write(data)

    def refuse(self, reason: Refusal, detail: str) -> None:
        """Count the refusal, answer it, and close lingering: the rest is not trusted."""
        if self.phase in (Phase.CLOSED, Phase.LINGERING):
            return
        self._server.refused(reason)
        answer = self._site.refuse(reason, detail, self.peer)
        if answer is not None:
            self._write(encode_answer(answer, close=True, server_header=self._server_header))
        self._linger()

    def _linger(self) -> None:
        """Shut the write side after the answer, and drain the client for a bounded while."""
        transport = self._transport
        if transport is None or transport.is_closing():
            self.phase = Phase.CLOSED
            return
        if self._tls is not None and self._tls.established:
            self._write(self._tls.close_notify(), raw=True)
        self._waiting.clear()
        self._move(Phase.LINGERING)
        if transport.can_write_eof():
            transport.write_eof()
        else:
            self.close()

    def time_out(self, failure: HandshakeFailed | None = None) -> None:
        """Too slow: a handshake is counted as failed; a request is answered 408."""
        if failure is not None:
            self._server.handshake_failed(failure, self.peer)
            self.close()
        elif self.phase is Phase.READING:
            timeout = self._limits.read_timeout
            self.refuse(Refusal.TIMEOUT, f"request not received within {timeout:g}s")
        else:
            self.close()

    def unread(self) -> bool:
        """Whether the kernel still holds bytes of the client's (a stop waits for them)."""
        return self._transport is not None and pending_bytes(self._transport) > 0

    def close(self) -> None:
        """Close after what was written is sent."""
        if self.phase is not Phase.CLOSED:
            self.phase = Phase.CLOSED
            self._server.moved(self)
        if self._transport is not None:
            self._transport.close()
