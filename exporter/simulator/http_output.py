"""Deliver events the way Falco's http_output does: one JSON POST per alert.

With `snapshot_interval`, it also counts what it raises per hostname, as Falco does, and
posts Falco's metrics snapshot every interval (falco_counts.py); with `drop_share`, that
share of the alerts is raised and counted but never posted, as a broken path loses them.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import ssl
from collections.abc import Sequence
from typing import Any

import aiohttp

from exporter.core.falco_snapshot import INTERNAL_SOURCE
from exporter.runtime.tasks import cancel_and_wait
from exporter.simulator.falco_counts import FalcoCounts

FALCO_HEADERS = {"Content-Type": "application/json", "User-Agent": "falcosecurity/falco"}


class _Output:
    """Falco's http_output to one URL: one post at a time, in order, and Falco's counts."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        ssl_context: ssl.SSLContext | None,
        compress: bool,
    ) -> None:
        self.session, self.url, self.ssl, self.compress = session, url, ssl_context, compress
        self.accepted = 0
        self.falcos: dict[str, FalcoCounts] = {}
        self._one_output_thread = asyncio.Lock()

    async def send(self, document: dict[str, Any]) -> None:
        """POST it; a refused connection is retried each second (the exporter may start
        after the simulator)."""
        body = json.dumps(document).encode()
        if self.compress:
            body = gzip.compress(body)
        async with self._one_output_thread:
            while True:
                try:
                    async with self.session.post(
                        self.url, data=body, ssl=self.ssl or True
                    ) as response:
                        self.accepted += response.status < 300
                except aiohttp.ClientSSLError:
                    raise
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(1.0)
                else:
                    return

    async def count(self, document: dict[str, Any]) -> dict[str, Any]:
        """Its Falco (by hostname) matched it: counted, as that Falco posts it. A Falco
        first named here sends a snapshot first, as one that ran before would have at its
        last interval, so that the exporter has its baseline before any alert is dropped."""
        hostname = str(document.get("hostname", ""))
        falco = self.falcos.get(hostname)
        if falco is None:
            engine = "modern_ebpf" if document.get("source") == "syscall" else "nodriver"
            falco = self.falcos[hostname] = FalcoCounts(hostname, engine=engine)
            await self.send(falco.snapshot())
        if document.get("source") == INTERNAL_SOURCE:
            return {**document, "hostname": hostname}  # Falco's own message: no rule matched
        return falco.matched(document)

    async def snapshots(self) -> None:
        """Every Falco's snapshot, now."""
        for falco in list(self.falcos.values()):
            await self.send(falco.snapshot())

    async def heartbeat(self, interval: float) -> None:
        """Snapshots every interval, alerts or not, as Falco's metrics timer sends them."""
        while True:
            await asyncio.sleep(interval)
            await self.snapshots()


async def post_events(
    url: str,
    documents: Sequence[dict[str, Any]],
    *,
    rate: float,
    loop: bool,
    ssl_context: ssl.SSLContext | None = None,
    compress: bool = False,
    snapshot_interval: float = 0.0,
    drop_share: float = 0.0,
    seed: int | None = None,
    then_idle: bool = False,
) -> int:
    """POST each document to url at `rate` per second (0: at once), once or forever.

    Returns how many posts were answered 2xx. With `snapshot_interval`, snapshots go out
    on their own timer, as Falco's do; after a replay `loop=False` posts a last one, so that
    Falco's count of the replay arrives, or with `then_idle` keeps posting them (an idle
    Falco's heartbeat) until cancelled.
    """
    interval = 1.0 / rate if rate > 0 else 0.0
    clock = asyncio.get_running_loop().time
    next_at = clock()
    chance = random.Random(seed)  # noqa: S311 - which posts a test drops, not a secret
    headers = dict(FALCO_HEADERS)
    if compress:
        headers["Content-Encoding"] = "gzip"
    async with aiohttp.ClientSession(headers=headers) as session:
        output = _Output(session, url, ssl_context, compress)
        timer = asyncio.create_task(output.heartbeat(snapshot_interval))
        if not snapshot_interval:
            timer.cancel()
        try:
            while True:
                for sample in documents:
                    if interval:
                        next_at += interval
                        await asyncio.sleep(max(0.0, next_at - clock()))
                    document = await output.count(sample) if snapshot_interval else sample
                    if drop_share and chance.random() < drop_share:
                        continue  # raised and counted by Falco, lost on the way
                    await output.send(document)
                if not loop:
                    break
                if not interval:
                    await asyncio.sleep(1.0)
            if snapshot_interval and then_idle:
                await timer  # until cancelled
            await cancel_and_wait([timer])
            await output.snapshots()
            return output.accepted
        finally:
            await cancel_and_wait([timer])
