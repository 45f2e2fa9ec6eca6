"""A router whose background task dies stops (exit 1, a line naming the task) instead of
serving a frozen route table, or no longer timing out H12s and idle connections, forever."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from tests.conftest import free_port, free_ports
from tests.faults import slipway_with_fault


@dataclass
class StubAgent:
    """The agent's HTTP API as a router sees it: one route table, then nothing new."""

    url: str
    polls: int = 0
    reports: list[object] = field(default_factory=list)


@pytest.fixture
async def agent() -> AsyncIterator[StubAgent]:
    stub = StubAgent("")

    async def routes(request: web.Request) -> web.StreamResponse:
        stub.polls += 1
        if "after" in request.query:
            await asyncio.sleep(0.5)  # a short long poll: the stub's cleanup need not wait

            return web.Response(status=204)
        await asyncio.sleep(0.5)  # the first table comes once the router listens
        table = {"version": 1, "apps": {"shop": {"hosts": ["shop.test"]}}}
        return web.json_response(table)

    async def activity(request: web.Request) -> web.Response:
        stub.reports.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/v1/routes", routes)
    app.router.add_post("/v1/activity", activity)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    stub.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield stub
    await runner.cleanup()


def router_args(*extra: str) -> list[str]:
    return [
        "serve",
        "router",
        "--host=127.0.0.1",
        f"--port={free_port()}",
        "--ops-host=127.0.0.1",
        f"--ops-port={free_ports(3)}",  # with --workers=2, the workers take the next two
        *extra,
    ]


async def test_a_router_whose_sweeper_dies_exits_1_naming_it() -> None:
    died = await slipway_with_fault(
        "router.proxy:Proxy.sweep", *router_args(), started="router listening"
    )
    assert died.code == 1, died.stderr
    assert died.names("router-sweeper"), died.stderr


async def test_a_router_whose_route_feed_dies_exits_1_naming_it(agent: StubAgent) -> None:
    died = await slipway_with_fault(
        "router.routes:Routes.replace",
        *router_args(f"--agent-url={agent.url}"),
        started="router listening",
    )
    assert died.code == 1, died.stderr
    assert died.names("agent-feed"), died.stderr
    assert agent.polls >= 1  # it died on the table the agent sent, not before asking


async def test_a_router_whose_activity_reports_die_exits_1_naming_them(agent: StubAgent) -> None:
    died = await slipway_with_fault(
        "router.feed:AgentClient.report",
        *router_args(f"--agent-url={agent.url}"),
        started="router listening",
    )
    assert died.code == 1, died.stderr
    assert died.names("agent-report"), died.stderr
    assert agent.reports == []


async def test_a_worker_whose_task_dies_takes_the_whole_router_down_with_exit_1() -> None:
    died = await slipway_with_fault(
        "router.proxy:Proxy.sweep", *router_args("--workers=2"), started="router listening"
    )
    assert died.code == 1, died.stderr
    assert died.names("router-sweeper"), died.stderr  # the worker's own line
    assert 'msg="a router worker exited; stopping the others' in died.stderr  # the parent's
    assert "code=1" in died.stderr
