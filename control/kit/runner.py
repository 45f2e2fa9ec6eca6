"""Run a component's main coroutine on uvloop until SIGINT/SIGTERM or a task failure."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop


def run(main: Callable[[asyncio.Event], Coroutine[Any, Any, int]]) -> int:
    """Run ``main(stop)`` on uvloop; ``stop`` is set on the first SIGINT or SIGTERM.

    ``main`` owns the graceful part (readiness off, drain, close); a second
    signal is not caught, so an impatient operator can still kill it.
    """

    async def wrapper() -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, _once, loop, sig, stop)
        return await main(stop)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(wrapper())


def _once(loop: asyncio.AbstractEventLoop, sig: signal.Signals, stop: asyncio.Event) -> None:
    loop.remove_signal_handler(sig)
    stop.set()
