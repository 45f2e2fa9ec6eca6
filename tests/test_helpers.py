"""tests/helpers.eventually: the one polling helper of the suite."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import eventually


async def test_it_returns_the_first_truthy_value_the_check_gives() -> None:
    calls = iter([0, [], "ready"])
    assert await eventually(lambda: next(calls), timeout=1) == "ready"


async def test_an_async_check_is_awaited_each_time() -> None:
    seen: list[int] = []

    async def check() -> int:
        seen.append(len(seen))
        return len(seen) >= 3 and len(seen)

    assert await eventually(check, timeout=1) == 3
    assert seen == [0, 1, 2]


async def test_a_check_that_never_holds_fails_the_test_with_its_last_value() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(AssertionError, match=r"not met in 0.05 s; last value: \[\]"):
        await eventually(lambda: [], timeout=0.05)
    # Gave up at its timeout, long before the 10 s default it was not given.
    assert 0.05 <= loop.time() - started < 5


async def test_the_loop_runs_other_tasks_while_it_waits() -> None:
    done = asyncio.Event()
    asyncio.get_running_loop().call_later(0.02, done.set)
    assert await eventually(done.is_set, timeout=1) is True
