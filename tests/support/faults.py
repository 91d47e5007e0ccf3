"""A TCP proxy between the exporter and a simulated Falco that a test can break.

cut():     reset every open connection (RST), as a crashed peer or a dropped NAT entry does;
stall():   stop forwarding on the open connections without closing them (a half-open
           connection: no FIN, no RST, nothing); new connections still work, unless
           stall(new_connections=True): then they hang too, until restore();
slow(d):   delay every chunk by d seconds;
restore(): forward normally again.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field

_CHUNK = 65536


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    flowing: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class FaultProxy:
    """Forwards 127.0.0.1:<port> to an upstream host:port, with faults on demand."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None
        self._delay = 0.0
        self._stall_new = False
        self.port = 0
        self.connections = 0

    async def start(self) -> int:
        """Listen on a free loopback port; return it."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        """Close everything."""
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        """Reset every open connection, both sides."""
        for link in list(self._links):
            for writer in (link.client, link.upstream):
                _reset(writer)
            for task in link.tasks:
                task.cancel()
        self._links.clear()

    def stall(self, *, new_connections: bool = False) -> None:
        """Stop forwarding on the open connections, leaving them open (and new ones)."""
        self._stall_new = new_connections
        for link in self._links:
            link.flowing.clear()

    def slow(self, delay: float) -> None:
        """Delay every forwarded chunk."""
        self._delay = delay

    def restore(self) -> None:
        """Forward normally."""
        self._delay = 0.0
        self._stall_new = False
        for link in self._links:
            link.flowing.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            _reset(writer)
            return
        self.connections += 1
        link = _Link(writer, up_writer)
        if not self._stall_new:
            link.flowing.set()
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, link)),
            asyncio.create_task(self._pump(up_reader, writer, link)),
        ]

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, link: _Link
    ) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await source.read(_CHUNK):
                await link.flowing.wait()
                if self._delay:
                    await asyncio.sleep(self._delay)
                sink.write(data)
                await sink.drain()
            sink.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0: the peer gets an RST, not a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
