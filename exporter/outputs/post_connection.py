"""One kept-alive HTTP/1.1 connection to the forward's downstream, one POST at a time.

The forward posts as Falco's http_output does (one JSON alert per request, keep-alive), so
a downstream written for Falco (falcosidekick's `/`) takes it unchanged. The answer is read
with httptools, the parser our listeners use, and bounded: a downstream that answers
without end costs a fixed amount of memory and time, then the connection is closed.
"""

from __future__ import annotations

import asyncio
import ssl
from enum import StrEnum

import httptools

from exporter import __version__
from exporter.settings.config import ForwardConfig

# The most of an answer read (falcosidekick answers a few bytes): past it, the connection
# is closed and the attempt counts as failed.
MAX_ANSWER_BYTES = 64 * 1024
_READ_CHUNK = 16 * 1024


class Failure(StrEnum):
    """Why a POST got no answer to act on; each is a metric label value."""

    CONNECT = "connect"  # no connection (refused, unreachable, name not resolved, TLS)
    TIMEOUT = "timeout"  # connected, but no whole answer within the timeout
    CLOSED = "closed"  # the downstream closed the connection before its answer
    PROTOCOL = "protocol"  # not an HTTP/1.1 answer, or larger than MAX_ANSWER_BYTES


class PostError(Exception):
    """A POST without an answer; `reason` says why, str() the detail."""

    def __init__(self, reason: Failure, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class _Answer:
    """httptools' callbacks: how far the answer has come."""

    def __init__(self) -> None:
        self.headers_done = False
        self.complete = False

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_message_complete(self) -> None:
        self.complete = True


class PostConnection:
    """POSTs JSON documents to the forward URL over one connection, opened when needed."""

    def __init__(self, config: ForwardConfig, timeout: float) -> None:
        self._config = config
        self._timeout = timeout
        self._tls = ssl.create_default_context() if config.scheme == "https" else None
        host = f"[{config.host}]" if ":" in config.host else config.host
        default_port = 443 if config.scheme == "https" else 80
        host_header = host if config.port == default_port else f"{host}:{config.port}"
        self._head = (
            f"POST {config.target} HTTP/1.1\r\nHost: {host_header}\r\n"
            f"User-Agent: falco-exporter/{__version__}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def is_open(self) -> bool:
        """True while a connection is kept for the next POST."""
        return self._writer is not None

    async def post(self, body: bytes) -> int:
        """Send one document; the answer's status. Raises PostError, the connection closed."""
        try:
            async with asyncio.timeout(self._timeout):
                reader, writer = await self._connection()
                writer.write(b"%s%d\r\n\r\n%s" % (self._head, len(body), body))
                await writer.drain()
                return await self._read_answer(reader)
        except PostError:
            self.close()
            raise
        except TimeoutError:
            self.close()
            raise PostError(Failure.TIMEOUT, f"no answer within {self._timeout:g} s") from None
        except (OSError, EOFError) as error:
            self.close()
            raise PostError(Failure.CLOSED, str(error) or type(error).__name__) from None

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            try:
                self._reader, self._writer = await asyncio.open_connection(
                    self._config.host, self._config.port, ssl=self._tls, limit=_READ_CHUNK
                )
            except (OSError, ssl.SSLError) as error:
                raise PostError(Failure.CONNECT, str(error) or type(error).__name__) from None
        return self._reader, self._writer

    async def _read_answer(self, reader: asyncio.StreamReader) -> int:
        answer = _Answer()
        parser = httptools.HttpResponseParser(answer)
        read = 0
        while not answer.complete:
            chunk = await reader.read(_READ_CHUNK)
            if not chunk:
                if not answer.headers_done:
                    raise PostError(Failure.CLOSED, "closed without an answer")
                self.close()  # an answer without a length ends with the connection
                break
            read += len(chunk)
            if read > MAX_ANSWER_BYTES:
                raise PostError(Failure.PROTOCOL, f"an answer over {MAX_ANSWER_BYTES} bytes")
            try:
                parser.feed_data(chunk)
            except httptools.HttpParserError as error:
                raise PostError(Failure.PROTOCOL, str(error)) from None
        status = int(parser.get_status_code())
        if not answer.complete or not parser.should_keep_alive():
            self.close()
        return status

    def close(self) -> None:
        """Drop the connection; the next POST opens another."""
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
