"""The floor of bench/http_input.py: the least a Python server can do per POST.

An asyncio.Protocol that finds the end of the headers, reads Content-Length bytes of
body and answers a fixed 200; no parser, no decoding, no counting. Nothing useful can
be cheaper in Python, so the HTTP input's cost is reported as a ratio to it.
Prints its port, then serves until terminated. `--uvloop` runs it on uvloop, the
floor of an exporter that runs there.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from typing import cast

_LENGTH = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")
_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class Floor(asyncio.Protocol):
    """Read whole requests from the buffer; answer each with the same bytes."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport to answer on."""
        # uvloop's transports have the methods of asyncio.Transport, not the class.
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        """Answer every complete request in the buffer."""
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            match = _LENGTH.search(self.buffer, 0, end + 2)
            total = end + 4 + (int(match.group(1)) if match else 0)
            if len(self.buffer) < total:
                return
            self.buffer = self.buffer[total:]
            assert self.transport is not None
            self.transport.write(_ANSWER)


async def serve() -> None:
    """Listen on a free loopback port until SIGTERM."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Floor, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    if "--uvloop" in sys.argv:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve())
    else:
        asyncio.run(serve())
