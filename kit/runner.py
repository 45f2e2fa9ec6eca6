"""The one supervisor of a process: its main on uvloop, its tasks, its signals, its exit code.

Every entry point (``slipway up``, each ``slipway serve COMPONENT``, each
router worker) is ``sys.exit(run(main))``. ``main(tasks, stop)`` builds and
starts the components, handing each the process's one ``TaskSet`` (``tasks``),
waits for ``stop``, then stops them in its own order. ``stop`` is set on the
first SIGINT or SIGTERM *and* on the first failure of any task in the set, so
no entry point waits for "stop or failure" by hand: one ``await stop.wait()``
does. A failure makes the exit code 1 whatever ``main`` returns; the line
naming the task (``msg="background task failed" task=NAME``) is the set's.
kopf's ``run_tasks`` is the model.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

import uvloop

from kit.tasks import TaskSet

log = logging.getLogger(__name__)

#: ``main(tasks, stop)``: start everything, ``await stop.wait()``, stop it all; the exit code.
Main = Callable[[TaskSet, asyncio.Event], Awaitable[int]]


def run(main: Main, *, tasks: TaskSet | None = None) -> int:
    """Run ``main`` on uvloop under ``supervise``, with SIGINT/SIGTERM setting ``stop``.

    ``tasks``: the set the components were built with when they are built before the loop
    runs (``slipway up``); a fresh one otherwise. ``main`` owns the graceful part
    (readiness off, drain, close); a second signal is not caught, so an impatient
    operator can still kill the process.
    """

    async def signalled() -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, _once, loop, sig, stop)
        return await supervise(main, stop=stop, tasks=tasks)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(signalled())


async def supervise(
    main: Main, *, stop: asyncio.Event | None = None, tasks: TaskSet | None = None
) -> int:
    """Run ``main(tasks, stop)`` with ``stop`` also set by the first task failure; the exit
    code: ``main``'s, or 1 if a task (or ``main`` itself) failed. Whatever ``main`` left
    running is cancelled before this returns."""
    tasks = TaskSet() if tasks is None else tasks
    stop = asyncio.Event() if stop is None else stop
    watcher = asyncio.get_running_loop().create_task(_stop_on_failure(tasks, stop))
    try:
        code = await main(tasks, stop)
    except Exception:
        log.exception("main failed")
        code = 1
    finally:
        watcher.cancel()
        await asyncio.wait([watcher])
        await tasks.stop()
    if tasks.failed.is_set():
        log.error("stopped: a background task failed", extra={"task": tasks.failed_task})
        return code or 1
    return code


async def _stop_on_failure(tasks: TaskSet, stop: asyncio.Event) -> None:
    await tasks.failed.wait()
    log.info("stopping the process", extra={"task": tasks.failed_task})
    stop.set()


def _once(loop: asyncio.AbstractEventLoop, sig: signal.Signals, stop: asyncio.Event) -> None:
    loop.remove_signal_handler(sig)
    stop.set()
