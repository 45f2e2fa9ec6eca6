"""LocalRuntime's own ceilings: what keeps the machine up whatever a formation asks."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

import agent.local
from agent.local import LocalRuntime
from agent.runtime import ProcessSpec, ProcessStatus
from agent.settings import LocalSettings
from kit.spawn import Child
from kit.spawn import spawn as real_spawn
from tests.agent.conftest import ListSink


@pytest.fixture
async def runtime() -> AsyncIterator[LocalRuntime]:
    runtime = LocalRuntime(
        settings=LocalSettings(max_instances=3, max_spawning=2, stop_grace=0.5), sink=ListSink()
    )
    yield runtime
    await runtime.close()


def status(runtime: LocalRuntime, app: str, process: str = "worker") -> ProcessStatus:
    return runtime._status((app, process))


class TestInstancesPerApp:
    async def test_a_formation_above_the_cap_runs_the_cap_and_says_so(
        self, runtime: LocalRuntime, caplog: pytest.LogCaptureFixture
    ) -> None:
        await runtime.apply(ProcessSpec("big", "worker", "sleep 30"))
        with caplog.at_level(logging.WARNING, logger="agent.local"):
            await runtime.scale("big", "worker", 80)
        assert status(runtime, "big").desired == 3
        assert len(status(runtime, "big").instances) == 3
        assert [r.getMessage() for r in caplog.records].count("instances capped") == 1

    async def test_the_cap_counts_every_process_type_of_the_app_together(
        self, runtime: LocalRuntime
    ) -> None:
        for app, process in (("big", "worker"), ("big", "clock"), ("small", "worker")):
            await runtime.apply(ProcessSpec(app, process, "sleep 30"))
        await runtime.scale("big", "worker", 2)
        await runtime.scale("big", "clock", 5)
        await runtime.scale("small", "worker", 3)  # another app has a cap of its own
        assert status(runtime, "big", "clock").desired == 1
        assert status(runtime, "small").desired == 3


class TestSpawning:
    async def test_many_instances_start_a_few_at_a_time_and_all_get_there(
        self, runtime: LocalRuntime, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        active, most = 0, 0

        async def counted(*args: Any, **kwargs: Any) -> Child:
            nonlocal active, most
            active += 1
            most = max(most, active)
            try:
                await asyncio.sleep(0.02)  # a slow fork: overlapping starts would show
                return await real_spawn(*args, **kwargs)
            finally:
                active -= 1

        monkeypatch.setattr(agent.local, "spawn", counted)
        for app in ("big", "other"):
            await runtime.apply(ProcessSpec(app, "worker", "sleep 30"))
            await runtime.scale(app, "worker", 3)
        deadline = time.monotonic() + 10
        while not all(_all_up(status(runtime, a)) for a in ("big", "other")):
            assert time.monotonic() < deadline, "the instances never all started"
            await asyncio.sleep(0.01)
        assert most == 2  # LocalSettings.max_spawning


def _all_up(found: ProcessStatus) -> bool:
    # A worker has no port: running is ready, and `ready` (routable) stays empty.
    return len(found.instances) == 3 and all(i.ready for i in found.instances)
