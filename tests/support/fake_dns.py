"""A small DNS server for tests: answers A records for one name, or misbehaves on demand.

Modes: "answer" (A records from `addresses`, no AAAA), "silent" (never answers),
"garbage" (random bytes), "slow" (a correct answer, too late for the resolver).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import struct

_TYPE_A = 1
_SLOW_SECONDS = 3.0


class FakeDns(asyncio.DatagramProtocol):
    """UDP DNS on a loopback address."""

    def __init__(self, name: str) -> None:
        self.name = name.lower().rstrip(".")
        self.addresses: list[str] = []
        self.mode = "answer"
        self.queries = 0
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 53) -> None:
        """Listen; raises OSError when the port is taken."""
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=(host, port)
        )

    def stop(self) -> None:
        """Close the socket."""
        if self._transport is not None:
            self._transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport to answer on."""
        assert isinstance(transport, asyncio.DatagramTransport)
        self._transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        """Answer one query according to the mode."""
        self.queries += 1
        if self.mode == "silent" or self._transport is None:
            return
        if self.mode == "garbage":
            self._transport.sendto(os.urandom(len(data) + 16), addr)
            return
        reply = self._answer(data)
        if self.mode == "slow":
            asyncio.get_running_loop().call_later(_SLOW_SECONDS, self._send, reply, addr)
        else:
            self._send(reply, addr)

    def _send(self, reply: bytes, addr: tuple[str | object, int]) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(reply, addr)

    def _answer(self, query: bytes) -> bytes:
        """A response with our A records for our name; NXDOMAIN for any other name."""
        ident, question = query[:2], query[12:]
        labels, position = [], 0
        while question[position]:
            length = question[position]
            labels.append(question[position + 1 : position + 1 + length].decode().lower())
            position += length + 1
        qtype = struct.unpack("!H", question[position + 1 : position + 3])[0]
        question = question[: position + 5]
        if ".".join(labels) != self.name:
            return ident + struct.pack("!HHHHH", 0x8183, 1, 0, 0, 0) + question
        answers = b""
        count = 0
        if qtype == _TYPE_A:
            for address in self.addresses:
                answers += struct.pack("!HHHIH", 0xC00C, _TYPE_A, 1, 5, 4)
                answers += ipaddress.IPv4Address(address).packed
                count += 1
        return ident + struct.pack("!HHHHH", 0x8180, 1, count, 0, 0) + question + answers
