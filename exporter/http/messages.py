"""What the HTTP server and the sites it serves say to each other: a complete Request in,
an Answer out, and the refusals the server makes before a site ever sees a request.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from enum import StrEnum
from http import HTTPStatus
from typing import Protocol

_STATUS_LINES = {
    status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode() for status in HTTPStatus
}


class Refusal(StrEnum):
    """Why the server refused a request itself; each is a metric label value."""

    MALFORMED_REQUEST = "malformed_request"  # not HTTP/1.1 as the parser reads it
    URI_TOO_LONG = "uri_too_long"  # a request line over the limit
    HEADERS_TOO_LARGE = "headers_too_large"  # a head over the limit, or too many headers
    TOO_LARGE = "too_large"  # a body over the site's limit
    TIMEOUT = "timeout"  # the headers or the body did not arrive within the read timeout
    INCOMPLETE = "incomplete"  # the client closed the connection in the middle of a request

    @property
    def status(self) -> int | None:
        """The status it is answered with; None when no answer can reach the client."""
        return _REFUSAL_STATUS[self]


_REFUSAL_STATUS: dict[Refusal, int | None] = {
    Refusal.MALFORMED_REQUEST: 400,
    Refusal.URI_TOO_LONG: 414,
    Refusal.HEADERS_TOO_LARGE: 431,
    Refusal.TOO_LARGE: 413,
    Refusal.TIMEOUT: 408,
    Refusal.INCOMPLETE: None,
}


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
    keep_alive: bool = True  # what the client asked for (HTTP/1.1's default, or Connection)
    authorization: bytes = b""  # the Authorization header, for a web configuration's users


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
        """The largest body it reads; a larger one is refused as too large."""

    @property
    def server_header(self) -> bytes:
        """A whole `Server:` line for every answer, or b"" to send none."""

    @property
    def constant_answers(self) -> tuple[Answer, ...]:
        """Answers returned as the same object every time: encoded once, at start."""

    def handle(self, request: Request) -> Answer | Awaitable[Answer]:
        """The answer to one complete request, now or later (work that must yield)."""

    def refuse(self, reason: Refusal, detail: str, peer: str) -> Answer | None:
        """The answer to a request the server refused; None when none can be sent."""


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
