"""The forward: every alert the HTTP input accepted, sent on to one downstream URL.

Falco's http_output has one URL. With the exporter first, Falco posts here and the forward
hands each alert to what Falco would otherwise post to (falcosidekick, usually). Three
rules make it safe to put in Falco's path (docs/falcosidekick.md):
- Falco's answer never waits for it: the input only appends to a queue bounded in bytes;
  past the bound the newest alert is dropped from the forward, counted, and still counted
  in falco_events.
- One task posts the queue in order over a connection of its own. An alert the downstream
  did not answer (no connection, a timeout, a 5xx, 429) is sent again after a backoff, so
  a downstream restart loses nothing that fits in the queue; one it refused with any other
  4xx is dropped, counted: sending it again would be refused again.
- At shutdown it gets what is left of the stop deadline; what is still queued then is
  counted as dropped and logged.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from enum import StrEnum

import structlog

from exporter.core.metrics import PREFIX, Families, FamilySpec, Kind
from exporter.outputs.post_connection import Failure, PostConnection, PostError
from exporter.runtime.backoff import Backoff
from exporter.runtime.rate_limited_log import RateLimitedLog
from exporter.settings.config import ForwardConfig

# Falco's http_output has no timeout of its own; a downstream this slow is as good as down.
POST_TIMEOUT = 10.0
# An alert waits at most this long after the downstream is back; a connect every 5 s costs nothing.
_BACKOFF_INITIAL, _BACKOFF_MAX = 0.2, 5.0
_RETRIED_STATUSES = frozenset({408, 425, 429})  # "try again", unlike the other 4xx


class Dropped(StrEnum):
    """Why an alert accepted by the input never reached the downstream."""

    QUEUE_FULL = "queue_full"  # the queue held --forward-queue-size bytes already
    REFUSED = "refused"  # the downstream answered a 4xx that says "never" (400, 413, ...)
    STOPPED = "stopped"  # still queued when the exporter stopped


FORWARDED = FamilySpec(
    f"{PREFIX}forwarded", Kind.COUNTER, "Alerts the --forward-url downstream accepted (2xx)."
)
DROPPED = FamilySpec(
    f"{PREFIX}forward_dropped",
    Kind.COUNTER,
    "Alerts accepted by the HTTP input that the forward gave up on, by reason "
    "(each is still counted in falco_events).",
    ("reason",),
)
FAILURES = FamilySpec(
    f"{PREFIX}forward_failures",
    Kind.COUNTER,
    "POSTs to the --forward-url downstream that will be made again, by reason.",
    ("reason",),
)
QUEUED = FamilySpec(
    f"{PREFIX}forward_queued_bytes", Kind.GAUGE, "Alert bytes waiting for the downstream."
)
_STATUS = "status"  # a failure reason beside Failure's: answered 5xx, 408, 425 or 429


class Forwarder:
    """The queue and the task that empties it, in order, one POST at a time."""

    def __init__(
        self,
        config: ForwardConfig,
        *,
        timeout: float = POST_TIMEOUT,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._connection = PostConnection(config, timeout)
        self._backoff = backoff or Backoff(_BACKOFF_INITIAL, _BACKOFF_MAX)
        self._queue: collections.deque[bytes] = collections.deque()
        self.queued_bytes = 0
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.forwarded = 0
        self.dropped: dict[Dropped, int] = dict.fromkeys(Dropped, 0)
        self.failures: dict[str, int] = dict.fromkeys([*Failure, _STATUS], 0)
        self._log = structlog.get_logger("forward").bind(url=config.url)
        self._warnings = RateLimitedLog(self._log, clock=clock)

    def offer(self, document: bytes) -> None:
        """Queue one alert for the downstream; never waits (the input's answer is due now)."""
        if self._stopping or self.queued_bytes + len(document) > self._config.max_queued_bytes:
            self.dropped[Dropped.QUEUE_FULL] += 1
            self._warnings.log(
                Dropped.QUEUE_FULL,
                logging.ERROR,
                "forward queue full: alerts are not sent on (still counted here)",
                queued_bytes=self.queued_bytes,
                fix="see falco_exporter_forward_failures_total for why the downstream lags; "
                "or raise --forward-queue-size",
            )
            return
        self._queue.append(document)
        self.queued_bytes += len(document)
        self._wake.set()

    async def start(self) -> None:
        """Start posting."""
        self._task = asyncio.create_task(self._run(), name="forward")

    async def stop(self) -> None:
        """Post what is queued until the caller's deadline cancels this; count the rest."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        try:
            if task is not None and not task.done():
                await task
        finally:
            if task is not None and not task.done():
                task.cancel()
            self._connection.close()
            left = len(self._queue)
            if left:
                self.dropped[Dropped.STOPPED] += left
                self._log.warning("stopped with alerts not yet forwarded", alerts=left)
            self._queue.clear()
            self.queued_bytes = 0

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            delay = await self._post(self._queue[0])
            if delay is None:
                document = self._queue.popleft()
                self.queued_bytes -= len(document)
            elif delay:
                if self._stopping:
                    return  # no waiting out a backoff in a stop: the rest counts as stopped
                self._wake.clear()
                with contextlib.suppress(TimeoutError):  # a stop cuts the wait short
                    await asyncio.wait_for(self._wake.wait(), delay)

    async def _post(self, document: bytes) -> float | None:
        """Send the queue's first alert: None when it is done with (sent or refused), else
        how long to wait before sending it again."""
        reused = self._connection.is_open
        try:
            status = await self._connection.post(document)
        except PostError as failed:
            if reused and failed.reason is Failure.CLOSED:
                return 0.0  # a kept connection the downstream had closed: at once, anew
            return self._failed(failed.reason, str(failed))
        if 200 <= status < 300:
            self.forwarded += 1
            self._backoff.reset()
            return None
        if status >= 500 or status in _RETRIED_STATUSES:
            return self._failed(_STATUS, f"answered {status}")
        self.dropped[Dropped.REFUSED] += 1
        self._warnings.log(
            Dropped.REFUSED,
            logging.ERROR,
            "the forward's downstream refused an alert; not sent again",
            status=status,
        )
        return None

    def _failed(self, reason: str, detail: str) -> float:
        self.failures[reason] += 1
        delay = self._backoff.next_delay()
        self._warnings.log(
            ("failed", reason),
            logging.WARNING,
            "cannot forward to the downstream; will send again",
            reason=reason,
            detail=detail,
            queued_bytes=self.queued_bytes,
            next_attempt_in=round(delay, 3),
        )
        return delay

    def collect(self, families: Families) -> None:
        """What was forwarded, dropped by reason, failed by reason, and is queued."""
        families.add(FORWARDED, (), self.forwarded)
        dropped = families.family(DROPPED)
        for dropped_why, count in self.dropped.items():
            dropped.add((dropped_why,), count)
        failures = families.family(FAILURES)
        for failed_why, count in self.failures.items():
            failures.add((failed_why,), count)
        families.add(QUEUED, (), self.queued_bytes)
