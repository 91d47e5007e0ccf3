"""The file input: Falco's file_output in a file both containers of the Falco pod share.

Falco writes each alert to a local file, which never makes its single output thread wait
on us, and the file outlives us: an exporter that restarts (an OOM kill, SIGKILL, a new
image) counts on from its checkpoint (checkpoint.py), so no alert is lost between Falco
and Prometheus. Lines are parsed exactly as the HTTP input parses a body's lines. A write
wakes the reader through inotify (watch.py); every POLL_SECONDS it also looks (one lseek,
two stats) for a replaced or truncated file, or for writes where inotify is missing. It
reads in steps of a few milliseconds, yielding to the event loop, whatever the backlog.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum

import structlog

from exporter.core.counter import EventCounter
from exporter.core.event import EventSink, FalcoEvent
from exporter.core.inputs import EVENTS_RECEIVED, LAST_EVENT, InputStatus, Readiness
from exporter.core.labels import LabelKey
from exporter.core.metrics import Families
from exporter.inputs.falco_json.event import EventFormatError, event_from_json
from exporter.inputs.falco_json.lines import NotJson, parse
from exporter.inputs.file import checkpoint as checkpoints
from exporter.inputs.file.file_metrics import CHECKPOINTS, REJECTED, SPOOL_BYTES, FileCounts
from exporter.inputs.file.spool import Spool
from exporter.inputs.file.watch import WriteWatch
from exporter.runtime.rate_limited_log import RateLimitedLog
from exporter.settings.config import FileInputConfig

TARGET_NAME = "file_input"
POLL_SECONDS = 0.1
_STEP_SECONDS = 0.002
# Without scrapes the checkpoint is still written this often (when there is news), so
# the disk is freed whether Prometheus is there or not.
COMMIT_SECONDS = 5.0


class Refused(StrEnum):
    """Why a line was not counted; each is a metric label value."""

    NOT_JSON = "not_json"
    NOT_AN_EVENT = "not_an_event"
    UNKNOWN_PRIORITY = "unknown_priority"
    TOO_LONG = "too_long"  # over 1 MiB: skipped to its newline
    TORN = "torn"  # a last line the file lost (replaced before its newline came)


class FileInput:
    """Follows one spool file, commits at each scrape, frees what was committed."""

    def __init__(self, config: FileInputConfig, counter: EventCounter, sink: EventSink) -> None:
        self._config = config
        self._counter = counter
        self._sink = sink
        self.counts = FileCounts(dict.fromkeys(Refused, 0))
        self._log = structlog.get_logger("file_input").bind(path=config.path)
        self._warnings = RateLimitedLog(self._log)
        self._spool: Spool | None = None
        self._watch: WriteWatch | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._commit_lock = asyncio.Lock()
        self._committed_offset = -1
        # The checkpoints' order: each point is numbered when taken; one is written only if
        # no later one was, and only if it says something the last one written did not (a
        # flood of scrapes with nothing new costs no disk).
        self._points = self._written_point = 0
        self._written: checkpoints.Checkpoint | None = None

    async def start(self) -> None:
        """Open the file (creating it if missing) and carry on from the checkpoint."""
        self._spool = self._resume()
        if self._spool.punch_problem:
            self._log.warning(
                "read lines are not freed from disk: the file grows with every alert",
                reason=self._spool.punch_problem,
                fix="let the exporter create the file (it starts before Falco in the sidecar), "
                "on tmpfs, ext4 or xfs; or bound it with the volume's sizeLimit",
            )
        self._watch = WriteWatch(self._config.path)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._follow()), loop.create_task(self._commit_often())]

    def _resume(self) -> Spool:
        try:
            saved = checkpoints.load(self._config.checkpoint)
        except checkpoints.CheckpointError as error:
            self._log.error(
                "checkpoint unusable: counting the file from its start, from 0",
                error=str(error),
            )
            saved = None
        spool = Spool(self._config.path)
        if saved is None:
            return spool
        if saved.label_names == self._counter.label_names:
            self._counter.restore(saved.totals)
        else:
            self._log.warning(
                "the labels changed since the checkpoint: counts start from 0 (a counter "
                "reset for Prometheus)",
                saved=saved.label_names,
                now=self._counter.label_names,
            )
        if saved.identity != spool.identity:
            self._log.warning("the file was replaced while stopped: reading the new one whole")
        elif saved.offset > spool.size:
            self._log.warning("the file was truncated while stopped: reading it whole")
        else:
            spool.close()
            spool = Spool(self._config.path, saved.offset)
            self._committed_offset = saved.offset
        self._log.info("resumed from the checkpoint", offset=spool.offset)
        return spool

    async def stop(self) -> None:
        """Stop following; commit what was counted, so a restart reads nothing again."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._watch is not None:
            self._watch.close()
        if self._spool is not None:
            await self.commit_point()(self._counter.totals())
            self._spool.close()

    async def _follow(self) -> None:
        assert self._watch is not None
        while True:
            if self._read_step():
                await asyncio.sleep(0)
                continue
            self._notice_changes()
            await self._watch.wait(POLL_SECONDS)

    def _read_step(self) -> bool:
        """Count the lines of a few reads, about _STEP_SECONDS' worth; False when none came."""
        spool = self._spool
        assert spool is not None
        ends = time.perf_counter() + _STEP_SECONDS
        progressed = False
        while time.perf_counter() < ends:
            lines = spool.read()
            if lines is None:
                return progressed
            progressed = True
            self.counts.refused[Refused.TOO_LONG] += lines.too_long
            for line in lines.lines:
                self._take(line)
        return progressed

    def _take(self, line: bytes) -> None:
        document = parse(line.decode("utf-8", "replace"))
        if isinstance(document, NotJson):
            self._refuse(Refused.NOT_JSON, document.error)
            return
        try:
            event: FalcoEvent = event_from_json(document)
        except EventFormatError as error:
            self._refuse(Refused(str(error.reason)), str(error))
            return
        except RecursionError:
            self._refuse(Refused.NOT_AN_EVENT, "nested too deeply")
            return
        self._sink(event)
        self.counts.events += 1
        self.counts.last_event_time = time.time()

    def _refuse(self, reason: Refused, detail: str) -> None:
        self.counts.refused[reason] += 1
        self._warnings.log(reason, logging.WARNING, "skipped a line", reason=reason, detail=detail)

    def _notice_changes(self) -> None:
        """A replaced file is read to its end, then the new one from its start; a truncated
        one from its start again. Each is logged."""
        spool = self._spool
        assert spool is not None
        if spool.replaced():
            while self._read_step():
                pass
            if spool.unfinished():
                self._refuse(Refused.TORN, "the file was replaced before this line ended")
            spool.close()
            self._spool = Spool(self._config.path)
            if self._watch is not None:
                self._watch.close()
            self._watch = WriteWatch(self._config.path)
            self._committed_offset = -1
            self._log.warning("the file was replaced: reading the new one from its start")
        elif spool.truncated():
            spool.restart()
            self._committed_offset = -1
            self._log.warning("the file was truncated: reading it again from its start")

    def commit_point(self) -> Callable[[Mapping[LabelKey, int]], Awaitable[None]]:
        """Where reading stands now; call the result with the counter's totals taken at
        once after (nothing may be counted between) to write them as the checkpoint."""
        spool = self._spool
        assert spool is not None
        identity, offset = spool.identity, spool.offset
        self._points += 1
        point = self._points

        async def commit(totals: Mapping[LabelKey, int]) -> None:
            saved = checkpoints.Checkpoint(
                identity, offset, self._counter.label_names, dict(totals)
            )
            async with self._commit_lock:
                if point <= self._written_point or saved == self._written:
                    return  # an older point (never over a newer one), or nothing new
                try:
                    await asyncio.to_thread(checkpoints.save, self._config.checkpoint, saved)
                except OSError as error:
                    self.counts.checkpoints["failed"] += 1
                    self._warnings.log(
                        "checkpoint", logging.ERROR, "cannot write the checkpoint", error=str(error)
                    )
                    return
                self.counts.checkpoints["written"] += 1
                self._written_point, self._written = point, saved
                self._committed_offset = offset
                current = self._spool
                if current is not None and current.identity == identity and self._tasks:
                    current.free(offset)

        return commit

    async def _commit_often(self) -> None:
        while True:
            await asyncio.sleep(COMMIT_SECONDS)
            spool = self._spool
            if spool is not None and spool.offset != self._committed_offset:
                await self.commit_point()(self._counter.totals())

    @property
    def ports(self) -> Mapping[str, int]:
        """None: it reads a file."""
        return {}

    @property
    def tls(self) -> Mapping[str, bool]:
        """None: no port."""
        return {}

    def readiness(self) -> Readiness:
        """Ready once the file is open."""
        ready = self._spool is not None
        return Readiness(ready, f"file input {'reading' if ready else 'starting'}\n")

    def statuses(self) -> list[InputStatus]:
        """The file, what was counted and skipped, the backlog and the disk it holds."""
        spool = self._spool
        if spool is None:
            return [InputStatus("File input", f"{self._config.path}: not open", False)]
        size, skipped = spool.size, sum(self.counts.refused.values())
        text = (
            f"{self._config.path}: {self.counts.events} alert(s) read by this process "
            f"(falco_events carries on from the checkpoint), {skipped} line(s) skipped, "
            f"{size - spool.offset} bytes unread, {spool.allocated()} bytes on disk"
        )
        if spool.punch_problem:
            text += f"; not freed: {spool.punch_problem}"
        return [InputStatus("File input", text, not spool.punch_problem)]

    def collect(self, families: Families) -> None:
        """Events, skipped lines by reason, checkpoints, and the file's sizes."""
        counts = self.counts
        families.add(EVENTS_RECEIVED, (TARGET_NAME, "file"), counts.events)
        families.add(LAST_EVENT, (TARGET_NAME,), counts.last_event_time)
        rejected = families.family(REJECTED)
        for reason, count in counts.refused.items():
            rejected.add((reason,), count)
        written = families.family(CHECKPOINTS)
        for result, count in sorted(counts.checkpoints.items()):
            written.add((result,), count)
        spool = self._spool
        if spool is not None:
            sizes = families.family(SPOOL_BYTES)
            sizes.add(("size",), spool.size)
            sizes.add(("read",), spool.offset)
            sizes.add(("committed",), max(self._committed_offset, 0))
            sizes.add(("allocated",), spool.allocated())
