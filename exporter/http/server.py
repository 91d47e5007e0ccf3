"""The exporter's one HTTP stack: HTTP/1.1 read with httptools, straight on asyncio's transports.

All three listeners run on it: the HTTP input, the main port (/metrics, the live page)
and the probes port. Each is a Site: a synchronous function from a complete Request to
an Answer, plus what to say when the request itself is refused.

Falco posts one alert per request from one thread and waits for each answer before
its next output of any kind (../shared/FALCO.md, section 5), so the answer's latency
is Falco's output ceiling, and anything malformed must still get a fast, counted 4xx.
A request is handled where its last byte is parsed: there is no task, no framework
object and no copy between the socket and the counter. One small stack instead of a
framework also keeps the sidecar's memory low: it runs on every node.

What a server owes a sender it does not trust:
- a body larger than the limit is refused from its Content-Length, before it is read;
- a request whose headers or body do not arrive within the read timeout is answered
  408 and closed, so a slow or stuck client holds no connection for long;
- a keep-alive connection idle for the idle timeout is closed;
- anything the parser refuses (bad lengths, garbage) is answered 400 and closed;
- `Expect: 100-continue` (libcurl sends it for large bodies) is honoured.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol, cast

import httptools
import structlog

from exporter.settings.addresses import parse_listen_address

_STATUS_LINES = {
    status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode() for status in HTTPStatus
}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_SHUTDOWN_GRACE = 1.0


@dataclass(frozen=True)
class Request:
    """What the server read of one request: the headers a site reads, and the body."""

    method: bytes
    path: bytes
    content_type: bytes
    content_encoding: bytes
    body: bytes
    peer: str
    accept_encoding: bytes = b""


@dataclass(frozen=True)
class Answer:
    """The status, body and extra header lines to send; the server decides keep-alive."""

    status: int
    body: bytes
    content_type: bytes = b"application/json"
    headers: bytes = b""  # whole lines, each ending in CRLF


class Site(Protocol):
    """What one listener serves."""

    @property
    def max_body(self) -> int:
        """The largest body it reads; a larger one is refused as `too_large`."""

    @property
    def server_header(self) -> bytes:
        """A whole `Server:` line for every answer, or b"" to send none."""

    @property
    def constant_answers(self) -> tuple[Answer, ...]:
        """Answers returned as the same object every time: encoded once, at start."""

    def handle(self, request: Request) -> Answer:
        """The answer to one complete request."""

    def refuse(self, reason: str, detail: str, peer: str) -> Answer:
        """The answer to a request the server refused (status 0: none can be sent).

        Reasons: malformed_request, too_large, timeout, incomplete.
        """


_INTERNAL_ERROR = Answer(500, b"internal error; see the exporter's log\n", b"text/plain")


def encode_answer(
    answer: Answer, close: bool, server_header: bytes = b"", head: bool = False
) -> bytes:
    """The bytes of a whole response (only its head, for HEAD); no version is disclosed."""
    parts = [
        _STATUS_LINES[answer.status],
        b"Content-Type: ",
        answer.content_type,
        b"\r\nContent-Length: %d\r\n" % len(answer.body),
        server_header,
        answer.headers,
    ]
    if close:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    if not head:
        parts.append(answer.body)
    return b"".join(parts)


class _Connection(asyncio.Protocol):
    """One client connection: parser callbacks fill a request, its last byte answers it."""

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._site = server.site
        self._max_body = server.site.max_body
        self._encoded = server.encoded_constants
        self._server_header = server.site.server_header
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._peer = ""
        self._closing = False
        self.in_request = False
        self.since = time.monotonic()
        self._reset()

    def _reset(self) -> None:
        self._url = b""
        self._content_type = b""
        self._content_encoding = b""
        self._accept_encoding = b""
        self._expect_continue = False
        self._declared_length = 0
        self._body: list[bytes] = []
        self._size = 0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Track the connection so timeouts and shutdown can reach it."""
        # uvloop's transports have the methods of asyncio.Transport, not the class.
        self._transport = cast("asyncio.Transport", transport)
        peer = transport.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "")
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        """A client that leaves in the middle of a request is counted as `incomplete`."""
        self._server.forget(self)
        if self.in_request and not self._closing:
            self._site.refuse("incomplete", "connection closed mid-request", self._peer)
        self._closing = True

    def data_received(self, data: bytes) -> None:
        """Feed the parser; what it refuses is answered 400 and the connection closed."""
        if self._closing:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            # Our own code failed, not the client: say so in the log, never as a 400.
            self._server.log.exception("failed on a request", peer=self._peer)
            if self._transport is not None:
                self._transport.write(
                    encode_answer(_INTERNAL_ERROR, close=True, server_header=self._server_header)
                )
            self.close()
        except httptools.HttpParserUpgrade:
            self.refuse("malformed_request", "protocol upgrades are not supported")
        except httptools.HttpParserError as error:
            if not self._closing:
                self.refuse("malformed_request", f"malformed HTTP request: {error}")

    def pause_writing(self) -> None:
        """A client that does not read its answers stops being read."""
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        """Its answers drained: read it again."""
        if self._transport is not None and not self._closing:
            self._transport.resume_reading()

    # httptools callbacks

    def on_message_begin(self) -> None:
        """A request starts: its read timeout runs from here."""
        self.in_request = True
        self.since = time.monotonic()

    def on_url(self, url: bytes) -> None:
        """The target arrives in pieces."""
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        """Keep only the headers the input reads."""
        lowered = name.lower()
        if lowered == b"content-type":
            self._content_type = value
        elif lowered == b"content-encoding":
            self._content_encoding = value
        elif lowered == b"accept-encoding":
            self._accept_encoding = value
        elif lowered == b"expect":
            self._expect_continue = value.lower() == b"100-continue"
        elif lowered == b"content-length" and value.isdigit():
            self._declared_length = int(value)  # the parser itself refuses a bad one

    def on_headers_complete(self) -> None:
        """Refuse a declared body over the limit before reading it; else invite it."""
        if self._declared_length > self._max_body:
            self.refuse("too_large", f"body larger than {self._max_body} bytes")
            return
        if self._expect_continue and self._transport is not None:
            self._transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        """Collect the body, refusing it as soon as it passes the limit."""
        if self._closing:
            return
        self._size += len(body)
        if self._size > self._max_body:
            self.refuse("too_large", f"body larger than {self._max_body} bytes")
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        """The whole request is here: count its events and answer at once."""
        if self._closing:
            return
        self.in_request = False
        self.since = time.monotonic()
        method = self._parser.get_method()
        request = Request(
            method=method,
            path=self._url,
            content_type=self._content_type,
            content_encoding=self._content_encoding,
            body=b"".join(self._body),
            peer=self._peer,
            accept_encoding=self._accept_encoding,
        )
        self._reset()
        answer = self._site.handle(request)
        keep_alive = self._parser.should_keep_alive() and not self._server.stopping
        assert self._transport is not None
        if keep_alive:
            encoded = self._encoded.get(id(answer))
            if encoded is not None and method != b"HEAD":
                self._transport.write(encoded)
                return
        self._transport.write(
            encode_answer(
                answer,
                close=not keep_alive,
                server_header=self._server_header,
                head=method == b"HEAD",
            )
        )
        if not keep_alive:
            self.close()

    # the server's controls

    def refuse(self, reason: str, detail: str) -> None:
        """Count the refusal, answer it, and close: the rest of the stream is not trusted."""
        if self._closing:
            return
        answer = self._site.refuse(reason, detail, self._peer)
        if self._transport is not None and answer.status:
            self._transport.write(
                encode_answer(answer, close=True, server_header=self._server_header)
            )
        self.close()

    def close(self) -> None:
        """Close after what was written is sent."""
        self._closing = True
        self.in_request = False
        if self._transport is not None:
            self._transport.close()

    def check_timeouts(self, now: float, read_timeout: float, idle_timeout: float) -> None:
        """408 for a request slower than the read timeout; close an idle connection."""
        if self._closing:
            return
        if self.in_request:
            if now - self.since > read_timeout:
                self.refuse("timeout", f"request not received within {read_timeout:g}s")
        elif now - self.since > idle_timeout:
            self.close()


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
        self.connections: set[_Connection] = set()
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
        factory: Callable[[], asyncio.Protocol] = lambda: _Connection(self)  # noqa: E731
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

    def forget(self, connection: _Connection) -> None:
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
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for connection in list(self.connections):
            if not connection.in_request:
                connection.close()
        if self.connections:
            # A request in flight closes its connection once answered (no keep-alive now).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), _SHUTDOWN_GRACE)
        for connection in list(self.connections):
            connection.close()
        self._server = None
