"""Long-lived tasks, started by name, whose failure is logged and stops the rest.

One helper for every background loop (pollers, watchers, flushers) so that a
crashed loop is never silent: the first failure is logged with the task's
name, ``failed`` is set, and the entry point shuts the process down instead of
limping on half-alive.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class TaskSet:
    """Named tasks with a shared fate."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self.failed = asyncio.Event()
        self.failure: BaseException | None = None

    def start(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        if name in self._tasks and not self._tasks[name].done():
            coro.close()
            raise ValueError(f"task {name!r} is already running")
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks[name] = task
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        if self._tasks.get(task.get_name()) is task:
            del self._tasks[task.get_name()]
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        log.error("background task failed", exc_info=exc, extra={"task": task.get_name()})
        if self.failure is None:
            self.failure = exc
        self.failed.set()

    async def cancel(self, name: str, timeout: float = 5.0) -> None:
        """Cancel one task (a loop for something that is gone) and wait for it, bounded."""
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.wait([task], timeout=timeout)

    def names(self) -> list[str]:
        return sorted(self._tasks)

    async def stop(self, timeout: float = 5.0) -> None:
        """Cancel every task and wait (bounded) for them to finish."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
