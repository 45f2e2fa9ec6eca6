import asyncio
import logging

import pytest

from control.kit.durations import parse_duration
from control.kit.tasks import TaskSet


async def test_a_failed_task_is_logged_by_name_and_sets_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = TaskSet()

    async def boom() -> None:
        raise RuntimeError("poller died")

    async def forever() -> None:
        await asyncio.Event().wait()

    survivor = tasks.start("forever", forever())
    tasks.start("poller", boom())
    with caplog.at_level(logging.ERROR):
        await asyncio.wait_for(tasks.failed.wait(), 1)
    assert isinstance(tasks.failure, RuntimeError)
    assert any(getattr(r, "task", None) == "poller" for r in caplog.records)
    await tasks.stop()
    assert survivor.cancelled()


async def test_a_name_cannot_run_twice() -> None:
    tasks = TaskSet()
    tasks.start("loop", asyncio.sleep(10))
    with pytest.raises(ValueError, match="already running"):
        tasks.start("loop", asyncio.sleep(10))
    await tasks.stop()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("300", 300.0), ("10s", 10.0), ("5m", 300.0), ("1h", 3600.0), ("250ms", 0.25)],
)
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_a_bad_duration_says_what_is_accepted() -> None:
    with pytest.raises(ValueError, match=r"use e\.g\."):
        parse_duration("five minutes")
