"""One subscription to one Falco, seen from the event loop: start its reader thread, watch
its `get` calls for stalls, and stop it. The thread itself retries (reader_thread.py).
"""

from __future__ import annotations

import asyncio

from exporter.inputs.grpc.reader_thread import ReaderThread
from exporter.inputs.grpc.targets import TargetFeed
from exporter.runtime.tasks import BackgroundTasks
from exporter.runtime.threads import on_loop
from exporter.settings.choices import Transport


class Subscription:
    """A target's reader thread, owned from the event loop."""

    def __init__(self, feed: TargetFeed, connected: asyncio.Event) -> None:
        """`connected` is set, on the loop, whenever this subscription connects."""
        self._feed = feed
        loop = asyncio.get_running_loop()
        self._finished = loop.create_future()
        self._thread = ReaderThread(feed, on_loop(loop, connected.set))
        self._tasks = BackgroundTasks()

    def start(self) -> None:
        """Start reading, and for `get`, the stall watch."""
        loop = asyncio.get_running_loop()
        finished = self._finished

        def ended() -> None:
            if not finished.done():
                finished.set_result(None)

        self._thread.start(on_loop(loop, ended))
        if self._feed.stream.transport is Transport.GET:
            self._tasks.spawn(self._watch_for_stalls(), f"stall watch {self._feed.target.name}")

    def request_reconnect(self) -> None:
        """Connect again with re-read certificate files once the current drain ends."""
        self._thread.request_reconnect()

    async def stop(self) -> None:
        """Stop the thread and wait until it has ended (the caller's deadline bounds this)."""
        self._thread.stop()
        await self._tasks.stop()
        await asyncio.shield(self._finished)

    async def _watch_for_stalls(self) -> None:
        """Cancel a `get` call that has delivered nothing for keepalive time + timeout.

        An idle `get` returns within milliseconds and a draining one delivers events
        continuously, so a call open that long with no event sits on a half-open
        connection. gRPC's keepalive usually ends such a connection first; this is the
        guarantee, and it reads the event count only: nothing is added per event.
        """
        stream, state = self._feed.stream, self._feed.state
        limit = stream.keepalive_time + stream.keepalive_timeout
        watched, events, since = None, 0, 0.0
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(limit / 4)
            call, now = self._thread.current_get, loop.time()
            if call is not watched or state.events != events:
                watched, events, since = call, state.events, now
            elif call is not None and now - since >= limit:
                self._thread.cancel_if_stalled(call)
                watched = None
