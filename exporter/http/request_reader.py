"""Requests out of a connection's bytes: httptools' parser, fed within the head limits.

The parser holds a partial head in memory, so the head is fed a slice at a time and
refused (414 or 431) as soon as it passes the limit; a body is refused (413) from its
Content-Length before it is read, or as soon as it passes the limit. The reader knows no
socket: it tells its connection what happened (ReaderEvents).
"""

from __future__ import annotations

from typing import Protocol

import httptools

from exporter.http.limits import MAX_HEAD, MAX_HEADERS, MAX_REQUEST_LINE
from exporter.http.messages import Refusal, Request


class ReaderEvents(Protocol):
    """What the reader tells its connection."""

    def request_began(self) -> None:
        """A request's first byte arrived."""

    def refuse(self, reason: Refusal, detail: str) -> None:
        """The request breaks a limit or the protocol; nothing more is read of it."""

    def continue_wanted(self) -> None:
        """The client waits for `100 Continue` before it sends its body."""

    def request_read(self, request: Request) -> None:
        """A whole request arrived."""

    @property
    def reading(self) -> bool:
        """Whether the connection still reads requests (not refusing, not closed)."""


class RequestReader:
    """Parses one connection's requests; bounded in what it holds of each."""

    def __init__(self, events: ReaderEvents, max_body: int, peer: str) -> None:
        self._events = events
        self._max_body = max_body
        self._peer = peer
        self._parser = httptools.HttpRequestParser(self)
        self.in_request = False
        self._reset()

    def _reset(self) -> None:
        self._url = b""
        self._content_type = b""
        self._content_encoding = b""
        self._accept_encoding = b""
        self._authorization = b""
        self._expect_continue = False
        self._declared_length = 0
        self._body: list[bytes] = []
        self._size = 0
        self._in_head = True
        self._head_size = 0
        self._headers = 0

    def feed(self, data: bytes) -> bytes:
        """Parse `data` in slices of the head limit; return what is left unparsed when the
        connection stopped reading (refused, or busy with a later answer).

        A slice that finishes one message and begins the next leaves at most one slice of
        the new head uncounted: what the parser holds of a head is at most twice MAX_HEAD.
        httptools.HttpParserCallbackError (a bug of ours in a callback) propagates.
        """
        position, size = 0, len(data)
        if size <= MAX_HEAD:  # the usual: one request in one read (fed only while reading)
            if self._in_head:
                self._head_size += size
            try:
                self._parser.feed_data(data)
            except (httptools.HttpParserError, httptools.HttpParserUpgrade) as error:
                self._failed(error)
                return b""
            if self._in_head and self.in_request and self._head_size > MAX_HEAD:
                self._refuse_long_head()
            return b""
        events = self._events
        while position < size:
            if not events.reading:
                return data[position:]
            piece = data if size <= MAX_HEAD else data[position : position + MAX_HEAD]
            position += len(piece)
            if self._in_head:
                self._head_size += len(piece)
            if not self._parse(piece):
                return b""
        return b""

    def _parse(self, piece: bytes) -> bool:
        """Feed one slice; False once the request is refused (its head too long, or not
        HTTP/1.1 as the parser reads it)."""
        try:
            self._parser.feed_data(piece)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as error:
            self._failed(error)
            return False
        if self._in_head and self.in_request and self._head_size > MAX_HEAD:
            self._refuse_long_head()
            return False
        return True

    def _failed(self, error: Exception) -> None:
        """The parser stopped: the client's request is refused; a bug of ours in a callback
        (HttpParserCallbackError) propagates, for the connection to log and answer 500."""
        if isinstance(error, httptools.HttpParserCallbackError):
            raise error
        if isinstance(error, httptools.HttpParserUpgrade):
            self._refuse(Refusal.MALFORMED_REQUEST, "protocol upgrades are not supported")
        else:
            self._refuse(Refusal.MALFORMED_REQUEST, f"malformed HTTP request: {error}")

    def _refuse_long_head(self) -> None:
        if not self._headers and len(self._url) > MAX_REQUEST_LINE // 2:
            self._refuse(Refusal.URI_TOO_LONG, f"request line longer than {MAX_REQUEST_LINE} bytes")
        else:
            self._refuse(Refusal.HEADERS_TOO_LARGE, f"request head larger than {MAX_HEAD} bytes")

    def _refuse(self, reason: Refusal, detail: str) -> None:
        self.in_request = False
        self._events.refuse(reason, detail)

    # httptools callbacks

    def on_message_begin(self) -> None:
        """A request starts: its read timeout runs from here."""
        self.in_request = True
        self._events.request_began()

    def on_url(self, url: bytes) -> None:
        """The target arrives in pieces."""
        self._url += url
        if len(self._url) > MAX_REQUEST_LINE:
            self._refuse(Refusal.URI_TOO_LONG, f"request line longer than {MAX_REQUEST_LINE} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        """Keep only the headers the sites read; count them all (the count is checked once
        the head is complete: what the parser holds is bounded by MAX_HEAD meanwhile)."""
        self._headers += 1
        lowered = name.lower()
        if lowered == b"content-type":
            self._content_type = value
        elif lowered == b"content-encoding":
            self._content_encoding = value
        elif lowered == b"accept-encoding":
            self._accept_encoding = value
        elif lowered == b"authorization":
            self._authorization = value
        elif lowered == b"expect":
            self._expect_continue = value.lower() == b"100-continue"
        elif lowered == b"content-length" and value.isdigit():
            self._declared_length = int(value)  # the parser itself refuses a bad one

    def on_headers_complete(self) -> None:
        """Refuse a declared body over the limit before reading it; else invite it."""
        self._in_head = False
        if not self.in_request:
            return
        if self._headers > MAX_HEADERS:
            self._refuse(Refusal.HEADERS_TOO_LARGE, f"more than {MAX_HEADERS} headers")
        elif self._declared_length > self._max_body:
            self._refuse(Refusal.TOO_LARGE, f"body larger than {self._max_body} bytes")
        elif self._expect_continue:
            self._events.continue_wanted()

    def on_body(self, body: bytes) -> None:
        """Collect the body, refusing it as soon as it passes the limit."""
        if not self.in_request:
            return
        self._size += len(body)
        if self._size > self._max_body:
            self._refuse(Refusal.TOO_LARGE, f"body larger than {self._max_body} bytes")
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        """The whole request is here."""
        if not self.in_request:
            return
        request = Request(
            method=self._parser.get_method(),
            path=self._url,
            content_type=self._content_type,
            content_encoding=self._content_encoding,
            body=b"".join(self._body),
            peer=self._peer,
            accept_encoding=self._accept_encoding,
            keep_alive=self._parser.should_keep_alive(),
            authorization=self._authorization,
        )
        self._reset()
        self.in_request = False
        self._events.request_read(request)
