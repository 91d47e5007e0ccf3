"""One target's reader thread: connect, read until the connection ends, count and log why,
back off with jitter, and connect again, until stopped.

Everything in this module runs on that thread, and it owns the retry loop. The event loop
reaches it only through `start`, `stop`, `request_reconnect` and the stall check
(subscription.py): it never runs a step of the loop here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from exporter.inputs.grpc.connection import FalcoReader
from exporter.inputs.grpc.disconnect import Disconnect
from exporter.inputs.grpc.targets import TargetFeed
from exporter.runtime.backoff import Backoff
from exporter.settings.durations import format_duration

# A stream that lasted this long, or delivered an event, counts as healthy:
# the next failure starts the backoff from its initial delay again.
_HEALTHY_STREAM_SECONDS = 10.0


class ReaderThread:
    """Reads one target on a thread of its own until stopped; never raises."""

    def __init__(self, feed: TargetFeed, notify_connected: Callable[[], None]) -> None:
        """`notify_connected` is called (on this thread) whenever a connection is up; it must
        be safe to call from any thread (runtime.threads.on_loop makes one)."""
        self._feed = feed
        self._notify_connected = notify_connected
        self._backoff = Backoff(feed.stream.backoff_initial, feed.stream.backoff_max)
        self._log = structlog.get_logger("grpc_input").bind(target=feed.target.name)
        self._connected_this_attempt = False
        self._reader = FalcoReader(feed, self._on_connected)

    # Reached from the event loop's thread.

    def start(self, on_exit: Callable[[], None]) -> None:
        """Start the thread; `on_exit` is called on it once it ends (thread-safe, too)."""

        def run() -> None:
            try:
                self._reconnect_forever()
            finally:
                on_exit()

        name = f"falco-{self._feed.target.name}"
        threading.Thread(target=run, name=name, daemon=True).start()

    def stop(self) -> None:
        """End the connection in progress and any backoff wait; the thread then ends."""
        self._reader.stop()

    def request_reconnect(self) -> None:
        """Connect again, with re-read certificate files, once the current drain ends."""
        self._reader.request_reconnect()

    @property
    def current_get(self) -> Any:  # noqa: ANN401 - a grpc call, of a type grpc does not export
        """The `get` call in progress, or None: what the stall watch looks at."""
        return self._reader.current_get

    def cancel_if_stalled(self, call: object) -> bool:
        """Cancel `call` as stalled if it is still the `get` in progress."""
        return self._reader.cancel_if_stalled(call)

    # The reader thread.

    def _reconnect_forever(self) -> None:
        reader, state = self._reader, self._feed.state
        while not reader.stopping:
            started = time.monotonic()
            events_before = state.events
            self._connected_this_attempt = False
            ended = reader.attempt()
            if ended is None:
                return
            connected = self._connected_this_attempt
            healthy = connected and (
                state.events > events_before
                or time.monotonic() - started >= _HEALTHY_STREAM_SECONDS
            )
            self._after(ended, was_connected=connected, healthy=healthy)

    def _on_connected(self) -> None:
        self._connected_this_attempt = True
        self._log.info(
            "connected to Falco",
            address=self._feed.target.address,
            transport=self._feed.stream.transport,
            falco_version=self._feed.state.falco_version or "unknown",
            attempt=self._backoff.attempt + 1,
        )
        self._notify_connected()

    def _after(self, ended: Disconnect, *, was_connected: bool, healthy: bool) -> None:
        """Count, log one line, and wait the backoff delay (cut short by a stop)."""
        state = self._feed.state
        if ended.counts_as_error:
            state.count_error(ended.reason)
        if healthy or ended.resets_backoff:
            self._backoff.reset()
        delay = 0.0 if ended.resets_backoff else self._backoff.next_delay()
        state.reconnects += 1
        self._log.log(
            ended.level,
            "disconnected from Falco" if was_connected else "cannot connect to Falco",
            attempt=self._backoff.attempt,
            reason=ended.reason,
            detail=ended.detail,
            next_attempt_in=format_duration(round(delay, 3)),
        )
        self._reader.wait(delay)
