"""One client connection of the HTTP server: httptools' callbacks fill a request, and its
last byte answers it, with no task and no copy between the socket and the site.

What a connection owes a sender it does not trust:
- a body larger than the limit is refused from its Content-Length, before it is read;
- a request whose headers or body do not arrive within the read timeout is answered
  408 and closed (the server's sweep calls `check_timeouts`);
- a keep-alive connection idle for the idle timeout is closed;
- anything the parser refuses (bad lengths, garbage) is answered 400 and closed;
- `Expect: 100-continue` (libcurl sends it for large bodies) is honoured.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, cast

import httptools
from structlog.typing import FilteringBoundLogger

from exporter.http.messages import Answer, Refusal, Request, Site, encode_answer

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_INTERNAL_ERROR = Answer(500, b"internal error; see the exporter's log\n", b"text/plain")


class ServerSide(Protocol):
    """What a connection reads of its server."""

    site: Site
    encoded_constants: dict[int, bytes]
    connections: set[Connection]
    stopping: bool
    log: FilteringBoundLogger

    def forget(self, connection: Connection) -> None:
        """A connection closed."""


class Connection(asyncio.Protocol):
    """One client connection: parser callbacks fill a request, its last byte answers it."""

    def __init__(self, server: ServerSide) -> None:
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
            self._site.refuse(Refusal.INCOMPLETE, "connection closed mid-request", self._peer)
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
            self.refuse(Refusal.MALFORMED_REQUEST, "protocol upgrades are not supported")
        except httptools.HttpParserError as error:
            if not self._closing:
                self.refuse(Refusal.MALFORMED_REQUEST, f"malformed HTTP request: {error}")

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
            self.refuse(Refusal.TOO_LARGE, f"body larger than {self._max_body} bytes")
            return
        if self._expect_continue and self._transport is not None:
            self._transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        """Collect the body, refusing it as soon as it passes the limit."""
        if self._closing:
            return
        self._size += len(body)
        if self._size > self._max_body:
            self.refuse(Refusal.TOO_LARGE, f"body larger than {self._max_body} bytes")
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

    def refuse(self, reason: Refusal, detail: str) -> None:
        """Count the refusal, answer it, and close: the rest of the stream is not trusted."""
        if self._closing:
            return
        answer = self._site.refuse(reason, detail, self._peer)
        if self._transport is not None and answer is not None:
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
                self.refuse(Refusal.TIMEOUT, f"request not received within {read_timeout:g}s")
        elif now - self.since > idle_timeout:
            self.close()
