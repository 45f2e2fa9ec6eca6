"""Long-lived tasks, started by name, whose failure is logged and stops the process.

One helper for every background loop (pollers, watchers, sweepers, feeds) so
that a crashed loop is never silent. A process has one root ``TaskSet``, owned
by the runner (``kit.runner``); each component is handed it and opens its own
``child()``, so the component's ``stop()`` cancels only its tasks while a
failure anywhere fails the root: the first failure is logged with the task's
name, ``failed`` is set, and the runner stops the whole process (exit 1)
instead of letting it limp on half-alive (a router serving a frozen table, an
agent that no longer puts apps to sleep).

A long-lived task that *returns* is a failure too: nothing here is meant to
end on its own, and a loop that quietly fell out of its ``while`` is as dead as
one that raised. Tasks ended by ``cancel`` or ``stop`` are not failures.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class TaskSet:
    """Named tasks with a shared fate: the root's, which every child reports to."""

    def __init__(self, *, parent: TaskSet | None = None) -> None:
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._children: list[TaskSet] = []
        self._root: TaskSet = self if parent is None else parent._root
        if parent is not None:
            parent._children.append(self)
        # Only the root's are used; a child reads them through the properties below.
        self._failed: asyncio.Event = asyncio.Event() if parent is None else parent._root._failed
        self._failure: BaseException | None = None
        self._failed_task: str | None = None

    @classmethod
    def of(cls, tasks: TaskSet | None) -> TaskSet:
        """A component's own set: a child of the process's ``tasks``, or a root of its own when
        the component runs alone (a test driving it directly)."""
        return cls() if tasks is None else tasks.child()

    def child(self) -> TaskSet:
        """A set for one component: stopped on its own, failing the whole process."""
        return TaskSet(parent=self)

    @property
    def failed(self) -> asyncio.Event:
        """Set once any task of the process (this set, its root or a sibling) has failed."""
        return self._failed

    @property
    def failure(self) -> BaseException | None:
        """The first failure of the process, if any."""
        return self._root._failure

    @property
    def failed_task(self) -> str | None:
        """The name of the task that failed first, if any."""
        return self._root._failed_task

    def start(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        if name in self._tasks and not self._tasks[name].done():
            coro.close()
            raise ValueError(f"task {name!r} is already running")
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks[name] = task
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        name = task.get_name()
        # Still ours: it ended by itself. Not ours any more: ``cancel``/``stop`` took it.
        owned = self._tasks.get(name) is task
        if owned:
            del self._tasks[name]
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            if not owned:
                return
            exc = RuntimeError(f"background task {name!r} returned; it should run until stopped")
        log.error("background task failed", exc_info=exc, extra={"task": name})
        root = self._root
        if root._failure is None:
            root._failure = exc
            root._failed_task = name
        root._failed.set()

    async def cancel(self, name: str, timeout: float = 5.0) -> None:
        """Cancel one task (a loop for something that is gone) and wait for it, bounded."""
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.wait([task], timeout=timeout)

    def names(self) -> list[str]:
        """This set's running tasks and its children's, sorted."""
        return sorted([*self._tasks, *(n for c in self._children for n in c.names())])

    async def stop(self, timeout: float = 5.0) -> None:
        """Cancel every task of this set and of its children; wait (bounded) for them."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        for child in self._children:
            await child.stop(timeout)
