"""A raw HTTP/1.1 exchange over a socket, for requests no well-behaved client would send."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class RawAnswer:
    """What came back: the status and body of a response, or nothing before the close."""

    status: int | None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    closed: bool = False


async def exchange(
    port: int, data: bytes, *, timeout: float = 10.0, close_after_send: bool = False
) -> RawAnswer:
    """Send `data` on a new connection; read one response (or the close) within `timeout`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if close_after_send:
            writer.close()
            return RawAnswer(None, closed=True)
        async with asyncio.timeout(timeout):
            return await read_answer(reader)
    finally:
        writer.close()


async def read_answer(reader: asyncio.StreamReader) -> RawAnswer:
    """One response, skipping `100 Continue`; RawAnswer(None) if closed before one."""
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionResetError):
            return RawAnswer(None, closed=True)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if status == 100:
            continue
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        closed = headers.get("connection", "").lower() == "close"
        return RawAnswer(status, headers, body, closed)


def post_request(body: bytes, *, path: str = "/", headers: dict[str, str] | None = None) -> bytes:
    """A POST as Falco's libcurl writes it, with a correct Content-Length unless given."""
    fields = {
        "Host": "127.0.0.1",
        "User-Agent": "falcosecurity/falco",
        "Accept": "*/*",
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        **(headers or {}),
    }
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return head.encode("latin-1") + b"\r\n" + body


async def exchange_all(
    port: int, requests: list[bytes], *, timeout: float = 10.0
) -> list[RawAnswer]:
    """Send each request on one keep-alive connection, in turn, reading each answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers = []
    try:
        async with asyncio.timeout(timeout):
            for request in requests:
                writer.write(request)
                await writer.drain()
                answers.append(await read_answer(reader))
    finally:
        writer.close()
    return answers
