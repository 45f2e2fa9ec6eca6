"""What the runtime cannot do reaches the API's caller as a 503 that says so, not a 500."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from agent.agent import Agent
from agent.api import api_app
from agent.apps import AppConfig
from agent.errors import RuntimeFailure
from agent.runtime import ProcessSpec, ProcessStatus
from agent.settings import AgentSettings
from tests.conftest import free_port

SHOP = AppConfig(
    name="shop",
    hosts=("shop.test",),
    processes={"web": ProcessSpec(app="shop", process="web", command="web")},
)


class RefusingRuntime:
    """A runtime whose cluster is away: restarts fail, everything else is quiet."""

    activity_interval: float | None = None

    def describe(self, config: AppConfig) -> None:
        pass

    def last_activity(self, app: str) -> float | None:
        return None

    async def record_activity(self, app: str, process: str, at: float) -> None:
        pass

    async def restart(self, app: str, process: str) -> None:
        raise RuntimeFailure(f"restart deployment {app}-{process}: 503 apiserver unavailable")

    async def apply(self, spec: ProcessSpec) -> None:
        pass

    async def remove(self, app: str, process: str) -> None:
        pass

    async def scale(self, app: str, process: str, replicas: int) -> None:
        pass

    async def watch(self) -> AsyncIterator[ProcessStatus]:
        yield ProcessStatus("shop", "web", desired=0)
        await asyncio.Event().wait()  # a watch ends only when cancelled

    async def close(self) -> None:
        pass


async def test_a_restart_the_runtime_cannot_do_is_a_503_with_its_reason() -> None:
    registry = CollectorRegistry()
    agent = Agent([SHOP], runtime=RefusingRuntime(), registry=registry, settings=AgentSettings())
    await agent.start()
    runner = web.AppRunner(api_app(agent, registry=registry))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"http://127.0.0.1:{port}/v1/apps/shop/restart") as resp,
        ):
            assert resp.status == 503
            body = await resp.json()
        assert body["error"].startswith("the runtime could not do it: restart deployment shop-web")
        assert agent.failed.is_set() is False  # the agent keeps going
    finally:
        await runner.cleanup()
        await agent.stop()
