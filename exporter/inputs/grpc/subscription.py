"""One subscription to one Falco over gRPC, owned from the event loop: reconnect forever.

The reading itself blocks on a thread of its own (grpc_reader.FalcoReader). This owner
starts that thread, runs the reconnect policy there (count, log one line, back off with
jitter), watches `get` calls for stalls from the loop, and stops the thread when its
task is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable

import structlog

from exporter.core.counter import EventSink
from exporter.inputs.grpc.backoff import Backoff
from exporter.inputs.grpc.connection import TRANSPORTS, FalcoReader
from exporter.inputs.grpc.disconnect import Disconnect
from exporter.inputs.grpc.targets import SubscriptionSettings, Target, TargetState
from exporter.settings.durations import format_duration

__all__ = ["TRANSPORTS", "GrpcSubscription"]

# A stream that lasted this long, or delivered an event, counts as healthy:
# the next failure starts the backoff from its initial delay again.
_HEALTHY_STREAM_SECONDS = 10.0
_THREAD_STOP_TIMEOUT = 5.0


class GrpcSubscription:
    """Subscribes to one Falco's outputs until cancelled; run() never raises otherwise."""

    def __init__(
        self,
        target: Target,
        state: TargetState,
        sink: EventSink,
        settings: SubscriptionSettings,
        connected: asyncio.Event,
    ) -> None:
        """`connected` is set, on the loop, whenever this subscription connects."""
        self._target = target
        self._state = state
        self._settings = settings
        self._connected = connected
        self._backoff = Backoff(settings.backoff_initial, settings.backoff_max)
        self._log = structlog.get_logger("grpc_source").bind(target=target.name)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._attempt_connected = False  # set on the reader thread by _on_connected
        self._reader = FalcoReader(target, state, sink, settings, self._on_connected)

    def request_reconnect(self) -> None:
        """Connect again with re-read certificate files once the current drain ends."""
        self._reader.request_reconnect()

    async def run(self) -> None:
        """Read on a thread until this task is cancelled; then stop the thread and return."""
        self._loop = asyncio.get_running_loop()
        finished = self._loop.create_future()

        def work() -> None:
            try:
                self._reconnect_forever()
            finally:
                self._loop_call(finished.set_result, None)

        thread = threading.Thread(target=work, name=f"falco-{self._target.name}", daemon=True)
        thread.start()
        watchdog = (
            asyncio.create_task(self._watch_for_stalls())
            if self._settings.transport == "get"
            else None
        )
        try:
            await asyncio.shield(finished)
        finally:
            if watchdog is not None:
                watchdog.cancel()
            self._reader.stop()
            await asyncio.wait([finished], timeout=_THREAD_STOP_TIMEOUT)

    def _reconnect_forever(self) -> None:
        """On the reader thread: attempt, then count, log and back off, until stopped."""
        reader = self._reader
        while not reader.stopping:
            started = time.monotonic()
            events_before = self._state.events
            self._attempt_connected = False
            ended = reader.attempt()
            if ended is None:
                return
            connected = self._attempt_connected
            healthy = connected and (
                self._state.events > events_before
                or time.monotonic() - started >= _HEALTHY_STREAM_SECONDS
            )
            self._after(ended, was_connected=connected, healthy=healthy)

    def _on_connected(self) -> None:
        """On the reader thread, once a connection is up: log it, tell the loop."""
        self._attempt_connected = True
        self._log.info(
            "connected to Falco",
            address=self._target.address,
            transport=self._settings.transport,
            falco_version=self._state.falco_version or "unknown",
            attempt=self._backoff.attempt + 1,
        )
        self._loop_call(self._connected.set)

    def _after(self, ended: Disconnect, *, was_connected: bool, healthy: bool) -> None:
        """Count, log one line, and wait the backoff delay (cut short by a stop)."""
        if ended.counts_as_error:
            errors = self._state.connection_errors
            errors[ended.reason] = errors.get(ended.reason, 0) + 1
        if healthy or ended.resets_backoff:
            self._backoff.reset()
        delay = 0.0 if ended.resets_backoff else self._backoff.next_delay()
        self._state.reconnects += 1
        getattr(self._log, ended.level)(
            "disconnected from Falco" if was_connected else "cannot connect to Falco",
            attempt=self._backoff.attempt,
            reason=ended.reason,
            detail=ended.detail,
            next_attempt_in=format_duration(round(delay, 3)),
        )
        self._reader.wait(delay)

    async def _watch_for_stalls(self) -> None:
        """Cancel a `get` call that has delivered nothing for keepalive time + timeout.

        An idle `get` returns within milliseconds and a draining one delivers events
        continuously, so a call open that long with no event sits on a half-open
        connection. gRPC's keepalive usually ends such a connection first; this is the
        guarantee, and it reads the event count only: nothing is added per event.
        """
        limit = self._settings.keepalive_time + self._settings.keepalive_timeout
        watched, events, since = None, 0, 0.0
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(limit / 4)
            call, now = self._reader.current_get, loop.time()
            if call is not watched or self._state.events != events:
                watched, events, since = call, self._state.events, now
            elif call is not None and now - since >= limit:
                self._reader.cancel_if_stalled(call)
                watched = None

    def _loop_call(self, function: Callable[..., object], *args: object) -> None:
        """Run function on the event loop's thread, if the loop still runs."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                loop.call_soon_threadsafe(function, *args)
