"""The Agent over a runtime that, like Kubernetes, reports what already runs and reports a new
process type while ``apply`` is still under way: nothing is scaled before it was seen, what
runs is adopted, and a status that comes before its app is added is not lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from prometheus_client import CollectorRegistry

from agent.agent import Agent
from agent.apps import AppConfig
from agent.runtime import Instance, ProcessSpec, ProcessStatus
from agent.settings import AgentSettings
from tests.helpers import TIMEOUT

SHOP = AppConfig(
    name="shop",
    hosts=("shop.test",),
    processes={"web": ProcessSpec(app="shop", process="web", command="web", image="img")},
)


class WatchedRuntime:
    """Statuses come from a queue, as from a watch; ``apply`` reports before it returns."""

    def __init__(self, *existing: ProcessStatus) -> None:
        self.statuses: asyncio.Queue[ProcessStatus] = asyncio.Queue()
        for status in existing:
            self.statuses.put_nowait(status)
        self.known = {(s.app, s.process) for s in existing}
        self.scaled: list[tuple[str, str, int]] = []

    activity_interval: float | None = None

    def describe(self, config: AppConfig) -> None:
        pass

    def last_activity(self, app: str) -> float | None:
        return None

    async def record_activity(self, app: str, process: str, at: float) -> None:
        pass

    async def restart(self, app: str, process: str) -> None:
        pass

    async def apply(self, spec: ProcessSpec) -> None:
        if (spec.app, spec.process) not in self.known:  # created: reported at 0 replicas
            self.known.add((spec.app, spec.process))
            self.statuses.put_nowait(ProcessStatus(spec.app, spec.process, desired=0))
        await asyncio.sleep(0.01)  # the watch event overtakes the create's response

    async def remove(self, app: str, process: str) -> None:
        pass

    async def scale(self, app: str, process: str, replicas: int) -> None:
        self.scaled.append((app, process, replicas))

    async def watch(self) -> AsyncIterator[ProcessStatus]:
        while True:
            yield await self.statuses.get()

    async def close(self) -> None:
        pass


async def test_a_status_that_overtakes_a_definition_is_kept_and_a_wake_scales() -> None:
    runtime = WatchedRuntime()
    agent = Agent([], runtime=runtime, registry=CollectorRegistry(), settings=AgentSettings())
    await agent.start()
    try:
        await agent.define(SHOP)
        await agent.wake("shop")
        async with asyncio.timeout(TIMEOUT):
            while ("shop", "web", 1) not in runtime.scaled:
                await asyncio.sleep(0.01)
    finally:
        await agent.stop()


async def test_a_restarted_agent_adopts_a_running_app_instead_of_stopping_it() -> None:
    ready = Instance("shop-web-1", "10.1.0.7", 5000, ready=True)
    runtime = WatchedRuntime(ProcessStatus("shop", "web", desired=1, instances=(ready,)))
    agent = Agent([SHOP], runtime=runtime, registry=CollectorRegistry(), settings=AgentSettings())
    await agent.start()
    try:
        async with asyncio.timeout(TIMEOUT):
            while agent.states()["shop"]["state"] != "awake":
                await asyncio.sleep(0.01)
        assert agent.states()["shop"]["endpoints"] == ["10.1.0.7:5000"]
        await asyncio.sleep(0.2)  # several ticks and scaler rounds
        assert runtime.scaled == []  # neither stopped nor scaled again
    finally:
        await agent.stop()
