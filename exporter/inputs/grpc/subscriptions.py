"""The set of Falco targets and their subscriptions: added, removed, reconnected.

Static targets come from the configuration; discovery adds and removes others. Each
target has its own subscription, state, counter shard and log context, and is
subscribed once however many ways it was named.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from exporter.core.counter import EventCounter, EventSink, Shard
from exporter.inputs.grpc.targets import SubscriptionSettings, Target, TargetState

if TYPE_CHECKING:
    from exporter.inputs.grpc.subscription import GrpcSubscription


@dataclass
class _Running:
    target: Target
    state: TargetState
    subscription: GrpcSubscription
    shard: Shard
    task: asyncio.Task[None]
    discovered: bool


class Subscriptions:
    """Owns one running subscription per target name."""

    def __init__(
        self,
        counter: EventCounter,
        settings: SubscriptionSettings,
        wrap_sink: Callable[[EventSink], EventSink] = lambda sink: sink,
    ) -> None:
        """`wrap_sink` wraps each target's counting function (the live page's recent alerts)."""
        self._counter = counter
        self._wrap_sink = wrap_sink
        self._settings = settings
        self._running: dict[str, _Running] = {}
        self.any_connected = asyncio.Event()
        self._log = structlog.get_logger("targets")

    def states(self) -> list[TargetState]:
        """The state of every current target, for readiness and self-metrics."""
        return [running.state for running in self._running.values()]

    def names(self) -> set[str]:
        """The names of every current target."""
        return set(self._running)

    def add(self, target: Target, *, discovered: bool = False) -> bool:
        """Start subscribing to target, unless a target of that name already runs."""
        if target.name in self._running:
            return False
        # Loaded with the first target: grpc and protobuf cost the HTTP-only sidecar ~12 MiB.
        from exporter.inputs.grpc.subscription import GrpcSubscription  # noqa: PLC0415

        state = TargetState(name=target.name)
        shard = self._counter.shard()
        subscription = GrpcSubscription(
            target, state, self._wrap_sink(shard.add), self._settings, self.any_connected
        )
        task = asyncio.create_task(subscription.run(), name=f"subscription {target.name}")
        self._running[target.name] = _Running(target, state, subscription, shard, task, discovered)
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
                events_counted=running.state.events,
            )

    async def _stop_one(self, name: str) -> _Running | None:
        running = self._running.pop(name, None)
        if running is None:
            return None
        running.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running.task
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
