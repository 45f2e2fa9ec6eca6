import asyncio
import logging

import pytest

from kit.durations import parse_duration
from kit.tasks import TaskSet


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
        await asyncio.wait_for(tasks.failed.wait(), 10)
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


class TestOneFateForTheProcess:
    """Each component opens a child of the process's set; a failure anywhere fails the root."""

    async def test_a_childs_failure_fails_the_root_and_names_the_task(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        root = TaskSet()
        router, agent = root.child(), root.child()
        agent.start("agent-tick", asyncio.Event().wait())

        async def sweep() -> None:
            raise RuntimeError("a bug in the sweeper")

        router.start("router-sweeper", sweep())
        with caplog.at_level(logging.ERROR):
            await asyncio.wait_for(root.failed.wait(), 10)
        assert agent.failed.is_set()  # one fate: every set of the process sees it
        assert root.failed_task == "router-sweeper"
        assert isinstance(root.failure, RuntimeError)
        [record] = [r for r in caplog.records if r.getMessage() == "background task failed"]
        assert getattr(record, "task", None) == "router-sweeper"
        await root.stop()
        assert root.names() == []

    async def test_a_task_that_returns_is_a_failure(self) -> None:
        tasks = TaskSet()

        async def loop_that_fell_out() -> None:
            return None

        tasks.start("agent-watch", loop_that_fell_out())
        await asyncio.wait_for(tasks.failed.wait(), 10)
        assert tasks.failed_task == "agent-watch"
        assert "returned" in str(tasks.failure)

    async def test_tasks_ended_by_cancel_or_stop_are_not_failures(self) -> None:
        tasks = TaskSet()

        async def returns_when_cancelled() -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                return  # swallowed: still a deliberate end, not a failure

        tasks.start("agent-scale:shop", returns_when_cancelled())
        tasks.start("agent-tick", returns_when_cancelled())
        await asyncio.sleep(0)
        await tasks.cancel("agent-scale:shop")
        await tasks.stop()
        await asyncio.sleep(0)
        assert not tasks.failed.is_set()

    async def test_stopping_a_child_leaves_its_siblings_running_and_the_root_stops_all(
        self,
    ) -> None:
        root = TaskSet()
        router, logs = root.child(), root.child()
        sweeper = router.start("router-sweeper", asyncio.Event().wait())
        uploader = logs.start("archive-uploader", asyncio.Event().wait())
        assert root.names() == ["archive-uploader", "router-sweeper"]
        await router.stop()
        assert sweeper.cancelled()
        assert not uploader.done()
        await root.stop()
        assert uploader.cancelled()
        assert not root.failed.is_set()

    async def test_a_component_alone_gets_a_root_of_its_own(self) -> None:
        alone = TaskSet.of(None)
        alone.start("router-sweeper", asyncio.sleep(0))
        await asyncio.wait_for(alone.failed.wait(), 10)  # returned: failed, and it is its own
        assert alone.failed_task == "router-sweeper"
        root = TaskSet()
        assert TaskSet.of(root).failed is root.failed
