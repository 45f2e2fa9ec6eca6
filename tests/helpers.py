"""Helpers every package's tests share (import them; fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

#: Only a ceiling: a check that holds returns at once. Generous, because 8 test runs may
#: share 2 cores and a process that boots in 0.3 s alone can take seconds then (CI saw
#: 5x slow-downs); still well inside pytest-timeout's 60 s per test.
TIMEOUT = 20.0
#: Short enough that a test waits at most this long past the moment its condition holds.
INTERVAL = 0.01


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    timeout: float = TIMEOUT,
    interval: float = INTERVAL,
    *,
    what: str = "",
) -> T:
    """Poll ``check`` (plain or async) until it returns something truthy, and return that.

    Fails the test with the last value it returned once ``timeout`` seconds have passed
    (and ``what`` was awaited, when given).
    Polls on the loop's clock, so the code under test keeps running in between.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = check()
        if inspect.isawaitable(found):
            found = await found
        if found:
            return found  # type: ignore[return-value]
        if loop.time() >= deadline:
            waited = f" ({what})" if what else ""
            raise AssertionError(
                f"condition not met in {timeout:g} s{waited}; last value: {found!r}"
            )
        await asyncio.sleep(interval)
