"""The set of Falco targets and their subscriptions: added, removed, reconnected.

Static targets come from the configuration; discovery adds and removes others. Each
target has its own subscription, state, counter shard and log context, and is
subscribed once however many ways it was named.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from exporter.core.counter import EventCounter, Shard
from exporter.core.event import EventSink
from exporter.inputs.grpc.targets import Target, TargetFeed, TargetState
from exporter.settings.config import StreamConfig

if TYPE_CHECKING:
    from exporter.inputs.grpc.subscription import Subscription


@dataclass
class _Running:
    feed: TargetFeed
    subscription: Subscription
    shard: Shard
    discovered: bool


class Subscriptions:
    """Owns one running subscription per target name."""

    def __init__(
        self,
        counter: EventCounter,
        stream: StreamConfig,
        wrap_sink: Callable[[EventSink], EventSink] = lambda sink: sink,
    ) -> None:
        """`wrap_sink` wraps each target's counting function (the live page's recent alerts)."""
        self._counter = counter
        self._wrap_sink = wrap_sink
        self._stream = stream
        self._running: dict[str, _Running] = {}
        self.any_connected = asyncio.Event()
        self._log = structlog.get_logger("targets")

    def states(self) -> list[TargetState]:
        """The state of every current target, for readiness and self-metrics."""
        return [running.feed.state for running in self._running.values()]

    def names(self) -> set[str]:
        """The names of every current target."""
        return set(self._running)

    def add(self, target: Target, *, discovered: bool = False) -> bool:
        """Start subscribing to target, unless a target of that name already runs."""
        if target.name in self._running:
            return False
        # Loaded with the first target: grpc and protobuf cost the HTTP-only sidecar ~12 MiB.
        from exporter.inputs.grpc.subscription import Subscription  # noqa: PLC0415

        shard = self._counter.shard()
        feed = TargetFeed(
            target, self._stream, self._wrap_sink(shard.add), TargetState(target.name)
        )
        subscription = Subscription(feed, self.any_connected)
        subscription.start()
        self._running[target.name] = _Running(feed, subscription, shard, discovered)
        if discovered:
            self._log.info("target discovered; subscribing", target=target.name)
        return True

    async def remove(self, name: str) -> None:
        """Stop a target's subscription cleanly; what it counted stays in falco_events."""
        running = await self._stop_one(name)
        if running is not None:
            self._log.info(
                "target gone; subscription stopped",
                target=name,
                events_counted=running.feed.state.events,
            )

    async def _stop_one(self, name: str) -> _Running | None:
        running = self._running.pop(name, None)
        if running is None:
            return None
        try:
            await running.subscription.stop()
        finally:
            self._counter.retire(running.shard)
        return running

    async def reconcile_discovered(self, targets: list[Target]) -> None:
        """Make the discovered targets exactly `targets` (static ones are never removed)."""
        wanted = {target.name: target for target in targets}
        for name, running in list(self._running.items()):
            if running.discovered and name not in wanted:
                await self.remove(name)
        for target in wanted.values():
            self.add(target, discovered=True)

    def reconnect_all(self) -> None:
        """Every subscription connects again after its current drain (new certificates)."""
        for running in self._running.values():
            running.subscription.request_reconnect()

    async def stop(self) -> None:
        """Stop every subscription."""
        await asyncio.gather(*(self._stop_one(name) for name in list(self._running)))
