"""Background work, the one way: started by a BackgroundTasks, cancelled and awaited by it.

Every long-lived task of the exporter (sweeps, discovery, file watches, a subscription's
watchdog) belongs to one group, which its owner stops on the way down. Stopping cancels
each task and waits until it has finished, so none is left running unawaited, and a task
that failed on its own is logged the moment it ends. Nothing here has a timeout of its
own: the caller's shutdown deadline bounds the wait, and a cancellation of the caller
(that deadline passing) is never swallowed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any

import structlog

_log = structlog.get_logger("tasks")


class BackgroundTasks:
    """A group of tasks with one owner, which stops them all."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, object], name: str) -> asyncio.Task[Any]:
        """Run `work` in the background until it returns or the group stops."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error(
                "background task failed",
                task=task.get_name(),
                exc_info=task.exception(),
            )

    def __len__(self) -> int:
        return len(self._tasks)

    async def stop(self) -> None:
        """Cancel every task and wait until each has finished."""
        tasks, self._tasks = self._tasks, set()
        await cancel_and_wait(tasks)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel tasks and wait until each has finished; a cancelled caller stops waiting.

    asyncio.wait never raises a task's own CancelledError, only the caller's: so the
    caller's cancellation propagates, and the tasks' does not leak into it.
    """
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
