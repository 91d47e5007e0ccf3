"""Deliver events the way Falco's http_output does: one JSON POST per alert."""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
from collections.abc import Sequence
from typing import Any

import aiohttp

FALCO_HEADERS = {"Content-Type": "application/json", "User-Agent": "falcosecurity/falco"}


async def post_events(
    url: str,
    documents: Sequence[dict[str, Any]],
    *,
    rate: float,
    loop: bool,
    ssl_context: ssl.SSLContext | None = None,
    compress: bool = False,
) -> int:
    """POST each document to url at `rate` per second (0: at once), once or forever.

    Returns how many posts were answered 2xx. A refused connection is retried each
    second, as the exporter may start after the simulator.
    """
    accepted = 0
    interval = 1.0 / rate if rate > 0 else 0.0
    clock = asyncio.get_running_loop().time
    next_at = clock()
    headers = dict(FALCO_HEADERS)
    if compress:
        headers["Content-Encoding"] = "gzip"
    async with aiohttp.ClientSession(headers=headers) as session:
        while True:
            for document in documents:
                if interval:
                    next_at += interval
                    await asyncio.sleep(max(0.0, next_at - clock()))
                body = json.dumps(document).encode()
                if compress:
                    body = gzip.compress(body)
                while True:
                    try:
                        async with session.post(
                            url, data=body, ssl=ssl_context or True
                        ) as response:
                            accepted += response.status < 300
                        break
                    except aiohttp.ClientSSLError:
                        raise
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(1.0)
            if not loop:
                return accepted
            if not interval:
                await asyncio.sleep(1.0)
